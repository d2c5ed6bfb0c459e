"""Latent mixup and loss correction for a Lightning `LightningModule`, as one callback
(``pip install latentmix[lightning]``).

Shaped like Lightning's ``StochasticWeightAveraging`` (``callbacks/stochastic_weight_avg.py``): it
changes the training from an epoch on (bootstrapping after `warmup_epochs`) and keeps its own state
in the checkpoint (`state_dict` / `load_state_dict`: the mixing stream and the noise model), so a
run resumed with ``trainer.fit(..., ckpt_path=...)`` goes on exactly.

Per training batch (the batch is ``(inputs, labels, index)``: wrap your data set in
`latentmix.data.streamed.WithIndex`):

    on_train_batch_start: the bootstrapping targets from the un-mixed batch (after the warm-up,
        `LossCorrection.batch_targets`), then the batch's mix (layer k, lam, permutation) armed
        for the next forward of the module (`LatentMixup`)
    your training_step: ``logits = self(x)`` is the mixed forward; return ``callback.loss(logits, y)``
    on_train_batch_end: the mix is disarmed (validation and prediction forwards are plain)
    on_train_epoch_end: a tracking pass over the training loader (`track_losses`, eval mode) and a
        fresh Beta mixture (`LossCorrection.end_epoch`): P(noisy) per sample index

Example::

    mixup = LatentMixupCallback(mix_points=["net.1", "net.3"], layers="0-2", alpha=2.0, warmup_epochs=5)

    class Classifier(L.LightningModule):
        def training_step(self, batch, batch_idx):
            x, y, index = batch
            return mixup.loss(self(x), y)

    L.Trainer(max_epochs=10, callbacks=[mixup]).fit(Classifier(), DataLoader(WithIndex(train_set), shuffle=True))
    mixup.p_noisy   # (N,) P(label is wrong) of every training sample
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np
import torch

from latentmix.correction import LossCorrection, track_losses
from latentmix.errors import ConfigError
from latentmix.mixing import LatentMixup, MixPlan, _mix_output_once, mix_tensors

try:
    from lightning.pytorch import Callback
except ImportError:  # the older package name
    try:
        from pytorch_lightning import Callback
    except ImportError:
        raise ImportError("latentmix.lightning needs Lightning: pip install 'latentmix[lightning]' "
                          "(or pip install lightning)") from None

__all__ = ["LatentMixupCallback"]


class LatentMixupCallback(Callback):
    """Latent mixup with Arazo et al.'s loss correction for a `LightningModule` (module docstring).

    Args:
        mix_points: submodule names of the LightningModule whose outputs are layers 1, 2, ...
            (default: its ``mix_points`` attribute); layer 0 is the input.
        layers: the eligible layers S, e.g. ``"0-2"`` (default: all).
        alpha: lam ~ Beta(alpha, alpha).
        correction: "hard", "soft" or "none" (mixup only; P(noisy) is still tracked).
        warmup_epochs: epochs of plain mixup before bootstrapping (None: set
            ``callback.correction.enabled = True`` yourself).
        reg_weight, class_prior, bootstrap_forward, noise_model: as `LossCorrection` (class_prior:
            your training labels' class shares, ``class_shares(labels, C)``, on imbalanced data).
        seed: the mixing stream's seed (the same on every process under DDP).
        tracking_loader: the loader of the tracking pass (default: the trainer's training loader).
    """

    def __init__(
        self, mix_points: Optional[Sequence] = None, *, layers: Union[str, Sequence[int], None] = None,
        alpha: float = 1.0, correction: str = "hard", warmup_epochs: Optional[int] = 10, reg_weight: float = 1.0,
        class_prior: Any = None, bootstrap_forward: str = "reference", noise_model: str = "beta", seed: int = 0,
        tracking_loader: Optional[Iterable] = None,
    ):
        super().__init__()
        self.mix_points, self.layers, self.alpha, self.seed = mix_points, layers, alpha, seed
        self.correction_options = dict(correction=correction, warmup_epochs=warmup_epochs, reg_weight=reg_weight,
                                       class_prior=class_prior, bootstrap_forward=bootstrap_forward,
                                       noise_model=noise_model)
        LossCorrection(2, **self.correction_options)  # every setting checked now, not at the first epoch
        self.tracking_loader = tracking_loader
        self.mixup: Optional[LatentMixup] = None
        self.correction: Optional[LossCorrection] = None
        self._pending_state: Optional[dict] = None
        self._batch: Optional[dict] = None  # this batch's plan and targets, while armed

    # -- building ---------------------------------------------------------------------------------
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Build the mixer on the module and the correction for the training set's size; a state
        restored from a checkpoint (`load_state_dict`, before this hook) is applied now."""
        if self.mixup is None:
            self.mixup = LatentMixup(pl_module, self.mix_points, layers=self.layers, alpha=self.alpha, seed=self.seed)
            self.correction = LossCorrection(_training_set_size(trainer, self.tracking_loader),
                                             **self.correction_options)
        if self._pending_state is not None:
            self.mixup.load_state_dict(self._pending_state["mixup"])
            self.correction.load_state_dict(self._pending_state["correction"], device=pl_module.device)
            self._pending_state = None

    # -- per batch --------------------------------------------------------------------------------
    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        inputs, labels, index = _unpack(batch)
        targets = self.correction.batch_targets(pl_module, inputs, labels, index)  # None during the warm-up
        plan = self.mixup.next_plan(int(labels.shape[0]), device=labels.device)
        self._batch = {"plan": plan, "targets": targets, "disarm": _arm(self.mixup, pl_module, plan),
                       "loss_taken": False}

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The batch's loss on the mixed forward's `logits`: mixed cross-entropy during the warm-up,
        then the bootstrapping loss plus the prior regularizer (`LossCorrection.loss`)."""
        if self._batch is None:
            raise ConfigError("LatentMixupCallback.loss is for training_step, with the callback in Trainer(callbacks=[...])")
        self._batch["loss_taken"] = True
        return self.correction.loss(logits, labels, self._batch["plan"], self._batch["targets"])

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        armed, self._batch = self._batch, None
        if armed is None:
            return
        armed["disarm"]()
        if armed["plan"].mixes and not armed["loss_taken"]:
            raise ConfigError("the training step's forward was mixed, but its loss did not mix the labels: return "
                              "callback.loss(logits, labels) from training_step")

    # -- per epoch --------------------------------------------------------------------------------
    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        loader = self.tracking_loader if self.tracking_loader is not None else trainer.train_dataloader
        tracked = track_losses(pl_module, loader)
        self.correction.observe(tracked.index, tracked.losses, tracked.logits, tracked.labels)
        self.correction.end_epoch()
        p_noisy = self.correction.p_noisy
        seen = np.isfinite(p_noisy)
        pl_module.log("latentmix/flagged_share", float((p_noisy[seen] > 0.5).mean()) if seen.any() else 0.0)

    @property
    def p_noisy(self) -> np.ndarray:
        """(N,) P(label is wrong) of every training sample, by index (`LossCorrection.p_noisy`)."""
        if self.correction is None:
            raise ConfigError("LatentMixupCallback.p_noisy: no training has run yet")
        return self.correction.p_noisy

    # -- checkpointing ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        if self.mixup is None:
            return dict(self._pending_state or {})
        return {"mixup": self.mixup.state_dict(), "correction": self.correction.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        if not state_dict:
            return
        if self.mixup is None:
            self._pending_state = dict(state_dict)
        else:
            self.mixup.load_state_dict(state_dict["mixup"])
            self.correction.load_state_dict(state_dict["correction"])


def _unpack(batch: Any) -> tuple[Any, torch.Tensor, torch.Tensor]:
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        return batch[0], batch[1], batch[2]
    raise ConfigError("LatentMixupCallback: training batches must be (inputs, labels, index); wrap the training set "
                      "in latentmix.WithIndex(train_set)")


def _training_set_size(trainer: Any, tracking_loader: Optional[Iterable]) -> int:
    loader = tracking_loader if tracking_loader is not None else trainer.train_dataloader
    dataset = getattr(loader, "dataset", None)
    if dataset is None:
        raise ConfigError("LatentMixupCallback: cannot tell the training set's size from the training loader; pass "
                          "tracking_loader=DataLoader(WithIndex(train_set), ...)")
    return len(dataset)


def _arm(mixup: LatentMixup, pl_module: Any, plan: MixPlan):
    """Make the module's next forward the mixed one of `plan`; returns the function that disarms it.
    Layer 0 mixes the input (a pre-hook on the module), layer k the output of its mix point k."""
    if not plan.mixes:
        return lambda: None
    if plan.layer == 0:
        handle = pl_module.register_forward_pre_hook(
            lambda _module, args: (mix_tensors(args[0], plan.lam, plan.perm), *args[1:]))
        return handle.remove
    mixer = mixup.mixer
    point = mixer.mix_points[plan.layer - 1]
    undo = [_mix_output_once(module, name, plan) for module, name in zip(mixer._modules[plan.layer - 1], point)]
    return lambda: [remove() for remove in undo]

