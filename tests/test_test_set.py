"""A test set that only scores (issue 25 item 7): a file's ``test_*`` arrays and an image folder's
``test/`` are evaluated each epoch (``test_acc``) but select nothing, and the train summary says
which set selected and which scored, warning when one set did both."""

import csv
import json

import numpy as np
import pytest
import torch

from data_helpers import three_noisy_classes
from latentmix.cli import main
from latentmix.config import RunConfig
from latentmix.data import load_dataset
from latentmix.data.arrays import load_arrays
from latentmix.errors import ConfigError
from latentmix.models import build_model
from latentmix.training import train


def _files(tmp_path):
    """The same training and validation arrays twice: without and with a test set."""
    x, _, noisy = three_noisy_classes(300, seed=0)
    xv, yv, _ = three_noisy_classes(60, seed=1)
    xt, yt, _ = three_noisy_classes(90, seed=2)
    common = dict(features=x, labels=noisy, val_features=xv, val_labels=yv)
    np.savez(tmp_path / "plain.npz", **common)
    np.savez(tmp_path / "tested.npz", **common, test_features=xt, test_labels=yt)
    return tmp_path / "plain.npz", tmp_path / "tested.npz", xt, yt


def _rows(run_dir):
    with (run_dir / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_test_rows_select_nothing_and_score_the_selected_model(tmp_path):
    plain, tested, xt, yt = _files(tmp_path)
    for path in (plain, tested):
        train(RunConfig(dataset="mine", data=str(path), epochs=8, seed=0), run_dir=tmp_path / path.stem,
              progress=False)
    plain_rows, tested_rows = _rows(tmp_path / "plain"), _rows(tmp_path / "tested")
    assert "test_acc" not in plain_rows[0] and all(row["test_acc"] for row in tested_rows)
    # the test rows change nothing else: every other column of every epoch, hence the selected epoch
    assert [{k: v for k, v in row.items() if k != "test_acc"} for row in tested_rows] == plain_rows
    plain_result = json.loads((tmp_path / "plain" / "result.json").read_text())
    result = json.loads((tmp_path / "tested" / "result.json").read_text())
    test_keys = {"selected_test_acc", "best_test_acc", "last_test_acc"}
    assert {k: v for k, v in result.items() if k not in test_keys} == plain_result
    assert test_keys.isdisjoint(plain_result)

    # selected_test_acc: the kept model (selected_model.pt) on the test arrays, computed here
    dataset = load_arrays(tested)
    model = build_model(None, dataset)
    model.load_state_dict(torch.load(tmp_path / "tested" / "selected_model.pt", weights_only=True))
    model.eval()
    with torch.no_grad():
        predictions = model(dataset.eval_transform(torch.from_numpy(xt))).argmax(1).numpy()
    assert result["selected_test_acc"] == pytest.approx(float((predictions == yt).mean()), abs=1e-6)
    accs = [float(row["test_acc"]) for row in tested_rows]
    assert result["last_test_acc"] == pytest.approx(accs[-1], abs=1e-6)
    assert result["best_test_acc"] == pytest.approx(max(accs), abs=1e-6)


def test_the_summary_names_the_selecting_and_scoring_sets_and_warns_when_they_are_one(tmp_path, capsys):
    plain, tested, _, _ = _files(tmp_path)
    command = ["train", "--epochs", "2", "--device", "cpu", "--quiet"]
    assert main(command + ["--data", str(plain), "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "selected by your validation set, scored on your validation set" in out
    assert "warning: the selected accuracy was measured on the set it was selected by (optimistic)" in out

    assert main(command + ["--data", str(tested), "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "selected by your validation set, scored on your test set: test acc" in out and "warning" not in out

    # a file without val_* arrays: a split of it selects and scores, said as what it is, with the warning
    x, _, noisy = three_noisy_classes(300, seed=0)
    np.savez(tmp_path / "bare.npz", features=x, labels=noisy)
    assert main(command + ["--data", str(tmp_path / "bare.npz"), "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    split = "a validation split of your file (its labels as given)"
    assert f"selected by {split}, scored on {split}" in out and "warning: the selected accuracy" in out
    # with clean labels in the file, its split is scored against them: said so, not "as given"
    x, clean, noisy = three_noisy_classes(300, seed=0)
    np.savez(tmp_path / "known.npz", features=x, labels=noisy, clean_labels=clean)
    assert main(command + ["--data", str(tmp_path / "known.npz"), "--out", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    split = "a validation split of your file (its clean labels)"
    assert f"selected by {split}, scored on {split}" in out and "warning: the selected accuracy" in out

    # a noisy split of the training labels selects: the validation set only scores, no warning
    assert main(command + ["--data", str(plain), "--val-split", "0.2", "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "selected by the noisy held-out split, scored on the validation set" in out and "warning" not in out


@pytest.mark.parametrize("arrays, message", [
    ({"test_features": np.zeros((5, 6), np.float32)}, "has test arrays ['test_features'] but no 'test_labels'"),
    ({"test_labels": np.zeros(5, np.int64)}, "lacks test inputs ['test_features']"),
    ({"test_features": np.zeros((5, 4), np.float32), "test_labels": np.zeros(5, np.int64)},
     "test array 'test_features' has shape (5, 4)"),
    ({"test_features": np.zeros((5, 6), np.float32), "test_labels": np.zeros(4, np.int64)},
     "'test_features' has 5 samples but 'test_labels' has 4"),
    ({"test_features": np.zeros((5, 6), np.float32), "test_labels": np.array([0, 1, 2, 7, 0])},
     "label array 'test_labels' holds class id 7"),
])
def test_bad_test_arrays_are_one_clear_error(tmp_path, arrays, message):
    x, y, _ = three_noisy_classes(60, seed=0)
    np.savez(tmp_path / "bad.npz", features=x, labels=y, **arrays)
    with pytest.raises(ConfigError) as error:
        load_arrays(tmp_path / "bad.npz")
    assert message in str(error.value)


def test_test_arrays_are_never_inputs_nor_split(tmp_path):
    x, y, _ = three_noisy_classes(100, seed=0)
    xt, yt, _ = three_noisy_classes(30, seed=3)
    np.savez(tmp_path / "d.npz", features=x, labels=y, test_features=xt, test_labels=yt)
    dataset = load_arrays(tmp_path / "d.npz", val_fraction=0.2)
    assert (dataset.num_train, dataset.num_val, dataset.num_test) == (80, 20, 30)  # the split is of the 100 only
    assert isinstance(dataset.train_inputs, torch.Tensor) and dataset.train_inputs.shape[1] == 6
    np.testing.assert_array_equal(dataset.test_inputs.numpy(), xt)
    np.testing.assert_array_equal(dataset.test_labels.numpy(), yt)
    assert dataset.info["test_source"] == "file"


Image = pytest.importorskip("PIL.Image", reason="Pillow reads the image folders")


def _images(root, per_class, seed):
    """Two classes of 6x4 grey PNGs: class k bright in rows 2k..2k+1."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(("ant", "bee")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, size=(4, 6), dtype=np.uint8)
            pixels[2 * k: 2 * k + 2] = 220
            Image.fromarray(pixels, mode="L").save(root / name / f"{i:02d}.png")


def test_an_image_folder_test_folder_is_scored_and_never_the_validation_set(tmp_path):
    folder = tmp_path / "photos"
    _images(folder / "train", 10, seed=0)
    _images(folder / "val", 3, seed=1)
    _images(folder / "test", 4, seed=2)
    dataset = load_dataset("ignored", data_path=str(folder), workers=0)
    assert (dataset.num_train, dataset.num_val, dataset.num_test) == (20, 6, 8)
    assert dataset.test_labels.tolist() == [0] * 4 + [1] * 4 and dataset.info["test_source"] == "folder"
    run = tmp_path / "run"
    train(RunConfig(dataset="photos", data=str(folder), epochs=2, seed=0, loader_workers=0), run_dir=run, progress=False)
    assert all(row["test_acc"] for row in _rows(run))
    assert json.loads((run / "result.json").read_text())["selected_test_acc"] is not None

    # train/ and test/ only: the validation set is a split of train/, test/ still only scores
    (folder / "val").rename(tmp_path / "val-aside")
    dataset = load_dataset("ignored", data_path=str(folder), workers=0, val_fraction=0.2)
    assert (dataset.num_train, dataset.num_val, dataset.num_test) == (16, 4, 8)
    assert dataset.info["val_source"] == "split" and dataset.sample_names[0] == "train/ant/00.png"
