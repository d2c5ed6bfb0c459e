"""Bootstrapping losses and the prior regularizer against per-sample hand computation; method presets."""

import math

import pytest
import torch
import torch.nn.functional as F

from latentmix.errors import ConfigError
from latentmix.losses import (
    bootstrap_targets, bootstrapping_objective, class_shares, hard_bootstrapping_loss, prior_regularizer,
    soft_bootstrapping_loss,
)
from latentmix.methods import CORRECTIONS, PRESETS, Method, get_method
from latentmix.mixing import NO_MIX, MixPlan, mixed_cross_entropy

# A tiny fixed batch: B = 3 samples, C = 3 classes.
LOGITS = [[2.0, 0.5, -1.0], [0.0, 1.0, 0.0], [-0.5, 0.2, 1.5]]
CLEAN = [[0.1, 2.0, 0.3], [1.5, -0.2, 0.0], [0.0, 0.0, 3.0]]  # argmax z = [1, 0, 2]
Y = [0, 2, 1]
W = [0.2, 0.9, 0.5]
LAM = 0.7
PERM = [2, 0, 1]


def _tensors(requires_grad=False):
    logits = torch.tensor(LOGITS, requires_grad=requires_grad)
    return logits, torch.tensor(CLEAN), torch.tensor(Y), torch.tensor(W), MixPlan(1, LAM, torch.tensor(PERM))


# ---- plain-Python per-sample math ---------------------------------------------------------------

