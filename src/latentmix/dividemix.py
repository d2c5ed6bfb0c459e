"""DivideMix (Li, Socher & Hoi 2020, "DivideMix: Learning with Noisy Labels as Semi-supervised
Learning", ICLR) as the object a training loop holds, and its steps as small pure functions.

Sources: the paper (Algorithm 1, eqs. 1-11) and the official code, LiJunnan1992/DivideMix
``Train_cifar.py`` (``warmup``, ``eval_train``, ``train``, ``SemiLoss``, ``linear_rampup``,
``NegEntropy``). Each network k of a `latentmix.models.paired.PairedNetworks`:

    warm-up: cross-entropy on the given labels (+ the negative entropy for asymmetric noise)
    each epoch after it (the run's tracking pass gives each network's per-sample loss, eval mode):
        GMM on network j's min-max normalised losses -> w_i = P(clean | loss_i)     (`clean_posteriors`)
        co-divide: network k trains on the division of the OTHER network j = 1 - k:
            labeled if w_i(j) > p_threshold (weight w_i(j)), else unlabeled          (`co_divide`)
    per batch (no gradient):
        co-refinement (labeled): t_i = sharpen(w_i onehot(y_i) + (1 - w_i) p_k(x_i), T)   (`co_refine`)
        co-guessing (unlabeled): q_i = sharpen((p_1(x_i) + p_2(x_i)) / 2, T)              (`co_guess`)
    MixMatch on the mixed batch (`mixmatch_loss`):
        L = Lx + lambda_u * rampup * Lu + sum_c pi_c log(pi_c / pbar_c),  pi uniform
        Lx = soft cross-entropy over the labeled rows, Lu = mean squared error over the unlabeled rows

How it sits in `latentmix.training.train`'s step (docs/peers.md, "DivideMix"): the loop's batch is
split per network into that network's labeled and unlabeled samples; `DivideMix.batch_targets`
gives each network's target rows (refined where labeled, guessed where not); the loop's mixed
forward (layer, lam, perm of `latentmix.mixing.LatentMixup`) is MixMatch's mixup. Row i of the
mixed batch is dominated by sample i when lam >= 0.5 and by perm(i) when lam < 0.5 (MixMatch's
lam' = max(lam, 1 - lam) is the same mix up to which row is which), so row i counts in Lx or Lu by
whether its dominant sample is labeled for that network (`dominant_rows`), and its target is
``lam t_i + (1 - lam) t_perm(i)``. Layer 0 is MixMatch on the inputs (`dividemix`); hidden layers
make it latent (`lr-dividemix`), so it runs on token inputs too.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, Mapping, NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentmix.correction import LossCorrection
from latentmix.errors import ConfigError
from latentmix.gaussian_mixture import GaussianMixture
from latentmix.losses import prior_regularizer
from latentmix.methods import DIVIDEMIX_PARAMS
from latentmix.mixing import NO_MIX, MixPlan, mix_targets, mixed_cross_entropy, one_hot
from latentmix.selection import estimate_noise_rate, flagged_share, separation

__all__ = [
    "DivideMix", "DivideMixBatch", "sharpen", "clean_posterior", "co_divide", "co_refine", "co_guess",
    "dominant_rows", "linear_rampup", "mixmatch_loss", "negative_entropy", "lambda_u_for_noise",
    "LAMBDA_U_BY_NOISE", "REFERENCE_EPOCHS",
]

# The paper's lambda_u by symmetric noise level on CIFAR-10 (Li et al. 2020, Sec. 4.1 / Appendix):
# 0 at 20%, 25 at 50%, 50 at 80%, 150 at 90%. `lambda_u_for_noise` picks the level nearest an estimate.
LAMBDA_U_BY_NOISE: tuple[tuple[float, float], ...] = ((0.2, 0.0), (0.5, 25.0), (0.8, 50.0), (0.9, 150.0))
REFERENCE_EPOCHS = 300  # Train_cifar.py's num_epochs: the rampup's 16 epochs are of these


# --------------------------------------------------------------------------------------------------
# The steps, each a pure function


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Temperature sharpening of probability rows (B, C): ``p^(1/T) / sum_c p_c^(1/T)``
    (MixMatch; Train_cifar.py ``ptu = pu**(1/args.T)``, ``targets_u = ptu / ptu.sum(...)``)."""
    powered = probs ** (1.0 / temperature)
    return powered / powered.sum(dim=1, keepdim=True)


