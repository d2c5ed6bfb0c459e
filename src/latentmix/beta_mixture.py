"""The two-component Beta mixture over per-sample training losses, of Arazo et al. 2019,
"Unsupervised Label Noise Modeling and Loss Correction" (ICML): the library's default noise model.

Samples with wrong labels are learnt late, so early in training their loss is high; a 1-D mixture
fitted to the per-sample losses separates a low-loss ("clean") component from a high-loss ("noisy")
one, and the posterior of the high-loss component is used as P(noisy) for each sample.
`noise_model.fit_noise_model` picks this model or the Gaussian one (`gaussian_mixture`) by name.

Design: plain arrays in, plain arrays out (NumPy arrays or torch tensors accepted, NumPy returned,
except `posterior_torch`, which stays on the tensor's device). Fitted state is a handful of Python
floats and a 100-entry table, so a model fits in a checkpoint via `state_dict()` /
`from_state_dict()`.

Beta mixture, step by step (`BetaMixture.fit`):

1. Percentiles p5 and p95 of the losses. Samples outside [p5, p95] are dropped from the fit.
   ``loss_min = p5 + 1e-5``, ``loss_max = p95``.
2. Rescale ``x = (l - loss_min) / (loss_max - loss_min + 1e-6)``; ``x >= 1 -> 1 - 1e-3`` and
   ``x <= 0 -> 1e-3``. The same rescaling (same constants, same clamps) is applied to any loss
   queried later (`rescale`).
3. EM (`fit_beta_mixture_em`) on x clipped to [1e-4, 1 - 1e-4]: components start at
   (alpha, beta) = (1, 2) [clean, low loss] and (2, 1) [noisy, high loss], weights 0.5 / 0.5;
   the M-step is a responsibility-weighted method of moments. Component 1 is the noisy one.
   Every fit starts afresh (no warm start from an earlier fit).
4. P(noisy | x) = w1 p1(x) / (w1 p1(x) + w0 p0(x) + 1e-12) is tabulated at 100 points
   ``linspace(1e-12, 1 - 1e-12, 100)``; from the table's argmax on, every entry is set to the max
   (so P(noisy) never falls at high loss). Queries read the table (see `lookup` below).

``lookup`` modes:

* ``"monotone"`` (default): the table left of the peak is replaced by the running minimum taken
  from the right, so the whole table is non-decreasing in the loss. This fixes a flaw of the
  reference: when the fitted noisy component has alpha < 1 (smaller than the clean one's) its
  density blows up near 0, and the reference table can say P(noisy) ~ 1 for the *cleanest*
  samples. (A cumulative max from the left is deliberately not used: it would spread such a
  spurious entry 0 over the whole table.) The peak is the argmax of the table at or after its
  global minimum -- the plain argmax in the usual case; when the spurious entry 0 is itself the
  global max the plain argmax is 0 and the reference sets the *whole* table to the max (every
  sample flagged noisy), which the monotone mode avoids.
  A query reads the nearest table point, index ``round(99 * x)``, matching the table's 1/99 spacing.
* ``"reference"``: the reference table and look-up exactly: only the part from the argmax on is
  flattened, and the index is ``int(100 * x)`` clamped to [0, 99] (which does not match the
  table's 1/99 spacing; kept for faithful reproduction).

Degenerate input: empty losses, NaN or +-inf losses raise `ConfigError`. When the losses show no
spread (p95 - p5 <= 9e-6, so the reference rescale denominator ``p95 - p5 - 1e-5 + 1e-6`` is not
positive, or fewer than two distinct losses remain inside [p5, p95] -- e.g. all losses equal),
there is no evidence of two populations: the model is marked ``degenerate`` and its posterior is
0 for every loss ("no evidence of noise").
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import numpy as np
import torch

from latentmix.errors import ConfigError
from latentmix.mixture_inputs import (
    as_float64_array,
    check_iterations,
    check_state,
    component_pair,
    fit_input,
    query_input,
    torch_compute_dtype,
)

__all__ = ["BetaMixture", "fit_beta_mixture_em", "LOOKUP_MODES"]

LOOKUP_MODES = ("monotone", "reference")

# Constants of the reference implementation (kept bit-for-bit).
_PERCENTILE_LOW = 5.0
_PERCENTILE_HIGH = 95.0
_MIN_OFFSET = 1e-5  # loss_min = p5 + 1e-5
_DENOM_EPS = 1e-6  # (l - min) / (max - min + 1e-6)
_RESCALE_CLAMP = 1e-3  # x >= 1 -> 1 - 1e-3, x <= 0 -> 1e-3
_EM_CLIP = 1e-4  # EM inputs clipped to [1e-4, 1 - 1e-4]
_EPS_NAN = 1e-12  # responsibility floor, posterior denominator, table grid end points
_TABLE_SIZE = 100

# Guards that only act in degenerate cases: the concentration kappa = alpha + beta of a
# method-of-moments fit is clipped to this range, so a zero (or tiny) weighted variance gives a
# very peaked but finite Beta instead of inf/NaN, and a variance at the m(1-m) bound gives a
# U-shaped Beta instead of alpha = 0.
_KAPPA_MIN = 1e-6
_KAPPA_MAX = 1e6

_BETA_INIT_ALPHAS = (1.0, 2.0)
_BETA_INIT_BETAS = (2.0, 1.0)
_INIT_WEIGHTS = (0.5, 0.5)


def _check_lookup(lookup: Any) -> str:
    if lookup not in LOOKUP_MODES:
        raise ConfigError(f"lookup: expected one of {LOOKUP_MODES}, got {lookup!r}")
    return lookup


def _betaln(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_logpdf(log_x: np.ndarray, log_1mx: np.ndarray, alphas: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """Log densities, shape (K, n), of K Beta components at n points given log x and log(1 - x)."""
    betaln = np.array([_betaln(float(a), float(b)) for a, b in zip(alphas, betas)])  # K scalars
    return (alphas[:, None] - 1.0) * log_x[None, :] + (betas[:, None] - 1.0) * log_1mx[None, :] - betaln[:, None]


def _em_start(alphas: Any, betas: Any, weights: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 copies of the starting parameters of `fit_beta_mixture_em`, checked: three 1-D
    sequences of one length K >= 1, alphas and betas > 0, weights >= 0, all finite."""
    a = np.asarray(alphas, dtype=np.float64).copy()
    b = np.asarray(betas, dtype=np.float64).copy()
    w = np.asarray(weights, dtype=np.float64).copy()
    if not (a.shape == b.shape == w.shape and a.ndim == 1 and a.size >= 1):
        raise ConfigError("alphas, betas, weights: expected three 1-D sequences of the same length K >= 1")
    if (a <= 0).any() or (b <= 0).any() or (w < 0).any() or not np.isfinite(np.concatenate([a, b, w])).all():
        raise ConfigError("alphas, betas must be > 0 and weights >= 0 (all finite)")
    return a, b, w


