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
* **Inputs**: every other array, except reserved keys (the label keys, every ``val_*`` and ``test_*`` key), or
  exactly the arrays named by ``input_keys``. One input array gives a tensor input; several give a
  dict input ``{key: tensor}`` (multimodal, in file order).
* **Validation set** (optional): ``val_labels`` plus ``val_<key>`` for every input key. Without them
  a seeded, stratified split of ``val_fraction`` of the samples is held out (stratified on the labels
  that become validation labels: the clean labels when present, otherwise the given labels, so the
  validation labels may be noisy in that case). The validation set selects: the checkpoint kept
  (``selected_model.pt``) and the end of early learning are picked by accuracy on it.
* **Test set** (optional): ``test_labels`` plus ``test_<key>`` for every input key. Only scored (a
  ``test_acc`` column in metrics.csv, ``selected_test_acc`` in result.json), never selecting: pass
  your test set here, not as ``val_*``, or the "selected" accuracy is measured on the set it was
  selected by (optimistic).

``.csv`` convention
-------------------
A header row is required. The label column is ``labels``/``label``/``y`` (or ``label_key``), the
optional clean-label column ``clean_labels``/``clean_label`` (or ``clean_label_key``); every other
column (or the columns named by ``input_keys``) is a float feature, giving one ``"features"`` input.
The validation set is always a seeded split; a CSV has no test set.

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

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from latentmix.data.array_checks import (DEFAULT_CLEAN_KEYS, DEFAULT_LABEL_KEYS, check_finite, check_labels,
                                         check_token_ids, classify_input, pick_key, to_tensor)
from latentmix.data.array_files import read_csv_table, read_label_file, read_npz
from latentmix.data.checks import check_class_count, check_dataset
from latentmix.data.dataset import Dataset
from latentmix.data.standardize import input_statistics, standardizing_transforms
from latentmix.errors import ConfigError
from latentmix.selection import stratified_split

__all__ = ["HELD_PREFIXES", "load_arrays"]

# Arrays with these prefixes are the file's own held-out sets (validation, test), never inputs.
HELD_PREFIXES = ("val_", "test_")


# ----------------------------------------------------------------------------------------------
# main entry point: read and select, check, split, build


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

    In steps, each a function of its own: read the file and pick its arrays by name
    (`_select_npz` / `_select_csv`), check their contents (`_check_selected`, the noisy-labels
    file, the class count), hold out the validation split (`_split_validation`) and build the
    `Dataset` with its transforms (`_build_dataset`).

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
    path = _checked_path(path)
    if isinstance(input_keys, str):
        input_keys = [input_keys]
    select = _select_npz if path.suffix.lower() == ".npz" else _select_csv
    selected = select(path, input_keys, label_key, clean_label_key)
    checked = _check_selected(selected)
    noisy_file = _noisy_file_labels(noisy_labels_path, selected, checked)
    n_classes = _class_count(selected, checked, noisy_file, noisy_labels_path, num_classes)
    reference, given_noisy, labels_clean = _label_roles(checked, noisy_file)
    split = _split_validation(checked, reference, given_noisy, val_fraction, seed)
    return _build_dataset(path, selected, checked.kinds, split, n_classes, labels_clean, noisy_labels_path)


