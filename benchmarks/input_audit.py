"""Input audit, round 3 (issue 25): new careless-user and attacker cases, each run through the
`latentmix` command line in this process and sorted into one of five outcomes.

    PYTHONPATH=src python benchmarks/input_audit.py [--markdown FILE] [--label NAME]

Run it once with the sources under test first on the path and once with an older tree's (the
"before" column of benchmarks/results/input-audit-round3.md: ``git archive bbd75f8 src | tar -x -C
/tmp/before`` then ``PYTHONPATH=/tmp/before/src``).

Each case states what a correct latentmix does, decided before either tree was run:

* ``expect=("word", ...)``: refuse it; the one-line error must contain each word (the field, the
  value or the fix, compared case-insensitively);
* ``expect=OK``: accept it and exit 0.

The outcomes:

* clear: refused (exit 2), no traceback, the error names every expected word;
* misleading: refused without a traceback, but the message lacks an expected word (it names
  another cause), or a valid input was refused;
* traceback: an exception escaped (or a traceback was printed);
* silent: a case that should be refused exited 0;
* correct: a valid case exited 0.

No timing is measured. The cases are not those of the issue's lists (they are its tests' job).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

OK = "ok"
OUTCOMES = ("clear", "misleading", "traceback", "silent", "correct")


@dataclass
class Case:
    name: str
    args: Union[Sequence[str], Callable[[Path], Sequence[str]]]
    expect: Union[str, tuple]
    who: str = "careless"  # or "attacker"


# ---- data files the cases use -------------------------------------------------------------------


def good_npz(path: Path, n: int = 120, seed: int = 0, **extra) -> Path:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 4)).astype(np.float32)
    arrays = {"features": features, "labels": (features[:, 0] > 0).astype(np.int64), **extra}
    np.savez(path, **arrays)
    return path


def csv_file(path: Path, header: str, rows: Sequence[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def image_folder(root: Path, classes=("cat", "dog"), per_class: int = 6, size=(8, 8), mode="L") -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            pixels = rng.integers(0, 60, size=shape, dtype=np.uint8)
            pixels[k % size[1]] = 220
            Image.fromarray(pixels, mode=mode).save(root / name / f"{i}.png")
    return root


def png_header(path: Path, width: int, height: int) -> Path:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(width + 1)))
                     + chunk(b"IEND", b""))
    return path


def finished_run(tmp: Path, name: str) -> Path:
    """A finished 1-epoch run on good.npz (made once per name)."""
    out = tmp / name
    if not (out / "result.json").exists():
        run(["train", "--device", "cpu", "--epochs", "1", "--quiet", "--out", str(out),
             "--data", str(good_npz(tmp / f"{name}.npz"))])
    return out


def spec(tmp: Path, name: str, text: str) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(text)
    return path


# ---- the cases ----------------------------------------------------------------------------------

T = ["train", "--device", "cpu", "--epochs", "1", "--quiet"]


def cases() -> list[Case]:
    def out(tmp: Path, name: str) -> list[str]:
        return ["--out", str(tmp / "runs" / name)]

    def train(name: str, extra: Sequence[str], expect, who="careless", data=None) -> Case:
        def args(tmp: Path) -> list[str]:
            data_args = [] if data is None else ["--data", str(data(tmp))]
            return [*T, *data_args, *extra, *out(tmp, name)]
        return Case(name, args, expect, who)

    c = []
    # -- flags of train, careless
    c += [
        train("epochs-float-text", ["--epochs", "1.5"], ("--epochs", "1.5")),
        train("batch-size-1", ["--batch-size", "1"], ("--batch-size", "1")),
        train("batch-size-0", ["--batch-size", "0"], ("--batch-size", "0")),
        train("lr-negative", ["--lr", "-0.1"], ("--lr", "-0.1")),
        train("lr-text", ["--lr", "fast"], ("--lr", "fast")),
        train("noise-1.5", ["--noise", "1.5"], ("--noise", "1.5")),
        train("noise-percent", ["--noise", "40%"], ("--noise", "40%")),
        train("noise-1.0-valid", ["--noise", "1.0"], OK),
        train("method-unknown", ["--method", "mixup-plus"], ("--method", "mixup-plus")),
        train("method-upper-case", ["--method", "LR-M"], OK),
        train("layers-5-9", ["--method", "lr-m", "--layers", "5-9"], ("--layers", "5")),
        train("layers-negative", ["--method", "lr-m", "--layers", "-1"], ("--layers",)),
        train("alpha-zero", ["--method", "lr-m", "--alpha", "0"], ("--alpha", "0")),
        train("correction-bogus", ["--correction", "medium"], ("--correction", "medium")),
        train("warmup-negative", ["--warmup-epochs", "-2"], ("--warmup-epochs", "-2")),
        train("warmup-text", ["--warmup-epochs", "later"], ("--warmup-epochs", "later")),
        train("reg-weight-inf", ["--reg-weight", "inf"], ("--reg-weight", "inf")),
        train("weight-decay-2000", ["--weight-decay", "2000"], ("--weight-decay", "2000")),
        train("width-zero", ["--width", "0"], ("--width", "0")),
        train("width-100", ["--width", "100"], ("--width", "100")),
        train("device-tpu", ["--device", "tpu"], ("--device", "tpu")),
        train("device-empty", ["--device", ""], ("--device",)),
        train("model-unknown", ["--model", "resnet50"], ("--model", "resnet50")),
        train("model-cnn-on-spiral", ["--model", "small-cnn"], ("small-cnn",)),
        train("noise-kind-bogus", ["--noise-kind", "pairflip"], ("--noise-kind", "pairflip")),
        train("noise-seed-negative", ["--noise-seed", "-1"], ("--noise-seed", "-1")),
        train("val-split-1", ["--val-split", "1"], ("--val-split", "1")),
        train("val-split-negative", ["--val-split", "-0.1"], ("--val-split", "-0.1")),
        train("loader-workers-text", ["--loader-workers", "many"], ("--loader-workers", "many")),
        train("track-transform-bogus", ["--track-transform", "test"], ("--track-transform", "test")),
        train("asymmetric-on-spiral", ["--noise-kind", "asymmetric", "--noise", "0.2"], ("asymmetric", "spiral")),
        train("seed-negative", ["--seed", "-5"], ("--seed", "-5")),
        train("threads-zero", ["--threads", "0"], ("--threads", "0")),
        train("threads-negative", ["--threads", "-3"], ("--threads", "-3")),
        train("resume-and-overwrite", ["--resume", "--overwrite"], ("--resume", "--overwrite")),
        train("resume-empty-folder", ["--resume"], OK),
        train("valid-spiral-run", [], OK),
        train("valid-lr-m-dyr-h", ["--method", "lr-m-dyr-h", "--noise", "0.3"], OK),
    ]
    # -- data files, careless
    c += [
        train("data-missing-file", [], ("no-such.npz",), data=lambda tmp: tmp / "no-such.npz"),
        train("data-txt-suffix", [], ("notes.txt",), data=lambda tmp: csv_file(tmp / "notes.txt", "a,labels", ["1,0"])),
        train("npz-no-labels", [], ("labels",), data=lambda tmp: _npz(tmp / "nolab.npz", features=np.ones((20, 3)))),
        train("npz-labels-2d", [], ("labels", "shape"),
              data=lambda tmp: _npz(tmp / "lab2d.npz", features=np.ones((20, 3)), labels=np.zeros((20, 2), int))),
        train("npz-length-mismatch", [], ("length", "labels"),
              data=lambda tmp: _npz(tmp / "mism.npz", features=np.ones((20, 3)), labels=np.arange(19) % 2)),
        train("npz-string-features", [], ("features", "numeric"),
              data=lambda tmp: _npz(tmp / "strf.npz", features=np.array(["a"] * 20), labels=np.arange(20) % 2)),
        train("npz-complex-features", [], ("features",),
              data=lambda tmp: _npz(tmp / "cplx.npz", features=np.ones((20, 3), complex), labels=np.arange(20) % 2)),
        train("npz-nan-labels", [], ("labels", "nan"),
              data=lambda tmp: _npz(tmp / "nanl.npz", features=np.ones((20, 3)),
                                    labels=np.where(np.arange(20) == 3, np.nan, np.arange(20) % 2))),
        train("npz-one-class", [], ("class 0", "two classes"),
              data=lambda tmp: _npz(tmp / "onec.npz", features=np.random.default_rng(0).normal(size=(20, 3)),
                                    labels=np.zeros(20, int))),
        train("npz-val-without-val-labels", [], ("val_labels",),
              data=lambda tmp: good_npz(tmp / "valnolab.npz", val_features=np.ones((10, 4), np.float32))),
        train("npz-val-width-differs", [], ("val_features",),
              data=lambda tmp: good_npz(tmp / "valwide.npz", val_features=np.ones((10, 5), np.float32),
                                        val_labels=np.arange(10) % 2)),
        train("npz-empty-archive", [], ("empty.npz",), data=lambda tmp: _empty_npz(tmp / "empty.npz")),
        train("npz-renamed-csv", [], ("fake.npz",), data=lambda tmp: csv_file(tmp / "fake.npz", "a,labels", ["1,0"])),
        train("npz-bool-labels", [], OK,
              data=lambda tmp: _npz(tmp / "booll.npz", features=np.random.default_rng(0).normal(size=(40, 3)),
                                    labels=np.arange(40) % 2 == 0)),
        train("npz-labels-1-and-2", [], OK,
              data=lambda tmp: _npz(tmp / "l12.npz", features=np.random.default_rng(0).normal(size=(40, 3)),
                                    labels=np.arange(40) % 2 + 1)),
        train("csv-only-header", [], ("only.csv",), data=lambda tmp: csv_file(tmp / "only.csv", "a,b,labels", [])),
        train("csv-missing-label-column", [], ("label",),
              data=lambda tmp: csv_file(tmp / "nolabel.csv", "a,b", [f"{i},{i}" for i in range(20)])),
        train("csv-ragged-row", [], ("row", "cells"),
              data=lambda tmp: csv_file(tmp / "ragged.csv", "a,labels", [f"{i},{i % 2}" for i in range(20)] + ["1,2,3"])),
        train("csv-semicolon", [], ("semi.csv",),
              data=lambda tmp: csv_file(tmp / "semi.csv", "a;labels", [f"{i};{i % 2}" for i in range(20)])),
        train("csv-nan-cell", [], ("nan",),
              data=lambda tmp: csv_file(tmp / "nan.csv", "a,labels", ["nan,0"] + [f"{i},{i % 2}" for i in range(20)])),
        train("csv-inf-cell", [], ("inf",),
              data=lambda tmp: csv_file(tmp / "inf.csv", "a,labels", ["inf,0"] + [f"{i},{i % 2}" for i in range(20)])),
        train("csv-comma-decimal", [], ("1,5",),
              data=lambda tmp: csv_file(tmp / "dec.csv", "a,labels", ['"1,5",0'] + [f"{i},{i % 2}" for i in range(20)])),
        train("csv-label-text", [], ("labels", "dog"),
              data=lambda tmp: csv_file(tmp / "txtlab.csv", "a,labels", [f"{i},{'cat' if i % 2 else 'dog'}"
                                                                        for i in range(20)])),
        train("csv-valid-with-bom", [], OK,
              data=lambda tmp: _bom_csv(tmp / "bom.csv")),
        train("csv-label-float-integral", [], OK,
              data=lambda tmp: csv_file(tmp / "flab.csv", "a,labels", [f"{i},{float(i % 2)}" for i in range(40)])),
        train("noisy-labels-wrong-length", ["--noisy-labels", "NL"], ("noisy", "length"), data=lambda tmp: good_npz(
            tmp / "nlbase.npz")),
        train("noisy-labels-missing", ["--noisy-labels", "/nonexistent/noisy.npy"], ("noisy.npy",),
              data=lambda tmp: good_npz(tmp / "nlbase2.npz")),
        train("noisy-labels-xlsx", ["--noisy-labels", "NLX"], (".xlsx",), data=lambda tmp: good_npz(tmp / "nlbase3.npz")),
    ]
    # -- image folders
    c += [
        train("images-mixed-grey-rgb", [], OK, data=lambda tmp: _grey_and_rgb(tmp / "greyrgb")),
        train("images-one-folder-png-upper", [], OK, data=lambda tmp: _upper_suffix(tmp / "upper")),
        train("images-huge-header", [], ("4096",), "attacker", data=lambda tmp: _huge_in_folder(tmp / "hugef")),
        train("images-text-file-named-png", [], ("fake.png",), "attacker", data=lambda tmp: _fake_png(tmp / "fakep")),
        train("images-gif-only", [], ("no images",), data=lambda tmp: _gif_folder(tmp / "gifs")),
        train("images-val-without-train", [], ("val/", "train/"), data=lambda tmp: image_folder(tmp / "vonly" / "val")
              .parent),
        train("images-val-split-0", ["--val-split", "0"], ("--val-split",), data=lambda tmp: image_folder(tmp / "vs0")),
        train("images-noise-0.5", ["--noise", "0.5"], OK, data=lambda tmp: image_folder(tmp / "n05")),
        train("images-symlink-loop", [], ("link",), "attacker", data=lambda tmp: _loop_link(tmp / "loop")),
        train("images-model-mlp", ["--model", "mlp"], OK, data=lambda tmp: image_folder(tmp / "mlpimg")),
        train("images-model-preact-on-8px", ["--model", "preact-resnet18"], OK, data=lambda tmp: image_folder(
            tmp / "preimg", size=(32, 32))),
    ]
    # -- run folders, careless and attacker
    c += [
        Case("out-is-a-file", lambda tmp: [*T, "--out", str(_file(tmp / "afile"))], ("--out", "file")),
        Case("out-under-a-file", lambda tmp: [*T, "--out", str(_file(tmp / "bfile") / "sub")], ("--out",)),
        Case("resume-other-dataset", lambda tmp: [*T, "--data", str(good_npz(tmp / "other.npz", seed=3)), "--resume",
                                                  "--out", str(finished_run(tmp, "fin1"))], ("data_sha256",)),
        Case("resume-finished-run-same", lambda tmp: [*T, "--data", str(tmp / "fin2.npz"), "--resume",
                                                      "--out", str(finished_run(tmp, "fin2"))], OK),
        Case("new-run-into-finished", lambda tmp: [*T, "--data", str(tmp / "fin3.npz"),
                                                   "--out", str(finished_run(tmp, "fin3"))], ("--resume", "--overwrite")),
        Case("config-json-list", lambda tmp: [*T, "--data", str(tmp / "fin4.npz"), "--resume",
                                              "--out", str(_damage(finished_run(tmp, "fin4"), "config.json", "[1, 2]"))],
             ("config.json",), "attacker"),
        Case("checkpoint-json-list", lambda tmp: [*T, "--data", str(tmp / "fin5.npz"), "--resume",
                                                  "--out", str(_unfinish(_damage(finished_run(tmp, "fin5"),
                                                                                 "checkpoint.json", "[]")))],
             ("checkpoint.json",), "attacker"),
        Case("checkpoint-swapped-for-selected", lambda tmp: [*T, "--data", str(tmp / "fin6.npz"), "--resume",
                                                             "--out", str(_swap(finished_run(tmp, "fin6")))],
             ("checkpoint.pt",), "attacker"),
        Case("detect-top-text", lambda tmp: ["detect", str(finished_run(tmp, "fin7")), "--top", "all"], ("--top", "all")),
        Case("detect-not-a-run", lambda tmp: ["detect", str(tmp)], ("config.json",)),
        Case("detect-missing-folder", lambda tmp: ["detect", str(tmp / "nope")], ("nope",)),
        Case("detect-label-issues-p-2", lambda tmp: ["detect", str(_damage_issues(finished_run(tmp, "fin8")))], OK,
             "attacker"),
        Case("detect-valid", lambda tmp: ["detect", str(finished_run(tmp, "fin9"))], OK),
        Case("report-empty-folder", lambda tmp: ["report", str(_dir(tmp / "emptyrep")), "--out", str(tmp / "r1")],
             ("no runs",)),
        Case("report-out-is-file", lambda tmp: ["report", str(finished_run(tmp, "fin10")), "--out",
                                                str(_file(tmp / "repfile"))], ("--out",)),
        Case("report-valid", lambda tmp: ["report", str(finished_run(tmp, "fin11")), "--out", str(tmp / "rep11"),
                                          "--no-plots", "--quiet"], OK),
    ]
    # -- sweep specs and options
    c += [
        Case("spec-missing", lambda tmp: ["sweep", "run", str(tmp / "nospec.toml")], ("nospec.toml",)),
        Case("spec-unknown-key", lambda tmp: ["sweep", "run", str(spec(tmp, "s1", 'name = "a"\nmethod = ["ce"]\n'))],
             ("method",)),
        Case("spec-methods-empty", lambda tmp: ["sweep", "run", str(spec(tmp, "s2", 'name = "a"\nmethods = []\n'))],
             ("methods",)),
        Case("spec-noise-text", lambda tmp: ["sweep", "run", str(spec(tmp, "s3", 'name = "a"\nnoise = ["high"]\n'))],
             ("noise",)),
        Case("spec-seeds-zero", lambda tmp: ["sweep", "run", str(spec(tmp, "s4", 'name = "a"\nseeds = 0\n'))],
             ("seeds",)),
        Case("spec-seeds-float", lambda tmp: ["sweep", "run", str(spec(tmp, "s5", 'name = "a"\nseeds = 2.5\n'))],
             ("seeds",)),
        Case("spec-epochs-negative", lambda tmp: ["sweep", "run", str(spec(tmp, "s6", 'name = "a"\nepochs = -1\n'))],
             ("epochs",)),
        Case("spec-settings-unknown", lambda tmp: ["sweep", "run", str(spec(tmp, "s7", 'name = "a"\n[settings]\nlrate = 1\n'))],
             ("lrate",)),
        Case("spec-method-table-no-name", lambda tmp: ["sweep", "run", str(spec(tmp, "s8",
                                                                                  'name = "a"\nmethods = [{layers = ["1"]}]\n'))],
             ("method",)),
        Case("spec-duplicate-methods", lambda tmp: ["sweep", "run", str(spec(tmp, "s9",
                                                                              'name = "a"\nmethods = ["ce", "ce"]\n'))],
             ("twice",)),
        Case("spec-storage-bogus", lambda tmp: ["sweep", "run", str(spec(tmp, "s10", 'name = "a"\nmethods = ["ce"]\n')),
                                                "--storage", "mongodb://x/y", "--out", str(tmp / "sw10")], ("mongodb",)),
        Case("spec-binary-garbage", lambda tmp: ["sweep", "run", str(_bytes(tmp / "s11.toml", os.urandom(64)))],
             ("s11.toml",), "attacker"),
        Case("sweep-heartbeat-zero", lambda tmp: ["sweep", "run", str(spec(tmp, "s12", 'name = "a"\nmethods = ["ce"]\n')),
                                                  "--heartbeat", "0", "--out", str(tmp / "sw12")], ("--heartbeat",)),
        Case("sweep-status-nothing", lambda tmp: ["sweep", "status", "--out", str(tmp / "never")], ("never",)),
        Case("sweep-work-no-study", lambda tmp: ["sweep", "work", "--storage", f"sqlite:///{tmp}/none.db",
                                                 "--study", "x", "--out", str(tmp / "sw14")], ("x",)),
        Case("sweep-valid-tiny", lambda tmp: ["sweep", "run", str(spec(tmp, "s15", 'name = "a"\nmethods = ["ce"]\n'
                                                                          'epochs = 1\n')),
                                              "--out", str(tmp / "sw15"), "--quiet"], OK),
    ]
    # -- tune and reproduce
    c += [
        Case("tune-trials-zero", lambda tmp: ["tune", "--trials", "0", "--out", str(tmp / "t1")], ("--trials", "0")),
        Case("tune-alpha-range-reversed", lambda tmp: ["tune", "--alpha-range", "32,0.1", "--out", str(tmp / "t2")],
             ("--alpha-range",)),
        Case("tune-alpha-range-text", lambda tmp: ["tune", "--alpha-range", "low,high", "--out", str(tmp / "t3")],
             ("--alpha-range",)),
        Case("tune-corrections-bogus", lambda tmp: ["tune", "--corrections", "none,maybe", "--out", str(tmp / "t4")],
             ("maybe",)),
        Case("tune-storage-bogus", lambda tmp: ["tune", "--storage", "not-a-url", "--out", str(tmp / "t5")],
             ("not-a-url",)),
        Case("reproduce-unknown-target", lambda tmp: ["reproduce", "imagenet", "--out", str(tmp / "p1")],
             ("imagenet",)),
        Case("reproduce-seeds-zero", lambda tmp: ["reproduce", "spiral", "--seeds", "0", "--out", str(tmp / "p2")],
             ("--seeds",)),
        Case("reproduce-noise-text", lambda tmp: ["reproduce", "spiral", "--noise", "lots", "--out", str(tmp / "p3")],
             ("--noise", "lots")),
        Case("reproduce-methods-bogus", lambda tmp: ["reproduce", "spiral", "--methods", "magic", "--out",
                                                     str(tmp / "p4")], ("magic",)),
        Case("reproduce-cifar-no-data", lambda tmp: ["reproduce", "cifar10", "--out", str(tmp / "p5")],
             ("--data-dir",)),
    ]
    return c


# ---- helpers of the cases -------------------------------------------------------------------------


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _empty_npz(path: Path) -> Path:
    np.savez(path)
    return path


def _bom_csv(path: Path) -> Path:
    rows = [f"{i * 0.1:.2f},{i % 2}" for i in range(40)]
    path.write_bytes(("\ufeffa,labels\n" + "\n".join(rows) + "\n").encode("utf-8"))
    return path


def _grey_and_rgb(root: Path) -> Path:
    image_folder(root, classes=("a",), mode="L")
    image_folder(root, classes=("b",), mode="RGB")
    return root


def _upper_suffix(root: Path) -> Path:
    image_folder(root)
    for path in list(root.glob("*/*.png")):
        path.rename(path.with_suffix(".PNG"))
    return root


def _huge_in_folder(root: Path) -> Path:
    image_folder(root)
    png_header(root / "dog" / "huge.png", 20000, 20000)
    return root


def _fake_png(root: Path) -> Path:
    image_folder(root)
    (root / "cat" / "fake.png").write_text("<script>not an image</script>")
    return root


def _gif_folder(root: Path) -> Path:
    from PIL import Image

    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        Image.new("L", (4, 4)).save(root / name / "x.gif")
    return root


def _loop_link(root: Path) -> Path:
    image_folder(root)
    (root / "loop").symlink_to(root, target_is_directory=True)
    return root


def _file(path: Path) -> Path:
    path.write_text("x")
    return path


def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _damage(out: Path, name: str, text: str) -> Path:
    (out / name).write_text(text)
    return out


def _unfinish(out: Path) -> Path:
    (out / "result.json").unlink(missing_ok=True)
    return out


def _swap(out: Path) -> Path:
    """selected_model.pt's bytes put in place of checkpoint.pt (checksum file left as it was)."""
    (out / "checkpoint.pt").write_bytes((out / "selected_model.pt").read_bytes())
    return _unfinish(out)


