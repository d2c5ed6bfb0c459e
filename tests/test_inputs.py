"""Inputs that cannot mislead (issue 13): every kind of bad input is one clear line naming the field
(the CLI flag, fit's argument, the spec key), the value and the fix; never a traceback, never a run
that quietly trains on something else."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cli_helpers import cli_error as _cli_error
from latentmix import fit
from latentmix.cli import main
from latentmix.config import field_name, validate_run_config
from latentmix.data.checks import MAX_CLASSES
from latentmix.data.array_checks import MAX_VOCAB
from latentmix.data.arrays import load_arrays
from latentmix.selection import stratified_split
from latentmix.errors import ConfigError
from latentmix.config import RunConfig

TRAIN = ["train", "--device", "cpu", "--epochs", "1", "--quiet"]


def _features(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return x, (x[:, 0] > 0).astype(np.int64)


def _write_csv(path: Path, header: list[str], columns: list[np.ndarray]) -> Path:
    rows = [",".join(str(v) for v in values) for values in zip(*columns)]
    path.write_text(",".join(header) + "\n" + "\n".join(rows) + "\n")
    return path


# --------------------------------------------------------------------------------------------
# Run settings: one declaration per RunConfig field, named as the caller wrote it
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra, flag, value", [
    (["--method", "m", "--alpha", "nan"], "--alpha", "nan"),
    (["--method", "m", "--alpha", "inf"], "--alpha", "inf"),
    (["--method", "lr-m", "--layers", ""], "--layers", "''"),
    (["--method", "lr-m", "--layers", "3-1"], "--layers", "'3-1'"),
    (["--method", "m-dyr-h", "--reg-weight", "-5"], "--reg-weight", "-5"),
    (["--method", "m-dyr-h", "--reg-weight", "nan"], "--reg-weight", "nan"),
    (["--weight-decay", "-1"], "--weight-decay", "-1"),
    (["--width", "0"], "--width", "0"),
    (["--width", "-1"], "--width", "-1"),
    (["--width", "nan"], "--width", "nan"),
    (["--lr", "nan"], "--lr", "nan"),
    (["--seed", "-1"], "--seed", "-1"),
    (["--warmup-epochs", "-2"], "--warmup-epochs", "-2"),
    (["--batch-size", "1"], "--batch-size", "1"),
    (["--device", "gpu"], "--device", "'gpu'"),
    (["--noise", "nan"], "--noise", "nan"),
])
def test_bad_run_settings_name_the_flag(tmp_path, capsys, extra, flag, value):
    out = tmp_path / "run"
    line = _cli_error(capsys, TRAIN + ["--out", str(out), *extra])
    assert f"{flag} must be" in line and f"got {value}" in line
    assert not (out / "result.json").exists() and not (out / "config.json").exists()


def test_layers_beyond_the_model_are_refused_before_loading_data(capsys, tmp_path):
    line = _cli_error(capsys, TRAIN + ["--out", str(tmp_path / "r"), "--method", "lr-m", "--layers", "0-9"])
    assert "--layers" in line and "out of range" in line and "0..5" in line


def test_synthetic_noise_beside_a_noisy_labels_file_is_refused(tmp_path, capsys):
    x, y = _features()
    data = _write_csv(tmp_path / "d.csv", ["a", "b", "c", "labels"], [x[:, 0], x[:, 1], x[:, 2], y])
    noisy = tmp_path / "noisy.npy"
    np.save(noisy, 1 - y)
    line = _cli_error(capsys, TRAIN + ["--out", str(tmp_path / "r"), "--data", str(data), "--noisy-labels", str(noisy),
                                       "--noise", "0.5"])
    assert "--noise 0.5" in line and "--noisy-labels" in line and "drop --noise" in line


def test_naming_styles():
    assert field_name("reg_weight", "cli") == "--reg-weight"
    assert field_name("noisy_labels_file", "cli") == "--noisy-labels"
    assert field_name("alpha", "fit") == "fit argument alpha"
    assert field_name("alpha", "spec") == "spec key 'alphas'"
    assert field_name("lr", "spec") == "[settings] lr"
    assert field_name("lr", "key") == "setting 'lr'"
    with pytest.raises(ConfigError, match=r"\[settings\] lr must be a finite number in \(0, 1000\] .*, got -1.0"):
        validate_run_config(RunConfig(lr=-1.0), "spec")
    with pytest.raises(ConfigError, match="setting 'epochs' must be a whole number >= 1, got 'two'"):
        RunConfig.from_dict({"epochs": "two"})
    assert RunConfig(alpha=2, epochs=3).validate("cli").epochs == 3  # integers are fine numbers


def test_mix_layer_counts_match_the_built_models():
    from latentmix.data import Dataset
    from latentmix.models import build_model, mix_layer_counts

    def dataset(inputs, info=None):
        return Dataset("d", inputs, torch.tensor([0, 1]), inputs, torch.tensor([0, 1]), 2, info=info or {})

    inputs = {"spiral-mlp": torch.zeros(2, 2), "mlp": torch.zeros(2, 5), "small-cnn": torch.zeros(2, 1, 28, 28),
              "preact-resnet18": torch.zeros(2, 3, 32, 32),
              "text": torch.zeros(2, 6, dtype=torch.long)}
    # the architectures as documented (README, docs/algorithm.md), and each model as built
    assert mix_layer_counts() == {"spiral-mlp": 5, "mlp": 2, "small-cnn": 3, "preact-resnet18": 4, "text": 3}
    for name, count in mix_layer_counts().items():
        info = {"input_kinds": {"__single__": "tokens"}, "vocab_sizes": {"__single__": 5}} if name == "text" else {}
        model = build_model(name, dataset(inputs[name], info), width=0.25)
        assert len(model.mix_points) == count, name


# --------------------------------------------------------------------------------------------
# Data files: labels that cannot leak, class ids inside the classes, sizes that can be built
# --------------------------------------------------------------------------------------------


def test_two_label_columns_are_refused_not_used_as_a_feature(tmp_path, capsys):
    x, y = _features()
    path = _write_csv(tmp_path / "both.csv", ["a", "b", "c", "label", "labels"], [x[:, 0], x[:, 1], x[:, 2], y, y])
    with pytest.raises(ConfigError, match=r"2 label columns \('labels', 'label'\).*label_key"):
        load_arrays(path)
    line = _cli_error(capsys, TRAIN + ["--out", str(tmp_path / "r"), "--data", str(path)])
    assert "'label'" in line and "'labels'" in line
    np.savez(tmp_path / "both.npz", x=x, label=y, labels=y)
    with pytest.raises(ConfigError, match="2 label arrays"):
        load_arrays(tmp_path / "both.npz")
    # naming one: the other is still no feature (the target must not leak in)
    chosen = load_arrays(path, label_key="labels")
    assert chosen.info["feature_columns"] == ["a", "b", "c"] and chosen.info["ignored_keys"] == ["label"]
    assert chosen.train_inputs.shape[1] == 3


def test_noisy_labels_file_ids_must_be_classes_of_the_data(tmp_path, capsys):
    x, y = _features()
    data = _write_csv(tmp_path / "d.csv", ["a", "b", "c", "labels"], [x[:, 0], x[:, 1], x[:, 2], y])
    noisy = y.copy()
    noisy[5] = 99
    np.save(tmp_path / "noisy.npy", noisy)
    line = _cli_error(capsys, TRAIN + ["--out", str(tmp_path / "r"), "--data", str(data), "--noisy-labels",
                                       str(tmp_path / "noisy.npy")])
    assert "noisy.npy" in line and "class id 99" in line and "row 5" in line and "0..1" in line


def test_validation_classes_must_be_training_classes(tmp_path):
    x, y = _features()
    y3 = np.where(y == 1, 2, 0)  # training classes 0 and 2
    val = y3[:10].copy()
    val[0] = 1  # inside 0..2 but never a training label
    np.savez(tmp_path / "v.npz", x=x, labels=y3, val_x=x[:10], val_labels=val)
    with pytest.raises(ConfigError, match=r"'val_labels'.*class\(es\) \[1\] that no training label has"):
        load_arrays(tmp_path / "v.npz")
    val[0] = 7  # beyond the classes
    np.savez(tmp_path / "w.npz", x=x, labels=y3, val_x=x[:10], val_labels=val)
    with pytest.raises(ConfigError, match="'val_labels' holds class id 7.*classes 0..2"):
        load_arrays(tmp_path / "w.npz")


def test_stratified_split_keeps_every_class_in_training():
    labels = np.array([0] * 10 + [1] * 10 + [2])  # class 2 has one sample
    for seed in range(20):
        train, val = stratified_split(labels, 0.5, seed)
        assert 2 in labels[train]


def test_absurd_class_ids_and_single_class_data(tmp_path, capsys):
    x, y = _features()
    huge = y.copy()
    huge[0] = 10**9
    np.savez(tmp_path / "huge.npz", x=x, labels=huge)
    line = _cli_error(capsys, TRAIN + ["--out", str(tmp_path / "r"), "--data", str(tmp_path / "huge.npz")])
    assert "class id 1000000000" in line and str(MAX_CLASSES) in line
    np.savez(tmp_path / "one.npz", x=x, labels=np.zeros_like(y))
    line = _cli_error(capsys, TRAIN + ["--out", str(tmp_path / "r"), "--data", str(tmp_path / "one.npz")])
    assert "every training label is class 0" in line and "two classes" in line


def test_non_utf8_csv_and_huge_token_ids(tmp_path, capsys):
    path = tmp_path / "latin1.csv"
    path.write_bytes("a,b,\xe9t\xe9,labels\n".encode("latin-1") + b"1,2,3,0\n4,5,6,1\n1,2,3,0\n4,5,6,1\n")
    line = _cli_error(capsys, TRAIN + ["--out", str(tmp_path / "r"), "--data", str(path)])
    assert "latin1.csv is not UTF-8" in line and "0xe9" in line
    labels_file = tmp_path / "noisy.csv"
    labels_file.write_bytes(b"\xe9\n0\n1\n")
    from latentmix.data.array_files import read_label_file

    with pytest.raises(ConfigError, match="not UTF-8"):
        read_label_file(labels_file)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 10, size=(40, 4))
    tokens[3, 2] = 2**40
    np.savez(tmp_path / "tok.npz", tokens=tokens, labels=np.arange(40) % 2)
    line = _cli_error(capsys, TRAIN + ["--out", str(tmp_path / "r"), "--data", str(tmp_path / "tok.npz")])
    assert "token id 1099511627776" in line and str(MAX_VOCAB) in line


def test_out_of_memory_is_one_line(tmp_path, capsys, monkeypatch):
    import latentmix.models.small as small
    from latentmix.correction import LossCorrection

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 3072000000 bytes. Error code 12 (Cannot allocate memory)")

    # at model build: a ConfigError that names the model and its input sizes
    monkeypatch.setattr(small, "SpiralMLP", no_memory)
    line = _cli_error(capsys, TRAIN + ["--out", str(tmp_path / "a")])
    assert "spiral-mlp model for spiral (inputs (4,), 2 classes) does not fit in memory (can't allocate" in line
    # anywhere later (the first backward): the CLI says so in one line
    monkeypatch.undo()
    monkeypatch.setattr(LossCorrection, "loss", no_memory)
    line = _cli_error(capsys, TRAIN + ["--out", str(tmp_path / "b")])
    assert "out of memory (can't allocate memory: you tried to allocate 3072000000 bytes" in line


# --------------------------------------------------------------------------------------------
# fit: its arguments, and the model against the tensors
# --------------------------------------------------------------------------------------------


class TwoLayer(nn.Module):
    mix_points = ("hidden",)

    def __init__(self, inputs: int = 3, classes: int = 2):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(inputs, 8), nn.ReLU())
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        return self.head(self.hidden(x))


def _fit(model=None, **changes):
    torch.manual_seed(0)
    x = torch.randn(32, 3)
    y = (x[:, 0] > 0).long()
    args = dict(train_inputs=x, train_labels=y, val_inputs=x[:8], val_labels=y[:8], method="m", epochs=1,
                progress=False, device="cpu")
    args.update(changes)
    return fit(model or TwoLayer(), args.pop("train_inputs"), args.pop("train_labels"), **args)


@pytest.mark.parametrize("changes, match", [
    ({"seed": 1.7}, "fit argument seed must be a whole number in \\[0, 9223372036854775807\\], got 1.7"),
    ({"epochs": "3"}, "fit argument epochs must be a whole number >= 1, got '3'"),
    ({"alpha": float("nan")}, "fit argument alpha must be a finite number > 0"),
    ({"reg_weight": float("nan")}, "fit argument reg_weight must be a finite number >= 0"),
    ({"lr": 0}, "fit argument lr must be a finite number in \\(0, 1000\\]"),
    ({"layers": ["a"]}, "fit argument layers must be"),
    ({"num_classes": 2.5}, "fit argument num_classes"),
])
def test_fit_arguments_are_checked(changes, match):
    with pytest.raises(ConfigError, match=match):
        _fit(**changes)


def test_fit_checks_the_model_against_the_classes_and_inputs(tmp_path):
    x = torch.randn(32, 3)
    y = (x[:, 0] > 0).long()
    three = y.clone()
    three[0] = 2
    with pytest.raises(ConfigError, match=r"model returns 2 logits per sample, but the labels go up to class 2"):
        _fit(train_labels=three)
    val = y[:8].clone()
    val[0] = 2
    with pytest.raises(ConfigError, match=r"validation labels hold class\(es\) \[2\]"):
        _fit(val_labels=val, train_inputs=x, train_labels=y)
    with pytest.raises(ConfigError, match=r"num_classes=3 but model returns 2 logits"):
        _fit(num_classes=3, train_inputs=x, train_labels=three, val_labels=y[:8])
    with pytest.raises(ConfigError, match=r"model cannot take train_inputs .*\(2, 3\).*mat1 and mat2"):
        _fit(TwoLayer(inputs=5))
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ConfigError, match=r"train_inputs holds 1 NaN/inf value\(s\) \(first in sample 3\)"):
        _fit(train_inputs=bad, train_labels=y)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="fit argument run_dir .* is a file"):
        _fit(run_dir=tmp_path / "file")
    # a head wider than the labels: the model's width is the number of classes
    result = _fit(TwoLayer(classes=4))
    assert result.model.head.out_features == 4 and 0.0 <= result.best_val_acc <= 1.0


# --------------------------------------------------------------------------------------------
# Output folders, detect, stores
# --------------------------------------------------------------------------------------------


def test_out_must_be_a_writable_folder(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    line = _cli_error(capsys, TRAIN + ["--out", str(tmp_path / "afile")])
    assert "--out" in line and "is a file" in line
    line = _cli_error(capsys, TRAIN + ["--out", str(tmp_path / "afile" / "run")])
    assert "--out" in line and "cannot write there" in line


def test_out_folder_without_permission(tmp_path, capsys, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "write_bytes", refuse)  # also where root may write anywhere
    line = _cli_error(capsys, TRAIN + ["--out", str(tmp_path / "run")])
    assert "--out" in line and "cannot write there (Permission denied)" in line


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_read_only_folder(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        line = _cli_error(capsys, TRAIN + ["--out", str(folder / "run")])
    finally:
        folder.chmod(0o700)
    assert "cannot write there" in line


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("detect") / "run"
    assert main(TRAIN + ["--out", str(out), "--noise", "0.2"]) == 0
    return out


@pytest.mark.parametrize("extra, flag", [(["--top", "-3"], "--top"), (["--threshold", "nan"], "--threshold"),
                                         (["--threshold", "1.5"], "--threshold")])
def test_detect_options(finished_run, capsys, extra, flag):
    capsys.readouterr()
    assert flag in _cli_error(capsys, ["detect", str(finished_run), *extra])


def test_detect_with_damaged_files(finished_run, tmp_path, capsys):
    """A damaged label_issues.csv is either refused in one line naming it, or rebuilt from the
    run's checkpoint; a damaged config.json is one line naming it. Never a traceback."""
    import shutil

    def detect_once(run: Path) -> None:
        code = main(["detect", str(run)])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        if code == 2:
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1 and "label_issues.csv" in lines[0] and "p_noisy" in lines[0], err
        else:  # rebuilt: a whole, readable file again
            assert code == 0 and "p_noisy" in (run / "label_issues.csv").read_text().splitlines()[0]

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "label_issues.csv").write_text("index,given\n1,zz\n")
    detect_once(run)
    rows = [line.split(",") for line in (finished_run / "label_issues.csv").read_text().splitlines()]
    rows[3][rows[0].index("p_noisy")] = "x"
    (run / "label_issues.csv").write_text("\n".join(",".join(row) for row in rows) + "\n")
    detect_once(run)
    (run / "label_issues.csv").unlink()
    (run / "config.json").write_text("{garbled")
    line = _cli_error(capsys, ["detect", str(run)])
    assert "config.json is unreadable" in line and "JSONDecodeError" in line


