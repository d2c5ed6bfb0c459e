"""IDX files (MNIST, Fashion-MNIST, KMNIST) and the data sets stored in them.

The IDX format: a 4-byte magic ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32
dimension sizes, then the values in C order, big-endian. Dtype codes: 0x08 uint8, 0x09 int8,
0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64. Files may be gzip-compressed; compression is
detected from the gzip magic bytes (``1f 8b``), never from the file name.

`load_mnist_like(root)` finds the four standard files (``train-images-idx3-ubyte[.gz]``,
``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``)
and returns a `Dataset` whose inputs stay uint8 ``(N, 1, 28, 28)``; the transforms convert batches
to float32 normalised with the training set's per-channel mean and std (computed once at load, on
the training images actually kept, i.e. after `train_size` subsetting). The validation set is the
t10k test set.
"""

from __future__ import annotations

import gzip as _gzip
import os
import zlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from latentmix.data.dataset import Dataset
from latentmix.errors import ConfigError

__all__ = ["read_idx", "write_idx", "load_mnist_like", "DEFAULT_ROOTS", "image_normalizer"]

# dtype code -> big-endian numpy dtype
_CODE_TO_DTYPE = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND_TO_CODE = {
    (np.dtype("u1").kind, 1): 0x08,
    (np.dtype("i1").kind, 1): 0x09,
    (np.dtype("i2").kind, 2): 0x0B,
    (np.dtype("i4").kind, 4): 0x0C,
    (np.dtype("f4").kind, 4): 0x0D,
    (np.dtype("f8").kind, 8): 0x0E,
}

#: Where `load_mnist_like` looks when no `root` is given (Debian package ``dataset-fashion-mnist``).
DEFAULT_ROOTS = {
    "fashion-mnist": "/usr/share/datasets/fashion-mnist/",
}

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise ConfigError(f"IDX file not found: {path}")
    if not path.is_file():
        raise ConfigError(f"IDX path is not a file: {path}")
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            return _gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ConfigError(f"IDX file {path} looks gzip-compressed but cannot be decompressed "
                              f"(truncated or corrupt download?): {exc}") from exc
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a native-byte-order numpy array.

    Raises `ConfigError` for a missing file, a bad magic number or unknown dtype code, and for a
    data section whose size does not match the header (message gives expected vs actual bytes).
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ConfigError(f"IDX file {path} is too short ({len(data)} bytes) to hold the 4-byte magic number")
    if data[0] != 0 or data[1] != 0:
        raise ConfigError(
            f"IDX file {path} has a bad magic number {data[:4].hex(' ')}: an IDX file starts with "
            "00 00 <dtype code> <ndim> (is this really an MNIST-style file?)"
        )
    code, ndim = data[2], data[3]
    if code not in _CODE_TO_DTYPE:
        known = ", ".join(f"0x{c:02X}" for c in _CODE_TO_DTYPE)
        raise ConfigError(f"IDX file {path} has a bad magic number: unknown dtype code 0x{code:02X} "
                          f"(known: {known})")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ConfigError(f"IDX file {path} is truncated: the header needs {header_len} bytes for "
                          f"{ndim} dimensions but the file has {len(data)} bytes")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _CODE_TO_DTYPE[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize if ndim else dtype.itemsize
    actual = len(data) - header_len
    if actual < expected:
        raise ConfigError(f"IDX file {path} is truncated: shape {dims} of {dtype.name} needs {expected} "
                          f"data bytes after the header, but only {actual} bytes are present")
    if actual > expected:
        raise ConfigError(f"IDX file {path} has {actual - expected} unexpected trailing bytes: shape {dims} "
                          f"of {dtype.name} needs {expected} data bytes, found {actual}")
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header_len)
    return array.reshape(dims).astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike, array: np.ndarray, gzip: bool = False) -> None:
    """Write `array` as an IDX file (gzip-compressed when `gzip`); dtype must be one IDX supports."""
    array = np.asarray(array)
    key = (array.dtype.kind, array.dtype.itemsize)
    if key not in _KIND_TO_CODE:
        raise ConfigError(f"IDX cannot store dtype {array.dtype}; use uint8, int8, int16, int32, float32 or float64")
    if array.ndim > 255:
        raise ConfigError("IDX supports at most 255 dimensions")
    code = _KIND_TO_CODE[key]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    body = np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).tobytes()
    payload = header + body
    if gzip:
        payload = _gzip.compress(payload, compresslevel=6)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)


