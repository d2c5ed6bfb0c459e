"""Peak memory of latentmix on hostile inputs (issue 25.8): each bomb is built here, then one
fresh process runs the `latentmix` command on it and reports its peak resident memory
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`) and the peak of what Python and NumPy allocated
while the command ran (`tracemalloc`, which NumPy reports its arrays to). A baseline process runs
the same wrapper on a command that fails at once (`--epochs 0`): its peak is what importing
latentmix and torch costs, the floor of every case.

    python benchmarks/bomb_memory.py [--out benchmarks/results/bomb-memory.md]

The bombs (issue 25.8):
* npz-deflate: an .npz whose `features.npy` is 2.2 GB of zeros, deflated to ~2 MB;
* npz-header: an .npz whose `features.npy` header declares 2e9 float64 values (16 GB) over 100 bytes;
* png-30000: an image folder with a genuine 30000 x 30000 grey PNG (900 MB of pixels, ~1 MB of file);
* spec-1e7: a sweep spec of 10^7 runs (`seeds = 10000000`).
No timing is reported; the question is only how much memory each takes before it is refused.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

WRAPPER = r"""
import json, resource, sys, tracemalloc
from latentmix.cli import main
import contextlib, io
tracemalloc.start()
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = main(sys.argv[1:])
traced = tracemalloc.get_traced_memory()[1]
print(json.dumps({"exit": code, "error": err.getvalue().strip().splitlines()[-1:] or [""],
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "traced_peak_mb": traced / 2**20}))
"""


def npz_entry(archive: zipfile.ZipFile, name: str, shape: tuple, data_bytes: int, dtype: str = "<f8") -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with archive.open(info, "w", force_zip64=True) as member:
        member.write(header.getvalue())
        block = bytes(16 << 20)
        for start in range(0, data_bytes, len(block)):
            member.write(block[: min(len(block), data_bytes - start)])


def bomb_npz(path: Path, shape: tuple, data_bytes: int) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        npz_entry(archive, "labels.npy", (4,), 32, dtype="<i8")
        npz_entry(archive, "features.npy", shape, data_bytes)
    return path


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(path: Path, side: int) -> Path:
    """A genuine side x side 8-bit grey PNG of zeros, compressed row by row (never held whole)."""
    compressor = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0 + the row's pixels
    parts = [compressor.compress(row) for _ in range(side)]
    idat = b"".join(parts) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))
    return path


def image_folder(root: Path) -> Path:
    from PIL import Image

    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(root / name / f"{i}.png")
    bomb_png(root / "dog" / "huge.png", 30000)
    return root


def good_npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 4)).astype(np.float32)
    np.savez(path, features=features, labels=(features[:, 0] > 0).astype(np.int64))
    return path


def measure(args: list[str]) -> dict:
    env = {"PYTHONPATH": str(ROOT / "src")}
    import os

    done = subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True,
                          env={**os.environ, **env}, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        return {"exit": done.returncode, "error": [done.stderr.strip().splitlines()[-1:]], "max_rss_mb": None,
                "traced_peak_mb": None}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/bomb-memory.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = iter(range(100))

        def train_args() -> list[str]:  # a new run folder per case
            return ["train", "--device", "cpu", "--epochs", "1", "--quiet", "--out", str(tmp / f"run{next(runs)}")]

        deflate = bomb_npz(tmp / "deflate.npz", (275_000_000,), 2_200_000_000)
        header = bomb_npz(tmp / "header.npz", (2_000_000_000,), 100)
        photos = image_folder(tmp / "photos")
        spec = tmp / "spec.toml"
        spec.write_text('name = "huge"\nmethods = ["ce"]\nseeds = 10000000\n')
        cases = {
            "baseline (train --epochs 0: imports only)": ["train", "--epochs", "0", "--out", str(tmp / "b")],
            "good.npz (120 x 4, trains 1 epoch)": [*train_args(), "--data", str(good_npz(tmp / "good.npz"))],
            f"npz-deflate ({deflate.stat().st_size / 2**20:.1f} MiB file, 2.2 GB declared)": [*train_args(), "--data", str(deflate)],
            f"npz-header ({header.stat().st_size} byte file, 16 GB declared)": [*train_args(), "--data", str(header)],
            f"png-30000 ({(photos / 'dog' / 'huge.png').stat().st_size / 2**20:.1f} MiB PNG, 900 M pixels)": [*train_args(), "--data", str(photos)],
            "spec-1e7 (seeds = 10000000)": ["sweep", "run", str(spec), "--out", str(tmp / "sweep")],
        }
        rows = [(name, measure(command)) for name, command in cases.items()]
    lines = ["# Peak memory on hostile inputs (issue 25.8)", "",
             f"`python benchmarks/bomb_memory.py` ({sys.platform}, Python {sys.version.split()[0]}); each case in a "
             "fresh process. `max RSS` is the process's peak resident memory (`ru_maxrss`), which includes "
             "importing torch (the baseline row); `traced peak` is the peak that Python and NumPy allocated while "
             "the command ran (`tracemalloc`).", "",
             "| case | exit | max RSS (MiB) | traced peak (MiB) | message |", "|---|---|---|---|---|"]
    for name, result in rows:
        rss = "-" if result["max_rss_mb"] is None else f"{result['max_rss_mb']:.0f}"
        traced = "-" if result["traced_peak_mb"] is None else f"{result['traced_peak_mb']:.1f}"
        message = (result["error"][0] if result["error"] else "")[:400].replace("|", "/")
        lines.append(f"| {name} | {result['exit']} | {rss} | {traced} | `{message}` |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
