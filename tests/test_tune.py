"""Tests for latentmix.tune: TPE search over layers/alpha/correction with median pruning."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from latentmix.cli import build_parser, config_from_args, main  # noqa: E402
from latentmix.config import RunConfig  # noqa: E402
from latentmix.tune import expected_noisy_accuracy, train_command, tune  # noqa: E402

TINY_FLAGS = ["--epochs", "3", "--batch-size", "250", "--device", "cpu", "--quiet", "--sampler-seed", "0"]


def _study(out: Path):
    return optuna.load_study(study_name="tune", storage=f"sqlite:///{(out / 'tune.db').resolve()}")


def test_tune_spirals_prints_best_and_a_train_line_and_resumes(tmp_path, capsys):
    out = tmp_path / "tune"
    assert main(["tune", "--noise", "0.2", "--trials", "3", "--out", str(out), *TINY_FLAGS]) == 0
    text = capsys.readouterr().out
    assert "validation: clean labels" in text
    line = next(l.strip() for l in text.splitlines() if l.strip().startswith("latentmix train"))
    best = json.loads((out / "best.json").read_text())
    assert best["validation"] == "clean" and best["command"] == line
    study = _study(out)
    assert len([t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]) == 3
    assert best["best_value"] == max(t.value for t in study.trials if t.state.name == "COMPLETE")
    for trial in study.trials:
        low, high = (int(x) for x in trial.user_attrs["layers"].split("-"))
        assert 0 <= low <= high <= 5  # the spiral MLP's layers: 0 = input .. 5
        assert 0.1 <= trial.params["alpha"] <= 32 and trial.params["correction"] in ("none", "soft", "hard")
        assert len(trial.intermediate_values) >= 1

    # The printed line is a valid `latentmix train` command for the best settings.
    args = build_parser().parse_args(line.split()[1:])
    config = config_from_args(args)
    assert (config.layers, config.correction, config.noise, config.epochs) == (
        best["layers"], best["correction"], 0.2, 3)
    assert config.alpha == pytest.approx(best["alpha"], rel=1e-3)

    # Asking for 4 trials later runs one more, not four.
    assert main(["tune", "--noise", "0.2", "--trials", "4", "--out", str(out), *TINY_FLAGS]) == 0
    assert len([t for t in _study(out).trials if t.state.name in ("COMPLETE", "PRUNED")]) == 4


def test_tune_on_noisy_only_labels_says_so(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=(n, 2))
    labels = (x[:, 0] * x[:, 1] > 0).astype(int)
    flip = rng.random(n) < 0.2
    labels[flip] = 1 - labels[flip]
    path = tmp_path / "mine.csv"
    rows = ["a,b,labels"] + [f"{a:.5f},{b:.5f},{y}" for (a, b), y in zip(x, labels)]
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "tune"
    assert main(["tune", "--data", str(path), "--trials", "2", "--out", str(out), "--corrections", "none",
                 *TINY_FLAGS]) == 0
    text = capsys.readouterr().out
    assert "validation: noisy labels" in text
    assert "increasing linear function" in text and "not a constant offset" in text
    assert f"--data {path}" in text and "--correction none" in text
    assert json.loads((out / "best.json").read_text())["validation"] == "noisy"


def test_fixed_dimensions_are_not_searched(tmp_path):
    base = RunConfig(noise=0.2, epochs=2, batch_size=250, device="cpu", method="lr-m")
    result = tune(base, trials=2, out_dir=tmp_path, fixed_layers="1-2", fixed_alpha=1.5, progress=False,
                  corrections=("hard",), sampler_seed=0, log=lambda *a: None)
    assert (result["layers"], result["alpha"], result["correction"]) == ("1-2", 1.5, "hard")
    assert all(set(t.params) == {"correction"} for t in _study(tmp_path).trials)


def test_pruned_trials_stop_early(tmp_path):
    class PruneOddTrials(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return trial.number % 2 == 1 and max(trial.intermediate_values, default=0) >= 1

    base = RunConfig(noise=0.2, epochs=3, batch_size=250, device="cpu", method="lr-m")
    result = tune(base, trials=4, out_dir=tmp_path, pruner=PruneOddTrials(), progress=False, sampler_seed=0,
                  log=lambda *a: None)
    trials = _study(tmp_path).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "COMPLETE", "PRUNED"]
    assert all(sorted(t.intermediate_values) == [1] for t in trials if t.state.name == "PRUNED")
    assert result["trials_pruned"] == 2 and result["trial"] in (0, 2)


def test_train_command_round_trips():
    config = RunConfig(dataset="spiral", method="lr-m", layers="1-3", alpha=2.5, correction="hard", noise=0.3,
                       seed=4, epochs=20, noise_include_true_label=False, amp=False, batch_size=32)
    line = train_command(config)
    parsed = config_from_args(build_parser().parse_args(line.split()[1:]))
    assert parsed == replace(config, checkpoint=parsed.checkpoint)


def test_noisy_validation_accuracy_is_an_increasing_affine_map():
    """The claim printed for noisy validation labels, checked by simulation: measured accuracy
    against symmetrically corrupted labels is eta/(C-1) + a (1 - eta C/(C-1)) in expectation."""
    rng = np.random.default_rng(1)
    c, eta, n = 5, 0.3, 400_000
    truth = rng.integers(0, c, n)
    noisy = truth.copy()
    flip = rng.random(n) < eta
    noisy[flip] = (truth[flip] + rng.integers(1, c, flip.sum())) % c  # a uniformly drawn other class
    for accuracy in (0.5, 0.8, 0.95):
        correct = rng.random(n) < accuracy
        predictions = np.where(correct, truth, (truth + rng.integers(1, c, n)) % c)
        measured = (predictions == noisy).mean()
        expected = expected_noisy_accuracy(accuracy, eta, c)
        assert measured == pytest.approx(expected, abs=3e-3)
        assert expected == pytest.approx(eta / (c - 1) + accuracy * (1 - eta * c / (c - 1)))
    assert expected_noisy_accuracy(0.9, eta, c) > expected_noisy_accuracy(0.8, eta, c)
