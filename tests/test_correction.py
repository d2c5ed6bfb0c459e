"""Tests of latentmix.correction against hand-written formulas ([A] utils.py, written per term),
properties and a plain second implementation of the per-batch forwards."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from latentmix.correction import P_NOISY_CLAMP, LossCorrection, track_losses
from latentmix.errors import ConfigError
from latentmix.mixing import NO_MIX, MixPlan
from latentmix.beta_mixture import BetaMixture


def _bimodal_losses(n=400, seed=0):
    """Losses of a noisy training set: most small, a fifth large."""
    rng = np.random.default_rng(seed)
    noisy = rng.random(n) < 0.2
    return np.where(noisy, rng.gamma(8.0, 0.4, n), rng.gamma(1.0, 0.1, n)), noisy


def _fitted(n=400, **kwargs):
    losses, noisy = _bimodal_losses(n)
    correction = LossCorrection(n, **kwargs)
    correction.observe(torch.arange(n), torch.from_numpy(losses).float())
    correction.end_epoch()
    return correction, losses, noisy


def _hand_hard_loss(out, y, z, w, lam, perm, reg_weight, prior=None):
    """[A] train_mixUp_HardBootBeta + reg_loss_class, term by term (`prior`: a list of class shares
    in place of [A]'s uniform one, a share of 0 adding nothing)."""
    def side(yy, zz, ww):
        return ((1 - ww) * F.cross_entropy(out, yy, reduction="none") + ww * F.cross_entropy(out, zz, reduction="none")).mean()

    loss = lam * side(y, z, w) + (1 - lam) * side(y[perm], z[perm], w[perm])
    pbar = F.softmax(out, dim=1).mean(dim=0)
    if prior is None:
        prior = 1.0 / out.shape[1]
        return loss + reg_weight * (prior * torch.log(prior / pbar)).sum()
    return loss + reg_weight * sum(p * torch.log(p / pbar[c]) for c, p in enumerate(prior) if p > 0)


def _hand_soft_loss(out, y, clean, w, lam, perm, reg_weight, side_weight):
    """[A] mixup_criterion_mixSoft + reg_loss_class: soft targets (1-w) onehot(y) + w softmax(clean)."""
    log_probs = F.log_softmax(out, dim=1)
    onehot = F.one_hot(y, out.shape[1]).float()
    target = (1 - w[:, None]) * onehot + w[:, None] * F.softmax(clean, dim=1)
    a = lam if side_weight == "lam" else 0.5
    loss = a * -(target * log_probs).sum(1).mean() + (1 - a) * -(target[perm] * log_probs).sum(1).mean()
    pbar = F.softmax(out, dim=1).mean(dim=0)
    prior = 1.0 / out.shape[1]
    return loss + reg_weight * (prior * torch.log(prior / pbar)).sum()


def _batch(seed=0, b=8, c=3):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(b, c, generator=generator), torch.randint(0, c, (b,), generator=generator),
            torch.randn(b, c, generator=generator), torch.rand(b, generator=generator))


def test_warm_up_loss_is_plain_mixed_cross_entropy():
    out, y, _, _ = _batch()
    plan = MixPlan(layer=1, lam=0.3, perm=torch.tensor([7, 6, 5, 4, 3, 2, 1, 0]))
    correction = LossCorrection(100, warmup_epochs=3)
    expected = 0.3 * F.cross_entropy(out, y) + 0.7 * F.cross_entropy(out, y[plan.perm])
    assert correction.loss(out, y, plan, None).item() == pytest.approx(expected.item(), rel=1e-6)
    assert correction.loss(out, y).item() == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-6)


