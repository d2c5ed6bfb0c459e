"""`latentmix detect RUN_DIR`: which training labels of a trained run are likely wrong.

A finished run already wrote `label_issues.csv`. For a run that was stopped before it finished,
this rebuilds the run from its `config.json` and last checkpoint: one pass over the training set
(eval mode) gives each sample's loss against its given label, a fresh noise model is fitted to
them, and the samples are ranked by P(noisy).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from latentmix.data import load_dataset
from latentmix.errors import ConfigError
from latentmix.training import (
    CHECKPOINT_NAME, RunConfig, RunResult, build_run_model, fit_run_noise_model, load_checkpoint, make_labels,
    protocol_for, track_training_losses, write_label_issues,
)


def detect_from_checkpoint(run_dir: str | Path) -> Path:
    """Write ``RUN_DIR/label_issues.csv`` from the run's last checkpoint; returns its path."""
    run_dir = Path(run_dir)
    config_path, checkpoint_path = run_dir / "config.json", run_dir / CHECKPOINT_NAME
    if not config_path.exists():
        raise ConfigError(f"{run_dir} is not a latentmix run folder (no config.json); pass the --out of a train run")
    if not checkpoint_path.exists():
        raise ConfigError(f"{run_dir} has neither label_issues.csv nor {CHECKPOINT_NAME}: the run never finished "
                          "an epoch, or ran without checkpoints; train it (again) first")
    saved = json.loads(config_path.read_text())
    config = RunConfig.from_dict(saved["config"])
    device = torch.device("cpu")
    dataset = load_dataset(config.dataset, data_dir=config.data_dir, data_path=config.data).to(device)
    model = build_run_model(config, dataset)
    state = load_checkpoint(checkpoint_path, device)
    model.load_state_dict(state["model"])
    noisy = state["noisy_labels"].to(device)
    labels = make_labels(config, dataset)
    if not torch.equal(labels.labels, noisy):
        raise ConfigError(f"the labels in {checkpoint_path} differ from those its config makes; the data changed?")
    identity = dataset.eval_transform or (lambda inputs: inputs)
    protocol = protocol_for(config, dataset.name)
    tracked = track_training_losses(model, dataset.train_inputs, noisy, identity, protocol.eval_batch_size)
    losses = tracked.losses.numpy()
    result = RunResult(
        config=config, method=config.resolved_method(), metrics=[], best_val_acc=float("nan"),
        last_val_acc=float("nan"), best_epoch=0, p_noisy=fit_run_noise_model(config, tracked.losses).posterior(losses),
        predictions=tracked.predictions.numpy(), noisy_labels=noisy.numpy(),
        is_noisy=labels.is_noisy.numpy() if dataset.train_labels_clean else None,
    )
    path = run_dir / "label_issues.csv"
    write_label_issues(path, result)
    return path
