"""Data sets as plain tensors, with the transforms that turn stored samples into model inputs.

A `Dataset` holds the whole training and validation sets in memory (on the training device when
the trainer moves it there). Inputs are one of three shapes, the same that `latentmix.mixing`
accepts: a tensor, a tuple of tensors, or a dict of tensors (one entry per modality). Or the
inputs stay where the user holds them: `latentmix.data.streamed.StreamedInputs` over a map-style
`torch.utils.data.Dataset` (or an image folder, `latentmix.data.image_folder`), read batch by batch
through a DataLoader; only the labels are then in memory.

`train_transform(inputs, generator)` is applied to each training batch (augmentation plus
conversion to float, e.g. uint8 images -> normalised float crops); `eval_transform(inputs)` to
validation (and test) batches. Both default to the identity.

The validation set may select (the checkpoint, the end of early learning; `val_selects`); an
optional test set (`test_inputs` / `test_labels`: a file's ``test_*`` arrays, an image folder's
``test/``) never does: it is only scored, each epoch, so that the accuracy a run reports at its
selected epoch is not measured on the set it was selected by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch

from latentmix.data.inputs import Inputs, map_inputs
from latentmix.data.streamed import StreamedInputs

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
        test_inputs / test_labels: an optional test set of the user's (K samples), only scored: it
            selects nothing (not the checkpoint, not the end of early learning), so its accuracy
            at the selected epoch is an unbiased estimate (a set that selected reads high).
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
    test_inputs: Optional[Inputs] = None
    test_labels: Optional[torch.Tensor] = None

    @property
    def num_train(self) -> int:
        return int(self.train_labels.shape[0])

    @property
    def num_val(self) -> int:
        return int(self.val_labels.shape[0])

    @property
    def num_test(self) -> int:
        """How many test samples the data set has (0: none)."""
        return int(self.test_labels.shape[0]) if self.test_labels is not None else 0

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
        if self.test_labels is not None:
            self.test_inputs = move(self.test_inputs)
            self.test_labels = self.test_labels.to(device)
        return self


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
    return isinstance(inputs, StreamedInputs)
