"""`RunSummary`: one typed summary that writes, and reads back, the result.json every run writes.

The documents below are written out by hand, copied from real run folders (a population run of
`latentmix reproduce spiral`, a sequential run of the trainer, a file of an older version), so the
expected files do not come from the code under test.
"""

import json

import numpy as np
import pytest

from latentmix.summary import POPULATION_KEYS, TRAINER_KEYS, RunSummary
from latentmix.sweep.results import store_record

# runs/ce_n0.1_s0/result.json of `latentmix reproduce spiral --seeds 1` (a population run)
POPULATION_FILE = """{
  "method": "ce",
  "mix_layers": "none",
  "correction": "none",
  "dataset": "spiral",
  "noise": 0.1,
  "noise_kind": "symmetric",
  "seed": 0,
  "epochs": 300,
  "best_val_acc": 0.9179999828338623,
  "last_val_acc": 0.9079999923706055,
  "best_epoch": 110,
  "last_train_acc_noisy": 0.8960000276565552,
  "last_train_acc_clean": 0.9309999942779541,
  "detection_auc": 0.9307495869010065,
  "detection_precision": 0.3783783783783784,
  "detection_recall": 0.8571428571428571,
  "actual_noise_rate": 0.049,
  "trained_as": "population of 85"
}
"""

# a sequential run's result.json (Fashion-MNIST, hard bootstrapping)
TRAINER_DOCUMENT = {
    "method": "lr-m-dyr-h", "mix_layers": "0-2", "correction": "hard", "dataset": "fashion-mnist", "noise": 0.5,
    "noise_kind": "symmetric", "seed": 2, "epochs": 40, "best_val_acc": 0.8123, "last_val_acc": 0.8011,
    "best_epoch": 31, "selected_val_acc": 0.8087, "selected_epoch": 29, "bootstrap_start_epoch": 15,
    "last_train_acc_noisy": 0.52, "last_train_acc_clean": 0.84, "label_issues_epoch": 14, "detection_auc": 0.93,
    "detection_precision": 0.88, "detection_recall": 0.9, "estimated_noise_rate": 0.47,
    "noise_model_collapsed_epochs": 0, "actual_noise_rate": 0.451,
    "flagged_noise_pairs": [[0, 6, 40], [6, 0, 31]], "true_noise_pairs": [[0, 3, 12]],
}

# a result.json of an older version: no noise_kind, the wall time inside
OLD_DOCUMENT = {"method": "ce", "mix_layers": "none", "correction": "none", "dataset": "cifar10", "noise": 0.2,
                "seed": 0, "epochs": 300, "best_val_acc": 0.87, "last_val_acc": 0.79, "wall_time_s": 5021.3}


def test_population_file_reads_back_byte_for_byte():
    summary = RunSummary.from_dict(json.loads(POPULATION_FILE))
    assert summary.best_epoch == 110 and summary.trained_as == "population of 85"
    assert summary.selected_val_acc is None and "selected_val_acc" not in summary.keys  # not measured: no key
    assert json.dumps(summary.to_dict(), indent=2) + "\n" == POPULATION_FILE


def test_trainer_document_keeps_every_key_in_order():
    summary = RunSummary.from_dict(TRAINER_DOCUMENT)
    assert list(summary.to_dict()) == list(TRAINER_DOCUMENT)
    assert summary.to_dict() == TRAINER_DOCUMENT
    assert summary.flagged_noise_pairs == [[0, 6, 40], [6, 0, 31]]


def test_an_older_file_keeps_what_this_version_does_not_know():
    summary = RunSummary.from_dict(OLD_DOCUMENT)
    assert summary.noise_kind is None and summary.extra == {"wall_time_s": 5021.3}
    assert summary.to_dict() == OLD_DOCUMENT


def test_a_figure_outside_the_keys_is_refused():
    with pytest.raises(ValueError, match="selected_val_acc"):
        RunSummary(method="ce", selected_val_acc=0.5, keys=("method",))
    with pytest.raises(ValueError, match="wall_time_s"):
        RunSummary(keys=("method", "wall_time_s"))


def test_scalars_drop_the_lists_and_numpy_types():
    summary = RunSummary.from_dict({**TRAINER_DOCUMENT, "best_val_acc": np.float32(0.5), "best_epoch": np.int64(31)})
    row = summary.scalars()
    assert "flagged_noise_pairs" not in row and "true_noise_pairs" not in row
    assert type(row["best_val_acc"]) is float and row["best_val_acc"] == 0.5
    assert type(row["best_epoch"]) is int and row["best_epoch"] == 31
    json.dumps(row)  # a store attribute is JSON


def test_store_record_columns_keep_their_order():
    # a population summary carries trained_as among its keys: its column precedes wall_time_s
    population = store_record(RunSummary.from_dict(json.loads(POPULATION_FILE)), 1.2132, "sequential")
    assert list(population)[-3:] == ["actual_noise_rate", "trained_as", "wall_time_s"]
    assert population["trained_as"] == "population of 85" and population["wall_time_s"] == 1.2132
    sequential = store_record(RunSummary.from_dict(TRAINER_DOCUMENT), 9.5, "sequential")
    assert list(sequential)[-3:] == ["actual_noise_rate", "wall_time_s", "trained_as"]
    assert sequential["trained_as"] == "sequential"
    # an older file's wall time keeps its place and value
    old = store_record(RunSummary.from_dict(OLD_DOCUMENT), 5021.3, "reused")
    assert list(old) == list(OLD_DOCUMENT) + ["trained_as"]


def test_trainer_and_population_write_their_files_keys():
    from latentmix.population import train_population
    from latentmix.config import RunConfig
    from latentmix.training import train

    config = RunConfig(method="lr-m", layers="1-2", noise=0.2, epochs=2, seed=3, checkpoint=False, device="cpu")
    trained = train(config, progress=False).run_summary()
    assert trained.keys[:len(TRAINER_KEYS)] == TRAINER_KEYS
    assert list(trained.to_dict())[:5] == ["method", "mix_layers", "correction", "dataset", "noise"]
    assert trained.method == "lr-m(1-2)" and trained.mix_layers == "1-2" and trained.epochs == 2
    assert trained.trained_as is None and "trained_as" not in trained.to_dict()

    run = train_population([config], progress=False)[0]
    assert list(run.run_summary().to_dict()) == list(json.loads(POPULATION_FILE))  # the keys of a population file
    assert run.run_summary().keys == POPULATION_KEYS and run.run_summary().trained_as == "population of 1"
    assert run.best_val_acc == run.run_summary().best_val_acc == max(row["val_acc"] for row in run.metrics)
