"""Tests of latentmix.mixing against hand-written forwards and closed forms."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from latentmix.errors import ConfigError
from latentmix.mixing import (
    NO_MIX,
    LatentMixer,
    MixPlan,
    format_layers,
    mix_rows,
    mix_targets,
    mixed_cross_entropy,
    mixed_soft_targets,
    one_hot,
    parse_layers,
    soft_target_cross_entropy,
)
from latentmix.models.small import SpiralMLP


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _spiral_batch(batch=6):
    model = SpiralMLP()
    x = torch.randn(batch, 4)
    return model, x


def _perm(batch):
    # a fixed derangement, so every sample really gets another partner
    return torch.roll(torch.arange(batch), 1)


def _manual_spiral_forward(model: SpiralMLP, x, layer, lam, perm):
    """SpiralMLP forward written out by hand, mixing the state after layer `layer` (0 = input)."""
    h = x
    if layer == 0:
        h = lam * h + (1 - lam) * h[perm]
    for k, block in enumerate([model.layer1, model.layer2, model.layer3, model.layer4, model.layer5], start=1):
        linear, act = block[0], block[1]
        h = act(h @ linear.weight.T + linear.bias)
        if k == layer:
            h = lam * h + (1 - lam) * h[perm]
    return h @ model.output.weight.T + model.output.bias


# ------------------------------------------------------------------------------------------------
# identity and per-layer mixing


@pytest.mark.parametrize("layer", range(6))
def test_lam_one_is_identity_for_spiral_mlp(layer):
    model, x = _spiral_batch()
    mixer = LatentMixer(model)
    expected = model(x)
    out = mixer.forward(x, MixPlan(layer=layer, lam=1.0, perm=_perm(len(x))))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def _sequential_model():
    return nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(3, 5)), ("act1", nn.Tanh()),
        ("fc2", nn.Linear(5, 4)), ("act2", nn.ReLU()),
        ("head", nn.Linear(4, 2)),
    ]))


@pytest.mark.parametrize("layer", range(4))
def test_lam_one_is_identity_for_named_sequential(layer):
    model = _sequential_model()
    x = torch.randn(5, 3)
    mixer = LatentMixer(model, ["act1", "fc2", "act2"])
    assert mixer.num_layers == 4
    out = mixer.forward(x, MixPlan(layer=layer, lam=1.0, perm=_perm(5)))
    torch.testing.assert_close(out, model(x), rtol=0, atol=0)


def test_named_sequential_mixes_at_the_named_module():
    model = _sequential_model()
    x = torch.randn(5, 3)
    mixer = LatentMixer(model, ["act1", "fc2", "act2"])
    lam, perm = 0.35, _perm(5)
    h = model.fc2(model.act1(model.fc1(x)))  # layer 2 = fc2 output
    h = lam * h + (1 - lam) * h[perm]
    expected = model.head(model.act2(h))
    out = mixer.forward(x, MixPlan(layer=2, lam=lam, perm=perm))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", range(6))
def test_mixing_matches_manual_forward(layer):
    model, x = _spiral_batch()
    lam, perm = 0.3, _perm(len(x))
    mixer = LatentMixer(model)
    out = mixer.forward(x, MixPlan(layer=layer, lam=lam, perm=perm))
    expected = _manual_spiral_forward(model, x, layer, lam, perm)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    # and the mix really changed something (lam < 1 with a derangement)
    assert not torch.allclose(out, model(x), atol=1e-4)


def test_manual_forward_reproduces_plain_forward():
    """Sanity of the helper itself: lam = 1 by hand is the model's own forward."""
    model, x = _spiral_batch()
    torch.testing.assert_close(_manual_spiral_forward(model, x, 3, 1.0, _perm(len(x))), model(x))


def test_no_mix_plan_is_plain_forward():
    model, x = _spiral_batch()
    torch.testing.assert_close(LatentMixer(model).forward(x, NO_MIX), model(x), rtol=0, atol=0)


