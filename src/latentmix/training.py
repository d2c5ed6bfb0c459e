"""One training loop for every method, read top to bottom like the paper's algorithm.

For each epoch (1-based, as in the reference):
    set the learning rate of the step schedule
    for each batch of the shuffled training set:
        augment the batch (training transform)
        if bootstrapping (correction on and past warm-up):
            the model's own prediction on the un-mixed batch (the bootstrapping target, detached)
            each sample's P(noisy) from its current loss and the last fitted noise model
        draw the mix (layer k from S, lam ~ Beta(alpha, alpha), a permutation)
        mixed forward -> loss (mixed CE, or bootstrapping + prior regularizer) -> SGD step
    track: one pass over the training set (eval mode, no gradients) gives each sample's loss
    fit the noise model (two-component Beta mixture) on those losses -> P(noisy) per sample
    evaluate on the validation set; log the epoch; checkpoint

The mix and the correction are the objects a user's own loop holds: `latentmix.mixing.LatentMixup`
draws each step's plan from the run's mixing stream, `latentmix.correction.LossCorrection` keeps
the noise model, gives each batch its bootstrapping targets and fits a fresh model each epoch, so
there is one implementation of the method (README, "In your own loop"; docs/own-loop.md). `train`
is the epochs above; `Run` holds what they use (the run as `build_run` sets it up, the same set-up
`latentmix detect`, the vectorized population and `latentmix tune` use; a restored checkpoint) and
the bookkeeping (metrics rows, the selected checkpoint, the result; the run folder's files are
written by `latentmix.run_folder.RunFolder`). The data are sliced from tensors in memory or read by
a DataLoader (`latentmix.data.streamed.read_batches`).

Sources: paper Appendix A/B (protocols), Arazo et al. 2019 reference `train.py` (warm-up, loss
tracking, per-batch P(noisy)), Manifold Mixup reference (mixing). Where this code chooses between
reference behaviours the choice is a field of `RunConfig`, and docs/algorithm.md says why.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn

from latentmix.config import RunConfig  # declared in its own module, imported from here as before
from latentmix.correction import (  # noqa: F401 - eval_mode, _all_modules, P_NOISY_CLAMP: this module's API before
    BOOTSTRAP_FORWARDS, P_NOISY_CLAMP, LossCorrection, _all_modules, bootstrapping_inputs, eval_mode, track_losses,
)
from latentmix.data import Dataset, Inputs, index_inputs, load_dataset, map_inputs, subset_inputs
from latentmix.data.streamed import read_batches
from latentmix.distributed import ONE_PROCESS, DistContext, single_process
from latentmix.errors import ConfigError
from latentmix.losses import bootstrap_targets, bootstrapped_mixup_loss
from latentmix.methods import Method
from latentmix.mixing import LatentMixer, LatentMixup, MixPlan, format_layers
from latentmix.noise import ASYMMETRIC_MAPS, NoisyLabels, labels_from_file, make_noisy_labels
from latentmix.noise_model import detection_metrics, fit_noise_model
from latentmix.selection import (
    early_learning_end, estimate_noise_rate, flagged_share, holdout_split, selected_epoch, separation,
)
from latentmix.run_folder import (  # noqa: F401 - METRIC_FIELDS, write_label_issues: this module's API before
    CHECKPOINT_NAME, METRIC_FIELDS, RunFolder, RunTiming, noise_model_entry, noise_model_of, run_fingerprints,
    write_label_issues,
)
from latentmix.summary import TRAINER_KEYS, RunSummary


# --------------------------------------------------------------------------------------------
# Protocols: per-data-set defaults (paper Appendix A and B)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Protocol:
    """The optimisation schedule of a data set. `milestones` are 1-based epochs at which the lr is
    multiplied by `lr_decay`; `warmup_epochs` is how long bootstrapping waits (None: until the
    run's own signals say early learning is over, `latentmix.selection.early_learning_end`);
    `val_split` is the fraction of the training set held out, with its noisy labels, to select a
    checkpoint by (0: none)."""

    epochs: int
    batch_size: int
    lr: float
    milestones: tuple[int, ...]
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_decay: float = 0.1
    alpha: float = 1.0
    warmup_epochs: Optional[int] = 105
    eval_batch_size: int = 1000
    val_split: float = 0.0
    # the first lr decay comes when early learning ends, if that is before the first milestone
    decay_at_learning_end: bool = False

    def scaled(self, epochs: int) -> "Protocol":
        """The same protocol over `epochs` epochs: milestones and a fixed warm-up scaled in
        proportion (an automatic warm-up follows the run, whatever its length)."""
        if epochs == self.epochs:
            return self
        factor = epochs / self.epochs
        return replace(
            self, epochs=epochs,
            milestones=tuple(max(1, round(m * factor)) for m in self.milestones),
            warmup_epochs=None if self.warmup_epochs is None else round(self.warmup_epochs * factor),
        )


# Spirals (Appendix B): SGD momentum 0.9, batch 24, 300 epochs, lr 0.03 / 10 at 100 and 250; no
# weight decay is named. alpha is not given by the paper: we use 32, the default of [A]'s code that
# the paper builds on; with it input mixup falls to the paper's M(0-0) level (docs/spiral.md).
# CIFAR-10 (Appendix A, [A] RunScripts.sh): batch 128, lr 0.1 / 10 at 100 and 250, wd 1e-4,
# alpha 32, bootstrapping from epoch 106.
PROTOCOLS: dict[str, Protocol] = {
    "spiral": Protocol(epochs=300, batch_size=24, lr=0.03, milestones=(100, 250), alpha=32.0,
                       warmup_epochs=105, eval_batch_size=1000),
    "cifar10": Protocol(epochs=300, batch_size=128, lr=0.1, milestones=(100, 250), weight_decay=1e-4,
                        alpha=32.0, warmup_epochs=105, eval_batch_size=1000),
    # CPU-sized Table 1 on Fashion-MNIST (docs/fashion-mnist.md has the calibration runs): long
    # enough after the first lr decay that plain CE memorises the wrong labels (at 50% noise its
    # last test accuracy falls >10 points below its best while its training accuracy against the
    # given labels climbs towards 1), as CE does in the paper's 300 CIFAR epochs; [A]'s shape
    # otherwise (bootstrapping from just after the first decay). alpha 1: 4 and 8 measured no
    # better at 80% noise and lower at 0% on these small networks. Keyed "DATASET:MODEL" where a
    # model needs its own length (`protocol_for`).
    "fashion-mnist": Protocol(epochs=30, batch_size=128, lr=0.05, milestones=(15, 27), weight_decay=1e-4,
                              alpha=1.0, warmup_epochs=15, eval_batch_size=500),
    "fashion-mnist:mlp": Protocol(epochs=50, batch_size=128, lr=0.05, milestones=(12, 45), weight_decay=1e-4,
                                  alpha=1.0, warmup_epochs=12, eval_batch_size=500),
    # The image+tokens benchmark (latentmix.data.multimodal, `reproduce multimodal`): calibrated
    # on its own (CE memorises by 11 points at 50% noise in 40 epochs).
    "fashion-mnist-multimodal": Protocol(epochs=40, batch_size=128, lr=0.05, milestones=(10, 35), weight_decay=1e-4,
                                         alpha=1.0, warmup_epochs=10, eval_batch_size=500),
    # A user's own data (--data, latentmix.fit): no schedule was tuned for it, so bootstrapping
    # starts, and the lr first decays, when the run's own signals say early learning is over
    # (docs/robust-defaults.md); the checkpoint is selected by the user's validation set (a file
    # without one has --val-split, default 10%, held out with its given labels).
    "arrays": Protocol(epochs=50, batch_size=64, lr=0.05, milestones=(25, 40), weight_decay=1e-4,
                       alpha=2.0, warmup_epochs=None, eval_batch_size=2000, decay_at_learning_end=True),
}
PROTOCOLS["mnist"] = PROTOCOLS["kmnist"] = PROTOCOLS["fashion-mnist"]
PROTOCOLS["mnist:mlp"] = PROTOCOLS["kmnist:mlp"] = PROTOCOLS["fashion-mnist:mlp"]


def lr_at_epoch(protocol: Protocol, epoch: int, learning_end: Optional[int] = None) -> float:
    """Step schedule as [A] runs it: its `scheduler.step()` is called at the *start* of each epoch,
    so the decay already applies in the milestone epoch itself (lr 0.1 for epochs 1-99, 0.01 for
    100-249, 0.001 for 250-300 in the CIFAR protocol).

    With `protocol.decay_at_learning_end` and the end of early learning known (`learning_end`,
    `latentmix.selection.early_learning_end`), the first decay comes in the epoch after it when
    that is earlier than the first milestone: [A]'s shape (bootstrapping starts just after the
    first decay) without a schedule tuned to the data, and a longer run then trains longer at the
    low rate instead of memorising the wrong labels at the high one."""
    milestones = protocol.milestones
    if protocol.decay_at_learning_end and learning_end is not None and milestones:
        milestones = (min(milestones[0], learning_end + 1),) + tuple(milestones[1:])
    decays = sum(1 for milestone in milestones if epoch >= milestone)
    return protocol.lr * protocol.lr_decay**decays


# --------------------------------------------------------------------------------------------
# Run result (the configuration: latentmix.config.RunConfig)
# --------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What a run leaves behind: summary figures, per-epoch metrics and per-sample P(noisy).

    Accuracy comes three ways: `best_val_acc` (the maximum over epochs, the paper's oracle "best":
    it needs the clean test labels to pick), `last_val_acc`, and `selected_val_acc`: the accuracy
    at the epoch a user would keep, picked by accuracy on the noisy validation split
    (`selected_epoch`; None when the run has none). The per-sample arrays (`p_noisy`, `losses`,
    `predictions`, over the N training samples) come from `label_issues_epoch`, the epoch whose
    noise model separates the losses best (`latentmix.selection.separation`)."""

    config: RunConfig
    method: Method
    metrics: list[dict]
    best_val_acc: float
    last_val_acc: float
    best_epoch: int
    p_noisy: np.ndarray
    predictions: np.ndarray
    noisy_labels: np.ndarray
    is_noisy: Optional[np.ndarray]
    run_dir: Optional[Path] = None
    model: Optional[nn.Module] = None
    # Timings (also in the run folder's timing.json) stay out of `summary()` and the metrics rows,
    # so that same-seed runs give byte-identical result files.
    wall_time_s: float = 0.0  # across every process that trained the run
    epoch_time_s: list[float] = field(default_factory=list)
    selected_val_acc: Optional[float] = None
    selected_epoch: Optional[int] = None
    losses: Optional[np.ndarray] = None
    label_issues_epoch: Optional[int] = None
    estimated_noise_rate: Optional[float] = None
    bootstrap_start_epoch: Optional[int] = None
    num_classes: Optional[int] = None
    sample_rows: Optional[np.ndarray] = None  # (N,) row in the user's file of each training sample
    holdout: Optional[np.ndarray] = None  # (N,) bool, held out for selection (not trained on)
    extra_rows: Optional[dict] = None  # validation rows of the user's file, scored the same way
    selected_model_state: Optional[dict] = None  # the model's weights at `selected_epoch`
    clean_labels: Optional[np.ndarray] = None  # (N,) when known
    sample_names: Optional[Sequence[str]] = None  # a name per row of the user's data (an image folder: file paths)

    def run_summary(self) -> RunSummary:
        """The run's summary (`latentmix.summary.RunSummary`), as its result.json holds it."""
        last = self.metrics[-1] if self.metrics else {}
        detection = self.detection()
        confusion = self.noise_confusion()
        return RunSummary(
            method=self.method.name,
            mix_layers=format_layers(self.method.mix_layers),
            correction=self.method.correction,
            dataset=self.config.dataset,
            noise=self.config.noise,
            noise_kind=self.config.noise_kind,
            seed=self.config.seed,
            epochs=len(self.metrics),
            best_val_acc=self.best_val_acc,
            last_val_acc=self.last_val_acc,
            best_epoch=self.best_epoch,
            selected_val_acc=self.selected_val_acc,
            selected_epoch=self.selected_epoch,
            bootstrap_start_epoch=self.bootstrap_start_epoch,
            last_train_acc_noisy=last.get("train_acc_noisy"),
            last_train_acc_clean=last.get("train_acc_clean"),
            label_issues_epoch=self.label_issues_epoch,
            detection_auc=detection.get("auc"),
            detection_precision=detection.get("precision"),
            detection_recall=detection.get("recall"),
            estimated_noise_rate=self.estimated_noise_rate,
            # epochs whose noise model found no two groups of losses (the same P(noisy) for all)
            noise_model_collapsed_epochs=sum(1 for row in self.metrics if row.get("separation") == 0.0),
            actual_noise_rate=float(self.is_noisy.mean()) if self.is_noisy is not None else None,
            **confusion,
            keys=TRAINER_KEYS + tuple(confusion),
        )

    def summary(self) -> dict:
        """`run_summary()` as the plain dict result.json holds."""
        return self.run_summary().to_dict()

    def _scored(self) -> np.ndarray:
        """Positions of the training samples the noise model was fitted on (held-out ones excluded)."""
        return np.flatnonzero(~self.holdout) if self.holdout is not None else np.arange(len(self.p_noisy))

    def detection(self) -> dict:
        """Detection AUC / precision / recall of `p_noisy` against the true mask (when known)."""
        if self.is_noisy is None or not len(self.p_noisy):
            return {}
        scored = self._scored()
        if not self.is_noisy[scored].any() or self.is_noisy[scored].all():
            return {}
        from latentmix.selection import ranking_order

        # the AUC of the ranking a user reads (ties of P(noisy) broken by the loss); precision and
        # recall of the flagged set P(noisy) > 0.5
        p_noisy, truth = self.p_noisy[scored], self.is_noisy[scored]
        rank_score = np.empty(len(scored))
        order = ranking_order(p_noisy, self.losses[scored]) if self.losses is not None else np.argsort(-p_noisy, kind="stable")
        rank_score[order] = -np.arange(len(scored), dtype=float)
        metrics = detection_metrics(p_noisy, truth)
        metrics["auc"] = detection_metrics(rank_score, truth)["auc"]
        return metrics

    def noise_confusion(self, top: int = 10) -> dict:
        """The most frequent (given class -> predicted class) pairs among the labels flagged noisy
        (P(noisy) > 0.5), and, when clean labels are known, the true (given -> clean) pairs of the
        wrong labels: which classes the noise comes from and goes to."""
        from latentmix.selection import flagged_confusion

        if self.num_classes is None or not len(self.p_noisy):
            return {}
        scored = self._scored()
        flagged = scored[self.p_noisy[scored] > 0.5]
        pairs = {"flagged_noise_pairs": _top_pairs(flagged_confusion(
            self.noisy_labels, self.predictions, flagged, self.num_classes), top)}
        if self.clean_labels is not None and self.is_noisy is not None:
            wrong = scored[self.is_noisy[scored]]
            pairs["true_noise_pairs"] = _top_pairs(flagged_confusion(
                self.noisy_labels, self.clean_labels, wrong, self.num_classes), top)
        return pairs


