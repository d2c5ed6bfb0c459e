"""The hand-written population network (`latentmix.stacked_mlp.StackedMLP`) against autograd and
`torch.optim.SGD` on the same models, run by run."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latentmix.models.small import MLP, SpiralMLP
from latentmix.stacked_mlp import (
    StackedMLP, argmax_small, log_softmax_small, mixed_targets, plan_steps,
)


def _models(num_runs, factory, seed=0):
    torch.manual_seed(seed)
    return [factory() for _ in range(num_runs)]


def _reference_loss(model, x, y, layer, lam, perm):
    """One run's mixed cross-entropy by autograd: the hidden state (layer 0 = the input) mixed at
    `layer` (-1: none) as lam h + (1 - lam) h[perm]."""
    blocks = [model.get_submodule(name) for name in model.mix_points]
    head = model.output if hasattr(model, "output") else model.head
    h = x
    for position, block in enumerate(blocks + [head]):
        if position == layer:
            h = lam * h + (1 - lam) * h[perm]
        h = block(h)
    log_probs = F.log_softmax(h, dim=1)
    own = -log_probs.gather(1, y[:, None]).mean()
    if layer < 0:
        return own
    return lam * own + (1 - lam) * -log_probs.gather(1, y[perm][:, None]).mean()


def _random_step(num_runs, batch, num_layers, seed):
    rng = np.random.default_rng(seed)
    chosen = rng.integers(-1, num_layers, size=(num_runs, 1))
    lams = rng.beta(2.0, 2.0, size=(num_runs, 1))
    keys = rng.random((num_runs, 1, batch))
    return chosen, lams, keys


@pytest.mark.parametrize("factory, in_features", [(SpiralMLP, 4), (lambda: MLP(5, 3, hidden=(7, 6), activation="relu"), 5)])
def test_hand_written_backward_equals_autograd(factory, in_features):
    num_runs, batch = 7, 9
    models = _models(num_runs, factory)
    num_layers = len(models[0].mix_points) + 1
    num_classes = 2 if in_features == 4 else 3
    network = StackedMLP(models, torch.device("cpu"))
    torch.manual_seed(1)
    x = torch.randn(num_runs, batch, in_features)
    y = torch.randint(0, num_classes, (num_runs, batch))
    chosen, lams, keys = _random_step(num_runs, batch, num_layers, seed=2)
    chosen[:3, 0] = [-1, 0, num_layers - 1]  # no mixing, input mixing and the last hidden layer
    plan = plan_steps(chosen, lams, keys, y[:, None, :], num_classes, torch.device("cpu"))[0]

    logits, layer_inputs, layer_outputs = network.forward(x, plan.mixes)
    log_probs = log_softmax_small(logits)
    network.backward((log_probs.exp() - plan.targets) / batch, layer_inputs, layer_outputs, plan.mixes)

    for r, model in enumerate(models):
        perm = torch.from_numpy(np.argsort(keys[r, 0], kind="stable"))
        loss = _reference_loss(model, x[r], y[r], int(chosen[r, 0]), float(lams[r, 0]), perm)
        assert -(plan.targets[r] * log_probs[r]).sum() / batch == pytest.approx(loss.item(), abs=1e-5)
        loss.backward()
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        for layer, linear in zip(network.layers, linears):
            torch.testing.assert_close(layer.weight_velocity[r], linear.weight.grad, atol=2e-6, rtol=1e-4)
            torch.testing.assert_close(layer.bias_velocity[r, 0], linear.bias.grad, atol=2e-6, rtol=1e-4)


def test_sgd_steps_equal_torch_sgd_with_momentum_and_weight_decay():
    num_runs, batch = 3, 8
    models = _models(num_runs, SpiralMLP, seed=3)
    network = StackedMLP(models, torch.device("cpu"))
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3) for m in models]
    torch.manual_seed(4)
    for step in range(3):
        x = torch.randn(num_runs, batch, 4)
        y = torch.randint(0, 2, (num_runs, batch))
        targets = mixed_targets(y, y, torch.ones(num_runs), 2)
        logits, inputs, outputs = network.forward(x)
        network.backward((log_softmax_small(logits).exp() - targets) / batch, inputs, outputs, momentum=0.9)
        network.sgd_step(lr=0.05, weight_decay=1e-3)
        for r, (model, optimizer) in enumerate(zip(models, optimizers)):
            optimizer.zero_grad()
            F.cross_entropy(model(x[r]), y[r]).backward()
            optimizer.step()
    for r, model in enumerate(models):
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        for layer, linear in zip(network.layers, linears):
            torch.testing.assert_close(layer.weight[r], linear.weight.detach(), atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(layer.bias[r, 0], linear.bias.detach(), atol=1e-6, rtol=1e-5)


def test_evaluation_equals_each_models_forward():
    models = _models(5, SpiralMLP, seed=5)
    network = StackedMLP(models, torch.device("cpu"))
    torch.manual_seed(6)
    inputs = torch.randn(300, 4) * 2  # more than one chunk, and a partial last chunk
    labels = torch.randint(0, 2, (5, 300))
    predictions, losses = network.per_sample(inputs, labels)
    torch.testing.assert_close(network.predict(inputs), predictions, rtol=0, atol=0)
    with torch.no_grad():
        for r, model in enumerate(models):
            logits = model(inputs)
            # tanh as 2 sigmoid(2z) - 1 differs from torch.tanh by float rounding only
            assert (predictions[r] == logits.argmax(dim=1)).float().mean() >= 0.995
            torch.testing.assert_close(losses[r], F.cross_entropy(logits, labels[r], reduction="none"),
                                       atol=1e-5, rtol=1e-4)


def test_small_class_reductions_equal_torch():
    torch.manual_seed(7)
    for classes in (2, 3, 10, 20):
        logits = torch.randn(4, 33, classes) * 5
        torch.testing.assert_close(log_softmax_small(logits), F.log_softmax(logits, dim=-1), atol=1e-5, rtol=1e-5)
        assert torch.equal(argmax_small(logits), logits.argmax(dim=-1))
    tied = torch.tensor([[[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]]])
    assert argmax_small(tied).tolist() == [[1, 0]]  # the first maximal class, as torch.argmax


def test_step_plan_mixes_each_run_at_its_layer_with_its_permutation():
    num_runs, steps, batch = 6, 4, 5
    rng = np.random.default_rng(8)
    chosen = rng.integers(-1, 3, size=(num_runs, steps))
    lams = rng.random((num_runs, steps))
    keys = rng.random((num_runs, steps, batch))
    labels = torch.from_numpy(rng.integers(0, 3, size=(num_runs, steps, batch)))
    plans = plan_steps(chosen, lams, keys, labels, 3, torch.device("cpu"))
    assert len(plans) == steps
    for s, plan in enumerate(plans):
        seen = set()
        for layer, mix in plan.mixes.items():
            for own, partner, inverse, lam in zip(mix.own.tolist(), mix.partner.tolist(), mix.inverse.tolist(),
                                                  mix.lam[:, 0].tolist()):
                run, sample = divmod(own, batch)
                perm = np.argsort(keys[run, s], kind="stable")
                assert chosen[run, s] == layer
                assert partner == run * batch + perm[sample]
                assert perm[inverse - run * batch] == sample  # the inverse permutation
                assert lam == pytest.approx(lams[run, s])
                seen.add(run)
        assert seen == set(np.flatnonzero(chosen[:, s] >= 0).tolist())
        for run in range(num_runs):
            lam = lams[run, s] if chosen[run, s] >= 0 else 1.0
            perm = np.argsort(keys[run, s], kind="stable") if chosen[run, s] >= 0 else np.arange(batch)
            expected = lam * F.one_hot(labels[run, s], 3) + (1 - lam) * F.one_hot(labels[run, s][perm], 3)
            if chosen[run, s] < 0:
                expected = F.one_hot(labels[run, s], 3).double()
            torch.testing.assert_close(plan.targets[run], expected.float(), atol=1e-6, rtol=0)