def test_gradients_reach_layers_below_the_mix_and_hook_is_removed():
    model, x = _spiral_batch()
    plain = model(x).detach()
    mixer = LatentMixer(model)
    out = mixer.forward(x, MixPlan(layer=3, lam=0.4, perm=_perm(len(x))))
    out.sum().backward()
    assert model.layer1[0].weight.grad is not None
    assert model.layer1[0].weight.grad.abs().sum() > 0
    assert model.layer5[0].weight.grad.abs().sum() > 0
    # no hook left behind: a plain forward gives the un-mixed output again
    for module in model.modules():
        assert len(module._forward_hooks) == 0
    torch.testing.assert_close(model(x), plain, rtol=0, atol=0)
    torch.testing.assert_close(mixer.forward(x, NO_MIX), plain, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------
# structured inputs at layer 0


class _Recorder(nn.Module):
    """Records what it was called with; returns a float that depends on every input."""

    def __init__(self):
        super().__init__()
        self.seen = None

    def forward(self, inputs):
        self.seen = inputs
        values = inputs.values() if isinstance(inputs, dict) else inputs
        return torch.stack([v.float().flatten(1).sum(dim=1) for v in values], dim=1)


def test_tuple_inputs_mixed_with_same_lam_and_perm():
    model = _Recorder()
    a, b = torch.randn(4, 3), torch.randn(4, 2)
    lam, perm = 0.25, torch.tensor([3, 2, 0, 1])
    LatentMixer(model, []).forward((a, b), MixPlan(layer=0, lam=lam, perm=perm))
    assert isinstance(model.seen, tuple) and len(model.seen) == 2
    torch.testing.assert_close(model.seen[0], lam * a + (1 - lam) * a[perm])
    torch.testing.assert_close(model.seen[1], lam * b + (1 - lam) * b[perm])


def test_dict_inputs_mixed_with_same_lam_and_perm():
    model = _Recorder()
    inputs = {"image": torch.randn(4, 2, 2), "features": torch.randn(4, 5)}
    lam, perm = 0.6, torch.tensor([1, 0, 3, 2])
    LatentMixer(model, []).forward(inputs, MixPlan(layer=0, lam=lam, perm=perm))
    assert set(model.seen) == {"image", "features"}
    for key, value in inputs.items():
        torch.testing.assert_close(model.seen[key], lam * value + (1 - lam) * value[perm])


def test_integer_input_at_layer_zero_raises():
    model = _Recorder()
    tokens = torch.randint(0, 10, (4, 3))
    with pytest.raises(ConfigError, match="hidden"):
        LatentMixer(model, []).forward(tokens, MixPlan(layer=0, lam=0.5, perm=torch.tensor([1, 0, 3, 2])))
    with pytest.raises(ConfigError, match="hidden"):
        LatentMixer(model, []).forward({"tokens": tokens, "x": torch.randn(4, 2)},
                                       MixPlan(layer=0, lam=0.5, perm=torch.tensor([1, 0, 3, 2])))


# ------------------------------------------------------------------------------------------------
# bad mix points and layers


class _SharedLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.fc(self.fc(x)))


def test_mix_point_that_runs_twice_raises_and_cleans_up():
    model = _SharedLinear()
    x = torch.randn(3, 4)
    mixer = LatentMixer(model, ["fc"])
    with pytest.raises(ConfigError, match="more than once"):
        mixer.forward(x, MixPlan(layer=1, lam=0.5, perm=torch.tensor([2, 0, 1])))
    assert len(model.fc._forward_hooks) == 0
    model(x)  # still usable


def test_bad_mix_point_name_lists_valid_names():
    model = SpiralMLP()
    with pytest.raises(ConfigError) as info:
        LatentMixer(model, ["layer1", "nope"])
    message = str(info.value)
    assert "nope" in message
    for name in ("layer1", "layer5", "output"):
        assert name in message


def test_model_without_mix_points_needs_them():
    with pytest.raises(ConfigError, match="mix_points"):
        LatentMixer(nn.Linear(2, 2))


@pytest.mark.parametrize("layer", [6, 9, -1])
def test_out_of_range_layer_lists_valid_range(layer):
    model, x = _spiral_batch()
    mixer = LatentMixer(model)
    with pytest.raises(ConfigError, match=r"0\.\.5"):
        mixer.check_layers([0, layer])
    with pytest.raises(ConfigError, match=r"0\.\.5"):
        mixer.forward(x, MixPlan(layer=layer, lam=0.5, perm=_perm(len(x))))


def test_check_layers_sorts_and_dedups():
    assert LatentMixer(SpiralMLP()).check_layers([3, 0, 3, 5]) == (0, 3, 5)


# ------------------------------------------------------------------------------------------------
# parse / format