def _top_pairs(counts: list[list[int]], top: int) -> list[list[int]]:
    """The `top` largest off-diagonal cells of a confusion matrix as [given, other, count] rows."""
    cells = [(n, i, j) for i, row in enumerate(counts) for j, n in enumerate(row) if i != j and n > 0]
    return [[i, j, n] for n, i, j in sorted(cells, key=lambda c: (-c[0], c[1], c[2]))[:top]]


# --------------------------------------------------------------------------------------------
# Set-up helpers
# --------------------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return device


def check_run_inputs(config: RunConfig, dataset: Dataset) -> None:
    """Before any work: the settings (`RunConfig.validate`) and the data set's labels
    (`latentmix.config_checks.check_dataset`: two classes or more, ids inside the head, no
    validation class that training lacks), so that bad input is one clear error, not a NaN loss."""
    from latentmix.config_checks import check_dataset

    config.validate()
    check_dataset(dataset)


def base_protocol(dataset_name: str, model: Optional[str]) -> Protocol:
    """The data set's own protocol, for `model` where it has one (``DATASET:MODEL``), else the
    data set's; a user's file (any other name) gets the "arrays" protocol."""
    return PROTOCOLS.get(f"{dataset_name}:{model}") or PROTOCOLS.get(dataset_name, PROTOCOLS["arrays"])