def _damage_issues(out: Path) -> Path:
    """A P(noisy) of 2 in label_issues.csv: detect must not use it (it rebuilds it from the checkpoint)."""
    lines = (out / "label_issues.csv").read_text().splitlines()
    cells = lines[1].split(",")
    header = lines[0].split(",")
    cells[header.index("p_noisy")] = "2"
    lines[1] = ",".join(cells)
    (out / "label_issues.csv").write_text("\n".join(lines) + "\n")
    return out


# ---- running and sorting -------------------------------------------------------------------------


def run(args: Sequence[str]) -> tuple[Optional[int], str, str, Optional[BaseException]]:
    """`latentmix ARGS` in this process: (exit code, stdout, stderr, escaped exception)."""
    from latentmix.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(list(args))
            error = None
        except SystemExit as exit_:  # argparse
            code, error = (exit_.code if isinstance(exit_.code, int) else 1), None
        except BaseException as escaped:  # noqa: BLE001 - the audit counts it
            code, error = None, escaped
    return code, stdout.getvalue(), stderr.getvalue(), error


def outcome(case: Case, code: Optional[int], err: str, escaped: Optional[BaseException]) -> str:
    if escaped is not None or "Traceback" in err:
        return "traceback"
    if code == 0:
        return "correct" if case.expect == OK else "silent"
    if case.expect == OK:
        return "misleading"
    last = (err.strip().splitlines() or [""])[-1].lower()
    return "clear" if all(word.lower() in last for word in case.expect) else "misleading"