@pytest.mark.parametrize("spec, expected", [
    ("3-4", (3, 4)), ("0,2", (0, 2)), ("0-2", (0, 1, 2)), (" 1-2, 4 ", (1, 2, 4)), ("5", (5,)),
    ("none", ()), ("None", ()), ("", ()), (None, ()), (2, (2,)), ([2, 1, 2], (1, 2)), ("4-4", (4,)),
])
def test_parse_layers(spec, expected):
    assert parse_layers(spec) == expected


@pytest.mark.parametrize("spec", ["a", "1-", "-", "3-1", "1,,2", "0-x", "two"])
def test_parse_layers_rejects_bad_strings(spec):
    with pytest.raises(ConfigError):
        parse_layers(spec)


@pytest.mark.parametrize("layers, text", [
    ((0, 1, 2), "0-2"), ((0, 2), "0,2"), ((), "none"), ((3,), "3-3"), ((4, 3), "3-4"), ((0, 1, 3), "0,1,3"),
])
def test_format_layers(layers, text):
    assert format_layers(layers) == text
    assert parse_layers(text) == tuple(sorted(layers))


# ------------------------------------------------------------------------------------------------
# sampling plans


def test_sample_plan_draws_from_eligible_set_only():
    rng = np.random.default_rng(0)
    eligible = (1, 3, 4)
    seen = set()
    for _ in range(300):
        plan = LatentMixer.sample_plan(eligible, alpha=2.0, batch_size=7, rng=rng)
        assert plan.mixes
        seen.add(plan.layer)
        assert 0.0 <= plan.lam <= 1.0
        assert sorted(plan.perm.tolist()) == list(range(7))
    assert seen == set(eligible)


def test_sample_plan_lams_vary_and_alpha_zero_gives_one():
    rng = np.random.default_rng(1)
    lams = [LatentMixer.sample_plan((0,), 1.0, 4, rng).lam for _ in range(50)]
    assert min(lams) < 0.3 and max(lams) > 0.7  # Beta(1,1) is uniform
    assert LatentMixer.sample_plan((0,), 0.0, 4, rng).lam == 1.0


def test_epoch_plans_sort_their_own_keys_and_copy_the_epoch_once():
    """The full-width permutations come from one per-epoch tensor (one copy to the device per
    epoch, not a blocking copy per step): each step's perm must still sort that step's own keys,
    drawn here independently from the same seed (layer uniforms, lams, then the key block); a short
    last batch and a data-parallel shard sort their own slice of the keys."""
    from latentmix.mixing import LatentMixup

    steps, width = 6, 8
    mixup = LatentMixup(SpiralMLP(), layers="0-2", alpha=2.0, seed=7)
    mixup.start_epoch(steps, width)
    rng = np.random.default_rng(7)
    rng.random(steps), rng.beta(2.0, 2.0, steps)
    keys = rng.random((steps, width))
    plans = [mixup.next_plan(width) for _ in range(steps - 1)] + [mixup.next_plan(5)]
    for step, plan in enumerate(plans):
        own = keys[step, :len(plan.perm)]
        assert np.all(np.diff(own[plan.perm.numpy()]) > 0), f"step {step}: perm does not sort its keys"
    block = mixup._block
    assert block.epoch_perms("cpu") is block.epoch_perms("cpu")  # made once per device
    assert plans[0].perm.data_ptr() == block.epoch_perms("cpu")[0].data_ptr()  # a row of it, not a copy
    shard = block.plan(2, 4, offset=4)  # the second half of step 2's keys
    assert np.all(np.diff(keys[2, 4:8][shard.perm.numpy()]) > 0)


def test_empty_eligible_set_is_no_mix_and_draws_nothing():
    rng = np.random.default_rng(5)
    before = rng.bit_generator.state
    assert LatentMixer.sample_plan((), alpha=2.0, batch_size=8, rng=rng) is NO_MIX
    assert rng.bit_generator.state == before
    assert not NO_MIX.mixes and NO_MIX.lam == 1.0 and NO_MIX.perm is None


# ------------------------------------------------------------------------------------------------
# mixed targets and loss


