"""Standardisation of a data file's inputs with the training split's statistics: per column
(features) or per channel (images) mean and std, and the transforms that apply them to every
batch (token inputs pass unchanged). `latentmix.data.arrays` builds a file's `Dataset` with them.

Statistics come from the training split only, so nothing about the validation or test rows leaks
into the inputs the model sees.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["input_statistics", "standardizing_transforms"]


def input_statistics(array: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
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


def standardizing_transforms(stats: dict[str, tuple[np.ndarray, np.ndarray, str]], input_keys: list[str]):
    """(train_transform, eval_transform): both standardise each non-token input with the training
    split's statistics (no augmentation: the arrays are the user's, of any kind)."""
    standardize = _make_standardizer(stats)
    only_key = input_keys[0]

    def transform(batch):
        if isinstance(batch, torch.Tensor):
            return standardize(only_key, batch)
        return {key: standardize(key, value) for key, value in batch.items()}

    def train_transform(batch, generator=None):
        return transform(batch)

    def eval_transform(batch):
        return transform(batch)

    return train_transform, eval_transform