def test_damaged_sweep_store(tmp_path, capsys):
    folder = tmp_path / "grid"
    folder.mkdir()
    (folder / "sweep.db").write_bytes(b"garbage" * 100)
    for args in (["report", str(folder / "sweep.db")],
                 ["reproduce", "spiral", "--epochs", "1", "--seeds", "1", "--noise", "0", "--out", str(folder),
                  "--quiet"]):
        line = _cli_error(capsys, args)
        assert "sweep.db" in line and "not a database" in line and "move it away" in line


# --------------------------------------------------------------------------------------------
# Sweeps and reproduce: specs checked when read, failures that say so
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values, message", [
    ({"epochs": "two"}, "spec key 'epochs' must be a whole number >= 1, got 'two'"),
    ({"settings": {"lr": -1.0}}, r"\[settings\] lr must be a finite number in \(0, 1000\] .*got -1.0"),
    ({"settings": {"weight_decay": "0.1"}},
     r"\[settings\] weight_decay must be a finite number in \[0, 1000\] .*got '0.1'"),
    ({"methods": ["lr-m"], "layers": ["9-9"]}, "spec key 'layers' 9-9: mix layer 9 is out of range.*0..5"),
    ({"methods": ["lr-m"], "layers": [1.5]}, "spec key 'layers' must hold ranges"),
    ({"methods": ["m"], "alphas": ["x"]}, "spec key 'alphas' must hold numbers, got 'x'"),
    ({"methods": ["m"], "alphas": [float("nan")]}, "spec key 'alphas' must be a finite number > 0 .*got nan"),
    ({"noise": ["0.2"]}, "spec key 'noise' must hold numbers"),
    ({"seeds": [1.5]}, "seeds"),
])
def test_sweep_spec_values_are_checked_when_read(values, message):
    from latentmix.sweep import spec_from_dict

    with pytest.raises(ConfigError, match=message):
        spec_from_dict({"name": "s", **values})


