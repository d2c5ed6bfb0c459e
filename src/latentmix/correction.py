"""Loss correction for your own training loop (Arazo et al. 2019, "Unsupervised Label Noise
Modeling and Loss Correction"), keyed by sample index, assuming nothing of our trainer or data.

The method, as the reference's ``train.py`` runs it and `latentmix.training.train` runs it:

    after every epoch (warm-up included):
        a tracking pass: each sample's cross-entropy against its given label   (`track_losses`)
        a fresh two-component Beta mixture over those losses -> P(noisy)      (`LossCorrection.end_epoch`)
    per batch, once the warm-up is over:
        the model's own prediction on the un-mixed batch, and each sample's P(noisy) from its loss
        now, give target rows t_i = (1 - w_i) onehot(y_i) + w_i b_i          (`LossCorrection.batch_targets`)
        loss = CE(mixed logits, t mixed like the hidden state) + reg_weight * KL(prior || mean prediction)
                                                                              (`LossCorrection.loss`)
    during the warm-up the loss is plain mixed cross-entropy.

The math lives in `latentmix.losses` (`bootstrap_targets`, `bootstrapping_objective`, `side_lam`)
and `latentmix.noise_model` (`fit_noise_model`); this module holds the state between the calls.

Example (a DataLoader over anything, yielding ``(inputs, labels, index)``)::

    correction = LossCorrection(len(train_set), correction="hard", warmup_epochs=10)
    for epoch in range(epochs):
        for x, y, index in loader:
            targets = correction.batch_targets(model, x, y, index)   # None during the warm-up
            logits, plan = mixup(x)
            loss = correction.loss(logits, y, plan, targets)
            ...
        tracked = track_losses(model, tracking_loader)
        correction.observe(tracked.index, tracked.losses, tracked.logits)
        correction.end_epoch()
    correction.p_noisy    # (N,) P(label is wrong) of every sample
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentmix.errors import ConfigError, TrainingDiverged
from latentmix.losses import bootstrap_targets, bootstrapped_mixup_loss, prior_regularizer
from latentmix.methods import CORRECTIONS, SIDE_WEIGHTINGS
from latentmix.mixing import NO_MIX, MixPlan
from latentmix.noise_model import NOISE_MODEL_KINDS, fit_noise_model, noise_model_from_state_dict

__all__ = ["LossCorrection", "TrackedLosses", "track_losses", "eval_mode", "P_NOISY_CLAMP", "BOOTSTRAP_FORWARDS"]

P_NOISY_CLAMP = (1e-4, 1.0 - 1e-4)  # [A] clamps each batch's P(noisy) to this range
BOOTSTRAP_FORWARDS = ("reference", "single", "tracked")
# the transform of the tracking pass: the training one (augmented, as [A] tracks) or the evaluation one
TRACK_TRANSFORMS = ("train", "eval")


# --------------------------------------------------------------------------------------------------
# Model modes


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the block, then every module back in the mode it had before.

    The switch goes through the model's own ``eval()`` and ``train(mode)``, so a model that
    overrides ``train`` keeps its own rule: the fine-tuning idiom ``def train(self, mode=True):
    super().train(mode); self.backbone_bn.eval()`` leaves its frozen batch norm frozen. On exit,
    after ``model.train(was_training)``, any module whose flag still differs from the one it had on
    entry (a submodule the caller had set apart by hand) gets that flag back, so the block changes
    no module's mode.

    Cost: ``model.eval()``/``model.train()`` walk the tree through `nn.Module.__setattr__` (about
    0.1 ms each for the spiral MLP, a tenth of its training step, and bootstrapping switches twice
    per batch). A tree in which no module overrides ``train`` or ``eval`` would get exactly the
    same flags from them, so there the flags are set directly, on a walk of the tree without
    `named_modules`' name building.
    """
    modules = _all_modules(model)
    previous = [module.training for module in modules]
    plain = all(type(module).train is _MODULE_TRAIN and type(module).eval is _MODULE_EVAL for module in modules)
    if plain:
        for module in modules:
            module.__dict__["training"] = False
    else:
        model.eval()
    try:
        yield
    finally:
        if not plain:
            model.train(previous[0])
        for module, was_training in zip(modules, previous):
            if module.training != was_training:
                module.__dict__["training"] = was_training


