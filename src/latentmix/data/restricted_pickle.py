"""Unpickling that can rebuild numpy arrays and nothing else, for the CIFAR-10 python release.

The release (and a user's re-saved copy of it) is a set of pickles, and a pickle can name any
global (``os.system``) to be called while it loads: `pickle.load` on a downloaded file runs
whatever the file says. `RestrictedUnpickler.find_class` resolves only the globals a numpy array and
a bytes object need and refuses every other one before it is looked up, so a tampered batch is an
error, not code. The reader of the release is `latentmix.data.cifar`; the writer of a tiny release
in the same format is `latentmix.data.fake_cifar10`.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO

import numpy as np

__all__ = ["UnsafePickleError", "RestrictedUnpickler", "restricted_loads", "numpy_reconstruct"]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle referenced a global outside the allow-list of `RestrictedUnpickler`."""


def numpy_reconstruct() -> Any:
    """numpy's array rebuilder, named ``numpy.core.multiarray._reconstruct`` in the release's pickles
    (numpy 1.x) and ``numpy._core.multiarray._reconstruct`` since numpy 2."""
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


def _numpy_frombuffer() -> Any:
    try:  # numpy >= 2
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy 1.x
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]
    return _frombuffer


def _latin1_encode(text: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3's protocols 0-2 use it for a `bytes` object: the bytes were
    written as the latin-1 decoding of themselves; anything else is refused."""
    if not isinstance(text, str) or str(encoding).lower().replace("-", "") != "latin1" or errors != "strict":
        raise UnsafePickleError("refusing _codecs.encode other than (text, 'latin1'), the form pickle uses for bytes")
    return text.encode("latin-1")


def _plain_bytes(*args: Any) -> bytes:
    """``bytes()`` / ``bytes(bytes-like)``, as protocol 2 writes an empty bytes object; not
    ``bytes(n)`` (an n-byte allocation) nor anything else."""
    if len(args) > 1 or (args and not isinstance(args[0], (bytes, bytearray))):
        raise UnsafePickleError("refusing bytes(...) other than bytes() or bytes(b'...')")
    return bytes(*args)


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that resolves only the globals needed to rebuild the CIFAR batches.

    Allowed (module, name) pairs: numpy array reconstruction (``numpy.core.multiarray._reconstruct``,
    the numpy 1.x name of the official release, ``numpy._core.multiarray._reconstruct`` (numpy 2.x),
    ``numpy.ndarray``, ``numpy.dtype``), ``numpy(._)core.numeric._frombuffer`` (protocol 5), and
    for batches re-pickled by Python 3 with protocol 2 (or 0/1), which writes bytes through globals:
    ``_codecs.encode`` restricted to ``(text, "latin1")`` and ``bytes`` restricted to ``bytes()``.
    Everything else raises `UnsafePickleError` without importing anything. Plain dicts, lists,
    ints, strings and bytes need no globals. Persistent IDs are refused too (the base class raises
    for them).
    """

    RESOLVERS = {
        ("numpy.core.multiarray", "_reconstruct"): numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("numpy.core.numeric", "_frombuffer"): _numpy_frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _numpy_frombuffer,
        ("_codecs", "encode"): lambda: _latin1_encode,
        ("__builtin__", "bytes"): lambda: _plain_bytes,
        ("builtins", "bytes"): lambda: _plain_bytes,
    }
    ALLOWED = frozenset(RESOLVERS)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise UnsafePickleError(
                f"refusing to unpickle global {module}.{name}: only numpy array reconstruction and bytes "
                f"({', '.join(sorted(f'{m}.{n}' for m, n in self.ALLOWED))}) are allowed in CIFAR batches"
            )
        return self.RESOLVERS[(module, name)]()


def restricted_loads(data: bytes | BinaryIO, *, encoding: str = "bytes") -> Any:
    """Unpickle `data` (bytes or a binary file) with `RestrictedUnpickler`.

    ``encoding="bytes"`` decodes Python-2 ``str`` objects as bytes, as the CIFAR website suggests.
    """
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    return RestrictedUnpickler(stream, encoding=encoding).load()
