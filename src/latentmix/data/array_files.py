"""Reading a user's data files safely: `.npz` archives checked from their headers before any array
is read (a zip bomb or a crafted header is refused with the limit named), `.csv` tables read cell
by cell into numbers, and per-sample noisy-label files (`.npy`, or text with one integer per line).

What the arrays mean (labels, inputs, validation arrays) is decided elsewhere
(`latentmix.data.array_checks`, `latentmix.data.arrays`); here a file becomes plain numpy arrays,
or a `ConfigError` naming the file, the entry or the cell, and the fix.
"""

from __future__ import annotations

import csv
import os
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from latentmix.data.array_checks import check_labels
from latentmix.errors import ConfigError

__all__ = ["EXPANSION_FLOOR", "MAX_EXPANSION", "available_memory", "check_npz_sizes", "read_csv_table",
           "read_label_file", "read_npz"]

# An .npz entry may expand at most this many times from its compressed size (once past
# `EXPANSION_FLOOR`): numeric arrays deflate 1-20x, a zip bomb ~1000x (deflate's ceiling is 1032x).
MAX_EXPANSION = 200
EXPANSION_FLOOR = 64 << 20


def available_memory() -> Optional[int]:
    """Bytes of physical memory free now (Linux, macOS: sysconf); None where unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _npy_header(member: Any) -> tuple[tuple, np.dtype]:
    """(shape, dtype) from the header of a .npy stream, reading the header only."""
    fmt = np.lib.format
    version = fmt.read_magic(member)
    readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    if version in readers:
        shape, _, dtype = readers[version](member)
    else:  # version 3.0 (utf-8 field names): numpy has no public reader for it
        shape, _, dtype = fmt._read_array_header(member, version)
    return tuple(shape), dtype


def check_npz_sizes(path: Path, memory: Optional[int] = None) -> None:
    """Every entry of an .npz, from the zip's directory and each .npy header (no array is read):
    its declared size is what its header's shape and dtype need (a header that asks for more is
    a crafted file: numpy allocates the header's shape before reading), it expands at most
    `MAX_EXPANSION`-fold from its compressed size (a zip bomb: a 2 MB file that decompresses to
    2 GB), and all of them together fit in the free memory (`memory`, default `available_memory`).
    Each refusal names the entry, the sizes and the limit."""
    memory = available_memory() if memory is None else memory
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name, declared = info.filename, info.file_size
                if declared > EXPANSION_FLOOR and declared > MAX_EXPANSION * max(info.compress_size, 1):
                    raise ConfigError(
                        f"{path}: entry {name!r} declares {declared:,} bytes from {info.compress_size:,} compressed "
                        f"({declared // max(info.compress_size, 1):,}-fold; the limit is {MAX_EXPANSION}-fold above "
                        f"{EXPANSION_FLOOR >> 20} MiB): a zip bomb, or an array of one repeated value; if it is real, "
                        "save it with numpy.savez (uncompressed)")
                with archive.open(info) as member:
                    try:
                        shape, dtype = _npy_header(member)
                    except (ValueError, EOFError) as error:
                        raise ConfigError(f"{path}: entry {name!r} is not a .npy array ({error}); save the arrays "
                                          "with numpy.savez") from None
                    needed = member.tell() + int(np.prod(shape, dtype=object)) * dtype.itemsize
                if needed != declared:
                    raise ConfigError(f"{path}: array {name!r} declares shape {shape} of {dtype} ({needed:,} bytes "
                                      f"with its header), but its entry holds {declared:,} bytes: the file is damaged "
                                      "or crafted; save it again with numpy.savez")
                total += declared
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, NotImplementedError, RuntimeError) as error:
        raise ConfigError(f"{path} is not a readable .npz archive: {error}") from None
    if memory is not None and total > memory:
        raise ConfigError(f"{path} holds {total:,} bytes of arrays, more than the {memory:,} bytes of memory free on "
                          "this machine (the limit): use a machine with more memory, or a smaller file")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz, by name in file order, once its sizes passed `check_npz_sizes`;
    object arrays are refused (reading them would unpickle, i.e. run code from the file)."""
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{path} is not a readable .npz archive (not a zip file); save it with numpy.savez")
    check_npz_sizes(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as exc:  # object arrays need pickle
        raise ConfigError(f"{path}: cannot read array ({exc}); store plain numeric arrays, not objects") from exc
    except Exception as exc:  # zipfile.BadZipFile, OSError, ...
        raise ConfigError(f"{path} is not a readable .npz archive: {exc}") from exc


def read_csv_table(path: Path) -> tuple[list[str], np.ndarray]:
    """Return (header, float64 array (rows, columns)) or raise ConfigError naming the bad cell."""
    try:
        return _read_csv_rows(path)
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start}); "
                          "save it as UTF-8 (or plain ASCII) CSV") from None


