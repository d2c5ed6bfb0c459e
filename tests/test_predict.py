"""`latentmix.load_run` and ``latentmix predict``: the model a run kept, with the run's input
transform, predicts what the run itself measured on its validation rows."""

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

import latentmix
from latentmix.cli import main
from latentmix.errors import ConfigError


def _write_file(path, n=300, seed=0):
    """Features on a scale far from standardised (a model fed them raw would see other numbers
    than in training), 3 classes, a quarter of the labels flipped."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, 4)) * 5 + 20).astype(np.float32)
    y = (x[:, 0] > 20).astype(np.int64) + (x[:, 1] > 22)
    flip = rng.random(n) < 0.25
    y[flip] = rng.integers(0, 3, int(flip.sum()))
    np.savez(path, x=x, labels=y)
    return x, y


def _train(tmp_path, epochs):
    x, y = _write_file(tmp_path / "mine.npz")
    out = tmp_path / f"run{epochs}"
    assert main(["train", "--data", str(tmp_path / "mine.npz"), "--method", "lr-m-dyr-h", "--layers", "1-2",
                 "--epochs", str(epochs), "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    return x, y, out


def _csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _val_rows(run):
    """The validation rows of the file, as the run's label_issues.csv lists them."""
    rows = [row for row in _csv(run / "label_issues.csv") if row["split"] == "val"]
    return sorted(rows, key=lambda row: int(row["index"]))


def test_one_epoch_run_predicts_its_own_validation_rows(tmp_path, capsys):
    # one epoch: the selected checkpoint, the last one and the epoch of the label issues coincide,
    # so the loaded model must give each validation row the class the run itself predicted
    x, y, run = _train(tmp_path, epochs=1)
    val = _val_rows(run)
    assert len(val) == 30
    rows = np.array([int(row["index"]) for row in val])
    model = latentmix.load_run(run)
    assert model.weights == "selected" and model.epoch == 1
    predicted = model.predict(x[rows]).labels
    assert predicted.tolist() == [int(row["predicted_label"]) for row in val]
    # model(x) on raw inputs applies the run's standardisation: the network alone on raw inputs does not agree
    with torch.no_grad():
        raw = torch.from_numpy(x[rows])
        assert model(raw).argmax(1).tolist() == predicted.tolist()
        assert model.network(raw).argmax(1).tolist() != predicted.tolist()

    # the command line: the same classes in its CSV, probabilities summing to 1, the file's labels beside them
    capsys.readouterr()
    assert main(["predict", str(run), "--data", str(tmp_path / "mine.npz"), "--out", str(tmp_path / "p.csv"),
                 "--device", "cpu"]) == 0
    out = _csv(tmp_path / "p.csv")
    assert len(out) == len(x) and list(out[0]) == ["row", "predicted_label", "given_label", "p_0", "p_1", "p_2"]
    by_row = {int(row["row"]): row for row in out}
    assert [int(by_row[r]["predicted_label"]) for r in rows] == [int(row["predicted_label"]) for row in val]
    assert [int(row["given_label"]) for row in out] == y.tolist()
    for row in out[:20]:
        probs = [float(row[f"p_{c}"]) for c in range(3)]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4) and int(row["predicted_label"]) == int(np.argmax(probs))
    assert f"predictions by the selected checkpoint of {run} (epoch 1, picked by" in capsys.readouterr().err


def test_selected_and_last_weights_score_what_metrics_csv_recorded(tmp_path):
    x, y, run = _train(tmp_path, epochs=5)
    val = _val_rows(run)
    rows = np.array([int(row["index"]) for row in val])
    metrics = {int(row["epoch"]): float(row["val_acc"]) for row in _csv(run / "metrics.csv")}
    result = json.loads((run / "result.json").read_text())
    for weights, epoch in (("selected", result["selected_epoch"]), ("last", 5)):
        model = latentmix.load_run(run, weights=weights)
        assert (model.weights, model.epoch) == (weights, epoch)
        correct = int((model.predict(x[rows]).labels == y[rows]).sum())
        assert correct == round(metrics[epoch] * len(rows)), weights


