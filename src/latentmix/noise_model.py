"""Unsupervised label-noise models over per-sample training losses, picked by name, and how well
their P(noisy) finds the wrong labels.

Samples with wrong labels are learnt late, so early in training their loss is high; a two-component
1-D mixture fitted to the per-sample losses gives each sample the posterior of the high-loss
component as P(noisy). Two models share one interface (`fit`, `posterior`, `posterior_torch`,
`state_dict` / `from_state_dict`): the Beta mixture of Arazo et al. 2019 (`beta_mixture`, the
default; its docstring gives the fit step by step) and a Gaussian mixture in the style of DivideMix
(`gaussian_mixture`). This module is where a run names one (`fit_noise_model`, `--noise-model`),
rebuilds one from a checkpoint (`noise_model_from_state_dict`) and scores its P(noisy) against
known wrong labels (`detection_metrics`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from latentmix.beta_mixture import BetaMixture
from latentmix.errors import ConfigError
from latentmix.gaussian_mixture import GaussianMixture
from latentmix.mixture_inputs import as_float64_array

__all__ = ["fit_noise_model", "noise_model_from_state_dict", "detection_metrics", "NOISE_MODEL_KINDS"]

NOISE_MODEL_KINDS = ("beta", "gaussian")

_FIT_OPTIONS = {"beta": ("em_iterations", "lookup"), "gaussian": ("em_iterations", "reg_covar")}


def fit_noise_model(losses: Any, kind: str = "beta", **opts: Any) -> BetaMixture | GaussianMixture:
    """Fit a noise model of the given kind ("beta": `BetaMixture`, "gaussian": `GaussianMixture`).

    `opts` are passed to the model's `fit` (beta: em_iterations, lookup; gaussian: em_iterations,
    reg_covar). Unknown kinds or options raise `ConfigError`.
    """
    if kind not in _FIT_OPTIONS:
        raise ConfigError(f"kind: unknown noise model {kind!r}; choose one of {NOISE_MODEL_KINDS}")
    unknown = sorted(set(opts) - set(_FIT_OPTIONS[kind]))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for noise model {kind!r}; allowed: {_FIT_OPTIONS[kind]}")
    cls = BetaMixture if kind == "beta" else GaussianMixture
    return cls.fit(losses, **opts)


def noise_model_from_state_dict(state: Mapping[str, Any]) -> BetaMixture | GaussianMixture:
    """Rebuild whichever model wrote `state` (dispatch on its "kind")."""
    kind = state.get("kind") if isinstance(state, Mapping) else None
    if kind == "beta":
        return BetaMixture.from_state_dict(state)
    if kind == "gaussian":
        return GaussianMixture.from_state_dict(state)
    raise ConfigError(f"state: unknown noise model kind {kind!r}; expected one of {NOISE_MODEL_KINDS}")


# --------------------------------------------------------------------------------------------------
# evaluation


def detection_metrics(p_noisy: Any, is_noisy: Any, threshold: float = 0.5) -> dict[str, float]:
    """How well P(noisy) finds the truly noisy samples.

    Args:
        p_noisy: shape (n,), scores (higher = more likely noisy), finite.
        is_noisy: shape (n,), ground truth (bool or 0/1).
        threshold: a sample is flagged noisy when p_noisy > threshold.

    Returns:
        dict(auc=..., precision=..., recall=...) of Python floats. `auc` is the ROC AUC from the
        rank (Mann-Whitney U) formula with tied scores given their average rank, i.e. P(score of a
        noisy sample > score of a clean one) + 0.5 P(equal); it is NaN when only one class is
        present. precision = TP / (TP + FP) and recall = TP / (TP + FN) of the flagged set, each
        defined as 0.0 when its denominator is 0.
    """
    scores = as_float64_array(p_noisy, "p_noisy")
    truth_raw = as_float64_array(is_noisy, "is_noisy")
    if scores.ndim != 1 or truth_raw.shape != scores.shape:
        raise ConfigError(
            f"p_noisy and is_noisy: expected two 1-D arrays of the same shape, got {scores.shape} and {truth_raw.shape}"
        )
    if not np.isfinite(scores).all():
        raise ConfigError("p_noisy: contains NaN or infinite values")
    if not np.isin(truth_raw, (0.0, 1.0)).all():
        raise ConfigError("is_noisy: expected booleans or 0/1 values")
    truth = truth_raw.astype(bool)
    n_pos = int(truth.sum())
    n_neg = truth.size - n_pos
    if n_pos == 0 or n_neg == 0:
        auc = float("nan")
    else:
        _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
        ends = np.cumsum(counts)  # 1-based rank of the last member of each tie group
        avg_rank = ends - (counts - 1) / 2.0
        rank_sum = avg_rank[inverse.reshape(-1)][truth].sum()
        auc = float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
    flagged = scores > threshold
    tp = int((flagged & truth).sum())
    n_flagged = int(flagged.sum())
    precision = tp / n_flagged if n_flagged else 0.0
    recall = tp / n_pos if n_pos else 0.0
    return {"auc": auc, "precision": float(precision), "recall": float(recall)}
