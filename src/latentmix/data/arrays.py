"""Bring your own data: `.npz` and `.csv` files turned into a `Dataset`.

``.npz`` convention
-------------------
* **Labels**: the array ``labels`` (or ``label`` or ``y`` when ``labels`` is absent; another name via
  ``label_key``). Integer class ids ``0..C-1`` (floats are accepted only when integral), shape (N,).
* **Clean labels** (optional): ``clean_labels`` (or ``clean_label``; another name via
  ``clean_label_key``). When present they are the ground truth: ``train_labels`` = clean labels
  (``train_labels_clean=True``) and the ``labels`` array becomes ``given_noisy_labels`` (real noise).
  When only ``labels`` exist they are taken as the user's possibly-noisy labels
  (``train_labels_clean=False``).
* **Inputs**: every other array, except reserved keys (the label keys and every ``val_*`` key), or
  exactly the arrays named by ``input_keys``. One input array gives a tensor input; several give a
  dict input ``{key: tensor}`` (multimodal, in file order).
* **Validation set** (optional): ``val_labels`` plus ``val_<key>`` for every input key. Without them
  a seeded, stratified split of ``val_fraction`` of the samples is held out (stratified on the labels
  that become validation labels: the clean labels when present, otherwise the given labels, so the
  validation labels may be noisy in that case).

``.csv`` convention
-------------------
A header row is required. The label column is ``labels``/``label``/``y`` (or ``label_key``), the
optional clean-label column ``clean_labels``/``clean_label`` (or ``clean_label_key``); every other
column (or the columns named by ``input_keys``) is a float feature, giving one ``"features"`` input.
The validation set is always a seeded split.

Input kinds (recorded in ``Dataset.info["input_kinds"]``)
-------------------------------------------------------
* ``"features"``: float (or boolean / 1-D) arrays ``(N, D)``; standardised by the transforms with the
  training split's per-column mean/std (a zero std counts as 1).
* ``"image"``: arrays ``(N, C, H, W)`` or ``(N, H, W)`` (promoted to ``(N, 1, H, W)``; a channels-last
  ``(N, H, W, C)`` array with C in 1/3/4 and the second axis not in 1/3/4 is transposed), uint8 or
  float; uint8 stays uint8 in memory and the transforms convert to float32 standardised per channel
  with the training split's statistics.
* ``"tokens"``: integer arrays ``(N, T)``: token ids kept int64, no transform; ids must be >= 0.

``info`` also holds ``"modalities"`` (a `latentmix.models.small.FusionNet` spec per input key),
``"vocab_sizes"`` for token inputs and the standardisation statistics.

Noisy labels file
-----------------
``noisy_labels_path`` (``.npy``, or ``.csv``/``.txt`` with one integer per line, optional header) gives
per-sample noisy labels -> ``Dataset.given_noisy_labels``. Its length must equal the number of
training samples in the data file BEFORE the validation split (row i labels sample i); the same split
is applied to it. The labels in the data file (``clean_labels`` if present, else ``labels``) are then
the clean reference: ``train_labels_clean=True``. A file with both ``labels`` and ``clean_labels`` plus
a noisy-labels file is refused as ambiguous.

Every problem with the file raises `ConfigError` naming the array/column and the fix.
"""

from __future__ import annotations

import csv
import os
import zipfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from latentmix.data.checks import check_class_count, check_dataset
from latentmix.data.dataset import Dataset
from latentmix.errors import ConfigError
from latentmix.selection import stratified_split

__all__ = ["load_arrays", "read_label_file"]

_DEFAULT_LABEL_KEYS = ("labels", "label", "y")
# Token ids index an embedding table (max id + 1 rows of 64 floats): 10M rows are 2.5 GB already.
MAX_VOCAB = 10_000_000
_DEFAULT_CLEAN_KEYS = ("clean_labels", "clean_label")


# ----------------------------------------------------------------------------------------------
# reading files