def clean_posterior(losses: np.ndarray) -> np.ndarray:
    """Each sample's P(clean | loss) under a two-component GMM fitted to one network's per-sample
    losses (min-max normalised): the posterior of the lower-mean component (Train_cifar.py
    ``eval_train``: ``GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4)``,
    ``prob[:, gmm.means_.argmin()]``; here `latentmix.gaussian_mixture.GaussianMixture`, 10 EM
    iterations, reg_covar 5e-4)."""
    return 1.0 - GaussianMixture.fit(losses).posterior(losses)


def co_divide(clean: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Co-divide: each network trains on the division the OTHER network's GMM made (Li et al. 2020,
    Alg. 1 line 5; Train_cifar.py ``loader.run('train', pred2, prob2)`` trains net1).

    `clean` (2, ...) holds each network's P(clean); returns (labeled, weights), both (2, ...):
    ``labeled[k] = clean[1 - k] > threshold`` and ``weights[k] = clean[1 - k]``."""
    other = clean.flip(0)
    return other > threshold, other


def co_refine(labels: torch.Tensor, probs: torch.Tensor, weights: torch.Tensor, temperature: float) -> torch.Tensor:
    """Label co-refinement of labeled samples (eq. 3-4; Train_cifar.py ``px = w_x*labels_x +
    (1-w_x)*px``, then sharpened): ``sharpen(w onehot(y) + (1 - w) p, T)``, with p (B, C) the
    trained network's own prediction and w (B,) its clean probability from the other network."""
    w = weights.to(probs.dtype)[:, None]
    return sharpen(w * one_hot(labels, probs.shape[1], probs.dtype) + (1.0 - w) * probs, temperature)


def co_guess(probs_first: torch.Tensor, probs_second: torch.Tensor, temperature: float) -> torch.Tensor:
    """Label co-guessing of unlabeled samples (eq. 5; Train_cifar.py ``pu`` = the mean of both
    networks' softmax, sharpened): ``sharpen((p_1 + p_2) / 2, T)``."""
    return sharpen((probs_first + probs_second) / 2.0, temperature)


def dominant_rows(labeled: torch.Tensor, plan: MixPlan) -> torch.Tensor:
    """Whether row i of the mixed batch counts as labeled (B,): its dominant sample's flag,
    sample i when lam >= 0.5, perm(i) when lam < 0.5 (MixMatch's lam' = max(lam, 1 - lam) keeps
    the first input dominant, Train_cifar.py ``l = max(l, 1-l)``)."""
    if not plan.mixes or plan.lam >= 0.5:
        return labeled
    return labeled[plan.perm]


def linear_rampup(progress: float, rampup_length: float, lambda_u: float) -> float:
    """The weight of Lu: ``lambda_u * clip(progress / rampup_length, 0, 1)``, `progress` = epochs
    since the warm-up ended, fractional within an epoch (Train_cifar.py ``linear_rampup(epoch +
    batch_idx/num_iter, warm_up)``, rampup_length 16)."""
    return float(lambda_u) * float(np.clip(progress / rampup_length, 0.0, 1.0))


def mixmatch_loss(logits: torch.Tensor, mixed_targets: torch.Tensor, labeled: torch.Tensor,
                  unlabeled_weight: float) -> torch.Tensor:
    """One network's loss on its mixed batch (Train_cifar.py ``SemiLoss`` and the penalty)::

        Lx = -(1/|X|) sum_{i in X} sum_c t_ic log softmax(out_i)_c
        Lu = (1/(|U| C)) sum_{i in U} sum_c (softmax(out_i)_c - t_ic)^2
        L  = Lx + unlabeled_weight * Lu + sum_c (1/C) log((1/C) / pbar_c)

    X / U the rows whose dominant sample is labeled / unlabeled (`labeled`, (B,) bool), pbar the
    mean softmax over all rows. An empty part contributes 0."""
    log_probs = F.log_softmax(logits, dim=1)
    targets = mixed_targets.detach()
    zero = logits.new_zeros(())
    lx = -(log_probs[labeled] * targets[labeled]).sum(dim=1).mean() if bool(labeled.any()) else zero
    unlabeled = ~labeled
    lu = ((log_probs[unlabeled].exp() - targets[unlabeled]) ** 2).mean() if bool(unlabeled.any()) else zero
    return lx + unlabeled_weight * lu + prior_regularizer(logits)


