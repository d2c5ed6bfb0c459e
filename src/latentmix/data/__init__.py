"""Data: the `Dataset` every run trains on (`latentmix.data.dataset`: inputs, labels, transforms)
and `load_dataset`, which reads one by name or path through its loader: spirals (`spiral`), the
CIFAR-10 release (`cifar`), IDX files of the MNIST family (`idx`), a user's .npz/.csv (`arrays`),
image + token pairs (`multimodal`), an image folder (`image_folder`); `streamed` reads a torch
Dataset batch by batch through a DataLoader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from latentmix.data.dataset import Dataset, EvalTransform, TrainTransform, index_inputs, is_streamed, subset_inputs
from latentmix.data.inputs import Inputs, map_inputs
from latentmix.errors import ConfigError

__all__ = ["DATASETS", "Dataset", "EvalTransform", "Inputs", "TrainTransform", "index_inputs", "is_streamed",
           "load_dataset", "map_inputs", "subset_inputs"]

DATASETS = ("spiral", "cifar10", "fashion-mnist", "mnist", "kmnist", "fashion-mnist-multimodal", "arrays")


def load_dataset(name: str, *, data_dir: Optional[str] = None, data_path: Optional[str] = None,
                 download: bool = False, **options: Any) -> Dataset:
    """Load a data set by name. `data_dir` is the folder of file-based sets; `data_path` a user's
    .npz/.csv file (name "arrays", chosen automatically when `data_path` is given) or a folder of
    images, one sub-folder per class (`latentmix.data.image_folder`)."""
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
