"""The vectorized population trainer means the same as the sequential trainer, run by run."""

from dataclasses import replace

import numpy as np
import pytest

from latentmix.errors import ConfigError
from latentmix.population import supports_population, train_population
from latentmix.config import RunConfig
from latentmix.training import train



CONFIGS = [
    RunConfig(method="ce", noise=0.2, epochs=4, seed=1, checkpoint=False),
    RunConfig(method="m", noise=0.2, epochs=4, seed=2, checkpoint=False),
    RunConfig(method="lr-m", layers="3-4", noise=0.3, epochs=4, seed=3, checkpoint=False),
    RunConfig(method="lr-m", layers="0-5", noise=0.0, epochs=4, seed=4, alpha=1.0, checkpoint=False),
    RunConfig(method="lr-m", layers="1,5", noise=0.4, epochs=4, seed=5, alpha=8.0, noise_seed=9, checkpoint=False),
]
KEYS = ("train_loss", "val_acc", "train_acc_noisy", "train_acc_clean")


def test_population_equals_sequential_run_by_run():
    population = train_population(CONFIGS, progress=False)
    for config, vectorized in zip(CONFIGS, population):
        sequential = train(config, progress=False)
        assert len(vectorized.metrics) == len(sequential.metrics) == 4
        for row_seq, row_vec in zip(sequential.metrics, vectorized.metrics):
            assert row_vec["train_loss"] == pytest.approx(row_seq["train_loss"], abs=1e-5)
            for key in ("val_acc", "train_acc_noisy", "train_acc_clean"):
                assert row_vec[key] == pytest.approx(row_seq[key], abs=2e-3), (config.method, key)  # <= 2 samples
        assert vectorized.best_val_acc == pytest.approx(sequential.best_val_acc, abs=2e-3)
        np.testing.assert_array_equal(vectorized.noisy_labels, sequential.noisy_labels)
        assert vectorized.method.name == sequential.method.name


def test_a_run_does_not_depend_on_its_population_mates():
    alone = train_population([CONFIGS[2]], progress=False)[0]
    together = train_population(CONFIGS, progress=False)[2]
    for a, b in zip(alone.metrics, together.metrics):
        for key in KEYS:
            assert a[key] == pytest.approx(b[key], abs=1e-6)


def test_different_seeds_give_different_runs():
    runs = train_population([CONFIGS[1], replace(CONFIGS[1], seed=7)], progress=False)
    assert [r["train_loss"] for r in runs[0].metrics] != [r["train_loss"] for r in runs[1].metrics]


def test_sparse_tracking_follows_the_sequential_rule():
    config = replace(CONFIGS[0], epochs=5, track_every=2)
    vectorized = train_population([config], progress=False)[0].metrics
    sequential = train(config, progress=False).metrics
    tracked_vec = [row["epoch"] for row in vectorized if row["train_acc_noisy"] is not None]
    tracked_seq = [row["epoch"] for row in sequential if row["train_acc_noisy"] is not None]
    assert tracked_vec == tracked_seq == [2, 4, 5]


def test_unsupported_runs_are_refused_with_a_clear_error():
    correcting = RunConfig(method="m-dyr-h", epochs=2)
    assert not supports_population(correcting)
    with pytest.raises(ConfigError, match="sequential"):
        train_population([correcting], progress=False)
    assert not supports_population(RunConfig(method="ce", dataset="cifar10"))
    with pytest.raises(ConfigError, match="share"):
        train_population([CONFIGS[0], replace(CONFIGS[1], epochs=3)], progress=False)
    with pytest.raises(ConfigError, match="out of range"):
        train_population([replace(CONFIGS[0], method="lr-m", layers="0-6")], progress=False)