def test_mixed_soft_targets_by_hand():
    y = torch.tensor([0, 2, 1])
    perm = torch.tensor([1, 2, 0])
    plan = MixPlan(layer=1, lam=0.7, perm=perm)
    # y[perm] = [2, 1, 0]
    expected = torch.tensor([
        [0.7, 0.0, 0.3],
        [0.0, 0.3, 0.7],
        [0.3, 0.7, 0.0],
    ])
    torch.testing.assert_close(mixed_soft_targets(y, 3, plan), expected)
    torch.testing.assert_close(mixed_soft_targets(y, 3, NO_MIX), torch.eye(3)[[0, 2, 1]])


def test_mixed_cross_entropy_is_soft_target_cross_entropy():
    logits = torch.randn(5, 4)
    y = torch.tensor([0, 3, 1, 1, 2])
    perm = torch.tensor([4, 0, 1, 2, 3])
    lam = 0.37
    plan = MixPlan(layer=2, lam=lam, perm=perm)
    soft = torch.zeros(5, 4)
    for i in range(5):
        soft[i, y[i]] += lam
        soft[i, y[perm[i]]] += 1 - lam
    expected = -(soft * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(mixed_cross_entropy(logits, y, plan), expected)
    torch.testing.assert_close(
        -(mixed_soft_targets(y, 4, plan) * F.log_softmax(logits, dim=1)).sum(dim=1).mean(), expected)
    torch.testing.assert_close(mixed_cross_entropy(logits, y, NO_MIX), F.cross_entropy(logits, y))


# ------------------------------------------------------------------------------------------------
# a mix point of several modules


class _TwoBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.branch_a = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
        self.branch_b = nn.Sequential(nn.Linear(3, 2), nn.Tanh())
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(torch.cat([self.branch_a(x), self.branch_b(x)], dim=1))


def test_tuple_mix_point_mixes_every_branch():
    model = _TwoBranch()
    x = torch.randn(4, 3)
    lam, perm = 0.2, torch.tensor([2, 3, 1, 0])
    mixer = LatentMixer(model, [("branch_a", "branch_b")])
    assert mixer.num_layers == 2
    a, b = model.branch_a(x), model.branch_b(x)
    a = lam * a + (1 - lam) * a[perm]
    b = lam * b + (1 - lam) * b[perm]
    expected = model.head(torch.cat([a, b], dim=1))
    torch.testing.assert_close(mixer.forward(x, MixPlan(layer=1, lam=lam, perm=perm)), expected)
    # mixing only one branch would give something else
    only_a = model.head(torch.cat([a, model.branch_b(x)], dim=1))
    assert not torch.allclose(only_a, expected, atol=1e-4)


# ------------------------------------------------------------------------------------------------
# the one-operation mix, one-hot rows and the soft-target loss (the cheap forms of the formulas)


def test_mix_rows_is_the_two_term_mix():
    h = torch.randn(6, 3, 2)
    perm = _perm(6)
    for lam in (0.0, 0.3, 0.5, 0.8):
        torch.testing.assert_close(mix_rows(h, lam, perm), lam * h + (1 - lam) * h[perm])
    torch.testing.assert_close(mix_rows(h, 1.0, perm), h, rtol=0, atol=0)


def test_mix_rows_gradient_is_the_two_term_gradient():
    h = torch.randn(5, 4, requires_grad=True)
    weights = torch.randn(5, 4)
    perm = _perm(5)
    (mix_rows(h, 0.35, perm) * weights).sum().backward()
    expected = 0.35 * weights + 0.65 * weights[torch.argsort(perm)]
    torch.testing.assert_close(h.grad, expected)


def test_one_hot_matches_torch_one_hot():
    labels = torch.tensor([2, 0, 1, 2])
    torch.testing.assert_close(one_hot(labels, 3), F.one_hot(labels, 3).float(), rtol=0, atol=0)
    assert one_hot(labels, 4, torch.float64).dtype == torch.float64
    with pytest.raises(IndexError):
        one_hot(torch.tensor([0, 3]), 3)


def test_mix_targets():
    rows = torch.tensor([[1.0, 0.0], [0.2, 0.8], [0.5, 0.5]])
    perm = torch.tensor([2, 0, 1])
    plan = MixPlan(layer=1, lam=0.25, perm=perm)
    torch.testing.assert_close(mix_targets(rows, plan), 0.25 * rows + 0.75 * rows[perm])
    torch.testing.assert_close(mix_targets(rows, plan, lam=0.5), 0.5 * rows + 0.5 * rows[perm])
    assert mix_targets(rows, NO_MIX) is rows


def test_soft_target_cross_entropy_value_and_gradient():
    logits = torch.randn(4, 3, requires_grad=True)
    targets = torch.softmax(torch.randn(4, 3), dim=1).requires_grad_()
    value = soft_target_cross_entropy(logits, targets)
    torch.testing.assert_close(value, -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean())
    value.backward()
    # rows of t sum to 1: d/dlogits = (softmax - t) / B; no gradient to the targets
    torch.testing.assert_close(logits.grad, (F.softmax(logits, dim=1) - targets).detach() / 4)
    assert targets.grad is None


@pytest.mark.parametrize("lam", [0.0, 0.37, 0.9])
def test_mixed_cross_entropy_equals_the_two_term_formula_with_gradient(lam):
    logits = torch.randn(6, 4, requires_grad=True)
    y = torch.tensor([0, 3, 1, 1, 2, 0])
    plan = MixPlan(layer=0, lam=lam, perm=_perm(6))
    value = mixed_cross_entropy(logits, y, plan)
    (grad,) = torch.autograd.grad(value, logits)
    old = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[plan.perm])
    (old_grad,) = torch.autograd.grad(old, logits)
    torch.testing.assert_close(value, old)
    torch.testing.assert_close(grad, old_grad)


