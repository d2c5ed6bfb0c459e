"""The correction starts only on a network that has begun to memorise (issue 24, items 2, 3 and 5):
`latentmix.selection.memorisation_check` by hand, and end to end: a weak tanh network on easy 2-D
data with 40% wrong labels, where the correction used to start on a network that memorised nothing
and end 12 points lower, now trains as its LR-M twin (same seed) up to the end of early learning,
then plainly (no mixing), ends well above that twin, and says why; a wide MLP
that memorises quickly still corrects, and says why."""

import csv
import json

import numpy as np
import pytest

from data_helpers import write_wide_gaussians
from latentmix.cli import main
from latentmix.selection import memorisation_after, memorisation_check
from latentmix.training import Run


def test_memorisation_check_by_hand():
    check = memorisation_check(0.70, 0.65, train_size=900, holdout_size=100, epoch=7)
    # g = 0.05; se = sqrt(0.7 * 0.3 / 900 + 0.65 * 0.35 / 100) = sqrt(0.000233 + 0.002275) = 0.05008:
    # a gap just inside its standard error is no evidence of memorisation
    assert not check.memorising and check.gap == pytest.approx(0.05)
    assert check.standard_error == pytest.approx(0.050083, abs=1e-5)
    assert "epoch 7" in check.reason and "nothing to correct" in check.reason and "0.050" in check.reason
    # g = 0.08; se = sqrt(0.75 * 0.25 / 900 + 0.67 * 0.33 / 400) = sqrt(0.000208 + 0.000553) = 0.027588
    above = memorisation_check(0.75, 0.67, train_size=900, holdout_size=400, epoch=7)
    assert above.memorising and above.standard_error == pytest.approx(0.027588, abs=1e-5)
    assert "begun to memorise" in above.reason and "+0.080" in above.reason
    below = memorisation_check(0.60, 0.62, train_size=900, holdout_size=100, epoch=9)
    assert not below.memorising and below.gap == pytest.approx(-0.02)
    assert "epoch 9" in below.reason and "nothing to correct" in below.reason and "-0.020" in below.reason
    # no gap is no sign of memorisation
    assert not memorisation_check(0.5, 0.5, train_size=10, holdout_size=10, epoch=1).memorising


def test_memorisation_after_the_end_of_early_learning_by_hand():
    at_end = memorisation_check(0.60, 0.62, train_size=900, holdout_size=100, epoch=9)
    rows = [
        {"epoch": 8, "train_acc_noisy": 0.99, "select_acc": 0.10},  # before the end: not read again
        {"epoch": 9, "train_acc_noisy": 0.60, "select_acc": 0.62},
        # g = 0.08, se = sqrt(0.7 * 0.3 / 900 + 0.62 * 0.38 / 100) = 0.050883: above one se, not two
        {"epoch": 10, "train_acc_noisy": 0.70, "select_acc": 0.62},
        {"epoch": 11, "train_acc_noisy": None, "select_acc": 0.20},  # no training agreement: skipped
        # g = 0.15, se = sqrt(0.75 * 0.25 / 900 + 0.6 * 0.4 / 100) = 0.051072: above two (0.102144)
        {"epoch": 12, "train_acc_noisy": 0.75, "select_acc": 0.60},
        {"epoch": 13, "train_acc_noisy": 0.90, "select_acc": 0.50},
    ]
    later = memorisation_after(rows, at_end, train_size=900, holdout_size=100)
    assert later.memorising and later.epoch == 12
    assert later.gap == pytest.approx(0.15) and later.standard_error == pytest.approx(0.051072, abs=1e-5)
    assert later.reason.startswith(at_end.reason) and "until epoch 12" in later.reason and "+0.150" in later.reason
    # the correction starts after that epoch (a run without a fixed warm-up)
    run = type("R", (), {"warmup": None, "trains_plainly": staticmethod(Run.trains_plainly)})()
    assert Run.warmup_end(run, 9, later) == 12 and Run.warmup_end(run, 9, at_end) is None
    # none crosses twice its standard error: the verdict at the end of early learning stands
    assert memorisation_after(rows[:4], at_end, train_size=900, holdout_size=100) is at_end
    # a network that had begun to memorise by the end of early learning is corrected from there
    memorising = memorisation_check(0.75, 0.67, train_size=900, holdout_size=400, epoch=7)
    assert memorisation_after(rows, memorising, train_size=900, holdout_size=400) is memorising
    assert Run.warmup_end(run, 7, memorising) == 7
    # a split scored against clean labels: its given labels' agreement is what the gap reads
    given = [{**row, "select_acc": 0.99, "select_acc_given": row["select_acc"]} for row in rows]
    assert memorisation_after(given, at_end, train_size=900, holdout_size=100, holdout_key="select_acc_given").epoch == 12


