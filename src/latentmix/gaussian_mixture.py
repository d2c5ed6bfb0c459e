"""The two-component 1-D Gaussian mixture over per-sample losses, in the style of DivideMix (Li et
al. 2020, "DivideMix: Learning with Noisy Labels as Semi-supervised Learning", ICLR): the
alternative to the Beta mixture (`beta_mixture`), offered behind the same interface (`fit`,
`posterior`, `posterior_torch`, `state_dict`) so that `--noise-model gaussian` changes nothing else
in a run. `noise_model.fit_noise_model` picks a model by name.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import numpy as np
import torch

from latentmix.errors import ConfigError
from latentmix.mixture_inputs import check_iterations, check_state, component_pair, fit_input, query_input, torch_compute_dtype

__all__ = ["GaussianMixture"]

_INIT_WEIGHTS = (0.5, 0.5)  # EM starts from equal weights, as the Beta mixture does


class GaussianMixture:
    """Two-component 1-D Gaussian mixture over min/max-normalised losses (as in DivideMix).

    Losses are normalised to [0, 1] by the min and max of the fitted losses; EM runs a fixed number
    of iterations from means at the 25th / 75th percentiles, the overall variance, weights 0.5 / 0.5,
    adding `reg_covar` (DivideMix / sklearn: 5e-4) to each variance. The higher-mean component is
    the noisy one (stored as component 1). `posterior` evaluates the exact posterior of that
    component at the normalised loss, clipped to [0, 1]; unlike the Beta model's monotone mode it
    is not forced monotone (with unequal variances it may fall at extreme losses). Zero spread
    (all losses equal) gives a degenerate model with P(noisy) = 0 everywhere.

    Attributes: means, variances, weights (float64 arrays, shape (2,)), loss_min, loss_max,
    em_iterations, reg_covar, degenerate.
    """

    kind = "gaussian"

    def __init__(
        self,
        means: Any,
        variances: Any,
        weights: Any,
        loss_min: float,
        loss_max: float,
        *,
        em_iterations: int = 10,
        reg_covar: float = 5e-4,
        degenerate: bool = False,
    ) -> None:
        self._em_iterations = check_iterations(em_iterations)
        self._reg_covar = float(reg_covar)
        self._degenerate = bool(degenerate)
        self._means = component_pair(means, "means")
        self._variances = component_pair(variances, "variances")
        self._weights = component_pair(weights, "weights")
        if (self._variances <= 0).any() or (self._weights < 0).any():
            raise ConfigError("variances must be > 0, weights >= 0")
        self._loss_min = float(loss_min)
        self._loss_max = float(loss_max)
        if not (math.isfinite(self._loss_min) and math.isfinite(self._loss_max)) or (
            self._loss_max < self._loss_min or (self._loss_max == self._loss_min and not self._degenerate)
        ):
            raise ConfigError(f"loss_min/loss_max: need finite loss_min < loss_max, got {loss_min!r}, {loss_max!r}")

    means = property(lambda self: self._means)
    variances = property(lambda self: self._variances)
    weights = property(lambda self: self._weights)
    loss_min = property(lambda self: self._loss_min)
    loss_max = property(lambda self: self._loss_max)
    em_iterations = property(lambda self: self._em_iterations)
    reg_covar = property(lambda self: self._reg_covar)
    degenerate = property(lambda self: self._degenerate)

    def __repr__(self) -> str:
        if self._degenerate:
            return f"GaussianMixture(degenerate, loss={self._loss_min:.4g})"
        comps = ", ".join(
            f"{tag}: mu={m:.3g} var={v:.3g} w={w:.3g}"
            for tag, m, v, w in zip(("clean", "noisy"), self._means, self._variances, self._weights)
        )
        return f"GaussianMixture({comps}; loss in [{self._loss_min:.4g}, {self._loss_max:.4g}])"

    @classmethod
    def fit(cls, losses: Any, *, em_iterations: int = 10, reg_covar: float = 5e-4) -> "GaussianMixture":
        """Fit to per-sample losses, shape (n,) (NumPy or torch); `ConfigError` if empty/non-finite."""
        em_iterations = check_iterations(em_iterations)
        if not (isinstance(reg_covar, (int, float)) and math.isfinite(reg_covar) and reg_covar > 0):
            raise ConfigError(f"reg_covar: expected a finite number > 0, got {reg_covar!r}")
        arr = fit_input(losses)
        lo, hi = float(arr.min()), float(arr.max())
        if hi == lo:
            return cls((0.0, 1.0), (1.0, 1.0), _INIT_WEIGHTS, lo, lo,
                       em_iterations=em_iterations, reg_covar=reg_covar, degenerate=True)
        x = (arr - lo) / (hi - lo)
        mu = np.percentile(x, [25.0, 75.0])
        var = np.full(2, x.var() + reg_covar)
        w = np.array(_INIT_WEIGHTS)
        for _ in range(em_iterations):
            r = _gauss_resp(x, mu, var, w)  # (2, n)
            nk = r.sum(axis=1) + 10 * np.finfo(np.float64).eps
            mu = (r @ x) / nk
            var = np.einsum("kn,kn->k", r, (x[None, :] - mu[:, None]) ** 2) / nk + reg_covar
            w = nk / x.size
        order = np.argsort(mu, kind="stable")  # component 1 = higher mean = noisy
        return cls(mu[order], var[order], w[order] / w.sum(), lo, hi,
                   em_iterations=em_iterations, reg_covar=reg_covar)

    def rescale(self, losses: Any) -> np.ndarray:
        """Losses (any shape) normalised by the fitted min/max and clipped to [0, 1]."""
        arr = query_input(losses)
        if self._degenerate:
            return np.zeros(arr.shape)
        return np.clip((arr - self._loss_min) / (self._loss_max - self._loss_min), 0.0, 1.0)

    def posterior(self, losses: Any) -> np.ndarray:
        """P(noisy) in [0, 1], float64 array of the input's shape; NaN raises `ConfigError`."""
        x = self.rescale(losses)
        if self._degenerate:
            return x  # zeros
        return _gauss_resp(x.reshape(-1), self._means, self._variances, self._weights)[1].reshape(x.shape)

    def posterior_torch(self, losses: torch.Tensor, clamp: Optional[tuple[float, float]] = None) -> torch.Tensor:
        """Like `posterior`, with torch ops on the tensor's device (no host sync); NaN in, NaN out.
        `clamp=(low, high)` clamps the result, as `BetaMixture.posterior_torch`."""
        if not isinstance(losses, torch.Tensor):
            raise ConfigError(f"losses: posterior_torch expects a torch.Tensor, got {type(losses).__name__}")
        out_dtype = losses.dtype if losses.is_floating_point() else torch.float32
        if self._degenerate:
            zeros = torch.zeros(losses.shape, dtype=out_dtype, device=losses.device)
            return zeros if clamp is None else zeros.clamp_(*clamp)
        dtype = torch_compute_dtype(losses.device)
        x = ((losses.detach().to(dtype) - self._loss_min) / (self._loss_max - self._loss_min)).clamp(0.0, 1.0)
        logs = []
        for k in range(2):
            mu, var, w = float(self._means[k]), float(self._variances[k]), float(self._weights[k])
            logs.append(math.log(w) - 0.5 * math.log(2 * math.pi * var) - (x - mu) ** 2 / (2 * var)
                        if w > 0 else torch.full_like(x, -math.inf))
        # P(noisy) = sigmoid(log w1 p1 - log w0 p0)
        p = torch.sigmoid(logs[1] - logs[0]).to(out_dtype)
        return p if clamp is None else p.clamp_(*clamp)

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state (floats, lists, str, bool)."""
        return {
            "kind": self.kind,
            "version": 1,
            "means": [float(v) for v in self._means],
            "variances": [float(v) for v in self._variances],
            "weights": [float(v) for v in self._weights],
            "loss_min": self._loss_min,
            "loss_max": self._loss_max,
            "em_iterations": self._em_iterations,
            "reg_covar": self._reg_covar,
            "degenerate": self._degenerate,
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> "GaussianMixture":
        check_state(state, cls.kind, ("means", "variances", "weights", "loss_min", "loss_max"))
        return cls(
            state["means"], state["variances"], state["weights"], state["loss_min"], state["loss_max"],
            em_iterations=state.get("em_iterations", 10), reg_covar=state.get("reg_covar", 5e-4),
            degenerate=state.get("degenerate", False),
        )


def _gauss_resp(x: np.ndarray, mu: np.ndarray, var: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Responsibilities, shape (2, n), of 1-D Gaussian components (log-space, normalised over k)."""
    with np.errstate(divide="ignore"):
        log_p = (np.log(w) - 0.5 * np.log(2 * np.pi * var))[:, None] - (x[None, :] - mu[:, None]) ** 2 / (
            2 * var[:, None]
        )
    log_p -= log_p.max(axis=0, keepdims=True)
    r = np.exp(log_p)
    r /= r.sum(axis=0, keepdims=True)
    return r
