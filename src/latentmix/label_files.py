"""Real noisy labels read from a file, e.g. human annotations (`labels_from_file`): one class id
per sample, as a .npy array or a one-column .csv, checked and returned as `NoisyLabels` (the mask
where the file differs from the clean labels, when those are known)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch

from latentmix.errors import ConfigError
from latentmix.noise import NoisyLabels, _check_label_range, _check_num_classes, _result, _to_label_array


def _is_integer_text(text: str) -> bool:
    """True if `text` parses as a base-10 integer (surrounding spaces allowed)."""
    try:
        int(text.strip())
    except ValueError:
        return False
    return True


def _read_npy(path: Path) -> np.ndarray:
    """Read a 1-D integer label array from a .npy file (no pickles: they can run code)."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ConfigError(f"label file {path} is not a plain numeric .npy array: {exc}") from exc
    if array.ndim != 1:
        raise ConfigError(f"label file {path} must hold a 1-D array (one label per sample), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int64)
    if np.issubdtype(array.dtype, np.floating):
        # Whole-number floats (e.g. saved via pandas) are accepted; anything else is an error.
        bad = np.flatnonzero(~np.isfinite(array) | (array != np.round(array)))
        if bad.size:
            index = int(bad[0])
            raise ConfigError(f"label file {path} must hold integers, got {array[index]} at index {index}")
        return array.astype(np.int64)
    raise ConfigError(f"label file {path} must hold integers, got dtype {array.dtype}")


def _read_csv(path: Path) -> np.ndarray:
    """Read labels from a .csv: one integer per line, or a column named `label`.

    Accepted layouts: a single column of integers, optionally under one header line that is not
    an integer; or any number of columns with a header row that contains `label`.
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [(n, row) for n, row in enumerate(csv.reader(handle), start=1) if any(c.strip() for c in row)]
    except UnicodeDecodeError as exc:
        raise ConfigError(f"label file {path} is not UTF-8 text; save it as a plain-text CSV ({exc})") from exc
    if not rows:
        raise ConfigError(f"label file {path} contains no labels")

    column = 0
    first_line, first = rows[0]
    header = [cell.strip() for cell in first]
    if "label" in header:
        column = header.index("label")
        rows = rows[1:]
    elif len(header) > 1:
        raise ConfigError(
            f"label file {path} has {len(header)} columns but no column named 'label' in its first line "
            f"{first_line}; add a 'label' header or keep one integer per line"
        )
    elif not _is_integer_text(header[0]):
        rows = rows[1:]  # a single non-integer first line is a header such as "noisy_label"

    values = []
    for number, row in rows:
        cell = row[column].strip() if column < len(row) else ""
        if not _is_integer_text(cell):
            raise ConfigError(f"label file {path} must hold integers, got {cell!r} on line {number}")
        values.append(int(cell))
    if not values:
        raise ConfigError(f"label file {path} contains a header but no labels")
    return np.asarray(values, dtype=np.int64)


def labels_from_file(
    path: str | os.PathLike,
    clean_labels: torch.Tensor | np.ndarray | None = None,
    num_classes: int | None = None,
) -> NoisyLabels:
    """Load real noisy labels (e.g. human annotations), one per sample, from a .npy or .csv file.

    Parameters:
        path: a `.npy` file holding a 1-D integer array, or a `.csv` file with one integer per
            line (an optional single non-integer header line is skipped) or with a column named
            `label`.
        clean_labels: optional clean labels of shape (N,), in the same sample order. When given,
            the file must hold N labels and the mask is noisy != clean; otherwise the mask is all
            False (which labels are wrong is unknown).
        num_classes: optional C; when given, every label must lie in [0, C).

    Returns:
        NoisyLabels with int64 labels of shape (N,) and the mask, both on CPU.
    """
    if num_classes is not None:
        num_classes = _check_num_classes(num_classes)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"label file not found: {path}; check the path")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        noisy = _read_npy(path)
    elif suffix == ".csv":
        noisy = _read_csv(path)
    else:
        raise ConfigError(f"label file must end in .npy or .csv, got {path.name!r}")
    _check_label_range(noisy, num_classes, f"labels in {path}")

    clean = None
    if clean_labels is not None:
        clean = _to_label_array(clean_labels, num_classes, name="clean_labels")
        if clean.size != noisy.size:
            raise ConfigError(
                f"label file {path} holds {noisy.size} labels but clean_labels has {clean.size}; "
                f"both must list the same samples in the same order"
            )
    return _result(noisy, clean)
