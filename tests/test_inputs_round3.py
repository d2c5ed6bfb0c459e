"""Inputs that cannot mislead, round 3 (issue 25): conflicting settings, hostile file sizes, the
last tracebacks and the misleading or silently accepted inputs of the third audit. Each is one
clear line (exit 2, no traceback) naming the field, the value and the fix, or correct behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from latentmix.cli import main

TRAIN = ["train", "--device", "cpu", "--epochs", "1", "--quiet"]


def _cli_error(capsys, args) -> str:
    """Run the CLI, expect exit 2 and one `latentmix: error:` line without a traceback."""
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("latentmix: error: "), err
    return lines[0]


def _good_npz(path: Path, n: int = 120, seed: int = 0) -> Path:
    """The issue's `good.npz`: n x 4 float features, 0/1 labels (learnable from the first column)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 4)).astype(np.float32)
    np.savez(path, features=features, labels=(features[:, 0] > 0).astype(np.int64))
    return path


# --------------------------------------------------------------------------------------------
# issue 25.5: settings that name other data than the run trains on


def test_a_built_in_dataset_beside_a_data_file_is_refused(tmp_path, capsys):
    data = _good_npz(tmp_path / "good.npz")
    err = _cli_error(capsys, [*TRAIN, "--dataset", "cifar10", "--data", str(data), "--out", str(tmp_path / "r")])
    assert "--dataset cifar10 and --data" in err and "pass only --data" in err
    assert not (tmp_path / "r").exists()


def test_a_text_or_fusion_model_on_feature_data_is_refused(tmp_path, capsys):
    data = _good_npz(tmp_path / "good.npz")
    for model, needs in (("text", "integer token ids"), ("fusion", "several inputs")):
        err = _cli_error(capsys, [*TRAIN, "--model", model, "--data", str(data), "--out", str(tmp_path / model)])
        assert f"--model {model} needs {needs}" in err and "features" in err and "omit --model" in err


def test_data_dir_that_is_not_read_is_refused(tmp_path, capsys):
    err = _cli_error(capsys, [*TRAIN, "--dataset", "spiral", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")])
    assert "--data-dir" in err and "is not read" in err and "spiral" in err


# --------------------------------------------------------------------------------------------
# issue 25.6: detect reads the label issues an image-folder run wrote; nothing to rebuild


def _write_images(root: Path, per_class: int = 8) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, size=(6, 6), dtype=np.uint8)
            pixels[3 * k: 3 * k + 3] = 220
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_detect_reads_an_image_folder_runs_label_issues_without_the_images(tmp_path, capsys):
    """The file has a `file` column; the old detect called it unexpected and rebuilt it from the
    images every time, so it failed once the images moved (and on a read-only folder)."""
    _write_images(tmp_path / "photos")
    out = tmp_path / "run"
    assert main([*TRAIN, "--data", str(tmp_path / "photos"), "--batch-size", "8", "--loader-workers", "0",
                 "--out", str(out)]) == 0
    issues = (out / "label_issues.csv").read_bytes()
    (tmp_path / "photos").rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["detect", str(out), "--top", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("0 of 16 labels") or " of 16 labels have P(noisy)" in printed
    assert (out / "label_issues.csv").read_bytes() == issues


def test_detect_on_a_fit_run_that_needs_a_rebuild_says_why_it_cannot(tmp_path, capsys):
    import torch
    from torch import nn

    from latentmix import fit

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, 2, generator=generator)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    fit(model, x, y, val_inputs=x[:20], val_labels=y[:20], method="ce", epochs=1, batch_size=16, run_dir=tmp_path / "run",
        device="cpu")
    (tmp_path / "run" / "label_issues.csv").unlink()
    err = _cli_error(capsys, ["detect", str(tmp_path / "run")])
    assert "data given in Python" in err and "fit()" in err and "unknown dataset" not in err
