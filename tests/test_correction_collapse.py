"""A correction that collapses its network is stopped, and the run trains on plainly (issue 24,
item 3: correction never ends below the uncorrected run). `correction_collapse` by hand, and end to
end: a run whose bootstrapping targets are forced onto one class (a spy on `LossCorrection`, the
way hard bootstrapping from a barely trained network piles its targets on a few classes) stops
correcting once the network agrees with its training labels no better than that class alone, then
trains as plain CE from there and ends as well as plain CE, and says so."""

import csv
import json

import numpy as np
import pytest
import torch

from data_helpers import write_wide_gaussians
from latentmix.cli import main
from latentmix.selection import correction_collapse


def test_correction_collapse_by_hand():
    # chance 0.15 on 900 samples: se = sqrt(0.15 * 0.85 / 900) = 0.0119024, bound 0.15 + 2 se = 0.1738
    rows = [
        {"epoch": 1, "bootstrapping": False, "train_acc_noisy": 0.12},  # a warm-up epoch: never a collapse
        {"epoch": 2, "bootstrapping": True, "train_acc_noisy": 0.60},
        {"epoch": 3, "bootstrapping": True, "train_acc_noisy": None},  # not tracked: nothing to read
        {"epoch": 4, "bootstrapping": True, "train_acc_noisy": 0.175},  # just above the bound
        {"epoch": 5, "bootstrapping": True, "train_acc_noisy": 0.173},
        {"epoch": 6, "bootstrapping": True, "train_acc_noisy": 0.10},
    ]
    collapse = correction_collapse(rows, chance=0.15, train_size=900)
    assert collapse is not None and collapse.epoch == 5 and collapse.agreement == pytest.approx(0.173)
    assert "epoch 5" in collapse.reason and "0.173" in collapse.reason and "0.150" in collapse.reason
    assert "0.012" in collapse.reason  # the standard error it compared with
    assert correction_collapse(rows[:4], chance=0.15, train_size=900) is None
    # the same agreement on 100 samples is within sampling error of chance (se 0.0357): a collapse
    assert correction_collapse(rows[:4], chance=0.15, train_size=100).epoch == 4
    # a run whose rows stop bootstrapping after the collapse still reads the same epoch (it is stateless)
    after = rows[:6] + [{"epoch": 7, "bootstrapping": False, "train_acc_noisy": 0.9}]
    assert correction_collapse(after, chance=0.15, train_size=900).epoch == 5


