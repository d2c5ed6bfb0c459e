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
    try:
        saved = json.loads(config_path.read_text())
        values = saved["config"]
        config = RunConfig.from_dict(values)
    except (OSError, ValueError, KeyError, TypeError) as error:  # ConfigError (a ValueError) included
        reason = str(error) if isinstance(error, ConfigError) else f"{type(error).__name__}: {error}"
        raise ConfigError(f"{config_path} is unreadable or not a latentmix run config ({reason}); "
                          "it is written by latentmix train: restore it or train the run again") from None
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


LABEL_ISSUE_COLUMNS = ("index", "given_label", "p_noisy", "predicted_label")


def check_detect_args(top: int, threshold: float) -> None:
    """`detect --top N --threshold P`: N >= 0 rows to print, P a probability."""
    import math

    if top < 0:
        raise ConfigError(f"--top must be >= 0 (how many labels to print), got {top}")
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise ConfigError(f"--threshold must be a probability in [0, 1], got {threshold}")


def read_label_issues(path: Path) -> list[dict]:
    """The rows of a run's `label_issues.csv`, checked (columns present, P(noisy) numbers); a
    damaged file is a clear error that says how to get it back."""
    import csv
    import math

    fix = "delete it and run latentmix detect again (it is recomputed from the run's checkpoint)"
    try:
        with Path(path).open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in LABEL_ISSUE_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"{path} is not a label_issues.csv (no column(s) {', '.join(missing)}); {fix}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"{path} is unreadable ({type(error).__name__}); {fix}") from None
    for line, row in enumerate(rows, start=2):
        try:
            value = float(row["p_noisy"])
        except (TypeError, ValueError):
            value = math.nan
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{path}, line {line}: p_noisy {row['p_noisy']!r} is not a probability; {fix}")
    return rows
