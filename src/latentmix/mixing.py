"""Latent-representation mixup (Manifold Mixup) for any `nn.Module`, through forward hooks.

Layer numbering: layer 0 is the model's input; layer k >= 1 is the output of the k-th *mix point*,
a submodule named by the user (``model.get_submodule(name)``). A mix point may also be a tuple of
names: the outputs of all of them are mixed with the same lam and permutation (the encoders of a
multimodal fusion model).

One mixed forward (Verma et al. 2019, "Manifold Mixup", Alg. 1; the paper, section II.A):
  1. pick a layer k from the eligible set S, lam ~ Beta(alpha, alpha), a permutation `perm` of the
     batch (one batch mixed with a shuffled copy of itself, as the reference does);
  2. run the model; at layer k replace the hidden state h by ``lam * h + (1 - lam) * h[perm]``;
  3. the loss mixes the targets the same way (`mixed_cross_entropy`).

The model's code is untouched: the mix lives only for one forward call (see `LatentMixer.forward`).
Nothing here knows about training. In your own loop, hold a `LatentMixup` (eligible layers, alpha,
its own random stream and `state_dict`; ``logits, plan = mixup(x)``), as `latentmix.training` does.

Cost: on small models a step is per-operation overhead (each tensor op and each autograd node costs
microseconds whatever its size), so the mix is one `torch.lerp` and the mixed loss one soft-target
cross-entropy; benchmarks/README.md has the measured per-step cost.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.module import _global_forward_hooks

from latentmix.errors import ConfigError

MixPoint = Union[str, Sequence[str]]
Inputs = Union[torch.Tensor, tuple, list, dict]


@dataclass(frozen=True)
class MixPlan:
    """Everything one mixed step needs: the layer, the mixing weight and the partner of each sample.

    `layer` None means "no mixing" (plain cross-entropy); then lam is 1 and perm is None.
    """

    layer: Optional[int]
    lam: float
    perm: Optional[torch.Tensor]

    @property
    def mixes(self) -> bool:
        return self.layer is not None


NO_MIX = MixPlan(layer=None, lam=1.0, perm=None)


def mix_rows(value: torch.Tensor, lam: float, perm: torch.Tensor) -> torch.Tensor:
    """``lam * h + (1 - lam) * h[perm]`` (rows along dim 0), as one `torch.lerp`.

    ``lerp(h[perm], h, lam) = h[perm] + lam * (h - h[perm])``: the same mix to float rounding, in
    two operations (two autograd nodes) instead of four. lam = 1 gives h exactly.
    """
    return torch.lerp(value[perm], value, lam)


def mix_tensors(value, lam: float, perm: torch.Tensor):
    """`mix_rows` for a tensor, or for every floating tensor of a tuple/dict.

    Integer tensors cannot be interpolated (token ids): they raise, since mixing them silently
    would mean leaving one modality unmixed while its targets are mixed.
    """
    if isinstance(value, torch.Tensor):
        if not torch.is_floating_point(value):
            raise ConfigError(
                f"cannot mix an integer tensor (dtype {value.dtype}, e.g. token ids) at the input: "
                "raw tokens have no meaningful interpolation. Choose hidden mix layers instead "
                "(e.g. --layers 1-2) so the mix happens on learned features."
            )
        return mix_rows(value, lam, perm)
    if isinstance(value, Mapping):
        return {key: mix_tensors(item, lam, perm) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(mix_tensors(item, lam, perm) for item in value)
    raise TypeError(f"cannot mix a {type(value).__name__}; expected tensors, tuples or dicts of tensors")


def parse_layers(spec: Union[str, int, Sequence[int], None]) -> tuple[int, ...]:
    """Parse an eligible-layer set: ``"3-4"`` (inclusive range), ``"0,2,4"``, ``2``, ``[1, 2]``.

    Returns a sorted tuple of distinct layer indices; ``None``/``""``/``"none"`` -> () (no mixing).
    """
    if spec is None:
        return ()
    if isinstance(spec, (int, np.integer)):
        return (int(spec),)
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in ("", "none"):
            return ()
        layers: set[int] = set()
        try:
            for part in text.split(","):
                part = part.strip()
                if "-" in part:
                    low, high = (int(p) for p in part.split("-", 1))
                    if low > high:
                        raise ConfigError(f"layer range {part!r} is empty: write the lower bound first, e.g. '1-3'")
                    layers.update(range(low, high + 1))
                else:
                    layers.add(int(part))
        except ValueError:
            raise ConfigError(
                f"cannot read mix layers {spec!r}: use a range like '0-2', a list like '0,2,4' or one index"
            ) from None
        return tuple(sorted(layers))
    return tuple(sorted({int(layer) for layer in spec}))


def format_layers(layers: Sequence[int]) -> str:
    """Inverse of `parse_layers` for display: (0, 1, 2) -> '0-2', (0, 2) -> '0,2', () -> 'none'."""
    layers = sorted(layers)
    if not layers:
        return "none"
    if len(layers) > 1 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}"
    if len(layers) == 1:
        return f"{layers[0]}-{layers[0]}"
    return ",".join(str(layer) for layer in layers)


@dataclass(frozen=True)
class EpochMixDraws:
    """One epoch's mixing draws for every step, taken from the run's mixing stream in one go.

    Drawing per epoch (rather than per step) lets the vectorized population trainer reproduce a
    sequential run's draws exactly with a handful of NumPy calls per run and epoch.

    Attributes:
        layers: (steps,) chosen layer per step; -1 when the method does not mix.
        lams: (steps,) float64 lam per step (1.0 when not mixing).
        perm_keys: (steps, batch_size) uniform keys; a step's permutation is their stable argsort
            (over the first b keys for a last batch of size b).
    """

    layers: np.ndarray
    lams: np.ndarray
    perm_keys: np.ndarray
    # every step's full-width permutation on a device, made at the first plan for that device
    _device_perms: dict = field(default_factory=dict, compare=False, repr=False)

    def plan(self, step: int, batch_size: int, device: Union[torch.device, str, None] = None,
             offset: int = 0) -> MixPlan:
        """Step `step`'s plan for `batch_size` samples. `offset` > 0 plans a shard of a global
        batch (a data-parallel process's samples offset .. offset+batch_size-1): the step's layer
        and lam, and a permutation within the shard from the shard's own keys.

        A full-width step's permutation is a row of `epoch_perms`, which copies the whole epoch's
        permutations to the device once: a copy from (unpinned) host memory per step would be
        a host synchronisation per step on a GPU (PyTorch's blocking copy waits for the stream;
        aten/src/ATen/native/cuda/Copy.cu, ``memcpy_and_sync``). The rows are the same stable
        argsorts, so the permutations are identical."""
        layer = int(self.layers[step])
        if layer < 0:
            return NO_MIX
        if offset == 0 and batch_size == self.perm_keys.shape[1]:
            perm = self.epoch_perms(device)[step]
        else:  # a short last batch or a shard: its own keys' argsort
            keys = self.perm_keys[step, offset:offset + batch_size]
            perm = torch.from_numpy(np.argsort(keys, kind="stable")).to(device)
        return MixPlan(layer=layer, lam=float(self.lams[step]), perm=perm)

    def epoch_perms(self, device: Union[torch.device, str, None] = None) -> torch.Tensor:
        """(steps, batch_size) int64 on `device`: row s is the stable argsort of step s's keys."""
        key = str(torch.device(device)) if device is not None else "cpu"
        perms = self._device_perms.get(key)
        if perms is None:
            perms = torch.from_numpy(np.argsort(self.perm_keys, axis=1, kind="stable")).to(device)
            self._device_perms[key] = perms
        return perms


def draw_epoch_mixing(
    eligible_layers: Sequence[int], alpha: float, num_steps: int, batch_size: int, rng: np.random.Generator
) -> EpochMixDraws:
    """Draw every step's (layer, lam, permutation) of one epoch, in this order from `rng`:
    ``num_steps`` uniforms choosing the layer (uniform over S), ``num_steps`` Beta(alpha, alpha)
    lams (none when alpha <= 0: lam = 1), and a (num_steps, batch_size) block of permutation keys.
    An empty eligible set draws nothing (plain cross-entropy)."""
    if not eligible_layers:
        return EpochMixDraws(np.full(num_steps, -1), np.ones(num_steps), np.zeros((num_steps, 0)))
    choices = np.asarray(eligible_layers)
    layers = choices[np.minimum((rng.random(num_steps) * len(choices)).astype(np.int64), len(choices) - 1)]
    lams = rng.beta(alpha, alpha, num_steps) if alpha > 0 else np.ones(num_steps)
    keys = rng.random((num_steps, batch_size))
    return EpochMixDraws(layers, lams, keys)


class LatentMixer:
    """Runs a model with its hidden state mixed at one chosen layer.

    Args:
        model: any `nn.Module` whose forward takes the inputs as one argument.
        mix_points: names of submodules (or tuples of names) in forward order; defaults to the
            model's own ``mix_points`` attribute. Layer k >= 1 is the output of ``mix_points[k-1]``.

    Example::

        mixer = LatentMixer(model, ["block1", "block2"])
        plan = mixer.sample_plan(eligible_layers=(0, 1, 2), alpha=2.0, batch_size=len(x), rng=rng)
        logits = mixer.forward(x, plan)
        loss = mixed_cross_entropy(logits, y, plan)
    """

    def __init__(self, model: nn.Module, mix_points: Optional[Sequence[MixPoint]] = None):
        if mix_points is None:
            mix_points = getattr(model, "mix_points", None)
            if mix_points is None:
                raise ConfigError(
                    f"{type(model).__name__} has no `mix_points` attribute: pass mix_points=[...] "
                    "naming the submodules whose outputs may be mixed"
                )
        self.model = model
        self.mix_points: tuple[tuple[str, ...], ...] = tuple(
            (point,) if isinstance(point, str) else tuple(point) for point in mix_points
        )
        repeated = sorted({"+".join(p) for p in self.mix_points if self.mix_points.count(p) > 1})
        if repeated:  # two layer numbers for one place: a layer range would mix there twice as often
            raise ConfigError(f"mix_points name {', '.join(repr(p) for p in repeated)} more than once; name each "
                              "mix point once, in forward order")
        available = dict(model.named_modules())
        self._modules: list[list[nn.Module]] = []
        for point in self.mix_points:
            modules = []
            for name in point:
                if name not in available or name == "":
                    valid = ", ".join(n for n in available if n) or "(none)"
                    raise ConfigError(f"mix point {name!r} is not a submodule of {type(model).__name__}; valid names: {valid}")
                modules.append(available[name])
            self._modules.append(modules)

    @property
    def num_layers(self) -> int:
        """Number of mixable layers, the input included."""
        return len(self.mix_points) + 1

    def describe_layers(self) -> str:
        names = ["0 = input"] + [f"{k} = {'+'.join(point)}" for k, point in enumerate(self.mix_points, start=1)]
        return ", ".join(names)

    def check_layers(self, layers: Sequence[int]) -> tuple[int, ...]:
        """Validate an eligible-layer set against this model; returns it as a sorted tuple."""
        layers = tuple(sorted(set(int(layer) for layer in layers)))
        for layer in layers:
            if not 0 <= layer < self.num_layers:
                raise ConfigError(
                    f"mix layer {layer} is out of range for {type(self.model).__name__}: valid layers are "
                    f"0..{self.num_layers - 1} ({self.describe_layers()})"
                )
        return layers

    @staticmethod
    def sample_plan(
        eligible_layers: Sequence[int], alpha: float, batch_size: int, rng: np.random.Generator,
        device: Union[torch.device, str, None] = None,
    ) -> MixPlan:
        """Draw (k, lam, perm) for one batch from `rng`, in that order.

        k is uniform over `eligible_layers`; lam ~ Beta(alpha, alpha) (alpha <= 0 gives lam = 1,
        i.e. no interpolation); perm is a uniform permutation of the batch. An empty eligible set
        draws nothing and returns `NO_MIX`, so plain cross-entropy consumes no random numbers.
        """
        if not eligible_layers:
            return NO_MIX
        layer = int(eligible_layers[rng.integers(len(eligible_layers))])
        lam = float(rng.beta(alpha, alpha)) if alpha > 0 else 1.0
        perm = torch.from_numpy(rng.permutation(batch_size)).to(device)
        return MixPlan(layer=layer, lam=lam, perm=perm)

    def forward(self, inputs: Inputs, plan: MixPlan = NO_MIX) -> torch.Tensor:
        """The model's output with the hidden state at `plan.layer` mixed (plain forward for NO_MIX)."""
        if not plan.mixes:
            return self.model(inputs)
        if plan.layer == 0:
            return self.model(mix_tensors(inputs, plan.lam, plan.perm))
        if not 0 < plan.layer < self.num_layers:
            self.check_layers([plan.layer])
        point = self.mix_points[plan.layer - 1]
        undo = [_mix_output_once(module, name, plan) for module, name in zip(self._modules[plan.layer - 1], point)]
        try:
            return self.model(inputs)
        finally:
            for remove in undo:
                remove()

    __call__ = forward


def _mix_output_once(module: nn.Module, name: str, plan: MixPlan) -> Callable[[], None]:
    """Make `module`'s output mixed (`mix_tensors`) until the returned function is called.

    Usually the mix is installed as the module's instance attribute ``forward`` (shadowing its
    class's forward for this one call), not as a forward hook: a module with a hook takes
    `nn.Module`'s slow call path, and registering and removing the hook every step adds more; on
    small models that is a visible part of a step (benchmarks/README.md). If the module already has
    forward hooks (its own or global ones), a hook is used instead, registered last as before, so
    those hooks still see the un-mixed output. A mix point that runs twice in one forward raises.
    """
    calls = 0

    def mixed(output):
        nonlocal calls
        calls += 1
        if calls > 1:
            raise ConfigError(
                f"mix point {name!r} ran more than once in one forward pass, so 'its output' is "
                "ambiguous; choose a submodule that runs once (e.g. a block, not a shared activation)"
            )
        return mix_tensors(output, plan.lam, plan.perm)

    if module._forward_hooks or _global_forward_hooks:
        handle = module.register_forward_hook(lambda _module, _args, output: mixed(output))
        return handle.remove
    own = module.__dict__
    previous = own.get("forward", _MISSING)  # an instance-level forward someone installed: kept
    inner = module.forward
    own["forward"] = lambda *args, **kwargs: mixed(inner(*args, **kwargs))

    def remove() -> None:
        if previous is _MISSING:
            own.pop("forward", None)
        else:
            own["forward"] = previous

    return remove


_MISSING = object()


def mixed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, plan: MixPlan) -> torch.Tensor:
    """Mixup loss ``lam * CE(out, y) + (1 - lam) * CE(out, y[perm])`` (Zhang et al. 2018, eq. 1).

    With `NO_MIX` (or lam = 1) this is plain `F.cross_entropy`. Otherwise it is computed as the
    equal soft-target cross-entropy against ``lam * onehot(y) + (1 - lam) * onehot(y[perm])``
    (`mixed_soft_targets`), which needs three autograd nodes instead of seven.
    """
    if not plan.mixes or plan.lam == 1.0:
        return F.cross_entropy(logits, targets)
    if logits.dim() != 2:  # per-position outputs (B, C, d...): the two-term form
        return torch.lerp(F.cross_entropy(logits, targets[plan.perm]), F.cross_entropy(logits, targets), plan.lam)
    return soft_target_cross_entropy(logits, mixed_soft_targets(targets, logits.shape[1], plan, logits.dtype))


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``-(1/B) sum_i sum_c t_ic log softmax(out_i)_c`` for (B, C) target rows t (no gradient to t)."""
    return soft_target_nll(F.log_softmax(logits, dim=1), targets)


def soft_target_nll(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``-(1/B) sum_i sum_c t_ic log_probs_ic``, the mean soft-target negative log-likelihood.

    The factor -1/B is applied to the (gradient-free) targets, so the graph is one product and one
    sum.
    """
    return (log_probs * (targets.detach() * (-1.0 / log_probs.shape[0]))).sum()