@pytest.mark.slow
def test_a_collapsed_correction_stops_and_the_run_trains_on_as_ce(tmp_path, capsys, monkeypatch):
    from latentmix.correction import LossCorrection
    from latentmix.mixing import LatentMixup

    targets = LossCorrection.batch_targets

    def onto_one_class(self, *args, **kwargs):  # every bootstrapping target on class 0
        rows = targets(self, *args, **kwargs)
        return None if rows is None else torch.nn.functional.one_hot(torch.zeros_like(rows[:, 0]).long(),
                                                                     rows.shape[1]).to(rows.dtype)

    mixing = []  # whether each epoch mixes, as the mixup object sees it
    start_epoch = LatentMixup.start_epoch

    def spy(self, *args, **kwargs):
        mixing.append(self.enabled)
        return start_epoch(self, *args, **kwargs)

    monkeypatch.setattr(LossCorrection, "batch_targets", onto_one_class)
    monkeypatch.setattr(LatentMixup, "start_epoch", spy)
    data = write_wide_gaussians(tmp_path / "wide.npz")
    # (the run's own course, without its plain CE twin, whose epochs the spy would see too)
    common = ["--data", str(data), "--epochs", "30", "--val-split", "0.1", "--seed", "0", "--device", "cpu", "--quiet",
              "--no-plain-twin"]
    assert main(["train", "--method", "lr-m-dyr-h", "--out", str(tmp_path / "ours"), *common]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "ours" / "result.json").read_text())
    with open(tmp_path / "ours" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    start = result["bootstrap_start_epoch"]
    assert start is not None
    stopped = result["correction_stopped"]
    collapse = int(stopped.split("at epoch ")[1].split(" ")[0])
    # the collapse is real: the network agreed with its training labels as little as class 0 alone does
    labels = np.load(data)["labels"]
    assert float(rows[collapse - 1]["train_acc_noisy"]) < np.bincount(labels).max() / len(labels) + 0.05
    # bootstrapping ran from its start to the collapse, and never after
    assert [r["bootstrapping"] == "True" for r in rows] == [start <= e <= collapse for e in range(1, 31)]
    # then plain training: no mixing, the lr back on the protocol's milestones (not the early decay)
    assert mixing[collapse:] == [False] * (30 - collapse)
    protocol = json.loads((tmp_path / "ours" / "config.json").read_text())["protocol"]
    milestones = [round(m) for m in protocol["milestones"]]
    for row in rows[collapse:]:
        decays = sum(int(row["epoch"]) >= m for m in milestones)
        assert float(row["lr"]) == pytest.approx(protocol["lr"] * protocol["lr_decay"] ** decays)
    # the network recovers from the collapse and the run ends near plain CE (measured: collapse at 25.7%,
    # best after it 92.5%, selected 86.5% (epoch 4, the warm-up) against CE's 92.5%; without the stop the
    # forced targets keep it at the collapse's accuracy)
    collapsed_acc = float(rows[collapse - 1]["val_acc"])
    assert max(float(r["val_acc"]) for r in rows[collapse:]) > collapsed_acc + 0.4
    assert main(["train", "--method", "ce", "--out", str(tmp_path / "ce"), *common]) == 0
    ce = json.loads((tmp_path / "ce" / "result.json").read_text())
    assert collapsed_acc < ce["selected_val_acc"] - 0.3
    assert result["selected_val_acc"] > ce["selected_val_acc"] - 0.1
    # and says so: the correction is not kept, and the summary names the collapse
    assert result["correction_kept"] is False
    assert "collapsed the network" in stopped and "collapsed the network" in printed
    # and `detect` says where its label issues come from
    capsys.readouterr()
    assert main(["detect", str(tmp_path / "ours"), "--top", "3"]) == 0
    detected = capsys.readouterr().out
    assert f"the correction stopped: at epoch {collapse}" in detected
    assert f"the label issues are of epoch {result['label_issues_epoch']}" in detected


def test_the_report_counts_stopped_corrections_apart_from_kept_warm_ups():
    from types import SimpleNamespace

    from latentmix.report import decision_counts

    def run(**summary):
        return SimpleNamespace(finished=True, summary=lambda: summary)

    data = SimpleNamespace(runs=[run(correction_kept=False, correction_stopped="at epoch 12 the correction had ..."),
                                 run(correction_kept=False, correction_stopped=None),
                                 run(correction_kept=True), run(correction_kept=False, correction_stopped="at epoch 9")])
    text = decision_counts(data)
    assert "2 of 4 runs stopped the correction when it collapsed the network" in text
    # a stopped correction is not also counted as a warm-up kept over the correction
    assert "1 of 4 runs kept their warm-up" in text


@pytest.mark.slow
def test_a_run_interrupted_at_the_collapse_resumes_to_the_same_files(tmp_path, monkeypatch):
    """The stop is read off the metrics rows, not kept in memory: a run interrupted in the epoch the
    correction collapsed resumes as plain training, byte for byte as the run that went straight on."""
    from latentmix.config import RunConfig
    from latentmix.correction import LossCorrection
    from latentmix.training import train

    targets = LossCorrection.batch_targets

    def onto_one_class(self, *args, **kwargs):
        rows = targets(self, *args, **kwargs)
        return None if rows is None else torch.nn.functional.one_hot(torch.zeros_like(rows[:, 0]).long(),
                                                                     rows.shape[1]).to(rows.dtype)

    monkeypatch.setattr(LossCorrection, "batch_targets", onto_one_class)
    data = write_wide_gaussians(tmp_path / "wide.npz")
    config = RunConfig(dataset="wide", data=str(data), method="lr-m-dyr-h", epochs=16, val_split=0.1, seed=0,
                       device="cpu")
    straight = train(config, run_dir=tmp_path / "straight", progress=False)
    collapse = int(straight.correction_stopped.split("at epoch ")[1].split(" ")[0])
    assert collapse < 16

    def stop_at_collapse(row):
        if row["epoch"] == collapse:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir=tmp_path / "resumed", progress=False, on_epoch_end=stop_at_collapse)
    train(config, run_dir=tmp_path / "resumed", resume=True, progress=False)
    for name in ("metrics.csv", "result.json", "label_issues.csv"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name


def test_detect_says_when_its_label_issues_are_the_warm_ups(tmp_path, capsys):
    from latentmix.cli import _print_noise_estimate

    record = {"method": "lr-m-dyr-h", "estimated_noise_rate": 0.3, "label_issues_epoch": 7, "correction_kept": False,
              "correction_stopped": None}
    (tmp_path / "result.json").write_text(json.dumps(record))
    _print_noise_estimate(tmp_path, 100)
    printed = capsys.readouterr().out
    assert "did not beat its own warm-up: the label issues are the warm-up's (epoch 7)" in printed
    assert "estimated share of wrong labels: 0.300" in printed
    record.update(correction_kept=True)
    (tmp_path / "result.json").write_text(json.dumps(record))
    _print_noise_estimate(tmp_path, 100)
    assert "warm-up" not in capsys.readouterr().out