def test_mixed_cross_entropy_of_per_position_outputs():
    logits = torch.randn(4, 3, 5)  # (B, C, positions)
    y = torch.randint(0, 3, (4, 5))
    plan = MixPlan(layer=1, lam=0.6, perm=torch.tensor([1, 2, 3, 0]))
    expected = 0.6 * F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(logits, y[plan.perm])
    torch.testing.assert_close(mixed_cross_entropy(logits, y, plan), expected)


# ------------------------------------------------------------------------------------------------
# how the mix is installed at a hidden layer: never visible outside the one forward


def test_hidden_mix_leaves_no_trace_on_the_module():
    model, x = _spiral_batch()
    mixer = LatentMixer(model)
    mixer.forward(x, MixPlan(layer=2, lam=0.4, perm=_perm(len(x))))
    assert "forward" not in model.layer2.__dict__ and len(model.layer2._forward_hooks) == 0


def test_hidden_mix_keeps_an_instance_forward_someone_installed():
    model, x = _spiral_batch()
    original = model.layer3.forward
    calls = []
    model.layer3.forward = lambda h: calls.append(1) or original(h)
    patched = model.layer3.__dict__["forward"]
    lam, perm = 0.3, _perm(len(x))
    out = LatentMixer(model).forward(x, MixPlan(layer=3, lam=lam, perm=perm))
    torch.testing.assert_close(out, _manual_spiral_forward(model, x, 3, lam, perm), rtol=1e-5, atol=1e-6)
    assert model.layer3.__dict__["forward"] is patched and len(calls) == 1  # it ran inside the mixed forward


def test_hooks_of_the_mix_point_still_see_the_unmixed_output():
    model, x = _spiral_batch()
    seen = []
    handle = model.layer2.register_forward_hook(lambda module, args, output: seen.append(output.detach()))
    lam, perm = 0.3, _perm(len(x))
    out = LatentMixer(model).forward(x, MixPlan(layer=2, lam=lam, perm=perm))
    torch.testing.assert_close(out, _manual_spiral_forward(model, x, 2, lam, perm), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(seen[0], model.layer2(model.layer1(x)).detach())  # un-mixed
    assert len(model.layer2._forward_hooks) == 1  # the user's hook stays, ours is gone
    handle.remove()


def test_global_forward_hooks_still_see_the_unmixed_output():
    model, x = _spiral_batch()
    seen = {}
    handle = nn.modules.module.register_module_forward_hook(
        lambda module, args, output: seen.setdefault(id(module), output.detach()))
    try:
        lam, perm = 0.3, _perm(len(x))
        out = LatentMixer(model).forward(x, MixPlan(layer=4, lam=lam, perm=perm))
    finally:
        handle.remove()
    torch.testing.assert_close(out, _manual_spiral_forward(model, x, 4, lam, perm), rtol=1e-5, atol=1e-6)
    h = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    torch.testing.assert_close(seen[id(model.layer4)], h.detach())


# --------------------------------------------------------------------------------------------------
# LatentMixup: the object a training loop holds


def _three_stage_model():
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(first=nn.Linear(3, 5), act=nn.Tanh(), second=nn.Linear(5, 4), out=nn.Linear(4, 2)))