# ----------------------------------------------------------------------------------------------
# MNIST-like data sets

_FILE_STEMS = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "val_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "val_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _find_file(root: Path, stems: Sequence[str]) -> Path:
    for stem in stems:
        for suffix in ("", ".gz"):
            candidate = root / (stem + suffix)
            if candidate.is_file():
                return candidate
    raise ConfigError(f"{root} has no {stems[0]}[.gz] file; an MNIST-style folder needs "
                      "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                      "t10k-labels-idx1-ubyte (optionally .gz)")


def _subset(n_total: int, size: Optional[int], seed: Optional[int], what: str) -> Optional[np.ndarray]:
    if size is None:
        return None
    size = int(size)
    if size <= 0:
        raise ConfigError(f"{what} must be a positive number of samples, got {size}")
    if size > n_total:
        raise ConfigError(f"{what}={size} is larger than the {n_total} samples available")
    if seed is None:
        return np.arange(size)
    return np.sort(np.random.default_rng(seed).permutation(n_total)[:size])


def _channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (N, C, H, W) images, exact and memory-light."""
    means, stds = [], []
    for c in range(images.shape[1]):
        channel = images[:, c]
        if channel.dtype == np.uint8:
            counts = np.bincount(channel.reshape(-1), minlength=256).astype(np.float64)
            values = np.arange(256, dtype=np.float64)
            total = counts.sum()
            mean = float((counts * values).sum() / total)
            var = float((counts * (values - mean) ** 2).sum() / total)
        else:
            mean = float(channel.mean(dtype=np.float64))
            var = float(channel.var(dtype=np.float64))
        std = var ** 0.5
        means.append(mean)
        stds.append(std if std > 0 else 1.0)
    return means, stds


def image_normalizer(mean: Sequence[float], std: Sequence[float]):
    """Return ``fn(x) -> (x.float() - mean) / std`` for (N, C, H, W) batches on any device."""
    mean_t = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)

    def normalize(x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)
        return (x - mean_t.to(x.device)) / std_t.to(x.device)

    return normalize


def _random_crop_flip(x: torch.Tensor, generator: Optional[torch.Generator], padding: int = 2) -> torch.Tensor:
    """Batched random crop (zero padding `padding`) and horizontal flip of (N, C, H, W) floats."""
    n, c, h, w = x.shape
    gen_device = generator.device if generator is not None else torch.device("cpu")
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=gen_device).to(x.device)
    flip = (torch.rand(n, generator=generator, device=gen_device) < 0.5).to(x.device)
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    rows = offsets[0].view(n, 1) + torch.arange(h, device=x.device).view(1, h)  # (N, H)
    cols = offsets[1].view(n, 1) + torch.arange(w, device=x.device).view(1, w)  # (N, W)
    batch_idx = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chan_idx = torch.arange(c, device=x.device).view(1, c, 1, 1)
    cropped = padded[batch_idx, chan_idx, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
    return torch.where(flip.view(n, 1, 1, 1), cropped.flip(-1), cropped)


def _idx_folder(root: str | os.PathLike | None, name: str) -> Path:
    """The folder of data set `name`'s IDX files: `root`, or the system-wide default (Debian's
    dataset-fashion-mnist package) when `root` is None; a clear error when there is none."""
    if root is None:
        if name not in DEFAULT_ROOTS:
            raise ConfigError(f"no default folder for data set {name!r}; pass the folder holding its IDX files "
                              f"(defaults exist for: {', '.join(sorted(DEFAULT_ROOTS))})")
        root = DEFAULT_ROOTS[name]
    root = Path(root)
    if not root.is_dir():
        hint = " (on Debian/Ubuntu: apt install dataset-fashion-mnist)" if name == "fashion-mnist" else ""
        raise ConfigError(f"data folder for {name!r} not found: {root}{hint}")
    return root


def _checked_split(arrays: dict[str, np.ndarray], files: dict[str, Path], split: str, size: Optional[int],
                   seed: Optional[int]) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, C, H, W), int64 labels (N,)) of one split ("train" or "val"), subset to `size`.

    The IDX files are the user's: each check names the file that breaks it (image array rank,
    label array rank, images and labels of unequal count, labels not non-negative integers).
    """
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ConfigError(f"{files[split + '_images']} holds an array of shape {images.shape}; "
                          "expected images (N, H, W) or (N, C, H, W)")
    if labels.ndim != 1:
        raise ConfigError(f"{files[split + '_labels']} holds an array of shape {labels.shape}; expected (N,) labels")
    if images.shape[0] != labels.shape[0]:
        raise ConfigError(f"{files[split + '_images'].name} has {images.shape[0]} images but "
                          f"{files[split + '_labels'].name} has {labels.shape[0]} labels")
    if labels.dtype.kind == "f" or (labels.size and labels.min() < 0):
        raise ConfigError(f"{files[split + '_labels']} must hold non-negative integer labels")
    index = _subset(images.shape[0], size, seed, f"{split}_size")
    if index is not None:
        images, labels = images[index], labels[index]
    return images, labels.astype(np.int64)


