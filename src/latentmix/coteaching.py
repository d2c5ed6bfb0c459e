"""Co-teaching (Han et al. 2018, "Co-teaching: Robust Training of Deep Neural Networks with
Extremely Noisy Labels", NeurIPS) as the object a training loop holds: two networks, each ranking
every mini-batch by its own per-sample cross-entropy and keeping the small-loss share, and each
updated on the samples the *other* kept (the paper's Algorithm 1, steps 4-7; official code
bhanML/Co-teaching, ``loss.py`` ``loss_coteaching``).

The two networks are one `latentmix.models.paired.PairedNetworks`: its training forward gives the
stacked logits (2, B, C) (`pair_logits`), the loss below is the sum of the two networks' losses,
so one backward and one optimizer step (two SGDs with the same settings) update both.

The forget rate R(T) grows linearly to tau over the first T_k = 10 epochs (`scheduled_forget_rate`).
The paper sets tau to the *true* noise rate (``forget_rate = args.noise_rate`` in ``main.py``),
which a user does not know; here tau is the run's own estimate, read off the noise model that
every run fits to its tracked losses each epoch: each epoch's mean P(noisy)
(`estimated_noise_share`), tau the largest of them from the third epoch on (`forget_target`),
updated at the end of each epoch; before the first fit tau is 0.

In a loop (the order `latentmix.training.train` runs)::

    loss_object = CoTeachingLoss(len(train_set))                       # select_from="unmixed" with mixup
    for x, y, index in loader:
        plan = mixup.next_plan(len(y))
        targets = loss_object.batch_targets(pair, x, y, index)         # with mixup: the selections
        logits, _ = mixup(x, plan)                                      # (2, B, C)
        loss = loss_object.loss(logits, y, plan, targets)
    ... a tracking pass -> loss_object.observe(index, losses); loss_object.end_epoch()   # refits tau
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentmix.correction import LossCorrection
from latentmix.errors import ConfigError
from latentmix.mixing import NO_MIX, MixPlan
from latentmix.models.paired import pair_logits

__all__ = ["CoTeachingLoss", "CoSelection", "PAPER_GRADUAL_EPOCHS", "SELECTION_SOURCES", "scheduled_forget_rate",
           "kept_count", "small_loss_mask", "peer_selected_loss", "estimated_noise_share", "forget_target"]

# T_k: the epochs over which the forget rate grows to tau (the paper's Section 4 "T_k = 10";
# bhanML/Co-teaching main.py ``--num_gradual`` default 10)
PAPER_GRADUAL_EPOCHS = 10
# where the small-loss ranking comes from: the training forward itself (the paper, un-mixed steps),
# or an extra no-grad forward of the un-mixed batch (with latent mixup)
SELECTION_SOURCES = ("output", "unmixed")


def scheduled_forget_rate(tau: float, epochs_done: int, gradual_epochs: int = PAPER_GRADUAL_EPOCHS) -> float:
    """The share of each batch forgotten in the epoch after `epochs_done` complete epochs:
    ``tau * min(epochs_done / T_k, 1)`` (exponent c = 1, the paper's and the code's default).

    The paper's Algorithm 1 starts from R = 1 (keep everything) and at the end of epoch T sets
    ``R(T) = 1 - min(T tau / T_k, tau)``, the keep share of epoch T + 1: so the first epoch forgets
    nothing, epoch T_k + 1 forgets tau. (The official ``main.py`` builds ``linspace(0, tau, T_k)``
    and trains from epoch index 1, reaching tau at its 9th epoch: one epoch sooner; we follow the
    paper's formula.)"""
    if gradual_epochs < 1:
        raise ConfigError(f"Co-teaching's gradual epochs T_k must be >= 1 (the paper: {PAPER_GRADUAL_EPOCHS}), "
                          f"got {gradual_epochs!r}")
    return float(tau) * min(epochs_done / gradual_epochs, 1.0)


def kept_count(batch_size: int, forget_rate: float) -> int:
    """How many samples of a batch each network keeps: ``floor((1 - forget_rate) * B)`` as the
    official code's ``int(remember_rate * len(loss_1_sorted))``, at least 1 (a last small batch at
    a high forget rate would otherwise train on nothing, and the code's mean would divide by 0).
    The product is rounded to 9 decimals first, so that float round-off ((1 - 0.34) * 100 =
    65.99999999999999) does not drop a sample the formula keeps."""
    return max(1, math.floor(round((1.0 - forget_rate) * batch_size, 9)))


def small_loss_mask(losses: torch.Tensor, keep: int) -> torch.Tensor:
    """(B,) bool: the `keep` samples of smallest per-sample loss (`losses` (B,)) - the ones a
    network takes for clean. Ties go to the earlier sample (a stable sort), as ``np.argsort``'s
    order in the official code does for equal losses."""
    order = torch.sort(losses.detach(), stable=True).indices
    mask = torch.zeros(losses.shape[0], dtype=torch.bool, device=losses.device)
    mask[order[:keep]] = True
    return mask


def peer_selected_loss(logits: torch.Tensor, labels: torch.Tensor, kept: torch.Tensor,
                       plan: MixPlan = NO_MIX) -> torch.Tensor:
    """One network's loss on the samples its peer kept (`kept` (B,) bool): the mean cross-entropy
    over them (the paper's ``l(f, D_g)``).

    The official ``loss_coteaching`` divides that mean once more by the kept count
    (``torch.sum(F.cross_entropy(...)) / num_remember``, a mean over a scalar): under its Adam the
    scale hardly matters, under our SGD it would shrink every step by ~B; we take the mean.

    Under latent mixup (`plan` mixes), sample i's forward also holds its partner perm(i): only the
    pairs whose both samples the peer kept enter, each with the mixed cross-entropy
    ``lam CE(out_i, y_i) + (1 - lam) CE(out_i, y_perm(i))``, so that no rejected sample's label
    is learnt and no rejected input is mixed in. No kept pair: a zero loss (still on the graph)."""
    logits = logits.float()
    if plan.mixes:
        partner = plan.perm.to(kept.device)
        pairs = kept & kept[partner]
        per_sample = (plan.lam * F.cross_entropy(logits, labels, reduction="none")
                      + (1.0 - plan.lam) * F.cross_entropy(logits, labels[partner], reduction="none"))
    else:
        pairs = kept
        per_sample = F.cross_entropy(logits, labels, reduction="none")
    if not bool(pairs.any()):
        return logits.sum() * 0.0
    return per_sample[pairs].mean()


def estimated_noise_share(p_noisy: np.ndarray) -> float:
    """One epoch's estimate of the share of wrong labels: the mean P(noisy) over the samples with
    a tracked loss (NaN entries, the held-out ones, left out); 0 when none is known.

    The mean rather than the flagged share (P > 0.5): both are read off the same fit, but the
    flagged share drops a sample at P = 0.45 entirely; on the tests' Gaussian clusters (a third
    of the labels wrong) the flagged share read 0.10-0.22 from epoch 3 on, the mean 0.16-0.30."""
    values = np.asarray(p_noisy, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else 0.0


# the first fits left out of tau (once later ones exist): the network has barely learnt anything,
# as `latentmix.selection.estimate_noise_rate` leaves out epochs 1 and 2
UNSETTLED_FITS = 2


def forget_target(estimates: Sequence[float]) -> float:
    """tau from the per-epoch estimates so far (`estimated_noise_share`, oldest first): the largest
    from the third on, or the latest while there are fewer; 0 before any.

    Why the largest: as the networks memorise wrong labels their losses fall and every later fit
    reads fewer wrong labels, whatever the truth (on the tests' clusters, a third wrong, the
    latest estimate fell from 0.30 at epoch 3 to 0.16 at epoch 15), and a tau that follows it down
    forgets less each epoch, so the pair memorises more: a loop. The largest settled estimate is
    the least memorised reading. The paper has no such rule: its tau is the true rate."""
    if not estimates:
        return 0.0
    settled = list(estimates[UNSETTLED_FITS:])
    return float(max(settled)) if settled else float(estimates[-1])


class CoSelection(NamedTuple):
    """What `CoTeachingLoss.batch_targets` gives the step under mixing: each network's small-loss
    samples of the un-mixed batch, (B,) bool each."""

    kept_by_first: torch.Tensor
    kept_by_second: torch.Tensor


class CoTeachingLoss(LossCorrection):
    """Co-teaching's step on a `PairedNetworks`' stacked logits (2, B, C): each network keeps its
    ``1 - R(T)`` small-loss share (`small_loss_mask`, `kept_count`), and the loss is
    ``l(first, kept by second) + l(second, kept by first)`` (`peer_selected_loss`), so each
    network's gradient comes only through the samples the other network chose.

    It is a `LossCorrection` that never bootstraps, so the tracking pass (the pair's mean logits),
    the noise model fitted to it each epoch and the label issues stay as for every method; that
    fit also gives tau (`end_epoch`).

    Args:
        num_samples: N, the training set's size.
        select_from: "output" (the paper: rank on the training forward's own detached logits; no
            mixing) or "unmixed" (with latent mixup: `batch_targets` ranks on one extra no-grad
            forward of the un-mixed batch, and only the pairs both kept enter the loss).
        gradual_epochs: T_k (the paper's 10).
        noise_model, lookup, fit: the noise model fitted to the tracked losses, as `LossCorrection`'s.

    Attributes:
        estimates: each epoch's estimate of the share of wrong labels; `tau` is read off them.
    """

    def __init__(self, num_samples: int, *, select_from: str = "output", gradual_epochs: int = PAPER_GRADUAL_EPOCHS,
                 noise_model: str = "beta", lookup: str = "monotone", fit: Optional[Callable[[torch.Tensor], Any]] = None):
        if select_from not in SELECTION_SOURCES:
            raise ConfigError(f"CoTeachingLoss select_from must be one of {', '.join(map(repr, SELECTION_SOURCES))}, "
                              f"got {select_from!r}")
        scheduled_forget_rate(0.0, 0, gradual_epochs)  # checks T_k
        super().__init__(num_samples, correction="none", noise_model=noise_model, lookup=lookup, fit=fit)
        self.select_from = select_from
        self.gradual_epochs = int(gradual_epochs)
        self.estimates: list[float] = []  # each epoch's `estimated_noise_share`, oldest first

    @property
    def tau(self) -> float:
        """The share of wrong labels the forget rate grows to (`forget_target`; 0 before any fit)."""
        return forget_target(self.estimates)

    @property
    def forget_rate(self) -> float:
        """R's forget share for the current epoch (`scheduled_forget_rate` of tau and the epochs done)."""
        return scheduled_forget_rate(self.tau, self.epochs_done, self.gradual_epochs)

    def end_epoch(self) -> Any:
        """`LossCorrection.end_epoch` (a fresh fit, the epoch counted), then the epoch's estimate
        of the share of wrong labels from the kept fit, for tau."""
        fitted = super().end_epoch()
        self.estimates.append(estimated_noise_share(self.p_noisy))
        return fitted

    def select(self, logits: torch.Tensor, labels: torch.Tensor) -> CoSelection:
        """Each network's small-loss samples of stacked un-mixed logits (2, B, C) against `labels`."""
        first, second = pair_logits(logits)
        keep = kept_count(labels.shape[0], self.forget_rate)
        return CoSelection(*(small_loss_mask(F.cross_entropy(net.detach().float(), labels, reduction="none"), keep)
                             for net in (first, second)))

    @torch.no_grad()
    def batch_targets(self, model: nn.Module, inputs: Any, labels: torch.Tensor, index: Any = None, *,
                      autocast: Callable = nullcontext) -> Optional[CoSelection]:
        """None (the paper's way: `loss` ranks the training forward itself), or with
        ``select_from="unmixed"`` the `CoSelection` of one no-grad forward of the un-mixed batch
        (the pair in training mode, as the step's own forward is)."""
        if self.select_from == "output":
            return None
        with autocast():
            logits = model(inputs)
        return self.select(logits.float(), labels)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, plan: MixPlan = NO_MIX,
             targets: Optional[CoSelection] = None) -> torch.Tensor:
        """The pair's loss on the training forward's stacked `logits` (2, B, C): each network's
        `peer_selected_loss` on the other's selection, summed."""
        first, second = pair_logits(logits)
        if targets is None:
            if plan.mixes:
                raise ConfigError("CoTeachingLoss: a mixed forward's losses rank pairs, not samples; build it with "
                                  "select_from='unmixed' and pass batch_targets(model, x, y, index) to loss")
            targets = self.select(logits, labels)
        elif not isinstance(targets, CoSelection):
            raise ConfigError("CoTeachingLoss.loss takes the CoSelection that batch_targets gives (or None)")
        return (peer_selected_loss(first, labels, targets.kept_by_second, plan)
                + peer_selected_loss(second, labels, targets.kept_by_first, plan))

    # -- checkpointing --------------------------------------------------------------------------
    def run_state(self) -> dict:
        """The per-epoch estimates tau is taken from, for the run's checkpoint (the epoch count and
        the noise model the run saves itself)."""
        return {"coteaching_estimates": list(self.estimates)}

    def load_run_state(self, state: Mapping, device: Optional[torch.device | str] = None) -> None:
        self.estimates = [float(value) for value in state.get("coteaching_estimates", [])]

    def state_dict(self) -> dict:
        return {**super().state_dict(), **self.run_state()}

    def load_state_dict(self, state: Mapping, device: Optional[torch.device | str] = None) -> None:
        super().load_state_dict(state, device)
        self.load_run_state(state, device)