def _blobs(path, seed=3):
    """Six 2-D blobs (a weak tanh network's easy task), 1,200 training rows with 40% of the labels
    moved to another class, a clean test set of 600 as val_*."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-8, 8, (6, 2))

    def draw(n):
        y = rng.integers(0, 6, n)
        return (centers[y] + rng.normal(0, 1.2, (n, 2))).astype(np.float32), y

    x, y = draw(1200)
    xt, yt = draw(600)
    noisy = y.copy()
    flip = rng.random(1200) < 0.4
    noisy[flip] = (y[flip] + rng.integers(1, 6, flip.sum())) % 6
    np.savez(path, features=x, labels=noisy, clean_labels=y, val_features=xt, val_labels=yt)
    return path


def _train_wide(tmp_path, val_split):
    """LR-M-DYR-H on `write_wide_gaussians`'s data for 30 epochs into tmp_path/run; its result.json."""
    path = write_wide_gaussians(tmp_path / "wide.npz")
    assert main(["train", "--data", str(path), "--method", "lr-m-dyr-h", "--epochs", "30", "--val-split", val_split,
                 "--seed", "0", "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")]) == 0
    return json.loads((tmp_path / "run" / "result.json").read_text())


def _metrics(folder):
    with open(folder / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_a_network_that_memorises_nothing_trains_on_plainly_and_says_why(tmp_path, capsys, monkeypatch):
    from latentmix.mixing import LatentMixup

    mixing = []  # whether each epoch mixes, as the mixup object sees it (a spy, not the run's own record)
    start_epoch = LatentMixup.start_epoch

    def spy(self, *args, **kwargs):
        mixing.append(self.enabled)
        return start_epoch(self, *args, **kwargs)

    monkeypatch.setattr(LatentMixup, "start_epoch", spy)
    data = _blobs(tmp_path / "blobs.npz")
    common = ["--data", str(data), "--model", "spiral-mlp", "--epochs", "30", "--val-split", "0.1", "--seed", "0",
              "--device", "cpu", "--quiet", "--no-plain-twin"]
    assert main(["train", "--method", "lr-m-dyr-h", "--out", str(tmp_path / "ours"), *common]) == 0
    printed = capsys.readouterr().out
    ours_mixing, mixing[:] = list(mixing), []
    assert main(["train", "--method", "lr-m", "--out", str(tmp_path / "twin"), *common]) == 0
    result = json.loads((tmp_path / "ours" / "result.json").read_text())
    # the correction never started (before the check: from epoch 12, ending at 69.7% against the twin's 81.7%)
    assert result["bootstrap_start_epoch"] is None
    reason = result["bootstrap_start_reason"]
    assert reason.startswith("not started: early learning ended: ") and "trained on plainly" in reason
    end = int(reason.split("at the end of early learning (epoch ")[1].split(")")[0])
    assert "bootstrapping not started" in printed
    ours, twin = _metrics(tmp_path / "ours"), _metrics(tmp_path / "twin")
    # up to the end of early learning the run is its LR-M twin, epoch for epoch
    same = [(r["lr"], r["val_acc"], r["select_acc"]) for r in ours[:end]]
    assert same == [(r["lr"], r["val_acc"], r["select_acc"]) for r in twin[:end]]
    # then it trains plainly: no mixing, at the lr of the twin (decayed tenfold in the epoch after)
    assert ours_mixing == [True] * end + [False] * (30 - end)
    protocol = json.loads((tmp_path / "ours" / "config.json").read_text())["protocol"]
    assert float(ours[end]["lr"]) == pytest.approx(protocol["lr"] * protocol["lr_decay"])
    assert [r["lr"] for r in ours] == [r["lr"] for r in twin]
    assert all(r["bootstrapping"] == "False" for r in ours)
    # and ends well above its twin (measured: 89.2% against 81.3%; plain CE 95.0%: early learning
    # ended at epoch 10 on a network still learning slowly under mixup, docs/robustness-suite.md)
    twin_result = json.loads((tmp_path / "twin" / "result.json").read_text())
    assert result["selected_val_acc"] > twin_result["selected_val_acc"] + 0.05


@pytest.mark.slow
def test_a_plain_run_that_begins_to_memorise_later_is_corrected_from_there(tmp_path, monkeypatch):
    """The loop obeys a later reading of the gap: the weak tanh network of the test above trains
    plainly from the end of early learning; a stand-in for `memorisation_after` that reads
    memorisation 3 epochs later must start the correction, and the mixing, after that epoch, at
    the decayed lr, and the run must say so."""
    import latentmix.training as training
    from latentmix.mixing import LatentMixup
    from latentmix.selection import MemorisationCheck

    mixing = []
    start_epoch = LatentMixup.start_epoch

    def spy(self, *args, **kwargs):
        mixing.append(self.enabled)
        return start_epoch(self, *args, **kwargs)

    def three_epochs_later(rows, at_end, **sizes):
        if at_end.memorising or not any(int(r["epoch"]) >= at_end.epoch + 3 for r in rows):
            return at_end
        return MemorisationCheck(True, 0.2, 0.05, at_end.reason + "; until epoch X (stand-in)", at_end.epoch + 3)

    monkeypatch.setattr(LatentMixup, "start_epoch", spy)
    monkeypatch.setattr(training, "memorisation_after", three_epochs_later)
    data = _blobs(tmp_path / "blobs.npz")
    assert main(["train", "--data", str(data), "--model", "spiral-mlp", "--epochs", "30", "--val-split", "0.1",
                 "--seed", "0", "--device", "cpu", "--quiet", "--no-plain-twin", "--method", "lr-m-dyr-h", "--out", str(tmp_path / "run")]) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    reason = result["bootstrap_start_reason"]
    end = int(reason.split("at the end of early learning (epoch ")[1].split(")")[0])
    assert result["bootstrap_start_epoch"] == end + 4
    assert reason.startswith("early learning ended: ") and reason.endswith("until epoch X (stand-in)")
    # mixed warm-up, 3 plain epochs, then mixed and corrected
    assert mixing == [True] * end + [False] * 3 + [True] * (30 - end - 3)
    rows = _metrics(tmp_path / "run")
    assert [r["bootstrapping"] == "True" for r in rows] == [False] * (end + 3) + [True] * (30 - end - 3)
    protocol = json.loads((tmp_path / "run" / "config.json").read_text())["protocol"]
    assert float(rows[end + 3]["lr"]) == pytest.approx(protocol["lr"] * protocol["lr_decay"])


@pytest.mark.slow
def test_a_network_that_memorises_is_corrected_and_says_why(tmp_path):
    result = _train_wide(tmp_path, val_split="0.1")
    assert result["bootstrap_start_epoch"] is not None
    assert "begun to memorise" in result["bootstrap_start_reason"]
    rows = _metrics(tmp_path / "run")
    end = result["bootstrap_start_epoch"] - 1
    row = next(r for r in rows if int(r["epoch"]) == end)
    assert float(row["train_acc_noisy"]) > float(row["select_acc"])  # the gap the reason cites


def test_the_report_counts_runs_that_never_corrected():
    from types import SimpleNamespace

    from latentmix.report import decision_counts

    def run(**summary):
        return SimpleNamespace(finished=True, summary=lambda: summary)

    data = SimpleNamespace(runs=[run(bootstrap_start_reason="not started: early learning ended: ..."),
                                 run(bootstrap_start_reason="early learning ended: ...", correction_kept=False),
                                 run(bootstrap_start_reason=None), SimpleNamespace(finished=False, summary=dict)])
    text = decision_counts(data)
    assert "1 of 3 runs never started the correction" in text
    assert "1 of 3 runs kept their warm-up" in text


@pytest.mark.slow
def test_a_split_scored_on_clean_labels_is_compared_on_its_given_ones(tmp_path):
    """A file with clean labels and no val_* arrays: --val-split holds out rows that are scored (and
    select) against their clean labels; the memorisation check must compare the training agreement
    with the held-out rows' *given* labels (`select_acc_given`), as the training one is."""
    stored = np.load(_blobs(tmp_path / "blobs.npz"))
    path = tmp_path / "split.npz"
    np.savez(path, features=stored["features"], labels=stored["labels"], clean_labels=stored["clean_labels"])
    assert main(["train", "--data", str(path), "--model", "spiral-mlp", "--method", "lr-m-dyr-h", "--epochs", "20",
                 "--val-split", "0.1", "--seed", "0", "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")]) == 0
    rows = _metrics(tmp_path / "run")
    given = [float(r["select_acc_given"]) for r in rows]
    clean = [float(r["select_acc"]) for r in rows]
    # 40% of the given labels are wrong: agreement with them is far below accuracy on the clean ones
    assert all(g < c for g, c in zip(given[5:], clean[5:]))
    reason = json.loads((tmp_path / "run" / "result.json").read_text())["bootstrap_start_reason"]
    end = int(reason.split("(epoch ")[-1].split(")")[0]) if "at the end of early learning" in reason else \
        int(reason.split("at epoch ")[-1].split(" ")[0])
    row = rows[end - 1]
    assert f"vs {float(row['select_acc_given']):.3f}" in reason


@pytest.mark.slow
def test_a_run_that_cannot_check_says_so(tmp_path):
    """Selecting by the file's own clean validation set with no held-out training rows (--val-split 0):
    there are no given labels outside training to compare with, so the check cannot be made; the
    correction starts as before and the reason says that memorisation was not checked."""
    result = _train_wide(tmp_path, val_split="0")
    assert result["bootstrap_start_epoch"] is not None
    assert "was not checked" in result["bootstrap_start_reason"]
    assert "agreed with its training labels" not in result["bootstrap_start_reason"]  # no check was made