def _responsibilities_in_place(log_r: np.ndarray) -> np.ndarray:
    """The E-step's responsibilities, shape (K, n), from log(w_k p_k(x)), normalised over k and
    written over `log_r` (the fit runs on every epoch's losses: no new (K, n) array per iteration)."""
    if log_r.shape[0] == 2:
        # Two components: r_1 = 1 / (1 + exp(l_0 - l_1)), r_0 = 1 - r_1, one exp per sample.
        r = log_r
        diff = np.subtract(log_r[0], log_r[1])
        np.clip(diff, -700.0, 700.0, out=diff)
        np.exp(diff, out=diff)  # r_0 / r_1
        np.add(diff, 1.0, out=r[1])
        np.reciprocal(r[1], out=r[1])
        np.multiply(diff, r[1], out=r[0])
        return r
    log_r -= log_r.max(axis=0, keepdims=True)
    r = np.exp(log_r, out=log_r)
    r /= r.sum(axis=0, keepdims=True)
    return r


def fit_beta_mixture_em(
    x: Any,
    *,
    iterations: int = 10,
    alphas: tuple[float, float] = _BETA_INIT_ALPHAS,
    betas: tuple[float, float] = _BETA_INIT_BETAS,
    weights: tuple[float, float] = _INIT_WEIGHTS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM for a K-component Beta mixture on data already strictly inside (0, 1); no clipping here.

    Args:
        x: shape (n,), every value in the open interval (0, 1).
        iterations: number of EM iterations (each one E-step then one M-step; no early stop).
        alphas, betas, weights: initial parameters, each of length K (default: the reference's
            (1, 2) clean / (2, 1) noisy, weights 0.5 / 0.5).

    Returns:
        (alphas, betas, weights), each a float64 array of shape (K,).

    E-step: r_k = w_k * Beta(x; a_k, b_k), floored at 1e-12, normalised over k (computed in log
    space, so huge densities do not overflow). M-step: weighted method of moments per component,
    m = sum(r x) / sum(r), v = sum(r (x - m)^2) / sum(r), a = m (m (1 - m) / v - 1),
    b = a (1 - m) / m; weights = mean responsibility. The concentration m (1 - m) / v - 1 = a + b
    is clipped to [1e-6, 1e6] so a zero variance never yields inf or NaN.
    """
    arr = fit_input(x, "x")
    if not ((arr > 0.0) & (arr < 1.0)).all():
        raise ConfigError(
            f"x: values must lie strictly inside (0, 1) (got min {arr.min()!r}, max {arr.max()!r}); "
            "rescale and clip them first (BetaMixture.fit does this for raw losses)"
        )
    iterations = check_iterations(iterations)
    a, b, w = _em_start(alphas, betas, weights)
    n = arr.size
    # Design matrices, so each E-step and M-step is a single small matrix product:
    # log(w_k p_k(x)) = [a_k - 1, b_k - 1, log w_k - betaln(a_k, b_k)] . [log x, log(1 - x), 1]
    # and the moment sums [sum r, sum r x, sum r x^2] = r @ [1, x, x^2].
    feats = np.empty((3, n))
    np.log(arr, out=feats[0])
    np.log1p(-arr, out=feats[1])
    feats[2] = 1.0
    moments_basis = np.empty((n, 3))
    moments_basis[:, 0] = 1.0
    moments_basis[:, 1] = arr
    np.multiply(arr, arr, out=moments_basis[:, 2])
    log_floor = math.log(_EPS_NAN)
    coef = np.empty((a.size, 3))
    for _ in range(iterations):
        # E-step: r_k = max(w_k p_k(x), 1e-12) normalised over k, done in log space (no overflow).
        coef[:, 0] = a - 1.0
        coef[:, 1] = b - 1.0
        with np.errstate(divide="ignore"):
            coef[:, 2] = np.log(w) - np.array([_betaln(float(ak), float(bk)) for ak, bk in zip(a, b)])
        log_r = coef @ feats  # (K, n)
        np.maximum(log_r, log_floor, out=log_r)
        r = _responsibilities_in_place(log_r)
        # M-step: weighted method of moments (v from E[x^2] - m^2: data lie in (0, 1)).
        sums = r @ moments_basis  # (K, 3)
        r_sum = sums[:, 0]  # > 0 thanks to the floor
        m = sums[:, 1] / r_sum
        v = sums[:, 2] / r_sum - m * m
        # A zero (or round-off negative) variance would make kappa infinite: cap kappa at 1e6.
        v = np.maximum(v, m * (1.0 - m) / (_KAPPA_MAX + 1.0))
        kappa = np.clip(m * (1.0 - m) / v - 1.0, _KAPPA_MIN, _KAPPA_MAX)
        a = m * kappa
        b = (1.0 - m) * kappa  # == a (1 - m) / m
        w = r_sum / n
    return a, b, w


def _beta_posterior_table(alphas: np.ndarray, betas: np.ndarray, weights: np.ndarray, lookup: str) -> np.ndarray:
    """P(noisy) at linspace(1e-12, 1 - 1e-12, 100), flattened from the argmax on (shape (100,))."""
    grid = np.linspace(_EPS_NAN, 1.0 - _EPS_NAN, _TABLE_SIZE)
    with np.errstate(over="ignore", under="ignore"):
        lik = weights[:, None] * np.exp(_beta_logpdf(np.log(grid), np.log1p(-grid), alphas, betas))
    with np.errstate(invalid="ignore"):
        table = lik[1] / (lik.sum(axis=0) + _EPS_NAN)
    table = np.nan_to_num(table, nan=0.0, posinf=1.0)  # only reachable through overflow (inf / inf)
    table = np.clip(table, 0.0, 1.0)
    if lookup == "reference":
        peak = int(np.argmax(table))
        table[peak:] = table[peak]
        return table
    # Monotone: the peak is the argmax at or after the global minimum. This is the plain argmax
    # whenever that lies right of the minimum (the usual case); it differs only when a spurious
    # low-loss spike is itself the global max (argmax 0), where the plain rule would set the whole
    # table to that max and flag every sample noisy.
    low = int(np.argmin(table))
    peak = low + int(np.argmax(table[low:]))
    table[peak:] = table[peak]
    # Running minimum from the right: entry i becomes min(table[i:peak + 1]).
    table[: peak + 1] = np.minimum.accumulate(table[: peak + 1][::-1])[::-1]
    return table


class BetaMixture:
    """Two-component Beta mixture over per-sample losses; `posterior` gives P(noisy).

    Build one with `BetaMixture.fit(losses)` (or `from_state_dict`, or the constructor with known
    parameters). The fitted state is read-only:

    Attributes:
        alphas, betas, weights: float64 arrays of shape (2,); component 0 clean, 1 noisy.
        loss_min, loss_max: floats, the rescaling (p5 + 1e-5 and p95 of the fitted losses).
        table: float64 array of shape (100,), P(noisy) at the look-up grid.
        lookup: "monotone" (default) or "reference"; see the module docstring.
        em_iterations: EM iterations used by the fit.
        degenerate: True when the losses had no spread; then P(noisy) = 0 for every loss.
    """

    kind = "beta"

    def __init__(
        self,
        alphas: Any,
        betas: Any,
        weights: Any,
        loss_min: float,
        loss_max: float,
        *,
        lookup: str = "monotone",
        em_iterations: int = 10,
        degenerate: bool = False,
        table: Any = None,
    ) -> None:
        self._lookup = _check_lookup(lookup)
        self._em_iterations = check_iterations(em_iterations)
        self._degenerate = bool(degenerate)
        self._alphas = component_pair(alphas, "alphas")
        self._betas = component_pair(betas, "betas")
        self._weights = component_pair(weights, "weights")
        if (self._alphas <= 0).any() or (self._betas <= 0).any() or (self._weights < 0).any():
            raise ConfigError("alphas and betas must be > 0, weights >= 0")
        self._loss_min = float(loss_min)
        self._loss_max = float(loss_max)
        if not (math.isfinite(self._loss_min) and math.isfinite(self._loss_max)):
            raise ConfigError(f"loss_min/loss_max must be finite, got {loss_min!r}, {loss_max!r}")
        if self._loss_max - self._loss_min + _DENOM_EPS <= 0:
            raise ConfigError(
                f"loss_max - loss_min + 1e-6 must be > 0 (got loss_min={loss_min!r}, loss_max={loss_max!r})"
            )
        if self._degenerate:
            tab = np.zeros(_TABLE_SIZE)
        elif table is not None:
            tab = as_float64_array(table, "table").reshape(-1).copy()
            if tab.shape != (_TABLE_SIZE,) or not np.isfinite(tab).all() or (tab < 0).any() or (tab > 1).any():
                raise ConfigError(f"table: expected {_TABLE_SIZE} numbers in [0, 1]")
        else:
            tab = _beta_posterior_table(self._alphas, self._betas, self._weights, self._lookup)
        tab.setflags(write=False)
        self._table = tab
        self._torch_tables: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    # -- read-only state ------------------------------------------------------------------------
    alphas = property(lambda self: self._alphas)
    betas = property(lambda self: self._betas)
    weights = property(lambda self: self._weights)
    loss_min = property(lambda self: self._loss_min)
    loss_max = property(lambda self: self._loss_max)
    table = property(lambda self: self._table)
    lookup = property(lambda self: self._lookup)
    em_iterations = property(lambda self: self._em_iterations)
    degenerate = property(lambda self: self._degenerate)

    def __repr__(self) -> str:
        if self._degenerate:
            return f"BetaMixture(degenerate, loss_min={self._loss_min:.4g}, loss_max={self._loss_max:.4g})"
        comps = ", ".join(
            f"{tag}: a={a:.3g} b={b:.3g} w={w:.3g}"
            for tag, a, b, w in zip(("clean", "noisy"), self._alphas, self._betas, self._weights)
        )
        return f"BetaMixture({comps}; loss in [{self._loss_min:.4g}, {self._loss_max:.4g}], lookup={self._lookup!r})"

    # -- fitting ----------------------------------------------------------------------------------
    @classmethod
    def fit(cls, losses: Any, *, em_iterations: int = 10, lookup: str = "monotone") -> "BetaMixture":
        """Fit a fresh model to per-sample losses.

        Args:
            losses: shape (n,), NumPy array or torch tensor (any device), finite, n >= 1.
            em_iterations: EM iterations (reference: 10).
            lookup: "monotone" (default) or "reference".

        Returns:
            A fitted `BetaMixture`. Raises `ConfigError` for empty or non-finite losses.
        """
        lookup = _check_lookup(lookup)
        em_iterations = check_iterations(em_iterations)
        arr = fit_input(losses)
        p_low, p_high = np.percentile(arr, [_PERCENTILE_LOW, _PERCENTILE_HIGH])
        kept = arr[(arr >= p_low) & (arr <= p_high)]
        loss_min = float(p_low) + _MIN_OFFSET
        loss_max = float(p_high)
        if loss_max - loss_min + _DENOM_EPS <= 0 or kept.size < 2 or kept.min() == kept.max():
            c = float(p_high)
            return cls(
                _BETA_INIT_ALPHAS, _BETA_INIT_BETAS, _INIT_WEIGHTS, c, c,
                lookup=lookup, em_iterations=em_iterations, degenerate=True,
            )
        x = _rescale_np(kept, loss_min, loss_max)
        x = np.clip(x, _EM_CLIP, 1.0 - _EM_CLIP)
        alphas, betas, weights = fit_beta_mixture_em(x, iterations=em_iterations)
        return cls(alphas, betas, weights, loss_min, loss_max, lookup=lookup, em_iterations=em_iterations)

    # -- queries ----------------------------------------------------------------------------------
    def rescale(self, losses: Any) -> np.ndarray:
        """Losses (any shape) mapped to (0, 1) with the fitted min/max and the reference clamps."""
        return _rescale_np(query_input(losses), self._loss_min, self._loss_max)

    def _index(self, x: np.ndarray) -> np.ndarray:
        if self._lookup == "reference":
            idx = (_TABLE_SIZE * x).astype(np.int64)
        else:
            idx = np.rint((_TABLE_SIZE - 1) * x).astype(np.int64)
        return np.clip(idx, 0, _TABLE_SIZE - 1)

    def posterior(self, losses: Any) -> np.ndarray:
        """P(noisy) in [0, 1] for losses of any shape (NumPy array or torch tensor).

        Returns a float64 NumPy array of the same shape. NaN losses raise `ConfigError`; +-inf
        are clamped like any loss outside the fitted range. A degenerate model returns zeros.
        """
        arr = query_input(losses)
        if self._degenerate:
            return np.zeros(arr.shape)
        return self._table[self._index(_rescale_np(arr, self._loss_min, self._loss_max))]

    def _device_table(self, device: torch.device, dtype: torch.dtype, clamp: Optional[tuple[float, float]]) -> torch.Tensor:
        """The look-up table on `device` in `dtype`, values clamped to `clamp` (if given), with one
        extra entry NaN at index `_TABLE_SIZE` (where NaN losses are sent). Cached."""
        key = (str(device), dtype, clamp)
        tab = self._torch_tables.get(key)
        if tab is None:
            values = np.append(self._table, np.nan)
            if clamp is not None:
                values = np.clip(values, *clamp)  # NaN stays NaN
            tab = torch.as_tensor(values, dtype=torch.float64).to(dtype).to(device)
            self._torch_tables[key] = tab
        return tab

    def posterior_torch(self, losses: torch.Tensor, clamp: Optional[tuple[float, float]] = None) -> torch.Tensor:
        """P(noisy) for a tensor of losses, computed with torch ops on its device (no host sync).

        Same rescale and table look-up as `posterior` (in float64, float32 on MPS). Returns a
        tensor of the input's shape on the input's device, in the input's floating dtype (float32
        for integer input). NaN losses are not checked (that would need a host sync): they give NaN.
        `clamp=(low, high)` clamps the result (the reference clamps each batch's P(noisy) to
        [1e-4, 1 - 1e-4]); it is applied to the cached table, so it costs nothing per call.
        """
        if not isinstance(losses, torch.Tensor):
            raise ConfigError(f"losses: posterior_torch expects a torch.Tensor, got {type(losses).__name__}")
        out_dtype = losses.dtype if losses.is_floating_point() else torch.float32
        if self._degenerate:
            zeros = torch.zeros(losses.shape, dtype=out_dtype, device=losses.device)
            return zeros if clamp is None else zeros.clamp_(*clamp)
        dtype = torch_compute_dtype(losses.device)
        return self._device_table(losses.device, out_dtype, clamp)[_table_index_torch(
            losses.detach().to(dtype), self._loss_min, self._loss_max, self._lookup)]

    # -- checkpointing ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state (floats, lists, str, bool) for a checkpoint or JSON."""
        return {
            "kind": self.kind,
            "version": 1,
            "alphas": [float(v) for v in self._alphas],
            "betas": [float(v) for v in self._betas],
            "weights": [float(v) for v in self._weights],
            "loss_min": self._loss_min,
            "loss_max": self._loss_max,
            "lookup": self._lookup,
            "em_iterations": self._em_iterations,
            "degenerate": self._degenerate,
            "table": [float(v) for v in self._table],
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> "BetaMixture":
        """Rebuild a model from `state_dict()`; the stored table is used as is (identical posteriors)."""
        check_state(state, cls.kind, ("alphas", "betas", "weights", "loss_min", "loss_max", "lookup", "table"))
        return cls(
            state["alphas"], state["betas"], state["weights"], state["loss_min"], state["loss_max"],
            lookup=state["lookup"], em_iterations=state.get("em_iterations", 10),
            degenerate=state.get("degenerate", False), table=state["table"],
        )


def _table_index_torch(losses: torch.Tensor, loss_min: float, loss_max: float, lookup: str) -> torch.Tensor:
    """The look-up table index of each loss, equal to `BetaMixture._index(_rescale_np(...))`:

        x = (l - loss_min) / (loss_max - loss_min + 1e-6)
        monotone: idx = rint(99 x), reference: idx = int(100 x), clipped to [0, 99];  NaN -> 100

    The reference's clamps (x >= 1 -> 1 - 1e-3, x <= 0 -> 1e-3) and the index clip are one
    ``clamp(x, 1e-3, 1 - 1e-3)``: every x between 0 and 1e-3 (or 1 - 1e-3 and 1) gets the same
    index as the clamp value (0, or 99), so the indices are identical, +-inf included. In-place
    operations after the first: a handful of operations instead of twenty.
    """
    x = losses.sub(loss_min).div_(loss_max - loss_min + _DENOM_EPS).clamp_(_RESCALE_CLAMP, 1.0 - _RESCALE_CLAMP)
    if lookup == "reference":
        x = x.mul_(_TABLE_SIZE)  # truncated by the integer conversion below (x > 0)
    else:
        x = x.mul_(_TABLE_SIZE - 1).round_()
    return x.nan_to_num_(nan=float(_TABLE_SIZE)).long()


def _rescale_np(arr: np.ndarray, loss_min: float, loss_max: float) -> np.ndarray:
    x = (arr - loss_min) / (loss_max - loss_min + _DENOM_EPS)
    x[x >= 1.0] = 1.0 - _RESCALE_CLAMP
    x[x <= 0.0] = _RESCALE_CLAMP
    return x
