"""Training losses: mixed cross-entropy, dynamic bootstrapping (soft and hard) and the prior regularizer.

All follow Arazo et al. 2019, "Unsupervised Label Noise Modeling and Loss Correction" (reference
implementation PaulAlbert31/LabelNoiseCorrection, utils.py), combined with a mixed forward exactly
as the reference combines them with input mixup; with latent mixup only the layer that was mixed
changes, the loss is the same.

Notation: `log_probs` = log_softmax of the *mixed* forward's logits (B, C); `y` the given (noisy)
labels (B,); `plan` the mix (lam, perm); `w` (B,) each sample's P(noisy) from the noise model;
`clean_logits` the logits of an un-mixed forward of the same batch, used *detached* as the
bootstrapping target (no gradient flows through the target).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from latentmix.mixing import MixPlan, mixed_cross_entropy

__all__ = [
    "mixed_cross_entropy",
    "hard_bootstrapping_loss",
    "soft_bootstrapping_loss",
    "prior_regularizer",
]


def hard_bootstrapping_loss(
    logits: torch.Tensor, y: torch.Tensor, clean_logits: torch.Tensor, w: torch.Tensor, plan: MixPlan
) -> torch.Tensor:
    """Mixup with dynamic hard bootstrapping (M-DYR-H; [A] ``train_mixUp_HardBootBeta``).

    With ``z = argmax(clean_logits)`` the model's own hard prediction::

        L = lam       * mean_i[(1 - w_i) CE(out_i, y_i) + w_i CE(out_i, z_i)]
          + (1 - lam) * mean_i[(1 - w_p) CE(out_i, y_p) + w_p CE(out_i, z_p)],   p = perm(i)

    With w = 0 this is exactly `mixed_cross_entropy`.
    """
    log_probs = F.log_softmax(logits, dim=1)
    z = clean_logits.detach().argmax(dim=1)
    w = w.detach()
    if not plan.mixes:
        targets, weights = torch.stack([y, z], dim=1), torch.stack([1.0 - w, w], dim=1)
        side_weights = torch.ones(1, 2, device=logits.device)
    else:
        # All four cross-entropies (y, z and their partners') in one gather, weighted per side.
        perm = plan.perm
        targets = torch.stack([y, z, y[perm], z[perm]], dim=1)
        weights = torch.stack([1.0 - w, w, 1.0 - w[perm], w[perm]], dim=1)
        side_weights = torch.tensor([[plan.lam, plan.lam, 1.0 - plan.lam, 1.0 - plan.lam]], device=logits.device)
    per_sample = -log_probs.gather(1, targets) * weights  # (B, 2 or 4)
    return (per_sample.mean(dim=0) * side_weights).sum()


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
    `mixed_cross_entropy`.
    """
    if side_weighting not in ("lam", "half"):
        raise ValueError(f"side_weighting must be 'lam' or 'half', got {side_weighting!r}")
    log_probs = F.log_softmax(logits, dim=1)
    num_classes = logits.shape[1]
    w = w.detach()[:, None]
    soft_targets = (1.0 - w) * F.one_hot(y, num_classes).float() + w * F.softmax(clean_logits.detach(), dim=1)
    loss_a = -(soft_targets * log_probs).sum(dim=1).mean()
    if not plan.mixes:
        return loss_a
    loss_b = -(soft_targets[plan.perm] * log_probs).sum(dim=1).mean()
    lam = plan.lam if side_weighting == "lam" else 0.5
    weight_b = 1.0 - plan.lam if side_weighting == "lam" else 0.5
    return lam * loss_a + weight_b * loss_b


def prior_regularizer(logits: torch.Tensor) -> torch.Tensor:
    """KL from a uniform prior to the batch-mean prediction ([A] ``reg_loss_class``).

    ``R = sum_c (1/C) log((1/C) / pbar_c)``, ``pbar = mean_i softmax(out_i)``. It keeps the model from
    assigning every sample to one class once its own predictions become (part of) the target.
    """
    num_classes = logits.shape[1]
    mean_prediction = F.softmax(logits, dim=1).mean(dim=0)
    prior = 1.0 / num_classes
    return (prior * (math.log(prior) - torch.log(mean_prediction))).sum()
