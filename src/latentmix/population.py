"""Vectorized population training: many independent runs of one small MLP as one batched computation.

The spiral grid of the paper's Table 2 is hundreds of runs of a 4-16-24-24-24-16-2 network whose
every step, run alone, is dominated by per-operation overhead. Here R runs share each operation:
the parameters of layer l are stacked into a (R, out, in) tensor and every matrix product is a
batched one (`torch.baddbmm`). Each run keeps everything that makes it a separate run:

* its own initial weights (built exactly as the sequential trainer builds them, from its seed),
* its own noisy labels (noise seed), data order, and mixing draws (layer, lam, permutation per
  step) from the same random streams, drawn by the same functions as `latentmix.training`,
* its own eligible mix layers and alpha, and its own SGD momentum (SGD is elementwise, so one
  update over the stacked parameters is R independent optimizers).

Once the runs share every operation the step is bound by arithmetic, not overhead, so the step is
written for it (`StackedMLP`):

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
* **One shard of runs per thread.** Runs are independent, so each thread trains its own shard for
  a whole epoch without synchronising (`train_population`'s `threads`).

benchmarks/README.md measures it (the 5-seed spiral grid, 425 runs x 300 epochs: ~170 s on 2 CPU
cores, 40-54x the sequential trainer) against the arithmetic floor of its matrix products.

Same semantics as `training.train` for methods without loss correction, checked by
tests/test_population.py (same seed, same draws, same metrics to float tolerance) and
tests/test_stacked_mlp.py (the hand-written backward equals autograd's). Loss-correcting methods
(a per-run noise model inside the step) go through the sequential trainer.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentmix.data import Dataset
from latentmix.errors import ConfigError
from latentmix.mixing import draw_epoch_mixing
from latentmix.noise_model import detection_metrics
from latentmix.result import RunResult
from latentmix.config import RunConfig
from latentmix.protocols import base_protocol, lr_at_epoch, Protocol
from latentmix.run_setup import build_run, resolve_device, RunStreams
from latentmix.tracking import fit_run_noise_model, tracks_at

POPULATION_MODELS = (None, "spiral-mlp", "mlp")
EVAL_CHUNK = 128  # samples per evaluation chunk: the fastest measured on the spiral grid


def supports_population(config: RunConfig) -> bool:
    """Whether `config` can be trained in a vectorized population (an MLP; the mixed cross-entropy,
    the population's only step: no loss correction, no robust loss; no noisy-validation split: the population trains every run on every training sample; a fixed lr
    schedule: the population steps every run with one lr, so a protocol whose first decay follows
    each run's own end of early learning, a --data file's, is trained run by run)."""
    try:
        method = config.resolved_method()
    except ConfigError:
        return False
    tabular = config.dataset == "spiral" or (config.data is not None and config.model in ("mlp", None))
    return (not method.corrects and not method.robust_loss and config.model in POPULATION_MODELS and tabular
            and config.track_transform == "train" and not config.compile and not config.val_split
            and not base_protocol(config).decay_at_learning_end)


# ---------------------------------------------------------------------------------------------
# The stacked network
# ---------------------------------------------------------------------------------------------

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


class _Shard:
    """A slice of the population's runs with everything needed to train them: one thread's work."""

    def __init__(self, network: StackedMLP, noisy_labels: torch.Tensor, streams: list[RunStreams],
                 eligible: list, alphas: list[float], batch_size: int, num_classes: int):
        self.network, self.noisy_labels, self.streams = network, noisy_labels, streams
        self.eligible, self.alphas = eligible, alphas
        self.batch_size, self.num_classes = batch_size, num_classes

    def train_epoch(self, train_x: torch.Tensor, lr: float, protocol: Protocol) -> torch.Tensor:
        """One epoch of every run of the shard; returns each run's mean training loss (R,)."""
        device = train_x.device
        num_train, batch_size = train_x.shape[0], self.batch_size
        num_steps = -(-num_train // batch_size)
        # Each run's draws, from its own streams, by the same functions as the sequential trainer.
        orders = torch.from_numpy(np.stack([s.order.permutation(num_train) for s in self.streams])).to(device)
        draws = [draw_epoch_mixing(eligible, alpha, num_steps, batch_size, stream.mixing)
                 for eligible, alpha, stream in zip(self.eligible, self.alphas, self.streams)]
        chosen = np.stack([d.layers for d in draws])  # (R, steps)
        lams = np.stack([d.lams for d in draws])
        keys = np.stack([d.perm_keys if d.perm_keys.shape[1] else np.zeros((num_steps, batch_size)) for d in draws])
        batches = [slice(start, min(start + batch_size, num_train)) for start in range(0, num_train, batch_size)]
        labels = self.noisy_labels.gather(1, orders)  # (R, N), in the epoch's order
        inputs = train_x.index_select(0, orders.view(-1)).view(*orders.shape, -1)  # (R, N, D)
        plans = []
        full = num_train // batch_size  # full batches, then possibly one smaller last batch
        for first_step, end_step, b in ((0, full, batch_size), (full, num_steps, num_train - full * batch_size)):
            if end_step > first_step:
                steps = slice(first_step, end_step)
                batch_labels = labels[:, first_step * batch_size:first_step * batch_size + (end_step - first_step) * b]
                plans += plan_steps(chosen[:, steps], lams[:, steps], keys[:, steps, :b],
                                    batch_labels.reshape(len(self.streams), end_step - first_step, b),
                                    self.num_classes, device)

        loss_sum = torch.zeros(len(self.streams), device=device)
        for batch, plan in zip(batches, plans):
            b = batch.stop - batch.start
            logits, layer_inputs, layer_outputs = self.network.forward(inputs[:, batch], plan.mixes)
            log_probs = log_softmax_small(logits)
            loss_sum += (plan.targets * log_probs).sum(dim=(1, 2)).neg_()  # b x each run's mean loss
            # d(mean over the batch of CE against soft targets)/dlogits = (softmax - targets) / b
            logits_grad = (log_probs.exp_() - plan.targets).div_(b)
            self.network.backward(logits_grad, layer_inputs, layer_outputs, plan.mixes, momentum=protocol.momentum)
            self.network.sgd_step(lr, protocol.weight_decay)
        return loss_sum / num_train


def train_population(configs: Sequence[RunConfig], *, dataset: Optional[Dataset] = None, progress: bool = True,
                     on_epoch_end: Optional[Callable[[int, list[dict]], None]] = None,
                     threads: Optional[int] = None) -> list[RunResult]:
    """Train `configs` together; returns one `RunResult` per run, as the sequential trainer does
    (its summary, `RunResult.run_summary`, has a population run's keys: ``trained_as`` is set),
    with the timings ``wall_time_s`` and ``epoch_time_s`` each run's share of the population's.

    All runs must share the data set, model and optimisation protocol (epochs, batch size, lr,
    weight decay); methods, layers, alpha, noise and seeds may differ. The runs are split into
    `threads` shards (default: torch's thread count) trained side by side, one thread each:
    runs are independent, so this needs no synchronisation within an epoch, which scales better
    than splitting each small operation across threads.
    """
    if not configs:
        return []
    started = time.perf_counter()
    for config in configs:
        if not supports_population(config):
            raise ConfigError(f"run {config.method} on {config.dataset} cannot be trained in a population "
                              "(loss correction, a robust loss, a non-MLP model, a noisy validation split, or a --data file's "
                              "schedule, whose first lr decay follows each run): use the sequential trainer")
    first = configs[0]
    if len({config.track_every for config in configs}) > 1:
        raise ConfigError("runs of one population must share track_every")
    device = resolve_device(first.device)
    # Each run set up as the sequential trainer sets it up (one data load for all); its streams
    # on the CPU, where the host-side draws are made.
    setups = [build_run(first, dataset=dataset)]
    setups += [build_run(config, dataset=setups[0].dataset) for config in configs[1:]]
    dataset, protocol = setups[0].dataset, setups[0].protocol
    for setup in setups[1:]:
        other = setup.protocol
        if (other.epochs, other.batch_size, other.lr, other.milestones, other.weight_decay) != (
                protocol.epochs, protocol.batch_size, protocol.lr, protocol.milestones, protocol.weight_decay):
            raise ConfigError("runs of one population must share epochs, batch size, lr and weight decay")
    if any(len(setup.holdout) for setup in setups):
        raise ConfigError("a population trains every run on every training sample: runs with a noisy validation "
                          "split (--val-split) go through the sequential trainer")
    threads = torch.get_num_threads() if threads is None else int(threads)
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")

    methods = [setup.method for setup in setups]
    alphas = [setup.alpha for setup in setups]
    models = [setup.model for setup in setups]
    eligible = [setup.placed.mixup.layers for setup in setups]  # checked against the model by `build_run`
    num_runs = len(configs)

    train_x = dataset.train_inputs.to(device).float().flatten(1)
    val_x = dataset.val_inputs.to(device).float().flatten(1)
    val_y = dataset.val_labels.to(device)
    clean_y = dataset.train_labels.to(device)
    noisy_y = torch.stack([setup.labels.labels for setup in setups]).to(device)  # (R, N)
    is_noisy = torch.stack([setup.labels.is_noisy for setup in setups]).numpy()
    streams: list[RunStreams] = [setup.streams for setup in setups]
    # One shard per thread: smaller shards (more, smaller operations) measured slower.
    bounds = np.linspace(0, num_runs, min(threads, num_runs) + 1).round().astype(int)
    shards = [_Shard(StackedMLP(models[lo:hi], device), noisy_y[lo:hi], streams[lo:hi], eligible[lo:hi],
                     alphas[lo:hi], protocol.batch_size, dataset.num_classes)
              for lo, hi in zip(bounds[:-1], bounds[1:])]

    row_slices = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
    workers = min(threads, len(shards))

    def on_shards(work: Callable[[_Shard, slice], object]) -> list:
        """`work(shard, its rows)` for every shard side by side, one thread each."""
        if workers == 1:
            return [work(shard, rows) for shard, rows in zip(shards, row_slices)]
        return list(pool.map(work, shards, row_slices))

    def predictions_on(inputs: torch.Tensor) -> torch.Tensor:
        """Every run's predicted class on shared `inputs` (R, N)."""
        return torch.cat(on_shards(lambda shard, rows: shard.network.predict(inputs)))

    metrics: list[list[dict]] = [[] for _ in configs]
    epoch_times: list[float] = []  # seconds per epoch, each run's share
    epochs = range(1, protocol.epochs + 1)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=f"population of {num_runs} runs", unit="epoch", dynamic_ncols=True, leave=False,
                      disable=None)  # None: no bar where stderr is no terminal
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # each shard's thread runs its own operations
    # Each worker sets its own OpenMP/MKL thread count to 1: a new thread starts with the default
    # (all cores), and two workers each spreading their products over both cores run no faster than one.
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="latentmix-population",
                              initializer=torch.set_num_threads, initargs=(1,))
    try:
        best_so_far = 0.0  # of any run at any epoch, for the progress bar
        for epoch in epochs:
            epoch_started = time.perf_counter()
            lr = lr_at_epoch(protocol, epoch)
            losses = torch.cat(on_shards(lambda shard, rows: shard.train_epoch(train_x, lr, protocol))).tolist()
            val_predictions = predictions_on(val_x)
            val_acc = (val_predictions == val_y).float().mean(dim=1).tolist()
            acc_noisy = acc_clean = [None] * num_runs
            if tracks_at(epoch, first, methods[0], protocol):  # the trainer's rule (no population run corrects)
                predictions = predictions_on(train_x)
                acc_noisy = (predictions == noisy_y).float().mean(dim=1).tolist()
                acc_clean = (predictions == clean_y).float().mean(dim=1).tolist()
            epoch_times.append((time.perf_counter() - epoch_started) / num_runs)
            for r in range(num_runs):
                metrics[r].append({"epoch": epoch, "lr": lr, "train_loss": losses[r], "val_acc": val_acc[r],
                                   "train_acc_noisy": acc_noisy[r], "train_acc_clean": acc_clean[r],
                                   "bootstrapping": False})
            if on_epoch_end is not None:
                on_epoch_end(epoch, [rows[-1] for rows in metrics])
            if progress and hasattr(epochs, "set_postfix"):
                # the best of any run at any epoch so far (the best of this epoch alone goes down)
                best_so_far = max(best_so_far, max(val_acc))
                epochs.set_postfix(best_val_acc=f"{best_so_far:.4f}")
        # The end of each run: its noise model on its final losses gives P(noisy) and detection figures.
        parts = on_shards(lambda shard, rows: shard.network.per_sample(train_x, noisy_y[rows]))
        predictions, final_losses = torch.cat([p for p, _ in parts]), torch.cat([l for _, l in parts])
    finally:
        pool.shutdown()
        torch.set_num_threads(torch_threads)

    wall = time.perf_counter() - started
    results = []
    for r, (config, method) in enumerate(zip(configs, methods)):
        rows = metrics[r]
        noise_model = fit_run_noise_model(config, final_losses[r])  # the trainer's fit: a diverged run says so
        p_noisy = noise_model.posterior(final_losses[r].cpu().numpy())
        if dataset.train_labels_clean and is_noisy[r].any():
            detection = detection_metrics(p_noisy, is_noisy[r])
            rows[-1].update(detection_auc=detection["auc"], detection_precision=detection["precision"],
                            detection_recall=detection["recall"])
        val_accs = [row["val_acc"] for row in rows]
        best = int(np.argmax(val_accs))
        results.append(RunResult(
            config=config, method=method, metrics=rows, best_val_acc=val_accs[best], last_val_acc=val_accs[-1],
            best_epoch=rows[best]["epoch"], p_noisy=p_noisy, predictions=predictions[r].cpu().numpy(),
            noisy_labels=noisy_y[r].cpu().numpy(), is_noisy=is_noisy[r], losses=final_losses[r].cpu().numpy(),
            num_classes=dataset.num_classes, trained_as=f"population of {num_runs}",
            # timings (each run's share of the population's): timing.json, never result.json
            wall_time_s=round(wall / num_runs, 4), epoch_time_s=list(epoch_times),
        ))
    return results