def resolve_args(case: Case, tmp: Path) -> list[str]:
    args = list(case.args(tmp) if callable(case.args) else case.args)
    if "NL" in args:  # the noisy-labels files of the data-file cases
        args[args.index("NL")] = str(_npy(tmp / "short.npy", np.arange(50) % 2))
    if "NLX" in args:
        args[args.index("NLX")] = str(_file(tmp / "labels.xlsx"))
    return args


def _npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def compare(before_path: str, after_path: str) -> str:
    """The markdown table of counts before / after, and every case not clear or correct after."""
    before, after = (json.loads(Path(p).read_text()) for p in (before_path, after_path))
    lines = ["| outcome | before | after |", "|---|---|---|"]
    lines += [f"| {name} | {before['counts'][name]} | {after['counts'][name]} |" for name in OUTCOMES]
    lines.append(f"| cases | {len(before['cases'])} | {len(after['cases'])} |")
    was = {case["name"]: case["outcome"] for case in before["cases"]}
    changed = [f"| {c['name']} | {was.get(c['name'])} | {c['outcome']} |" for c in after["cases"]
               if was.get(c["name"]) != c["outcome"]]
    left = [f"| {c['name']} ({c['who']}) | {c['outcome']} | `{c['message'][:200].replace('|', '/')}` |"
            for c in after["cases"] if c["outcome"] not in ("clear", "correct")]
    return "\n".join([*lines, "", "Cases whose outcome changed:", "", "| case | before | after |", "|---|---|---|",
                      *changed, "", "Cases still not clear or correct after:", "", "| case | outcome | message |",
                      "|---|---|---|", *left]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write each case's outcome and message here")
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE_JSON", "AFTER_JSON"),
                        help="print the before/after table of two --json files (runs nothing)")
    args = parser.parse_args()
    if args.compare:
        print(compare(*args.compare), end="")
        return
    import warnings

    warnings.simplefilter("ignore")
    results = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.chdir(tmp)  # default output folders (runs/...) land in the temporary folder
        for case in cases():
            if args.only and args.only not in case.name:
                continue
            try:
                command = resolve_args(case, tmp)
            except Exception as error:  # noqa: BLE001 - a case whose set-up needs this tree's own run
                results.append({"name": case.name, "who": case.who, "outcome": "traceback",
                                "message": f"set-up failed: {type(error).__name__}: {error}"[:300]})
                continue
            code, _, err, escaped = run(command)
            result = outcome(case, code, err, escaped)
            message = (f"{type(escaped).__name__}: {escaped}" if escaped is not None
                       else (err.strip().splitlines() or [""])[-1])
            results.append({"name": case.name, "who": case.who, "outcome": result, "message": message[:300]})
            print(f"{result:10s} {case.name}: {message[:160]}", flush=True)
    counts = {name: sum(r["outcome"] == name for r in results) for name in OUTCOMES}
    print(json.dumps({"cases": len(results), **counts}))
    if args.json:
        Path(args.json).write_text(json.dumps({"counts": counts, "cases": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
