"""The input checks the two loss mixtures (`beta_mixture`, `gaussian_mixture`) share, and
`noise_model.detection_metrics` with them.

Both models take NumPy arrays or torch tensors on any device and must turn bad input into one clear
`ConfigError` (project rule: never a traceback), with the same wording whichever model is asked: a
fit needs a non-empty, finite 1-D array; a posterior query accepts any shape and +-inf (clamped
like any loss outside the fitted range) but refuses NaN; a saved state must name its model and hold
every key. Kept in one module so that the two models cannot drift apart on what they accept.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from latentmix.errors import ConfigError


def as_float64_array(values: Any, name: str) -> np.ndarray:
    """NumPy float64 copy of `values` (array-like or torch tensor, any device)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: expected an array of numbers, got {type(values).__name__} ({exc})") from exc
    return arr


def fit_input(losses: Any, name: str = "losses") -> np.ndarray:
    """Validated 1-D float64 array for a fit: non-empty and finite."""
    arr = as_float64_array(losses, name)
    if arr.ndim != 1:
        raise ConfigError(f"{name}: expected a 1-D array of shape (n,), got shape {arr.shape}; flatten it first")
    if arr.size == 0:
        raise ConfigError(f"{name}: empty; a noise model needs at least one per-sample loss to fit")
    bad = ~np.isfinite(arr)
    if bad.any():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(bad.sum()) - n_nan
        raise ConfigError(
            f"{name}: {n_nan} NaN and {n_inf} infinite value(s) out of {arr.size}; the training loss "
            "diverged or the per-sample losses were computed wrongly -- fix the losses before fitting"
        )
    return arr


def query_input(losses: Any, name: str = "losses") -> np.ndarray:
    """Float64 array for a posterior query: any shape, +-inf allowed (clamped), NaN refused."""
    arr = as_float64_array(losses, name)
    if np.isnan(arr).any():
        raise ConfigError(f"{name}: {int(np.isnan(arr).sum())} NaN value(s); P(noisy) is undefined for a NaN loss")
    return arr


def component_pair(value: Any, name: str) -> np.ndarray:
    """Read-only float64 array of one parameter's two components (clean, noisy): 2 finite numbers."""
    arr = as_float64_array(value, name).reshape(-1).copy()
    if arr.shape != (2,) or not np.isfinite(arr).all():
        raise ConfigError(f"{name}: expected 2 finite numbers, got {value!r}")
    arr.setflags(write=False)
    return arr


def check_iterations(em_iterations: Any) -> int:
    if isinstance(em_iterations, bool) or not isinstance(em_iterations, (int, np.integer)) or em_iterations < 1:
        raise ConfigError(f"em_iterations: expected an integer >= 1, got {em_iterations!r}")
    return int(em_iterations)


def torch_compute_dtype(device: torch.device) -> torch.dtype:
    # float64 keeps posterior_torch bit-identical to the NumPy path; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def check_state(state: Mapping[str, Any], kind: str, keys: tuple[str, ...]) -> None:
    if not isinstance(state, Mapping):
        raise ConfigError(f"state: expected a dict from state_dict(), got {type(state).__name__}")
    if state.get("kind") != kind:
        raise ConfigError(f"state: kind is {state.get('kind')!r}, expected {kind!r}")
    missing = [k for k in keys if k not in state]
    if missing:
        raise ConfigError(f"state: missing key(s) {missing}; it was not written by state_dict() of this version")