def _read_csv_rows(path: Path) -> tuple[list[str], np.ndarray]:
    """The checked header (named, unique, not data) and every non-blank row as floats."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise ConfigError(f"{path} is empty; a CSV needs a header row and at least one data row") from None
        header = [name.strip() for name in header]
        if not any(header):
            raise ConfigError(f"{path}: the first row must be a header naming the columns")
        if not all(header):
            position = header.index("") + 1
            raise ConfigError(f"{path}: column {position} of the header has no name; name every column (a blank "
                              "one would be read as a feature)")
        if len(set(header)) != len(header):
            dups = sorted({h for h in header if header.count(h) > 1})
            raise ConfigError(f"{path}: duplicate column names in the header: {dups}")
        for name in header:
            try:
                float(name)
            except ValueError:
                continue
            raise ConfigError(f"{path}: the first row looks like data ({name!r}), but a header row naming "
                              "the columns is required")
        rows: list[list[float]] = []
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ConfigError(f"{path}, row {line_no}: {len(row)} cells but the header has {len(header)} columns")
            values = []
            for column, cell in zip(header, row):
                try:
                    if "_" in cell:  # Python's float() reads 1_000 as 1000; CSV numbers have no separators
                        raise ValueError(cell)
                    values.append(float(cell))
                except ValueError:
                    raise ConfigError(f"{path}, row {line_no}, column {column!r}: non-numeric value {cell!r}; "
                                      "every cell must be a number") from None
            rows.append(values)
    if not rows:
        return header, np.zeros((0, len(header)), dtype=np.float64)
    return header, np.asarray(rows, dtype=np.float64)


def read_label_file(path: str | os.PathLike) -> np.ndarray:
    """Read per-sample integer labels from ``.npy`` or a text/CSV file with one integer per line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"noisy labels file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if zipfile.is_zipfile(path):
            raise ConfigError(f"noisy labels file {path} is an .npz archive (numpy.savez), not one .npy array: save the "
                              "labels alone with numpy.save, or as .csv with one integer per line")
        try:
            labels = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise ConfigError(f"{path} is not a readable .npy file: {exc}") from exc
        labels = np.asarray(labels)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
    elif suffix in (".csv", ".txt"):
        values: list[float] = []
        try:
            text_lines = path.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as error:
            raise ConfigError(f"noisy labels file {path} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at "
                              f"offset {error.start}); save it as UTF-8 with one integer per line") from None
        for line_no, line in enumerate(text_lines, start=1):
            text = line.strip()
            if not text:
                continue
            if "," in text:
                raise ConfigError(f"{path}, line {line_no}: expected one integer per line, got {text!r}")
            try:
                values.append(float(text))
            except ValueError:
                if line_no == 1 and not values:
                    continue  # header
                raise ConfigError(f"{path}, line {line_no}: non-numeric label {text!r}") from None
        labels = np.asarray(values, dtype=np.float64)
    else:
        raise ConfigError(f"noisy labels file {path} has unknown extension {path.suffix!r}; use .npy, .csv or .txt")
    return check_labels(labels, f"noisy labels file {path.name}")