_MODULE_TRAIN, _MODULE_EVAL = nn.Module.train, nn.Module.eval


def _all_modules(model: nn.Module) -> list[nn.Module]:
    """`model` and every submodule (a module shared by two parents may appear twice), as
    ``list(model.modules())`` without building the names."""
    found, pending = [], [model]
    while pending:
        module = pending.pop()
        found.append(module)
        for child in module._modules.values():
            if child is not None:
                pending.append(child)
    return found


# --------------------------------------------------------------------------------------------------
# The tracking pass


@dataclass
class TrackedLosses:
    """Per-sample results of a tracking pass, in the order the loader gave the samples."""

    index: torch.Tensor  # (n,) int64 sample indices
    losses: torch.Tensor  # (n,) float32 cross-entropy against the given label
    logits: torch.Tensor  # (n, C) float32
    labels: torch.Tensor  # (n,) int64 the given labels

    @property
    def predictions(self) -> torch.Tensor:
        """(n,) argmax class."""
        return self.logits.argmax(dim=1)


def _unpack_triple(batch: Any) -> tuple[Any, torch.Tensor, torch.Tensor]:
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        return batch[0], batch[1], batch[2]
    raise ConfigError(
        f"track_losses: a batch must be (inputs, labels, index), got {type(batch).__name__}"
        f"{f' of length {len(batch)}' if isinstance(batch, (tuple, list)) else ''}; add the sample index to your "
        "Dataset (e.g. TensorDataset(x, y, torch.arange(len(y)))) or pass unpack=lambda batch: (inputs, labels, index)"
    )


def _to_device(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device, non_blocking=True)
    if isinstance(inputs, Mapping):
        return {key: _to_device(value, device) for key, value in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_to_device(value, device) for value in inputs)
    return inputs


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def track_losses(
    model: nn.Module, loader: Iterable, *, device: Optional[torch.device | str] = None,
    unpack: Callable[[Any], tuple[Any, torch.Tensor, torch.Tensor]] = _unpack_triple,
    autocast: Callable = nullcontext,
) -> TrackedLosses:
    """[A] ``track_training_loss`` over any loader: every batch once, in eval mode (`eval_mode`),
    without gradients, each sample's cross-entropy against its given label.

    Args:
        model: the model being trained (any `nn.Module`).
        loader: any iterable of batches, e.g. a `torch.utils.data.DataLoader`; each batch is
            ``(inputs, labels, index)`` (or whatever `unpack` turns it into), index = the samples'
            positions 0..N-1 in the training set. [A] passes the training set through the
            *training* transform (augmented); shuffling does not matter.
        device: where the forward runs (default: the model's parameters' device).
        autocast: a context manager factory for the forwards (e.g. bf16 autocast).

    Returns `TrackedLosses` (index (n,), losses (n,), logits (n, C), labels (n,), on `device`). Under
    ``torch.distributed`` (each process tracking its part, e.g. a `DistributedSampler`) the parts of
    all processes are gathered, so that every process fits the same noise model.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    indices, losses, all_logits, all_labels = [], [], [], []
    with eval_mode(model):
        for batch in loader:
            inputs, labels, index = unpack(batch)
            labels = torch.as_tensor(labels).to(device)
            with autocast():
                logits = model(_to_device(inputs, device))
            logits = logits.float()
            losses.append(F.cross_entropy(logits, labels, reduction="none"))
            all_logits.append(logits)
            all_labels.append(labels.long())
            indices.append(torch.as_tensor(index).to(device=device, dtype=torch.int64))
    if not indices:
        raise ConfigError("track_losses: the loader gave no batches; pass the loader over the training set")
    tracked = TrackedLosses(torch.cat(indices), torch.cat(losses), torch.cat(all_logits), torch.cat(all_labels))
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        from latentmix.distributed import DistContext

        context = DistContext(rank=torch.distributed.get_rank(), world_size=torch.distributed.get_world_size(),
                              device=device)
        tracked = TrackedLosses(*(context.all_gather(part) for part in (tracked.index, tracked.losses, tracked.logits,
                                                                         tracked.labels)))
    return tracked


# --------------------------------------------------------------------------------------------------
# The per-batch bootstrapping inputs


@torch.no_grad()
def bootstrapping_inputs(
    model: nn.Module, x: Any, y: torch.Tensor, noise_model: Any, mode: str, autocast: Callable = nullcontext,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The detached bootstrapping target (logits on the un-mixed batch) and each sample's P(noisy).

    "reference" ([A] train.py): a train-mode forward for the target (its batch-norm statistics
    update as in the reference) and an eval-mode forward whose per-sample loss gives P(noisy).
    "single": one eval-mode forward for both, a third cheaper per step; its effect on accuracy is
    measured in benchmarks/README.md. ("tracked" needs no forward: the rows come from the last
    tracking pass, see `LossCorrection.batch_targets`.)
    P(noisy) is clamped to [1e-4, 1 - 1e-4] as in the reference.
    """
    if mode == "reference":
        with autocast():
            clean_logits = model(x).float()
        with eval_mode(model):
            with autocast():
                eval_logits = model(x).float()
    elif mode == "single":
        with eval_mode(model):
            with autocast():
                clean_logits = eval_logits = model(x).float()
    else:
        raise ConfigError(f"unknown bootstrap_forward {mode!r}: choose {', '.join(BOOTSTRAP_FORWARDS)}")
    losses = F.cross_entropy(eval_logits, y, reduction="none")
    return clean_logits, noise_model.posterior_torch(losses, clamp=P_NOISY_CLAMP)


