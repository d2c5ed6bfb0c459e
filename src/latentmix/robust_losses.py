"""The peers' losses (issue #27): GCE, SCE and ELR, the noise-robust losses a user would pick
instead of the paper's methods, as small pure functions, each also in the mixed form latent mixup
trains with.

Sources, and where each default comes from:

* GCE, Zhang & Sabuncu 2018, "Generalized Cross Entropy Loss for Training Deep Neural Networks
  with Noisy Labels" (NeurIPS): the negative Box-Cox transform ``L_q(f(x), y) = (1 - f_y(x)^q) / q``;
  q -> 0 is the cross-entropy, q = 1 the MAE. q = 0.7 is the value of their experiments (CIFAR-10,
  CIFAR-100, Fashion-MNIST). Their truncated variant (k = 0.5, pruning every 10 epochs) is not
  built here.
* SCE, Wang et al. 2019, "Symmetric Cross Entropy for Robust Learning with Noisy Labels" (ICCV):
  ``SL = alpha * CE + beta * RCE``, ``RCE = -sum_c p_c log q_c`` with q the one-hot label and
  log 0 := A, A = -4 in the paper, so ``RCE = -A (1 - p_y) = 4 (1 - p_y)``; alpha = 0.1 and
  beta = 1.0 are their CIFAR-10 values (also the CIFAR-10 command of a PyTorch reproduction,
  HanxunH/SCELoss-Reproduce). That reproduction's ``loss.py`` clamps the
  one-hot label at 1e-4 instead, i.e. A = log 1e-4 = -9.2; we follow the paper.
* ELR, Liu et al. 2020, "Early-Learning Regularization Prevents Memorization of Noisy Labels"
  (NeurIPS): per sample a target ``t_i <- beta t_i + (1 - beta) p_i`` (a temporal ensemble of the
  model's own predictions, updated when the sample is in the batch, starting from zeros), and
  ``L = CE(out, y) + lambda * mean_i log(1 - <p_i, t_i>)``. beta = 0.7 and lambda = 3 are their
  CIFAR-10 values (released code shengliu66/ELR, ``ELR/config_cifar10.json``); the predictions are
  clamped to [1e-4, 1 - 1e-4] and the target's share renormalised, as in its ``ELR/model/loss.py``.

Mixed forms (composition with latent mixup, `latentmix.mixing`): a loss of (output, label) is
mixed like the cross-entropy, ``lam * L(out, y) + (1 - lam) * L(out, y[perm])`` (`mixed_loss`).
ELR's targets are per sample, so its regularizer takes the targets mixed like the hidden state,
``lam t_i + (1 - lam) t_perm(i)``, as ELR+ does with input mixup (shengliu66/ELR ``ELR_plus``,
``update_hist``); the targets themselves are updated from an un-mixed forward
(`latentmix.peer_losses.ElrLoss`, the object a loop holds).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from latentmix.errors import ConfigError
from latentmix.mixing import NO_MIX, MixPlan, mix_targets, mixed_cross_entropy

__all__ = [
    "GCE_Q", "SCE_ALPHA", "SCE_BETA", "SCE_LOG_ZERO", "ELR_BETA", "ELR_LAMBDA", "ELR_CLAMP", "PAPER_PARAMS",
    "gce_per_sample", "sce_per_sample", "mixed_loss", "elr_target_update", "elr_regularizer", "elr_objective",
    "clamped_probabilities", "ROBUST_LOSSES",
]

GCE_Q = 0.7  # Zhang & Sabuncu 2018, their experiments
SCE_ALPHA, SCE_BETA = 0.1, 1.0  # Wang et al. 2019, CIFAR-10
SCE_LOG_ZERO = -4.0  # Wang et al. 2019: log 0 := A = -4
ELR_BETA, ELR_LAMBDA = 0.7, 3.0  # Liu et al. 2020, CIFAR-10 (ELR/config_cifar10.json)
ELR_CLAMP = (1e-4, 1.0 - 1e-4)  # Liu et al. 2020, ELR/model/loss.py

# The losses a method trains with: "ce" (the paper's methods, their targets corrected by
# `latentmix.correction`) or one of the peers' robust losses.
ROBUST_LOSSES = ("ce", "gce", "sce", "elr")
# Each robust loss's parameters at the paper's values: the presets of `latentmix.methods` carry these.
PAPER_PARAMS: dict[str, dict[str, float]] = {
    "gce": {"q": GCE_Q},
    "sce": {"alpha": SCE_ALPHA, "beta": SCE_BETA, "log_zero": SCE_LOG_ZERO},
    "elr": {"beta": ELR_BETA, "lambda": ELR_LAMBDA},
}


# --------------------------------------------------------------------------------------------------
# The losses


def gce_per_sample(logits: torch.Tensor, y: torch.Tensor, q: float = GCE_Q) -> torch.Tensor:
    """GCE (Zhang & Sabuncu 2018), per sample, (B,): ``(1 - p_y^q) / q`` with p = softmax.

    Computed as ``-expm1(q log_softmax_y) / q``: finite for any logits, and without the float32
    cancellation of ``1 - p_y^q`` at small q (where it tends to the cross-entropy)."""
    if not 0.0 < q <= 1.0:
        raise ConfigError(f"GCE q must be in (0, 1] (q -> 0 is the cross-entropy, 1 the MAE; paper: 0.7), got {q}")
    log_p_y = F.log_softmax(logits.float(), dim=1).gather(1, y[:, None]).squeeze(1)
    return -torch.expm1(q * log_p_y) / q


def sce_per_sample(logits: torch.Tensor, y: torch.Tensor, alpha: float = SCE_ALPHA, beta: float = SCE_BETA,
                   log_zero: float = SCE_LOG_ZERO) -> torch.Tensor:
    """SCE (Wang et al. 2019), per sample, (B,): ``alpha CE + beta RCE`` with

        RCE = -sum_c p_c log onehot(y)_c = -log_zero * sum_{c != y} p_c = -log_zero * (1 - p_y)

    (log 1 = 0, log 0 := `log_zero`, the paper's A = -4)."""
    if log_zero >= 0:
        raise ConfigError(f"SCE log_zero (the paper's A, the value taken for log 0) must be < 0 (paper: -4), got {log_zero}")
    log_probs = F.log_softmax(logits.float(), dim=1)
    log_p_y = log_probs.gather(1, y[:, None]).squeeze(1)
    return alpha * (-log_p_y) + beta * (-log_zero) * (1.0 - log_p_y.exp())


def mixed_loss(per_sample: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], logits: torch.Tensor,
               y: torch.Tensor, plan: MixPlan = NO_MIX) -> torch.Tensor:
    """A per-sample loss L(out, label) mixed as mixup mixes the cross-entropy (Zhang et al. 2018,
    eq. 1): ``lam * mean L(out, y) + (1 - lam) * mean L(out, y[perm])``; ``mean L(out, y)`` for
    `NO_MIX`. (For a loss that is not linear in the target, as GCE and SCE are not in p, this is
    the two-term form, not L of the mixed one-hot target.)"""
    own = per_sample(logits, y).mean()
    if not plan.mixes or plan.lam == 1.0:
        return own
    return plan.lam * own + (1.0 - plan.lam) * per_sample(logits, y[plan.perm]).mean()


