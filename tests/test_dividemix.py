"""DivideMix (Li et al. 2020): each step against a hand-worked case and a deliberately wrong variant
that the case tells apart; the step object in the loop; end to end on small data through the CLI
(a run folder that `detect` and `predict` read), its resume, and the errors where it cannot run.

The hand values: sharpen([0.6, 0.4], T=0.5) = [0.36, 0.16] / 0.52; co-refinement of y=0, p=[0.2, 0.8],
w=0.75: 0.75 [1, 0] + 0.25 [0.2, 0.8] = [0.8, 0.2] -> [0.64, 0.04] / 0.68; and so on beside each test."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from latentmix.cli import main
from latentmix.config import RunConfig
from latentmix.data import Dataset
from latentmix.dividemix import (
    DivideMix, DivideMixBatch, clean_posterior, co_divide, co_guess, co_refine, dominant_rows, lambda_u_for_noise,
    linear_rampup, mixmatch_loss, negative_entropy, sharpen,
)
from latentmix.errors import ConfigError
from latentmix.methods import get_method
from latentmix.mixing import MixPlan
from latentmix.training import train

T = 0.5


def close(actual, expected, tol=1e-5):
    return torch.allclose(torch.as_tensor(actual, dtype=torch.float32), torch.tensor(expected, dtype=torch.float32),
                          atol=tol)


# ---- each step, by hand ---------------------------------------------------------------------------

def test_sharpen_raises_to_one_over_t():
    # [0.6, 0.4] ** 2 = [0.36, 0.16], / 0.52
    assert close(sharpen(torch.tensor([[0.6, 0.4]]), T), [[0.36 / 0.52, 0.16 / 0.52]])
    # wrong variant: p ** T (flattens instead of sharpening) = [0.7746, 0.6325] / 1.4071
    wrong = torch.tensor([[0.6, 0.4]]) ** T
    assert not close(wrong / wrong.sum(), [[0.36 / 0.52, 0.16 / 0.52]], tol=1e-2)


def test_clean_posterior_calls_the_low_losses_clean():
    losses = np.array([0.10, 0.12, 0.11, 0.13, 0.09, 2.0, 2.1, 1.9])
    clean = clean_posterior(losses)
    assert (clean[:5] > 0.99).all() and (clean[5:] < 0.01).all()
    # wrong variant: the GMM's noisy posterior (the higher-mean component) is the opposite
    assert not np.allclose(1.0 - clean, clean, atol=0.5)


def test_co_divide_takes_the_other_networks_division():
    # clean[k] = network k's P(clean) of samples 0..2
    clean = torch.tensor([[0.9, 0.2, 0.6], [0.3, 0.8, 0.4]])
    labeled, weights = co_divide(clean, 0.5)
    # network 0 trains on network 1's division: [0.3, 0.8, 0.4] > 0.5; network 1 on network 0's
    assert labeled.tolist() == [[False, True, False], [True, False, True]]
    assert close(weights, [[0.3, 0.8, 0.4], [0.9, 0.2, 0.6]])
    # wrong variant: each network on its own GMM's division differs
    assert (clean > 0.5).tolist() != labeled.tolist()


def test_co_refine_weights_the_label_by_the_clean_probability():
    # y = 0, p = [0.2, 0.8], w = 0.75: [0.75 + 0.05, 0.2] = [0.8, 0.2]; sharpened [0.64, 0.04] / 0.68
    refined = co_refine(torch.tensor([0]), torch.tensor([[0.2, 0.8]]), torch.tensor([0.75]), T)
    assert close(refined, [[0.64 / 0.68, 0.04 / 0.68]])
    # wrong variant: without w (the prediction alone, sharpened) gives [0.04, 0.64] / 0.68
    assert not close(sharpen(torch.tensor([[0.2, 0.8]]), T), [[0.64 / 0.68, 0.04 / 0.68]], tol=1e-2)
    # wrong variant: w on the prediction instead of the label: 0.75 [0.2, 0.8] + 0.25 [1, 0] = [0.4, 0.6]
    assert not close(sharpen(torch.tensor([[0.4, 0.6]]), T), [[0.64 / 0.68, 0.04 / 0.68]], tol=1e-2)


def test_co_guess_averages_both_networks():
    # mean([0.6, 0.4], [0.2, 0.8]) = [0.4, 0.6]; sharpened [0.16, 0.36] / 0.52
    guessed = co_guess(torch.tensor([[0.6, 0.4]]), torch.tensor([[0.2, 0.8]]), T)
    assert close(guessed, [[0.16 / 0.52, 0.36 / 0.52]])
    # wrong variant: one network's guess alone, sharpen([0.6, 0.4]) = [0.36, 0.16] / 0.52
    assert not close(sharpen(torch.tensor([[0.6, 0.4]]), T), [[0.16 / 0.52, 0.36 / 0.52]], tol=1e-2)


def test_dominant_rows_follow_the_larger_weight():
    labeled, perm = torch.tensor([True, False, False]), torch.tensor([2, 0, 1])
    # lam 0.7: row i is mostly sample i; lam 0.3: mostly sample perm(i) = [2, 0, 1] -> [False, True, False]
    assert dominant_rows(labeled, MixPlan(layer=0, lam=0.7, perm=perm)).tolist() == [True, False, False]
    assert dominant_rows(labeled, MixPlan(layer=0, lam=0.3, perm=perm)).tolist() == [False, True, False]


def test_linear_rampup():
    # lambda_u 25, 16 epochs: 4 epochs in -> 25 * 4 / 16 = 6.25; before 0; after the rampup 25
    assert linear_rampup(4.0, 16.0, 25.0) == pytest.approx(6.25)
    assert linear_rampup(-1.0, 16.0, 25.0) == 0.0 and linear_rampup(20.0, 16.0, 25.0) == 25.0
    # wrong variant: no rampup (lambda_u from the first divided step) differs
    assert linear_rampup(4.0, 16.0, 25.0) != 25.0


def _mixmatch_case():
    # row 0: logits [0, 0] -> p [0.5, 0.5], target [1, 0], labeled; row 1: logits [log 3, 0] -> p [0.75, 0.25],
    # target [0.5, 0.5], unlabeled
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    targets = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    return logits, targets, torch.tensor([True, False])


def test_mixmatch_loss_by_hand():
    logits, targets, labeled = _mixmatch_case()
    lx = -math.log(0.5)  # 0.693147
    lu = ((0.75 - 0.5) ** 2 + (0.25 - 0.5) ** 2) / 2  # 0.0625: mean over the unlabeled rows and the classes
    penalty = 0.5 * math.log(0.5 / 0.625) + 0.5 * math.log(0.5 / 0.375)  # pbar = [0.625, 0.375]: 0.032269
    expected = lx + 10.0 * lu + penalty  # 1.350416
    assert float(mixmatch_loss(logits, targets, labeled, 10.0)) == pytest.approx(expected, abs=1e-5)
    # wrong variant: Lu as the cross-entropy, -(0.5 log 0.75 + 0.5 log 0.25) = 0.836988, not the MSE
    wrong = lx + 10.0 * -(0.5 * math.log(0.75) + 0.5 * math.log(0.25)) + penalty
    assert abs(wrong - expected) > 1.0
    # wrong variant: without the rampup weight (1 instead of 10) differs
    assert float(mixmatch_loss(logits, targets, labeled, 1.0)) != pytest.approx(expected, abs=1e-3)


def test_negative_entropy_and_lambda_u_table():
    assert float(negative_entropy(torch.zeros(1, 2))) == pytest.approx(math.log(0.5))
    # the paper's table: 20% -> 0, 50% -> 25, 80% -> 50, 90% -> 150; the nearest level to an estimate
    assert [lambda_u_for_noise(r) for r in (0.15, 0.45, 0.75, 0.88, None)] == [0.0, 25.0, 50.0, 150.0, 25.0]


# ---- the step object ------------------------------------------------------------------------------

class FixedPair(nn.Module):
    """A stand-in pair in training mode: fixed logits (2, B, C) for the batch."""

    def __init__(self, probs):
        super().__init__()
        self.logits = torch.log(torch.tensor(probs))

    def forward(self, inputs):
        return self.logits


def _divided(clean):
    step = DivideMix(2, rampup_epochs=16.0, lambda_u=25.0)
    step.enabled, step.clean = True, torch.tensor(clean)
    step.epochs_done, step.division_start, step._batches_per_epoch = 2, 0, 4
    return step


# network 0: p(s0) = [0.2, 0.8], p(s1) = [0.5, 0.5]; network 1: p(s0) = [0.6, 0.4], p(s1) = [0.25, 0.75]
PROBS = [[[0.2, 0.8], [0.5, 0.5]], [[0.6, 0.4], [0.25, 0.75]]]
CLEAN = [[0.9, 0.2], [0.3, 0.8]]  # network k's P(clean) of samples 0, 1


def test_batch_targets_co_refine_and_co_guess_per_network():
    step = _divided(CLEAN)
    batch = step.batch_targets(FixedPair(PROBS), None, torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert isinstance(batch, DivideMixBatch)
    # network 0 divides by network 1's [0.3, 0.8]: s0 unlabeled, s1 labeled (w 0.8); network 1 by [0.9, 0.2]
    assert batch.labeled.tolist() == [[False, True], [True, False]]
    guess_s0 = [0.16 / 0.52, 0.36 / 0.52]  # mean [0.4, 0.6] sharpened
    guess_s1 = [0.140625 / 0.53125, 0.390625 / 0.53125]  # mean [0.375, 0.625] sharpened
    refine_0_s1 = [0.01 / 0.82, 0.81 / 0.82]  # y 1, w 0.8, own p [0.5, 0.5]: [0.1, 0.9]
    refine_1_s0 = [0.9216 / 0.9232, 0.0016 / 0.9232]  # y 0, w 0.9, own p [0.6, 0.4]: [0.96, 0.04]
    assert close(batch.targets, [[guess_s0, refine_0_s1], [refine_1_s0, guess_s1]])
    # lambda_u 25 at 2 epochs into a 16-epoch rampup: 25 * 2 / 16
    assert batch.unlabeled_weight == pytest.approx(3.125)
    # wrong variant: each network dividing by its own GMM (the clean rows swapped) gives other targets
    own = _divided([CLEAN[1], CLEAN[0]]).batch_targets(FixedPair(PROBS), None, torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert not close(own.targets, batch.targets.tolist(), tol=1e-2)


def test_the_warm_up_is_cross_entropy_on_both_networks_unmixed():
    step = DivideMix(2)
    assert step.batch_targets(FixedPair(PROBS), None, torch.tensor([0, 1]), torch.tensor([0, 1])) is None
    assert not step.mixes_now and not step.bootstrapping
    logits = torch.log(torch.tensor(PROBS))
    # CE: network 0 -log 0.2 - log 0.5, network 1 -log 0.6 - log 0.75, each averaged over the 2 samples
    expected = (-math.log(0.2) - math.log(0.5)) / 2 + (-math.log(0.6) - math.log(0.75)) / 2
    assert float(step.loss(logits, torch.tensor([0, 1]))) == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ConfigError, match="PairedNetworks"):
        step.loss(logits[0], torch.tensor([0, 1]))


def test_loss_mixes_targets_and_splits_rows_by_the_dominant_sample():
    logits, targets, _ = _mixmatch_case()
    pair_logits = torch.stack((logits, logits.flip(0)))
    # network 0: sample 1 labeled; network 1: sample 0 labeled. lam 0.3, perm [1, 0]: row i is mostly sample 1 - i
    batch = DivideMixBatch(torch.stack((targets, targets)), torch.tensor([[False, True], [True, False]]), 10.0)
    plan = MixPlan(layer=0, lam=0.3, perm=torch.tensor([1, 0]))
    mixed = torch.tensor([[0.3 * 1 + 0.7 * 0.5, 0.7 * 0.5], [0.3 * 0.5 + 0.7 * 1, 0.3 * 0.5]])  # lam t_i + (1-lam) t_perm(i)
    expected = (mixmatch_loss(logits, mixed, torch.tensor([True, False]), 10.0)
                + mixmatch_loss(logits.flip(0), mixed, torch.tensor([False, True]), 10.0))
    loss = DivideMix(2).loss(pair_logits, torch.tensor([0, 1]), plan, batch)
    assert float(loss) == pytest.approx(float(expected), abs=1e-5)
    # wrong variant: rows split by sample i's own flag (ignoring which sample dominates)
    by_own = (mixmatch_loss(logits, mixed, torch.tensor([False, True]), 10.0)
              + mixmatch_loss(logits.flip(0), mixed, torch.tensor([True, False]), 10.0))
    assert abs(float(by_own) - float(expected)) > 1e-2


def test_end_epoch_fits_one_gmm_per_network_and_keeps_state():
    step = DivideMix(8)
    index = torch.arange(8)
    low, high = [0.1, 0.12, 0.11, 0.13], [2.0, 2.1, 1.9, 2.2]
    step.observe(index, torch.tensor(low + high))
    # network 0 finds samples 4..7 noisy, network 1 samples 0..3
    step.observe_networks(index, torch.tensor([low + high, high + low]))
    step.end_epoch()
    assert (step.clean[0, :4] > 0.9).all() and (step.clean[0, 4:] < 0.1).all()
    assert (step.clean[1, :4] < 0.1).all() and (step.clean[1, 4:] > 0.9).all()
    assert torch.allclose(step.issue_scores(), torch.full((8,), 0.5), atol=0.1)  # the two disagree everywhere
    restored = DivideMix(8)
    restored.load_state_dict(step.state_dict())
    assert torch.equal(restored.clean, step.clean) and restored.fit_shares == step.fit_shares


# ---- in the run ------------------------------------------------------------------------------------

def _clusters_file(path, seed=0, n=240, dim=16, classes=4, noise=0.4):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim))
    centers *= 3.0 / np.linalg.norm(centers, axis=1, keepdims=True)
    clean = np.arange(n) % classes
    x = (centers[clean] + rng.normal(size=(n, dim))).astype(np.float32)
    noisy = clean.copy()
    flip = rng.random(n) < noise
    noisy[flip] = (clean[flip] + rng.integers(1, classes, flip.sum())) % classes
    np.savez(path, features=x, labels=noisy, clean_labels=clean)
    return x, noisy, clean


def test_dividemix_end_to_end_through_the_cli_detect_and_predict(tmp_path, capsys):
    x, noisy, clean = _clusters_file(tmp_path / "clusters.npz")
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "clusters.npz"), "--method", "dividemix", "--epochs", "8",
                 "--lr", "0.05", "--batch-size", "32", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    result = json.loads((out / "result.json").read_text())
    record = json.loads((out / "config.json").read_text())
    assert record["method"]["loss"] == "dividemix" and record["method"]["networks"] == 2
    assert record["method"]["loss_params"] == {"p_threshold": 0.5, "T": 0.5, "rampup": 16.0}
    # measured (seed 0): divided from epoch 5, selected accuracy 0.875, detection AUC 0.94 (216 trained, 24 held out)
    assert result["bootstrap_start_epoch"] is not None and result["detection_auc"] > 0.8
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=False)
    state = checkpoint["dividemix"]
    assert state["clean"].shape == (2, 216) and state["lambda_u"] in (0.0, 25.0, 50.0, 150.0)
    # both networks trained, and apart: their weights differ, and both predict well
    model = checkpoint["model"]
    first = {k[len("first."):]: v for k, v in model.items() if k.startswith("first.")}
    second = {k[len("second."):]: v for k, v in model.items() if k.startswith("second.")}
    assert first.keys() == second.keys() and any(not torch.equal(first[k], second[k]) for k in first)
    # detect reads its label issues; predict its model
    capsys.readouterr()
    assert main(["detect", str(out), "--top", "3"]) == 0
    assert "labels have P(noisy)" in capsys.readouterr().out
    with open(out / "label_issues.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 240  # the held-out rows too
    assert main(["predict", str(out), "--data", str(tmp_path / "clusters.npz"), "--out", str(tmp_path / "p.csv"),
                 "--device", "cpu"]) == 0
    with open(tmp_path / "p.csv") as handle:
        predicted = np.array([int(row["predicted_label"]) for row in csv.DictReader(handle)])
    assert (predicted == clean).mean() > 0.7  # 4 classes: chance is 0.25


def _dataset():
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(4, 16)) * 1.5
    labels = np.arange(160) % 4
    x = torch.tensor(centers[labels] + rng.normal(size=(160, 16)), dtype=torch.float32)
    return Dataset(name="clusters", train_inputs=x, train_labels=torch.tensor(labels), val_inputs=x[:40],
                   val_labels=torch.tensor(labels[:40]), num_classes=4)


def _config(method="lr-dividemix", **kwargs):
    values = dict(dataset="clusters", method=method, noise=0.4, epochs=5, warmup_epochs=2, lr=0.05, batch_size=32,
                  seed=0, device="cpu")
    return RunConfig(**{**values, **kwargs})


def test_resume_continues_the_divisions(tmp_path):
    full = train(_config(), dataset=_dataset(), run_dir=tmp_path / "a", progress=False)

    class Stop(Exception):
        pass

    def interrupt(row):
        if row["epoch"] == 3:
            raise Stop

    with pytest.raises(Stop):
        train(_config(), dataset=_dataset(), run_dir=tmp_path / "b", progress=False, on_epoch_end=interrupt)
    saved = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["dividemix"]
    assert saved["clean"].shape == (2, 160) and saved["lambda_u"] is not None
    resumed = train(_config(), dataset=_dataset(), run_dir=tmp_path / "b", resume=True, progress=False)
    comparable = lambda metrics: [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in metrics]  # noqa: E731
    assert comparable(resumed.metrics) == comparable(full.metrics)
    assert [row["bootstrapping"] for row in full.metrics] == [False, False, True, True, True]


def test_where_dividemix_cannot_run_is_one_clear_error():
    with pytest.raises(ConfigError, match="replaces the cross-entropy"):
        get_method("dividemix", correction="hard")
    tokens = Dataset(name="tokens", train_inputs=torch.randint(0, 50, (64, 8)), train_labels=torch.arange(64) % 2,
                     val_inputs=torch.randint(0, 50, (16, 8)), val_labels=torch.arange(16) % 2, num_classes=2)
    with pytest.raises(ConfigError, match="integer token ids"):
        train(_config("dividemix"), dataset=tokens, progress=False)
    # latent DivideMix on the hidden layers runs on tokens
    result = train(_config("lr-dividemix", layers="1-2"), dataset=tokens, progress=False)
    assert result.metrics[-1]["bootstrapping"] and math.isfinite(result.metrics[-1]["train_loss"])


def test_fit_on_your_own_model_and_load_run_with_it(tmp_path):
    import latentmix

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden, self.head, self.mix_points = nn.Linear(16, 32), nn.Linear(32, 4), ("hidden",)

        def forward(self, x):
            return self.head(torch.relu(self.hidden(x)))

    data = _dataset()
    x, y = data.train_inputs.numpy(), data.train_labels.numpy().copy()
    y[::3] = (y[::3] + 1) % 4
    result = latentmix.fit(Net(), x, y, val_inputs=x[:40], val_labels=data.train_labels.numpy()[:40],
                           method="lr-dividemix", layers="0-1", epochs=5, run_dir=tmp_path / "fit", progress=False)
    assert type(result.model).__name__ == "PairedNetworks" and result.summary()["bootstrap_start_epoch"] is not None
    # your own (single) model class loads the pair's weights: the folder's run has two networks
    loaded = latentmix.load_run(tmp_path / "fit", model=Net())
    with torch.no_grad():
        assert torch.equal(loaded(torch.from_numpy(x[:8])), result.model.eval()(torch.from_numpy(x[:8])))
