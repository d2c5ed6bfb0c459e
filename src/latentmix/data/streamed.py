"""Data as users hold it: a map-style `torch.utils.data.Dataset` whose items are ``(inputs, label)``
(inputs a tensor, a tuple or a dict of tensors), read in batches through a `DataLoader` with
workers and never loaded whole.

`StreamedInputs` stands where a `latentmix.data.Dataset` keeps its inputs tensor: the trainer asks
for the batches it wants (`read_batches`), in the order its own random stream drew, and a
DataLoader whose batch sampler is exactly that list reads them. So the same samples in the same
order reach the model as on the in-memory path, and a run gives the same results either way
(`tests/test_streamed.py`); only the reading differs.

`WithIndex` is the wrapper a hand-written loop needs: its items are ``(inputs, label, index)``, so
`latentmix.correction.LossCorrection` and `track_losses` know which sample each loss belongs to.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from latentmix.data.inputs import map_inputs, tensors_sha256
from latentmix.errors import ConfigError

__all__ = ["StreamedInputs", "WithIndex", "is_map_dataset", "dataset_labels", "read_batches", "collate_inputs",
           "default_workers"]


def is_map_dataset(value: Any) -> bool:
    """Whether `value` is a map-style data set of samples (``len`` and integer ``[i]``) rather than
    the tensors, arrays, tuples or dicts of the in-memory path."""
    if isinstance(value, (torch.Tensor, np.ndarray, Mapping, tuple, list, str, bytes)):
        return False
    if isinstance(value, torch.utils.data.Dataset):
        return True
    return hasattr(value, "__len__") and hasattr(value, "__getitem__")


def default_workers() -> int:
    """DataLoader worker processes when none are asked for: one per spare CPU core, at most 4
    (decoding more images in parallel than that rarely pays on a small model)."""
    return max(0, min(4, usable_cpus() - 1))


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one, as
    PyTorch's DataLoader counts them), else all of the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_CAP_NOTED: set = set()  # (asked, cores) pairs already said, so that the note comes once per process


def capped_workers(asked: int) -> int:
    """`asked` DataLoader workers, at most one per usable CPU core: more processes than cores only
    wait on each other, and PyTorch warns about each loader that has them (twice per run: the
    training and the validation reader). Capping says so once, on standard error."""
    cores = usable_cpus()
    if asked <= cores:
        return asked
    if (asked, cores) not in _CAP_NOTED:
        _CAP_NOTED.add((asked, cores))
        print(f"latentmix: note: {asked} DataLoader workers asked for (--loader-workers / num_workers), but this "
              f"process may use {cores} CPU core(s): using {cores}", file=sys.stderr)
    return cores


def _as_sample_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return torch.from_numpy(np.ascontiguousarray(value))
    raise ConfigError(f"{what} must be a tensor (or a numeric numpy array), got {type(value).__name__}; return "
                      "(inputs, label) with inputs a tensor, a tuple or a dict of tensors")


def sample_inputs(inputs: Any, what: str) -> Any:
    """One sample's inputs as tensors (a tensor, a tuple or a dict of them; numpy arrays converted)."""
    if isinstance(inputs, Mapping):
        return {str(key): _as_sample_tensor(value, f"{what}[{key!r}]") for key, value in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return tuple(_as_sample_tensor(value, f"{what}[{i}]") for i, value in enumerate(inputs))
    return _as_sample_tensor(inputs, what)


def split_item(item: Any, position: int, name: str = "dataset") -> tuple[Any, int]:
    """``(inputs, label)`` of item `position`, checked: inputs as tensors, the label a whole number."""
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        got = f"a {type(item).__name__}" + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
        raise ConfigError(f"{name}[{position}] is {got}; items must be (inputs, label) pairs (inputs a tensor, tuple or "
                          "dict of tensors, label a class id)")
    inputs, label = item
    class_id = _class_id(label)
    if class_id is None:
        raise ConfigError(f"{name}[{position}] has label {label!r}; labels must be class ids 0..C-1 (whole numbers)")
    if class_id < 0:
        raise ConfigError(f"{name}[{position}] has label {class_id}; labels must be class ids >= 0")
    return sample_inputs(inputs, f"{name}[{position}] inputs"), class_id


def _class_id(label: Any) -> Optional[int]:
    """A label as a whole number: an int, a one-element tensor or array, or an integral float;
    None for anything else (a bool, a string, a one-hot vector, 1.5)."""
    if isinstance(label, (torch.Tensor, np.ndarray, np.generic)):
        if (label.numel() if isinstance(label, torch.Tensor) else np.size(label)) != 1:
            return None
        label = label.item()
    if isinstance(label, bool):
        return None
    if isinstance(label, (int, np.integer)):
        return int(label)
    if isinstance(label, float) and label.is_integer():
        return int(label)
    return None


def collate_inputs(samples: Sequence[Any]) -> Any:
    """Stack per-sample inputs into a batch, keeping the structure: tensors stacked along a new
    first axis, tuples stay tuples (torch's `default_collate` turns them into lists), dicts stay dicts."""
    first = samples[0]
    if isinstance(first, torch.Tensor):
        shapes = sorted({tuple(sample.shape) for sample in samples})
        if len(shapes) > 1:  # torch.stack's own error was a traceback from inside the DataLoader
            from latentmix.errors import ConfigError

            raise ConfigError(f"the data set's items have inputs of different shapes ({shapes[0]} and {shapes[1]}); "
                              "a batch needs one shape: pad, crop or resize every item to one")
        return torch.stack(list(samples))
    if isinstance(first, Mapping):
        return {key: collate_inputs([sample[key] for sample in samples]) for key in first}
    return tuple(collate_inputs([sample[i] for sample in samples]) for i in range(len(first)))


class WithIndex(torch.utils.data.Dataset):
    """The user's data set with each item's position: ``(inputs, label) -> (inputs, label, index)``,
    the batches `LossCorrection` and `track_losses` take (P(noisy) is kept per sample index).

    Example::

        loader = DataLoader(WithIndex(train_set), batch_size=64, shuffle=True, num_workers=2)
        for x, y, index in loader: ...
    """

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, position: int) -> tuple[Any, int, int]:
        inputs, label = split_item(self.dataset[position], position)
        return inputs, label, position