def clamped_probabilities(logits: torch.Tensor, clamp: tuple[float, float] = ELR_CLAMP) -> torch.Tensor:
    """softmax(logits) clamped to [clamp[0], clamp[1]] (ELR's ``y_pred``, shengliu66/ELR ``ELR/model/loss.py``)."""
    return F.softmax(logits.float(), dim=1).clamp(*clamp)


def elr_target_update(rows: torch.Tensor, probs: torch.Tensor, beta: float = ELR_BETA) -> torch.Tensor:
    """ELR's temporal ensemble (Liu et al. 2020): ``beta t + (1 - beta) p / sum_c p_c`` for
    the batch's target rows t (B, C) and its (clamped, detached) predictions p (B, C)."""
    probs = probs.detach()
    return beta * rows + (1.0 - beta) * probs / probs.sum(dim=1, keepdim=True)


def elr_regularizer(logits: torch.Tensor, targets: torch.Tensor, clamp: tuple[float, float] = ELR_CLAMP) -> torch.Tensor:
    """ELR's regularizer (Liu et al. 2020): ``mean_i log(1 - <p_i, t_i>)``, p the clamped
    softmax (gradient flows through p, not through the targets t). Minimising it pushes each
    prediction towards its target, the model's own early-learning prediction."""
    inner = (clamped_probabilities(logits, clamp) * targets.detach()).sum(dim=1)
    return torch.log(1.0 - inner).mean()


def elr_objective(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor, plan: MixPlan = NO_MIX,
                  lam_reg: float = ELR_LAMBDA, clamp: tuple[float, float] = ELR_CLAMP) -> torch.Tensor:
    """ELR's loss on a (mixed) forward: the mixed cross-entropy plus ``lam_reg`` times the
    regularizer against the per-sample targets mixed like the hidden state::

        L = lam CE(out, y) + (1 - lam) CE(out, y[perm]) + lam_reg * mean_i log(1 - <p_i, m_i>),
        m_i = lam t_i + (1 - lam) t_perm(i)

    (`NO_MIX`: the paper's ``CE(out, y) + lambda * mean log(1 - <p, t>)``)."""
    logits = logits.float()
    return mixed_cross_entropy(logits, y, plan) + lam_reg * elr_regularizer(logits, mix_targets(targets, plan), clamp)
