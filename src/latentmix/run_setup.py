"""One run set up from its config, the same way for every command (`build_run`): the data, its
checks, the training labels (synthetic noise or the user's), the schedule, the noisy-validation
split, the initial model and the run's random streams; and the run placed for training: device,
precision and memory format, the transforms, the optimizer, and the two objects a user's own loop
holds (`LatentMixup`, `LossCorrection`).

`latentmix train` (through `latentmix.training.Run`), `latentmix detect`, the vectorized
population and `latentmix tune` all build their runs here, so they cannot disagree on any of it.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from latentmix.config import RunConfig
from latentmix.correction import LossCorrection
from latentmix.coteaching import CoTeachingLoss
from latentmix.data import Dataset, Inputs, index_inputs, load_dataset, map_inputs
from latentmix.data.checks import check_dataset
from latentmix.distributed import DistContext, single_process
from latentmix.dividemix import REFERENCE_EPOCHS, dividemix_step
from latentmix.errors import ConfigError
from latentmix.methods import Method
from latentmix.mixing import LatentMixer, LatentMixup
from latentmix.models import build_model, model_kind
from latentmix.models.paired import PairedNetworks, paired_mix_points
from latentmix.label_files import labels_from_file
from latentmix.losses import class_shares
from latentmix.noise import ASYMMETRIC_MAPS, NoisyLabels, make_noisy_labels
from latentmix.peer_losses import peer_loss_for
from latentmix.protocols import Protocol, protocol_for, resolve_val_split, resolve_warmup
from latentmix.selection import holdout_split
from latentmix.tracking import fit_run_noise_model

# the second network of a two-network method is initialised from the run's seed plus this
SECOND_NETWORK_SEED_OFFSET = 10_000


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
    the random streams; and the run placed for training (`place_run`). `train` (through `Run`),
    `latentmix detect`, the vectorized population and `latentmix tune` all build their runs with
    `build_run`, so they cannot disagree on any of it."""

    config: RunConfig
    dataset: Dataset  # on `device`
    labels: NoisyLabels  # the training labels (and which are wrong, when known), on the CPU
    protocol: Protocol
    method: Method
    alpha: float  # of the mixing Beta(alpha, alpha): the method's, else the protocol's
    warmup: Optional[int]  # epochs before bootstrapping; None: until early learning ends
    trained: np.ndarray  # positions in the training set trained on
    holdout: np.ndarray  # positions held out with their noisy labels to select a checkpoint by
    model: nn.Module  # initialised from the run's seed (or the caller's own), on `device`
    streams: RunStreams  # data order, mixing draws, augmentation
    placed: "Placement"  # device, precision, transforms, optimizer, LatentMixup, LossCorrection

    def inputs_mixable(self) -> bool:
        """Whether layer 0 (the input) can be mixed: not when the inputs hold integer token ids."""
        return not has_integer_inputs(model_inputs_sample(self.dataset))


@dataclass(frozen=True)
class Placement:
    """A run placed for training (`place_run`): where and how its forwards run, the transforms of
    its batches, its optimizer, and the two objects its step is made of."""

    dist: DistContext  # the process group (one process: `single_process(device)`)
    amp: bool  # bf16 autocast
    channels_last: bool
    autocast: Callable  # a context-manager factory for every forward
    augment: Callable[[Inputs], Inputs]  # the training transform, drawn from the augmentation stream
    eval_transform: Callable[[Inputs], Inputs]
    track_transform: Callable[[Inputs], Inputs]  # the tracking pass's (the training one, as [A], or eval)
    forward_model: nn.Module  # the un-mixed forwards (compiled with --compile)
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a user's lr scheduler, or None (the protocol's step schedule)
    own_schedule: bool  # the user's optimizer or scheduler: the protocol's lr schedule is off
    mixer: LatentMixer  # the model's mix points (layer 0 = the input)
    mixup: LatentMixup  # the eligible layers, alpha and the run's mixing stream
    correction: LossCorrection  # keyed by training-set position (a peer's robust loss: a subclass, `step_loss`)

    @property
    def device(self) -> torch.device:
        return self.dist.device