def negative_entropy(logits: torch.Tensor) -> torch.Tensor:
    """The confidence penalty of the warm-up under asymmetric noise, ``mean_i sum_c p_ic log p_ic``
    (Train_cifar.py ``NegEntropy``), added to the cross-entropy."""
    log_probs = F.log_softmax(logits, dim=1)
    return (log_probs.exp() * log_probs).sum(dim=1).mean()


def lambda_u_for_noise(noise_rate: Optional[float]) -> float:
    """The paper's lambda_u for the noise level nearest `noise_rate` (`LAMBDA_U_BY_NOISE`): the
    paper picks it by the true level, which a user does not know, so the run's own estimate at the
    end of the warm-up stands in. No estimate: the 50% level's 25 (Train_cifar.py's default)."""
    if noise_rate is None or not np.isfinite(noise_rate):
        return 25.0
    return min(LAMBDA_U_BY_NOISE, key=lambda level: abs(level[0] - noise_rate))[1]


# --------------------------------------------------------------------------------------------------
# The object the loop holds


class DivideMixBatch(NamedTuple):
    """What `DivideMix.batch_targets` gives the step: each network's target rows, which rows are
    labeled for it, and the weight of Lu at this step."""

    targets: torch.Tensor  # (2, B, C): co-refined where labeled, co-guessed where not
    labeled: torch.Tensor  # (2, B) bool
    unlabeled_weight: float  # lambda_u * linear_rampup