def protocol_for(config: RunConfig, dataset_name: str) -> Protocol:
    config.validate()  # epochs, batch size, lr, weight decay among them
    base = base_protocol(dataset_name, config.model)
    if config.epochs is not None:
        base = base.scaled(config.epochs)
    changes = {}
    if config.batch_size is not None:
        changes["batch_size"] = config.batch_size
    if config.lr is not None:
        changes["lr"] = config.lr
    if config.weight_decay is not None:
        changes["weight_decay"] = config.weight_decay
    return replace(base, **changes)


def load_run_dataset(config: RunConfig) -> Dataset:
    """The data set `config` names, read as every command that sets the run up reads it
    (`build_run`). A user's data file and its per-sample noisy labels are read together, so that the
    labels file (one per sample of the file) goes through the same validation split (`--val-split`
    of the file, default 10%) as the data."""
    options: dict[str, Any] = {}
    if config.data and config.noisy_labels_file:
        options["noisy_labels_path"] = config.noisy_labels_file
    if config.data and config.val_split is not None:
        options["val_fraction"] = config.val_split
    if config.data and Path(config.data).is_dir():
        options["workers"] = config.loader_workers
    return load_dataset(config.dataset, data_dir=config.data_dir, data_path=config.data, download=config.download,
                        **options)


def make_labels(config: RunConfig, dataset: Dataset) -> NoisyLabels:
    """The run's training labels, fixed once from `noise_seed` (default: the training seed).

    Real noisy labels (a file, or the data set's own given labels) take precedence over synthetic
    noise; the mask is then known only where the data set has clean labels.
    """
    noise_seed = config.seed if config.noise_seed is None else config.noise_seed
    clean = dataset.train_labels.cpu()
    if config.noisy_labels_file and not (config.data and dataset.given_noisy_labels is not None):
        return labels_from_file(config.noisy_labels_file, clean_labels=clean if dataset.train_labels_clean else None,
                                num_classes=dataset.num_classes)
    if dataset.given_noisy_labels is not None:
        given = dataset.given_noisy_labels.cpu().long()
        mask = given != clean if dataset.train_labels_clean else torch.zeros_like(given, dtype=torch.bool)
        return NoisyLabels(labels=given, is_noisy=mask)
    if config.noise_kind == "symmetric":
        options = {"selection": config.noise_selection, "include_true_label": config.noise_include_true_label}
    else:
        options = {"class_map": asymmetric_map(config)}
    return make_noisy_labels(clean, dataset.num_classes, kind=config.noise_kind, rate=config.noise, seed=noise_seed,
                             **options)


def asymmetric_map(config: RunConfig) -> dict[int, int]:
    """The class map of `--noise-kind asymmetric` for the run's data set (`noise.ASYMMETRIC_MAPS`)."""
    if config.dataset not in ASYMMETRIC_MAPS:
        raise ConfigError(f"noise_kind 'asymmetric' has no class map for dataset {config.dataset!r} (defined for "
                          f"{', '.join(ASYMMETRIC_MAPS)}); use --noise-kind symmetric, or give your own noisy "
                          "labels with --noisy-labels FILE")
    return ASYMMETRIC_MAPS[config.dataset]


def build_run_model(config: RunConfig, dataset: Dataset) -> nn.Module:
    """The data set's default model (or `config.model`), initialised from the run's seed.

    The seed is applied inside `torch.random.fork_rng`, so the caller's global RNG is untouched.
    """
    from latentmix.models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return build_model(config.model, dataset, width=config.width)


def has_integer_inputs(inputs: Inputs) -> bool:
    found = []
    map_inputs(inputs, lambda t: found.append(not torch.is_floating_point(t)) or t)
    return any(found)


def model_inputs_sample(dataset: Dataset) -> Inputs:
    """Two training samples as the model receives them (after the training transform), so that
    stored uint8 images (CIFAR-10), which the transform turns into floats, count as mixable at
    layer 0 while token ids do not. A private generator leaves the run's streams untouched."""
    sample = index_inputs(dataset.train_inputs, torch.arange(min(2, dataset.num_train)))
    if dataset.train_transform is None:
        return sample
    generator = torch.Generator(device=_inputs_device(sample))
    return dataset.train_transform(sample, generator)


def _inputs_device(inputs: Inputs) -> torch.device:
    devices = []
    map_inputs(inputs, lambda t: devices.append(t.device) or t)
    return devices[0] if devices else torch.device("cpu")


