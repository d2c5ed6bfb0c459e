"""A two-modality benchmark built from real Fashion-MNIST images: ``{"image", "tokens"}``.

Every sample is one Fashion-MNIST image paired with a token sequence derived from that same image,
so the benchmark has real labels and real (label-)noise behaviour while one modality is integer
token ids, which cannot be interpolated: latent mixup must start at the encoders (layer >= 1).

How the token sequence is built (`image_tokens`, deterministic, no randomness):

1. the 28x28 uint8 image is cut into a 7x7 grid of 4x4 pixel cells (``cell = H // grid``);
2. each cell's mean intensity m in [0, 255] is computed exactly (integer sum / 16);
3. the mean is quantised into ``levels`` equal-width bins: ``token = min(floor(m * levels / 256),
   levels - 1)``, i.e. with 16 levels token k covers intensities [16k, 16k + 16);
4. the 49 tokens are read in raster order (row by row, left to right): a sequence of length 49
   over a vocabulary of ``levels`` = 16 ids (0 = black cell ... 15 = bright cell).

The ``image`` modality is the unchanged image (uint8 in memory, normalised by the transforms with
the training images' mean and std, exactly as `latentmix.data.idx.load_mnist_like` does); the
``tokens`` modality is int64 and is never transformed. Labels are the Fashion-MNIST labels;
synthetic noise is applied by the trainer on top of them (``train_labels_clean=True``).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import torch

from latentmix.data.dataset import Dataset
from latentmix.errors import ConfigError

__all__ = ["DEFAULT_GRID", "DEFAULT_LEVELS", "image_tokens", "multimodal_from_images", "load_fashion_multimodal"]

DEFAULT_GRID = 7
DEFAULT_LEVELS = 16
NAME = "fashion-mnist-multimodal"
DEFAULT_TRAIN_SIZE = 5_000  # the benchmark's training subset (seed 0), as the Fashion-MNIST table's
# The image encoder of the benchmark's fusion model: conv widths 8 and 16, flattened map (see
# `latentmix.models.small.ImageEncoder`); a data set declares it in info["modalities"].
IMAGE_ENCODER_WIDTH = 8


def image_tokens(images: np.ndarray | torch.Tensor, grid: int = DEFAULT_GRID, levels: int = DEFAULT_LEVELS) -> np.ndarray:
    """Token ids (N, grid*grid) int64 in [0, levels) from uint8 images (N, H, W) or (N, 1, H, W).

    H and W must be multiples of `grid`; see the module docstring for the exact construction."""
    array = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim == 4:
        if array.shape[1] != 1:
            raise ConfigError(f"image_tokens needs grey images (N, 1, H, W), got {array.shape[1]} channels")
        array = array[:, 0]
    if array.ndim != 3:
        raise ConfigError(f"image_tokens needs images (N, H, W) or (N, 1, H, W), got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ConfigError(f"image_tokens needs uint8 images (0..255), got dtype {array.dtype}")
    if grid < 1 or not 2 <= levels <= 256:
        raise ConfigError(f"need grid >= 1 and 2 <= levels <= 256, got grid={grid}, levels={levels}")
    n, h, w = array.shape
    if h % grid or w % grid:
        raise ConfigError(f"images of {h}x{w} pixels cannot be cut into a {grid}x{grid} grid of equal cells")
    ch, cw = h // grid, w // grid
    sums = array.reshape(n, grid, ch, grid, cw).sum(axis=(2, 4), dtype=np.int64)  # exact integer sums
    # floor(mean * levels / 256) with integers only: floor(sum * levels / (256 * cell_pixels))
    tokens = (sums * levels) // (256 * ch * cw)
    return np.minimum(tokens, levels - 1).reshape(n, grid * grid).astype(np.int64)


def multimodal_from_images(image_dataset: Dataset, grid: int = DEFAULT_GRID, levels: int = DEFAULT_LEVELS,
                           name: str = NAME) -> Dataset:
    """Pair every image of an MNIST-like `Dataset` (uint8 (N, 1, H, W) inputs) with its tokens."""
    if not isinstance(image_dataset.train_inputs, torch.Tensor) or image_dataset.train_inputs.dim() != 4:
        raise ConfigError("multimodal_from_images needs a data set of (N, 1, H, W) uint8 images")
    normalize = image_dataset.eval_transform or (lambda x: x)
    train_tokens = torch.from_numpy(image_tokens(image_dataset.train_inputs, grid, levels))
    val_tokens = torch.from_numpy(image_tokens(image_dataset.val_inputs, grid, levels))

    def eval_transform(inputs: dict) -> dict:
        return {"image": normalize(inputs["image"]), "tokens": inputs["tokens"]}

    def train_transform(inputs: dict, generator: Optional[torch.Generator] = None) -> dict:
        return eval_transform(inputs)

    shape = tuple(int(s) for s in image_dataset.train_inputs.shape[1:])
    info = {
        "source": "fashion-mnist images + derived tokens",
        "image_source": dict(image_dataset.info),
        "input_kinds": {"image": "image", "tokens": "tokens"},
        "vocab_sizes": {"tokens": int(levels)},
        "modalities": {"image": {"kind": "image", "shape": shape, "width": IMAGE_ENCODER_WIDTH, "pooling": "flatten"},
                       "tokens": {"kind": "tokens", "vocab_size": int(levels)}},
        "token_grid": int(grid),
        "token_levels": int(levels),
        "sequence_length": int(grid * grid),
    }
    return Dataset(
        name=name,
        train_inputs={"image": image_dataset.train_inputs, "tokens": train_tokens},
        train_labels=image_dataset.train_labels,
        val_inputs={"image": image_dataset.val_inputs, "tokens": val_tokens},
        val_labels=image_dataset.val_labels,
        num_classes=image_dataset.num_classes,
        train_labels_clean=image_dataset.train_labels_clean,
        train_transform=train_transform,
        eval_transform=eval_transform,
        info=info,
    )


def load_fashion_multimodal(root: str | os.PathLike | None = None, *, train_size: Optional[int] = None,
                            val_size: Optional[int] = None, seed: Optional[int] = 0, grid: int = DEFAULT_GRID,
                            levels: int = DEFAULT_LEVELS) -> Dataset:
    """Fashion-MNIST (IDX files in `root`, default the system copy) as the ``{"image", "tokens"}`` set.

    `train_size` / `val_size` keep a random subset drawn with `seed` (see `load_mnist_like`); None
    keeps the whole split."""
    from latentmix.data.idx import load_mnist_like

    images = load_mnist_like(root, name="fashion-mnist", train_size=train_size, val_size=val_size,
                             seed=seed if (train_size or val_size) else None)
    return multimodal_from_images(images, grid=grid, levels=levels)


def load_benchmark(root: str | os.PathLike | None = None) -> Dataset:
    """The benchmark's data set: `DEFAULT_TRAIN_SIZE` training images drawn with seed 0 (all of
    them when the folder holds fewer, as the tests' tiny IDX files do) and the whole test set."""
    from latentmix.data.idx import load_mnist_like

    images = load_mnist_like(root, name="fashion-mnist")
    if images.num_train > DEFAULT_TRAIN_SIZE:
        images = load_mnist_like(root, name="fashion-mnist", train_size=DEFAULT_TRAIN_SIZE, seed=0)
    return multimodal_from_images(images)
