"""The passes of an epoch that do not train: the tracking pass (each training sample's loss and
logits against its given label, [A] ``track_training_loss``), the noise model fitted to it, the
epoch's per-sample view, and the evaluation of accuracy. Data-parallel runs shard each pass over
the processes and gather the results, so every process holds the same values."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentmix.config import RunConfig
from latentmix.correction import track_losses
from latentmix.data import Inputs, index_inputs
from latentmix.data.streamed import read_batches
from latentmix.distributed import ONE_PROCESS, DistContext
from latentmix.errors import ConfigError, TrainingDiverged
from latentmix.methods import Method
from latentmix.models.paired import PairedNetworks
from latentmix.noise_model import fit_noise_model
from latentmix.protocols import Protocol
from latentmix.selection import flagged_share, separation


@dataclass
class Tracked:
    """Per-sample results of one pass over the training set."""

    losses: torch.Tensor  # (N,) cross-entropy against the given (noisy) labels
    logits: torch.Tensor  # (N, C)
    network_losses: Optional[torch.Tensor] = None  # (2, N) each network's, for a PairedNetworks

    @property
    def predictions(self) -> torch.Tensor:
        """(N,) argmax class."""
        return self.logits.argmax(dim=1)


def track_training_losses(
    model: nn.Module, inputs: Inputs, labels: torch.Tensor, transform: Callable[[Inputs], Inputs],
    batch_size: int, autocast: Callable = nullcontext, dist: DistContext = ONE_PROCESS,
) -> Tracked:
    """[A] ``track_training_loss``: the whole training set once, eval mode, no gradients, each
    sample's cross-entropy against its given label (and its predicted class): the tracking pass a
    user's loop runs (`latentmix.correction.track_losses`) over the batches of `tracking_batches`,
    put in sample order.

    Data-parallel (`dist`): each process forwards its shard of every batch and `track_losses`
    gathers the shards of all processes, so every process holds all N values.

    A `PairedNetworks` (a two-network method) is read as one model, its mean logits, and in the
    same pass each network's own losses are kept (`Tracked.network_losses`: DivideMix fits a GMM
    per network, Train_cifar.py ``eval_train``)."""
    n = labels.shape[0]
    pair = _BothNetworks(model) if isinstance(getattr(model, "_orig_mod", model), PairedNetworks) else None
    tracked = track_losses(pair or model, tracking_batches(inputs, labels, transform, batch_size, dist),
                           autocast=autocast)
    network_losses = None
    if pair is not None:
        if dist.world_size > 1:
            raise ConfigError("a two-network method's per-network tracking runs on one device: train it without torchrun")
        both = torch.cat(pair.kept, dim=1)  # (2, N, C) in the loader's order
        per_network = torch.stack([F.cross_entropy(both[k], tracked.labels, reduction="none") for k in range(2)])
        network_losses = in_sample_order(per_network.T, tracked.index, n).T
    return Tracked(in_sample_order(tracked.losses, tracked.index, n), in_sample_order(tracked.logits, tracked.index, n),
                   network_losses)


class _BothNetworks(nn.Module):
    """A pair as the tracking pass reads it: the mean of the two networks' logits (the pair's
    eval-mode output), keeping each network's logits on the side."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.pair = getattr(model, "_orig_mod", model)
        self.kept: list[torch.Tensor] = []

    def forward(self, inputs: Inputs) -> torch.Tensor:
        both = torch.stack((self.pair.first(inputs), self.pair.second(inputs))).float()
        self.kept.append(both)
        return both.mean(dim=0)


def tracking_batches(inputs: Inputs, labels: torch.Tensor, transform: Callable[[Inputs], Inputs], batch_size: int,
                     dist: DistContext = ONE_PROCESS) -> Iterator[tuple[Inputs, torch.Tensor, torch.Tensor]]:
    """``(inputs, labels, index)`` of this process's shard of each consecutive batch of
    `batch_size` samples, the inputs through `transform`. The transform sees the whole batch, so a
    random (training) transform draws as in one process and the streams stay equal."""
    splits = list(torch.arange(labels.shape[0], device=labels.device).split(batch_size))
    for index, batch in zip(splits, read_batches(inputs, splits, labels.device)):
        part = dist.shard(len(index))
        yield index_inputs(transform(batch), part), labels[index[part]], index[part]