@dataclass
class RunStreams:
    """The run's random streams, one per purpose, so that adding a draw in one place does not
    shift the others: data order, mixing (layer, lam, perm) and augmentation."""

    order: np.random.Generator
    mixing: np.random.Generator
    augment: torch.Generator

    @classmethod
    def from_seed(cls, seed: int, device: torch.device) -> "RunStreams":
        order_seq, mixing_seq, augment_seq = np.random.SeedSequence(seed).spawn(3)
        augment = torch.Generator(device=device)
        augment.manual_seed(int(augment_seq.generate_state(1)[0]))
        return cls(np.random.default_rng(order_seq), np.random.default_rng(mixing_seq), augment)

    def state_dict(self) -> dict:
        return {"order": self.order.bit_generator.state, "mixing": self.mixing.bit_generator.state,
                "augment": self.augment.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.order.bit_generator.state = state["order"]
        self.mixing.bit_generator.state = state["mixing"]
        self.augment.set_state(state["augment"].cpu() if hasattr(state["augment"], "cpu") else state["augment"])


@dataclass(frozen=True)
class RunSetup:
    """What one run is made of, resolved once from its config (`build_run`): the data, the
    training labels, the schedule, the method, the noisy-validation split, the initial model and
    the random streams. `train` (through `Run`), `latentmix detect`, the vectorized population and
    `latentmix tune` all build their runs with `build_run`, so they cannot disagree on any of it."""

    config: RunConfig
    dataset: Dataset
    labels: NoisyLabels  # the training labels (and which are wrong, when known), on the CPU
    protocol: Protocol
    method: Method
    alpha: float  # of the mixing Beta(alpha, alpha): the method's, else the protocol's
    warmup: Optional[int]  # epochs before bootstrapping; None: until early learning ends
    trained: np.ndarray  # positions in the training set trained on
    holdout: np.ndarray  # positions held out with their noisy labels to select a checkpoint by
    model: nn.Module  # initialised from the run's seed (or the caller's own)
    streams: RunStreams  # data order, mixing draws, augmentation

    def inputs_mixable(self) -> bool:
        """Whether layer 0 (the input) can be mixed: not when the inputs hold integer token ids."""
        return not has_integer_inputs(model_inputs_sample(self.dataset))


def build_run(config: RunConfig, *, dataset: Optional[Dataset] = None, model: Optional[nn.Module] = None,
              device: torch.device = torch.device("cpu")) -> RunSetup:
    """The run `config` describes, set up: its data (`load_run_dataset`, unless given), checked
    (`check_run_inputs`), its labels (`make_labels`), schedule (`protocol_for`), noisy-validation
    split (`run_holdout`), model (`build_run_model`, unless given) and streams, with the data, the
    model and the augmentation stream on `device`. A bad method is an error before the data load."""
    method = config.resolved_method()
    if dataset is None:
        dataset = load_run_dataset(config)
    protocol = protocol_for(config, dataset.name)
    check_run_inputs(config, dataset)
    labels = make_labels(config, dataset)
    trained, holdout = run_holdout(config, protocol, dataset, labels)
    if model is None:
        model = build_run_model(config, dataset)
    return RunSetup(
        config=config, dataset=dataset.to(device), labels=labels, protocol=protocol, method=method,
        alpha=protocol.alpha if method.alpha is None else method.alpha, warmup=resolve_warmup(config, method, protocol),
        trained=trained, holdout=holdout, model=model.to(device), streams=RunStreams.from_seed(config.seed, device),
    )


def batch_indices(positions: torch.Tensor, batch_size: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """One epoch's shuffled mini-batches of the samples at `positions` (the ones trained on; the
    last batch may be smaller, as a DataLoader gives it)."""
    order = torch.from_numpy(rng.permutation(len(positions))).to(positions.device)
    return list(positions[order].split(batch_size))


# --------------------------------------------------------------------------------------------
# The pieces of one epoch
# --------------------------------------------------------------------------------------------


@dataclass
class Tracked:
    """Per-sample results of one pass over the training set."""

    losses: torch.Tensor  # (N,) cross-entropy against the given (noisy) labels
    logits: torch.Tensor  # (N, C)

    @property
    def predictions(self) -> torch.Tensor:
        """(N,) argmax class."""
        return self.logits.argmax(dim=1)


def track_training_losses(
    model: nn.Module, inputs: Inputs, labels: torch.Tensor, transform: Callable[[Inputs], Inputs],
    batch_size: int, autocast: Callable = nullcontext, dist: DistContext = ONE_PROCESS,
) -> Tracked:
    """[A] ``track_training_loss``: the whole training set once, eval mode, no gradients, each
    sample's cross-entropy against its given label (and its predicted class): the tracking pass a
    user's loop runs (`latentmix.correction.track_losses`) over the batches of `tracking_batches`,
    put in sample order.

    Data-parallel (`dist`): each process forwards its shard of every batch and `track_losses`
    gathers the shards of all processes, so every process holds all N values."""
    n = labels.shape[0]
    tracked = track_losses(model, tracking_batches(inputs, labels, transform, batch_size, dist), autocast=autocast)
    return Tracked(in_sample_order(tracked.losses, tracked.index, n), in_sample_order(tracked.logits, tracked.index, n))


def tracking_batches(inputs: Inputs, labels: torch.Tensor, transform: Callable[[Inputs], Inputs], batch_size: int,
                     dist: DistContext = ONE_PROCESS) -> Iterator[tuple[Inputs, torch.Tensor, torch.Tensor]]:
    """``(inputs, labels, index)`` of this process's shard of each consecutive batch of
    `batch_size` samples, the inputs through `transform`. The transform sees the whole batch, so a
    random (training) transform draws as in one process and the streams stay equal."""
    splits = list(torch.arange(labels.shape[0], device=labels.device).split(batch_size))
    for index, batch in zip(splits, read_batches(inputs, splits, labels.device)):
        part = dist.shard(len(index))
        yield index_inputs(transform(batch), part), labels[index[part]], index[part]


def in_sample_order(values: torch.Tensor, index: torch.Tensor, total: int) -> torch.Tensor:
    """(total, ...) per-sample `values` placed at their sample `index` (every sample once)."""
    if index.shape[0] != total:
        raise RuntimeError(f"the tracking pass gave {index.shape[0]} per-sample values, expected {total}")
    ordered = torch.empty((total, *values.shape[1:]), dtype=values.dtype, device=values.device)
    ordered[index.to(values.device)] = values
    return ordered


@torch.no_grad()
def evaluate(model: nn.Module, inputs: Inputs, labels: torch.Tensor, transform: Callable[[Inputs], Inputs],
             batch_size: int, autocast: Callable = nullcontext, dist: DistContext = ONE_PROCESS) -> torch.Tensor:
    """Accuracy (as a 0-dim tensor on the device, read once per epoch) in eval mode. Data-parallel
    (`dist`): each process counts its shard of the samples and the counts are summed."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), device=labels.device)
    splits = list(torch.arange(labels.shape[0], device=labels.device)[dist.shard(labels.shape[0])].split(batch_size))
    for index, batch in zip(splits, read_batches(inputs, splits, labels.device)):
        with autocast():
            logits = model(transform(batch))
        correct += (logits.argmax(dim=1) == labels[index]).sum()
    model.train(was_training)
    return dist.all_reduce_sum(correct) / labels.shape[0]


def training_loss(method: Method, logits: torch.Tensor, y: torch.Tensor, plan: MixPlan,
                  clean_logits: Optional[torch.Tensor], p_noisy: Optional[torch.Tensor],
                  sample_targets: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mixed cross-entropy during warm-up and for methods without correction; otherwise the
    method's bootstrapping loss plus the prior regularizer (`bootstrapped_mixup_loss`, the loss of
    `LossCorrection`). The un-mixed target rows come from `clean_logits` and `p_noisy`, or are
    given (`sample_targets`)."""
    if sample_targets is None and clean_logits is not None:
        sample_targets = bootstrap_targets(y, clean_logits, p_noisy, method.correction)
    return bootstrapped_mixup_loss(logits, y, plan, sample_targets, method.correction, method.reg_weight,
                                   method.soft_side_weighting)


def training_step(
    mixer: LatentMixer, forward_model: nn.Module, optimizer: torch.optim.Optimizer, method: Method,
    x: Inputs, y: torch.Tensor, plan: MixPlan, *, noise_model: Any = None, bootstrap_forward: str = "reference",
    autocast: Callable = nullcontext, sample_targets: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """One SGD step on one batch: [bootstrapping target and P(noisy)] -> mixed forward -> loss ->
    step. The batch's bootstrapping target rows are given (`sample_targets`, what `train` takes from
    `LossCorrection.batch_targets`), or made here from `noise_model` and the `bootstrap_forward`
    forwards; neither means plain (mixed) cross-entropy (warm-up, or no correction).
    Returns the batch loss, detached, on the device (no host synchronisation)."""
    clean_logits = p_noisy = None
    if noise_model is not None and sample_targets is None:
        clean_logits, p_noisy = bootstrapping_inputs(forward_model, x, y, noise_model, bootstrap_forward, autocast)
    with autocast():
        logits = mixer.forward(x, plan)
    loss = training_loss(method, logits, y, plan, clean_logits, p_noisy, sample_targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

def train(
    config: RunConfig,
    *,
    dataset: Optional[Dataset] = None,
    model: Optional[nn.Module] = None,
    mix_points: Optional[Sequence] = None,
    run_dir: Optional[str | os.PathLike] = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_epoch_end: Optional[Callable[[dict], None]] = None,
    distributed: Optional[DistContext] = None,
    optimizer: Any = None,
    scheduler: Any = None,
) -> RunResult:
    """Train one run. A `dataset` and `model` (with its `mix_points`) may be given directly;
    otherwise they are built from `config`. With `run_dir`, the config, per-epoch metrics,
    `result.json`, `label_issues.csv`, `timing.json` and a per-epoch checkpoint are written there
    (atomically); `resume=True` continues the run the folder holds from its last complete epoch,
    `overwrite=True` replaces it, and without either a folder that holds a run is refused
    (`latentmix.run_folder`). `on_epoch_end(row)` sees each epoch's row (the sweep runner reports
    intermediate values through it).

    `distributed` (from `latentmix.distributed.distributed_run` under torchrun) trains the run
    data-parallel: each process takes its shard of every global batch, DDP averages the gradients,
    and only the main process writes the run folder (docs/distributed.md).

    `optimizer` / `scheduler` replace the protocol's SGD and step schedule (`build_optimizer`):
    an instance built on `model`'s parameters, or a factory (parameters -> optimizer, optimizer ->
    scheduler). Either one turns the protocol's lr schedule off; the scheduler is stepped once
    after each epoch and checkpointed with the run.

    The epochs below are the algorithm; `Run` holds what they use (set up, restored from a
    checkpoint) and the bookkeeping (metrics rows, the selected checkpoint, the run folder)."""
    run = Run(config, dataset=dataset, model=model, mix_points=mix_points, run_dir=run_dir, resume=resume,
              overwrite=overwrite, distributed=distributed, optimizer=optimizer, scheduler=scheduler)
    method, protocol, dist, device = run.method, run.protocol, run.dist, run.device
    mixup, correction, log = run.mixup, run.correction, run.log
    bar = _progress_bar(range(run.start_epoch, protocol.epochs + 1), progress and dist.is_main,
                        desc=f"{method.name} noise={config.noise:g} seed={config.seed}")
    run.model.train()
    for epoch in bar:
        epoch_started = time.perf_counter()
        # the end of early learning, read off the run's own signals so far (None: not yet)
        learning_end = run.learning_end(log.metrics)
        lr = run.set_lr(epoch, learning_end)
        # bootstrapping waits for the warm-up: a fixed number of epochs, or (auto) until early learning ends
        warmup_end = learning_end if run.warmup is None else run.warmup
        correction.enabled = warmup_end is not None and epoch > warmup_end
        bootstrapping = correction.bootstrapping
        if bootstrapping and run.tracking_logits and run.tracked is None:
            run.observe(run.track_training_set(), for_fit=False)  # resumed without the previous epoch's pass

        # ---- each batch: augment -> bootstrapping targets (None in the warm-up) -> mixed forward -> loss -> step
        # (data-parallel: every process draws the same global batches and mixing draws, augments
        # the whole batch, and trains on its shard; mixup partners come from within the shard)
        loss_sum = torch.zeros((), device=device)  # summed on the device, read once at the end
        batches = dist.even_batches(batch_indices(run.trained, protocol.batch_size, run.streams.order))
        mixup.start_epoch(len(batches), protocol.batch_size)
        for index, batch in zip(batches, read_batches(run.dataset.train_inputs, batches, device)):
            shard = dist.shard(len(index))
            x, y = index_inputs(run.augment(batch), shard), run.noisy_labels[index[shard]]
            plan = mixup.next_plan(y.shape[0], offset=shard.start, device=device)
            targets = correction.batch_targets(run.forward_model, x, y, index[shard], autocast=run.autocast)
            loss = training_step(mixup.mixer, run.forward_model, run.optimizer, method, x, y, plan,
                                 autocast=run.autocast, sample_targets=targets)
            loss_sum += loss * y.shape[0]
        if run.scheduler is not None:
            run.scheduler.step()

        # ---- evaluate: validation accuracy and the noisy-validation accuracy a checkpoint is selected by
        row, val_tracked = run.evaluate_epoch(epoch, lr, bootstrapping, loss_sum, sum(len(index) for index in batches))

        # ---- track each sample's loss; fit a fresh noise model (bootstrapping keeps the last that separated)
        view = None
        if tracks_at(epoch, config, method, protocol):
            run.tracked = run.track_training_set()
            run.observe(run.tracked)
            view = epoch_view(run.tracked, correction.end_epoch(), run.trained_np, val_tracked)
            row.update(run.tracking_metrics(view))

        # ---- log the epoch; checkpoint
        log.add(row, view, run.model)
        run.timing.epoch_done(epoch, time.perf_counter() - epoch_started)
        if not math.isfinite(row["train_loss"]):
            raise FloatingPointError(f"training diverged at epoch {epoch} (loss {row['train_loss']}); lower --lr")
        if progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(val_acc=f"{row['val_acc']:.4f}", loss=f"{row['train_loss']:.3f}")
        run.save_epoch(epoch)
        if on_epoch_end is not None:
            on_epoch_end(row)
    return run.finish()


@dataclass
class RunLog:
    """The run's record as it grows: one metrics row per epoch, the model's weights at the best
    noisy-validation epoch (`selected_state`), and the per-sample view kept for the label issues
    (`snapshot`, see `label_view_improves`)."""

    metrics: list[dict] = field(default_factory=list)
    snapshot: Optional[dict] = None
    selected_state: Optional[dict] = None
    posterior_sums: Optional[dict] = None  # every tracked epoch's P(noisy) summed, see `add_posteriors`

    def add(self, row: dict, view: Optional[dict], model: nn.Module) -> None:
        improved = row["select_acc"] is not None and row["select_acc"] > max(
            (r["select_acc"] for r in self.metrics if r.get("select_acc") is not None), default=-1.0)
        self.metrics.append(row)
        # the weights of the epoch a user keeps so far (`selected_epoch`: the trailing mean of the
        # noisy-validation accuracy), so that selected_model.pt is the reported selected epoch
        if row["select_acc"] is not None and selected_epoch(self.metrics) == row["epoch"]:
            self.selected_state = {key: value.detach().clone() for key, value in model.state_dict().items()}
        # the label issues from the single best epoch: the trailing mean picks the end of the best
        # stretch, later into memorisation (replayed on 164 runs: mean detection AUC 0.1-2.4 points
        # lower for CE, -1.6 to +1.2 for LR-M-DYR-H; docs/robust-defaults.md)
        if view is None:
            return
        self.posterior_sums = add_posteriors(self.posterior_sums, view)
        if label_view_improves(self.snapshot, view, row["select_acc"], improved):
            # with a selection signal, each sample's P(noisy) is its mean over the epochs so far
            # (`mean_posteriors` says why and what it measured)
            averaged = mean_posteriors(self.posterior_sums) if row["select_acc"] is not None else {}
            self.snapshot = {"epoch": row["epoch"], **view, **averaged}


class Run:
    """One run's set-up and bookkeeping, around the epochs `train` runs: the run as `build_run`
    sets it up (settings, protocol, noisy labels and the noisy-validation split, model, random
    streams) placed for training (compiled, channels-last), the transforms, the optimizer,
    `LatentMixup` and `LossCorrection`, a checkpoint restored; then the per-epoch evaluation, the
    tracking pass, the run folder's files (through `RunFolder`) and the `RunResult`. Arguments as
    `train`'s."""

    def __init__(self, config: RunConfig, *, dataset: Optional[Dataset], model: Optional[nn.Module],
                 mix_points: Optional[Sequence], run_dir: Optional[str | os.PathLike], resume: bool, overwrite: bool,
                 distributed: Optional[DistContext], optimizer: Any, scheduler: Any):
        started = time.perf_counter()
        self.config = config
        self.dist = dist = distributed or single_process(resolve_device(config.device))
        self.device = device = dist.device
        self.run_folder = run_folder = RunFolder(run_dir, writer=dist.is_main) if run_dir is not None else None
        if run_folder is not None:  # refuse an occupied folder before the data load
            run_folder.check_command(resume=resume, overwrite=overwrite)
        if config.bootstrap_forward not in BOOTSTRAP_FORWARDS:
            raise ConfigError(f"unknown bootstrap_forward {config.bootstrap_forward!r}: "
                              f"choose {', '.join(BOOTSTRAP_FORWARDS)}")
        if config.track_transform not in ("train", "eval"):
            raise ConfigError(f"unknown track_transform {config.track_transform!r}: choose train or eval")
        self.setup = setup = build_run(config, dataset=dataset, model=model, device=device)
        self.method = method = setup.method
        self.protocol = protocol = setup.protocol
        self.warmup, self.labels, self.streams = setup.warmup, setup.labels, setup.streams
        self.trained_np, self.holdout_np = setup.trained, setup.holdout
        self.dataset = dataset = setup.dataset  # on the device
        self.model = model = setup.model
        dist.check_batch_size(protocol.batch_size)
        mixer = LatentMixer(model, mix_points)
        eligible_layers = mixer.check_layers(method.mix_layers)
        if 0 in eligible_layers and not setup.inputs_mixable():
            raise ConfigError(
                f"method {method.name} mixes layer 0 (the input), but the inputs include integer token ids, which "
                f"cannot be interpolated; choose hidden layers with --layers (layers: {mixer.describe_layers()})"
            )

        use_cuda = device.type == "cuda"
        amp = use_cuda if config.amp is None else config.amp
        # bf16 autocast halves activation traffic on tensor-core GPUs; on the CPU it only slows us down.
        self.autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp else nullcontext
        channels_last = use_cuda if config.channels_last is None else config.channels_last
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.noisy_labels = noisy_labels = setup.labels.labels.to(device)
        self.is_noisy = setup.labels.is_noisy.to(device)
        self.trained = torch.from_numpy(self.trained_np).to(device)
        self.holdout = holdout = torch.from_numpy(self.holdout_np).to(device)
        self.holdout_inputs = subset_inputs(dataset.train_inputs, holdout) if len(self.holdout_np) else None
        self._set_transforms(config, dataset, channels_last)
        # torch.compile serves the un-mixed forwards (bootstrapping target, tracking, evaluation); the
        # mixed forward stays eager because its hooks change from step to step.
        self.forward_model = torch.compile(model) if config.compile else model

        own_schedule = optimizer is not None or scheduler is not None
        self.own_schedule = own_schedule  # the user's: the protocol's lr schedule is off
        self.optimizer, self.scheduler = optimizer, scheduler = build_optimizer(optimizer, scheduler, model, protocol)
        self.run_path = Path(run_dir) if run_dir is not None else None
        # the loss correction, keyed by training-set position: the tracked losses of the samples
        # trained on, the noise model fitted to them each epoch, the bootstrapping targets per batch
        self.tracking_logits = config.bootstrap_forward == "tracked"  # only the "tracked" targets read them
        self.correction = LossCorrection(
            len(noisy_labels), correction=method.correction, reg_weight=method.reg_weight,
            bootstrap_forward=config.bootstrap_forward, soft_side_weighting=method.soft_side_weighting,
            noise_model=config.noise_model, lookup=config.posterior_lookup,
            fit=lambda losses: fit_run_noise_model(config, losses),
        )
        self.start_epoch = 1
        self.tracked: Optional[Tracked] = None
        self.log = RunLog()
        if run_folder is not None:  # accepted only if it is a new run, or the one the folder holds
            record = {
                "config": config.to_dict(), "method": asdict(method), "protocol": asdict(protocol), "alpha": setup.alpha,
                "warmup_epochs": self.warmup, "mix_points": [list(p) for p in mixer.mix_points],
                "layers": mixer.describe_layers(), "dataset_info": _jsonable(dataset.info),
                **({"optimizer": describe_optimizer(optimizer, scheduler)} if own_schedule else {}),
                "device": str(device), "amp": amp, "channels_last": channels_last, "world_size": dist.world_size,
                **run_fingerprints(dataset, noisy_labels),
            }
            state = run_folder.accept(record, resume=resume, overwrite=overwrite, device=device, noisy_labels=noisy_labels)
            if state is not None:  # every process resumes from the same checkpoint
                self._restore(state)
        self.timing = (run_folder.start_timing(self.start_epoch, started, str(device))
                       if run_folder is not None and run_folder.writer
                       else RunTiming(started=started, first_epoch=self.start_epoch, device=str(device)))
        # data-parallel: the mixed forward runs through DDP (wrapped after the checkpoint is
        # loaded: DDP broadcasts rank 0's weights); the run's mixing stream draws the plans
        self.mixup = LatentMixup(dist.wrap_mixer(mixer), layers=eligible_layers, alpha=setup.alpha,
                                 seed=setup.streams.mixing)

    def _set_transforms(self, config: RunConfig, dataset: Dataset, channels_last: bool) -> None:
        """The training transform (augmentation, drawn from the run's augmentation stream), the
        evaluation transform, and the tracking pass's (the training one, as [A], or --track-transform
        eval); channels-last images for the GPU's convolutions."""
        identity = lambda inputs: inputs  # noqa: E731
        eval_transform = dataset.eval_transform or identity
        train_transform = dataset.train_transform or (lambda inputs, generator: inputs)
        streams = self.streams
        augment = lambda inputs: train_transform(inputs, streams.augment)  # noqa: E731
        if channels_last:
            to_cl = lambda x: map_inputs(x, lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t)  # noqa: E731
            base_eval = eval_transform  # bound now: the lambda must not see the reassigned name (recursion)
            augment, eval_transform = (lambda inputs: to_cl(train_transform(inputs, streams.augment))), (lambda i: to_cl(base_eval(i)))
        self.augment, self.eval_transform = augment, eval_transform
        self.track_transform = augment if config.track_transform == "train" else eval_transform

    def _restore(self, state: dict) -> None:
        """Continue from a verified checkpoint: model, optimizer, streams, scheduler, the metrics so
        far, the noise model, the last tracking pass (not redone: it would draw augmentations), the
        label view and the selected model."""
        _restore_checkpoint(state, self.model, self.optimizer, self.streams, self.run_folder)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.log.metrics = state["metrics"]
        self.correction.noise_model = noise_model_of(state)
        if state.get("tracked") is not None:
            self.tracked = Tracked(state["tracked"]["losses"].to(self.device), state["tracked"]["logits"].to(self.device))
            self.observe(self.tracked, for_fit=False)
        self.correction.epochs_done = state["epoch"]
        self.log.snapshot = state.get("label_snapshot")
        self.log.posterior_sums = state.get("posterior_sums")
        self.log.selected_state = self.run_folder.load_selected(self.device)
        self.start_epoch = state["epoch"] + 1

    # ---- per epoch ---------------------------------------------------------------------------
    def learning_end(self, metrics: list[dict]) -> Optional[int]:
        """The end of early learning read off the metric rows so far (None: not yet), at the
        latest at the first lr decay."""
        return early_learning_end(metrics, latest=first_milestone(self.protocol))

    def set_lr(self, epoch: int, learning_end: Optional[int]) -> float:
        """The epoch's learning rate: the user's optimizer's own, or the protocol's step schedule."""
        if self.own_schedule:
            return self.optimizer.param_groups[0]["lr"]
        lr = lr_at_epoch(self.protocol, epoch, learning_end)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def track_training_set(self) -> Tracked:
        return track_training_losses(self.forward_model, self.dataset.train_inputs, self.noisy_labels,
                                     self.track_transform, self.protocol.eval_batch_size, self.autocast, dist=self.dist)

    def observe(self, tracked: Tracked, for_fit: bool = True) -> None:
        """Hand a tracking pass of the samples trained on to the loss correction."""
        self.correction.observe(self.trained, *tracking_pass(tracked, self.noisy_labels, self.trained,
                                                             self.tracking_logits), for_fit=for_fit)

    def evaluate_epoch(self, epoch: int, lr: float, bootstrapping: bool, loss_sum: torch.Tensor,
                       num_seen: int) -> tuple[dict, Optional[Tracked]]:
        """The epoch's metrics row so far: validation accuracy (with the validation rows' losses
        against their given labels when they are the user's, one pass for both) and the accuracy a
        checkpoint is selected by (the noisy holdout's, or the user's validation set's)."""
        dataset, protocol, dist = self.dataset, self.protocol, self.dist
        val_tracked = None
        if dataset.val_given_labels is not None:  # the validation rows are the user's: scored too
            val_tracked = track_training_losses(self.forward_model, dataset.val_inputs, dataset.val_given_labels,
                                                self.eval_transform, protocol.eval_batch_size, self.autocast, dist=dist)
            val_acc = (val_tracked.predictions == dataset.val_labels).float().mean()
        else:
            val_acc = evaluate(self.forward_model, dataset.val_inputs, dataset.val_labels, self.eval_transform,
                               protocol.eval_batch_size, self.autocast, dist=dist)
        row = {"epoch": epoch, "lr": lr, "train_loss": float(dist.all_reduce_sum(loss_sum)) / num_seen,
               "val_acc": float(val_acc), "select_acc": None, "train_acc_noisy": None, "train_acc_clean": None,
               "bootstrapping": bootstrapping}
        if self.holdout_inputs is not None:
            row["select_acc"] = float(evaluate(self.forward_model, self.holdout_inputs, self.noisy_labels[self.holdout],
                                               self.eval_transform, protocol.eval_batch_size, self.autocast, dist=dist))
        elif dataset.val_selects:
            row["select_acc"] = row["val_acc"]
        return row, val_tracked

    def tracking_metrics(self, view: dict) -> dict:
        """The metrics of a tracking pass (`self.tracked`): training accuracy against the given and
        (when known) the clean labels, the flagged share and separation of the noise model, and
        the detection AUC / precision / recall when the wrong labels are known."""
        trained, hits = self.trained, self.tracked.predictions[self.trained]
        row = {"train_acc_noisy": float((hits == self.noisy_labels[trained]).float().mean())}
        clean_known = self.dataset.train_labels_clean
        if clean_known:
            row["train_acc_clean"] = float((hits == self.dataset.train_labels[trained]).float().mean())
        row["flagged_share"], row["separation"] = view["flagged_share"], view["separation"]
        if clean_known and bool(self.is_noisy[trained].any()):
            detection = detection_metrics(view["p_noisy"][self.trained_np], self.is_noisy[trained].cpu().numpy())
            row.update(detection_auc=detection["auc"], detection_precision=detection["precision"],
                       detection_recall=detection["recall"])
        return row

    def save_epoch(self, epoch: int) -> None:
        """The run folder after an epoch: metrics.csv, the selected model when this epoch is the
        selected one, the checkpoint (everything a resume needs) and the timing. Runs too short to
        need it (a grid of tiny models, `checkpoint=False`) write metrics.csv once at the end."""
        folder = self.run_folder
        if folder is None or not folder.writer or not self.config.checkpoint:
            return
        log, correction = self.log, self.correction
        folder.write_metrics(log.metrics)
        if log.selected_state is not None and log.metrics[-1]["epoch"] == selected_epoch(log.metrics):
            folder.save_selected(log.selected_state)
        folder.save_checkpoint({
            "epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            **({"scheduler": self.scheduler.state_dict()} if self.scheduler is not None else {}),
            "streams": self.streams.state_dict(), "metrics": log.metrics, "noisy_labels": self.noisy_labels.cpu(),
            "noise_model": noise_model_entry(correction.noise_model),
            "tracked": None if self.tracked is None else {"losses": self.tracked.losses.cpu(),
                                                          "logits": self.tracked.logits.cpu()},
            "label_snapshot": log.snapshot, "posterior_sums": log.posterior_sums,
        })
        folder.write_timing(self.timing)

    # ---- the end -----------------------------------------------------------------------------
    def finish(self) -> RunResult:
        """The `RunResult` (best / last / selected accuracy, the per-sample view kept for the label
        issues, the noise-rate estimate), and the run folder's result files."""
        log, metrics = self.log, self.log.metrics
        if log.snapshot is None:  # a checkpoint from before label snapshots: the final per-sample view
            tracked = self.track_training_set()
            noise_model = fit_run_noise_model(self.config, tracked.losses[self.trained])
            log.snapshot = {"epoch": metrics[-1]["epoch"], **epoch_view(tracked, noise_model, self.trained_np, None)}
        val_accs = [row["val_acc"] for row in metrics]
        best_index = int(np.argmax(val_accs))
        chosen = selected_epoch(metrics)
        learning_end = self.learning_end(metrics) or metrics[-1]["epoch"]
        self.timing.stop()
        result = RunResult(
            config=self.config, method=self.method, metrics=metrics,
            best_val_acc=val_accs[best_index], last_val_acc=val_accs[-1], best_epoch=metrics[best_index]["epoch"],
            **per_sample_results(log.snapshot, self.dataset, self.labels, self.holdout_np),
            run_dir=self.run_path, model=self.model, wall_time_s=self.timing.total_s(),
            epoch_time_s=self.timing.epoch_times(), selected_epoch=chosen,
            selected_val_acc=None if chosen is None else next(r["val_acc"] for r in metrics if r["epoch"] == chosen),
            label_issues_epoch=int(log.snapshot["epoch"]),
            estimated_noise_rate=estimate_noise_rate(metrics, learning_end),
            bootstrap_start_epoch=next((int(r["epoch"]) for r in metrics if r["bootstrapping"]), None),
            selected_model_state=log.selected_state,
        )
        if self.run_folder is not None:
            self.run_folder.write_metrics(metrics)
            self.run_folder.write_label_issues(result)
            self.run_folder.write_result(result.summary())
            self.run_folder.write_timing(self.timing)
        return result


def tracking_pass(tracked: Tracked, labels: torch.Tensor, trained: torch.Tensor, with_targets: bool) -> tuple:
    """What `LossCorrection.observe` takes of a tracking pass for the samples trained on: their
    losses, and (for ``--bootstrap-forward tracked``) their logits and labels."""
    if not with_targets:
        return tracked.losses[trained], None, None
    return tracked.losses[trained], tracked.logits[trained], labels[trained]


def epoch_view(tracked: Tracked, noise_model: Any, trained: np.ndarray, val_tracked: Optional[Tracked]) -> dict:
    """One epoch's per-sample view, as tensors (a checkpoint holds it): every training sample's
    loss, P(noisy) and predicted class; the noise-rate estimate and the separation of the
    samples the noise model was fitted on; and the same per-sample values for the validation
    rows of a user's file (`val_tracked`)."""
    losses = tracked.losses.cpu().numpy()
    p_noisy = noise_model.posterior(losses)
    view = {"losses": tracked.losses.cpu(), "p_noisy": torch.from_numpy(p_noisy), "predictions": tracked.predictions.cpu(),
            "flagged_share": flagged_share(p_noisy[trained]),
            "separation": separation(p_noisy[trained], losses[trained]),
            "val_losses": None, "val_p_noisy": None, "val_predictions": None}
    if val_tracked is not None:
        view.update(val_losses=val_tracked.losses.cpu(), val_predictions=val_tracked.predictions.cpu(),
                    val_p_noisy=torch.from_numpy(noise_model.posterior(val_tracked.losses.cpu().numpy())))
    return view


def per_sample_results(view: dict, dataset: Dataset, labels: NoisyLabels, holdout: np.ndarray) -> dict:
    """The per-sample fields of a `RunResult` from the view kept for the label issues (see
    `epoch_view`): P(noisy), loss and prediction of every training sample, the samples' rows in the
    user's file, which were held out, and the validation rows of the user's file scored the same
    way. Shared by `train` and `latentmix detect` (which rebuilds them from a checkpoint)."""
    clean_known = dataset.train_labels_clean
    noisy = labels.labels.cpu().numpy()
    fields_ = {
        "p_noisy": _numpy(view["p_noisy"]), "losses": _numpy(view["losses"]), "predictions": _numpy(view["predictions"]),
        "noisy_labels": noisy, "is_noisy": labels.is_noisy.cpu().numpy() if clean_known else None,
        "clean_labels": dataset.train_labels.cpu().numpy() if clean_known else None, "num_classes": dataset.num_classes,
        "sample_rows": dataset.train_rows.cpu().numpy() if dataset.train_rows is not None else None,
        "holdout": np.isin(np.arange(len(noisy)), holdout) if len(holdout) else None, "extra_rows": None,
        "sample_names": dataset.sample_names,
    }
    if view.get("val_losses") is not None:
        given = dataset.val_given_labels.cpu().numpy()
        extra = {"index": dataset.val_rows.cpu().numpy() if dataset.val_rows is not None else np.arange(len(given)),
                 "split": np.full(len(given), "val"), "given_label": given, "p_noisy": _numpy(view["val_p_noisy"]),
                 "loss": _numpy(view["val_losses"]), "predicted_label": _numpy(view["val_predictions"])}
        if clean_known:
            extra["truly_noisy"] = (given != dataset.val_labels.cpu().numpy()).astype(int)
        fields_["extra_rows"] = extra
    return fields_


def run_holdout(config: RunConfig, protocol: Protocol, dataset: Dataset, labels: NoisyLabels) -> tuple[np.ndarray, np.ndarray]:
    """Positions (trained on, held out) of the run's noisy validation split: the same samples for
    every method at a given noise seed."""
    return holdout_split(labels.labels.numpy(), resolve_val_split(config, protocol, dataset),
                         seed=config.seed if config.noise_seed is None else config.noise_seed)


def label_view_improves(current: Optional[dict], candidate: dict, select_acc: Optional[float], improved: bool) -> bool:
    """Whether an epoch's per-sample view replaces the one kept for the label issues: the view of
    the epoch of the best noisy-validation accuracy (`improved`: before the wrong labels are
    learnt) when the run has a selection signal, else the best-separated one."""
    if current is None:
        return True
    if select_acc is not None:
        return improved
    return candidate["separation"] > current["separation"]


def add_posteriors(sums: Optional[dict], view: dict) -> dict:
    """Running sums of each tracked epoch's P(noisy): the training samples' and those of a user's
    validation rows (`epoch_view`), and how many epochs went in."""
    val = view.get("val_p_noisy")
    if sums is None:
        return {"epochs": 1, "p_noisy": view["p_noisy"].clone(), "val_p_noisy": None if val is None else val.clone()}
    return {"epochs": sums["epochs"] + 1, "p_noisy": sums["p_noisy"] + view["p_noisy"],
            "val_p_noisy": None if val is None or sums["val_p_noisy"] is None else sums["val_p_noisy"] + val}


def mean_posteriors(sums: dict) -> dict:
    """Each sample's P(noisy) averaged over the epochs summed in `sums` (`add_posteriors`).

    Why a mean over epochs for the label issues: one epoch's posterior carries that epoch's noise
    (which samples the network happens to get right); the samples it flags epoch after epoch are
    the wrong labels, as in the training-dynamics scores of Pleiss et al. 2020 (AUM) and
    Swayamdipta et al. 2020 (data maps). Measured against the kept epoch's alone on 36 runs
    (benchmarks/label_epoch_combine.py, docs/robust-defaults.md): Fashion-MNIST 1k / 4k +0.9 to
    +4.0 AUC points, above even the run's best single epoch; generated data -0.7 to +0.7, except
    1k at 60% noise (-2.0 / -1.5), where the network learns slowly and its first epochs say little."""
    count = sums["epochs"]
    return {"p_noisy": sums["p_noisy"] / count,
            "val_p_noisy": None if sums["val_p_noisy"] is None else sums["val_p_noisy"] / count}


def first_milestone(protocol: Protocol) -> Optional[int]:
    """The first lr decay: the automatic warm-up ends there at the latest (memorisation speeds up
    after it; [A] starts bootstrapping 5 epochs after it)."""
    return protocol.milestones[0] if protocol.milestones else None


def resolve_warmup(config: RunConfig, method: Method, protocol: Protocol) -> Optional[int]:
    """Epochs of plain mixup before bootstrapping, or None for the automatic rule
    (`latentmix.selection.early_learning_end`). An explicit number (`--warmup-epochs`, or the
    method's) is taken as given, never rescaled; else the protocol's (scaled with --epochs)."""
    if config.warmup_epochs == "auto":
        return None
    return protocol.warmup_epochs if method.warmup_epochs is None else method.warmup_epochs


def resolve_val_split(config: RunConfig, protocol: Protocol, dataset: Dataset) -> float:
    """The fraction of the training set to hold out, with its noisy labels, for checkpoint
    selection. None when the data loader already held out `--val-split` of a user's file as its
    validation set (that split is the noisy validation set); else `--val-split`, or the protocol's
    (0: the user's validation set, or none for the paper's test sets)."""
    if dataset.info.get("val_source") == "split":
        return 0.0
    return float(config.val_split) if config.val_split is not None else protocol.val_split


def _numpy(value: Any) -> np.ndarray:
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def tracks_at(epoch: int, config: RunConfig, method: Method, protocol: Protocol) -> bool:
    """Whether epoch `epoch` ends with a pass over the training set: every epoch for
    loss-correcting methods (the noise model needs fresh losses), else every `track_every`
    epochs and always at the last one."""
    if config.track_every < 1:
        raise ConfigError(f"track_every must be >= 1, got {config.track_every}")
    return method.corrects or epoch % config.track_every == 0 or epoch == protocol.epochs


def fit_run_noise_model(config: RunConfig, losses: torch.Tensor):
    """Fit the run's noise model (a fresh fit every epoch, as [A] does) on the tracked losses.
    Non-finite losses mean the training diverged (the settings and inputs were checked before):
    that is what the error says, with what to change."""
    values = losses.cpu().numpy()
    bad = int((~np.isfinite(values)).sum())
    if bad:
        lr = f"{config.lr:g}" if config.lr is not None else "the protocol's"
        raise ConfigError(f"training diverged: {bad} of {values.size} per-sample training losses are NaN/inf; "
                          f"lower the learning rate (--lr / lr, now {lr}) or check the inputs' scale")
    options = {"lookup": config.posterior_lookup} if config.noise_model == "beta" else {}
    return fit_noise_model(values, kind=config.noise_model, **options)


def build_optimizer(optimizer: Any, scheduler: Any, model: nn.Module, protocol: Protocol) -> tuple[Any, Any]:
    """The run's optimizer and lr scheduler. Default: SGD with the protocol's momentum and weight
    decay (its lr set per epoch by `lr_at_epoch`), no scheduler. A given optimizer may be an
    instance over `model`'s parameters or a factory ``params -> optimizer``; a scheduler an instance
    over that optimizer or a factory ``optimizer -> scheduler``."""
    if optimizer is None:
        optimizer = torch.optim.SGD(model.parameters(), lr=protocol.lr, momentum=protocol.momentum,
                                    weight_decay=protocol.weight_decay)
    elif not isinstance(optimizer, torch.optim.Optimizer):
        if not callable(optimizer):
            raise ConfigError(f"optimizer must be a torch.optim.Optimizer or a factory taking the model's parameters, "
                              f"got {type(optimizer).__name__}")
        optimizer = optimizer(model.parameters())
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(f"the optimizer factory returned a {type(optimizer).__name__}, not a torch.optim.Optimizer")
    owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if not any(id(p) in owned for p in model.parameters()):
        raise ConfigError("the optimizer holds none of the model's parameters: build it on model.parameters(), or pass "
                          "a factory, e.g. optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3)")
    if scheduler is not None:
        if callable(scheduler) and not hasattr(scheduler, "step"):
            scheduler = scheduler(optimizer)
        if not (hasattr(scheduler, "step") and hasattr(scheduler, "state_dict")):
            raise ConfigError(f"scheduler must be an lr scheduler (with step() and state_dict()) or a factory taking "
                              f"the optimizer, got {type(scheduler).__name__}")
        if getattr(scheduler, "optimizer", optimizer) is not optimizer:
            raise ConfigError("the scheduler was built on another optimizer than the run's: pass a factory, e.g. "
                              "scheduler=lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, 10)")
    return optimizer, scheduler


def describe_optimizer(optimizer: Any, scheduler: Any) -> dict:
    """A user's optimizer and scheduler as the run record keeps them (a resume must use the same)."""
    defaults = {key: value for key, value in optimizer.defaults.items() if isinstance(value, (int, float, str, bool))}
    return {"class": type(optimizer).__name__, "defaults": defaults,
            "scheduler": None if scheduler is None else type(scheduler).__name__}


def _restore_checkpoint(state: dict, model: nn.Module, optimizer: torch.optim.Optimizer, streams: RunStreams,
                        run_folder: RunFolder) -> None:
    """Model, optimizer and random streams from a verified checkpoint; a checkpoint that does not
    fit this model (another architecture or width) is a clear error, not a traceback."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{run_folder.file(CHECKPOINT_NAME)} does not fit this model ({first_line}); resume with "
                          "the run's model, or pass --overwrite") from None
    streams.load_state_dict(state["streams"])


def _progress_bar(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    # disable=None: no bar where stderr is no terminal (a log file would get a line of escape codes per update)
    return tqdm(iterable, desc=desc, unit="epoch", leave=False, dynamic_ncols=True, disable=None)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        if isinstance(value, dict):
            return {str(k): _jsonable(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_jsonable(v) for v in value]
        return repr(value)
