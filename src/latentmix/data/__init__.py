"""Data sets as plain tensors, with the transforms that turn stored samples into model inputs.

A `Dataset` holds the whole training and validation sets in memory (on the training device when
the trainer moves it there). Inputs are one of three shapes, the same that `latentmix.mixing`
accepts: a tensor, a tuple of tensors, or a dict of tensors (one entry per modality). Or the
inputs stay where the user holds them: `latentmix.data.streamed.StreamedInputs` over a map-style
`torch.utils.data.Dataset` (or an image folder, `latentmix.data.image_folder`), read batch by batch
through a DataLoader; only the labels are then in memory.

`train_transform(inputs, generator)` is applied to each training batch (augmentation plus
conversion to float, e.g. uint8 images -> normalised float crops); `eval_transform(inputs)` to
validation batches. Both default to the identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch

Inputs = Union[torch.Tensor, tuple, dict]
TrainTransform = Callable[[Inputs, torch.Generator], Inputs]
EvalTransform = Callable[[Inputs], Inputs]


@dataclass
class Dataset:
    """A classification data set held in memory.

    Attributes:
        name: short name (``"spiral"``, ``"cifar10"``, ...).
        train_inputs / val_inputs: tensor (N, ...), tuple or dict of such tensors.
        train_labels: (N,) int64 labels of the training set as shipped. When `train_labels_clean`
            is True they are the ground truth and synthetic noise is applied on top of them; when
            False they are the user's (possibly noisy) labels and no clean reference exists.
        val_labels: (M,) int64 validation/test labels.
        num_classes: C.
        train_labels_clean: whether `train_labels` are known to be correct.
        given_noisy_labels: optional (N,) int64 labels that replace synthetic noise (real noisy
            labels read from a file); `train_labels` then stay the clean reference if known.
        train_transform / eval_transform: see module docstring.
        info: free-form facts for the run folder (generator parameters, file paths, ...).
        train_rows / val_rows: optional (N,) / (M,) int64 row numbers in the user's file of each
            training / validation sample (a file split into the two), so that label issues name
            rows of the file; None means the position in the split is the row.
        val_given_labels: optional (M,) labels of the validation rows as the file gives them
            (possibly noisy), when the validation set is a split of the user's file: these rows
            are scored for label issues too.
        sample_names: optional name of each row of the user's data (what `train_rows` / `val_rows`
            number; an image folder: each file's path below the folder), a column of the label issues.
        val_selects: the validation set is the user's own (a split of their file, their
            validation arrays, `fit`'s val_inputs), so a user picks the checkpoint by accuracy on
            it; a built-in test set is not (the paper's protocols have no selection split).
    """

    name: str
    train_inputs: Inputs
    train_labels: torch.Tensor
    val_inputs: Inputs
    val_labels: torch.Tensor
    num_classes: int
    train_labels_clean: bool = True
    given_noisy_labels: Optional[torch.Tensor] = None
    train_transform: Optional[TrainTransform] = None
    eval_transform: Optional[EvalTransform] = None
    info: dict = field(default_factory=dict)
    train_rows: Optional[torch.Tensor] = None
    val_rows: Optional[torch.Tensor] = None
    val_given_labels: Optional[torch.Tensor] = None
    val_selects: bool = False
    sample_names: Optional[Sequence[str]] = None

    @property
    def num_train(self) -> int:
        return int(self.train_labels.shape[0])

    @property
    def num_val(self) -> int:
        return int(self.val_labels.shape[0])

    @property
    def num_label_issue_rows(self) -> int:
        """How many rows a run's `label_issues.csv` has: every training sample, and the validation
        rows when the validation set is a split of the user's file (they are scored too)."""
        return self.num_train + (self.num_val if self.val_given_labels is not None else 0)

    def to(self, device: torch.device | str) -> "Dataset":
        """Move every tensor to `device` (the transforms are device-agnostic tensor ops)."""
        def move(x: Any) -> Any:
            if is_streamed(x):  # read and moved batch by batch
                return x
            return map_inputs(x, lambda t: t.to(device))

        self.train_inputs = move(self.train_inputs)
        self.val_inputs = move(self.val_inputs)
        self.train_labels = self.train_labels.to(device)
        self.val_labels = self.val_labels.to(device)
        if self.given_noisy_labels is not None:
            self.given_noisy_labels = self.given_noisy_labels.to(device)
        if self.val_given_labels is not None:
            self.val_given_labels = self.val_given_labels.to(device)
        return self


def map_inputs(inputs: Inputs, fn: Callable[[torch.Tensor], torch.Tensor]) -> Inputs:
    """Apply `fn` to every tensor of a tensor / tuple / dict input."""
    if isinstance(inputs, torch.Tensor):
        return fn(inputs)
    if isinstance(inputs, Mapping):
        return {key: map_inputs(value, fn) for key, value in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(map_inputs(value, fn) for value in inputs)
    raise TypeError(f"inputs must be a tensor, a tuple or a dict of tensors, got {type(inputs).__name__}")


def index_inputs(inputs: Inputs, index: torch.Tensor) -> Inputs:
    """Select the samples `index` (a 1-D index tensor) from every tensor of `inputs` (streamed
    inputs: read them now, as one batch)."""
    if is_streamed(inputs):
        return inputs.take(index)
    return map_inputs(inputs, lambda t: t[index])


def subset_inputs(inputs: Inputs, index: torch.Tensor) -> Inputs:
    """The samples `index` as inputs of their own: selected tensors, or streamed inputs still unread."""
    if is_streamed(inputs):
        return inputs.subset(index)
    return index_inputs(inputs, index)


def is_streamed(inputs: Any) -> bool:
    """Whether `inputs` are read from a data set batch by batch (`StreamedInputs`) rather than held."""
    from latentmix.data.streamed import StreamedInputs

    return isinstance(inputs, StreamedInputs)


DATASETS = ("spiral", "cifar10", "fashion-mnist", "mnist", "kmnist", "fashion-mnist-multimodal", "arrays")


def load_dataset(name: str, *, data_dir: Optional[str] = None, data_path: Optional[str] = None,
                 download: bool = False, **options: Any) -> Dataset:
    """Load a data set by name. `data_dir` is the folder of file-based sets; `data_path` a user's
    .npz/.csv file (name "arrays", chosen automatically when `data_path` is given) or a folder of
    images, one sub-folder per class (`latentmix.data.image_folder`)."""
    from pathlib import Path

    from latentmix.errors import ConfigError

    if data_path and Path(data_path).is_dir():
        from latentmix.data.image_folder import load_image_folder

        return load_image_folder(data_path, **options)

    key = "arrays" if data_path else name.strip().lower()
    if key == "spiral":
        from latentmix.data.spiral import load_spiral

        return load_spiral(**options)
    if key == "cifar10":
        from latentmix.data.cifar import load_cifar10

        if data_dir is None and not download:
            raise ConfigError("cifar10 needs --data-dir pointing at cifar-10-batches-py/ or cifar-10-python.tar.gz "
                              "(or --download to fetch the official archive)")
        return load_cifar10(data_dir or "data", download=download, **options)
    if key in ("fashion-mnist", "mnist", "kmnist"):
        from latentmix.data.idx import load_mnist_like

        return load_mnist_like(data_dir, name=key, **options) if data_dir else load_mnist_like(name=key, **options)
    if key == "fashion-mnist-multimodal":
        from latentmix.data.multimodal import load_benchmark

        return load_benchmark(data_dir)
    if key == "arrays":
        from latentmix.data.arrays import load_arrays

        if not data_path:
            raise ConfigError("the 'arrays' data set needs --data my.npz (or .csv)")
        return load_arrays(data_path, **options)
    raise ConfigError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}, or pass --data FILE")
