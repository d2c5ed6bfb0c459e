"""Co-teaching (Han et al. 2018; `latentmix.coteaching`): the forget-rate schedule, the small-loss
selection and the exchange against hand-worked cases, each next to a deliberately wrong variant
that gives another answer; the gradient reaches each network only through the samples the other
kept; and end to end, a run of both networks whose folder `detect` and `predict` read and whose
resume continues byte for byte."""

import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_peers import _clusters, _config

from latentmix.cli import main
from latentmix.coteaching import (
    CoSelection, CoTeachingLoss, estimated_noise_share, forget_target, kept_count, peer_selected_loss, scheduled_forget_rate,
    small_loss_mask,
)
from latentmix.distributed import DistContext
from latentmix.errors import ConfigError
from latentmix.methods import get_method
from latentmix.mixing import MixPlan
from latentmix.models.paired import PairedNetworks
from latentmix.population import supports_population
from latentmix.config import RunConfig
from latentmix.run_setup import build_run, step_loss
from latentmix.training import train


# ---- the schedule ------------------------------------------------------------------------------

def test_forget_rate_grows_linearly_to_tau_over_ten_epochs():
    # tau 0.4, T_k 10: the epoch after 0, 3, 10, 15 complete epochs forgets 0, 0.12, 0.4, 0.4
    got = [scheduled_forget_rate(0.4, done) for done in (0, 3, 10, 15)]
    assert got == pytest.approx([0.0, 0.12, 0.4, 0.4])
    # wrong variants: the official main.py's linspace(0, tau, T_k) (tau reached at epoch index 9),
    # and a schedule counting the current epoch too (1-based T: the first epoch would forget)
    linspace = [0.4 * min(done / 9, 1) for done in (0, 3, 10, 15)]
    counting_current = [0.4 * min((done + 1) / 10, 1) for done in (0, 3, 10, 15)]
    assert linspace != pytest.approx(got) and counting_current != pytest.approx(got)
    with pytest.raises(ConfigError, match="T_k"):
        scheduled_forget_rate(0.4, 3, gradual_epochs=0)


def test_kept_count_is_the_floor_of_the_remember_share_and_at_least_one():
    assert kept_count(10, 0.3) == 7
    assert kept_count(5, 0.5) == 2  # floor(2.5), the code's int(); the paper's "at least R|D|" (ceil) keeps 3
    assert math.ceil((1 - 0.5) * 5) == 3
    assert kept_count(100, 0.34) == 66  # (1 - 0.34) * 100 = 65.99999999999999: a bare floor keeps 65
    assert math.floor((1 - 0.34) * 100) == 65
    assert kept_count(1, 0.9) == 1 and kept_count(8, 0.0) == 8


def test_noise_share_is_the_mean_p_noisy_of_the_tracked_samples():
    assert estimated_noise_share(np.array([0.1, 0.9, np.nan, 0.5])) == pytest.approx(0.5)
    # a wrong variant, the flagged share (P > 0.5), reads 1/3 here
    assert np.mean(np.array([0.1, 0.9, 0.5]) > 0.5) == pytest.approx(1 / 3)
    assert estimated_noise_share(np.full(3, np.nan)) == 0.0


def test_tau_is_the_largest_estimate_from_the_third_epoch_on():
    estimates = [0.44, 0.30, 0.20, 0.28, 0.23]
    assert forget_target(estimates) == 0.28
    # wrong variants: the latest estimate (follows memorisation down), the largest of all (epoch 1's)
    assert estimates[-1] != 0.28 and max(estimates) != 0.28
    assert forget_target([0.44, 0.30]) == 0.30 and forget_target([0.44]) == 0.44 and forget_target([]) == 0.0


# ---- the selection and the exchange ----------------------------------------------------------

