"""The run folder as a contract (issue 13): new run / resume / overwrite, settings compared on
resume, nothing changed by a refused command, verified checkpoints, label_issues.csv that match
the run, timings outside the result files, exact kill-and-resume for every bootstrapping mode."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from latentmix import fit
from latentmix.cli import main
from latentmix.data import Dataset
from latentmix.data.augment import random_crop_flip
from latentmix.data.spiral import load_spiral
from latentmix.errors import ConfigError
from latentmix.run_folder import RunFolder, record_differences
from latentmix.config import RunConfig
from latentmix.training import train


def _spiral_args(out, *extra):
    return ["train", "--dataset", "spiral", "--device", "cpu", "--out", str(out), "--quiet", *extra]


def _snapshot(folder: Path) -> dict:
    """Every file of a folder, by name, as bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _interrupt_after(epoch):
    def on_epoch_end(row):
        if row["epoch"] == epoch:
            raise KeyboardInterrupt
    return on_epoch_end


def _small_spiral():
    return load_spiral(num_train=120, num_val=60)


def _spiral_config(**changes):
    values = dict(dataset="spiral", method="m-dyr-h", warmup_epochs=1, epochs=4, noise=0.3, seed=3, device="cpu")
    return RunConfig(**{**values, **changes})


def _interrupted_run(run_dir, epoch=2, **changes):
    with pytest.raises(KeyboardInterrupt):
        train(_spiral_config(**changes), dataset=_small_spiral(), run_dir=run_dir, progress=False,
              on_epoch_end=_interrupt_after(epoch))


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("latentmix: error:") and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    return err


# ------------------------------------------------------------------------------------------------
# issue 13.1 / 13.3: a resume continues only the run the folder holds, and a refusal changes nothing


def test_refused_resume_leaves_every_file_as_it_was(tmp_path, capsys):
    out = tmp_path / "A"
    assert main(_spiral_args(out, "--method", "lr-m-dyr-h", "--noise", "0.3", "--epochs", "3", "--seed", "3")) == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert main(_spiral_args(out, "--method", "lr-m", "--noise", "0.1", "--epochs", "3", "--seed", "3", "--resume")) == 2
    err = _error_line(capsys)
    assert "method (was 'lr-m-dyr-h', now 'lr-m')" in err and "noise (was 0.3, now 0.1)" in err
    assert "seed" not in err  # only the fields that differ are named
    assert _snapshot(out) == before


@pytest.mark.parametrize("finished, extra, named", [
    (True, ["--method", "ce"], "method (was 'm-dyr-h', now 'ce')"),  # a finished run resumed as another method
    (False, ["--lr", "0.3"], "lr (was None, now 0.3)"),  # a half-and-half run
    (False, ["--epochs", "3"], "epochs (was 4, now 3)"),  # a shorter run reporting the checkpoint's epochs
])
def test_resume_with_other_settings_names_the_field(tmp_path, capsys, finished, extra, named):
    out = tmp_path / "run"
    if finished:
        train(_spiral_config(dataset="spiral"), run_dir=out, progress=False)
    else:
        with pytest.raises(KeyboardInterrupt):
            train(_spiral_config(), run_dir=out, progress=False, on_epoch_end=_interrupt_after(2))
    before = _snapshot(out)
    args = ["--method", "m-dyr-h", "--warmup-epochs", "1", "--epochs", "4", "--noise", "0.3", "--seed", "3"]
    capsys.readouterr()
    assert main(_spiral_args(out, *args, *extra, "--resume")) == 2
    err = _error_line(capsys)
    assert named in err
    assert _snapshot(out) == before