@pytest.mark.parametrize("seed, lam, reg_weight, given, shares", [
    (1, 0.65, 0.7, None, None),  # [A]'s uniform prior
    # the regularizer's prior from the labels' class shares (counts are normalised; a class no label
    # names adds nothing): KL(p || pbar) = sum_c p_c log(p_c / pbar_c)
    (3, 0.4, 1.5, [2, 1, 1], [0.5, 0.25, 0.25]),
    (3, 0.4, 1.5, [0.7, 0.3, 0.0], [0.7, 0.3, 0.0]),
    (3, 0.4, 1.5, [1, 1, 1], None),  # equal shares: [A]'s loss
])
def test_hard_loss_is_the_reference_formula_term_by_term(seed, lam, reg_weight, given, shares):
    out, y, clean, w = _batch(seed)
    out.requires_grad_(True)
    perm = torch.tensor([3, 0, 1, 2, 7, 4, 5, 6])
    plan = MixPlan(layer=1, lam=lam, perm=perm)
    z = clean.argmax(1)
    targets = (1 - w[:, None]) * F.one_hot(y, 3).float() + w[:, None] * F.one_hot(z, 3).float()
    correction = LossCorrection(100, correction="hard", reg_weight=reg_weight, class_prior=given)
    got = correction.loss(out, y, plan, targets)
    expected = _hand_hard_loss(out, y, z, w, lam, perm, reg_weight, prior=shares)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    grad_got, = torch.autograd.grad(got, out)
    grad_expected, = torch.autograd.grad(expected, out)
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("given", [[-1.0, 2.0], [1.0], [float("nan"), 1.0], [0, 0, 0], "abc", [[1, 2], [3]]])
def test_a_bad_class_prior_is_refused_naming_it(given):
    with pytest.raises(ConfigError, match="class_prior"):
        LossCorrection(10, class_prior=given)


def test_a_class_prior_of_other_classes_than_the_logits_is_refused_at_the_loss():
    out, y, _, w = _batch(4)
    correction = LossCorrection(100, class_prior=[0.7, 0.3])
    with pytest.raises(ConfigError, match="class_prior has 2 classes but the logits have 3"):
        correction.loss(out, y, NO_MIX, F.one_hot(y, 3).float())


@pytest.mark.parametrize("side_weight", ["lam", "half"])
def test_soft_loss_is_the_reference_formula(side_weight):
    out, y, clean, w = _batch(2)
    perm = torch.tensor([1, 2, 3, 4, 5, 6, 7, 0])
    plan = MixPlan(layer=2, lam=0.2, perm=perm)
    targets = (1 - w[:, None]) * F.one_hot(y, 3).float() + w[:, None] * F.softmax(clean, 1)
    correction = LossCorrection(100, correction="soft", soft_side_weighting=side_weight)
    got = correction.loss(out, y, plan, targets)
    assert got.item() == pytest.approx(_hand_soft_loss(out, y, clean, w, 0.2, perm, 1.0, side_weight).item(), rel=1e-5)


def test_regularizer_is_kl_from_the_uniform_prior():
    out = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    pbar = F.softmax(out, 1).mean(0).tolist()
    expected = sum(math.log((1 / 3) / p) / 3 for p in pbar)
    assert LossCorrection.regularizer(out).item() == pytest.approx(expected, rel=1e-6)
    assert LossCorrection.regularizer(torch.zeros(4, 3)).item() == pytest.approx(0.0, abs=1e-7)


def test_warm_up_by_its_own_setting_and_by_the_callers_switch():
    n = 50
    losses = torch.from_numpy(_bimodal_losses(n)[0]).float()
    own = LossCorrection(n, warmup_epochs=2)
    switched = LossCorrection(n)  # warmup_epochs None: the caller decides
    states = []
    for _ in range(3):
        states.append((own.enabled, own.bootstrapping, switched.bootstrapping))
        for correction in (own, switched):
            correction.observe(torch.arange(n), losses)
            correction.end_epoch()
    assert states == [(False, False, False), (False, False, False), (True, True, False)]
    switched.enabled = True
    assert switched.bootstrapping
    own.enabled = False  # the switch overrides the warm-up
    assert not own.bootstrapping
    assert not LossCorrection(n, warmup_epochs=0).bootstrapping  # no noise model yet