def test_small_loss_mask_keeps_the_smallest():
    losses = torch.tensor([0.9, 0.1, 0.5, 0.3, 2.0])
    assert small_loss_mask(losses, 2).tolist() == [False, True, False, True, False]
    large = torch.zeros(5, dtype=torch.bool)
    large[torch.topk(losses, 2).indices] = True  # the wrong variant: the large-loss samples
    assert large.tolist() == [True, False, False, False, True]
    assert small_loss_mask(torch.tensor([1.0, 1.0, 1.0]), 2).tolist() == [True, True, False]  # ties: earlier first


def _two_network_logits():
    """Stacked logits (2, 4, 2) whose cross-entropy against label 0 is -log p for chosen p:
    first network p = 0.9, 0.2, 0.6, 0.5 (CE 0.105, 1.609, 0.511, 0.693),
    second network p = 0.3, 0.8, 0.7, 0.4 (CE 1.204, 0.223, 0.357, 0.916)."""
    p = torch.tensor([[0.9, 0.2, 0.6, 0.5], [0.3, 0.8, 0.7, 0.4]])
    return torch.stack((p.log(), (1 - p).log()), dim=2), torch.zeros(4, dtype=torch.long)


def _at_forget_rate(forget):
    loss_object = CoTeachingLoss(8)
    loss_object.estimates, loss_object.epochs_done = [forget], 10  # past T_k: the forget rate is tau
    return loss_object


def test_each_network_is_trained_on_the_other_networks_small_loss_half():
    logits, labels = _two_network_logits()
    loss_object = _at_forget_rate(0.5)  # keep 2 of 4
    selection = loss_object.select(logits, labels)
    assert selection.kept_by_first.tolist() == [True, False, True, False]  # CE 0.105, 0.511
    assert selection.kept_by_second.tolist() == [False, True, True, False]  # CE 0.223, 0.357
    # by hand: first on {1, 2}: (-ln 0.2 - ln 0.6) / 2 = 1.0601318; second on {0, 2}: (-ln 0.3 - ln 0.7) / 2 = 0.7803239
    loss = loss_object.loss(logits, labels)
    assert float(loss) == pytest.approx(1.8404557, abs=1e-6)
    # wrong variant: each network on its own selection (self-paced, no exchange): 0.3081 + 0.2899
    assert float(loss) != pytest.approx((0.1053605 + 0.5108256) / 2 + (0.2231436 + 0.3566749) / 2, abs=1e-3)
    # wrong variant: the official code's extra division by the kept count
    assert float(loss) != pytest.approx(1.8404557 / 2, abs=1e-3)


def test_before_any_fit_nothing_is_forgotten():
    logits, labels = _two_network_logits()
    loss_object = CoTeachingLoss(8)  # tau 0: every sample kept, the loss is both networks' mean CE
    ce = [F.cross_entropy(logits[k], labels) for k in (0, 1)]
    assert float(loss_object.loss(logits, labels)) == pytest.approx(float(ce[0] + ce[1]))


def test_the_gradient_reaches_each_network_only_through_the_samples_the_other_kept():
    logits, labels = _two_network_logits()
    logits.requires_grad_(True)
    _at_forget_rate(0.5).loss(logits, labels).backward()
    touched = logits.grad.abs().sum(dim=2) > 0
    assert touched[0].tolist() == [False, True, True, False]  # the first network: the second's picks
    assert touched[1].tolist() == [True, False, True, False]  # the second network: the first's picks


def test_the_gradient_through_a_real_pair_is_each_networks_mean_ce_on_the_other_networks_picks():
    torch.manual_seed(0)
    pair = PairedNetworks.from_model(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(),
                                                         torch.nn.Linear(4, 2)), seed=5).train()
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 1, 0])
    loss_object = _at_forget_rate(0.5)
    with torch.no_grad():
        picks = loss_object.select(pair(x), y)
    loss_object.loss(pair(x), y).backward()
    for net, kept in ((pair.first, picks.kept_by_second), (pair.second, picks.kept_by_first)):
        alone = [p.grad.clone() for p in net.parameters()]
        net.zero_grad()
        F.cross_entropy(net(x[kept]), y[kept]).backward()
        assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(alone, net.parameters()))