def in_sample_order(values: torch.Tensor, index: torch.Tensor, total: int) -> torch.Tensor:
    """(total, ...) per-sample `values` placed at their sample `index` (every sample once)."""
    if index.shape[0] != total:
        raise RuntimeError(f"the tracking pass gave {index.shape[0]} per-sample values, expected {total}")
    ordered = torch.empty((total, *values.shape[1:]), dtype=values.dtype, device=values.device)
    ordered[index.to(values.device)] = values
    return ordered


@torch.no_grad()
def evaluate(model: nn.Module, inputs: Inputs, labels: torch.Tensor, transform: Callable[[Inputs], Inputs],
             batch_size: int, autocast: Callable = nullcontext, dist: DistContext = ONE_PROCESS) -> torch.Tensor:
    """Accuracy (as a 0-dim tensor on the device, read once per epoch) in eval mode. Data-parallel
    (`dist`): each process counts its shard of the samples and the counts are summed."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), device=labels.device)
    splits = list(torch.arange(labels.shape[0], device=labels.device)[dist.shard(labels.shape[0])].split(batch_size))
    for index, batch in zip(splits, read_batches(inputs, splits, labels.device)):
        with autocast():
            logits = model(transform(batch))
        correct += (logits.argmax(dim=1) == labels[index]).sum()
    model.train(was_training)
    return dist.all_reduce_sum(correct) / labels.shape[0]


def tracking_pass(tracked: Tracked, labels: torch.Tensor, trained: torch.Tensor, with_targets: bool) -> tuple:
    """What `LossCorrection.observe` takes of a tracking pass for the samples trained on: their
    losses, and (for ``--bootstrap-forward tracked``) their logits and labels."""
    if not with_targets:
        return tracked.losses[trained], None, None
    return tracked.losses[trained], tracked.logits[trained], labels[trained]


def epoch_view(tracked: Tracked, noise_model: Any, trained: np.ndarray, val_tracked: Optional[Tracked]) -> dict:
    """One epoch's per-sample view, as tensors (a checkpoint holds it): every training sample's
    loss, P(noisy) and predicted class; the noise-rate estimate and the separation of the
    samples the noise model was fitted on; and the same per-sample values for the validation
    rows of a user's file (`val_tracked`)."""
    losses = tracked.losses.cpu().numpy()
    p_noisy = noise_model.posterior(losses)
    view = {"losses": tracked.losses.cpu(), "p_noisy": torch.from_numpy(p_noisy), "predictions": tracked.predictions.cpu(),
            "flagged_share": flagged_share(p_noisy[trained]),
            "separation": separation(p_noisy[trained], losses[trained]),
            "val_losses": None, "val_p_noisy": None, "val_predictions": None}
    if val_tracked is not None:
        view.update(val_losses=val_tracked.losses.cpu(), val_predictions=val_tracked.predictions.cpu(),
                    val_p_noisy=torch.from_numpy(noise_model.posterior(val_tracked.losses.cpu().numpy())))
    return view


def tracks_at(epoch: int, config: RunConfig, method: Method, protocol: Protocol) -> bool:
    """Whether epoch `epoch` ends with a pass over the training set: every epoch for
    loss-correcting methods, DivideMix and the selecting methods (the noise model, the divisions
    and Co-teaching's forget rate need fresh losses), else
    every `track_every` epochs and always at the last one."""
    if config.track_every < 1:
        raise ConfigError(f"track_every must be >= 1, got {config.track_every}")
    return method.fits_every_epoch or epoch % config.track_every == 0 or epoch == protocol.epochs


def fit_run_noise_model(config: RunConfig, losses: torch.Tensor):
    """Fit the run's noise model (a fresh fit every epoch, as [A] does) on the tracked losses.
    Non-finite losses mean the training diverged (the settings and inputs were checked before):
    that is what the error says, with what to change."""
    values = losses.cpu().numpy()
    bad = int((~np.isfinite(values)).sum())
    if bad:
        lr = f"{config.lr:g}" if config.lr is not None else "the protocol's"
        raise TrainingDiverged(f"training diverged: {bad} of {values.size} per-sample training losses are NaN/inf; "
                          f"lower the learning rate (--lr / lr, now {lr}) or check the inputs' scale")
    options = {"lookup": config.posterior_lookup} if config.noise_model == "beta" else {}
    return fit_noise_model(values, kind=config.noise_model, **options)
