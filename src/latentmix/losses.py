"""Training losses: mixed cross-entropy, dynamic bootstrapping (soft and hard) and the prior regularizer.

All follow Arazo et al. 2019, "Unsupervised Label Noise Modeling and Loss Correction" (reference
implementation PaulAlbert31/LabelNoiseCorrection, utils.py), combined with a mixed forward exactly
as the reference combines them with input mixup; with latent mixup only the layer that was mixed
changes, the loss is the same.

Notation: `log_probs` = log_softmax of the *mixed* forward's logits (B, C); `y` the given (noisy)
labels (B,); `plan` the mix (lam, perm); `w` (B,) each sample's P(noisy) from the noise model;
`clean_logits` the logits of an un-mixed forward of the same batch, used *detached* as the
bootstrapping target (no gradient flows through the target).

Every bootstrapping loss is linear in the per-sample cross-entropies, so it is computed as one
soft-target cross-entropy against a gradient-free (B, C) target matrix: each sample's target row
``t_i = (1 - w_i) onehot(y_i) + w_i b_i`` (b_i = onehot(z_i) or softmax(clean_i)), mixed over the
batch like the hidden state, ``lam * t_i + (1 - lam) * t_perm(i)``. Same math as the per-term
formulas in the docstrings, with a fraction of the tensor operations (on small models a training
step is per-operation overhead).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from latentmix.mixing import (
    MixPlan, mix_targets, mixed_cross_entropy, one_hot, soft_target_cross_entropy, soft_target_nll,
)

__all__ = [
    "mixed_cross_entropy",
    "hard_bootstrapping_loss",
    "soft_bootstrapping_loss",
    "prior_regularizer",
    "class_shares",
    "bootstrap_targets",
    "bootstrapping_objective",
    "bootstrapped_mixup_loss",
]


def bootstrap_targets(y: torch.Tensor, clean_logits: torch.Tensor, w: torch.Tensor, correction: str) -> torch.Tensor:
    """Each sample's (un-mixed) bootstrapping target row, (B, C), without gradient:

        hard: t_i = (1 - w_i) onehot(y_i) + w_i onehot(z_i),         z = argmax(clean_logits)
        soft: t_i = (1 - w_i) onehot(y_i) + w_i softmax(clean_logits_i)

    as ``lerp(onehot(y), b, w)``. Rows sum to 1.
    """
    clean_logits = clean_logits.detach()
    num_classes, dtype = clean_logits.shape[1], clean_logits.dtype
    if correction == "hard":
        own = one_hot(clean_logits.argmax(dim=1), num_classes, dtype)
    elif correction == "soft":
        own = F.softmax(clean_logits, dim=1)
    else:
        raise ValueError(f"correction must be 'hard' or 'soft', got {correction!r}")
    return torch.lerp(one_hot(y, num_classes, dtype), own, w.detach().to(dtype)[:, None])


def hard_bootstrapping_loss(
    logits: torch.Tensor, y: torch.Tensor, clean_logits: torch.Tensor, w: torch.Tensor, plan: MixPlan
) -> torch.Tensor:
    """Mixup with dynamic hard bootstrapping (M-DYR-H; [A] ``train_mixUp_HardBootBeta``).

    With ``z = argmax(clean_logits)`` the model's own hard prediction::

        L = lam       * mean_i[(1 - w_i) CE(out_i, y_i) + w_i CE(out_i, z_i)]
          + (1 - lam) * mean_i[(1 - w_p) CE(out_i, y_p) + w_p CE(out_i, z_p)],   p = perm(i)

    computed as the soft-target cross-entropy against the mixed `bootstrap_targets`.
    With w = 0 this is exactly `mixed_cross_entropy`.
    """
    targets = mix_targets(bootstrap_targets(y, clean_logits, w, "hard"), plan)
    return soft_target_cross_entropy(logits, targets)


def soft_bootstrapping_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    clean_logits: torch.Tensor,
    w: torch.Tensor,
    plan: MixPlan,
    side_weighting: str = "lam",
) -> torch.Tensor:
    """Mixup with dynamic soft bootstrapping (M-DYR-S; [A] ``mixup_criterion_mixSoft``).

    Each side's target is ``t = (1 - w) onehot(y) + w softmax(clean_logits)`` and its loss the soft
    cross-entropy ``-sum_c t_c log out_c``, averaged over the batch; the two sides are weighted by
    lam and 1 - lam (`side_weighting="lam"`, [A]'s current code) or by a fixed 0.5 each
    (`side_weighting="half"`, [A]'s first release, April 2019). With w = 0 and "lam" this is exactly
    `mixed_cross_entropy`. Computed as one soft-target cross-entropy against
    ``a * t + (1 - a) * t[perm]``, a = lam or 0.5.
    """
    targets = mix_targets(bootstrap_targets(y, clean_logits, w, "soft"), plan, side_lam(plan, side_weighting))
    return soft_target_cross_entropy(logits, targets)


def side_lam(plan: MixPlan, side_weighting: str) -> float:
    """The weight of the un-permuted side of the soft bootstrapping loss: lam ("lam") or 0.5 ("half")."""
    if side_weighting == "lam":
        return plan.lam
    if side_weighting == "half":
        return 0.5
    raise ValueError(f"side_weighting must be 'lam' or 'half', got {side_weighting!r}")


def prior_regularizer(logits: torch.Tensor, prior: Optional[torch.Tensor] = None) -> torch.Tensor:
    """KL from a class prior to the batch-mean prediction ([A] ``reg_loss_class``, Tanaka et al. 2018,
    "Joint Optimization Framework for Learning with Noisy Labels", eq. 6).

    ``R = sum_c p_c log(p_c / pbar_c)``, ``pbar = mean_i softmax(out_i)``, ``p`` the prior: uniform
    (None; [A], whose data sets are balanced) or given class shares (`class_shares`), a class of
    share 0 adding nothing (0 log 0 = 0). It keeps the model from assigning every sample to one
    class once its own predictions become (part of) the target.
    """
    num_classes = logits.shape[1]
    mean_prediction = F.softmax(logits, dim=1).mean(dim=0)
    if prior is None:
        prior = 1.0 / num_classes
        return (prior * (math.log(prior) - torch.log(mean_prediction))).sum()
    prior = prior.to(device=logits.device, dtype=mean_prediction.dtype)
    return (torch.xlogy(prior, prior) - prior * torch.log(mean_prediction)).sum()


def class_shares(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Each class's share of `labels` (C,) float32: the class prior the given labels imply, the
    prior of the regularizer in `latentmix train` (``--class-prior labels``). Under symmetric noise
    at rate r the given labels' shares are (1 - r) pi + r / C for true shares pi: the data's
    imbalance, shrunk toward uniform; on balanced data, uniform up to the sampling of the labels."""
    labels = torch.as_tensor(labels).long().reshape(-1)
    counts = torch.bincount(labels, minlength=num_classes).float()
    return counts / counts.sum()


def bootstrapped_mixup_loss(
    logits: torch.Tensor, y: torch.Tensor, plan: MixPlan, targets: Optional[torch.Tensor], correction: str,
    reg_weight: float, soft_side_weighting: str = "lam", prior: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """A training step's loss on the mixed forward's `logits` (computed in float32):

        targets None (warm-up, no correction): mixed CE, lam CE(out, y) + (1 - lam) CE(out, y[perm]);
        else: `bootstrapping_objective` against the un-mixed bootstrapping target rows (B, C)
              (`bootstrap_targets`) mixed like the hidden state, a t_i + (1 - a) t_perm(i),
              a = lam (hard; soft "lam") or 0.5 (soft "half"), plus reg_weight * the prior regularizer
              (`prior`: uniform when None, `prior_regularizer`).

    With targets from `bootstrap_targets` this is `hard_bootstrapping_loss` / `soft_bootstrapping_loss`
    + ``reg_weight * prior_regularizer`` ([A] adds the regularizer with bootstrapping only)."""
    logits = logits.float()
    if targets is None:
        return mixed_cross_entropy(logits, y, plan)
    lam = plan.lam if correction == "hard" else side_lam(plan, soft_side_weighting)
    return bootstrapping_objective(logits, mix_targets(targets, plan, lam), reg_weight, prior)


def bootstrapping_objective(logits: torch.Tensor, targets: torch.Tensor, reg_weight: float,
                            prior: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The loss of a bootstrapping step: soft-target cross-entropy against the (mixed)
    bootstrapping `targets` plus `reg_weight` times the prior regularizer, sharing one log_softmax::

        L = -(1/B) sum_ic t_ic lp_ic + reg_weight * (log(B/C) - (1/C) sum_c log sum_i exp(lp_ic))

    i.e. ``soft_target_cross_entropy(logits, targets) + reg_weight * prior_regularizer(logits)``
    (``log pbar_c = log sum_i exp(lp_ic) - log B``), in 9 autograd nodes instead of about 15. With
    class shares `prior` p in place of the uniform 1/C, the regularizer is
    ``log B + sum_c p_c log p_c - sum_c p_c log sum_i exp(lp_ic)``.
    """
    log_probs = F.log_softmax(logits, dim=1)
    batch, num_classes = log_probs.shape
    nll = soft_target_nll(log_probs, targets)
    if prior is None:
        log_column_sums = log_probs.exp().sum(dim=0).log().sum()  # sum_c log(B pbar_c)
        return torch.add(nll, log_column_sums, alpha=-reg_weight / num_classes) + reg_weight * math.log(batch / num_classes)
    prior = prior.to(device=log_probs.device, dtype=log_probs.dtype)
    weighted_log_sums = (prior * log_probs.exp().sum(dim=0).log()).sum()  # sum_c p_c log(B pbar_c)
    constant = torch.xlogy(prior, prior).sum() + math.log(batch)  # a tensor: no host synchronisation
    return torch.add(nll, weighted_log_sums, alpha=-reg_weight) + reg_weight * constant