def test_under_mixing_only_pairs_both_kept_enter():
    # 3 samples, partner perm = [1, 2, 0], lam 0.7; kept {0, 1}: only sample 0's pair (0, 1) is kept
    logits = torch.tensor([[0.8, 0.2], [0.5, 0.5], [0.1, 0.9]]).log()
    labels, kept = torch.tensor([0, 1, 0]), torch.tensor([True, True, False])
    plan = MixPlan(layer=1, lam=0.7, perm=torch.tensor([1, 2, 0]))
    # by hand: 0.7 (-ln 0.8) + 0.3 (-ln 0.2) = 0.6390319
    assert float(peer_selected_loss(logits, labels, kept, plan)) == pytest.approx(0.6390319, abs=1e-6)
    # wrong variant: every kept sample, whatever its partner (sample 1 mixed with the rejected 2)
    sample_1 = 0.7 * -math.log(0.5) + 0.3 * -math.log(0.5)
    assert float(peer_selected_loss(logits, labels, kept, plan)) != pytest.approx((0.6390319 + sample_1) / 2, abs=1e-3)
    assert float(peer_selected_loss(logits, labels, torch.tensor([True, False, False]), plan)) == 0.0  # no pair


def test_mixing_needs_the_unmixed_selection():
    logits, labels = _two_network_logits()
    plan = MixPlan(layer=1, lam=0.7, perm=torch.tensor([1, 2, 3, 0]))
    with pytest.raises(ConfigError, match="select_from='unmixed'"):
        CoTeachingLoss(8).loss(logits, labels, plan)
    selection = CoSelection(torch.ones(4, dtype=torch.bool), torch.ones(4, dtype=torch.bool))
    assert torch.isfinite(CoTeachingLoss(8, select_from="unmixed").loss(logits, labels, plan, selection))


def test_co_teaching_settings_that_cannot_run_are_one_clear_error():
    with pytest.raises(ConfigError, match="needs networks=2, loss ce and correction none"):
        get_method("coteaching", correction="hard")
    with pytest.raises(ConfigError, match="select_from"):
        CoTeachingLoss(8, select_from="mixed")
    config = RunConfig(dataset="spiral", method="coteaching")
    with pytest.raises(ConfigError, match="train it on one device"):
        step_loss(config, config.resolved_method(), 10, DistContext(rank=0, world_size=2))
    assert not supports_population(config)  # the population's step is one network's mixed CE


# ---- end to end --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs():
    found = {method: train(_config(method, epochs=15), dataset=_clusters(), progress=False)
             for method in ("ce", "coteaching", "lr-m-coteaching")}
    with pytest.MonkeyPatch.context() as patch:  # the wrong variant: the pair forgets nothing
        patch.setattr(CoTeachingLoss, "tau", property(lambda self: 0.0))
        found["forgets nothing"] = train(_config("coteaching", epochs=15), dataset=_clusters(), progress=False)
    return found


@pytest.mark.parametrize("method", ["coteaching", "lr-m-coteaching"])
def test_co_teaching_learns_and_scores_the_labels(runs, method):
    # measured (seed 0, 15 epochs, 40% noise, a third of the labels wrong): best accuracy 0.879 /
    # 0.925, detection AUC 0.79 / 0.67 (CE: 0.879, 0.76)
    summary = runs[method].summary()
    assert summary["best_val_acc"] > 0.75 and summary["detection_auc"] > 0.6, summary
    assert isinstance(runs[method].model, PairedNetworks)
    # it fits the wrong labels less than CE (last-epoch agreement with the noisy labels; measured
    # CE 0.833, coteaching 0.788, lr-m-coteaching 0.700)
    assert summary["last_train_acc_noisy"] < runs["ce"].summary()["last_train_acc_noisy"] - 0.03