def _pair(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.dim() != 3 or logits.shape[0] != 2:
        raise ConfigError(f"DivideMix trains two networks: the model must be a PairedNetworks in training mode, whose "
                          f"forward gives logits of shape (2, B, C); got {tuple(logits.shape)} (wrap your model with "
                          "latentmix.models.paired.PairedNetworks.from_model(model, seed))")
    return logits[0], logits[1]


class DivideMix(LossCorrection):
    """DivideMix in the loop's step (module docstring), a `LossCorrection` that never bootstraps:
    the run's tracking pass and noise model stay as for every method (label_issues.csv), and each
    network's own losses of the same pass (`observe_networks`) feed the two GMMs.

    Args:
        num_samples: N (the divisions are kept by sample index).
        p_threshold, temperature: the paper's 0.5 and 0.5 (`latentmix.methods.DIVIDEMIX_PARAMS`).
        rampup_epochs: Lu's linear rampup, in epochs (the paper's 16 of 300, scaled to the run).
        lambda_u: Lu's weight; None: `lambda_u_for_noise` of the noise estimate (the median flagged
            share of the run's noise model over epochs 3.., `latentmix.selection.estimate_noise_rate`)
            when the first divided step comes.
        confidence_penalty: add `negative_entropy` in the warm-up (the paper: asymmetric noise).
        noise_model, lookup, fit: the run's noise model over the tracked losses, as `LossCorrection`'s.

    Attributes:
        clean: (2, N) each network's P(clean) from its last GMM (NaN where not observed), or None.
        lambda_u, division_start: the chosen weight and the `epochs_done` of the first divided step.
    """

    def __init__(self, num_samples: int, *, p_threshold: float = DIVIDEMIX_PARAMS["p_threshold"],
                 temperature: float = DIVIDEMIX_PARAMS["T"], rampup_epochs: float = DIVIDEMIX_PARAMS["rampup"],
                 lambda_u: Optional[float] = None, confidence_penalty: bool = False, noise_model: str = "beta",
                 lookup: str = "monotone", fit: Optional[Callable[[torch.Tensor], Any]] = None):
        if not 0.0 < p_threshold < 1.0 or not temperature > 0 or not rampup_epochs > 0:
            raise ConfigError(f"DivideMix needs 0 < p_threshold < 1, T > 0 and rampup_epochs > 0, got {p_threshold!r}, "
                              f"{temperature!r}, {rampup_epochs!r} (the paper: 0.5, 0.5, 16)")
        super().__init__(num_samples, correction="none", noise_model=noise_model, lookup=lookup, fit=fit)
        self.p_threshold, self.temperature, self.rampup_epochs = float(p_threshold), float(temperature), float(rampup_epochs)
        self.lambda_u = None if lambda_u is None else float(lambda_u)
        self.confidence_penalty = bool(confidence_penalty)
        self.clean: Optional[torch.Tensor] = None
        self.division_start: Optional[int] = None
        self.fit_shares: list[dict] = []  # per end_epoch: the run fit's flagged share and separation
        self._network_losses: Optional[torch.Tensor] = None  # (2, N)
        self._network_index: list[torch.Tensor] = []
        self._batches_this_epoch = 0
        self._batches_per_epoch: Optional[int] = None

    @property
    def bootstrapping(self) -> bool:
        """Whether batches are divided now: past the warm-up and both GMMs fitted (the run's metrics
        call a corrected epoch 'bootstrapping', and its guard compares it with the warm-up)."""
        return self.enabled and self.clean is not None

    @property
    def mixes_now(self) -> bool:
        """The warm-up trains on the un-mixed batch (the paper's warm-up is plain cross-entropy)."""
        return self.bootstrapping

    # -- per epoch ------------------------------------------------------------------------------
    def observe_networks(self, index: Any, losses: torch.Tensor, *, for_fit: bool = True) -> None:
        """Each network's per-sample losses (2, n) of samples `index` (n,) from the tracking pass."""
        index = torch.as_tensor(index).long().reshape(-1)
        losses = torch.as_tensor(losses).detach().float()
        if losses.shape != (2, index.numel()):
            raise ConfigError(f"DivideMix.observe_networks: losses must be (2, {index.numel()}), one row per network, "
                              f"got {tuple(losses.shape)}")
        if self._network_losses is None:
            self._network_losses = torch.full((2, self.num_samples), float("nan"), device=losses.device)
        index = index.to(self._network_losses.device)
        self._network_losses[:, index] = losses.to(self._network_losses.device)
        if for_fit:
            self._network_index.append(index)

    def end_epoch(self) -> Any:
        """The run's noise model (`LossCorrection.end_epoch`), and a fresh GMM per network on its
        losses of this epoch: `clean` (Train_cifar.py ``eval_train``, every epoch after the warm-up)."""
        index = torch.cat(self._epoch_index) if self._epoch_index else None
        fitted = super().end_epoch()
        if index is not None:
            values = self._losses[index].cpu().numpy()
            p_noisy = fitted.posterior(values)
            self.fit_shares.append({"epoch": self.epochs_done, "flagged_share": flagged_share(p_noisy),
                                    "separation": separation(p_noisy, values)})
        if self._network_index:
            seen = torch.cat(self._network_index)
            clean = torch.full((2, self.num_samples), float("nan"))
            for k in range(2):
                clean[k, seen.cpu()] = torch.from_numpy(clean_posterior(self._network_losses[k, seen].cpu().numpy())).float()
            self.clean = clean.to(self._network_losses.device)
            self._network_index = []
        if self._batches_this_epoch:
            self._batches_per_epoch, self._batches_this_epoch = self._batches_this_epoch, 0
        return fitted

    def noise_estimate(self) -> Optional[float]:
        """The run's noise-rate estimate so far: the median flagged share of its fits over epochs
        3.. (`latentmix.selection.estimate_noise_rate`, the rule of the run's own estimate)."""
        return estimate_noise_rate(self.fit_shares, self.epochs_done) if self.fit_shares else None

    def issue_scores(self) -> torch.Tensor:
        """(N,) DivideMix's own label-issue score, 1 - the mean of the two networks' P(clean)
        (NaN before the first fit or where not observed)."""
        if self.clean is None:
            return torch.full((self.num_samples,), float("nan"))
        return 1.0 - self.clean.mean(dim=0)

    # -- per batch ------------------------------------------------------------------------------
    def _step_weight(self) -> float:
        """lambda_u (chosen at the first divided step) times the rampup at this step."""
        if self.division_start is None:
            self.division_start = self.epochs_done
        if self.lambda_u is None:
            self.lambda_u = lambda_u_for_noise(self.noise_estimate())
        within = self._batches_this_epoch / self._batches_per_epoch if self._batches_per_epoch else 0.0
        return linear_rampup(self.epochs_done - self.division_start + within, self.rampup_epochs, self.lambda_u)

    @torch.no_grad()
    def batch_targets(self, model: nn.Module, inputs: Any, labels: torch.Tensor, index: Any = None, *,
                      autocast: Callable = nullcontext) -> Optional[DivideMixBatch]:
        """The batch's `DivideMixBatch` (None in the warm-up): one forward of the pair on the
        un-mixed batch (no gradient, training mode as the reference's own-network forwards) gives
        both networks' predictions; each network's rows are co-refined where its division (the
        other network's GMM) calls the sample labeled, co-guessed where not."""
        if not self.bootstrapping:
            self._batches_this_epoch += 1
            return None
        if index is None:
            raise ConfigError("DivideMix.batch_targets needs the batch's sample index (the divisions are per sample): "
                              "batch_targets(model, x, y, index)")
        weight = self._step_weight()
        self._batches_this_epoch += 1
        index = torch.as_tensor(index).long().reshape(-1).to(self.clean.device)
        with autocast():
            logits = model(inputs)
        first, second = _pair(logits.float())
        probs = torch.stack((first.softmax(dim=1), second.softmax(dim=1)))
        labeled, weights = co_divide(self.clean[:, index].to(labels.device), self.p_threshold)
        guessed = co_guess(probs[0], probs[1], self.temperature)
        rows = torch.stack([torch.where(labeled[k][:, None], co_refine(labels, probs[k], weights[k], self.temperature),
                                        guessed) for k in range(2)])
        return DivideMixBatch(rows, labeled, weight)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, plan: MixPlan = NO_MIX,
             targets: Optional[DivideMixBatch] = None) -> torch.Tensor:
        """Both networks' losses summed (their parameters are disjoint, so each gets its own
        gradient): in the warm-up (`targets` None) the (mixed) cross-entropy on the given labels,
        plus `negative_entropy` with `confidence_penalty`; after it `mixmatch_loss` on each
        network's target rows mixed like the hidden state, rows split by `dominant_rows`."""
        outputs = _pair(logits)
        if targets is None:
            return sum(mixed_cross_entropy(out, labels, plan)
                       + (negative_entropy(out) if self.confidence_penalty else 0.0) for out in outputs)
        return sum(mixmatch_loss(out, mix_targets(targets.targets[k], plan), dominant_rows(targets.labeled[k], plan),
                                 targets.unlabeled_weight) for k, out in enumerate(outputs))

    # -- checkpointing --------------------------------------------------------------------------
    def run_state(self) -> dict:
        """The divisions and the chosen lambda_u, for the run's checkpoint."""
        return {"dividemix": {"clean": None if self.clean is None else self.clean.cpu(), "lambda_u": self.lambda_u,
                              "division_start": self.division_start, "fit_shares": list(self.fit_shares),
                              "batches_per_epoch": self._batches_per_epoch}}

    def load_run_state(self, state: Mapping, device: Optional[torch.device | str] = None) -> None:
        saved = state.get("dividemix")
        if saved is None:
            return
        clean = saved["clean"]
        self.clean = None if clean is None else clean.to(device if device is not None else clean.device)
        self.lambda_u, self.division_start = saved["lambda_u"], saved["division_start"]
        self.fit_shares, self._batches_per_epoch = list(saved["fit_shares"]), saved["batches_per_epoch"]
        self._batches_this_epoch = 0

    def state_dict(self) -> dict:
        return {**super().state_dict(), **self.run_state()}

    def load_state_dict(self, state: Mapping, device: Optional[torch.device | str] = None) -> None:
        super().load_state_dict(state, device)
        self.load_run_state(state, device)


def dividemix_step(params: Mapping[str, float], num_samples: int, *, epochs: int, confidence_penalty: bool,
                   noise_model: str = "beta", lookup: str = "monotone",
                   fit: Optional[Callable[[torch.Tensor], Any]] = None) -> DivideMix:
    """The `DivideMix` of a run of `epochs` epochs: the method's parameters (`params`, the paper's),
    the rampup's 16 of the reference's 300 epochs scaled to the run (as the protocols scale the
    warm-up), at least one epoch."""
    rampup = max(1.0, params["rampup"] * epochs / REFERENCE_EPOCHS)
    return DivideMix(num_samples, p_threshold=params["p_threshold"], temperature=params["T"], rampup_epochs=rampup,
                     confidence_penalty=confidence_penalty, noise_model=noise_model, lookup=lookup, fit=fit)