def test_settings_that_say_where_or_how_fast_may_change_on_resume(tmp_path, capsys):
    """Interrupted with --device auto, resumed with --device cpu --no-amp --threads 1: accepted, and
    the result files are byte-identical to an uninterrupted run's."""
    args = ["--method", "m-dyr-h", "--warmup-epochs", "1", "--epochs", "4", "--noise", "0.3", "--seed", "3"]
    assert main(["train", "--dataset", "spiral", "--out", str(tmp_path / "full"), "--quiet", *args]) == 0
    with pytest.raises(KeyboardInterrupt):
        train(RunConfig(dataset="spiral", method="m-dyr-h", warmup_epochs=1, epochs=4, noise=0.3, seed=3),
              run_dir=tmp_path / "cut", progress=False, on_epoch_end=_interrupt_after(2))
    assert main(_spiral_args(tmp_path / "cut", *args, "--no-amp", "--threads", "1", "--resume")) == 0
    for name in ("result.json", "metrics.csv", "label_issues.csv"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name


def test_record_differences_names_settings_first_then_resolved_entries():
    saved = {"config": {"method": "m", "lr": None, "device": "cuda", "data": "/old/x.npz"},
             "protocol": {"lr": 0.03}, "data_sha256": "a" * 64, "device": "cuda:0", "dataset_info": {"path": "/old"}}
    # where it runs and where the data live: no difference
    same = {"config": {"method": "m", "lr": None, "device": "cpu", "data": "/new/x.npz"},
            "protocol": {"lr": 0.03}, "data_sha256": "a" * 64, "device": "cpu", "dataset_info": {"path": "/new"}}
    assert record_differences(saved, same) == []
    # a setting differs: only the setting is named, not the protocol entry that follows from it
    other_lr = {**same, "config": {**same["config"], "lr": 0.3}, "protocol": {"lr": 0.3}}
    assert record_differences(saved, other_lr) == ["lr (was None, now 0.3)"]
    # the same settings resolve to other data (the file's content changed): the fingerprint is named
    other_data = {**same, "data_sha256": "b" * 64}
    assert record_differences(saved, other_data) == ["data_sha256 (was 'aaaaaaaaaaaa', now 'bbbbbbbbbbbb')"]


def test_resume_compares_the_data_by_content_not_by_path(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "a.npz", features=x, labels=y)
    args = ["--method", "ce", "--epochs", "3", "--noise", "0.2", "--dataset", "d"]
    with pytest.raises(KeyboardInterrupt):
        train(RunConfig(data=str(tmp_path / "a.npz"), dataset="d", method="ce", epochs=3, noise=0.2, device="cpu"),
              run_dir=tmp_path / "run", progress=False, on_epoch_end=_interrupt_after(1))
    # the same content at another path resumes ...
    (tmp_path / "moved").mkdir()
    np.savez(tmp_path / "moved" / "a.npz", features=x, labels=y)
    capsys.readouterr()
    x[0, 0] += 1.0  # ... other content at the run's own path does not
    np.savez(tmp_path / "a.npz", features=x, labels=y)
    assert main(_spiral_args(tmp_path / "run", *args, "--data", str(tmp_path / "a.npz"), "--resume")) == 2
    assert "data_sha256" in _error_line(capsys)
    assert main(_spiral_args(tmp_path / "run", *args, "--data", str(tmp_path / "moved" / "a.npz"), "--resume")) == 0


# ------------------------------------------------------------------------------------------------
# issue 13.2: a folder that holds a run is replaced only with --overwrite


def test_new_run_into_an_interrupted_run_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "I"
    _interrupted_run(out)
    before = _snapshot(out)
    assert {"config.json", "checkpoint.pt", "checkpoint.json", "metrics.csv", "timing.json"} <= set(before)
    capsys.readouterr()
    assert main(_spiral_args(out, "--epochs", "2")) == 2
    err = _error_line(capsys)
    assert "unfinished run" in err and "--resume" in err and "--overwrite" in err
    assert _snapshot(out) == before

    assert main(_spiral_args(out, "--epochs", "2", "--resume", "--overwrite")) == 2
    assert "only one" in _error_line(capsys)
    assert _snapshot(out) == before

    assert main(_spiral_args(out, "--epochs", "2", "--method", "ce", "--overwrite")) == 0
    assert json.loads((out / "config.json").read_text())["config"]["method"] == "ce"
    assert json.loads((out / "result.json").read_text())["epochs"] == 2
    assert len(json.loads((out / "timing.json").read_text())["segments"]) == 1  # nothing of the old run is left


def test_fit_refuses_a_run_folder_unless_overwrite(tmp_path):
    data = _small_spiral()
    model_args = dict(val_inputs=data.val_inputs, val_labels=data.val_labels, method="ce", epochs=1, device="cpu",
                      run_dir=tmp_path / "run", progress=False)

    def model():
        return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))

    fit(model(), data.train_inputs, data.train_labels, **model_args)
    with pytest.raises(ConfigError, match="already holds a finished run"):
        fit(model(), data.train_inputs, data.train_labels, **model_args)
    assert fit(model(), data.train_inputs, data.train_labels, overwrite=True, **model_args).metrics