def test_sweep_whose_runs_fail_exits_nonzero_and_prints_each_error(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(f'name = "f"\nepochs = 1\nseeds = 2\nout = "{tmp_path / "out"}"\n'
                    '[settings]\ndevice = "cpu"\nnoisy_labels_file = "/nonexistent/labels.npy"\n')
    assert main(["sweep", "run", str(spec), "--quiet", "--sequential"]) == 1
    captured = capsys.readouterr()
    assert "2 failed" in captured.out and "Traceback" not in captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("latentmix: run ")]
    assert [line.split()[2] for line in errors] == ["ce_n0_s0", "ce_n0_s1"]
    assert all("label file not found: /nonexistent/labels.npy" in line for line in errors)
    header = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert header[0].startswith("method,") and len(header) == 1  # written, with no finished run in it


@pytest.mark.parametrize("extra, expected", [
    (["--epochs", "0"], "--epochs must be a whole number >= 1, got 0"),
    (["--alpha", "nan"], "--alpha must be a finite number > 0"),
    (["--methods", "bogus"], "--methods 'bogus' is not in the spiral table"),
])
def test_reproduce_refuses_bad_arguments_before_running(tmp_path, capsys, extra, expected):
    out = tmp_path / "rep"
    line = _cli_error(capsys, ["reproduce", "spiral", "--seeds", "1", "--noise", "0", "--out", str(out), "--quiet",
                               "--epochs", "1", *extra])
    assert expected in line
    assert not (out / "runs").exists()