def _log_softmax_row(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def _softmax_row(row):
    exps = [math.exp(v) for v in row]
    s = sum(exps)
    return [e / s for e in exps]


def _ce(i, c):
    """CE of sample i's (mixed) output against class c."""
    return -_log_softmax_row(LOGITS[i])[c]


Z = [max(range(3), key=lambda c: CLEAN[i][c]) for i in range(3)]


def _hand_hard(lam=LAM, w=W, mixes=True):
    side_a = [(1 - w[i]) * _ce(i, Y[i]) + w[i] * _ce(i, Z[i]) for i in range(3)]
    if not mixes:
        return sum(side_a) / 3
    side_b = []
    for i in range(3):
        p = PERM[i]
        side_b.append((1 - w[p]) * _ce(i, Y[p]) + w[p] * _ce(i, Z[p]))
    return lam * sum(side_a) / 3 + (1 - lam) * sum(side_b) / 3


def _soft_target(j, w=W):
    """(1 - w_j) onehot(y_j) + w_j softmax(clean_j)."""
    probs = _softmax_row(CLEAN[j])
    return [(1 - w[j]) * (1.0 if c == Y[j] else 0.0) + w[j] * probs[c] for c in range(3)]


def _soft_sides(w=W):
    loss_a = loss_b = 0.0
    for i in range(3):
        log_p = _log_softmax_row(LOGITS[i])
        t_a, t_b = _soft_target(i, w), _soft_target(PERM[i], w)
        loss_a += -sum(t_a[c] * log_p[c] for c in range(3)) / 3
        loss_b += -sum(t_b[c] * log_p[c] for c in range(3)) / 3
    return loss_a, loss_b


def test_hard_targets_of_the_fixture_worked_by_hand():
    """The fixture's rows worked out on paper: z = argmax of CLEAN's rows = [1, 0, 2], so
    t_0 = 0.8 onehot(0) + 0.2 onehot(1), t_1 = 0.1 onehot(2) + 0.9 onehot(0) and
    t_2 = 0.5 onehot(1) + 0.5 onehot(2); with w = 1 each row is onehot(z), with w = 0 onehot(y)."""
    _, clean, y, w, _ = _tensors()
    by_hand = torch.tensor([[0.8, 0.2, 0.0], [0.9, 0.0, 0.1], [0.0, 0.5, 0.5]])
    torch.testing.assert_close(bootstrap_targets(y, clean, w, "hard"), by_hand)
    torch.testing.assert_close(bootstrap_targets(y, clean, torch.ones(3), "hard"), torch.eye(3)[[1, 0, 2]])
    torch.testing.assert_close(bootstrap_targets(y, clean, torch.zeros(3), "hard"), torch.eye(3)[[0, 2, 1]])


def test_hard_bootstrapping_by_hand():
    logits, clean, y, w, plan = _tensors()
    value = hard_bootstrapping_loss(logits, y, clean, w, plan)
    assert value.item() == pytest.approx(_hand_hard(), rel=1e-6)


def test_hard_bootstrapping_without_mix_by_hand():
    logits, clean, y, w, _ = _tensors()
    assert hard_bootstrapping_loss(logits, y, clean, w, NO_MIX).item() == pytest.approx(_hand_hard(mixes=False), rel=1e-6)


def test_soft_bootstrapping_by_hand():
    logits, clean, y, w, plan = _tensors()
    loss_a, loss_b = _soft_sides()
    lam_value = soft_bootstrapping_loss(logits, y, clean, w, plan, side_weighting="lam").item()
    half_value = soft_bootstrapping_loss(logits, y, clean, w, plan, side_weighting="half").item()
    assert lam_value == pytest.approx(LAM * loss_a + (1 - LAM) * loss_b, rel=1e-6)
    assert half_value == pytest.approx(0.5 * loss_a + 0.5 * loss_b, rel=1e-6)
    # the two weightings differ by (0.5 - lam) * (a - b)
    assert half_value - lam_value == pytest.approx((0.5 - LAM) * (loss_a - loss_b), abs=1e-6)
    assert abs(half_value - lam_value) > 1e-3
    assert soft_bootstrapping_loss(logits, y, clean, w, NO_MIX).item() == pytest.approx(loss_a, rel=1e-6)


def test_soft_bootstrapping_rejects_unknown_weighting():
    logits, clean, y, w, plan = _tensors()
    with pytest.raises(ValueError):
        soft_bootstrapping_loss(logits, y, clean, w, plan, side_weighting="bogus")


@pytest.mark.parametrize("plan", [MixPlan(1, LAM, torch.tensor(PERM)), MixPlan(0, 0.15, torch.tensor([1, 2, 0])), NO_MIX])
def test_zero_weight_is_mixed_cross_entropy(plan):
    logits, clean, y, _, _ = _tensors()
    zero = torch.zeros(3)
    expected = mixed_cross_entropy(logits, y, plan)
    torch.testing.assert_close(hard_bootstrapping_loss(logits, y, clean, zero, plan), expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(soft_bootstrapping_loss(logits, y, clean, zero, plan), expected, rtol=1e-6, atol=1e-7)


def _analytic_grad(targets):
    """d/d logits of mean_i -sum_c T_ic log softmax(logits_i)_c = (softmax - T) / B (rows of T sum to 1)."""
    probs = F.softmax(torch.tensor(LOGITS), dim=1)
    return (probs - targets) / 3


def _hard_effective_targets():
    t = torch.zeros(3, 3)
    for i in range(3):
        p = PERM[i]
        t[i, Y[i]] += LAM * (1 - W[i])
        t[i, Z[i]] += LAM * W[i]
        t[i, Y[p]] += (1 - LAM) * (1 - W[p])
        t[i, Z[p]] += (1 - LAM) * W[p]
    return t


def _soft_effective_targets():
    t = torch.zeros(3, 3)
    for i in range(3):
        t[i] += LAM * torch.tensor(_soft_target(i)) + (1 - LAM) * torch.tensor(_soft_target(PERM[i]))
    return t


@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_no_gradient_through_the_bootstrapping_target(kind):
    logits, _, y, _, plan = _tensors(requires_grad=True)
    clean = torch.tensor(CLEAN, requires_grad=True)
    w = torch.tensor(W, requires_grad=True)
    loss_fn = hard_bootstrapping_loss if kind == "hard" else soft_bootstrapping_loss
    loss_fn(logits, y, clean, w, plan).backward()
    assert clean.grad is None
    assert w.grad is None
    targets = _hard_effective_targets() if kind == "hard" else _soft_effective_targets()
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(3))
    torch.testing.assert_close(logits.grad, _analytic_grad(targets), rtol=1e-5, atol=1e-6)


def test_soft_target_built_from_the_same_logits_is_detached():
    """The bootstrapping target usually comes from the same network: taking softmax of the very
    logits being trained must not add a gradient path (the analytic gradient holds)."""
    base = torch.tensor(LOGITS, requires_grad=True)
    logits = base * 1.0
    clean = base * 1.0  # connected to `base`
    w = torch.tensor(W)
    plan = MixPlan(1, LAM, torch.tensor(PERM))
    soft_bootstrapping_loss(logits, torch.tensor(Y), clean, w, plan).backward()
    t = torch.zeros(3, 3)
    probs = F.softmax(torch.tensor(LOGITS), dim=1)
    for i in range(3):
        for j, weight in ((i, LAM), (PERM[i], 1 - LAM)):
            t[i] += weight * ((1 - W[j]) * F.one_hot(torch.tensor(Y[j]), 3).float() + W[j] * probs[j])
    torch.testing.assert_close(base.grad, (probs - t) / 3, rtol=1e-5, atol=1e-6)


# ---- prior regularizer ---------------------------------------------------------------------------

def test_prior_regularizer_zero_for_uniform_mean_prediction():
    assert prior_regularizer(torch.zeros(4, 3)).item() == pytest.approx(0.0, abs=1e-7)
    # confident but balanced predictions average to the uniform distribution
    balanced = torch.tensor([[5.0, -5.0], [-5.0, 5.0]])
    assert prior_regularizer(balanced).item() == pytest.approx(0.0, abs=1e-6)


def test_prior_regularizer_with_class_shares_is_kl_by_hand():
    rows = [_softmax_row(r) for r in LOGITS]
    pbar = [sum(r[c] for r in rows) / 3 for c in range(3)]
    shares = [0.6, 0.3, 0.1]
    expected = sum(p * math.log(p / pbar[c]) for c, p in enumerate(shares))
    assert prior_regularizer(torch.tensor(LOGITS), torch.tensor(shares)).item() == pytest.approx(expected, rel=1e-5)
    # a class of share 0 adds nothing (0 log 0 = 0), not a NaN
    expected = sum(p * math.log(p / pbar[c]) for c, p in enumerate([0.75, 0.25]))
    assert prior_regularizer(torch.tensor(LOGITS), torch.tensor([0.75, 0.25, 0.0])).item() == pytest.approx(expected, rel=1e-5)
    # zero where the mean prediction is the prior itself
    mean_is_prior = torch.log(torch.tensor([[0.6, 0.3, 0.1]] * 4))
    assert prior_regularizer(mean_is_prior, torch.tensor(shares)).item() == pytest.approx(0.0, abs=1e-6)


def test_class_shares_count_the_labels():
    assert class_shares(torch.tensor([0, 0, 1, 3, 0, 3, 0, 1]), 5).tolist() == [0.5, 0.25, 0.0, 0.25, 0.0]


def test_prior_regularizer_is_kl_by_hand():
    rows = [_softmax_row(r) for r in LOGITS]
    pbar = [sum(r[c] for r in rows) / 3 for c in range(3)]
    expected = sum((1 / 3) * math.log((1 / 3) / pbar[c]) for c in range(3))
    value = prior_regularizer(torch.tensor(LOGITS)).item()
    assert value == pytest.approx(expected, rel=1e-5)
    assert value > 0
    # all mass on one class: KL(u || ~onehot) is large
    assert prior_regularizer(torch.tensor([[20.0, 0.0, 0.0]] * 3)).item() > 5.0


# ---- methods -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, layers, correction", [
    ("ce", (), "none"),
    ("m", (0,), "none"),
    ("lr-m", (0, 1, 2), "none"),
    ("m-dyr-s", (0,), "soft"),
    ("m-dyr-h", (0,), "hard"),
    ("lr-m-dyr-h", (0, 1, 2), "hard"),
    ("dlr-m-dyr-h", (1, 2, 3, 4), "hard"),
    ("lr-m-dyr-h-0-4", (0, 1, 2, 3, 4), "hard"),
])
def test_presets(name, layers, correction):
    method = get_method(name)
    assert method.name == name
    assert method.mix_layers == layers
    assert method.correction == correction
    assert method.mixes == bool(layers)
    assert method.corrects == (correction != "none")


