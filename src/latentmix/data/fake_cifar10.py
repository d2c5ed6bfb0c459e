"""A tiny CIFAR-10 release in the real on-disk format (random pixels and labels), for tests and CPU
benchmarks: the real release is 163 MB and may not be downloaded here, yet the reader
(`latentmix.data.cifar`) must be checked against the format it will meet, Python-2 pickles
included, not against files that the reader's own code wrote back.
"""

from __future__ import annotations

import io
import os
import pickle
import posixpath
import struct
import tarfile
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from latentmix.data.cifar import (
    ARCHIVE_NAME,
    CIFAR10_LABEL_NAMES,
    FOLDER_NAME,
    META_FILE,
    NUM_CLASSES,
    ROW_LENGTH,
    TEST_BATCH,
    TRAIN_BATCHES,
)
from latentmix.data.restricted_pickle import numpy_reconstruct
from latentmix.io import atomic_write_bytes

__all__ = ["write_fake_cifar10", "python2_pickle"]


class _Python2StylePickler(pickle._Pickler):  # type: ignore[name-defined]
    """Protocol-2 pickler that writes what Python 2's cPickle wrote for the official release.

    * `bytes` and `str` are written as Python-2 ``str`` (SHORT_BINSTRING / BINSTRING opcodes),
      which ``pickle.load(..., encoding="bytes")`` returns as bytes - so dict keys come back as
      b"data", b"labels", ... exactly as for the real files. (Python 3's own protocol 2 routes
      bytes through ``_codecs.encode`` instead, which the restricted loader allows in that form.)
    * numpy's ``_reconstruct`` is referenced as ``numpy.core.multiarray._reconstruct``, the
      numpy-1.x module name found in the real files.
    """

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_python2_str(self, obj: bytes | str) -> None:
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str
    dispatch[str] = save_python2_str

    def save_global(self, obj: Any, name: Optional[str] = None) -> None:
        if obj is numpy_reconstruct():
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def python2_pickle(obj: Any) -> bytes:
    """`obj` pickled as Python 2's cPickle wrote the official release (see `_Python2StylePickler`)."""
    buffer = io.BytesIO()
    _Python2StylePickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def write_fake_cifar10(
    root: str | os.PathLike,
    num_train_per_batch: int = 20,
    num_test: int = 20,
    seed: int = 0,
    as_archive: bool = False,
    protocol: Optional[int] = None,
) -> Path:
    """Write a tiny CIFAR-10 release in the real on-disk format (random pixels, random labels).

    Creates `root/cifar-10-batches-py/` with data_batch_1..5 (`num_train_per_batch` images each),
    test_batch (`num_test` images) and batches.meta, each a Python-2-style protocol-2 pickle of a
    dict with bytes keys (b"batch_label", b"labels", b"data", b"filenames"; meta: b"label_names",
    b"num_cases_per_batch", b"num_vis"), data uint8 (n, 3072). With ``as_archive=True`` writes
    `root/cifar-10-python.tar.gz` (members under cifar-10-batches-py/) instead.

    With `protocol` (0-5) the batches are pickled by this Python 3 with that protocol instead (as a
    user's re-saved copy of the release would be).

    Deterministic in `seed`. Returns the folder or the archive path. Files are written atomically.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    files: Dict[str, bytes] = {}
    dump = python2_pickle if protocol is None else (lambda obj: pickle.dumps(obj, protocol=protocol))

    def batch(label: str, n: int, prefix: str) -> bytes:
        return dump(
            {
                b"batch_label": label.encode(),
                b"labels": [int(v) for v in rng.integers(0, NUM_CLASSES, size=n)],
                b"data": rng.integers(0, 256, size=(n, ROW_LENGTH), dtype=np.uint8),
                b"filenames": [f"{prefix}_{i:05d}.png".encode() for i in range(n)],
            }
        )

    for index, name in enumerate(TRAIN_BATCHES, start=1):
        files[name] = batch(f"training batch {index} of 5", num_train_per_batch, f"train{index}")
    files[TEST_BATCH] = batch("testing batch 1 of 1", num_test, "test")
    files[META_FILE] = dump(
        {
            b"num_cases_per_batch": int(num_train_per_batch),
            b"label_names": [n.encode() for n in CIFAR10_LABEL_NAMES],
            b"num_vis": ROW_LENGTH,
        }
    )

    if not as_archive:
        folder = root / FOLDER_NAME
        for name, data in files.items():
            atomic_write_bytes(folder / name, data)
        return folder

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        directory = tarfile.TarInfo(FOLDER_NAME)
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(directory)
        for name, data in files.items():
            info = tarfile.TarInfo(posixpath.join(FOLDER_NAME, name))
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    archive = root / ARCHIVE_NAME
    atomic_write_bytes(archive, buffer.getvalue())
    return archive