def test_load_run_refuses_changed_or_unreachable_data(tmp_path, monkeypatch):
    x, y, run = _train(tmp_path, epochs=1)
    np.savez(tmp_path / "mine.npz", x=x + 1, labels=y)  # the same name, other numbers
    with pytest.raises(ConfigError, match="differ from those the run trained on"):
        latentmix.load_run(run)
    with pytest.raises(ConfigError, match="weights must be one of selected, last"):
        latentmix.load_run(run, weights="best")
    monkeypatch.chdir(tmp_path)
    relative = tmp_path / "rel"
    _write_file(tmp_path / "rel.npz")
    assert main(["train", "--data", "rel.npz", "--epochs", "1", "--out", str(relative), "--device", "cpu",
                 "--quiet"]) == 0
    monkeypatch.chdir(run)
    with pytest.raises(ConfigError, match="run from the folder you trained in"):
        latentmix.load_run(relative)


def test_predict_errors_are_one_line(tmp_path, capsys):
    x, y, run = _train(tmp_path, epochs=1)
    np.savez(tmp_path / "other.npz", features=x)
    assert main(["predict", str(run), "--data", str(tmp_path / "other.npz")]) == 2
    err = capsys.readouterr().err
    assert "has no input array(s) ['x']" in err and "Traceback" not in err
    assert main(["predict", str(tmp_path / "nowhere"), "--data", str(tmp_path / "mine.npz")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_fit_result_and_fit_folder(tmp_path):
    torch.manual_seed(0)
    inputs = torch.randn(400, 6)
    labels = (inputs[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    result = latentmix.fit(model, inputs[:300], labels[:300], val_inputs=inputs[300:], val_labels=labels[300:],
                           method="m", epochs=4, device="cpu", progress=False, run_dir=tmp_path / "fit")
    before = {key: value.clone() for key, value in result.model.state_dict().items()}
    loaded = latentmix.load_run(result)
    correct = int((loaded.predict(inputs[300:]).labels == labels[300:].numpy()).sum())
    kept = result.kept  # the run's own result, or its plain CE twin's when the run kept that model
    selected_acc = next(row["val_acc"] for row in kept.metrics if row["epoch"] == kept.selected_epoch)
    assert loaded.weights == "selected" and correct == round(selected_acc * 100)
    assert all(torch.equal(before[key], value) for key, value in result.model.state_dict().items())  # a copy
    # the folder of a fit() run: the user's architecture must be passed
    with pytest.raises(ConfigError, match="model=YourModel"):
        latentmix.load_run(tmp_path / "fit")
    fresh = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    from_folder = latentmix.load_run(tmp_path / "fit", model=fresh)
    assert from_folder.predict(inputs[300:]).labels.tolist() == loaded.predict(inputs[300:]).labels.tolist()


def test_arrays_as_the_file_stores_them_predict_as_the_file_does(tmp_path):
    """An image .npz stores (N, H, W); `load_run(...).predict` takes that layout as `latentmix
    predict` reads it from the file (the channel axis added), and the layout the network takes."""
    from latentmix.config import RunConfig
    from latentmix.predict import read_prediction_inputs
    from latentmix.training import train

    rng = np.random.default_rng(0)
    images = (rng.random((120, 10, 10)) * 255).astype(np.uint8)
    labels = (images[:, :5].mean(axis=(1, 2)) > images[:, 5:].mean(axis=(1, 2))).astype(np.int64)
    np.savez(tmp_path / "images.npz", x=images, y=labels)
    train(RunConfig(dataset="images", data=str(tmp_path / "images.npz"), method="ce", epochs=2, device="cpu"),
          run_dir=tmp_path / "run", progress=False)
    trained = latentmix.load_run(tmp_path / "run")
    from_file = trained.predict(read_prediction_inputs(tmp_path / "images.npz", trained).inputs)
    as_stored = trained.predict(images)
    channel_first = trained.predict(torch.from_numpy(images[:, None]))
    assert from_file.labels.tolist() == as_stored.labels.tolist() == channel_first.labels.tolist()
    assert np.allclose(from_file.probabilities, as_stored.probabilities)
