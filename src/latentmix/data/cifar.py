"""CIFAR-10 from the official python release, read safely (no arbitrary unpickling, no torchvision).

Source: A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009;
release https://www.cs.toronto.edu/~kriz/cifar.html ("CIFAR-10 python version").

Release layout (`cifar-10-python.tar.gz`, MD5 c58f30108f718f92721af3b95e74349a)::

    cifar-10-batches-py/
        data_batch_1 .. data_batch_5   10000 training images each
        test_batch                     10000 test images
        batches.meta                   {b"label_names": [...], ...}
        readme.html

Each batch is a Python-2 pickle (protocol 2) of a dict; read with ``encoding="bytes"`` its keys are
bytes: ``b"data"`` is a uint8 numpy array of shape (10000, 3072) whose rows hold the 1024 red,
then 1024 green, then 1024 blue values of a 32x32 image in row-major order (so ``reshape(N, 3, 32,
32)`` gives NCHW), ``b"labels"`` is a list of 10000 ints in 0..9.

Safety: pickles are loaded with `latentmix.data.restricted_pickle.RestrictedUnpickler`, whose `find_class` only resolves the three
globals a numpy array needs (``_reconstruct``, ``ndarray``, ``dtype``); any other global (e.g.
``os.system``) is refused before it is looked up. Archives are read member by member in memory;
only regular files with the expected names are read, and extraction (download path only) rejects
absolute paths, ``..`` components, links and device files.

`load_cifar10` returns a `latentmix.data.Dataset` with uint8 (N, 3, 32, 32) images; its
transforms (`latentmix.data.augment`) do the float conversion on the training device:
train = random crop (4-pixel zero padding) + horizontal flip + normalisation, eval = normalisation,
with the per-channel mean (0.4914, 0.4822, 0.4465) and std (0.2023, 0.1994, 0.2010) used by the
Arazo et al. 2019 reference code (PaulAlbert31/LabelNoiseCorrection).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Optional, Tuple

import numpy as np
import torch

from latentmix.data.dataset import Dataset
from latentmix.data.augment import CropFlipNormalize, Normalize
from latentmix.data.restricted_pickle import UnsafePickleError, restricted_loads
from latentmix.errors import ConfigError

__all__ = [
    "CIFAR10_URL",
    "CIFAR10_MD5",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10_LABEL_NAMES",
    "ARCHIVE_NAME",
    "FOLDER_NAME",
    "TRAIN_BATCHES",
    "TEST_BATCH",
    "META_FILE",
    "load_cifar10",
    "download_cifar10",
    "extract_cifar10_archive",
    "md5_of_file",
    "verify_md5",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_MEAN: Tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: Tuple[float, float, float] = (0.2023, 0.1994, 0.2010)
CIFAR10_LABEL_NAMES: Tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
ARCHIVE_NAME = "cifar-10-python.tar.gz"
FOLDER_NAME = "cifar-10-batches-py"
TRAIN_BATCHES: Tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)
ROW_LENGTH = 3 * 32 * 32  # 3072
FULL_TRAIN, FULL_TEST = 50000, 10000
_MAX_MEMBER_BYTES = 512 * 1024 * 1024  # a real batch is ~31 MB; refuse absurd members

_HOW_TO_FIX = (
    "pass --data-dir pointing at the cifar-10-batches-py folder (or its parent) or at "
    "cifar-10-python.tar.gz, or use --download"
)
_EXPECTED = "expected data_batch_1..5 and test_batch from the official python release"


# ----------------------------------------------------------------------------------------------
# Locating the release
# ----------------------------------------------------------------------------------------------

def _is_archive_name(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz"))


def _locate(path: Path) -> Optional[Tuple[str, Path]]:
    """("folder", dir) or ("archive", file) for a user path, None when nothing is there.

    Accepts the extracted folder itself, a parent of `cifar-10-batches-py/`, the .tar.gz itself,
    or a parent holding `cifar-10-python.tar.gz` (the extracted folder wins when both exist).
    """
    if path.is_file():
        if _is_archive_name(path) or tarfile.is_tarfile(path):
            return ("archive", path)
        raise ConfigError(
            f"CIFAR-10 path {path} is a file but not a .tar.gz archive; {_HOW_TO_FIX}"
        )
    if not path.is_dir():
        return None
    names = set(TRAIN_BATCHES) | {TEST_BATCH, META_FILE}
    if path.name == FOLDER_NAME or any((path / name).exists() for name in names):
        return ("folder", path)
    if (path / FOLDER_NAME).is_dir():
        return ("folder", path / FOLDER_NAME)
    if (path / ARCHIVE_NAME).is_file():
        return ("archive", path / ARCHIVE_NAME)
    return None


# ----------------------------------------------------------------------------------------------
# Reading batches
# ----------------------------------------------------------------------------------------------

def _unpickle_member(raw: bytes | BinaryIO, name: str, where: str) -> Any:
    try:
        return restricted_loads(raw)
    except UnsafePickleError as exc:
        raise ConfigError(
            f"CIFAR-10 batch {name} in {where} is not a plain data pickle ({exc}); refusing to load it. "
            f"Use the official python release ({CIFAR10_URL})"
        ) from exc
    except Exception as exc:  # truncated / corrupt pickles raise many different types
        raise ConfigError(
            f"CIFAR-10 batch {name} in {where} is corrupt or truncated ({type(exc).__name__}: {exc}); "
            f"{_EXPECTED}; re-extract or re-download it ({_HOW_TO_FIX})"
        ) from exc


def _read_folder(folder: Path, names: List[str], optional: set) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name in names:
        file = folder / name
        if not file.is_file():
            if name in optional:
                continue
            raise ConfigError(f"CIFAR-10 batch {name} missing in {folder}; {_EXPECTED}; {_HOW_TO_FIX}")
        with open(file, "rb") as handle:
            out[name] = _unpickle_member(handle, name, str(folder))
    return out


def _member_key(member_name: str) -> Optional[str]:
    """'cifar-10-batches-py/data_batch_1' (optionally './'-prefixed) -> 'data_batch_1'."""
    name = member_name
    while name.startswith("./"):
        name = name[2:]
    folder, _, base = name.partition("/")
    if folder != FOLDER_NAME or "/" in base:
        return None
    return base


def _read_archive(archive: Path, names: List[str], optional: set) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    wanted = set(names)
    where = f"{archive}:{FOLDER_NAME}"
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:  # sequential scan: one decompression pass
                key = _member_key(member.name)
                if key not in wanted or key in out:
                    continue
                if not member.isfile():
                    raise ConfigError(
                        f"CIFAR-10 archive {archive}: member {member.name} is not a regular file "
                        f"(link or device); refusing it. Use the official release ({CIFAR10_URL})"
                    )
                if member.size > _MAX_MEMBER_BYTES:
                    raise ConfigError(
                        f"CIFAR-10 archive {archive}: member {member.name} is {member.size} bytes, "
                        f"far larger than a CIFAR batch; refusing it"
                    )
                handle = tar.extractfile(member)
                assert handle is not None  # regular file
                raw = handle.read()
                if len(raw) != member.size:
                    raise EOFError(f"member {member.name} truncated")
                out[key] = _unpickle_member(raw, key, where)
    except ConfigError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ConfigError(
            f"CIFAR-10 archive {archive} could not be read ({type(exc).__name__}: {exc}); it looks "
            f"truncated or corrupt (official MD5 {CIFAR10_MD5}). Re-download it; {_HOW_TO_FIX}"
        ) from exc
    for name in names:
        if name not in out and name not in optional:
            raise ConfigError(
                f"CIFAR-10 batch {name} missing in {where}; {_EXPECTED}; {_HOW_TO_FIX}"
            )
    return out


def _get(batch: dict, key: str) -> Any:
    if key.encode() in batch:
        return batch[key.encode()]
    return batch.get(key)


def _parse_batch(batch: Any, name: str, where: str) -> Tuple[np.ndarray, np.ndarray]:
    """Validate one batch dict; returns (images (n, 3, 32, 32) uint8, labels (n,) int64)."""
    def bad(problem: str) -> ConfigError:
        return ConfigError(
            f"CIFAR-10 batch {name} in {where}: {problem}; expected a dict with b'data' "
            f"(uint8 array of shape (n, {ROW_LENGTH}): n images as 3x32x32 RGB planes) and b'labels' "
            f"(n ints in 0..9) from the official python release. Re-extract or re-download it "
            f"({_HOW_TO_FIX})"
        )

    if not isinstance(batch, dict):
        raise bad(f"got a pickled {type(batch).__name__}, not a dict")
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if data is None or labels is None:
        raise bad(f"missing key(s); keys present: {sorted(map(repr, batch.keys()))}")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise bad(f"data is {type(data).__name__} of dtype {getattr(data, 'dtype', None)}, not uint8")
    if data.ndim != 2 or data.shape[1] != ROW_LENGTH:
        raise bad(f"data has shape {tuple(data.shape)} (wrong data length)")
    try:
        labels_arr = np.asarray(labels)
    except Exception as exc:  # pragma: no cover - defensive
        raise bad(f"labels unreadable ({exc})") from exc
    if labels_arr.ndim != 1 or labels_arr.shape[0] != data.shape[0]:
        raise bad(f"{labels_arr.shape} labels for {data.shape[0]} images")
    if labels_arr.size and (labels_arr.dtype.kind not in "iu"):
        raise bad(f"labels have dtype {labels_arr.dtype}, not integers")
    labels_arr = labels_arr.astype(np.int64)
    if labels_arr.size and (labels_arr.min() < 0 or labels_arr.max() >= NUM_CLASSES):
        raise bad(f"labels outside 0..9 (min {labels_arr.min()}, max {labels_arr.max()})")
    return data.reshape(data.shape[0], *IMAGE_SHAPE), labels_arr


def _label_names(meta: Any) -> List[str]:
    if not isinstance(meta, dict):
        raise ConfigError(f"CIFAR-10 {META_FILE} is not a dict; {_EXPECTED}")
    names = _get(meta, "label_names")
    if not isinstance(names, (list, tuple)) or len(names) != NUM_CLASSES:
        raise ConfigError(f"CIFAR-10 {META_FILE} has no list of {NUM_CLASSES} label_names; {_EXPECTED}")
    return [n.decode("latin-1") if isinstance(n, bytes) else str(n) for n in names]


# ----------------------------------------------------------------------------------------------
# Public loader
# ----------------------------------------------------------------------------------------------

def check_cifar10_found(path: str | os.PathLike) -> None:
    """The release is at `path` (the folder, its parent, the archive or a folder holding it), else
    one `ConfigError` saying what was expected and how to get it: checked once before a grid of
    runs, so that a wrong --data-dir is one error, not one per run."""
    user_path = Path(path).expanduser()
    if _locate(user_path) is None:
        raise ConfigError(
            f"CIFAR-10 not found at {user_path}: expected a {FOLDER_NAME} folder (with "
            f"data_batch_1..5 and test_batch from the official python release) or {ARCHIVE_NAME}; "
            f"{_HOW_TO_FIX}"
        )


def load_cifar10(path: str | os.PathLike, *, download: bool = False) -> Dataset:
    """Load CIFAR-10 (official python release) as a `Dataset` of uint8 images.

    Args:
        path: the `cifar-10-batches-py` folder, its parent, `cifar-10-python.tar.gz`, or a folder
            holding that archive. Archives are read in memory (no extraction).
        download: when nothing is found at `path`, fetch and extract the release into it (opt-in;
            see `download_cifar10`).

    Returns:
        Dataset(name="cifar10") with train_inputs (50000, 3, 32, 32) uint8 (data_batch_1..5 in
        order), val_inputs (10000, 3, 32, 32) uint8 (test_batch), int64 labels, num_classes 10,
        train_transform = `CropFlipNormalize` (pad 4 + random crop, random flip, normalise) and
        eval_transform = `Normalize`, both producing float32.

    Raises:
        ConfigError: nothing found, a batch missing, truncated, corrupt, of the wrong shape, or
            referencing globals other than numpy array reconstruction.
    """
    user_path = Path(path).expanduser()
    located = _locate(user_path)
    if located is None:
        if not download:
            check_cifar10_found(user_path)
        root = user_path.parent if _is_archive_name(user_path) else user_path
        download_cifar10(root)
        located = _locate(root)
        if located is None:  # pragma: no cover - download_cifar10 guarantees the folder
            raise ConfigError(f"CIFAR-10 download into {root} did not produce {FOLDER_NAME}")

    kind, source = located
    names = [*TRAIN_BATCHES, TEST_BATCH, META_FILE]
    optional = {META_FILE}
    raw = _read_folder(source, names, optional) if kind == "folder" else _read_archive(source, names, optional)
    where = str(source) if kind == "folder" else f"{source}:{FOLDER_NAME}"

    train_parts = [_parse_batch(raw[name], name, where) for name in TRAIN_BATCHES]
    test_images, test_labels = _parse_batch(raw[TEST_BATCH], TEST_BATCH, where)
    label_names = _label_names(raw[META_FILE]) if META_FILE in raw else list(CIFAR10_LABEL_NAMES)

    train_images = np.concatenate([images for images, _ in train_parts])  # fresh, writable copy
    train_labels = np.concatenate([labels for _, labels in train_parts])
    test_images = np.concatenate([test_images])
    num_train, num_test = int(train_images.shape[0]), int(test_images.shape[0])

    return Dataset(
        name="cifar10",
        train_inputs=torch.from_numpy(train_images),
        train_labels=torch.from_numpy(train_labels).to(torch.int64),
        val_inputs=torch.from_numpy(test_images),
        val_labels=torch.from_numpy(np.ascontiguousarray(test_labels)).to(torch.int64),
        num_classes=NUM_CLASSES,
        train_labels_clean=True,
        train_transform=CropFlipNormalize(CIFAR10_MEAN, CIFAR10_STD, padding=4, flip=True),
        eval_transform=Normalize(CIFAR10_MEAN, CIFAR10_STD),
        info={
            "source": str(source),
            "format": kind,
            "num_train": num_train,
            "num_val": num_test,
            "full_release": num_train == FULL_TRAIN and num_test == FULL_TEST,
            "label_names": label_names,
            "mean": list(CIFAR10_MEAN),
            "std": list(CIFAR10_STD),
            "train_transform": "zero-pad 4 + random 32x32 crop, random horizontal flip, normalise",
            "eval_transform": "normalise",
        },
    )


# ----------------------------------------------------------------------------------------------
# Download (opt-in) and safe extraction
# ----------------------------------------------------------------------------------------------

def md5_of_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex MD5 digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_md5(path: str | os.PathLike, expected: str = CIFAR10_MD5) -> bool:
    """True when `path` exists and its MD5 equals `expected` (case-insensitive hex)."""
    return Path(path).is_file() and md5_of_file(path) == expected.lower()


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = member.name
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if name.startswith(("/", "\\")) or os.path.isabs(name) or ".." in parts or (parts and ":" in parts[0]):
        raise ConfigError(f"CIFAR-10 archive {archive}: unsafe member path {name!r}; refusing to extract")
    if not (member.isfile() or member.isdir()):
        raise ConfigError(
            f"CIFAR-10 archive {archive}: member {name!r} is a link or special file; refusing to extract"
        )


def extract_cifar10_archive(archive: str | os.PathLike, root: str | os.PathLike) -> Path:
    """Extract `cifar-10-batches-py/` from `archive` into `root` atomically; returns the folder.

    Every member is checked first (no absolute paths, no '..', regular files and folders only);
    the archive is extracted into a temporary folder inside `root`, and the finished
    `cifar-10-batches-py` is then renamed into place, so an interrupted extraction never leaves a
    half-written folder under the final name.
    """
    archive, root = Path(archive), Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = root / FOLDER_NAME
    tmp_dir = Path(tempfile.mkdtemp(dir=root, prefix=".cifar-10-extract-"))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(member, archive)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp_dir, members=members, filter="data")
                else:  # pragma: no cover - Python without extraction filters; members were checked
                    tar.extractall(tmp_dir, members=members)
        except ConfigError:
            raise
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise ConfigError(
                f"CIFAR-10 archive {archive} could not be extracted ({type(exc).__name__}: {exc}); "
                f"it looks truncated or corrupt; re-download it"
            ) from exc
        extracted = tmp_dir / FOLDER_NAME
        if not extracted.is_dir():
            raise ConfigError(f"CIFAR-10 archive {archive} holds no {FOLDER_NAME}/ folder; {_EXPECTED}")
        if target.exists():  # replace a stale/partial folder: move it aside, rename, then delete
            stale = Path(tempfile.mkdtemp(dir=root, prefix=".cifar-10-stale-"))
            os.replace(target, stale / FOLDER_NAME)
            os.replace(extracted, target)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.replace(extracted, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return target


def download_cifar10(
    root: str | os.PathLike, *, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5, timeout: float = 60.0
) -> Path:
    """Download (opt-in) and extract the official CIFAR-10 python release into `root`.

    Streams `url` with urllib into a temporary file in `root` while hashing it, checks the MD5
    (`md5`), renames it to `root/cifar-10-python.tar.gz` only when it matches, then extracts it with
    `extract_cifar10_archive`. An archive already present with the right MD5 is reused; a complete
    extracted folder is returned as is. Returns the `cifar-10-batches-py` folder.
    """
    import urllib.error
    import urllib.request

    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    target = root / FOLDER_NAME
    if all((target / name).is_file() for name in (*TRAIN_BATCHES, TEST_BATCH)):
        return target
    archive = root / ARCHIVE_NAME
    if not verify_md5(archive, md5):
        fd, tmp_name = tempfile.mkstemp(dir=root, prefix=f".{ARCHIVE_NAME}.", suffix=".part")
        try:
            digest = hashlib.md5()
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != md5.lower():
                raise ConfigError(
                    f"CIFAR-10 download from {url} has MD5 {digest.hexdigest()}, expected {md5}; "
                    f"the file is corrupt or not the official release. Download it manually and pass "
                    f"--data-dir pointing at it"
                )
            os.replace(tmp_name, archive)
        except (urllib.error.URLError, OSError) as exc:
            raise ConfigError(
                f"CIFAR-10 download from {url} failed ({exc}); download {ARCHIVE_NAME} manually and pass "
                f"--data-dir pointing at it"
            ) from exc
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
    return extract_cifar10_archive(archive, root)
