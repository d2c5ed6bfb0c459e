"""The peers' losses as the object a training loop holds: the role `LossCorrection` plays in the
step (``targets = batch_targets(model, x, y, index)``, ``loss(logits, y, plan, targets)``), with a
robust loss (`latentmix.robust_losses`: GCE, SCE, ELR) in place of bootstrapping.

Each keeps what `LossCorrection` keeps besides the bootstrapping: the per-sample losses of the
tracking pass and the noise model fitted to them each epoch, so that every method's P(noisy) per
sample (label_issues.csv, the detection AUC) is the ranking of the run's own tracked losses, read
the same way; a robust loss slows the memorisation of the wrong labels, which is what keeps their
losses high. None of them bootstraps, so the warm-up switch changes nothing.

`latentmix.run_setup.place_run` picks the object by the method's ``loss`` (`peer_loss_for`), so the
loop never reads a method's name::

    loss_object = ElrLoss(len(train_set), update_from="unmixed")  # lr-m-elr; GCE: RobustLoss(n, loss="gce")
    for x, y, index in loader:
        plan = mixup.next_plan(len(y))
        targets = loss_object.batch_targets(model, x, y, index)   # ELR: the batch's targets; GCE/SCE: None
        logits, _ = mixup(x, plan)
        loss = loss_object.loss(logits, y, plan, targets)
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, Mapping, NamedTuple, Optional

import torch
from torch import nn

from latentmix.correction import LossCorrection
from latentmix.errors import ConfigError
from latentmix.methods import Method
from latentmix.mixing import NO_MIX, MixPlan
from latentmix.robust_losses import (
    ELR_CLAMP, PAPER_PARAMS, clamped_probabilities, elr_objective, elr_target_update, gce_per_sample, mixed_loss,
    sce_per_sample,
)

__all__ = ["RobustLoss", "ElrLoss", "ElrBatch", "ELR_UPDATE_SOURCES", "peer_loss_for"]

# where ELR's per-sample targets are updated from: the training forward's own output (the paper;
# un-mixed steps only), or an extra forward of the un-mixed batch (with mixup, as ELR+ does)
ELR_UPDATE_SOURCES = ("output", "unmixed")
_PER_SAMPLE = {"gce": gce_per_sample, "sce": sce_per_sample}


def _settings(loss: str, params: Optional[Mapping[str, float]]) -> dict[str, float]:
    """The loss's parameters: the paper's (`PAPER_PARAMS`) with `params` over them."""
    paper = PAPER_PARAMS[loss]
    unknown = sorted(set(params or {}) - set(paper))
    if unknown:
        raise ConfigError(f"the {loss} loss has no parameter {unknown[0]!r}; its parameters: {', '.join(paper)}")
    return {**paper, **{name: float(value) for name, value in (params or {}).items()}}


class RobustLoss(LossCorrection):
    """GCE or SCE in the loop's step, mixed as mixup mixes the cross-entropy
    (`latentmix.robust_losses.mixed_loss`); the tracking pass's noise model is kept as
    `LossCorrection` keeps it (module docstring). It never bootstraps: `batch_targets` is None.

    Args:
        num_samples: N, the training set's size (the noise model is keyed by sample index).
        loss: "gce" or "sce".
        params: parameters over the paper's (`latentmix.robust_losses.PAPER_PARAMS`), e.g. {"q": 0.5}.
        noise_model, lookup, fit: the noise model fitted to the tracked losses, as `LossCorrection`'s.
    """

    def __init__(self, num_samples: int, *, loss: str, params: Optional[Mapping[str, float]] = None,
                 noise_model: str = "beta", lookup: str = "monotone", fit: Optional[Callable[[torch.Tensor], Any]] = None):
        if loss not in self._losses_taken():
            raise ConfigError(f"{type(self).__name__} loss must be one of {', '.join(map(repr, self._losses_taken()))}, "
                              f"got {loss!r}")
        super().__init__(num_samples, correction="none", noise_model=noise_model, lookup=lookup, fit=fit)
        self.loss_name = loss
        self.params = _settings(loss, params)

    @staticmethod
    def _losses_taken() -> tuple[str, ...]:
        return tuple(_PER_SAMPLE)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, plan: MixPlan = NO_MIX,
             targets: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The batch's loss on the (mixed) forward's `logits` (B, C):
        ``lam * mean L(out, y) + (1 - lam) * mean L(out, y[perm])``, L the robust loss."""
        per_sample, params = _PER_SAMPLE[self.loss_name], self.params
        return mixed_loss(lambda out, y: per_sample(out, y, **params), logits, labels, plan)


class ElrBatch(NamedTuple):
    """What `ElrLoss.batch_targets` gives the step: the batch's sample positions and, when they
    were updated from an un-mixed forward, its target rows (None: `ElrLoss.loss` updates them from
    the training forward's own output, the paper's way)."""

    index: torch.Tensor  # (B,)
    rows: Optional[torch.Tensor]  # (B, C), or None