# An .npz entry may expand at most this many times from its compressed size (once past
# `EXPANSION_FLOOR`): numeric arrays deflate 1-20x, a zip bomb ~1000x (deflate's ceiling is 1032x).
MAX_EXPANSION = 200
EXPANSION_FLOOR = 64 << 20


def available_memory() -> Optional[int]:
    """Bytes of physical memory free now (Linux, macOS: sysconf); None where unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _npy_header(member: Any) -> tuple[tuple, np.dtype]:
    """(shape, dtype) from the header of a .npy stream, reading the header only."""
    fmt = np.lib.format
    version = fmt.read_magic(member)
    readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    if version in readers:
        shape, _, dtype = readers[version](member)
    else:  # version 3.0 (utf-8 field names): numpy has no public reader for it
        shape, _, dtype = fmt._read_array_header(member, version)
    return tuple(shape), dtype


def check_npz_sizes(path: Path, memory: Optional[int] = None) -> None:
    """Every entry of an .npz, from the zip's directory and each .npy header (no array is read):
    its declared size is what its header's shape and dtype need (a header that asks for more is
    a crafted file: numpy allocates the header's shape before reading), it expands at most
    `MAX_EXPANSION`-fold from its compressed size (a zip bomb: a 2 MB file that decompresses to
    2 GB), and all of them together fit in the free memory (`memory`, default `available_memory`).
    Each refusal names the entry, the sizes and the limit."""
    memory = available_memory() if memory is None else memory
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name, declared = info.filename, info.file_size
                if declared > EXPANSION_FLOOR and declared > MAX_EXPANSION * max(info.compress_size, 1):
                    raise ConfigError(
                        f"{path}: entry {name!r} declares {declared:,} bytes from {info.compress_size:,} compressed "
                        f"({declared // max(info.compress_size, 1):,}-fold; the limit is {MAX_EXPANSION}-fold above "
                        f"{EXPANSION_FLOOR >> 20} MiB): a zip bomb, or an array of one repeated value; if it is real, "
                        "save it with numpy.savez (uncompressed)")
                with archive.open(info) as member:
                    try:
                        shape, dtype = _npy_header(member)
                    except (ValueError, EOFError) as error:
                        raise ConfigError(f"{path}: entry {name!r} is not a .npy array ({error}); save the arrays "
                                          "with numpy.savez") from None
                    needed = member.tell() + int(np.prod(shape, dtype=object)) * dtype.itemsize
                if needed != declared:
                    raise ConfigError(f"{path}: array {name!r} declares shape {shape} of {dtype} ({needed:,} bytes "
                                      f"with its header), but its entry holds {declared:,} bytes: the file is damaged "
                                      "or crafted; save it again with numpy.savez")
                total += declared
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, NotImplementedError, RuntimeError) as error:
        raise ConfigError(f"{path} is not a readable .npz archive: {error}") from None
    if memory is not None and total > memory:
        raise ConfigError(f"{path} holds {total:,} bytes of arrays, more than the {memory:,} bytes of memory free on "
                          "this machine (the limit): use a machine with more memory, or a smaller file")


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{path} is not a readable .npz archive (not a zip file); save it with numpy.savez")
    check_npz_sizes(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as exc:  # object arrays need pickle
        raise ConfigError(f"{path}: cannot read array ({exc}); store plain numeric arrays, not objects") from exc
    except Exception as exc:  # zipfile.BadZipFile, OSError, ...
        raise ConfigError(f"{path} is not a readable .npz archive: {exc}") from exc


def _load_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """Return (header, float64 array (rows, columns)) or raise ConfigError naming the bad cell."""
    try:
        return _read_csv_table(path)
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start}); "
                          "save it as UTF-8 (or plain ASCII) CSV") from None


def _read_csv_table(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise ConfigError(f"{path} is empty; a CSV needs a header row and at least one data row") from None
        header = [name.strip() for name in header]
        if not any(header):
            raise ConfigError(f"{path}: the first row must be a header naming the columns")
        if not all(header):
            position = header.index("") + 1
            raise ConfigError(f"{path}: column {position} of the header has no name; name every column (a blank "
                              "one would be read as a feature)")
        if len(set(header)) != len(header):
            dups = sorted({h for h in header if header.count(h) > 1})
            raise ConfigError(f"{path}: duplicate column names in the header: {dups}")
        for name in header:
            try:
                float(name)
            except ValueError:
                continue
            raise ConfigError(f"{path}: the first row looks like data ({name!r}), but a header row naming "
                              "the columns is required")
        rows: list[list[float]] = []
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ConfigError(f"{path}, row {line_no}: {len(row)} cells but the header has {len(header)} columns")
            values = []
            for column, cell in zip(header, row):
                try:
                    if "_" in cell:  # Python's float() reads 1_000 as 1000; CSV numbers have no separators
                        raise ValueError(cell)
                    values.append(float(cell))
                except ValueError:
                    raise ConfigError(f"{path}, row {line_no}, column {column!r}: non-numeric value {cell!r}; "
                                      "every cell must be a number") from None
            rows.append(values)
    if not rows:
        return header, np.zeros((0, len(header)), dtype=np.float64)
    return header, np.asarray(rows, dtype=np.float64)


def read_label_file(path: str | os.PathLike) -> np.ndarray:
    """Read per-sample integer labels from ``.npy`` or a text/CSV file with one integer per line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"noisy labels file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if zipfile.is_zipfile(path):
            raise ConfigError(f"noisy labels file {path} is an .npz archive (numpy.savez), not one .npy array: save the "
                              "labels alone with numpy.save, or as .csv with one integer per line")
        try:
            labels = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise ConfigError(f"{path} is not a readable .npy file: {exc}") from exc
        labels = np.asarray(labels)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
    elif suffix in (".csv", ".txt"):
        values: list[float] = []
        try:
            text_lines = path.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as error:
            raise ConfigError(f"noisy labels file {path} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at "
                              f"offset {error.start}); save it as UTF-8 with one integer per line") from None
        for line_no, line in enumerate(text_lines, start=1):
            text = line.strip()
            if not text:
                continue
            if "," in text:
                raise ConfigError(f"{path}, line {line_no}: expected one integer per line, got {text!r}")
            try:
                values.append(float(text))
            except ValueError:
                if line_no == 1 and not values:
                    continue  # header
                raise ConfigError(f"{path}, line {line_no}: non-numeric label {text!r}") from None
        labels = np.asarray(values, dtype=np.float64)
    else:
        raise ConfigError(f"noisy labels file {path} has unknown extension {path.suffix!r}; use .npy, .csv or .txt")
    return _check_labels(labels, f"noisy labels file {path.name}")


