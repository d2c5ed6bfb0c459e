"""Batched image augmentation as plain tensor ops (no per-image Python loops, no torchvision).

Everything here runs on the device the images live on. Random numbers come from an explicit
`torch.Generator`:

* The generator should live on the same device as the images (``torch.Generator(device=x.device)``);
  the random offsets are then drawn directly there.
* A generator on another device also works: the (N,)-sized random draws are made on the generator's
  device and moved to the images' device, so a CPU generator can drive CUDA images (a small copy).
* ``generator=None`` uses torch's global RNG for the images' device.

Conventions: images are (N, C, H, W) tensors, uint8 in [0, 255] or floating point.

Augmentation used for CIFAR-10 (He et al. 2016, "Deep Residual Learning for Image Recognition",
Sec. 4.2; the standard recipe of the Arazo et al. 2019 reference code):
    1. zero-pad every side by `padding` (4) pixels, take a random H x W crop of the padded image;
    2. flip horizontally with probability 1/2;
    3. normalise per channel: x' = (x / 255 - mean_c) / std_c.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "random_crop_flip",
    "normalize",
    "Normalize",
    "CropFlipNormalize",
]


def _randint(high: int, n: int, generator: Optional[torch.Generator], device: torch.device) -> torch.Tensor:
    """n integers uniform in [0, high), drawn on the generator's device, returned on `device`."""
    gen_device = generator.device if generator is not None else device
    values = torch.randint(0, high, (n,), generator=generator, device=gen_device)
    return values.to(device)


def random_crop_flip(
    images: torch.Tensor,
    generator: Optional[torch.Generator] = None,
    padding: int = 4,
    flip: bool = True,
) -> torch.Tensor:
    """Random crop with zero padding plus random horizontal flip, independently per image.

    For each image n, offsets dy_n, dx_n ~ U{0, ..., 2*padding} and a flip bit f_n ~ Bernoulli(1/2)
    (f_n = 0 when `flip` is False) are drawn; with P the image zero-padded by `padding` on every side,

        crop[n, c, i, j] = P[n, c, i + dy_n, j + dx_n]                       (0 <= i < H, 0 <= j < W)
        out[n, c, i, j]  = crop[n, c, i, W - 1 - j] if f_n else crop[n, c, i, j]

    so every crop lies inside the padded image. Implemented with one zero pad and two `gather`s
    (rows, then columns); the cost is O(N*C*H*W) tensor work on the images' device.

    Args:
        images: (N, C, H, W) tensor, any dtype (uint8 or float); not modified.
        generator: torch.Generator, ideally on ``images.device`` (see module docstring); None = global RNG.
        padding: zero padding p >= 0 on each side. p = 0 disables the crop.
        flip: whether to apply the random horizontal flip.

    Returns:
        A new tensor with the same shape, dtype and device. With ``padding=0, flip=False`` it equals
        the input (the identity).
    """
    if images.dim() != 4:
        raise ValueError(f"random_crop_flip expects (N, C, H, W) images, got shape {tuple(images.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, c, h, w = images.shape
    device = images.device
    if n == 0:
        return images.clone()

    dy = _randint(2 * padding + 1, n, generator, device)
    dx = _randint(2 * padding + 1, n, generator, device)
    padded = F.pad(images, (padding, padding, padding, padding)) if padding > 0 else images

    # Rows: out_rows[n, :, i, :] = padded[n, :, i + dy_n, :]
    rows = dy[:, None] + torch.arange(h, device=device)[None, :]  # (N, H)
    rows = rows[:, None, :, None].expand(n, c, h, w + 2 * padding)
    cropped_rows = torch.gather(padded, 2, rows)

    # Columns (flip folded into the index): out[..., j] = cropped_rows[..., j' + dx_n],
    # j' = W - 1 - j when flipped, j otherwise.
    j = torch.arange(w, device=device)[None, :].expand(n, w)
    if flip:
        flips = _randint(2, n, generator, device).bool()
        j = torch.where(flips[:, None], (w - 1) - j, j)
    cols = (j + dx[:, None])[:, None, None, :].expand(n, c, h, w)
    return torch.gather(cropped_rows, 3, cols)


def _channel_stats(values: Sequence[float] | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-channel `values` as a (1, C, 1, ...) float32 tensor on `like`'s device. A tuple or list
    of numbers is made once per device and shape (`_cached_stats`): building it from the numbers
    every batch is a copy from host memory, which on a GPU waits for every queued kernel (a host
    synchronisation per batch; PyTorch's aten/src/ATen/native/cuda/Copy.cu, ``memcpy_and_sync``)."""
    if isinstance(values, (tuple, list)) and all(isinstance(v, (int, float)) for v in values):
        return _cached_stats(tuple(float(v) for v in values), like.dim(), like.device)
    stats = torch.as_tensor(values, dtype=torch.float32, device=like.device)
    return stats.reshape(1, -1, *([1] * (like.dim() - 2)))


@functools.lru_cache(maxsize=64)
def _cached_stats(values: tuple[float, ...], dims: int, device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device).reshape(1, -1, *([1] * (dims - 2)))


def normalize(
    images: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """Per-channel normalisation to float32: x' = (x - mean_c) / std_c.

    uint8 images are first scaled to [0, 1] by x / 255; floating images are assumed to be in [0, 1]
    already. `mean` and `std` have one entry per channel (dimension 1 of `images`, which is
    (N, C, ...)).
    """
    if images.dim() < 2:
        raise ValueError(f"normalize expects (N, C, ...) images, got shape {tuple(images.shape)}")
    x = images.to(torch.float32)
    if images.dtype == torch.uint8:
        x = x / 255.0
    mean_t = _channel_stats(mean, x)
    std_t = _channel_stats(std, x)
    if mean_t.shape[1] != x.shape[1] or std_t.shape[1] != x.shape[1]:
        raise ValueError(
            f"mean/std have {mean_t.shape[1]}/{std_t.shape[1]} entries but the images have {x.shape[1]} channels"
        )
    return (x - mean_t) / std_t


class Normalize:
    """Evaluation transform: ``Normalize(mean, std)(images) == normalize(images, mean, std)``.

    A small callable class (not a lambda) so it pickles and prints its settings.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return normalize(images, self.mean, self.std)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class CropFlipNormalize:
    """Training transform: random crop (zero padding) + random horizontal flip, then normalise.

    ``CropFlipNormalize(mean, std, padding, flip)(images, generator)`` equals
    ``normalize(random_crop_flip(images, generator, padding, flip), mean, std)`` -> float32.
    Matches the `Dataset.train_transform(inputs, generator)` contract.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], padding: int = 4, flip: bool = True) -> None:
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.padding = int(padding)
        self.flip = bool(flip)

    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        augmented = random_crop_flip(images, generator, padding=self.padding, flip=self.flip)
        return normalize(augmented, self.mean, self.std)

    def __repr__(self) -> str:
        return (
            f"CropFlipNormalize(mean={self.mean}, std={self.std}, padding={self.padding}, flip={self.flip})"
        )