def test_get_method_is_case_insensitive():
    assert get_method("  LR-M-DYR-H ") == PRESETS["lr-m-dyr-h"]


def test_layer_override_renames():
    method = get_method("lr-m", layers="3-4")
    assert method.name == "lr-m(3-4)"
    assert method.mix_layers == (3, 4)
    assert get_method("lr-m", layers="0,1,2").name == "lr-m"  # same layers: same name
    assert get_method("lr-m", layers="0,2").name == "lr-m(0,2)"


def test_other_overrides():
    method = get_method("m-dyr-h", alpha=4.0, warmup_epochs=3, reg_weight=0.5)
    assert (method.alpha, method.warmup_epochs, method.reg_weight) == (4.0, 3, 0.5)
    assert method.name == "m-dyr-h" and method.correction == "hard"
    changed = get_method("ce", correction="hard")
    assert changed.correction == "hard" and changed.name != "ce"
    assert get_method("m-dyr-s", soft_side_weighting="half").soft_side_weighting == "half"


def test_unknown_method_names_choices():
    with pytest.raises(ConfigError) as info:
        get_method("mixup-9000")
    message = str(info.value)
    assert "mixup-9000" in message
    for name in ("ce", "lr-m", "m-dyr-h", "dlr-m-dyr-h", "lr-m-dyr-h-0-4"):
        assert name in message