def check_finite_losses(values: np.ndarray, fix: str = "lower the learning rate or check the inputs' scale") -> None:
    """Non-finite tracked losses mean the training diverged: say so, with what to change."""
    bad = int((~np.isfinite(values)).sum())
    if bad:
        raise TrainingDiverged(f"training diverged: {bad} of {values.size} per-sample training losses are NaN/inf; {fix}")


# --------------------------------------------------------------------------------------------------
# The correction


class LossCorrection:
    """Dynamic bootstrapping with a Beta-mixture noise model (Arazo et al. 2019), for any loop.

    Keyed by sample index 0..N-1: the loop hands it the per-sample losses of a tracking pass
    (`observe`, e.g. from `track_losses`), calls `end_epoch` after each epoch, and per batch asks
    for the bootstrapping targets (`batch_targets`) and the loss (`loss`). The shape is Lightning's
    ``StochasticWeightAveraging``: it changes behaviour from an epoch on and keeps its own state
    (`state_dict`/`load_state_dict` for an exact resume).

    Args:
        num_samples: N, the size of the training set.
        correction: "hard" (M-DYR-H: the model's own argmax as the target), "soft" (M-DYR-S:
            its softmax), or "none" (never bootstraps: only P(noisy) per sample, for plain mixup).
        reg_weight: weight of the prior regularizer added to the bootstrapping loss ([A]: 1.0).
        class_prior: the regularizer's prior, C class shares (or counts, normalised here), e.g.
            ``class_shares(train_labels, C)`` (`latentmix.losses`), what ``latentmix train`` uses;
            None: uniform, as [A] (right for balanced classes only: on 10:1 imbalanced data it
            pulls the predictions toward the rare classes, docs/robust-defaults.md).
        warmup_epochs: bootstrapping starts after this many `end_epoch` calls ([A]: 105 of 300).
            None: the caller's switch, ``correction.enabled = True``, decides (off until set).
            Setting `enabled` overrides the warm-up either way.
        bootstrap_forward: where `batch_targets` gets the model's prediction and P(noisy):
            "reference" ([A]: a train-mode forward for the target, an eval-mode one for the loss
            that gives P(noisy)), "single" (one eval-mode forward for both), "tracked" (no forward:
            the last tracking pass's logits and losses, one epoch old; `observe` needs the logits,
            and with the labels too it builds every sample's target row once per epoch).
        soft_side_weighting: "lam" ([A]'s current code) or "half" (its 2019 release) for "soft".
        noise_model: "beta" ([A]) or "gaussian" (DivideMix style), `latentmix.noise_model`.
        lookup: the Beta posterior table's look-up, "monotone" (default) or "reference".
        fit: your own fit, losses (n,) float32 tensor -> a fitted model with `posterior`,
            `posterior_torch` and `state_dict` (default: `fit_noise_model` of `noise_model` and
            `lookup`, after checking the losses are finite).

    Attributes:
        noise_model: the fitted model bootstrapping uses (None before the first `end_epoch`); a fit
            that separates nothing (every sample the same P(noisy), `latentmix.selection.separation`
            0) would switch the correction off, so the last fit that separated is kept.
        last_fit: the latest fit, adopted or not.
        epochs_done: `end_epoch` calls so far.
    """

    def __init__(
        self, num_samples: int, *, correction: str = "hard", reg_weight: float = 1.0, class_prior: Any = None,
        warmup_epochs: Optional[int] = None, bootstrap_forward: str = "reference", soft_side_weighting: str = "lam",
        noise_model: str = "beta", lookup: str = "monotone", fit: Optional[Callable[[torch.Tensor], Any]] = None,
    ):
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 2:
            raise ConfigError(f"LossCorrection num_samples must be the training set's size (>= 2), got {num_samples!r}")
        _check_choice("correction", correction, CORRECTIONS)
        _check_choice("bootstrap_forward", bootstrap_forward, BOOTSTRAP_FORWARDS)
        _check_choice("soft_side_weighting", soft_side_weighting, SIDE_WEIGHTINGS)
        _check_choice("noise_model", noise_model, NOISE_MODEL_KINDS)
        if isinstance(reg_weight, bool) or not isinstance(reg_weight, (int, float)) or not np.isfinite(reg_weight) \
                or reg_weight < 0:
            raise ConfigError(f"LossCorrection reg_weight must be a finite number >= 0 ([A]: 1.0), got {reg_weight!r}")
        if warmup_epochs is not None and (isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, (int, np.integer))
                                          or warmup_epochs < 0):
            raise ConfigError(f"LossCorrection warmup_epochs must be a whole number >= 0, or None for the caller's "
                              f"switch (correction.enabled = True), got {warmup_epochs!r}")
        self.num_samples = int(num_samples)
        self.correction = correction
        self.reg_weight = float(reg_weight)
        self.class_prior = _class_prior(class_prior)
        self.warmup_epochs = None if warmup_epochs is None else int(warmup_epochs)
        self.bootstrap_forward = bootstrap_forward
        self.soft_side_weighting = soft_side_weighting
        self.noise_model_kind = noise_model
        self.fit_options = {"lookup": lookup} if noise_model == "beta" else {}
        self.fit = fit if fit is not None else self._fit
        self._noise_model: Any = None
        self.last_fit: Any = None
        self.epochs_done = 0
        self._switch: Optional[bool] = None
        self._losses: Optional[torch.Tensor] = None  # (N,) the latest observed loss of each sample, NaN if none
        self._logits: Optional[torch.Tensor] = None  # (N, C) the latest observed logits (for "tracked")
        self._labels: Optional[torch.Tensor] = None  # (N,) the observed labels (for "tracked")
        self._target_table: Optional[torch.Tensor] = None  # (N, C) "tracked" target rows, built once per pass
        self._epoch_index: list[torch.Tensor] = []  # this epoch's observed samples, in observed order

    @property
    def noise_model(self) -> Any:
        return self._noise_model

    @noise_model.setter
    def noise_model(self, model: Any) -> None:
        self._noise_model = model
        self._target_table = None

    # -- the switch -----------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """Whether the warm-up is over: the caller's switch once set, else `warmup_epochs` epochs done."""
        if self._switch is not None:
            return self._switch
        return self.warmup_epochs is not None and self.epochs_done >= self.warmup_epochs

    @enabled.setter
    def enabled(self, value: Optional[bool]) -> None:
        self._switch = None if value is None else bool(value)

    @property
    def mixes_now(self) -> bool:
        """Whether the step mixes now (the loop sets `LatentMixup.enabled` from it each epoch):
        always here, the warm-up included (mixed cross-entropy); DivideMix's warm-up does not."""
        return True

    @property
    def bootstrapping(self) -> bool:
        """Whether batches are corrected now: past the warm-up and a noise model fitted."""
        return self.correction != "none" and self.enabled and self.noise_model is not None

    # -- per epoch ------------------------------------------------------------------------------
    def observe(self, index: Any, losses: torch.Tensor, logits: Optional[torch.Tensor] = None,
                labels: Optional[torch.Tensor] = None, *, for_fit: bool = True) -> None:
        """Record per-sample losses (n,) (and logits (n, C), given labels (n,): what
        ``bootstrap_forward="tracked"`` reads) of samples `index` (n,) from this epoch's tracking
        pass; may be called once per batch or once for the whole pass.
        ``for_fit=False`` keeps them (P(noisy), "tracked" targets) out of the next fit: a pass
        restored from a checkpoint, or redone."""
        index = torch.as_tensor(index).long().reshape(-1)
        losses = torch.as_tensor(losses).detach().float().reshape(-1)
        if index.shape != losses.shape:
            raise ConfigError(f"LossCorrection.observe: {index.numel()} indices but {losses.numel()} losses; give one "
                              "loss per sample index")
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_samples):
            raise ConfigError(f"LossCorrection.observe: sample index {int(index.min())}..{int(index.max())} is outside "
                              f"0..{self.num_samples - 1} (num_samples={self.num_samples}); index the training set "
                              "from 0, as TensorDataset(x, y, torch.arange(len(y))) does")
        if self._losses is None:
            self._losses = torch.full((self.num_samples,), float("nan"), device=losses.device)
        index = index.to(self._losses.device)
        self._losses[index] = losses.to(self._losses.device)
        if logits is not None:
            logits = logits.detach().float()
            if self._logits is None or self._logits.shape[1] != logits.shape[1]:
                self._logits = torch.zeros((self.num_samples, logits.shape[1]), device=self._losses.device)
            self._logits[index] = logits.to(self._logits.device)
        if labels is not None:
            if self._labels is None:
                self._labels = torch.zeros(self.num_samples, dtype=torch.long, device=self._losses.device)
            self._labels[index] = torch.as_tensor(labels).long().reshape(-1).to(self._labels.device)
        self._target_table = None
        if for_fit:
            self._epoch_index.append(index)

    def observe_networks(self, index: Any, losses: torch.Tensor, *, for_fit: bool = True) -> None:
        """Each network's per-sample losses (2, n) of a two-network model's tracking pass; only a
        two-network method (`latentmix.dividemix.DivideMix`) reads them."""

    def end_epoch(self) -> Any:
        """Fit a fresh noise model to the losses observed this epoch (in the order observed) and
        count the epoch. Returns the new fit (`last_fit`); `noise_model` takes it unless it
        separates nothing while an earlier fit did."""
        if not self._epoch_index:
            raise ConfigError("LossCorrection.end_epoch: no per-sample losses were observed this epoch; call "
                              "observe(index, losses) with a tracking pass (track_losses(model, loader)) first")
        index = torch.cat(self._epoch_index)
        losses = self._losses[index]
        fitted = self.fit(losses)
        values = losses.cpu().numpy()
        from latentmix.selection import separation

        if self.noise_model is None or separation(fitted.posterior(values), values) > 0:
            self.noise_model = fitted
        self.last_fit = fitted
        self.epochs_done += 1
        self._epoch_index = []
        return fitted

    def _fit(self, losses: torch.Tensor) -> Any:
        values = losses.cpu().numpy()
        check_finite_losses(values)
        return fit_noise_model(values, kind=self.noise_model_kind, **self.fit_options)

    @property
    def losses(self) -> np.ndarray:
        """(N,) float64, each sample's latest observed loss (NaN where none was observed)."""
        if self._losses is None:
            return np.full(self.num_samples, np.nan)
        return self._losses.cpu().double().numpy()

    @property
    def p_noisy(self) -> np.ndarray:
        """(N,) float64, P(label is wrong) of every sample under `noise_model` at its latest
        observed loss; NaN where no loss was observed (everywhere before the first `end_epoch`)."""
        losses = self.losses
        if self.noise_model is None:
            return np.full(self.num_samples, np.nan)
        seen = np.isfinite(losses)
        result = np.full(self.num_samples, np.nan)
        result[seen] = self.noise_model.posterior(losses[seen])
        return result

    # -- per batch ------------------------------------------------------------------------------
    def posterior(self, losses: torch.Tensor) -> torch.Tensor:
        """P(noisy) of a batch from its current per-sample losses, clamped to [1e-4, 1 - 1e-4] as
        [A] does, on the losses' device. Needs a fitted model."""
        if self.noise_model is None:
            raise ConfigError("LossCorrection.posterior: no noise model yet; call end_epoch() after a tracking pass")
        return self.noise_model.posterior_torch(losses, clamp=P_NOISY_CLAMP)

    @torch.no_grad()
    def batch_targets(self, model: nn.Module, inputs: Any, labels: torch.Tensor, index: Any = None, *,
                      autocast: Callable = nullcontext) -> Optional[torch.Tensor]:
        """The batch's un-mixed bootstrapping target rows (B, C), no gradient, or None while not
        `bootstrapping` (the warm-up: `loss` is then plain mixed cross-entropy). Call it *before*
        the mixed forward, as [A] does (its forwards update batch-norm statistics first)::

            hard: t_i = (1 - w_i) onehot(y_i) + w_i onehot(argmax p_i)
            soft: t_i = (1 - w_i) onehot(y_i) + w_i softmax(p_i)

        p = the model's logits on the un-mixed batch, w = P(noisy) (`bootstrap_forward` says from
        which forwards; "tracked" reads both from the last tracking pass at `index`).
        """
        if not self.bootstrapping:
            return None
        if self.bootstrap_forward == "tracked":
            if index is None or self._logits is None:
                raise ConfigError("LossCorrection with bootstrap_forward='tracked' needs the batch's sample index and "
                                  "a tracking pass with logits: observe(index, losses, logits)")
            index = torch.as_tensor(index).long().to(self._logits.device)
            if self._labels is not None:  # every sample's row once per pass, then a gather per batch
                if self._target_table is None:
                    self._target_table = bootstrap_targets(self._labels, self._logits, self.posterior(self._losses),
                                                           self.correction)
                return self._target_table[index].to(labels.device)
            clean_logits, p_noisy = self._logits[index], self.posterior(self._losses[index])
            return bootstrap_targets(labels, clean_logits.to(labels.device), p_noisy.to(labels.device), self.correction)
        clean_logits, p_noisy = bootstrapping_inputs(model, inputs, labels, self.noise_model, self.bootstrap_forward,
                                                     autocast)
        return bootstrap_targets(labels, clean_logits, p_noisy, self.correction)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, plan: MixPlan = NO_MIX,
             targets: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The batch's training loss on the mixed forward's `logits` (B, C).

        `targets` None (the warm-up): mixed cross-entropy ``lam CE(y) + (1 - lam) CE(y[perm])``.
        Otherwise the bootstrapping loss plus the prior regularizer, one `bootstrapping_objective`::

            L = -(1/B) sum_i sum_c m_ic log softmax(out_i)_c + reg_weight * regularizer(out),
            m_i = a t_i + (1 - a) t_perm(i),  a = lam (hard; soft "lam") or 0.5 (soft "half"),

        [A] ``train_mixUp_HardBootBeta`` / ``mixup_criterion_mixSoft`` + ``reg_loss_class``.
        """
        prior = self.class_prior
        if prior is not None:
            if prior.numel() != logits.shape[1]:
                raise ConfigError(f"LossCorrection class_prior has {prior.numel()} classes but the logits have "
                                  f"{logits.shape[1]}; give one share per class, e.g. class_shares(labels, "
                                  f"{logits.shape[1]})")
            if prior.device != logits.device:  # moved once, not every batch
                prior = self.class_prior = prior.to(logits.device)
        return bootstrapped_mixup_loss(logits, labels, plan, targets, self.correction, self.reg_weight,
                                       self.soft_side_weighting, prior)

    @staticmethod
    def regularizer(logits: torch.Tensor, prior: Any = None) -> torch.Tensor:
        """The prior regularizer alone, ``sum_c p_c log(p_c / pbar_c)`` with pbar the batch-mean
        softmax and p the class shares `prior` (None: uniform, [A] ``reg_loss_class``); `loss`
        already adds it with `reg_weight` and the object's `class_prior`."""
        return prior_regularizer(logits.float(), _class_prior(prior))

    # -- checkpointing --------------------------------------------------------------------------
    def _settings(self) -> dict:
        return {"num_samples": self.num_samples, "correction": self.correction, "noise_model": self.noise_model_kind}

    def state_dict(self) -> dict:
        """Everything a resumed loop needs: the fitted models, the epoch count, the switch, the
        latest per-sample losses and logits (tensors on the CPU and plain values)."""
        return {
            "version": 1, **self._settings(), "epochs_done": self.epochs_done, "switch": self._switch,
            "noise_model_state": None if self.noise_model is None else self.noise_model.state_dict(),
            "last_fit_state": None if self.last_fit is None else self.last_fit.state_dict(),
            "losses": None if self._losses is None else self._losses.cpu(),
            "logits": None if self._logits is None else self._logits.cpu(),
            "labels": None if self._labels is None else self._labels.cpu(),
            "epoch_index": [index.cpu() for index in self._epoch_index],
        }

    def run_state(self) -> dict:
        """What a run's checkpoint keeps of this object beside its noise model and tracked losses
        (`latentmix.training.Run` saves those itself): nothing for the correction; a peer's loss
        with per-sample state (`latentmix.peer_losses.ElrLoss`) gives its own."""
        return {}

    def load_run_state(self, state: Mapping, device: Optional[torch.device | str] = None) -> None:
        """Take back what `run_state` gave, from a run's checkpoint (nothing here)."""

    def load_state_dict(self, state: Mapping, device: Optional[torch.device | str] = None) -> None:
        """Continue from `state_dict()` (tensors moved to `device`, default CPU); refuses a state
        of another training-set size, correction or noise model."""
        for key, mine in self._settings().items():
            if state.get(key) != mine:
                raise ConfigError(f"LossCorrection.load_state_dict: the state has {key}={state.get(key)!r} but this "
                                  f"object has {key}={mine!r}; build it with the settings the state was saved with")
        self.epochs_done = int(state["epochs_done"])
        self._switch = state["switch"]
        self.noise_model = None if state["noise_model_state"] is None else noise_model_from_state_dict(state["noise_model_state"])
        self.last_fit = None if state["last_fit_state"] is None else noise_model_from_state_dict(state["last_fit_state"])
        move = (lambda t: None if t is None else t.to(device)) if device is not None else (lambda t: t)
        self._losses, self._logits, self._labels = move(state["losses"]), move(state["logits"]), move(state.get("labels"))
        self._target_table = None
        self._epoch_index = [move(index) for index in state.get("epoch_index", [])]


def _class_prior(given: Any) -> Optional[torch.Tensor]:
    """`LossCorrection`'s class_prior checked: None, or C >= 2 finite non-negative shares (or
    counts) with a positive sum, returned normalised (float32); None for equal shares."""
    if given is None:
        return None
    try:
        values = given.detach().cpu() if torch.is_tensor(given) else np.asarray(given, dtype=np.float64)
        prior = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        prior = None
    if prior is None or prior.numel() < 2 or not bool(torch.isfinite(prior).all()) or bool((prior < 0).any()) \
            or float(prior.sum()) <= 0:
        raise ConfigError(f"LossCorrection class_prior must be one non-negative share per class (at least 2) with a "
                          f"positive sum, e.g. class_shares(train_labels, num_classes), or None for uniform; got {given!r}")
    prior = (prior / prior.sum()).float()
    # equal shares are [A]'s uniform prior: computed as [A] computes it, to the last bit
    return None if bool((prior == prior[0]).all()) else prior


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"LossCorrection {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
