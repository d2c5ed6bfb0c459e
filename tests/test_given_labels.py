"""Figures of a run on a user's noisy file, with no clean reference, read as what they are: accuracy
against the given validation labels, noise unknown (not 0%), estimated noise shares that are no
score, and the flagged count that is not the estimated share (issue 26)."""

import json

import numpy as np
import pytest

from latentmix.cli import main
from latentmix.summary import RunSummary


@pytest.fixture(scope="module")
def noisy_runs(tmp_path_factory):
    """Two runs (ce, lr-m-dyr-h) on a file whose labels are 40% resampled, given without clean labels."""
    root = tmp_path_factory.mktemp("given")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    flip = rng.random(400) < 0.4
    y[flip] = rng.integers(0, 3, int(flip.sum()))
    np.savez(root / "noisy.npz", x=x, labels=y)
    outputs = {}
    for method in ("ce", "lr-m-dyr-h"):
        folder = root / "runs" / method
        import io
        from contextlib import redirect_stdout

        printed = io.StringIO()
        with redirect_stdout(printed):
            assert main(["train", "--data", str(root / "noisy.npz"), "--method", method, "--epochs", "6",
                         "--out", str(folder), "--device", "cpu", "--quiet"]) == 0
        outputs[method] = printed.getvalue()
    return root, outputs


def test_train_names_what_val_acc_is_measured_against(noisy_runs):
    root, outputs = noisy_runs
    printed = outputs["lr-m-dyr-h"]
    assert "val acc against the given validation labels (no clean reference" in printed
    assert "best val acc" not in printed
    assert "the median share the noise model flags over the early-learning epochs" in printed
    assert "from the noise model of epoch" not in printed
    result = json.loads((root / "runs" / "lr-m-dyr-h" / "result.json").read_text())
    assert result["val_labels"] == "given" and result["actual_noise_rate"] is None
    assert list(result)[8:10] == ["val_labels", "best_val_acc"]


def test_detect_says_why_the_count_differs_from_the_estimate(noisy_runs, capsys):
    root, _ = noisy_runs
    capsys.readouterr()
    assert main(["detect", str(root / "runs" / "lr-m-dyr-h"), "--top", "2"]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    count_line, estimate_line = lines[:2]
    assert count_line.startswith(" ") is False and "of 400 labels have P(noisy) > 0.5" in count_line
    assert estimate_line.startswith("estimated share of wrong labels: ")
    # a doubt about the estimate (issue 24) comes right under it, then why the count differs
    doubt = json.loads((root / "runs" / "lr-m-dyr-h" / "result.json").read_text())["noise_estimate_doubt"]
    why_line = lines[3] if doubt else lines[2]
    assert (lines[2] == f"  unreliable: {doubt}") if doubt else True
    assert "the count above is not that estimate" in why_line and "all 400 rows" in why_line


def test_report_says_noise_unknown_and_bolds_no_noise_share(noisy_runs):
    root, _ = noisy_runs
    assert main(["report", str(root), "--no-plots", "--quiet"]) == 0
    markdown = (root / "report" / "report.md").read_text()
    assert "- **noise**: given labels (noise unknown)" in markdown
    assert "0%" not in markdown and "noise rates" not in markdown
    assert "Best given-label validation accuracy (%), 1 seed, 6 epochs" in markdown
    assert "±" not in markdown  # one seed: no spread in the cells, none promised in the titles
    estimated = markdown.split("estimated share of wrong labels (%)", 1)[1]
    assert "**" not in estimated.split("\n\n", 2)[1]  # the table below that title: no bold cell
    runs_csv = (root / "report" / "runs.csv").read_text().splitlines()
    header = runs_csv[0].split(",")
    first = dict(zip(header, runs_csv[1].split(",")))
    assert first["noise"] == "" and first["noise_kind"] == "given" and first["val_labels"] == "given"


def test_clean_references_keep_the_plain_wording(tmp_path, capsys):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    clean = (x[:, 0] > 0).astype(np.int64)
    noisy = clean.copy()
    noisy[:40] = 1 - noisy[:40]
    np.savez(tmp_path / "f.npz", x=x, labels=noisy, clean_labels=clean)
    assert main(["train", "--data", str(tmp_path / "f.npz"), "--epochs", "3", "--out", str(tmp_path / "r"),
                 "--device", "cpu", "--quiet"]) == 0
    assert "  best val acc " in capsys.readouterr().out
    result = json.loads((tmp_path / "r" / "result.json").read_text())
    actual = result["actual_noise_rate"]  # 40 of 200 flipped, measured on the 180 training rows
    assert result["val_labels"] == "clean" and 0.1 < actual < 0.3
    assert main(["report", str(tmp_path / "r"), "--no-plots", "--quiet"]) == 0
    assert f"given labels ({round(actual * 100)}% wrong)" in (tmp_path / "r" / "report" / "report.md").read_text()


def test_older_result_files_read_as_before():
    # a result.json from before `val_labels`: a null actual_noise_rate means no clean reference
    old_given = RunSummary.from_dict({"best_val_acc": 0.44, "actual_noise_rate": None})
    old_clean = RunSummary.from_dict({"best_val_acc": 0.9, "actual_noise_rate": 0.2})
    very_old = RunSummary.from_dict({"best_val_acc": 0.87})  # no such key at all: taken as clean
    assert old_given.val_acc_on_given_labels and not old_clean.val_acc_on_given_labels
    assert not very_old.val_acc_on_given_labels
    assert "val_labels" not in old_given.to_dict()  # read back unchanged