def test_unknown_correction_names_choices():
    with pytest.raises(ConfigError) as info:
        get_method("m", correction="medium")
    for name in CORRECTIONS:
        assert name in str(info.value)
    with pytest.raises(ConfigError):
        Method("x", correction="medium")


@pytest.mark.parametrize("kwargs", [{"alpha": -1.0}, {"warmup_epochs": -2}, {"soft_side_weighting": "third"},
                                    {"mix_layers": (-1, 2)}])
def test_method_rejects_bad_fields(kwargs):
    with pytest.raises(ConfigError):
        Method("x", **kwargs)


# ---- the one-soft-target forms against the per-term formulas they replace -------------------------

def _old_hard_loss(logits, y, clean_logits, w, plan):
    """The former implementation: all four cross-entropies in one gather, weighted per side."""
    log_probs = F.log_softmax(logits, dim=1)
    z = clean_logits.detach().argmax(dim=1)
    w = w.detach()
    if not plan.mixes:
        targets, weights = torch.stack([y, z], dim=1), torch.stack([1.0 - w, w], dim=1)
        side_weights = torch.ones(1, 2)
    else:
        perm = plan.perm
        targets = torch.stack([y, z, y[perm], z[perm]], dim=1)
        weights = torch.stack([1.0 - w, w, 1.0 - w[perm], w[perm]], dim=1)
        side_weights = torch.tensor([[plan.lam, plan.lam, 1.0 - plan.lam, 1.0 - plan.lam]])
    return ((-log_probs.gather(1, targets) * weights).mean(dim=0) * side_weights).sum()


def _old_soft_loss(logits, y, clean_logits, w, plan, side_weighting="lam"):
    log_probs = F.log_softmax(logits, dim=1)
    w = w.detach()[:, None]
    soft = (1.0 - w) * F.one_hot(y, logits.shape[1]).float() + w * F.softmax(clean_logits.detach(), dim=1)
    loss_a = -(soft * log_probs).sum(dim=1).mean()
    if not plan.mixes:
        return loss_a
    loss_b = -(soft[plan.perm] * log_probs).sum(dim=1).mean()
    lam, weight_b = (plan.lam, 1.0 - plan.lam) if side_weighting == "lam" else (0.5, 0.5)
    return lam * loss_a + weight_b * loss_b