def test_a_pair_that_forgets_nothing_fits_the_wrong_labels_as_ce_does(runs):
    # the wrong variant of the check above: tau 0, every sample kept (measured 0.825, CE 0.833)
    forgets_nothing = runs["forgets nothing"].summary()["last_train_acc_noisy"]
    assert not forgets_nothing < runs["ce"].summary()["last_train_acc_noisy"] - 0.03


def test_both_networks_train(runs):
    # the run's initial pair, as build_run draws it from the seed; each network moved away from it
    initial = build_run(_config("coteaching", epochs=15), dataset=_clusters()).model
    trained = runs["coteaching"].model
    for name in ("first", "second"):
        before, after = getattr(initial, name).state_dict(), getattr(trained, name).state_dict()
        assert all(not torch.equal(before[key], after[key].cpu()) for key in before), name


def test_run_folder_is_read_by_detect_and_predict_and_resumes_byte_for_byte(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    np.savez(tmp_path / "mine.npz", x=x, labels=y)
    args = ["train", "--data", str(tmp_path / "mine.npz"), "--method", "coteaching", "--epochs", "4", "--device",
            "cpu", "--quiet", "--noise", "0.3"]
    assert main(args + ["--out", str(tmp_path / "run")]) == 0
    run = tmp_path / "run"
    assert json.loads((run / "config.json").read_text())["method"]["selection"] == "small-loss"
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=False)
    assert len(checkpoint["coteaching_estimates"]) == 4 and 0 < forget_target(checkpoint["coteaching_estimates"]) < 1
    assert any(key.startswith("second.") for key in checkpoint["model"])
    # detect rebuilds label_issues.csv from the checkpoint (the run's own last tracking pass)
    written = (run / "label_issues.csv").read_bytes()
    (run / "label_issues.csv").unlink()
    assert main(["detect", str(run), "--top", "3"]) == 0
    assert (run / "label_issues.csv").read_bytes() == written
    # predict: the pair's mean logits give each validation row the class the run itself gave it
    assert main(["predict", str(run), "--data", str(tmp_path / "mine.npz"), "--out", str(tmp_path / "p.csv")]) == 0
    with open(run / "label_issues.csv") as handle:
        val = {int(row["index"]): int(row["predicted_label"]) for row in csv.DictReader(handle) if row["split"] == "val"}
    with open(tmp_path / "p.csv") as handle:
        predicted = {int(row["row"]): int(row["predicted_label"]) for row in csv.DictReader(handle)}
    assert val and all(predicted[index] == label for index, label in val.items())

    # an interrupted run resumes from its checkpoint (tau's estimates included) to the same metrics and weights
    class Stop(Exception):
        pass

    def interrupt(row):
        if row["epoch"] == 2:
            raise Stop

    config = _config("coteaching", epochs=4)
    full = train(config, dataset=_clusters(), run_dir=tmp_path / "a", progress=False)
    with pytest.raises(Stop):
        train(config, dataset=_clusters(), run_dir=tmp_path / "b", progress=False, on_epoch_end=interrupt)
    assert len(torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["coteaching_estimates"]) == 2
    resumed = train(config, dataset=_clusters(), run_dir=tmp_path / "b", resume=True, progress=False)
    comparable = lambda metrics: [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in metrics]  # noqa: E731
    assert comparable(resumed.metrics) == comparable(full.metrics)
    assert all(torch.equal(a, b) for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()))


def test_fit_with_the_users_own_mix_points_names_both_networks():
    # a user's mix_points name one network's submodules; the pair mixes the same place in both
    import latentmix

    torch.manual_seed(0)
    x = torch.randn(200, 5)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    result = latentmix.fit(model, x[:150], y[:150], val_inputs=x[150:], val_labels=y[150:], method="lr-m-coteaching",
                           mix_points=["1"], layers="0-1", epochs=2, noise=0.2, progress=False, device="cpu")
    assert isinstance(result.model, PairedNetworks) and len(result.metrics) == 2