def build_run(config: RunConfig, *, dataset: Optional[Dataset] = None, model: Optional[nn.Module] = None,
              mix_points: Optional[Sequence] = None, device: Optional[torch.device] = None,
              distributed: Optional[DistContext] = None, optimizer: Any = None, scheduler: Any = None) -> RunSetup:
    """The run `config` describes, set up: its settings checked (`RunConfig.validate`) and its
    method resolved before the data load; its data (`load_run_dataset`, unless given) and their
    labels checked (`latentmix.data.checks.check_dataset`: two classes or more, ids inside the
    head, no validation class that training lacks), so that bad input is one clear error, not a NaN
    loss; its labels (`make_labels`), model (`build_run_model`, unless given), schedule
    (`protocol_for`, for the data set and the model's kind), noisy-validation split (`run_holdout`)
    and streams; then placed (`place_run`)
    on `distributed`'s device, else `device` (default: the CPU), with the model's `mix_points`, the
    given `optimizer` / `scheduler` (see `build_optimizer`)."""
    config.validate()
    method = config.resolved_method()
    dist = distributed or single_process(device if device is not None else torch.device("cpu"))
    if dataset is None:
        dataset = load_run_dataset(config)
    check_dataset(dataset)
    labels = make_labels(config, dataset)
    if model is None:
        model = build_run_model(config, dataset)
    if method.networks == 2 and not isinstance(model, PairedNetworks):
        # the second network: the same architecture, drawn afresh from a seed of its own
        model = PairedNetworks.from_model(model, seed=config.seed + SECOND_NETWORK_SEED_OFFSET)
        if mix_points is not None:  # the caller's names are one network's: name both places
            mix_points = paired_mix_points(mix_points)
    protocol = protocol_for(config, model_kind(model))  # a user's file: the schedule of the model's kind
    trained, holdout = run_holdout(config, protocol, dataset, labels)
    dataset, model = dataset.to(dist.device), model.to(dist.device)
    streams = RunStreams.from_seed(config.seed, dist.device)
    alpha = protocol.alpha if method.alpha is None else method.alpha
    placed = place_run(config, method, protocol, dataset, model, streams, alpha, len(labels.labels), dist=dist,
                       mix_points=mix_points, optimizer=optimizer, scheduler=scheduler,
                       class_prior=run_class_prior(config, dataset, labels, trained))
    return RunSetup(config=config, dataset=dataset, labels=labels, protocol=protocol, method=method, alpha=alpha,
                    warmup=resolve_warmup(config, method, protocol), trained=trained, holdout=holdout, model=model,
                    streams=streams, placed=placed)


def place_run(config: RunConfig, method: Method, protocol: Protocol, dataset: Dataset, model: nn.Module,
              streams: RunStreams, alpha: float, num_samples: int, *, dist: DistContext,
              mix_points: Optional[Sequence] = None, optimizer: Any = None, scheduler: Any = None,
              class_prior: Optional[torch.Tensor] = None) -> Placement:
    """The run placed for training: its mix points and eligible layers checked (layer 0 only
    where the inputs can be interpolated), bf16 autocast and channels-last by default on a GPU
    only, the transforms, the compiled forward (``--compile``: the un-mixed forwards; the mixed one
    stays eager because its hooks change from step to step), the optimizer, `LatentMixup` drawing
    from the run's mixing stream and `LossCorrection` (or the method's robust loss, `step_loss`)
    fitting the run's noise model. Data-parallel runs wrap the mixer in DDP after a checkpoint is
    loaded (`latentmix.training.Run`)."""
    dist.check_batch_size(protocol.batch_size)
    mixer = LatentMixer(model, mix_points)
    eligible_layers = mixer.check_layers(method.mix_layers)
    if 0 in eligible_layers and has_integer_inputs(model_inputs_sample(dataset)):
        raise ConfigError(
            f"method {method.name} mixes layer 0 (the input), but the inputs include integer token ids, which "
            f"cannot be interpolated; choose hidden layers with --layers (layers: {mixer.describe_layers()})"
        )
    use_cuda = dist.device.type == "cuda"
    amp = use_cuda if config.amp is None else config.amp
    # bf16 autocast halves activation traffic on tensor-core GPUs; on the CPU it only slows us down.
    autocast = (lambda: torch.autocast(dist.device.type, dtype=torch.bfloat16)) if amp else nullcontext
    channels_last = use_cuda if config.channels_last is None else config.channels_last
    if channels_last:
        model.to(memory_format=torch.channels_last)
    augment, eval_transform = run_transforms(dataset, streams, channels_last)
    own_schedule = optimizer is not None or scheduler is not None  # the user's: the protocol's lr schedule is off
    optimizer, scheduler = build_optimizer(optimizer, scheduler, model, protocol)
    correction = step_loss(config, method, num_samples, dist, epochs=protocol.epochs, class_prior=class_prior)
    return Placement(
        dist=dist, amp=amp, channels_last=channels_last, autocast=autocast, augment=augment,
        eval_transform=eval_transform, track_transform=augment if config.track_transform == "train" else eval_transform,
        forward_model=torch.compile(model) if config.compile else model, optimizer=optimizer, scheduler=scheduler,
        own_schedule=own_schedule, mixer=mixer,
        mixup=LatentMixup(mixer, layers=eligible_layers, alpha=alpha, seed=streams.mixing), correction=correction,
    )