def test_bootstrap_targets_by_hand():
    _, clean, y, w, _ = _tensors()
    hard = bootstrap_targets(y, clean, w, "hard")
    soft = bootstrap_targets(y, clean, w, "soft")
    for i in range(3):
        expected_hard = [(1 - W[i]) * (c == Y[i]) + W[i] * (c == Z[i]) for c in range(3)]
        torch.testing.assert_close(hard[i], torch.tensor(expected_hard))
        torch.testing.assert_close(soft[i], torch.tensor(_soft_target(i)))
    torch.testing.assert_close(hard.sum(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match="correction"):
        bootstrap_targets(y, clean, w, "none")


@pytest.mark.parametrize("plan", [NO_MIX, MixPlan(1, LAM, torch.tensor(PERM)), MixPlan(0, 0.1, torch.tensor(PERM))])
def test_bootstrapping_losses_equal_their_former_per_term_forms(plan):
    torch.manual_seed(3)
    logits = torch.randn(3, 3, requires_grad=True)
    _, clean, y, w, _ = _tensors()
    cases = [(hard_bootstrapping_loss(logits, y, clean, w, plan), _old_hard_loss(logits, y, clean, w, plan))]
    for weighting in ("lam", "half"):
        cases.append((soft_bootstrapping_loss(logits, y, clean, w, plan, weighting),
                      _old_soft_loss(logits, y, clean, w, plan, weighting)))
    for new, old in cases:
        torch.testing.assert_close(new, old)
        torch.testing.assert_close(torch.autograd.grad(new, logits)[0], torch.autograd.grad(old, logits)[0])


@pytest.mark.parametrize("reg_weight", [0.0, 1.0, 2.5])
def test_bootstrapping_objective_is_loss_plus_weighted_regularizer(reg_weight):
    torch.manual_seed(4)
    logits = torch.randn(5, 4, requires_grad=True)
    targets = torch.softmax(torch.randn(5, 4), dim=1)
    value = bootstrapping_objective(logits, targets, reg_weight)
    expected = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean() + reg_weight * prior_regularizer(logits)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(torch.autograd.grad(value, logits)[0], torch.autograd.grad(expected, logits)[0])


@pytest.mark.parametrize("shares", [[0.4, 0.3, 0.2, 0.1], [0.5, 0.5, 0.0, 0.0], [0.25] * 4])
def test_bootstrapping_objective_with_class_shares_is_loss_plus_their_regularizer(shares):
    # the fused form against the regularizer written from softmax means
    torch.manual_seed(5)
    logits = torch.randn(6, 4, requires_grad=True)
    targets = torch.softmax(torch.randn(6, 4), dim=1)
    prior = torch.tensor(shares)
    value = bootstrapping_objective(logits, targets, 1.3, prior)
    expected = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean() + 1.3 * prior_regularizer(logits, prior)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(torch.autograd.grad(value, logits)[0], torch.autograd.grad(expected, logits)[0])


def test_the_correction_loss_is_the_method_loss_plus_regularizer():
    """`LossCorrection.loss`, the loss of `train`'s step, against the reference's two losses
    written out separately (`_old_hard_loss`, `_old_soft_loss`) plus the weighted regularizer."""
    from latentmix.correction import LossCorrection

    torch.manual_seed(5)
    logits = torch.randn(3, 3)
    _, clean, y, w, plan = _tensors()

    def step_loss(method):
        correction = LossCorrection(3, correction=method.correction, reg_weight=method.reg_weight,
                                    soft_side_weighting=method.soft_side_weighting)
        return correction.loss(logits, y, plan, bootstrap_targets(y, clean, w, method.correction))

    for name, old in (("m-dyr-h", _old_hard_loss(logits, y, clean, w, plan)),
                      ("m-dyr-s", _old_soft_loss(logits, y, clean, w, plan))):
        method = get_method(name)
        expected = old + method.reg_weight * prior_regularizer(logits)
        torch.testing.assert_close(step_loss(method), expected)
    half = get_method("m-dyr-s", soft_side_weighting="half")
    expected = _old_soft_loss(logits, y, clean, w, plan, "half") + half.reg_weight * prior_regularizer(logits)
    torch.testing.assert_close(step_loss(half), expected)