class ElrLoss(RobustLoss):
    """ELR (Liu et al. 2020) in the loop's step: each sample's target, a temporal ensemble of the
    model's predictions (`latentmix.robust_losses.elr_target_update`), kept here by sample index,
    and the loss ``CE + lambda * mean log(1 - <p, t>)`` (`elr_objective`).

    Under mixing (``update_from="unmixed"``, `lr-m-elr`), the mixed forward's output is the pair's,
    not sample i's, so it cannot enter sample i's ensemble: `batch_targets` runs the model on the
    un-mixed batch (no gradient, before the mixed forward, as the bootstrapping forward does) and
    updates the targets from it, and the loss mixes the updated rows like the hidden state, ``lam
    t_i + (1 - lam) t_perm(i)``: what ELR+ does with input mixup (shengliu66/ELR ``ELR_plus``,
    ``update_hist``, there from a weight-averaged copy of the model). Each sample is still updated
    once per epoch, as in the paper. Without mixing (``"output"``, `elr`) the targets are updated
    from the training forward's own (detached) output, the paper's way, at no extra forward.

    Args:
        num_samples: N; the targets are an (N, C) table, zeros at first (the paper's start).
        params: {"beta": ..., "lambda": ...} over the paper's 0.7 and 3.
        update_from: "output" or "unmixed" (above).
        noise_model, lookup, fit: as `RobustLoss`.

    Attributes:
        targets: (N, C) the per-sample targets (None before the first update).
    """

    def __init__(self, num_samples: int, *, params: Optional[Mapping[str, float]] = None, update_from: str = "output",
                 noise_model: str = "beta", lookup: str = "monotone", fit: Optional[Callable[[torch.Tensor], Any]] = None):
        if update_from not in ELR_UPDATE_SOURCES:
            raise ConfigError(f"ElrLoss update_from must be one of {', '.join(map(repr, ELR_UPDATE_SOURCES))}, got "
                              f"{update_from!r}")
        super().__init__(num_samples, loss="elr", params=params, noise_model=noise_model, lookup=lookup, fit=fit)
        self.update_from = update_from
        self.targets: Optional[torch.Tensor] = None

    @staticmethod
    def _losses_taken() -> tuple[str, ...]:
        return ("elr",)

    @torch.no_grad()
    def update(self, index: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Update the targets of samples `index` from their logits (B, C) (un-mixed); returns the new rows."""
        probs = clamped_probabilities(logits.detach(), ELR_CLAMP)
        if self.targets is None:
            self.targets = torch.zeros((self.num_samples, probs.shape[1]), device=probs.device)
        index = index.to(self.targets.device)
        rows = elr_target_update(self.targets[index], probs.to(self.targets.device), self.params["beta"])
        self.targets[index] = rows
        return rows.to(logits.device)

    @torch.no_grad()
    def batch_targets(self, model: nn.Module, inputs: Any, labels: torch.Tensor, index: Any = None, *,
                      autocast: Callable = nullcontext) -> ElrBatch:
        """The batch's `ElrBatch`: its positions, and with ``update_from="unmixed"`` its target rows
        updated from the model's output on the un-mixed batch (one extra forward, no gradient)."""
        if index is None:
            raise ConfigError("ElrLoss.batch_targets needs the batch's sample index (ELR keeps a target per sample): "
                              "batch_targets(model, x, y, index)")
        index = torch.as_tensor(index).long().reshape(-1).to(labels.device)
        if self.update_from == "output":
            return ElrBatch(index, None)
        with autocast():
            logits = model(inputs)
        return ElrBatch(index, self.update(index, logits.float()))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, plan: MixPlan = NO_MIX,
             targets: Optional[ElrBatch] = None) -> torch.Tensor:
        """ELR's loss on the (mixed) forward's `logits` (`elr_objective`), against the targets of
        `batch_targets` (updated here from `logits` when ``update_from="output"``)."""
        if not isinstance(targets, ElrBatch):
            raise ConfigError("ElrLoss.loss needs the ElrBatch that batch_targets(model, x, y, index) gives: ELR keeps "
                              "a target per sample")
        rows = targets.rows
        if rows is None:
            if plan.mixes:
                raise ConfigError("ElrLoss: a mixed forward's output is the pair's prediction, not the sample's, so "
                                  "it cannot update the sample's target; build ElrLoss with update_from='unmixed'")
            rows = self.update(targets.index, logits)
        return elr_objective(logits, labels, rows, plan, self.params["lambda"], ELR_CLAMP)

    def issue_scores(self, labels: torch.Tensor) -> torch.Tensor:
        """(N,) each sample's disagreement with its given label, ``1 - t_i[y_i]`` (NaN before any
        update): ELR's target is the model's early-learning view, so a wrong label disagrees."""
        if self.targets is None:
            return torch.full((self.num_samples,), float("nan"))
        labels = torch.as_tensor(labels).long().to(self.targets.device)
        return 1.0 - self.targets.gather(1, labels[:, None]).squeeze(1)

    # -- checkpointing --------------------------------------------------------------------------
    def run_state(self) -> dict:
        """The targets, for the run's checkpoint (beside the noise model it keeps)."""
        return {"elr_targets": None if self.targets is None else self.targets.cpu()}

    def load_run_state(self, state: Mapping, device: Optional[torch.device | str] = None) -> None:
        targets = state.get("elr_targets")
        self.targets = None if targets is None else targets.to(device if device is not None else targets.device)

    def state_dict(self) -> dict:
        return {**super().state_dict(), **self.run_state()}

    def load_state_dict(self, state: Mapping, device: Optional[torch.device | str] = None) -> None:
        super().load_state_dict(state, device)
        self.load_run_state(state, device)


def peer_loss_for(method: Method, num_samples: int, *, noise_model: str = "beta", lookup: str = "monotone",
                  fit: Optional[Callable[[torch.Tensor], Any]] = None) -> RobustLoss:
    """The object that gives `method`'s robust loss in the step: `ElrLoss` (its targets updated from
    an un-mixed forward when the method mixes) or `RobustLoss` (GCE, SCE)."""
    if not method.robust_loss:
        raise ConfigError(f"method {method.name} trains with the cross-entropy: its step is LossCorrection's")
    options = {"noise_model": noise_model, "lookup": lookup, "fit": fit}
    if method.loss == "elr":
        return ElrLoss(num_samples, params=dict(method.loss_params), update_from="unmixed" if method.mixes else "output",
                       **options)
    return RobustLoss(num_samples, loss=method.loss, params=dict(method.loss_params), **options)