def load_mnist_like(
    root: str | os.PathLike | None = None,
    name: str = "fashion-mnist",
    *,
    augment: bool = False,
    train_size: Optional[int] = None,
    val_size: Optional[int] = None,
    seed: Optional[int] = None,
) -> Dataset:
    """Load an MNIST-style data set (MNIST, Fashion-MNIST, KMNIST) from the IDX files in `root`.

    Args:
        root: folder holding the four IDX files; defaults to ``DEFAULT_ROOTS[name]``.
        name: data set name, recorded in `Dataset.name`.
        augment: training transform adds a random crop (padding 2) and a horizontal flip.
        train_size / val_size: keep only this many samples of each split (CPU-sized subsets):
            the first n when `seed` is None, else n drawn at random with `seed`.
        seed: see above.

    Returns a `Dataset` with uint8 inputs (N, 1, H, W), int64 labels, the t10k set as validation,
    and transforms that convert to float32 normalised by the training images' mean/std.
    """
    root = _idx_folder(root, name)
    files = {key: _find_file(root, stems) for key, stems in _FILE_STEMS.items()}
    arrays = {key: read_idx(path) for key, path in files.items()}
    splits = {split: _checked_split(arrays, files, split, size, seed)
              for split, size in (("train", train_size), ("val", val_size))}

    train_images, train_labels = splits["train"]
    val_images, val_labels = splits["val"]
    if train_images.shape[1:] != val_images.shape[1:]:
        raise ConfigError(f"train images have shape {train_images.shape[1:]} but test images {val_images.shape[1:]}")
    mean, std = _channel_stats(train_images)
    normalize = image_normalizer(mean, std)
    num_classes = max(int(train_labels.max(initial=0)), int(val_labels.max(initial=0))) + 1
    num_classes = max(num_classes, 2)

    def eval_transform(x: torch.Tensor) -> torch.Tensor:
        return normalize(x)

    if augment:
        def train_transform(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            # crop/flip the raw pixels (zero padding = black), then normalise
            return normalize(_random_crop_flip(x.to(torch.float32), generator))
    else:
        def train_transform(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            return normalize(x)

    return Dataset(
        name=name,
        train_inputs=torch.from_numpy(np.ascontiguousarray(train_images)),
        train_labels=torch.from_numpy(train_labels),
        val_inputs=torch.from_numpy(np.ascontiguousarray(val_images)),
        val_labels=torch.from_numpy(val_labels),
        num_classes=num_classes,
        train_labels_clean=True,
        train_transform=train_transform,
        eval_transform=eval_transform,
        info={
            "source": "idx",
            "root": str(root),
            "files": {key: str(path) for key, path in files.items()},
            "input_kinds": {"images": "image"},
            "image_shape": tuple(int(s) for s in train_images.shape[1:]),
            "mean": mean,
            "std": std,
            "augment": bool(augment),
            "train_size": int(train_images.shape[0]),
            "val_size": int(val_images.shape[0]),
            "subset_seed": seed,
        },
    )
