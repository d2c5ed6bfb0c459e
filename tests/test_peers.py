"""The peers (GCE, SCE, ELR, alone and with latent mixup) end to end through `train`: each learns
on small noisy data, gives per-sample label-issue scores and a detection AUC, records its loss in
the run folder, and ELR's per-sample targets survive a resume."""

import csv
import json

import numpy as np
import pytest
import torch

from latentmix.config import RunConfig
from latentmix.data import Dataset
from latentmix.errors import ConfigError
from latentmix.population import supports_population
from latentmix.training import train

PEERS = ("gce", "sce", "elr", "lr-m-gce", "lr-m-sce", "lr-m-elr")


def _clusters(seed=0, n=240, dim=16, classes=4):
    """Gaussian clusters: learnable in a few epochs, and 40% symmetric noise is easy to memorise."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim))
    centers *= 3.0 / np.linalg.norm(centers, axis=1, keepdims=True)

    def draw(m):
        labels = np.arange(m) % classes
        return torch.tensor(centers[labels] + rng.normal(size=(m, dim)), dtype=torch.float32), torch.tensor(labels)

    (train_x, train_y), (val_x, val_y) = draw(n), draw(n)
    return Dataset(name="clusters", train_inputs=train_x, train_labels=train_y, val_inputs=val_x, val_labels=val_y,
                   num_classes=classes)


def _config(method, **kwargs):
    values = dict(dataset="clusters", method=method, noise=0.4, epochs=10, lr=0.05, batch_size=32, seed=0, device="cpu")
    return RunConfig(**{**values, **kwargs})


@pytest.fixture(scope="module")
def runs():
    return {method: train(_config(method), dataset=_clusters(), progress=False) for method in ("ce",) + PEERS}


@pytest.mark.parametrize("method", PEERS)
def test_each_peer_learns_and_scores_the_labels(runs, method):
    # measured (seed 0, 10 epochs): best accuracy 0.71-0.92, detection AUC 0.82-0.98
    result = runs[method]
    summary = result.summary()
    assert all(np.isfinite(row["train_loss"]) for row in result.metrics)
    assert result.best_val_acc > 0.6  # 4 classes: chance is 0.25
    # the label-issue scores: P(noisy) per training sample from the tracked losses, and its detection AUC
    assert result.p_noisy.shape == (240,) and np.isfinite(result.p_noisy).all()
    assert summary["detection_auc"] > 0.75, summary
    assert summary["correction"] == "none" and summary["bootstrap_start_epoch"] is None


def test_the_peers_fit_the_wrong_labels_less_than_ce(runs):
    # measured (last epoch): agreement with the noisy labels CE 0.71, the peers 0.57-0.67; a method
    # that trained with the plain cross-entropy under another name would match CE's
    ce = runs["ce"].summary()["last_train_acc_noisy"]
    for method in PEERS:
        assert runs[method].summary()["last_train_acc_noisy"] < ce - 0.03, method


def test_peer_run_folder_records_its_loss_and_label_issues(tmp_path):
    result = train(_config("lr-m-elr"), dataset=_clusters(), run_dir=tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["method"]["loss"] == "elr" and record["method"]["loss_params"] == {"beta": 0.7, "lambda": 3.0}
    with open(tmp_path / "run" / "label_issues.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 240 and result.summary()["detection_auc"] is not None


def test_elr_resume_continues_its_targets(tmp_path):
    full = train(_config("elr", epochs=5), dataset=_clusters(), run_dir=tmp_path / "a", progress=False)

    class Stop(Exception):
        pass

    def interrupt(row):
        if row["epoch"] == 3:
            raise Stop

    with pytest.raises(Stop):
        train(_config("elr", epochs=5), dataset=_clusters(), run_dir=tmp_path / "b", progress=False,
              on_epoch_end=interrupt)
    checkpoint = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert checkpoint["elr_targets"].shape == (240, 4) and float(checkpoint["elr_targets"].sum()) > 0
    resumed = train(_config("elr", epochs=5), dataset=_clusters(), run_dir=tmp_path / "b", resume=True, progress=False)
    comparable = lambda metrics: [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in metrics]  # noqa: E731
    assert comparable(resumed.metrics) == comparable(full.metrics)


def test_peers_are_trained_run_by_run_not_in_a_population():
    # the population's step is the mixed cross-entropy's
    assert supports_population(RunConfig(dataset="spiral", method="lr-m"))
    assert not any(supports_population(RunConfig(dataset="spiral", method=method)) for method in PEERS)


def test_a_peer_with_bootstrapping_is_one_clear_error():
    with pytest.raises(ConfigError, match="replaces the cross-entropy"):
        train(_config("gce", correction="hard"), dataset=_clusters(), progress=False)
