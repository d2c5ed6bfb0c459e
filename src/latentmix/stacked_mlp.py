"""R small MLPs of one architecture as one batched computation, with the forward, the backward and
SGD written by hand: the network `latentmix.population.train_population` trains.

The parameters of layer l are stacked into a (R, out, in) tensor and every matrix product is a
batched one (`torch.baddbmm`). Once the runs share every operation the step is bound by arithmetic,
not overhead, so the step is written for it:

* **Forward and backward by hand.** An MLP's gradient is three lines per layer; written out, the
  backward of the mixing is a gather by the *inverse* permutation (instead of autograd's
  scatter-add) and no autograd graph is built or walked.
* **Each run mixes at its own layer without branching.** At a step, the runs that mix at layer k
  are a host-side list (the draws are NumPy), so only their rows are gathered and mixed at k:
  every run's hidden state is mixed once, at its chosen layer; a run that does not mix (CE) never is.
* **tanh as 2 sigmoid(2z) - 1.** This CPU build evaluates `torch.tanh` at ~0.25 G elements/s but
  `torch.sigmoid` at ~1 G/s; the factor 2 rides on the matrix product (`baddbmm`'s alpha and
  beta), and the result equals tanh to ~1e-7 absolute (float rounding of the 1).
* **SGD with momentum folded into the backward.** The weight-gradient product accumulates straight
  into the momentum buffer (v = momentum v + dL/dW is `baddbmm` with beta = momentum), and every
  parameter of every run lives in one flat buffer, so the update p -= lr v is one operation.
* **Reused buffers, short axes avoided.** Every step has the same shapes, so activations and
  gradients go to buffers allocated once; reductions over the few classes are done elementwise
  (`log_softmax_small`), since this CPU build pays ~15 ns per row for a reduction over a short axis.

tests/test_stacked_mlp.py checks the hand-written backward and SGD step against autograd and
`torch.optim.SGD` on the same models, run by run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentmix.errors import ConfigError

EVAL_CHUNK = 128  # samples per evaluation chunk: the fastest measured on the spiral grid


@dataclass
class StackedLayer:
    """Layer l of every run: ``weight`` (R, out, in) and ``bias`` (R, 1, out) are views into the
    population's flat parameter buffer, ``weight_velocity`` / ``bias_velocity`` into its momentum
    buffer."""

    weight: torch.Tensor
    bias: torch.Tensor
    weight_velocity: torch.Tensor
    bias_velocity: torch.Tensor
    activation: Optional[str]  # "tanh", "relu" or None (the head)


@dataclass
class RowMix:
    """The runs that mix at one layer in one step, as row indices of the flattened (R*b, width)
    hidden state: row ``own[i]`` becomes ``lam[i] * row own[i] + (1 - lam[i]) * row partner[i]``;
    ``inverse`` is the partner index of the inverse permutation (for the backward)."""

    own: torch.Tensor
    partner: torch.Tensor
    inverse: torch.Tensor
    lam: torch.Tensor  # (rows, 1)


_ACTIVATION_NAMES = {nn.Tanh: "tanh", nn.ReLU: "relu"}


def _activate_(pre: torch.Tensor, activation: Optional[str]) -> torch.Tensor:
    """The activation in place. For tanh, `pre` holds 2z (see `StackedMLP.forward`):
    tanh(z) = 2 sigmoid(2z) - 1."""
    if activation == "tanh":
        return pre.sigmoid_().mul_(2.0).sub_(1.0)
    if activation == "relu":
        return pre.clamp_min_(0.0)
    return pre


def _activation_backward_(grad: torch.Tensor, output: torch.Tensor, activation: str) -> torch.Tensor:
    """dL/dz from dL/dy and y = activation(z), in place: tanh' = 1 - y^2; relu' = [y > 0]."""
    if activation == "tanh":
        return torch.ops.aten.tanh_backward.grad_input(grad, output, grad_input=grad)
    return torch.ops.aten.threshold_backward.grad_input(grad, output, 0.0, grad_input=grad)


def _mix_rows(hidden: torch.Tensor, mix: RowMix, out: torch.Tensor) -> torch.Tensor:
    """`hidden` (R, b, w) copied into `out` with the rows of `mix` mixed with their partners."""
    flat = out.copy_(hidden).view(-1, hidden.shape[-1])
    mixed = torch.lerp(flat.index_select(0, mix.partner), flat.index_select(0, mix.own), mix.lam)
    flat.index_copy_(0, mix.own, mixed)
    return out


def _unmix_rows_(grad: torch.Tensor, mix: RowMix) -> torch.Tensor:
    """Backward of `_mix_rows`, in place: for mixed row j, dL/dh_j = lam dL/dm_j + (1 - lam)
    dL/dm_{inverse(j)}, since h_j is the partner of the row whose permutation points to it."""
    flat = grad.view(-1, grad.shape[-1])
    mixed = torch.lerp(flat.index_select(0, mix.inverse), flat.index_select(0, mix.own), mix.lam)
    flat.index_copy_(0, mix.own, mixed)
    return grad


class StackedMLP:
    """R MLPs of one architecture (Linear+activation blocks, then a Linear head) trained together.

    Every parameter of every run lives in one flat buffer, `parameters`; `velocity` (SGD's
    momentum buffer) has the same layout. Layer l's weight is the contiguous view (R, out, in).
    Activations and gradients go to buffers reused from step to step (`_buffer`): every step has
    the same shapes, and fresh memory for each would cost page faults comparable to the arithmetic.
    """

    def __init__(self, models: Sequence[nn.Module], device: torch.device):
        first = models[0]
        head_name = "output" if hasattr(first, "output") else "head"
        names = list(first.mix_points) + [head_name]
        shapes, activations = [], []
        for position, name in enumerate(names):
            block = first.get_submodule(name)
            if isinstance(block, nn.Sequential):
                if not (len(block) == 2 and isinstance(block[0], nn.Linear) and type(block[1]) in _ACTIVATION_NAMES):
                    raise ConfigError(f"population training needs Linear + Tanh/ReLU blocks; got {block}")
                linear, activation = block[0], _ACTIVATION_NAMES[type(block[1])]
            elif isinstance(block, nn.Linear) and position == len(names) - 1:
                linear, activation = block, None
            else:
                raise ConfigError(f"population training needs Linear + Tanh/ReLU blocks; got {block}")
            shapes.append((linear.out_features, linear.in_features))
            activations.append(activation)

        num_runs = len(models)
        sizes = [n for out, inp in shapes for n in (num_runs * out * inp, num_runs * out)]
        self.parameters = torch.empty(sum(sizes), device=device)
        self.velocity = torch.zeros_like(self.parameters)
        weights, biases = self.parameters.split(sizes)[0::2], self.parameters.split(sizes)[1::2]
        weight_velocities, bias_velocities = self.velocity.split(sizes)[0::2], self.velocity.split(sizes)[1::2]
        self.layers: list[StackedLayer] = []
        for l, ((out, inp), activation) in enumerate(zip(shapes, activations)):
            layer = StackedLayer(weights[l].view(num_runs, out, inp), biases[l].view(num_runs, 1, out),
                                 weight_velocities[l].view(num_runs, out, inp), bias_velocities[l].view(num_runs, 1, out),
                                 activation)
            linears = [_linear(model.get_submodule(names[l])) for model in models]
            with torch.no_grad():
                layer.weight.copy_(torch.stack([m.weight for m in linears]))
                layer.bias.copy_(torch.stack([m.bias for m in linears])[:, None, :])
            self.layers.append(layer)
        self.num_runs = num_runs
        self._buffers: dict[tuple, torch.Tensor] = {}

    def _buffer(self, *key_and_shape) -> torch.Tensor:
        """A buffer for one role (the key) and shape, allocated once and reused."""
        buffer = self._buffers.get(key_and_shape)
        if buffer is None:
            buffer = self._buffers[key_and_shape] = torch.empty(key_and_shape[-1], device=self.parameters.device)
        return buffer

    def forward(self, inputs: torch.Tensor, mixes: Optional[dict[int, RowMix]] = None
                ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Logits (R, b, C) of each run on its own batch `inputs` (R, b, D), each run's hidden state
        mixed at its chosen layer (`mixes`: layer -> the rows mixing there). Also returns what the
        backward needs: every layer's input (after mixing) and every layer's output. The tensors
        returned are overwritten by the next call."""
        mixes = mixes or {}
        layer_inputs, layer_outputs = [], []
        hidden = inputs
        runs, batch = inputs.shape[:2]
        for l, layer in enumerate(self.layers):
            if l in mixes:
                hidden = _mix_rows(hidden, mixes[l], self._buffer("mixed", l, hidden.shape))
            layer_inputs.append(hidden)
            # h W^T + b: the bias is written first and the product accumulated onto it. Before a
            # tanh both carry the factor 2 of tanh(z) = 2 sigmoid(2z) - 1 (see `_activate_`).
            scale = 2.0 if layer.activation == "tanh" else 1.0
            out = self._buffer("out", l, (runs, batch, layer.weight.shape[1]))
            out.copy_(layer.bias.expand_as(out)).baddbmm_(hidden, layer.weight.transpose(1, 2), beta=scale, alpha=scale)
            hidden = _activate_(out, layer.activation)
            layer_outputs.append(hidden)
        return hidden, layer_inputs, layer_outputs

    def backward(self, logits_grad: torch.Tensor, layer_inputs: list[torch.Tensor],
                 layer_outputs: list[torch.Tensor], mixes: Optional[dict[int, RowMix]] = None,
                 momentum: float = 0.0) -> None:
        """Accumulate the gradient from dL/dlogits (R, b, C) into `velocity`:
        v = momentum v + dL/dtheta (with momentum 0, v is the gradient). For layer l with
        pre-activation z = h W^T + b: dL/dW = (dL/dz)^T h, dL/db = sum over the batch of dL/dz,
        dL/dh = dL/dz W."""
        mixes = mixes or {}
        grad = logits_grad  # dL/dz of the current layer
        for l in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[l]
            layer.weight_velocity.baddbmm_(grad.transpose(1, 2), layer_inputs[l], beta=momentum)
            layer.bias_velocity.mul_(momentum).add_(grad.sum(dim=1, keepdim=True))
            if l == 0:
                break  # the inputs need no gradient
            # dL/d(input of layer l), after mixing
            grad = torch.bmm(grad, layer.weight, out=self._buffer("grad", l, layer_inputs[l].shape))
            if l in mixes:
                grad = _unmix_rows_(grad, mixes[l])  # dL/d(output of layer l - 1)
            grad = _activation_backward_(grad, layer_outputs[l - 1], self.layers[l - 1].activation)

    def sgd_step(self, lr: float, weight_decay: float = 0.0) -> None:
        """The update of `torch.optim.SGD` (dampening 0, no Nesterov) for every run at once, after
        `backward` has made v = momentum v + dL/dtheta: v += wd theta; theta -= lr v. (v starts at
        0, so the first v is the gradient, as in torch.)"""
        if weight_decay:
            self.velocity.add_(self.parameters, alpha=weight_decay)
        self.parameters.add_(self.velocity, alpha=-lr)

    @torch.no_grad()
    def logits(self, inputs: torch.Tensor, chunk: Optional[int] = None):
        """Every run's logits (R, n, C) on shared `inputs` (N, D), `chunk` samples at a time (a
        generator of chunks; each is overwritten by the next).

        Computed feature-major, h^T = (R, width, n): the first layer is then one matrix product
        over every run (all weights (R * out, D) times the shared inputs (D, n)), and the biases
        broadcast along the long, contiguous sample axis."""
        first = self.layers[0]
        runs, _, in_features = first.weight.shape
        chunk = chunk or EVAL_CHUNK
        for start in range(0, inputs.shape[0], chunk):
            batch = inputs[start:start + chunk]
            n = batch.shape[0]
            hidden = None
            for l, layer in enumerate(self.layers):
                scale = 2.0 if layer.activation == "tanh" else 1.0  # see `forward`
                out = self._buffer("eval", l, (runs, layer.weight.shape[1], n))
                out.copy_(layer.bias.transpose(1, 2).expand_as(out))
                if l == 0:
                    out.view(-1, n).addmm_(first.weight.view(-1, in_features), batch.T, beta=scale, alpha=scale)
                else:
                    out.baddbmm_(layer.weight, hidden, beta=scale, alpha=scale)
                hidden = _activate_(out, layer.activation)
            yield hidden.transpose(1, 2)

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """Every run's predicted class (R, N) on shared `inputs` (N, D)."""
        return torch.cat([argmax_small(logits) for logits in self.logits(inputs)], dim=1)

    def per_sample(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every run's predictions (R, N) on shared `inputs` (N, D), and its cross-entropy losses
        against its own `labels` (R, N)."""
        predictions, losses, start = [], [], 0
        for logits in self.logits(inputs):
            n = logits.shape[1]
            predictions.append(argmax_small(logits))
            losses.append(-log_softmax_small(logits).gather(2, labels[:, start:start + n, None]).squeeze(2))
            start += n
        return torch.cat(predictions, dim=1), torch.cat(losses, dim=1)


def log_softmax_small(logits: torch.Tensor) -> torch.Tensor:
    """log_softmax over the last axis, z - (m + log sum_c exp(z_c - m)) with m = max_c z_c,
    computed class by class: with a handful of classes this is a few elementwise operations,
    where `F.log_softmax` pays per row of the short axis (~15 ns each, tens of times the math)."""
    if logits.shape[-1] > 16:
        return F.log_softmax(logits, dim=-1)
    classes = logits.unbind(-1)
    top = classes[0]
    for other in classes[1:]:
        top = torch.maximum(top, other)
    total = torch.zeros_like(top)
    for z in classes:
        total += torch.exp(z - top)
    return logits - (top + total.log_()).unsqueeze(-1)


def argmax_small(logits: torch.Tensor) -> torch.Tensor:
    """argmax over the last axis (the first maximal class, as `torch.argmax`), class by class for
    a handful of classes, for the same reason as `log_softmax_small`."""
    if logits.shape[-1] > 16:
        return logits.argmax(dim=-1)
    classes = logits.unbind(-1)
    best, best_class = classes[0], torch.zeros(classes[0].shape, dtype=torch.long, device=logits.device)
    for c, z in enumerate(classes[1:], start=1):
        better = z > best
        best = torch.where(better, z, best)
        best_class.masked_fill_(better, c)
    return best_class


def _linear(module: nn.Module) -> nn.Linear:
    return module[0] if isinstance(module, nn.Sequential) else module


def mixed_targets(labels: torch.Tensor, partner_labels: torch.Tensor, lam: torch.Tensor, num_classes: int
                  ) -> torch.Tensor:
    """Soft targets (..., C) = lam onehot(y) + (1 - lam) onehot(y[perm]) for labels (R, ..., b) and
    lam (R, ...) (1 for a step where a run does not mix): mixup's mixed cross-entropy,
    lam CE(y) + (1 - lam) CE(y[perm]), is the cross-entropy against them."""
    lam = lam[..., None, None].expand(*labels.shape, 1)
    targets = torch.zeros(*labels.shape, num_classes, device=labels.device)
    targets.scatter_(-1, labels[..., None], lam)
    return targets.scatter_add_(-1, partner_labels[..., None], 1.0 - lam)


@dataclass
class StepPlan:
    """One step's mixing for every run: the rows each layer mixes and each run's soft targets."""

    mixes: dict[int, RowMix]
    targets: torch.Tensor  # (R, b, C)


def plan_steps(chosen: np.ndarray, lams: np.ndarray, keys: np.ndarray, labels: torch.Tensor, num_classes: int,
               device: torch.device) -> list[StepPlan]:
    """Every step's plan from each run's draws, for steps of one batch size b: `chosen` (R, S) the
    layer per run and step (-1: no mixing), `lams` (R, S), `keys` (R, S, b) whose stable argsort is
    the step's permutation (as in `EpochMixDraws.plan`), `labels` (R, S, b) the batches' labels.
    Vectorized over runs and steps: a handful of NumPy calls per epoch, not per step."""
    runs, steps, batch = keys.shape
    perms = np.argsort(keys, axis=2, kind="stable")  # (R, S, b)
    inverse = np.empty_like(perms)  # inverse[perm[j]] = j, a scatter rather than a second sort
    np.put_along_axis(inverse, perms, np.broadcast_to(np.arange(batch), perms.shape), axis=2)
    # Per step, the runs in order of their layer, so that each layer's rows are one slice.
    by_layer = np.argsort(chosen, axis=0, kind="stable").T  # (S, R)
    step_index = np.arange(steps)[:, None]
    base = by_layer[:, :, None] * batch  # (S, R, 1)
    own = torch.from_numpy((base + np.arange(batch)).reshape(steps, -1)).to(device)
    partner = torch.from_numpy((base + perms[by_layer, step_index]).reshape(steps, -1)).to(device)
    inverse_rows = torch.from_numpy((base + inverse[by_layer, step_index]).reshape(steps, -1)).to(device)
    lam_rows = torch.from_numpy(np.repeat(lams[by_layer, step_index], batch, axis=1)[:, :, None]).to(device, torch.float32)
    targets = mixed_targets(labels, labels.gather(2, torch.from_numpy(perms).to(device)),
                            torch.from_numpy(np.where(chosen >= 0, lams, 1.0)).to(device, torch.float32), num_classes)
    num_layers = int(chosen.max()) + 1
    counts = np.stack([np.bincount(chosen[:, s] + 1, minlength=num_layers + 1) for s in range(steps)]) * batch

    plans = []
    for s in range(steps):
        mixes, start = {}, int(counts[s, 0])  # the first rows are the runs that do not mix
        for layer in range(num_layers):
            count = int(counts[s, layer + 1])
            if count:
                rows = slice(start, start + count)
                mixes[layer] = RowMix(own[s, rows], partner[s, rows], inverse_rows[s, rows], lam_rows[s, rows])
                start += count
        plans.append(StepPlan(mixes, targets[:, s]))
    return plans