class _InputsOnly(torch.utils.data.Dataset):
    """Items of `StreamedInputs`: the inputs of the user's item at each position (the labels are
    held in memory, read once)."""

    def __init__(self, dataset: Any, positions: np.ndarray, name: str):
        self.dataset, self.positions, self.name = dataset, positions, name

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> Any:
        position = int(self.positions[i])
        return split_item(self.dataset[position], position, self.name)[0]


class StreamedInputs:
    """The inputs of a map-style data set (or of its samples at `positions`), read on demand.

    Args:
        dataset: items ``(inputs, label)``; anything with ``len`` and ``[i]``.
        positions: the samples of `dataset` these inputs are, in order (default: all).
        workers: DataLoader worker processes for `batches` (None: `default_workers`).
        name: how errors name the data set.
    """

    def __init__(self, dataset: Any, positions: Optional[np.ndarray] = None, *, workers: Optional[int] = None,
                 name: str = "dataset"):
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0):
            raise ConfigError(f"num_workers must be a whole number >= 0 (0: read in the training process), got {workers!r}")
        self.dataset = dataset
        self.positions = np.arange(len(dataset), dtype=np.int64) if positions is None else np.asarray(positions, dtype=np.int64)
        self.workers = default_workers() if workers is None else capped_workers(int(workers))
        self.name = name
        self._loader: Optional[DataLoader] = None  # built on the first `batches`, then kept
        self._sampler: Optional[_BatchList] = None
        self._loader_device: Optional[torch.device] = None

    def __len__(self) -> int:
        return len(self.positions)

    def subset(self, index: Any) -> "StreamedInputs":
        """The samples at `index` (positions within these inputs), still unread."""
        index = torch.as_tensor(index).cpu().numpy()
        return StreamedInputs(self.dataset, self.positions[index], workers=self.workers, name=self.name)

    def take(self, index: Any) -> Any:
        """The samples at `index` read now, in this process, as one batch (a few samples: a check
        of the model, a holdout example; whole epochs go through `batches`)."""
        reader = _InputsOnly(self.dataset, self.positions, self.name)
        return collate_inputs([reader[int(i)] for i in torch.as_tensor(index).reshape(-1).tolist()])

    def batches(self, index_batches: Sequence[torch.Tensor], device: torch.device | str) -> Iterator[Any]:
        """Each batch of `index_batches` (positions within these inputs) read by a DataLoader whose
        batch sampler is exactly that list, and moved to `device`. The loader and its worker
        processes persist between calls (starting workers costs more than a small epoch's reading);
        only the list of batches changes."""
        device = torch.device(device)
        batches = [torch.as_tensor(index).reshape(-1).tolist() for index in index_batches]
        if not batches:
            return
        if self._loader is None or self._loader_device != device:
            self._sampler = _BatchList()
            self._loader = DataLoader(_InputsOnly(self.dataset, self.positions, self.name), batch_sampler=self._sampler,
                                      num_workers=self.workers, collate_fn=collate_inputs,
                                      pin_memory=device.type == "cuda", persistent_workers=self.workers > 0)
            self._loader_device = device
        self._sampler.batches = batches
        for batch in self._loader:
            yield _to_device(batch, device)

    def fingerprint(self) -> str:
        """The identity a run folder records for these inputs (a resume must read the same data):
        the data set's own ``fingerprint()`` when it has one (an image folder: its files), else
        its type, length and its first and last samples; and the positions taken."""
        digest = hashlib.sha256()
        own = getattr(self.dataset, "fingerprint", None)
        if callable(own):
            digest.update(str(own()).encode())
        else:
            digest.update(f"{type(self.dataset).__module__}.{type(self.dataset).__qualname__}:{len(self.dataset)}".encode())
            if len(self.positions):
                digest.update(tensors_sha256(self.take([0, len(self.positions) - 1])).encode())
        digest.update(self.positions.tobytes())
        return digest.hexdigest()