def test_end_epoch_fits_the_observed_losses_and_p_noisy_covers_every_sample():
    n = 300
    losses, noisy = _bimodal_losses(n)
    correction = LossCorrection(n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    seen = order[:250]  # 50 samples never tracked (e.g. held out)
    for part in seen.split(64):  # per batch, in loader order
        correction.observe(part, torch.from_numpy(losses[part.numpy()]).float())
    fitted = correction.end_epoch()
    observed = losses[seen.numpy()].astype(np.float32).astype(np.float64)
    reference = BetaMixture.fit(observed)  # fitted on the observed losses, in the order observed
    np.testing.assert_array_equal(fitted.alphas, reference.alphas)
    np.testing.assert_array_equal(fitted.weights, reference.weights)
    p = correction.p_noisy
    assert np.isnan(p[order[250:].numpy()]).all()
    np.testing.assert_array_equal(p[seen.numpy()], reference.posterior(observed))
    flagged = p[seen.numpy()] > 0.5
    assert flagged[noisy[seen.numpy()]].mean() > 0.9 and flagged[~noisy[seen.numpy()]].mean() < 0.05
    assert correction.epochs_done == 1


def test_a_fit_that_separates_nothing_does_not_replace_one_that_did():
    n = 200
    correction, _, _ = _fitted(n)
    separating = correction.noise_model
    correction.observe(torch.arange(n), torch.full((n,), 0.7))  # every loss equal: no two groups
    collapsed = correction.end_epoch()
    assert collapsed.degenerate and correction.last_fit is collapsed
    assert correction.noise_model is separating


def _batch_norm_model():
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


@pytest.mark.parametrize("correction_kind", ["hard", "soft"])
def test_reference_batch_targets_are_the_train_mode_prediction_weighted_by_the_eval_mode_p_noisy(correction_kind):
    """A second implementation of [A]'s per-batch forwards on a copy of the model: the target
    from a train-mode forward (batch statistics, running statistics updated), P(noisy) from an
    eval-mode forward's loss through the noise model (NumPy posterior), clamped."""
    correction, _, _ = _fitted(correction=correction_kind, warmup_epochs=1)
    model = _batch_norm_model().train()
    twin = copy.deepcopy(model)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    targets = correction.batch_targets(model, x, y)
    with torch.no_grad():
        clean = twin(x)
        twin.eval()
        eval_losses = F.cross_entropy(twin(x), y, reduction="none")
        twin.train()
    w = torch.from_numpy(np.clip(correction.noise_model.posterior(eval_losses.numpy()), *P_NOISY_CLAMP)).float()
    own = F.one_hot(clean.argmax(1), 3).float() if correction_kind == "hard" else F.softmax(clean, 1)
    expected = (1 - w[:, None]) * F.one_hot(y, 3).float() + w[:, None] * own
    torch.testing.assert_close(targets, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(targets.sum(1), torch.ones(16))
    assert model.training and model[1].training
    torch.testing.assert_close(model[1].running_mean, twin[1].running_mean)  # one train-mode forward each


def test_single_forward_targets_come_from_one_eval_mode_forward():
    correction, _, _ = _fitted(bootstrap_forward="single", warmup_epochs=0)
    model = _batch_norm_model().train()
    stats = model[1].running_mean.clone()
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    targets = correction.batch_targets(model, x, y)
    assert torch.equal(model[1].running_mean, stats)  # no train-mode forward
    model.eval()
    with torch.no_grad():
        logits = model(x)
    w = torch.from_numpy(np.clip(correction.noise_model.posterior(
        F.cross_entropy(logits, y, reduction="none").numpy()), *P_NOISY_CLAMP)).float()
    expected = (1 - w[:, None]) * F.one_hot(y, 3).float() + w[:, None] * F.one_hot(logits.argmax(1), 3).float()
    torch.testing.assert_close(targets, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("with_labels", [False, True])
def test_tracked_targets_are_read_from_the_last_tracking_pass_by_index(with_labels):
    """Without labels each batch's rows are built from its own labels; with them, every sample's
    row once per pass (rebuilt after the next observe) and a gather per batch: the same rows."""
    n = 40
    generator = torch.Generator().manual_seed(4)
    losses = torch.from_numpy(_bimodal_losses(n)[0]).float()
    logits, labels = torch.randn(n, 3, generator=generator), torch.randint(0, 3, (n,), generator=generator)
    correction = LossCorrection(n, bootstrap_forward="tracked", warmup_epochs=1)
    correction.observe(torch.arange(n), losses, logits, labels if with_labels else None)
    correction.end_epoch()
    index = torch.tensor([5, 0, 33, 12])
    y = labels[index]

    def expected_rows(losses, logits):
        w = torch.from_numpy(np.clip(correction.noise_model.posterior(losses[index].numpy()), *P_NOISY_CLAMP)).float()
        return (1 - w[:, None]) * F.one_hot(y, 3).float() + w[:, None] * F.one_hot(logits[index].argmax(1), 3).float()

    targets = correction.batch_targets(None, None, y, index)  # no model, no forward
    torch.testing.assert_close(targets, expected_rows(losses, logits), rtol=1e-6, atol=1e-6)
    later_logits = -logits  # the next pass: other predictions
    correction.observe(torch.arange(n), losses, later_logits, labels if with_labels else None)
    torch.testing.assert_close(correction.batch_targets(None, None, y, index), expected_rows(losses, later_logits),
                               rtol=1e-6, atol=1e-6)
    with pytest.raises(ConfigError, match="index"):
        correction.batch_targets(None, None, y)


def test_state_dict_resumes_exactly(tmp_path):
    n = 120
    correction, losses, _ = _fitted(n, correction="soft", warmup_epochs=1)
    correction.observe(torch.arange(0, n, 2), torch.from_numpy(losses[::2] * 1.1).float())  # mid-epoch
    torch.save(correction.state_dict(), tmp_path / "correction.pt")
    resumed = LossCorrection(n, correction="soft", warmup_epochs=1)
    resumed.load_state_dict(torch.load(tmp_path / "correction.pt", weights_only=True))
    assert (resumed.epochs_done, resumed.enabled, resumed.bootstrapping) == (1, True, True)
    np.testing.assert_array_equal(resumed.p_noisy, correction.p_noisy)
    model = _batch_norm_model()
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    torch.testing.assert_close(resumed.batch_targets(copy.deepcopy(model), x, y),
                               correction.batch_targets(copy.deepcopy(model), x, y), rtol=0, atol=0)
    for each in (correction, resumed):  # the epoch's remaining observations, then the fit
        each.observe(torch.arange(1, n, 2), torch.from_numpy(losses[1::2] * 0.9).float())
        each.end_epoch()
    np.testing.assert_array_equal(resumed.noise_model.table, correction.noise_model.table)
    with pytest.raises(ConfigError, match="num_samples"):
        LossCorrection(n + 1, correction="soft").load_state_dict(correction.state_dict())


@pytest.mark.parametrize("kwargs, field", [
    ({"correction": "medium"}, "correction"), ({"bootstrap_forward": "twice"}, "bootstrap_forward"),
    ({"warmup_epochs": -1}, "warmup_epochs"), ({"reg_weight": float("inf")}, "reg_weight"),
    ({"noise_model": "poisson"}, "noise_model"),
])
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        LossCorrection(10, **kwargs)


def test_bad_observations_are_clear_errors():
    correction = LossCorrection(10)
    with pytest.raises(ConfigError, match="no per-sample losses"):
        correction.end_epoch()
    with pytest.raises(ConfigError, match="num_samples=10"):
        correction.observe(torch.tensor([3, 10]), torch.tensor([0.1, 0.2]))
    with pytest.raises(ConfigError, match="one loss per sample"):
        correction.observe(torch.tensor([3, 4]), torch.tensor([0.1]))
    correction.observe(torch.arange(10), torch.tensor([0.1] * 9 + [float("nan")]))
    with pytest.raises(ConfigError, match="training diverged"):
        correction.end_epoch()


class _FrozenNormModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = _batch_norm_model()

    def train(self, mode=True):
        super().train(mode)
        self.body[1].eval()
        return self

    def forward(self, x):
        return self.body(x)


def test_track_losses_over_a_shuffled_data_loader():
    """Each sample's cross-entropy against its label, keyed by its index whatever the order; the
    model's modes come back as they were (its frozen batch norm stays frozen)."""
    torch.manual_seed(0)
    x, y = torch.randn(50, 4), torch.randint(0, 3, (50,))
    model = _FrozenNormModel().train()
    loader = DataLoader(TensorDataset(x, y, torch.arange(50)), batch_size=16, shuffle=True)
    tracked = track_losses(model, loader)
    assert sorted(tracked.index.tolist()) == list(range(50))
    model.eval()
    with torch.no_grad():
        expected = F.cross_entropy(model(x), y, reduction="none")
    model.train()
    torch.testing.assert_close(tracked.losses, expected[tracked.index], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(tracked.predictions, model(x).argmax(1)[tracked.index])
    assert torch.equal(tracked.labels, y[tracked.index])
    assert model.training and not model.body[1].training
    with pytest.raises(ConfigError, match="inputs, labels, index"):
        track_losses(model, DataLoader(TensorDataset(x, y), batch_size=16))
    custom = track_losses(model, DataLoader(TensorDataset(x, y), batch_size=50),
                          unpack=lambda batch: (batch[0], batch[1], torch.arange(50)))
    torch.testing.assert_close(custom.losses, expected)


def _track_in_process(rank, world_size, port, out_dir):
    """One process of a 2-process gloo group: track its DistributedSampler part of the data."""
    from torch.utils.data.distributed import DistributedSampler

    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        x, y = torch.randn(50, 4), torch.randint(0, 3, (50,))
        data = TensorDataset(x, y, torch.arange(50))
        loader = DataLoader(data, batch_size=8, sampler=DistributedSampler(data, shuffle=True, seed=1))
        tracked = track_losses(model, loader)
        torch.save({"index": tracked.index, "losses": tracked.losses}, f"{out_dir}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="this PyTorch build has no gloo backend")
def test_track_losses_gathers_every_process_part(tmp_path):
    """Two processes, each tracking half of the samples: both get all of them, with the losses one
    process computes alone."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_track_in_process, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(50, 4), torch.randint(0, 3, (50,))
    with torch.no_grad():
        alone = F.cross_entropy(model(x), y, reduction="none")
    for rank in range(2):
        part = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert sorted(part["index"].tolist()) == list(range(50))
        torch.testing.assert_close(part["losses"], alone[part["index"]], rtol=1e-6, atol=1e-6)


def test_no_correction_still_gives_p_noisy_and_a_restored_pass_stays_out_of_the_fit():
    n = 200
    losses, noisy = _bimodal_losses(n)
    detector = LossCorrection(n, correction="none", warmup_epochs=0)
    detector.observe(torch.arange(n), torch.from_numpy(losses).float())
    detector.end_epoch()
    assert detector.enabled and not detector.bootstrapping  # plain mixup: never corrects
    assert detector.batch_targets(None, None, torch.zeros(2, dtype=torch.long)) is None
    assert (detector.p_noisy[noisy] > 0.5).mean() > 0.9
    detector.observe(torch.arange(n), torch.zeros(n), for_fit=False)  # e.g. restored from a checkpoint
    with pytest.raises(ConfigError, match="no per-sample losses"):
        detector.end_epoch()
    assert (detector.losses == 0).all()


def test_your_own_fit_function_is_used():
    seen = []

    def fit(losses):
        seen.append(losses.clone())
        return BetaMixture.fit(losses.numpy(), lookup="reference")

    n = 100
    correction = LossCorrection(n, fit=fit)
    values = torch.from_numpy(_bimodal_losses(n)[0]).float()
    correction.observe(torch.arange(n).flip(0), values.flip(0))
    assert correction.end_epoch().lookup == "reference"
    assert torch.equal(seen[0], values.flip(0))  # the losses in the order observed