# ------------------------------------------------------------------------------------------------
# issue 13.6: a checkpoint is verified before use


def _flip_a_weight_byte(run_dir: Path) -> None:
    """Change one byte inside the stored bytes of the first model weight (not in a zip header)."""
    path = run_dir / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    weight = next(iter(torch.load(path, weights_only=True)["model"].values()))
    at = bytes(data).index(weight.numpy().tobytes()) + 2
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damaged_checkpoint_is_refused_by_resume_and_detect(tmp_path, capsys):
    out = tmp_path / "run"
    _interrupted_run(out)
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    _flip_a_weight_byte(out)
    # torch.load alone takes the damaged file and returns other weights
    damaged = torch.load(out / "checkpoint.pt", weights_only=True)
    assert any(not torch.equal(damaged["model"][k], v) for k, v in saved["model"].items())
    before = _snapshot(out)
    with pytest.raises(ConfigError, match="corrupt: its sha256 differs"):
        train(_spiral_config(), dataset=_small_spiral(), run_dir=out, resume=True, progress=False)
    capsys.readouterr()
    assert main(["detect", str(out)]) == 2
    assert "corrupt" in _error_line(capsys)
    assert _snapshot(out) == before


def test_checkpoint_checksum_survives_a_kill_between_its_two_writes(tmp_path):
    folder = RunFolder(tmp_path)
    folder.save_checkpoint({"epoch": 1, "w": torch.ones(3)})
    first = folder.file("checkpoint.pt").read_bytes()
    folder.save_checkpoint({"epoch": 2, "w": torch.zeros(3)})
    # killed after checkpoint.json was written and before checkpoint.pt was replaced
    folder.file("checkpoint.pt").write_bytes(first)
    assert folder.load_checkpoint()["epoch"] == 1
    folder.file("checkpoint.json").unlink()
    with pytest.raises(ConfigError, match="no checksum file"):
        folder.load_checkpoint()


def test_a_run_without_config_json_is_not_resumed(tmp_path):
    out = tmp_path / "run"
    _interrupted_run(out)
    (out / "config.json").unlink()
    with pytest.raises(ConfigError, match="no config.json"):
        train(_spiral_config(), dataset=_small_spiral(), run_dir=out, resume=True, progress=False)


# ------------------------------------------------------------------------------------------------
# issue 13.7: detect uses label_issues.csv only when it matches the run, and reads the run's data


def _detect_count(capsys, out) -> str:
    capsys.readouterr()
    assert main(["detect", str(out), "--top", "0"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("damage", ["truncate", "empty", "header"])
def test_detect_rebuilds_a_label_issues_file_that_does_not_match_the_run(tmp_path, capsys, damage):
    out = tmp_path / "run"
    train(_spiral_config(epochs=2), run_dir=out, progress=False)  # detect rebuilds the data from the config
    path = out / "label_issues.csv"
    original = path.read_bytes()
    lines = original.decode().splitlines(keepends=True)
    path.write_text({"truncate": "".join(lines[:50]), "empty": "",
                     "header": "".join(["a,b,c\n", *lines[1:]])}[damage])
    assert "of 1000 labels" in _detect_count(capsys, out)
    assert path.read_bytes() == original  # rebuilt from the checkpoint's last tracking pass, byte for byte


def test_detect_refuses_a_damaged_label_issues_file_it_cannot_rebuild(tmp_path, capsys):
    out = tmp_path / "run"
    train(_spiral_config(checkpoint=False), dataset=_small_spiral(), run_dir=out, progress=False)
    path = out / "label_issues.csv"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:10]))
    capsys.readouterr()
    assert main(["detect", str(out)]) == 2
    err = _error_line(capsys)
    assert "9 rows" in err and "scores 120 samples" in err and "checkpoint.pt" in err