class _BatchList:
    """A batch sampler whose batches the caller sets before each pass (the DataLoader asks its
    sampler for the batches in the training process, so a persistent loader reads the new list)."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _to_device(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device, non_blocking=True)
    if isinstance(inputs, Mapping):
        return {key: _to_device(value, device) for key, value in inputs.items()}
    return type(inputs)(_to_device(value, device) for value in inputs)


def read_batches(inputs: Any, index_batches: Sequence[torch.Tensor], device: torch.device | str) -> Iterable[Any]:
    """The inputs of each batch of sample positions, in order: sliced from tensors in memory (the
    fast path), or read through a DataLoader (`StreamedInputs`)."""
    if isinstance(inputs, StreamedInputs):
        return inputs.batches(index_batches, device)
    return (map_inputs(inputs, lambda t, index=index: t[index]) for index in index_batches)


def dataset_labels(dataset: Any, *, name: str = "dataset", workers: Optional[int] = None) -> torch.Tensor:
    """(N,) int64 labels of a map-style data set of ``(inputs, label)`` items: its ``targets``
    attribute (torchvision's convention, and `ImageFolder`'s) when it has one of length N, else one
    pass over the items through a DataLoader with workers (the inputs are read and dropped)."""
    n = len(dataset)
    if n == 0:
        raise ConfigError(f"{name} is empty (len 0); give a data set with samples")
    split_item(dataset[0], 0, name)  # the item's shape, checked on one sample before any pass
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) == n:
        labels = torch.as_tensor(np.asarray(targets)).long().reshape(-1)
    else:
        loader = DataLoader(_LabelsOnly(dataset, name), batch_size=256,
                            num_workers=default_workers() if workers is None else capped_workers(workers))
        labels = torch.cat([batch.long().reshape(-1) for batch in loader])
    if labels.numel() and int(labels.min()) < 0:
        raise ConfigError(f"{name} has label {int(labels.min())}; labels must be class ids >= 0")
    return labels


class _LabelsOnly(torch.utils.data.Dataset):
    def __init__(self, dataset: Any, name: str):
        self.dataset, self.name = dataset, name

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, position: int) -> int:
        return split_item(self.dataset[position], position, self.name)[1]
