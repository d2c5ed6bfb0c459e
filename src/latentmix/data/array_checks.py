"""What the arrays of a user's data file may be: label arrays checked (1-D integral class ids
>= 0, below the class-count limit), the label array picked by name, each input array classified by
kind (features, image, tokens) and checked (numeric, finite, within float32, token ids an
embedding table can hold), and turned into the tensor the run keeps.

The kinds and their shapes are the `.npz` convention of `latentmix.data.arrays`; `latentmix.predict`
classifies a prediction file's arrays with the same rules, so a run is never asked to predict on
arrays it would have read as another kind.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from latentmix.data.checks import check_class_count
from latentmix.errors import ConfigError

__all__ = ["DEFAULT_CLEAN_KEYS", "DEFAULT_LABEL_KEYS", "MAX_VOCAB", "check_finite", "check_labels", "check_token_ids",
           "classify_input", "pick_key", "to_tensor"]

DEFAULT_LABEL_KEYS = ("labels", "label", "y")
DEFAULT_CLEAN_KEYS = ("clean_labels", "clean_label")
# Token ids index an embedding table (max id + 1 rows of 64 floats): 10M rows are 2.5 GB already.
MAX_VOCAB = 10_000_000


def check_labels(labels: np.ndarray, what: str) -> np.ndarray:
    """`labels` as 1-D int64 class ids >= 0 (an (N, 1) column is flattened; booleans and integral
    floats are accepted), or a `ConfigError` naming `what`, the problem and an example value."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ConfigError(f"{what} must be a 1-D array of class ids, got shape {labels.shape}")
    if labels.size == 0:
        raise ConfigError(f"{what} is empty")
    if labels.dtype.kind == "b":
        labels = labels.astype(np.int64)
    elif labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)):
            raise ConfigError(f"{what}: labels must be integers, found {int((~np.isfinite(labels)).sum())} NaN/inf")
        bad = labels != np.round(labels)
        if bad.any():
            first = labels[bad][0]
            raise ConfigError(f"{what}: labels must be integers, found {int(bad.sum())} non-integral values "
                              f"(e.g. {first})")
    elif labels.dtype.kind not in "iu":
        raise ConfigError(f"{what}: labels must be integers, got dtype {labels.dtype}")
    if labels.dtype.kind in "fu":  # before the cast: 1e20 or a uint64 above 2**63 wrap to negative int64
        check_class_count(int(labels.max()), what)
    labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise ConfigError(f"{what}: labels must be class ids >= 0, found {int((labels < 0).sum())} negative "
                          f"(min {int(labels.min())})")
    return labels


def pick_key(keys: Sequence[str], requested: Optional[str], defaults: Sequence[str], what: str,
              required: bool, where: str) -> Optional[str]:
    """`requested` (when explicit) must exist; otherwise the one of `defaults` present is used. Two
    of them present is ambiguous (one would be a label column, the other a feature: the target
    leaks in), so it is refused, naming both."""
    if requested is not None:
        if requested not in keys:
            raise ConfigError(f"{where} has no {what} {requested!r}; present: {sorted(keys)}")
        return requested
    present = [key for key in defaults if key in keys]
    if len(present) > 1:
        argument = "label_key" if "clean" not in what else "clean_label_key"
        raise ConfigError(f"{where} has {len(present)} {what}s ({', '.join(repr(k) for k in present)}): ambiguous "
                          f"(which one is the target?); rename or drop all but one (in Python: "
                          f"load_arrays(..., {argument}={present[0]!r}))")
    for key in present:
        return key
    if required:
        raise ConfigError(f"{where} has no {what} (looked for {' / '.join(repr(k) for k in defaults)}); "
                          f"present: {sorted(keys)}; name it with label_key")
    return None


def classify_input(array: np.ndarray, key: str) -> tuple[str, np.ndarray]:
    """Return (kind, array with the storage layout) for one input array."""
    if array.dtype.kind not in "biuf":
        raise ConfigError(f"input array {key!r} has dtype {array.dtype}; inputs must be numeric")
    if array.ndim == 0:
        raise ConfigError(f"input array {key!r} is a scalar; inputs need a sample axis")
    if array.shape[0] == 0 or array.size == 0:
        raise ConfigError(f"input array {key!r} is empty (shape {array.shape})")
    kind_letter = array.dtype.kind
    if array.ndim == 1:
        return "features", array.reshape(-1, 1)
    if array.ndim == 2:
        if kind_letter in "iu":
            return "tokens", array
        return "features", array
    if array.ndim == 3:
        return "image", array[:, None]
    if array.ndim == 4:
        if array.shape[3] in (1, 3, 4) and array.shape[1] not in (1, 3, 4):
            array = np.transpose(array, (0, 3, 1, 2))  # channels-last -> channels-first
        return "image", array
    raise ConfigError(f"input array {key!r} has {array.ndim} dimensions {array.shape}; supported: features (N, D), "
                      "tokens (N, T) integers, images (N, H, W) or (N, C, H, W)")


def check_finite(array: np.ndarray, key: str) -> None:
    """A float input array must hold finite values within float32's range (training is float32:
    a larger float64 would turn into inf and read as a diverging run, not as a data error)."""
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            n_nan = int(np.isnan(array).sum())
            raise ConfigError(f"input array {key!r} contains {int(bad.sum())} non-finite values "
                              f"({n_nan} NaN, {int(bad.sum()) - n_nan} inf); clean or impute them first")
        largest = float(np.abs(array).max()) if array.size else 0.0
        if array.dtype.itemsize > 4 and largest > float(np.finfo(np.float32).max):
            # the inputs are trained on as float32: these would become inf (and the run "diverge")
            raise ConfigError(f"input array {key!r} holds values up to {largest:.3g}, beyond float32's range "
                              f"(±{np.finfo(np.float32).max:.3g}) that training uses; rescale it (e.g. log or "
                              "standardise the column)")


def check_token_ids(array: np.ndarray, key: str) -> None:
    """Token ids index an embedding table of max id + 1 rows: negative ids, and ids so large that the
    table cannot be allocated (a stray 2**40), are data errors."""
    if array.min() < 0:
        raise ConfigError(f"token array {key!r} has {int((array < 0).sum())} negative token ids; ids must be >= 0")
    if int(array.max()) >= MAX_VOCAB:
        raise ConfigError(f"token array {key!r} holds token id {int(array.max())}: its embedding table would need "
                          f"{int(array.max()) + 1} rows; latentmix takes ids below {MAX_VOCAB}: number the vocabulary "
                          "0..V-1")


def to_tensor(array: np.ndarray, kind: str) -> torch.Tensor:
    """The tensor a run keeps for an input array of `kind`: token ids as int64, uint8 images as
    uint8 (4x less memory; the transforms convert batch by batch), everything else float32."""
    if kind == "tokens":
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))
    if kind == "image" and array.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array))
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