def _checked_path(path: str | os.PathLike) -> Path:
    """`path` as a Path once it is an existing file with a supported extension."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"data file not found: {path}")
    if not path.is_file():
        raise ConfigError(f"data path is not a file: {path}")
    if path.suffix.lower() not in (".npz", ".csv"):
        raise ConfigError(f"data file {path} has unknown extension {path.suffix!r}; supported: .npz, .csv")
    return path


# ----------------------------------------------------------------------------------------------
# read and select: which array (column) is what, by name, contents unchecked


@dataclass
class SelectedArrays:
    """A file's arrays picked out by name, their contents not yet checked.

    `where` names the file in messages; `label_key` / `clean_label_key` the label array (column)
    and the optional clean one; `input_keys` the inputs in order (a CSV's one ``"features"``);
    `val_inputs` / `val_labels` the file's own validation arrays (None: a split is held out);
    `test_inputs` / `test_labels` its test arrays (None: none); `ignored_keys` arrays (columns) that are neither labels nor inputs; `feature_columns` a CSV's
    feature columns."""

    where: str
    label_key: str
    clean_label_key: Optional[str]
    input_keys: list[str]
    inputs: dict[str, np.ndarray]
    labels: np.ndarray
    clean_labels: Optional[np.ndarray]
    val_inputs: Optional[dict[str, np.ndarray]] = None
    val_labels: Optional[np.ndarray] = None
    ignored_keys: list[str] = field(default_factory=list)
    feature_columns: Optional[list[str]] = None
    test_inputs: Optional[dict[str, np.ndarray]] = None
    test_labels: Optional[np.ndarray] = None


def _select_npz(path: Path, input_keys: Optional[Sequence[str]], label_key: Optional[str],
                clean_label_key: Optional[str]) -> SelectedArrays:
    """The arrays of an .npz: labels, clean labels, inputs and the optional val_* and test_* arrays."""
    arrays = read_npz(path)
    keys = list(arrays)
    where = f"{path.name}"
    lkey = pick_key(keys, label_key, DEFAULT_LABEL_KEYS, "label array", True, where)
    ckey = pick_key(keys, clean_label_key, DEFAULT_CLEAN_KEYS, "clean label array", False, where)
    in_keys = _npz_input_keys(keys, input_keys, lkey, ckey, where)
    ignored_keys = [k for k in keys if k not in in_keys and k not in (lkey, ckey) and not k.startswith(HELD_PREFIXES)]
    val_inputs, val_labels = _npz_paired_set(arrays, in_keys, where, "val", "validation",
                                             "add val_labels or drop the val_* arrays to use a random split")
    test_inputs, test_labels = _npz_paired_set(arrays, in_keys, where, "test", "test",
                                               "add test_labels (the test set's class ids) or drop the test_* arrays")
    return SelectedArrays(where, lkey, ckey, in_keys, {k: arrays[k] for k in in_keys}, arrays[lkey],
                          arrays[ckey] if ckey is not None else None, val_inputs, val_labels, ignored_keys,
                          test_inputs=test_inputs, test_labels=test_labels)


def _npz_input_keys(keys: list[str], input_keys: Optional[Sequence[str]], lkey: str, ckey: Optional[str],
                    where: str) -> list[str]:
    """The input arrays: those `input_keys` names, else every array that is not a label array, not
    another default label name (the target would leak in as an input), not a val_* or test_* array."""
    reserved = {lkey, ckey} | {k for k in keys if k.startswith(HELD_PREFIXES)}
    reserved |= {k for k in DEFAULT_LABEL_KEYS + DEFAULT_CLEAN_KEYS if k in keys and k != lkey}
    if input_keys is not None:
        missing = [k for k in input_keys if k not in keys]
        if missing:
            raise ConfigError(f"{where} has no input array(s) {missing}; present: {sorted(keys)}")
        bad = [k for k in input_keys if k in (lkey, ckey) or k.startswith(HELD_PREFIXES)]
        if bad:
            raise ConfigError(f"input_keys {bad} are reserved (labels, val_* or test_* arrays)")
        in_keys = list(input_keys)
    else:
        in_keys = [k for k in keys if k not in reserved]
    if not in_keys:
        raise ConfigError(f"{where} has no input arrays: every array is a label, val_* or test_* array "
                          f"(present: {sorted(keys)})")
    return in_keys


def _npz_paired_set(arrays: dict[str, np.ndarray], in_keys: list[str], where: str, prefix: str, what: str,
                    without_labels: str) -> tuple[Optional[dict[str, np.ndarray]], Optional[np.ndarray]]:
    """A set the file carries beside its training arrays (`prefix` "val": its validation set,
    "test": its test set): ``PREFIX_labels`` and a ``PREFIX_<key>`` for every input, or
    (None, None) when the file has no PREFIX_* array. `without_labels` is the fix named when the
    labels are missing."""
    keys = [k for k in arrays if k.startswith(f"{prefix}_")]
    if not keys:
        return None, None
    labels = f"{prefix}_labels"
    if labels not in arrays:
        raise ConfigError(f"{where} has {what} arrays {keys} but no '{labels}'; {without_labels}")
    missing = [f"{prefix}_{k}" for k in in_keys if f"{prefix}_{k}" not in arrays]
    if missing:
        raise ConfigError(f"{where} has '{labels}' but lacks {what} inputs {missing}; every input array needs a "
                          f"{prefix}_<key> counterpart")
    return {k: arrays[f"{prefix}_{k}"] for k in in_keys}, arrays[labels]


def _select_csv(path: Path, input_keys: Optional[Sequence[str]], label_key: Optional[str],
                clean_label_key: Optional[str]) -> SelectedArrays:
    """The columns of a CSV: labels, clean labels and the feature columns as one "features" input
    (finite values only: a CSV's gaps are NaN here)."""
    header, table = read_csv_table(path)
    where = f"{path.name}"
    lkey = pick_key(header, label_key, DEFAULT_LABEL_KEYS, "label column", True, where)
    ckey = pick_key(header, clean_label_key, DEFAULT_CLEAN_KEYS, "clean label column", False, where)
    ignored_keys: list[str] = []
    if input_keys is not None:
        missing = [k for k in input_keys if k not in header]
        if missing:
            raise ConfigError(f"{where} has no column(s) {missing}; present: {header}")
        feature_cols = list(input_keys)
    else:  # the other label-like columns never become features (the target would leak in)
        feature_cols = [h for h in header if h not in (lkey, ckey) and h not in DEFAULT_LABEL_KEYS + DEFAULT_CLEAN_KEYS]
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
    return SelectedArrays(where, lkey, ckey, ["features"], {"features": table[:, [col[c] for c in feature_cols]]},
                          table[:, col[lkey]], table[:, col[ckey]] if ckey is not None else None,
                          ignored_keys=ignored_keys, feature_columns=feature_cols)


# ----------------------------------------------------------------------------------------------
# check: the contents of the selected arrays, the noisy-labels file, the class count


@dataclass
class CheckedArrays:
    """A file's arrays once checked: int64 class ids, each input in its storage layout with its
    kind (`array_checks.classify_input`), the validation arrays alike (None: none in the file)."""

    labels: np.ndarray
    clean_labels: Optional[np.ndarray]
    kinds: dict[str, str]
    inputs: dict[str, np.ndarray]
    val_inputs: Optional[dict[str, np.ndarray]]
    val_labels: Optional[np.ndarray]
    test_inputs: Optional[dict[str, np.ndarray]] = None
    test_labels: Optional[np.ndarray] = None


def _check_selected(selected: SelectedArrays) -> CheckedArrays:
    """Labels as class ids, every input classified, finite and as long as the labels, token ids
    within the embedding limit; then the validation arrays against them."""
    lkey, ckey = selected.label_key, selected.clean_label_key
    if np.asarray(selected.labels).size == 0:
        raise ConfigError(f"label array {lkey!r} is empty")
    labels = check_labels(selected.labels, f"label array {lkey!r}")
    n = labels.shape[0]
    clean = check_labels(selected.clean_labels, f"clean label array {ckey!r}") if selected.clean_labels is not None else None
    if clean is not None and clean.shape[0] != n:
        raise ConfigError(f"length mismatch: {ckey!r} has {clean.shape[0]} entries but {lkey!r} has {n}")
    kinds: dict[str, str] = {}
    inputs: dict[str, np.ndarray] = {}
    for key, array in selected.inputs.items():
        kind, array = classify_input(np.asarray(array), key)
        if array.shape[0] != n:
            raise ConfigError(f"length mismatch: input array {key!r} has {array.shape[0]} samples but "
                              f"label array {lkey!r} has {n}")
        check_finite(array, key)
        if kind == "tokens":
            check_token_ids(array, key)
        kinds[key], inputs[key] = kind, array
    val_inputs, val_labels = _check_held_set(selected.val_inputs, selected.val_labels, "val", kinds, inputs)
    test_inputs, test_labels = _check_held_set(selected.test_inputs, selected.test_labels, "test", kinds, inputs)
    return CheckedArrays(labels, clean, kinds, inputs, val_inputs, val_labels, test_inputs, test_labels)


def _check_held_set(held_inputs: Optional[dict[str, np.ndarray]], held_labels: Optional[np.ndarray], prefix: str,
                    kinds: dict[str, str], inputs: dict[str, np.ndarray]
                    ) -> tuple[Optional[dict[str, np.ndarray]], Optional[np.ndarray]]:
    """The file's val_* (`prefix` "val") or test_* ("test") arrays: each of its input's kind and
    sample shape, as long as their labels, finite, token ids within the limit."""
    if held_inputs is None:
        return None, None
    noun = "validation" if prefix == "val" else "test"
    labels_key = f"{prefix}_labels"
    held = check_labels(held_labels, f"label array {labels_key!r}")
    checked = {}
    for key, array in held_inputs.items():
        vkey = f"{prefix}_{key}"
        vkind, array = classify_input(np.asarray(array), vkey)
        if vkind != kinds[key] or array.shape[1:] != inputs[key].shape[1:]:
            raise ConfigError(f"{noun} array {vkey!r} has shape {array.shape} ({vkind}) but {key!r} has "
                              f"shape {inputs[key].shape} ({kinds[key]}); they must match except for the length")
        if array.shape[0] != held.shape[0]:
            raise ConfigError(f"length mismatch: {vkey!r} has {array.shape[0]} samples but {labels_key!r} has "
                              f"{held.shape[0]}")
        check_finite(array, vkey)
        if vkind == "tokens":
            check_token_ids(array, vkey)
        checked[key] = array
    return checked, held


def _noisy_file_labels(noisy_labels_path: str | os.PathLike | None, selected: SelectedArrays,
                       checked: CheckedArrays) -> Optional[np.ndarray]:
    """The noisy-labels file's labels, one per row of the file before the split (None: no file);
    refused beside a file that has clean labels already (which labels would be the noisy ones?)."""
    if noisy_labels_path is None:
        return None
    where, lkey, ckey = selected.where, selected.label_key, selected.clean_label_key
    if checked.clean_labels is not None:
        raise ConfigError(f"{where} has both {lkey!r} (noisy) and {ckey!r} (clean) labels, and a noisy labels "
                          "file was given too: ambiguous; drop one of them")
    noisy_file = read_label_file(noisy_labels_path)
    n = checked.labels.shape[0]
    if noisy_file.shape[0] != n:
        raise ConfigError(f"length mismatch: noisy labels file {Path(noisy_labels_path).name} has "
                          f"{noisy_file.shape[0]} labels but {where} has {n} training samples (before the "
                          "validation split)")
    return noisy_file


def _class_count(selected: SelectedArrays, checked: CheckedArrays, noisy_file: Optional[np.ndarray],
                 noisy_labels_path: str | os.PathLike | None, num_classes: Optional[int]) -> int:
    """The number of classes: `num_classes`, else the training labels' (the data file's own),
    which every other label array must fit: a stray id in a noisy-labels file or in val_labels is
    an error, not a wider head."""
    where, labels, clean = selected.where, checked.labels, checked.clean_labels
    named = {f"label array {selected.label_key!r}": labels}
    if clean is not None:
        named[f"clean label array {selected.clean_label_key!r}"] = clean
    if checked.val_labels is not None:
        named["label array 'val_labels'"] = checked.val_labels
    if checked.test_labels is not None:
        named["label array 'test_labels'"] = checked.test_labels
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
    _check_val_classes_trained(checked, where)
    return n_classes


def _check_val_classes_trained(checked: CheckedArrays, where: str) -> None:
    """Every class of val_labels has training labels: the model can never predict one without."""
    if checked.val_labels is None:
        return
    clean = checked.clean_labels
    seen = set(np.unique(checked.labels).tolist()) | (set(np.unique(clean).tolist()) if clean is not None else set())
    unseen = sorted(set(np.unique(checked.val_labels).tolist()) - seen)
    if unseen:
        raise ConfigError(f"label array 'val_labels' of {where} holds class(es) {unseen[:5]} that no training label "
                          "has, so the model can never predict them: drop those samples or fix the labels")


def _label_roles(checked: CheckedArrays, noisy_file: Optional[np.ndarray]
                 ) -> tuple[np.ndarray, Optional[np.ndarray], bool]:
    """(reference labels, given noisy labels or None, whether the reference is clean): clean labels
    in the file make its labels the given noisy ones; a noisy-labels file makes the file's labels
    the clean reference; labels alone are the user's, possibly noisy, with no reference."""
    if checked.clean_labels is not None:
        return checked.clean_labels, checked.labels, True
    if noisy_file is not None:
        return checked.labels, noisy_file, True
    return checked.labels, None, False


# ----------------------------------------------------------------------------------------------
# split: the file's validation arrays, or a seeded stratified split of its rows


@dataclass
class Split:
    """The training and validation sets as the Dataset gets them. `info` says where the
    validation set came from; `rows` (a split only) the file's row of each sample and the labels
    the file gives the validation rows (`Dataset.train_rows`, `val_rows`, `val_given_labels`)."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray
    given_noisy: Optional[np.ndarray]
    val_inputs: dict[str, np.ndarray]
    val_labels: np.ndarray
    info: dict[str, Any]
    rows: dict[str, torch.Tensor]
    test_inputs: Optional[dict[str, np.ndarray]] = None
    test_labels: Optional[np.ndarray] = None


def _split_validation(checked: CheckedArrays, reference: np.ndarray, given_noisy: Optional[np.ndarray],
                      val_fraction: float, seed: int) -> Split:
    """The file's own validation arrays, else `val_fraction` of the rows held out by a seeded split
    stratified on the reference labels. The test arrays are never split: they stay as given."""
    test = {"test_inputs": checked.test_inputs, "test_labels": checked.test_labels}
    if checked.val_inputs is not None:
        return Split(checked.inputs, reference, given_noisy, checked.val_inputs, checked.val_labels,
                     {"val_source": "file"}, {}, **test)
    if not 0.0 < float(val_fraction) < 1.0:
        raise ConfigError(f"--val-split (val_fraction) must be between 0 and 1 (exclusive) when the file has no "
                          f"val_* arrays: that split is the validation set, got {val_fraction}")
    train_idx, val_idx = stratified_split(reference, float(val_fraction), int(seed))
    # the labels the file gives the validation rows (noisy when there is noise), so that
    # label issues cover every row of the file
    val_given = (given_noisy if given_noisy is not None else reference)[val_idx]
    rows = {"train_rows": torch.from_numpy(train_idx.astype(np.int64)),
            "val_rows": torch.from_numpy(val_idx.astype(np.int64)),
            "val_given_labels": torch.from_numpy(np.ascontiguousarray(val_given, dtype=np.int64))}
    return Split({k: a[train_idx] for k, a in checked.inputs.items()}, reference[train_idx],
                 given_noisy[train_idx] if given_noisy is not None else None,
                 {k: a[val_idx] for k, a in checked.inputs.items()}, reference[val_idx],
                 {"val_source": "split", "val_fraction": float(val_fraction), "seed": int(seed)}, rows, **test)


# ----------------------------------------------------------------------------------------------
# build: tensors, standardisation from the training split, model specs, the Dataset


def _build_dataset(path: Path, selected: SelectedArrays, kinds: dict[str, str], split: Split, n_classes: int,
                   labels_clean: bool, noisy_labels_path: str | os.PathLike | None) -> Dataset:
    """The checked `Dataset`: one tensor input (or a dict of them), transforms that standardise with
    the training split's statistics, and `info` for the run folder."""
    stats = {}
    for key, kind in kinds.items():
        if kind in ("features", "image"):
            mean, std = input_statistics(split.inputs[key], kind)
            stats[key] = (mean, std, kind)
    train_transform, eval_transform = standardizing_transforms(stats, selected.input_keys)
    train_tensors = {k: to_tensor(a, kinds[k]) for k, a in split.inputs.items()}
    val_tensors = {k: to_tensor(a, kinds[k]) for k, a in split.val_inputs.items()}
    test_tensors = ({k: to_tensor(a, kinds[k]) for k, a in split.test_inputs.items()}
                    if split.test_inputs is not None else None)
    single, only_key = len(selected.input_keys) == 1, selected.input_keys[0]
    dataset = Dataset(
        name=path.stem,
        train_inputs=train_tensors[only_key] if single else train_tensors,
        train_labels=torch.from_numpy(np.ascontiguousarray(split.labels, dtype=np.int64)),
        val_inputs=val_tensors[only_key] if single else val_tensors,
        val_labels=torch.from_numpy(np.ascontiguousarray(split.val_labels, dtype=np.int64)),
        num_classes=n_classes,
        train_labels_clean=labels_clean,
        given_noisy_labels=(torch.from_numpy(np.ascontiguousarray(split.given_noisy, dtype=np.int64))
                            if split.given_noisy is not None else None),
        train_transform=train_transform,
        eval_transform=eval_transform,
        info=_dataset_info(path, selected, kinds, _modalities(kinds, train_tensors, val_tensors, test_tensors), stats,
                           split, noisy_labels_path),
        val_selects=True,  # the user's own validation data: a checkpoint is picked by it
        test_inputs=(test_tensors[only_key] if single else test_tensors) if test_tensors is not None else None,
        test_labels=(torch.from_numpy(np.ascontiguousarray(split.test_labels, dtype=np.int64))
                     if split.test_labels is not None else None),
        **split.rows,
    )
    check_dataset(dataset)
    return dataset


def _modalities(kinds: dict[str, str], train_tensors: dict[str, torch.Tensor], val_tensors: dict[str, torch.Tensor],
                test_tensors: Optional[dict[str, torch.Tensor]] = None) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """(a `FusionNet` spec per input, the vocabulary size of each token input: the largest id in
    any split + 1, the test set's included: an id past the table could not be scored)."""
    modalities: dict[str, dict[str, Any]] = {}
    vocab_sizes: dict[str, int] = {}
    for key, kind in kinds.items():
        if kind == "features":
            modalities[key] = {"kind": "features", "dim": int(train_tensors[key].shape[1])}
        elif kind == "image":
            modalities[key] = {"kind": "image", "shape": tuple(int(s) for s in train_tensors[key].shape[1:])}
        else:
            vocab = max(int(train_tensors[key].max()), int(val_tensors[key].max()) if val_tensors[key].numel() else 0) + 1
            if test_tensors is not None:
                vocab = max(vocab, int(test_tensors[key].max()) + 1)
            vocab_sizes[key] = vocab
            modalities[key] = {"kind": "tokens", "vocab_size": vocab}
    return modalities, vocab_sizes


def _dataset_info(path: Path, selected: SelectedArrays, kinds: dict[str, str],
                  specs: tuple[dict[str, dict[str, Any]], dict[str, int]],
                  stats: dict[str, tuple[np.ndarray, np.ndarray, str]], split: Split,
                  noisy_labels_path: str | os.PathLike | None) -> dict[str, Any]:
    """`Dataset.info`: the file, the kind and model spec of each input, the label keys, the
    standardisation and where the validation set came from."""
    modalities, vocab_sizes = specs
    info: dict[str, Any] = {
        "source": path.suffix.lower().lstrip("."),
        "path": str(path),
        "input_kinds": dict(kinds),
        "modalities": modalities,
        "label_key": selected.label_key,
        "clean_label_key": selected.clean_label_key,
        "noisy_labels_path": str(noisy_labels_path) if noisy_labels_path is not None else None,
        "standardization": {k: {"mean": m.tolist(), "std": s.tolist()} for k, (m, s, _) in stats.items()},
        **split.info,
    }
    if vocab_sizes:
        info["vocab_sizes"] = vocab_sizes
    if selected.ignored_keys:
        info["ignored_keys"] = selected.ignored_keys
    if selected.feature_columns is not None:
        info["feature_columns"] = selected.feature_columns
    if split.test_labels is not None:  # only then: the record of a run without one is unchanged
        info["test_source"] = "file"
    return info