def test_reproduce_methods_picks_rows_and_failures_exit_nonzero(tmp_path, capsys, monkeypatch):
    out = tmp_path / "rep"
    args = ["reproduce", "spiral", "--seeds", "1", "--noise", "0", "--epochs", "1", "--out", str(out), "--quiet",
            "--methods", "ce,lr-m(1-3)"]
    assert main(args) == 0
    runs = sorted(path.name for path in (out / "runs").iterdir())
    assert runs == ["ce_n0_s0", "lr-m_L1-3_n0_s0"]
    table = (out / "table.md").read_text()
    assert "| lr-m(1-3) |" in table and "| m(0-0) |" not in table
    capsys.readouterr()

    import latentmix.population as population

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(population, "train_population", boom)
    assert main(args[:-1] + ["m,lr-m(2-4)", "--out", str(tmp_path / "rep2")]) == 1
    err = capsys.readouterr().err
    assert "latentmix: run m_n0_s0 failed: RuntimeError: boom" in err
    assert "latentmix: run lr-m_L2-4_n0_s0 failed: RuntimeError: boom" in err


def test_rerun_after_a_kill_does_not_wait_out_the_grace_period(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    from optuna.trial import TrialState

    from latentmix.sweep import SweepStore, claim_runs, run_sweep, set_user_attrs

    url = f"sqlite:///{(tmp_path / 'sweep.db').resolve()}"
    configs = [RunConfig(dataset="spiral", epochs=1, batch_size=250, device="cpu", seed=seed) for seed in range(2)]
    store = SweepStore(url, grace_period=60)
    study, _ = store.prepare("killed", configs)
    # a worker process of this machine took a run, then was killed (its process is gone)
    [claim] = claim_runs(store, study, limit=1, vectorized=False)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    set_user_attrs(claim.trial, {"worker": f"{socket.gethostname()}:{gone.pid}"})

    started = time.perf_counter()
    results = run_sweep("killed", configs, tmp_path, storage=url, vectorized=False, progress=False, grace_period=60)
    assert len(results) == 2
    assert time.perf_counter() - started < 30  # not the 60 s grace period
    states = sorted(t.state.name for t in store.load("killed").get_trials() if t.user_attrs["run_id"] == claim.run_id)
    assert states == [TrialState.COMPLETE.name, TrialState.FAIL.name]


def test_report_names_the_run_folders_it_skips(finished_run, tmp_path, capsys):
    import shutil

    root = tmp_path / "grid"
    for name in ("a", "b", "c"):
        shutil.copytree(finished_run, root / "runs" / name)
    (root / "runs" / "a" / "result.json").write_text("{bad")
    (root / "runs" / "b" / "result.json").write_text("{bad")
    (root / "runs" / "b" / "config.json").write_text("{bad")
    # one finished run: the report is written, and the skipped folders are named
    assert main(["report", str(root), "--no-plots", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 run folder(s) with unreadable files: a (result.json unreadable), b (config.json, result.json " \
           "unreadable)" in err
    assert "a (result.json unreadable)" in (root / "report" / "report.md").read_text()
    # none finished: the error says why, not "no finished runs" alone
    shutil.rmtree(root / "runs" / "c")
    line = _cli_error(capsys, ["report", str(root), "--no-plots", "--quiet"])
    assert "no finished runs" in line and "a (result.json unreadable)" in line


# --------------------------------------------------------------------------------------------
# What a user reads
# --------------------------------------------------------------------------------------------


def test_help_states_each_default_once_and_lists_every_method(capsys):
    import re

    from latentmix.methods import PRESETS

    for command in (["train"], ["detect"], ["tune"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert not re.search(r"\(default[^)]*\) \(default", text), command
        assert "(default: None)" not in text and "(default: False)" not in text, command
        if command == ["train"]:
            assert all(name in text.rsplit("--method METHOD", 1)[1].split("--layers")[0] for name in PRESETS)
        if command == ["detect"]:
            assert "--threshold THRESHOLD count the labels whose P(noisy) is above this probability" in text
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("### Methods", 1)[1].split("\n\n", 2)[1]
    assert all(f"`{name}`" in table for name in PRESETS)


def test_a_noisy_labels_file_run_says_its_measured_noise(tmp_path, capsys):
    x, y = _features(80)
    data = _write_csv(tmp_path / "d.csv", ["a", "b", "c", "labels"], [x[:, 0], x[:, 1], x[:, 2], y])
    noisy = y.copy()
    noisy[:30] = 1 - noisy[:30]
    np.save(tmp_path / "noisy.npy", noisy)
    out = tmp_path / "grid" / "runs" / "filerun"
    assert main(TRAIN + ["--out", str(out), "--data", str(data), "--noisy-labels", str(tmp_path / "noisy.npy")]) == 0
    actual = json.loads((out / "result.json").read_text())["actual_noise_rate"]
    assert actual > 0.2
    assert f"noise {actual:.3g} (given noisy labels)" in capsys.readouterr().out
    from latentmix.report_data import load_report_data

    [run] = load_report_data(str(tmp_path / "grid"), progress=False).runs
    assert run.noise == round(actual, 6)  # filed by its rate, not under 0%


def test_progress_without_a_terminal_writes_plain_lines(tmp_path, capsys):
    assert main(["train", "--device", "cpu", "--epochs", "3", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err  # captured stderr is no terminal: no bar, no escape codes, a line per epoch
    assert "\x1b" not in err and "\r" not in err
    assert [line.split(": ", 1)[1].split(",")[0] for line in err.splitlines()] == ["epoch 1/3", "epoch 3/3"] or \
        [line.split(": ", 1)[1].split(",")[0] for line in err.splitlines()] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]


def test_population_bar_shows_the_best_so_far(monkeypatch):
    import tqdm.auto

    from latentmix.population import train_population

    shown = []

    class Bar:
        def __init__(self, iterable, **kwargs):
            self.iterable = iterable

        def __iter__(self):
            return iter(self.iterable)

        def set_postfix(self, **values):
            shown.append(float(values["best_val_acc"]))

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    configs = [RunConfig(method="m", epochs=25, lr=0.5, seed=seed, device="cpu") for seed in range(3)]
    results = train_population(configs, progress=True)
    best = [max(max(row["val_acc"] for row in r.metrics[:epoch]) for r in results) for epoch in range(1, 26)]
    assert shown == pytest.approx(best, abs=1e-4)
    assert shown == sorted(shown)


@pytest.mark.parametrize("command", [
    ["reproduce", "spiral", "--epochs", "1", "--seeds", "1", "--noise", "0", "--quiet"],
    ["tune", "--trials", "1", "--epochs", "1", "--quiet"],
])
def test_grid_commands_refuse_a_file_as_out(tmp_path, capsys, command):
    (tmp_path / "afile").write_text("x")
    line = _cli_error(capsys, [*command, "--out", str(tmp_path / "afile")])
    assert "--out" in line and "is a file" in line


def test_divergence_names_the_learning_rate(tmp_path, capsys):
    line = _cli_error(capsys, ["train", "--device", "cpu", "--epochs", "2", "--quiet", "--method", "m-dyr-h",
                               "--warmup-epochs", "1", "--lr", "1000", "--out", str(tmp_path / "r")])
    assert "training diverged" in line and "--lr" in line and "now 1000" in line
    line = _cli_error(capsys, TRAIN + ["--lr", "1e300", "--out", str(tmp_path / "s")])
    assert "--lr must be a finite number in (0, 1000]" in line