def run_class_prior(config: RunConfig, dataset: Dataset, labels: NoisyLabels, trained: np.ndarray) -> Optional[torch.Tensor]:
    """The prior of the bootstrapping regularizer (``--class-prior``): the class distribution of the
    training data (Tanaka et al. 2018's p, "a distribution of classes among all training data"),
    over the samples the run trains on (exactly balanced classes: [A]'s uniform prior,
    `LossCorrection`); None for the uniform one.

    Where it comes from: when the run draws the noise itself (``--noise`` on a data set's labels),
    the data set's own labels give it exactly; labels as given (a file's, a noisy-labels file) are
    the only estimate a user has (`latentmix.losses.class_shares`). Why not always uniform: the
    regularizer pulls the batch-mean prediction toward its prior, and on 10:1 imbalanced data (the
    robustness suite's `imbalanced`, 20% symmetric noise) the uniform prior drags the predictions
    toward the rare classes once bootstrapping starts: test accuracy falls from 92% to 84% while
    plain CE holds 90%; with the given labels' shares the same runs end at 93% (docs/robust-defaults.md,
    "The regularizer's prior", for what it costs where the classes are balanced)."""
    if config.class_prior == "uniform":
        return None
    drawn_here = not config.noisy_labels_file and dataset.given_noisy_labels is None
    source = dataset.train_labels if drawn_here else labels.labels
    return class_shares(source.cpu()[torch.as_tensor(trained)], dataset.num_classes)


def step_loss(config: RunConfig, method: Method, num_samples: int, dist: DistContext,
              epochs: Optional[int] = None, class_prior: Optional[torch.Tensor] = None) -> LossCorrection:
    """The object that gives the step its targets and loss, chosen by the method's fields: the
    cross-entropy's `LossCorrection` (bootstrapping, or plain mixed CE), a peer's robust loss
    (`latentmix.peer_losses.peer_loss_for`), Co-teaching's small-loss exchange between the two
    networks (`latentmix.coteaching.CoTeachingLoss`, for a method with a selection), or DivideMix's
    step (`latentmix.dividemix`, its rampup scaled to the run's `epochs`). All fit the run's noise
    model to the tracked losses."""
    fit = lambda losses: fit_run_noise_model(config, losses)  # noqa: E731 - the run's own fit
    if method.selects:  # Co-teaching: the pair's small-loss exchange, ranked on an un-mixed forward under mixup
        if dist.world_size > 1:
            raise ConfigError(f"method {method.name} ranks each batch's losses to select its small-loss share, and "
                              "data-parallel runs would rank each process's shard instead: train it on one device")
        return CoTeachingLoss(num_samples, select_from="unmixed" if method.mixes else "output",
                              noise_model=config.noise_model, lookup=config.posterior_lookup, fit=fit)
    if method.loss == "dividemix":
        if dist.world_size > 1:
            raise ConfigError(f"method {method.name} keeps each sample's division on the process that trains it, and "
                              "data-parallel runs spread the samples over processes: train it on one device")
        # the paper's warm-up penalty for asymmetric noise: where the run's own noise is class-dependent
        asymmetric = config.noise_kind == "asymmetric" and not config.noisy_labels_file
        return dividemix_step(method.loss_settings, num_samples, epochs=epochs or REFERENCE_EPOCHS,
                              confidence_penalty=asymmetric, noise_model=config.noise_model,
                              lookup=config.posterior_lookup, fit=fit)
    if method.robust_loss:
        if method.loss == "elr" and dist.world_size > 1:
            raise ConfigError(f"method {method.name} keeps a target per sample on the process that trains it, and "
                              "data-parallel runs spread the samples over processes: train it on one device")
        return peer_loss_for(method, num_samples, noise_model=config.noise_model, lookup=config.posterior_lookup,
                             fit=fit)
    return LossCorrection(
        num_samples, correction=method.correction, reg_weight=method.reg_weight, class_prior=class_prior,
        bootstrap_forward=config.bootstrap_forward, soft_side_weighting=method.soft_side_weighting,
        noise_model=config.noise_model, lookup=config.posterior_lookup, fit=fit,
    )


def run_transforms(dataset: Dataset, streams: RunStreams, channels_last: bool) -> tuple[Callable, Callable]:
    """The training transform (augmentation, drawn from the run's augmentation stream) and the
    evaluation transform; channels-last images for the GPU's convolutions."""
    eval_transform = dataset.eval_transform or (lambda inputs: inputs)
    train_transform = dataset.train_transform or (lambda inputs, generator: inputs)

    def augment(inputs: Inputs) -> Inputs:
        return train_transform(inputs, streams.augment)

    if not channels_last:
        return augment, eval_transform

    def to_channels_last(inputs: Inputs) -> Inputs:
        return map_inputs(inputs, lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t)

    return (lambda inputs: to_channels_last(augment(inputs))), (lambda inputs: to_channels_last(eval_transform(inputs)))


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