def _hand_draws(seed, choices, alpha, steps, batch):
    """The documented draw order, written out with NumPy: layer uniforms, Beta lams, permutation keys."""
    rng = np.random.default_rng(seed)
    layers = [choices[int(u * len(choices))] for u in rng.random(steps)]
    lams = rng.beta(alpha, alpha, steps)
    keys = rng.random((steps, batch))
    return layers, lams, keys


def _hand_forward(model, x, layer, lam, perm):
    perm = torch.as_tensor(perm)

    def mix(h):
        return lam * h + (1 - lam) * h[perm]

    h = mix(x) if layer == 0 else x
    h = model.first(h)
    h = mix(h) if layer == 1 else h
    h = model.second(model.act(h))
    h = mix(h) if layer == 2 else h
    return model.out(h)


def test_latent_mixup_call_is_the_hand_written_mixed_forward():
    from latentmix.mixing import LatentMixup

    model = _three_stage_model()
    mixup = LatentMixup(model, ["first", "second"], layers="0-2", alpha=2.0, seed=7)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    expected = []
    rng = np.random.default_rng(7)
    for _ in range(4):  # one step's block per call: its layer uniform, its lam, its keys
        layer = (0, 1, 2)[int(rng.random(1)[0] * 3)]
        lam = float(rng.beta(2.0, 2.0, 1)[0])
        perm = np.argsort(rng.random((1, 6))[0], kind="stable")
        expected.append((layer, lam, perm))
    for layer, lam, perm in expected:
        logits, plan = mixup(x)
        assert (plan.layer, plan.lam, plan.perm.tolist()) == (layer, lam, perm.tolist())
        torch.testing.assert_close(logits, _hand_forward(model, x, layer, lam, perm), rtol=1e-6, atol=1e-6)


def test_latent_mixup_start_epoch_draws_a_whole_epoch_in_the_trainers_order():
    from latentmix.mixing import LatentMixup

    model = _three_stage_model()
    mixup = LatentMixup(model, ["first", "second"], layers=[1, 2], alpha=0.5, seed=3)
    layers, lams, keys = _hand_draws(3, (1, 2), 0.5, steps=5, batch=8)
    mixup.start_epoch(5, 8)
    x = torch.randn(8, 3)
    for step in range(5):
        size = 8 if step < 4 else 5  # a short last batch takes the first keys of its row
        _, plan = mixup(x[:size])
        assert (plan.layer, plan.lam) == (layers[step], lams[step])
        assert plan.perm.tolist() == np.argsort(keys[step][:size], kind="stable").tolist()


def test_latent_mixup_resumes_exactly_from_its_state_dict(tmp_path):
    from latentmix.mixing import LatentMixup

    x = torch.randn(8, 3)

    def plans(mixup, count):
        return [(p.layer, p.lam, p.perm.tolist()) for p in (mixup(x).plan for _ in range(count))]

    straight = LatentMixup(_three_stage_model(), ["first", "second"], layers="0-2", alpha=1.0, seed=11)
    straight.start_epoch(4, 8)
    first = plans(straight, 2)
    torch.save(straight.state_dict(), tmp_path / "mixup.pt")
    rest = plans(straight, 2) + plans(straight, 3)  # the epoch's last two steps, then one-step blocks
    resumed = LatentMixup(_three_stage_model(), ["first", "second"], layers="0-2", alpha=1.0, seed=999)
    resumed.load_state_dict(torch.load(tmp_path / "mixup.pt", weights_only=True))
    assert plans(resumed, 5) == rest and len(first) == 2
    other = LatentMixup(_three_stage_model(), ["first", "second"], layers="1-2", alpha=1.0)
    with pytest.raises(ConfigError, match="layers"):
        other.load_state_dict(straight.state_dict())


def test_latent_mixup_switched_off_is_the_plain_forward_and_draws_nothing():
    from latentmix.mixing import LatentMixup

    model = _three_stage_model()
    mixup = LatentMixup(model, ["first", "second"], layers="0-2", alpha=2.0, seed=5)
    mixup.enabled = False
    before = mixup.rng.bit_generator.state
    x = torch.randn(4, 3)
    logits, plan = mixup(x)
    assert plan is NO_MIX and torch.equal(logits, model(x))
    assert mixup.rng.bit_generator.state == before
    assert LatentMixup(model, ["first", "second"], layers="none")(x).plan is NO_MIX
    assert LatentMixup(model, ["first", "second"], layers="1", alpha=0)(x).plan.lam == 1.0
    assert LatentMixup(model, ["first", "second"]).layers == (0, 1, 2)  # default: every layer


