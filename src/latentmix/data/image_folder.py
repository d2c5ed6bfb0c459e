"""A folder of images, one sub-folder per class (PNG or JPEG, read with Pillow), as a data set
that is read image by image and never loaded whole.

Layout (torchvision's ``ImageFolder`` convention)::

    DIR/cat/0001.png  DIR/cat/0002.jpg  DIR/dog/a.jpeg ...      -> classes ["cat", "dog"] = ids 0, 1
    DIR/train/cat/...  DIR/val/cat/...                           -> those two splits
    DIR/train/cat/...  DIR/val/cat/...  DIR/test/cat/...         -> and a test set, only scored
    DIR/train/cat/...  DIR/test/cat/...                          -> --val-split of train/ held out

Class ids follow the sorted sub-folder names. Without a ``val`` (or ``validation``) sub-folder, a
seeded stratified share of the images (``--val-split``, default 10%) is held out with its labels as
the validation set, as for a data file (`latentmix.data.arrays`). The validation set selects (the
checkpoint kept, the end of early learning); ``test/`` never does: it is scored each epoch
(``test_acc``), so the accuracy reported at the selected epoch is not measured on the set that
selected it.

The scan reads each file's header only (size and mode, no pixels), so a bad folder is one clear
error before training: no class folders, one class, an image Pillow cannot read, or images of
different sizes (the model takes one size: resize them first). Items are ``(uint8 tensor
(C, H, W), class id)``, upright by their EXIF orientation, 16-bit greyscale scaled by its bit depth
and alpha dropped (`image_pixels`); the training transform scales them to [-1, 1] as ``(x / 255 - 0.5) / 0.5``,
a fixed normalisation, because statistics of the data would need a pass over every image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from latentmix.errors import ConfigError

__all__ = ["ImageFolder", "load_image_folder", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# The most pixels an image may have (4096 x 4096: 48 MiB as RGB uint8), checked from its header
# before any pixel is decoded: a 30000 x 30000 PNG of a few kB decodes to 2.7 GB (a decompression
# bomb), and every image of a batch is held at once.
MAX_IMAGE_PIXELS = 4096 * 4096
VAL_FOLDER_NAMES = ("val", "validation")
TEST_FOLDER_NAME = "test"  # beside train/: a test set, only scored (never a validation set)


def _pillow():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        raise ConfigError("reading an image folder needs Pillow: pip install pillow") from None
    return Image


class ImageFolder(torch.utils.data.Dataset):
    """Images in ``root/<class>/<file>``: items ``(uint8 tensor (C, H, W), class id)``.

    Attributes: ``classes`` (sorted sub-folder names), ``files`` (paths, by class then name),
    ``targets`` (class id per file), ``size`` (W, H), ``mode`` ("L" grey or "RGB"; a folder mixing
    both is read as RGB), ``channels``.

    Args:
        root: the folder.
        classes: the class names to expect (a validation folder must have the training folder's).
    """

    def __init__(self, root: str | Path, classes: Optional[list[str]] = None):
        self.root = Path(root)
        self.classes, self.files, self.targets, self.size, self.mode = scan_image_folder(self.root, classes)
        self.channels = 1 if self.mode == "L" else 3

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int]:
        return read_image(self.files[position], self.mode, self.size), self.targets[position]

    def fingerprint(self) -> str:
        """The folder's identity for a run record: each file's path below the root, byte size and
        class (not its pixels: reading every image to resume a run would defeat reading on demand)."""
        digest = hashlib.sha256()
        for path, target in zip(self.files, self.targets):
            digest.update(f"{path.relative_to(self.root)}:{path.stat().st_size}:{target}\n".encode())
        return digest.hexdigest()


def read_image(path: Path, mode: str, size: tuple[int, int]) -> torch.Tensor:
    """One image as uint8 (C, H, W) in `mode` ("L" or "RGB"), upright by its EXIF orientation and
    scaled from its own bit depth (`image_pixels`); a file that Pillow cannot decode, or whose size
    differs from the scan's, is a `ConfigError` naming it."""
    _pillow()  # Pillow present, or one clear error
    try:
        with _open_image(path) as image:
            pixels = image_pixels(image, mode)
    except ConfigError:
        raise
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read image {path} ({type(error).__name__}: {error}); remove or re-save it") from None
    if (pixels.shape[1], pixels.shape[0]) != tuple(size):
        raise ConfigError(f"image {path} is {pixels.shape[1]}x{pixels.shape[0]}, the folder's images are "
                          f"{size[0]}x{size[1]}; resize every image to one size first")
    tensor = torch.from_numpy(pixels)
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()


# Pillow's modes of 16-bit greyscale (a 16-bit PNG opens as "I;16", older Pillows "I"): their
# values span 0..65535, and Pillow's ``convert("L")`` clips them at 255 instead of scaling them,
# so a 16-bit image would read as nearly all white.
SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# Modes read as one grey channel; every other mode (palette, RGB(A), CMYK, YCbCr, ...) as RGB.
GREY_MODES = frozenset({"1", "L", "LA", "La", *SIXTEEN_BIT_GREY})
# EXIF orientations (tag 0x0112) 5-8 turn the image by 90 degrees: width and height swap.
_TURNED_ORIENTATIONS = (5, 6, 7, 8)


def image_pixels(image: Any, mode: str) -> np.ndarray:
    """The pixels of an open Pillow image as uint8 in `mode` ("L": (H, W), "RGB": (H, W, 3)).

    * EXIF orientation: turned upright (`PIL.ImageOps.exif_transpose`), as a viewer shows the
      photo; a camera's portrait JPEG is stored sideways with an orientation tag.
    * 16-bit greyscale (`SIXTEEN_BIT_GREY`): scaled by its bit depth, ``round(v * 255 / 65535)``
      (PNG spec 12.5, sample depth scaling: the maximum maps to the maximum), not clipped.
    * alpha (LA, RGBA, palette transparency): dropped, the colour kept, as torchvision's default
      loader does (``convert("RGB")``).
    * palette, CMYK, YCbCr and bilevel images: Pillow's conversion to `mode`."""
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode in SIXTEEN_BIT_GREY:
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):  # a 32-bit "I" image (not PNG/JPEG)
            raise ValueError(f"{image.mode} pixel values {values.min()}..{values.max()} are not 16-bit")
        grey = ((values * 255 + 32767) // 65535).astype(np.uint8)  # round(v * 255 / 65535), in integers
        return grey if mode == "L" else np.repeat(grey[..., None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # Pillow's advice for palettes with transparency (else a warning)
    if image.mode == "LA" and mode == "RGB":
        image = image.convert("L")
    return np.array(image.convert(mode))  # a writable copy


def displayed_size(image: Any) -> tuple[int, int]:
    """(W, H) of an open image as `image_pixels` returns it: swapped when its EXIF orientation
    turns it by 90 degrees. Read from the header's EXIF block (a JPEG's APP1, a PNG's eXIf before
    the pixels), so no pixels are decoded."""
    width, height = image.size
    exif = image.info.get("exif")
    if not exif:
        return width, height
    from PIL import Image

    try:
        tags = Image.Exif()
        tags.load(exif)
        orientation = tags.get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: exif_transpose ignores it too
        return width, height
    return (height, width) if orientation in _TURNED_ORIENTATIONS else (width, height)


# Files that only a latentmix run folder holds: a sub-folder with one is a run's output, not a class.
_RUN_FOLDER_MARKS = ("checkpoint.json", "checkpoint.pt", "metrics.csv", "label_issues.csv", "result.json")


def class_folders(root: Path) -> dict[str, list[Path]]:
    """The classes of an image folder: each visible sub-folder that holds at least one image, with
    its images (sorted; hidden files such as macOS's ``._x.png`` skipped). A sub-folder without
    images (``logs/``, an empty ``new/``) is not a class: as a class, it would widen the output
    layer by a class that no sample has. A latentmix run folder inside the data is refused: its
    files are the run's output, and a run trained with it among its classes (issue 25.4) is not
    the user's data."""
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        names = {p.name for p in folder.iterdir()}
        if any(mark in names for mark in _RUN_FOLDER_MARKS):
            raise ConfigError(f"{folder} is a latentmix run folder inside the data folder {root}: its files would be "
                              "read as data; move it out, and give --out a folder outside --data")
        images = sorted(p for p in folder.iterdir()
                        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())
        if images:
            classes[folder.name] = images
    return classes


def _check_links(root: Path, files: list[Path]) -> None:
    """Every image is a file inside `root`, read once: a link (of the image or of its class
    folder) that leads outside the folder is refused, since the folder given is what the run
    says it trained on; so is a second path to one file (a linked class folder would label the
    same images twice)."""
    inside, seen = root.resolve(), {}
    for path in files:
        target = path.resolve()
        if not target.is_relative_to(inside):
            raise ConfigError(f"{path} is a link to {target}, outside {root}: latentmix reads only the images inside "
                              "the folder it is given; copy the image in, or remove the link")
        if target in seen:
            raise ConfigError(f"{path} and {seen[target]} are one file ({target}), through a link: each image must "
                              "be in one class folder once; remove the link")
        seen[target] = path


def _open_image(path: Path) -> Any:
    """`PIL.Image.open`, refusing an image of more than `MAX_IMAGE_PIXELS` pixels from its header
    (Pillow's own `DecompressionBombError`, raised above 2 x 89 M pixels, becomes the same
    error)."""
    Image = _pillow()
    limit = f"latentmix reads images of at most {MAX_IMAGE_PIXELS:,} pixels (4096 x 4096): downscale it"
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ConfigError(f"image {path} is too large to decode ({error}); {limit}") from None
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        image.close()
        raise ConfigError(f"image {path} is {width}x{height} ({width * height:,} pixels); {limit}")
    return image


def scan_image_folder(root: Path, classes: Optional[list[str]] = None):
    """(classes, files, targets, size, mode) of an image folder, from the file headers; every
    problem a `ConfigError` naming the path, what was found and the fix."""
    _pillow()  # Pillow present, or one clear error
    if not root.is_dir():
        raise ConfigError(f"--data {root}: no such folder; give a folder with one sub-folder of images per class")
    images_of = class_folders(root)
    found = sorted(images_of)
    if classes is not None and found != classes:
        raise ConfigError(f"{root} has class folders {found}, the training folder has {classes}; give both the same "
                          "class sub-folders")
    files, targets = [], []
    for class_id, name in enumerate(found):
        files += images_of[name]
        targets += [class_id] * len(images_of[name])
    _check_links(root, files)
    if not files:
        raise ConfigError(f"{root} holds no images: put PNG or JPEG files ({', '.join(IMAGE_SUFFIXES)}) in one "
                          f"sub-folder per class, e.g. {root}/cat/1.png and {root}/dog/2.png")
    present = sorted(set(targets))
    if len(present) < 2:
        raise ConfigError(f"{root} has images of one class only ({found[present[0]]!r}); a classifier needs at least "
                          "two class sub-folders with images")
    sizes, modes = {}, set()
    for path in files:
        try:
            with _open_image(path) as image:
                sizes.setdefault(displayed_size(image), path)
                modes.add(image.mode)
        except ConfigError:
            raise
        except (OSError, ValueError) as error:
            raise ConfigError(f"cannot read image {path} ({type(error).__name__}: {error}); remove or re-save "
                              "it") from None
    if len(sizes) > 1:
        (size_a, path_a), (size_b, path_b) = list(sizes.items())[:2]
        raise ConfigError(f"{root} mixes image sizes: {path_a} is {size_a[0]}x{size_a[1]}, {path_b} is "
                          f"{size_b[0]}x{size_b[1]}; resize every image to one size first")
    grey = modes <= GREY_MODES  # palette images may hold colour: RGB
    return found, files, targets, next(iter(sizes)), "L" if grey else "RGB"


def scale_images(batch: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [-1, 1]: ``(x / 255 - 0.5) / 0.5``."""
    return (batch.float() / 255.0 - 0.5) / 0.5


def _check_split_pair(root: Path, split_names: list[str]) -> None:
    """`train/` comes with a validation or test folder, and those with `train/`: one of them alone
    is neither layout (the other folders would be read as one class each)."""
    has_train = (root / "train").is_dir()
    if has_train and not split_names and not class_folders(root).get("train"):
        raise ConfigError(f"{root} has a train/ folder but no val/ (or validation/, test/) beside it: add the "
                          f"validation folder with the same class sub-folders, or put the class folders directly in "
                          f"{root} to hold out --val-split of the images")
    if split_names and not has_train and not class_folders(root).get(split_names[0]):
        raise ConfigError(f"{root} has a {split_names[0]}/ folder but no train/ beside it: put the training images "
                          f"in {root}/train/<class>/, or the class folders directly in {root}")


def _test_folder(root: Path) -> Optional[Path]:
    """DIR/test/ beside DIR/train/ (a test set, only scored), or None."""
    path = root / TEST_FOLDER_NAME
    return path if path.is_dir() else None


def _check_same_images(other: "ImageFolder", train: "ImageFolder") -> None:
    """A validation or test folder's images have the training images' size and colour mode (the
    model takes one input shape)."""
    if (other.size, other.channels) != (train.size, train.channels):
        raise ConfigError(f"{other.root} images are {other.size[0]}x{other.size[1]} with {other.channels} channel(s), "
                          f"{train.root} images {train.size[0]}x{train.size[1]} with {train.channels}; give both "
                          "splits one size and colour mode")


def load_image_folder(path: str | Path, *, val_fraction: Optional[float] = None, seed: int = 0,
                      workers: Optional[int] = None, noisy_labels_path: Any = None):
    """A `latentmix.data.Dataset` over an image folder (module docstring), its inputs
    `StreamedInputs` read by a DataLoader with `workers` processes."""
    from latentmix.data.checks import check_dataset
    from latentmix.data.dataset import Dataset
    from latentmix.selection import stratified_split
    from latentmix.data.streamed import StreamedInputs

    root = Path(path)
    if noisy_labels_path is not None:
        raise ConfigError(f"--noisy-labels is not read with an image folder ({root}): its class sub-folders are the "
                          "labels; move the images to the folders of their given labels")
    split_names = [name for name in VAL_FOLDER_NAMES + (TEST_FOLDER_NAME,) if (root / name).is_dir()]
    _check_split_pair(root, split_names)
    has_train = (root / "train").is_dir() and bool(split_names)
    test = _test_folder(root) if has_train else None
    val_names = [name for name in split_names if name != TEST_FOLDER_NAME]
    if has_train and val_names:
        train = ImageFolder(root / "train")
        val = ImageFolder(root / val_names[0], classes=train.classes)
        _check_same_images(val, train)
        train_inputs = StreamedInputs(train, workers=workers, name=str(train.root))
        val_inputs = StreamedInputs(val, workers=workers, name=str(val.root))
        train_labels, val_labels = torch.tensor(train.targets), torch.tensor(val.targets)
        folder, rows, split_info = train, {}, {"val_source": "folder"}  # rows: positions in train/
    else:  # the images of DIR (or of DIR/train/ beside a test/ only), --val-split of them held out
        folder = ImageFolder(root / "train") if has_train else ImageFolder(root)
        fraction = 0.1 if val_fraction is None else float(val_fraction)
        if not 0.0 < fraction < 1.0:
            raise ConfigError(f"--val-split must be between 0 and 1 (exclusive) for an image folder without train/ and "
                              f"val/ sub-folders: that split is the validation set, got {fraction}")
        labels = np.asarray(folder.targets)
        train_idx, val_idx = stratified_split(labels, fraction, seed)
        train_inputs = StreamedInputs(folder, train_idx, workers=workers, name=str(folder.root))
        val_inputs = StreamedInputs(folder, val_idx, workers=workers, name=str(folder.root))
        train_labels, val_labels = torch.from_numpy(labels[train_idx]), torch.from_numpy(labels[val_idx])
        rows = {"train_rows": torch.from_numpy(train_idx), "val_rows": torch.from_numpy(val_idx),
                "val_given_labels": torch.from_numpy(labels[val_idx])}
        split_info = {"val_source": "split", "val_fraction": fraction, "seed": int(seed)}
    if test is not None:
        test = ImageFolder(test, classes=folder.classes)
        _check_same_images(test, folder)
        split_info["test_source"] = "folder"
    dataset = Dataset(
        name=root.name or "images", train_inputs=train_inputs, train_labels=train_labels.long(),
        val_inputs=val_inputs, val_labels=val_labels.long(), num_classes=len(folder.classes),
        train_labels_clean=False,  # the folders' labels as given, possibly wrong; no clean reference
        train_transform=lambda batch, generator=None: scale_images(batch), eval_transform=scale_images,
        info={"source": "image-folder", "path": str(root), "classes": folder.classes, "input_kinds": "image",
              "image_size": list(folder.size), "mode": folder.mode, **split_info},
        val_selects=True, sample_names=[str(path.relative_to(root)) for path in folder.files], **rows,
        test_inputs=StreamedInputs(test, workers=workers, name=str(test.root)) if test is not None else None,
        test_labels=torch.tensor(test.targets).long() if test is not None else None,
    )
    check_dataset(dataset)
    return dataset