# ----------------------------------------------------------------------------------------------
# validation helpers


def _check_labels(labels: np.ndarray, what: str) -> np.ndarray:
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


def _pick_key(keys: Sequence[str], requested: Optional[str], defaults: Sequence[str], what: str,
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


def _classify(array: np.ndarray, key: str) -> tuple[str, np.ndarray]:
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


def _check_finite(array: np.ndarray, key: str) -> None:
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


def _check_token_ids(array: np.ndarray, key: str) -> None:
    """Token ids index an embedding table of max id + 1 rows: negative ids, and ids so large that the
    table cannot be allocated (a stray 2**40), are data errors."""
    if array.min() < 0:
        raise ConfigError(f"token array {key!r} has {int((array < 0).sum())} negative token ids; ids must be >= 0")
    if int(array.max()) >= MAX_VOCAB:
        raise ConfigError(f"token array {key!r} holds token id {int(array.max())}: its embedding table would need "
                          f"{int(array.max()) + 1} rows; latentmix takes ids below {MAX_VOCAB}: number the vocabulary "
                          "0..V-1")


def _to_tensor(array: np.ndarray, kind: str) -> torch.Tensor:
    if kind == "tokens":
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))
    if kind == "image" and array.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array))
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _stats(array: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (features) or per-channel (images) mean and std; zero std -> 1."""
    if kind == "features":
        values = array.astype(np.float64)
        mean, std = values.mean(axis=0), values.std(axis=0)
    else:
        mean = np.array([array[:, c].mean(dtype=np.float64) for c in range(array.shape[1])])
        std = np.array([array[:, c].std(dtype=np.float64) for c in range(array.shape[1])])
    std = np.where(std > 0, std, 1.0)
    return mean, std


def _make_standardizer(stats: dict[str, tuple[np.ndarray, np.ndarray, str]]):
    """Build fn(inputs) that standardises each non-token tensor with its train statistics."""
    tensors = {}
    for key, (mean, std, kind) in stats.items():
        shape = (1, -1) if kind == "features" else (1, -1, 1, 1)
        tensors[key] = (torch.tensor(mean, dtype=torch.float32).view(shape),
                        torch.tensor(std, dtype=torch.float32).view(shape))

    def apply(key: str, x: torch.Tensor) -> torch.Tensor:
        if key not in tensors:
            return x
        mean, std = tensors[key]
        x = x.to(torch.float32)
        return (x - mean.to(x.device)) / std.to(x.device)

    return apply


# ----------------------------------------------------------------------------------------------
# main entry point


def load_arrays(
    path: str | os.PathLike,
    *,
    input_keys: Optional[Sequence[str]] = None,
    label_key: Optional[str] = None,
    clean_label_key: Optional[str] = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    noisy_labels_path: str | os.PathLike | None = None,
    num_classes: Optional[int] = None,
) -> Dataset:
    """Load a classification data set from a ``.npz`` or ``.csv`` file (conventions: module docstring).

    Args:
        path: the data file.
        input_keys: arrays (npz) or columns (csv) to use as inputs; default: all non-reserved ones.
        label_key: name of the label array/column (default: the one of ``labels``/``label``/``y`` present;
            a file with two of them is refused as ambiguous unless this names one).
        clean_label_key: name of the ground-truth label array/column (default ``clean_labels`` if present).
        val_fraction: held-out fraction when the file has no ``val_*`` arrays.
        seed: seed of that split.
        noisy_labels_path: per-sample noisy labels for the training samples (before splitting).
        num_classes: number of classes, when larger than max label + 1 (labels >= it are refused).
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"data file not found: {path}")
    if not path.is_file():
        raise ConfigError(f"data path is not a file: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".csv"):
        raise ConfigError(f"data file {path} has unknown extension {path.suffix!r}; supported: .npz, .csv")

    if isinstance(input_keys, str):
        input_keys = [input_keys]
    explicit_label = label_key
    ignored_keys: list[str] = []

    # ---- gather raw arrays: inputs {key: array}, labels, clean labels, optional explicit val arrays
    val_inputs_raw: Optional[dict[str, np.ndarray]] = None
    val_labels_raw: Optional[np.ndarray] = None
    if suffix == ".npz":
        arrays = _load_npz(path)
        keys = list(arrays)
        where = f"{path.name}"
        lkey = _pick_key(keys, explicit_label, _DEFAULT_LABEL_KEYS, "label array", True, where)
        ckey = _pick_key(keys, clean_label_key, _DEFAULT_CLEAN_KEYS, "clean label array", False, where)
        reserved = {lkey, ckey} | {k for k in keys if k.startswith("val_")}
        reserved |= {k for k in _DEFAULT_LABEL_KEYS + _DEFAULT_CLEAN_KEYS if k in keys and k != lkey}
        if input_keys is not None:
            missing = [k for k in input_keys if k not in keys]
            if missing:
                raise ConfigError(f"{where} has no input array(s) {missing}; present: {sorted(keys)}")
            bad = [k for k in input_keys if k in (lkey, ckey) or k.startswith("val_")]
            if bad:
                raise ConfigError(f"input_keys {bad} are reserved (labels or val_* arrays)")
            in_keys = list(input_keys)
        else:
            in_keys = [k for k in keys if k not in reserved]
        ignored_keys = [k for k in keys if k not in in_keys and k not in (lkey, ckey)
                        and not k.startswith("val_")]
        if not in_keys:
            raise ConfigError(f"{where} has no input arrays: every array is a label or val_* array "
                              f"(present: {sorted(keys)})")
        inputs_raw = {k: arrays[k] for k in in_keys}
        labels_raw = arrays[lkey]
        clean_raw = arrays[ckey] if ckey is not None else None
        val_keys = [k for k in keys if k.startswith("val_")]
        if val_keys:
            if "val_labels" not in arrays:
                raise ConfigError(f"{where} has validation arrays {val_keys} but no 'val_labels'; "
                                  "add val_labels or drop the val_* arrays to use a random split")
            missing = [f"val_{k}" for k in in_keys if f"val_{k}" not in arrays]
            if missing:
                raise ConfigError(f"{where} has 'val_labels' but lacks validation inputs {missing}; every input "
                                  f"array needs a val_<key> counterpart")
            val_inputs_raw = {k: arrays[f"val_{k}"] for k in in_keys}
            val_labels_raw = arrays["val_labels"]
    else:  # .csv
        header, table = _load_csv(path)
        where = f"{path.name}"
        lkey = _pick_key(header, explicit_label, _DEFAULT_LABEL_KEYS, "label column", True, where)
        ckey = _pick_key(header, clean_label_key, _DEFAULT_CLEAN_KEYS, "clean label column", False, where)
        if input_keys is not None:
            missing = [k for k in input_keys if k not in header]
            if missing:
                raise ConfigError(f"{where} has no column(s) {missing}; present: {header}")
            feature_cols = list(input_keys)
        else:  # the other label-like columns never become features (the target would leak in)
            feature_cols = [h for h in header if h not in (lkey, ckey) and h not in _DEFAULT_LABEL_KEYS + _DEFAULT_CLEAN_KEYS]
            ignored_keys = [h for h in header if h not in feature_cols and h not in (lkey, ckey)]
        if not feature_cols:
            raise ConfigError(f"{where} has no input arrays: no feature columns besides the labels (columns: {header})")
        if table.shape[0] == 0:
            raise ConfigError(f"{where} is empty: a header but no data rows")
        col = {name: i for i, name in enumerate(header)}
        for name in feature_cols:
            bad = ~np.isfinite(table[:, col[name]])
            if bad.any():
                raise ConfigError(f"{where}, column {name!r}: {int(bad.sum())} NaN/inf values (first at row "
                                  f"{int(np.flatnonzero(bad)[0]) + 2}); clean or impute them first")
        in_keys = ["features"]
        inputs_raw = {"features": table[:, [col[c] for c in feature_cols]]}
        labels_raw = table[:, col[lkey]]
        clean_raw = table[:, col[ckey]] if ckey is not None else None

    # ---- validate labels and inputs
    if np.asarray(labels_raw).size == 0:
        raise ConfigError(f"label array {lkey!r} is empty")
    labels = _check_labels(labels_raw, f"label array {lkey!r}")
    n = labels.shape[0]
    clean = _check_labels(clean_raw, f"clean label array {ckey!r}") if clean_raw is not None else None
    if clean is not None and clean.shape[0] != n:
        raise ConfigError(f"length mismatch: {ckey!r} has {clean.shape[0]} entries but {lkey!r} has {n}")

    kinds: dict[str, str] = {}
    inputs: dict[str, np.ndarray] = {}
    for key, array in inputs_raw.items():
        kind, array = _classify(np.asarray(array), key)
        if array.shape[0] != n:
            raise ConfigError(f"length mismatch: input array {key!r} has {array.shape[0]} samples but "
                              f"label array {lkey!r} has {n}")
        _check_finite(array, key)
        if kind == "tokens":
            _check_token_ids(array, key)
        kinds[key], inputs[key] = kind, array

    val_inputs: Optional[dict[str, np.ndarray]] = None
    val_labels: Optional[np.ndarray] = None
    if val_inputs_raw is not None:
        val_labels = _check_labels(val_labels_raw, "label array 'val_labels'")
        val_inputs = {}
        for key, array in val_inputs_raw.items():
            vkey = f"val_{key}"
            vkind, array = _classify(np.asarray(array), vkey)
            if vkind != kinds[key] or array.shape[1:] != inputs[key].shape[1:]:
                raise ConfigError(f"validation array {vkey!r} has shape {array.shape} ({vkind}) but {key!r} has "
                                  f"shape {inputs[key].shape} ({kinds[key]}); they must match except for the length")
            if array.shape[0] != val_labels.shape[0]:
                raise ConfigError(f"length mismatch: {vkey!r} has {array.shape[0]} samples but 'val_labels' has "
                                  f"{val_labels.shape[0]}")
            _check_finite(array, vkey)
            if vkind == "tokens":
                _check_token_ids(array, vkey)
            val_inputs[key] = array

    noisy_file: Optional[np.ndarray] = None
    if noisy_labels_path is not None:
        if clean is not None:
            raise ConfigError(f"{where} has both {lkey!r} (noisy) and {ckey!r} (clean) labels, and a noisy labels "
                              "file was given too: ambiguous; drop one of them")
        noisy_file = read_label_file(noisy_labels_path)
        if noisy_file.shape[0] != n:
            raise ConfigError(f"length mismatch: noisy labels file {Path(noisy_labels_path).name} has "
                              f"{noisy_file.shape[0]} labels but {where} has {n} training samples (before the "
                              "validation split)")

    # ---- number of classes: the training labels' (the data file's own), which every other label
    # array must fit: a stray id in a noisy-labels file or in val_labels is an error, not a wider head
    named = {f"label array {lkey!r}": labels}
    if clean is not None:
        named[f"clean label array {ckey!r}"] = clean
    if val_labels is not None:
        named["label array 'val_labels'"] = val_labels
    if noisy_file is not None:
        named[f"noisy labels file {Path(noisy_labels_path).name}"] = noisy_file
    for what, array in named.items():
        check_class_count(int(array.max()), f"{where}: {what}")
    max_label = max(int(a.max()) for a in named.values())
    if num_classes is not None:
        if num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2, got {num_classes}")
        if max_label >= num_classes:
            raise ConfigError(f"labels out of range: found class id {max_label} but num_classes={num_classes} "
                              f"(ids must be 0..{num_classes - 1})")
        n_classes = int(num_classes)
    else:
        train_max = max(int(labels.max()), int(clean.max()) if clean is not None else 0)
        n_classes = max(train_max + 1, 2)
        for what, array in list(named.items())[1 + (clean is not None):]:
            if int(array.max()) >= n_classes:
                row = int(np.flatnonzero(array >= n_classes)[0])
                raise ConfigError(f"{what} holds class id {int(array.max())} (first at row {row}), but the labels of "
                                  f"{where} are classes 0..{n_classes - 1}; fix that label")
    if val_labels is not None:
        seen = set(np.unique(labels).tolist()) | (set(np.unique(clean).tolist()) if clean is not None else set())
        unseen = sorted(set(np.unique(val_labels).tolist()) - seen)
        if unseen:
            raise ConfigError(f"label array 'val_labels' of {where} holds class(es) {unseen[:5]} that no training label "
                              "has, so the model can never predict them: drop those samples or fix the labels")

    # ---- clean / noisy semantics
    if clean is not None:
        reference, given_noisy, labels_clean = clean, labels, True
    elif noisy_file is not None:
        reference, given_noisy, labels_clean = labels, noisy_file, True
    else:
        reference, given_noisy, labels_clean = labels, None, False

    # ---- split
    reference_full, given_noisy_full = reference, given_noisy
    if val_inputs is None:
        if not 0.0 < float(val_fraction) < 1.0:
            raise ConfigError(f"--val-split (val_fraction) must be between 0 and 1 (exclusive) when the file has no "
                              f"val_* arrays: that split is the validation set, got {val_fraction}")
        train_idx, val_idx = stratified_split(reference, float(val_fraction), int(seed))
        val_inputs = {k: a[val_idx] for k, a in inputs.items()}
        val_labels = reference[val_idx]
        inputs = {k: a[train_idx] for k, a in inputs.items()}
        reference = reference[train_idx]
        if given_noisy is not None:
            given_noisy = given_noisy[train_idx]
        split_info: dict[str, Any] = {"val_source": "split", "val_fraction": float(val_fraction), "seed": int(seed)}
        # the labels the file gives the validation rows (noisy when there is noise), so that
        # label issues cover every row of the file
        val_given = (given_noisy_full if given_noisy_full is not None else reference_full)[val_idx]
        rows = {"train_rows": torch.from_numpy(train_idx.astype(np.int64)),
                "val_rows": torch.from_numpy(val_idx.astype(np.int64)),
                "val_given_labels": torch.from_numpy(np.ascontiguousarray(val_given, dtype=np.int64))}
    else:
        split_info = {"val_source": "file"}
        rows = {}

    # ---- standardisation statistics from the training split
    stats = {}
    for key, kind in kinds.items():
        if kind in ("features", "image"):
            mean, std = _stats(inputs[key], kind)
            stats[key] = (mean, std, kind)
    standardize = _make_standardizer(stats)

    single = len(in_keys) == 1
    only_key = in_keys[0]

    def transform(batch):
        if isinstance(batch, torch.Tensor):
            return standardize(only_key, batch)
        return {key: standardize(key, value) for key, value in batch.items()}

    def train_transform(batch, generator=None):
        return transform(batch)

    def eval_transform(batch):
        return transform(batch)

    train_tensors = {k: _to_tensor(a, kinds[k]) for k, a in inputs.items()}
    val_tensors = {k: _to_tensor(a, kinds[k]) for k, a in val_inputs.items()}

    modalities: dict[str, dict[str, Any]] = {}
    vocab_sizes: dict[str, int] = {}
    for key, kind in kinds.items():
        if kind == "features":
            modalities[key] = {"kind": "features", "dim": int(train_tensors[key].shape[1])}
        elif kind == "image":
            modalities[key] = {"kind": "image", "shape": tuple(int(s) for s in train_tensors[key].shape[1:])}
        else:
            vocab = max(int(train_tensors[key].max()), int(val_tensors[key].max()) if val_tensors[key].numel() else 0) + 1
            vocab_sizes[key] = vocab
            modalities[key] = {"kind": "tokens", "vocab_size": vocab}

    info: dict[str, Any] = {
        "source": suffix.lstrip("."),
        "path": str(path),
        "input_kinds": dict(kinds),
        "modalities": modalities,
        "label_key": lkey,
        "clean_label_key": ckey,
        "noisy_labels_path": str(noisy_labels_path) if noisy_labels_path is not None else None,
        "standardization": {k: {"mean": m.tolist(), "std": s.tolist()} for k, (m, s, _) in stats.items()},
        **split_info,
    }
    if vocab_sizes:
        info["vocab_sizes"] = vocab_sizes
    if ignored_keys:
        info["ignored_keys"] = ignored_keys
    if suffix == ".csv":
        info["feature_columns"] = feature_cols

    dataset = Dataset(
        name=path.stem,
        train_inputs=train_tensors[only_key] if single else train_tensors,
        train_labels=torch.from_numpy(np.ascontiguousarray(reference, dtype=np.int64)),
        val_inputs=val_tensors[only_key] if single else val_tensors,
        val_labels=torch.from_numpy(np.ascontiguousarray(val_labels, dtype=np.int64)),
        num_classes=n_classes,
        train_labels_clean=labels_clean,
        given_noisy_labels=(torch.from_numpy(np.ascontiguousarray(given_noisy, dtype=np.int64))
                            if given_noisy is not None else None),
        train_transform=train_transform,
        eval_transform=eval_transform,
        info=info,
        val_selects=True,  # the user's own validation data: a checkpoint is picked by it
        **rows,
    )
    check_dataset(dataset)
    return dataset
