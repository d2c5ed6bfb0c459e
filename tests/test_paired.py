"""PairedNetworks: two networks as one module (Co-teaching, DivideMix)."""

import pytest
import torch
from torch import nn

from latentmix.mixing import LatentMixer, MixPlan
from latentmix.models import model_kind
from latentmix.models.paired import PairedNetworks, pair_logits
from latentmix.models.small import MLP


def _pair(seed=0):
    torch.manual_seed(seed)
    return PairedNetworks.from_model(MLP(5, 3), seed=11)


def test_second_network_is_a_fresh_draw_and_the_callers_rng_is_untouched():
    torch.manual_seed(3)
    model = MLP(5, 3)
    before = torch.random.get_rng_state()
    pair = PairedNetworks.from_model(model, seed=11)
    assert torch.equal(torch.random.get_rng_state(), before)
    first = dict(pair.first.named_parameters())
    second = dict(pair.second.named_parameters())
    assert first.keys() == second.keys()
    assert all(not torch.equal(first[k], second[k]) for k in first if first[k].dim() > 1)
    again = PairedNetworks.from_model(model, seed=11)  # same seed, same second network
    assert all(torch.equal(p, q) for p, q in zip(pair.second.parameters(), again.second.parameters()))
    assert sum(p.numel() for p in pair.parameters()) == 2 * sum(p.numel() for p in model.parameters())


def test_training_forward_stacks_both_and_evaluation_averages():
    pair = _pair()
    x = torch.randn(4, 5)
    out = pair.train()(x)
    a, b = pair_logits(out)
    assert out.shape == (2, 4, 3)
    assert torch.allclose(a, pair.first(x)) and torch.allclose(b, pair.second(x))
    pair.eval()
    assert torch.allclose(pair(x), (pair.first(x) + pair.second(x)) / 2)
    with pytest.raises(ValueError, match="two networks"):
        pair_logits(pair(x))


def test_a_mix_plan_mixes_the_same_layer_in_both_networks():
    pair = _pair().train()
    x = torch.randn(6, 5)
    perm = torch.tensor([5, 4, 3, 2, 1, 0])
    plan = MixPlan(layer=1, lam=0.3, perm=perm)
    mixed = LatentMixer(pair).forward(x, plan)
    for index, net in enumerate((pair.first, pair.second)):
        alone = LatentMixer(net).forward(x, plan)
        assert torch.allclose(mixed[index], alone, atol=1e-6)
    assert model_kind(pair) == "mlp"


def test_two_architectures_are_refused():
    with pytest.raises(TypeError, match="one architecture"):
        PairedNetworks(MLP(5, 3), nn.Linear(5, 3))


def test_the_number_of_networks_is_recorded_only_where_it_is_two():
    from dataclasses import replace

    from latentmix.config import RunConfig
    from latentmix.methods import Method, method_record
    from latentmix.run_setup import build_run

    config = RunConfig(dataset="spiral", method="ce", epochs=1, seed=4)
    one = build_run(config)
    assert not isinstance(one.model, PairedNetworks)
    assert "networks" not in method_record(one.method)  # the records of one-network methods are unchanged
    two = Method("ce-pair", networks=2)
    assert method_record(two)["networks"] == 2
    with pytest.raises(Exception, match="networks must be 1 or 2"):
        replace(two, networks=3)
