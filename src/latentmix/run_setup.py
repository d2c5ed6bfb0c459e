"""One run set up from its config, the same way for every command (`build_run`): the data, its
checks, the training labels (synthetic noise or the user's), the schedule, the noisy-validation
split, the initial model and the run's random streams; and the run's optimizer.

`latentmix train` (through `latentmix.training.Run`), `latentmix detect`, the vectorized
population and `latentmix tune` all build their runs here, so they cannot disagree on any of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from latentmix.config import RunConfig
from latentmix.data.checks import check_dataset
from latentmix.data import Dataset, Inputs, index_inputs, load_dataset, map_inputs
from latentmix.errors import ConfigError
from latentmix.methods import Method
from latentmix.noise import ASYMMETRIC_MAPS, NoisyLabels, labels_from_file, make_noisy_labels
from latentmix.protocols import Protocol, protocol_for, resolve_val_split, resolve_warmup
from latentmix.selection import holdout_split


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
    """The run `config` describes, set up: its settings checked (`RunConfig.validate`) and its
    method resolved before the data load; its data (`load_run_dataset`, unless given) and their
    labels checked (`latentmix.data.checks.check_dataset`: two classes or more, ids inside the
    head, no validation class that training lacks), so that bad input is one clear error, not a NaN
    loss; its labels (`make_labels`), schedule (`protocol_for`), noisy-validation split
    (`run_holdout`), model (`build_run_model`, unless given) and streams, with the data, the model
    and the augmentation stream on `device`."""
    config.validate()
    method = config.resolved_method()
    if dataset is None:
        dataset = load_run_dataset(config)
    protocol = protocol_for(config)
    check_dataset(dataset)
    labels = make_labels(config, dataset)
    trained, holdout = run_holdout(config, protocol, dataset, labels)
    if model is None:
        model = build_run_model(config, dataset)
    return RunSetup(
        config=config, dataset=dataset.to(device), labels=labels, protocol=protocol, method=method,
        alpha=protocol.alpha if method.alpha is None else method.alpha, warmup=resolve_warmup(config, method, protocol),
        trained=trained, holdout=holdout, model=model.to(device), streams=RunStreams.from_seed(config.seed, device),
    )


def run_holdout(config: RunConfig, protocol: Protocol, dataset: Dataset, labels: NoisyLabels) -> tuple[np.ndarray, np.ndarray]:
    """Positions (trained on, held out) of the run's noisy validation split: the same samples for
    every method at a given noise seed."""
    return holdout_split(labels.labels.numpy(), resolve_val_split(config, protocol, dataset),
                         seed=config.seed if config.noise_seed is None else config.noise_seed)


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