def one_hot(labels: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``F.one_hot(labels, num_classes).to(dtype)``, (B, C), as rows of a cached identity matrix.

    One indexing operation; `F.one_hot` checks the label range with two reductions (host syncs on
    some devices) and needs a cast. Out-of-range labels still raise (index out of bounds).
    """
    return _identity(num_classes, dtype, labels.device)[labels]


@functools.lru_cache(maxsize=32)
def _identity(num_classes: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.eye(num_classes, dtype=dtype, device=device)


def mixed_soft_targets(
    targets: torch.Tensor, num_classes: int, plan: MixPlan, dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The mixed one-hot targets ``lam * onehot(y) + (1 - lam) * onehot(y[perm])``, shape (B, C):
    the one-hot rows mixed exactly like the hidden state (`mix_rows`)."""
    return mix_targets(one_hot(targets, num_classes, dtype), plan)


def mix_targets(rows: torch.Tensor, plan: MixPlan, lam: Optional[float] = None) -> torch.Tensor:
    """Per-sample target rows t (B, C) mixed like the hidden state: ``lam * t + (1 - lam) * t[perm]``
    (`lam` defaults to the plan's); unchanged for `NO_MIX`."""
    if not plan.mixes:
        return rows
    return mix_rows(rows, plan.lam if lam is None else lam, plan.perm)


# --------------------------------------------------------------------------------------------------
# The object a training loop holds


class MixedForward(NamedTuple):
    """What a `LatentMixup` call returns: the mixed forward's logits and the plan the loss needs."""

    logits: torch.Tensor
    plan: MixPlan


class LatentMixup:
    """Latent mixup for your own training loop: one object that owns the eligible layers, alpha and
    its random stream, in the shape of timm's ``Mixup`` (``timm/data/mixup.py``).

    Args:
        model: any `nn.Module` whose forward takes the inputs as one argument, or the same model
            wrapped in `DistributedDataParallel` (mix points are then found on its ``module`` and
            the mixed forward runs through the wrapper, so the gradients are averaged), or a
            `LatentMixer` already built (`mix_points` is then ignored).
        mix_points: submodule names whose outputs are layers 1, 2, ... (default: the model's
            ``mix_points`` attribute); see `LatentMixer`.
        layers: the eligible set S, e.g. ``"0-2"``, ``[1, 2]`` (`parse_layers`); default: every
            layer, the input included. Empty (``"none"``): plain forwards.
        alpha: lam ~ Beta(alpha, alpha); 0 gives lam = 1 (no interpolation).
        seed: an int, or a `numpy.random.Generator` to draw from (shared, not copied).
        enabled: the switch a loop flips (timm's ``mixup_enabled``): off, a call is the model's
            plain forward with `NO_MIX` and draws nothing.

    One call, ``logits, plan = mixup(inputs)``, draws the batch's layer k (uniform over S), lam and
    a permutation, and runs the model with the hidden state at k replaced by
    ``lam * h + (1 - lam) * h[perm]`` (Verma et al. 2019, Alg. 1); the loss mixes the targets the
    same way: ``mixed_cross_entropy(logits, labels, plan)``, or
    `latentmix.correction.LossCorrection.loss`.

    Draws come in blocks of `draw_epoch_mixing` (layer uniforms, then lams, then permutation keys):
    one step per call, or a whole epoch's when the loop calls ``start_epoch(steps, batch_size)``,
    which is how `latentmix.training.train` draws, so such a loop mixes exactly as the trainer does.
    ``state_dict()``/``load_state_dict()`` carry the stream and the current block, so a resumed
    loop draws what the uninterrupted one would have.

    Data-parallel: build one per process with the same seed; every process then takes the same
    layer and lam at each step and mixes its own batch (partners come from within it).

    Example::

        mixup = LatentMixup(model, ["block1", "block2"], layers="0-2", alpha=2.0, seed=0)
        for x, y in loader:
            logits, plan = mixup(x)
            loss = mixed_cross_entropy(logits, y, plan)
    """

    def __init__(
        self, model: nn.Module, mix_points: Optional[Sequence[MixPoint]] = None, *,
        layers: Union[str, int, Sequence[int], None] = None, alpha: float = 1.0,
        seed: Union[int, np.random.Generator] = 0, enabled: bool = True,
    ):
        from torch.nn.parallel import DistributedDataParallel

        if isinstance(model, LatentMixer):
            self.mixer = model
        else:
            inner = model.module if isinstance(model, DistributedDataParallel) else model
            self.mixer = LatentMixer(inner, mix_points)
            self.mixer.model = model  # the forward goes through the wrapper; the mix points stay on `inner`
        self.layers = self.mixer.check_layers(range(self.mixer.num_layers) if layers is None else parse_layers(layers))
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not np.isfinite(alpha) or alpha < 0:
            raise ConfigError(f"LatentMixup alpha must be a finite number >= 0 (0: no interpolation), got {alpha!r}")
        self.alpha = float(alpha)
        if isinstance(seed, np.random.Generator):
            self.rng = seed
        elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            self.rng = np.random.default_rng(int(seed))
        else:
            raise ConfigError(f"LatentMixup seed must be an int or a numpy.random.Generator, got {seed!r}")
        self.enabled = bool(enabled)
        self._block: Optional[EpochMixDraws] = None
        self._step = 0

    @property
    def model(self) -> nn.Module:
        return self.mixer.model

    def start_epoch(self, num_steps: int, batch_size: int) -> None:
        """Draw the mixing of the next `num_steps` calls at once (batches of at most `batch_size`),
        as the trainer and the population draw an epoch (`draw_epoch_mixing`)."""
        self._block = draw_epoch_mixing(self.layers, self.alpha, int(num_steps), int(batch_size), self.rng)
        self._step = 0

    def next_plan(self, batch_size: int, *, offset: int = 0, device: Union[torch.device, str, None] = None) -> MixPlan:
        """The next step's plan for `batch_size` samples (`NO_MIX` when disabled, drawing nothing).
        `offset` > 0 plans a shard of a global batch of the epoch block (`EpochMixDraws.plan`)."""
        if not self.enabled or not self.layers:
            return NO_MIX
        block = self._block
        if block is None or self._step >= len(block.layers):
            block, self._block, self._step = draw_epoch_mixing(self.layers, self.alpha, 1, batch_size, self.rng), None, 0
        elif offset + batch_size > block.perm_keys.shape[1]:
            raise ConfigError(f"LatentMixup: a batch of {batch_size} samples (offset {offset}) does not fit the epoch "
                              f"drawn by start_epoch(batch_size={block.perm_keys.shape[1]}); pass the largest batch size")
        plan = block.plan(self._step, batch_size, device, offset=offset)
        self._step += 1
        return plan

    def __call__(self, inputs: Inputs, plan: Optional[MixPlan] = None) -> MixedForward:
        """Run the model on `inputs` with the next plan (or `plan`); returns ``(logits, plan)``."""
        if plan is None:
            batch_size, device = _batch_shape(inputs)
            plan = self.next_plan(batch_size, device=device)
        return MixedForward(self.mixer.forward(inputs, plan), plan)

    def state_dict(self) -> dict:
        """The stream, the switch and the current epoch block (tensors and plain values)."""
        block = None
        if self._block is not None:
            block = {"layers": torch.from_numpy(np.asarray(self._block.layers, dtype=np.int64)),
                     "lams": torch.from_numpy(np.asarray(self._block.lams, dtype=np.float64)),
                     "perm_keys": torch.from_numpy(np.asarray(self._block.perm_keys, dtype=np.float64))}
        return {"version": 1, "layers": list(self.layers), "alpha": self.alpha, "enabled": self.enabled,
                "rng": self.rng.bit_generator.state, "block": block, "step": self._step}

    def load_state_dict(self, state: Mapping) -> None:
        """Continue from `state_dict()`; refuses a state of other layers or another alpha."""
        for key, mine in (("layers", list(self.layers)), ("alpha", self.alpha)):
            if state.get(key) != mine:
                raise ConfigError(f"LatentMixup.load_state_dict: the state has {key}={state.get(key)!r} but this "
                                  f"object has {key}={mine!r}; build it with the settings the state was saved with")
        self.rng.bit_generator.state = state["rng"]
        self.enabled = bool(state["enabled"])
        block = state["block"]
        self._block = None if block is None else EpochMixDraws(
            block["layers"].numpy(), block["lams"].numpy(), block["perm_keys"].numpy())
        self._step = int(state["step"])


def _batch_shape(inputs: Inputs) -> tuple[int, torch.device]:
    """The batch size and device of the first tensor of a tensor / tuple / dict input."""
    if isinstance(inputs, torch.Tensor):
        return inputs.shape[0], inputs.device
    items = inputs.values() if isinstance(inputs, Mapping) else inputs
    for item in items:
        if isinstance(item, (torch.Tensor, tuple, list, Mapping)):
            return _batch_shape(item)
    raise TypeError(f"cannot find a tensor in the inputs ({type(inputs).__name__})")