def test_detect_on_an_unfinished_run_with_a_noisy_labels_file(tmp_path, capsys):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    noisy = y.copy()
    noisy[::5] = 1 - noisy[::5]
    np.savez(tmp_path / "clean.npz", features=x, labels=y)
    np.save(tmp_path / "noisy.npy", noisy)
    config = RunConfig(data=str(tmp_path / "clean.npz"), noisy_labels_file=str(tmp_path / "noisy.npy"),
                       dataset="clean", method="m-dyr-h", warmup_epochs=1, epochs=3, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir=tmp_path / "run", progress=False, on_epoch_end=_interrupt_after(2))
    assert not (tmp_path / "run" / "label_issues.csv").exists()
    printed = _detect_count(capsys, tmp_path / "run")
    assert "of 100 labels" in printed  # every row of the 100-sample file, the validation split included
    with (tmp_path / "run" / "label_issues.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    # every row of the file, by its row number, with the label the noisy-labels file gives it
    assert sorted(int(r["index"]) for r in rows) == list(range(100))
    assert all(int(r["given_label"]) == noisy[int(r["index"])] for r in rows)
    assert sum(int(r["truly_noisy"]) for r in rows) == 20


def test_resume_drops_a_label_issues_file_of_an_earlier_epoch(tmp_path):
    out = tmp_path / "run"
    _interrupted_run(out, epoch=1)
    (out / "label_issues.csv").write_text("index,given_label,p_noisy,predicted_label\n")  # as detect left it
    with pytest.raises(KeyboardInterrupt):
        train(_spiral_config(), dataset=_small_spiral(), run_dir=out, resume=True, progress=False,
              on_epoch_end=_interrupt_after(3))
    assert not (out / "label_issues.csv").exists()  # it described epoch 1; detect rebuilds it for epoch 3


# ------------------------------------------------------------------------------------------------
# issue 13.12: timings live in timing.json, summed over resumes; result files are reproducible


def test_same_seed_runs_write_byte_identical_result_files(tmp_path):
    for name in ("a", "b"):
        train(_spiral_config(), dataset=_small_spiral(), run_dir=tmp_path / name, progress=False)
    for name in ("result.json", "metrics.csv", "label_issues.csv", "config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert "wall_time_s" not in json.loads((tmp_path / "a" / "result.json").read_text())


def test_wall_time_counts_every_process_of_a_resumed_run(tmp_path):
    out = tmp_path / "run"
    _interrupted_run(out)
    first = json.loads((out / "timing.json").read_text())
    assert [s["epochs"] for s in first["segments"]] == [[1, 2]]
    result = train(_spiral_config(), dataset=_small_spiral(), run_dir=out, resume=True, progress=False)
    timing = json.loads((out / "timing.json").read_text())
    segments = timing["segments"]
    assert [s["epochs"] for s in segments] == [[1, 2], [3, 4]]
    assert all(s["wall_time_s"] > 0 for s in segments)
    assert timing["wall_time_s"] == pytest.approx(sum(s["wall_time_s"] for s in segments), abs=2e-3)
    assert result.wall_time_s == pytest.approx(timing["wall_time_s"], abs=2e-3)  # both processes
    assert len(timing["epoch_time_s"]) == 4 and timing["epoch_time_s"][:2] == first["epoch_time_s"]


def test_sparse_tracking_run_checkpoints_and_resumes(tmp_path):
    """track_every > 1: epochs without a tracking pass have no noise model to checkpoint."""
    config = _spiral_config(method="ce", track_every=2, epochs=3)
    full = train(config, dataset=_small_spiral(), run_dir=tmp_path / "full", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(config, dataset=_small_spiral(), run_dir=tmp_path / "cut", progress=False,
              on_epoch_end=_interrupt_after(1))
    resumed = train(config, dataset=_small_spiral(), run_dir=tmp_path / "cut", resume=True, progress=False)
    assert resumed.metrics == full.metrics
    assert (tmp_path / "cut" / "result.json").read_bytes() == (tmp_path / "full" / "result.json").read_bytes()


# ------------------------------------------------------------------------------------------------
# issue 13.8: kill-and-resume is exact for every bootstrapping mode on augmented data


def _tiny_images(seed=0, n=96, classes=3, size=8) -> Dataset:
    """Fashion-like in miniature: class-dependent bright squares on noise, random crop and flip."""
    generator = torch.Generator().manual_seed(seed)

    def split(count):
        labels = torch.arange(count) % classes
        images = 0.3 * torch.randn(count, 1, size, size, generator=generator)
        for c in range(classes):
            images[labels == c, :, 2 * c:2 * c + 3, 1:5] += 1.0
        return images, labels

    (train_x, train_y), (val_x, val_y) = split(n), split(n // 2)
    return Dataset(name="tiny-images", train_inputs=train_x, train_labels=train_y, val_inputs=val_x,
                   val_labels=val_y, num_classes=classes,
                   train_transform=lambda images, gen: random_crop_flip(images, gen, padding=1),
                   info={"augment": "crop 1 + flip"})


@pytest.mark.parametrize("mode", ["reference", "single", "tracked"])
def test_kill_and_resume_is_exact_for_every_bootstrap_forward_on_augmented_data(tmp_path, mode):
    config = RunConfig(dataset="tiny-images", model="small-cnn", width=0.125, method="m-dyr-h", warmup_epochs=1,
                       epochs=4, batch_size=16, noise=0.3, seed=5, bootstrap_forward=mode, device="cpu")
    full = train(config, dataset=_tiny_images(), run_dir=tmp_path / "full", progress=False)
    assert [row["bootstrapping"] for row in full.metrics] == [False, True, True, True]
    with pytest.raises(KeyboardInterrupt):  # killed after epoch 2: epoch 3 bootstraps from epoch 2's pass
        train(config, dataset=_tiny_images(), run_dir=tmp_path / "cut", progress=False,
              on_epoch_end=_interrupt_after(2))
    resumed = train(config, dataset=_tiny_images(), run_dir=tmp_path / "cut", resume=True, progress=False)
    for name in ("result.json", "metrics.csv", "label_issues.csv"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "full" / name).read_bytes(), name
    for key, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    # resuming the finished run trains nothing and rewrites the same files
    before = _snapshot(tmp_path / "cut")
    train(config, dataset=_tiny_images(), run_dir=tmp_path / "cut", resume=True, progress=False)
    after = _snapshot(tmp_path / "cut")
    assert {k: v for k, v in after.items() if k != "timing.json"} == {k: v for k, v in before.items()
                                                                     if k != "timing.json"}


def test_a_field_one_record_lacks_is_named_as_not_recorded():
    saved = {"config": {"method": "m"}}
    assert record_differences(saved, {"config": {"method": "m", "new_setting": 2}}) == [
        "new_setting (was not recorded, now 2)"]


# ------------------------------------------------------------------------------------------------
# issue 15.1: one run builder for train, detect, population and tune; one owner of the folder


def _file_with_noisy_labels(tmp_path, n=100, val=0):
    """A two-class data file (`n` training rows, `val` validation rows in its own val_* arrays) and
    a noisy-labels file flipping every 5th training row; returns (config fields, noisy labels)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n + val, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    arrays = {"features": x[:n], "labels": y[:n]}
    if val:
        arrays.update(val_features=x[n:], val_labels=y[n:])
    noisy = y[:n].copy()
    noisy[::5] = 1 - noisy[::5]
    np.savez(tmp_path / "clean.npz", **arrays)
    np.save(tmp_path / "noisy.npy", noisy)
    return {"data": str(tmp_path / "clean.npz"), "noisy_labels_file": str(tmp_path / "noisy.npy"),
            "dataset": "clean", "device": "cpu"}, noisy


def _label_issues(path):
    with Path(path).open() as handle:
        return {int(row["index"]): row for row in csv.DictReader(handle)}


def test_population_trains_on_the_labels_train_makes_from_a_noisy_labels_file(tmp_path):
    from latentmix.data import load_dataset
    from latentmix.population import train_population
    from latentmix.data.inputs import tensors_sha256

    clean = load_dataset("spiral").train_labels.numpy()
    noisy = clean.copy()
    noisy[::5] = 1 - noisy[::5]  # every 5th label of the two spirals flipped
    np.save(tmp_path / "noisy.npy", noisy)
    config = RunConfig(dataset="spiral", noisy_labels_file=str(tmp_path / "noisy.npy"), method="m", epochs=3,
                       device="cpu")
    train(config, run_dir=tmp_path / "run", progress=False)

    [population] = train_population([config], progress=False)
    assert population.noisy_labels.tolist() == noisy.tolist()  # the file's labels, in its order
    assert int(population.is_noisy.sum()) == len(noisy[::5])
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["labels_sha256"]
    assert tensors_sha256(torch.from_numpy(population.noisy_labels)) == saved  # what the sequential run trained on
    # the spiral schedule over 3 epochs: milestones 100, 250 of 300 scale to 1, 2 (lr 0.03, / 10 at each)
    assert [row["lr"] for row in population.metrics] == pytest.approx([0.003, 0.0003, 0.0003])


def test_runs_on_a_data_file_are_trained_run_by_run(tmp_path):
    """A --data file's protocol moves each run's first lr decay to its own end of early learning
    (measured on a 1,000-sample file, CE, 50 epochs: epoch 9 run alone, against the fixed epoch 25
    a population would step every run with, 66.1% vs 55.0% last accuracy), so its runs are not
    given to a population."""
    from latentmix.population import supports_population, train_population

    fields, _ = _file_with_noisy_labels(tmp_path, n=100, val=20)
    config = RunConfig(**fields, method="ce", epochs=3)
    assert not supports_population(config)
    assert supports_population(RunConfig(dataset="spiral", method="ce", epochs=3))  # a fixed schedule
    with pytest.raises(ConfigError, match="sequential trainer"):
        train_population([config], progress=False)


def test_detect_holds_out_the_samples_train_held_out(tmp_path, capsys):
    fields, noisy = _file_with_noisy_labels(tmp_path, n=100, val=30)
    config = RunConfig(**fields, method="m-dyr-h", warmup_epochs=1, epochs=3, val_split=0.2)
    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir=tmp_path / "run", progress=False, on_epoch_end=_interrupt_after(2))
    _detect_count(capsys, tmp_path / "run")  # built by detect from the config and the checkpoint
    detected = _label_issues(tmp_path / "run" / "label_issues.csv")
    train(config, run_dir=tmp_path / "run", resume=True, progress=False)  # drops detect's file, writes its own
    trained = _label_issues(tmp_path / "run" / "label_issues.csv")

    assert sorted(detected) == sorted(trained) == list(range(100))  # the training rows (the val_* rows are clean)
    assert sum(row["split"] == "holdout" for row in trained.values()) == 20  # 20% of the 100 training rows
    assert {i: row["split"] for i, row in detected.items()} == {i: row["split"] for i, row in trained.items()}
    assert all(int(detected[i]["given_label"]) == noisy[i] for i in range(100))


def test_tune_trains_on_the_labels_of_a_noisy_labels_file(tmp_path):
    pytest.importorskip("optuna")
    from latentmix.tune import tune

    fields, noisy = _file_with_noisy_labels(tmp_path)
    base = RunConfig(**fields, method="m", epochs=2)
    tune(base, trials=1, out_dir=tmp_path / "tune", progress=False, sampler_seed=0, corrections=("none",),
         log=lambda *args: None)
    trial = tmp_path / "tune" / "trials" / "trial-0000"
    rows = _label_issues(trial / "label_issues.csv")
    assert all(int(row["given_label"]) == noisy[i] for i, row in rows.items() if row["split"] == "train")
    train(base, run_dir=tmp_path / "run", progress=False)
    fingerprint = {json.loads((folder / "config.json").read_text())["labels_sha256"] for folder in (trial, tmp_path / "run")}
    assert len(fingerprint) == 1


def _writes_outside_run_folder_module(run_folders, action):
    """Every file operation that changes something inside `run_folders` while `action()` runs, whose
    call stack has no frame of latentmix/run_folder.py: (event, path, innermost latentmix frame)."""
    import sys

    roots = [str(Path(folder).resolve()) for folder in run_folders]
    found = []

    def changes(event, args):
        if event == "open":
            path, mode, flags = args
            writes = ("w" in mode or "a" in mode or "x" in mode or "+" in mode) if isinstance(mode, str) else (
                flags is not None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            return [path] if writes else []
        if event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir"):
            return [args[0], *(args[1:2] if event == "os.rename" else [])]
        return []

    def hook(event, args):
        if not _AUDIT["on"]:
            return
        paths = [str(Path(os.fsdecode(p)).resolve()) for p in changes(event, args) if isinstance(p, (str, bytes, os.PathLike))]
        if not any(path == root or path.startswith(root + os.sep) for path in paths for root in roots):
            return
        frames, frame = [], sys._getframe(1)
        while frame is not None:
            frames.append(frame.f_code.co_filename)
            frame = frame.f_back
        if not any(name.endswith(os.path.join("latentmix", "run_folder.py")) for name in frames):
            where = next((name for name in frames if os.sep + "latentmix" + os.sep in name), frames[0])
            found.append((event, paths[0], where))

    if not _AUDIT["installed"]:
        sys.addaudithook(lambda event, args: _AUDIT["hook"](event, args))
        _AUDIT["installed"] = True
    _AUDIT["hook"], _AUDIT["on"] = hook, True
    try:
        action()
    finally:
        _AUDIT["on"] = False
    return found


import os  # noqa: E402 - used by the audit hook above

_AUDIT = {"installed": False, "on": False, "hook": lambda event, args: None}  # an audit hook cannot be removed


def test_only_run_folder_writes_in_a_run_folder(tmp_path, capsys):
    from latentmix.sweep import run_sweep

    run, sweep = tmp_path / "run", tmp_path / "sweep"
    spiral = [RunConfig(dataset="spiral", method=method, seed=seed, epochs=2, batch_size=250, device="cpu")
              for method in ("ce", "m") for seed in (0, 1)]

    def new_detect_resume():
        with pytest.raises(KeyboardInterrupt):  # a new run, stopped after a checkpoint
            train(_spiral_config(epochs=3), run_dir=run, progress=False, on_epoch_end=_interrupt_after(1))
        _detect_count(capsys, run)  # label_issues.csv of the unfinished run
        train(_spiral_config(epochs=3), run_dir=run, resume=True, progress=False)

    def detect_overwrite_sweep():
        _detect_count(capsys, run)  # rebuilt from the checkpoint
        train(_spiral_config(epochs=2), run_dir=run, overwrite=True, progress=False)
        run_sweep("grid", spiral, sweep, vectorized=True, population_size=4, progress=False)  # one population

    outside = _writes_outside_run_folder_module([run, sweep / "runs"], new_detect_resume)
    (run / "label_issues.csv").write_text("")  # damaged by hand (this test's own write)
    outside += _writes_outside_run_folder_module([run, sweep / "runs"], detect_overwrite_sweep)
    assert sorted(p.name for p in (sweep / "runs").glob("*/result.json")) == ["result.json"] * 4
    assert outside == []


# ------------------------------------------------------------------------------------------------
# issue 25.2: any sequence of kills leaves a folder that resumes to the uninterrupted run's files


class _Killed(BaseException):
    """A simulated kill -9: raised instead of a write, and at every write after it (a dead process
    writes nothing more; no handler of ours catches a BaseException that is not KeyboardInterrupt)."""


def _kill_at_write(monkeypatch, kill_now):
    """Route every run-folder write (all go through `latentmix.io.atomic_write_bytes`) through a
    recorder that raises `_Killed` instead of the write for which `kill_now(index, name)` is true,
    and for every write after it. Returns the names written, in order."""
    import latentmix.io
    import latentmix.run_folder

    real = latentmix.io.atomic_write_bytes
    written, dead = [], []

    def write(path, data):
        name = Path(path).name
        if dead or kill_now(len(written), name):
            dead.append(name)
            raise _Killed(name)
        written.append(name)
        real(path, data)

    monkeypatch.setattr(latentmix.io, "atomic_write_bytes", write)
    monkeypatch.setattr(latentmix.run_folder, "atomic_write_bytes", write)
    return written


def test_two_kills_at_every_write_boundary_leave_a_folder_that_resumes_exactly(tmp_path, monkeypatch):
    """For each write of a run (config.json, then per epoch metrics.csv, selected_model.pt,
    checkpoint.json, checkpoint.pt, timing.json, then the result files): kill the run just before
    it; resume and kill again before the first write of the same file; resume to the end. The
    result files must be the uninterrupted run's, byte for byte, and no temporary file is left.
    The old checkpoint.json copied its "previous" digest from itself, so two kills between its two
    writes left a valid checkpoint that the next resume called corrupt."""
    config = _spiral_config(epochs=3, method="lr-m-dyr-h")

    def run(run_dir, kill_now, resume):
        with monkeypatch.context() as patch:
            written = _kill_at_write(patch, kill_now)
            try:
                train(config, dataset=_small_spiral(), run_dir=run_dir, resume=resume, progress=False)
            except _Killed:
                pass
        return written

    straight = tmp_path / "straight"
    names = run(straight, lambda index, name: False, resume=False)
    assert names.count("checkpoint.json") == 3 and names.count("checkpoint.pt") == 3  # one pair per epoch
    for index, name in enumerate(names):
        run_dir = tmp_path / f"kill-{index}"
        run(run_dir, lambda i, n: i == index, resume=False)
        run(run_dir, lambda i, n: n == name, resume=True)  # the same point again, after the resume
        run(run_dir, lambda i, n: False, resume=True)
        for result_file in ("metrics.csv", "result.json", "label_issues.csv"):
            assert (run_dir / result_file).read_bytes() == (straight / result_file).read_bytes(), (index, name)
        assert not list(run_dir.glob(".*.tmp")), (index, name)


# ------------------------------------------------------------------------------------------------
# issue 25.3: a checkpoint copied from another run's folder does not resume


def test_a_checkpoint_copied_from_another_run_is_refused_naming_the_differences(tmp_path, capsys):
    """Run A (2 epochs, seed 0) and run B (3 epochs, seed 5); B's checkpoint pair copied into A,
    whose result files are deleted: the old resume went on with B's 3 epochs under A's seed 0."""
    a, b = tmp_path / "A", tmp_path / "B"
    assert main(_spiral_args(a, "--epochs", "2", "--seed", "0")) == 0
    assert main(_spiral_args(b, "--epochs", "3", "--seed", "5")) == 0
    for name in ("checkpoint.pt", "checkpoint.json"):
        (a / name).write_bytes((b / name).read_bytes())
    for name in ("result.json", "label_issues.csv"):
        (a / name).unlink()
    before = _snapshot(a)
    capsys.readouterr()
    assert main(_spiral_args(a, "--epochs", "2", "--seed", "0", "--resume")) == 2
    err = _error_line(capsys)
    assert "checkpoint.pt was saved by another run" in err
    assert "epochs (was 2, now 3)" in err and "seed (was 0, now 5)" in err and "--overwrite" in err
    assert _snapshot(a) == before


def test_a_renamed_data_file_still_resumes(tmp_path, capsys):
    """docs: data paths may change on resume; the run's `dataset` name, taken from the file's name,
    changed with it and was refused as another setting."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(120, 4)).astype(np.float32)
    np.savez(tmp_path / "good.npz", features=features, labels=(features[:, 0] > 0).astype(np.int64))
    out = tmp_path / "run"
    args = ["train", "--device", "cpu", "--quiet", "--epochs", "2", "--out", str(out)]
    assert main([*args, "--data", str(tmp_path / "good.npz")]) == 0
    (tmp_path / "good.npz").rename(tmp_path / "renamed.npz")
    (out / "result.json").unlink()
    assert main([*args, "--data", str(tmp_path / "renamed.npz"), "--resume"]) == 0, capsys.readouterr().err


def test_a_resume_removes_the_temporary_files_of_interrupted_writes(tmp_path):
    """issue 25.11: a kill inside an atomic write leaves `.NAME.XXXX.tmp`; the resume removes them
    (and leaves the user's own files alone)."""
    out = tmp_path / "run"
    _interrupted_run(out)
    (out / ".checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (out / ".metrics.csv.x.tmp").write_text("epoch\n")
    (out / "notes.tmp").write_text("the user's")
    train(_spiral_config(), dataset=_small_spiral(), run_dir=out, resume=True, progress=False)
    assert sorted(p.name for p in out.glob("*.tmp")) == ["notes.tmp"] and not list(out.glob(".*.tmp"))
