"""Two networks of one architecture trained side by side, for the peers that need two: Co-teaching
(Han et al. 2018: each network picks the small-loss samples the other learns from) and DivideMix
(Li et al. 2020: each network's mixture divides the data the other trains on).

`PairedNetworks` is one `nn.Module`, so everything a run does with its model works unchanged: one
optimizer over both parameter sets is two optimizers with the same settings (SGD's update, momentum
and weight decay are per parameter); a checkpoint holds both; the mix points name the same place in
both networks, so `latentmix.mixing.LatentMixer` mixes both hidden states with one plan.

What the forward returns depends on the mode, which is what tells training from use:
* training mode: both networks' logits stacked, shape (2, B, C), for the step's loss, which trains
  each network on what the other chose;
* evaluation mode: the mean of the two networks' logits, shape (B, C) (DivideMix tests on
  ``outputs1 + outputs2``; the argmax is the same), so evaluation, the tracking pass, `predict` and
  `detect` read the pair as one model.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["PairedNetworks", "pair_logits", "paired_mix_points"]


class PairedNetworks(nn.Module):
    """Two networks, `first` and `second`, of the same architecture and different initialisations.

    Args:
        first, second: the two networks; each must have a ``mix_points`` attribute (every model of
            `latentmix.models` has) for the pair to be mixed.

    Build a pair from one model with `PairedNetworks.from_model` (the second a fresh copy with its
    parameters re-initialised from `seed`).
    """

    def __init__(self, first: nn.Module, second: nn.Module):
        super().__init__()
        if type(first) is not type(second):
            raise TypeError(f"PairedNetworks needs two networks of one architecture, got {type(first).__name__} "
                            f"and {type(second).__name__}")
        self.first = first
        self.second = second
        points = getattr(first, "mix_points", None)
        if points is not None:
            self.mix_points = paired_mix_points(points)

    @classmethod
    def from_model(cls, model: nn.Module, seed: int) -> PairedNetworks:
        """`model` and a deep copy of it whose parameters are drawn afresh (each submodule's own
        ``reset_parameters``) from `seed`, without touching the caller's random state."""
        second = copy.deepcopy(model)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module in second.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
        return cls(model, second)

    def forward(self, inputs: Any) -> torch.Tensor:
        first, second = self.first(inputs), self.second(inputs)
        if self.training:
            return torch.stack((first, second))
        return (first + second) / 2


def pair_logits(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two networks' logits from a `PairedNetworks` training forward (shape (2, B, C))."""
    if logits.dim() != 3 or logits.shape[0] != 2:
        raise ValueError(f"expected the stacked logits of two networks, shape (2, B, C), got {tuple(logits.shape)}: "
                         "is the model a PairedNetworks in training mode?")
    return logits[0], logits[1]


def paired_mix_points(points) -> tuple:
    """One network's mix points (submodule names, or tuples of them) as the pair's: layer k of the
    pair is layer k of both networks, one mix point naming both places (``"fc1"`` ->
    ``("first.fc1", "second.fc1")``), so that a user's own `mix_points` name the pair too."""
    return tuple(
        tuple(f"{net}.{name}" for net in ("first", "second") for name in ((p,) if isinstance(p, str) else p))
        for p in points
    )