@pytest.mark.parametrize("kwargs, field", [({"alpha": -1.0}, "alpha"), ({"alpha": float("nan")}, "alpha"),
                                           ({"layers": "0-5"}, "out of range"), ({"seed": "a"}, "seed")])
def test_latent_mixup_refuses_bad_settings(kwargs, field):
    from latentmix.mixing import LatentMixup

    with pytest.raises(ConfigError, match=field):
        LatentMixup(_three_stage_model(), ["first", "second"], **kwargs)


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="this PyTorch build has no gloo backend")
def test_latent_mixup_runs_through_distributed_data_parallel():
    """Wrapped in DDP (one gloo process), the mix points are found on the inner model and the mixed
    forward goes through the wrapper: the same logits and gradients as the unwrapped model."""
    import socket

    from torch.nn.parallel import DistributedDataParallel

    from latentmix.mixing import LatentMixup

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        plain_model, inner = _three_stage_model(), _three_stage_model()
        wrapped = DistributedDataParallel(inner)
        x, y = torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 1, 0])
        results = []
        for model in (plain_model, wrapped):
            mixup = LatentMixup(model, ["first", "second"], layers="1-2", alpha=1.0, seed=2)
            logits, plan = mixup(x)
            mixed_cross_entropy(logits, y, plan).backward()
            results.append((logits.detach(), plan.layer, plan.lam))
        assert results[0][1:] == results[1][1:]
        torch.testing.assert_close(results[0][0], results[1][0])
        torch.testing.assert_close(plain_model.first.weight.grad, inner.first.weight.grad)
    finally:
        torch.distributed.destroy_process_group()


def _ddp_mixup_step(rank, world_size, port, out_dir):
    """One process of a 2-process gloo group: one LatentMixup step on its half of a batch."""
    import gc

    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        _one_mixed_ddp_step(rank, out_dir)
        # the DDP wrapper lives on in a reference cycle: free it while the group is up, not at
        # interpreter exit, where its gloo work can abort the process (latentmix.distributed.distributed_run)
        gc.collect()
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


def _one_mixed_ddp_step(rank, out_dir):
    from torch.nn.parallel import DistributedDataParallel

    from latentmix.mixing import LatentMixup

    model = DistributedDataParallel(_three_stage_model())
    x, y = torch.randn(12, 3, generator=torch.Generator().manual_seed(9)), torch.arange(12) % 2
    mine = slice(rank * 6, rank * 6 + 6)
    mixup = LatentMixup(model, ["first", "second"], layers="0-2", alpha=1.0, seed=4)
    logits, plan = mixup(x[mine])
    mixed_cross_entropy(logits, y[mine], plan).backward()
    torch.save({"layer": plan.layer, "lam": plan.lam, "perm": plan.perm,
                "grad": model.module.first.weight.grad}, f"{out_dir}/rank{rank}.pt")


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="this PyTorch build has no gloo backend")
def test_latent_mixup_on_two_processes_draws_alike_and_averages_the_gradients(tmp_path):
    """Same seed on both processes: the same layer, lam and permutation; DDP averages the
    gradients, so each process holds the mean of the two halves' gradients, computed here by hand."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_mixup_step, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    parts = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    assert (parts[0]["layer"], parts[0]["lam"], parts[0]["perm"].tolist()) == \
           (parts[1]["layer"], parts[1]["lam"], parts[1]["perm"].tolist())
    model = _three_stage_model()
    x, y = torch.randn(12, 3, generator=torch.Generator().manual_seed(9)), torch.arange(12) % 2
    layer, lam, perm = parts[0]["layer"], parts[0]["lam"], parts[0]["perm"]
    for rank in range(2):
        half = slice(rank * 6, rank * 6 + 6)
        logits = _hand_forward(model, x[half], layer, lam, perm)
        loss = lam * F.cross_entropy(logits, y[half]) + (1 - lam) * F.cross_entropy(logits, y[half][perm])
        (loss / 2).backward()
    for part in parts:
        torch.testing.assert_close(part["grad"], model.first.weight.grad, rtol=1e-5, atol=1e-6)
