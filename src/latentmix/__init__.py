"""latentmix: noise-tolerant training with latent-representation mixup and loss correction.

The Python API (imported on first use, so ``import latentmix`` stays cheap)::

    from latentmix import fit, LatentMixer, Method, get_method, PRESETS, make_noisy_labels, BetaMixture

* `fit` (latentmix.api): train any `nn.Module` with named mix points on tensors, or on a map-style
  `torch.utils.data.Dataset` of (inputs, label) items read through a DataLoader -> `RunResult`.
* `WithIndex` (latentmix.data.streamed): your data set with each item's index, for your own loop;
  `ImageFolder` (latentmix.data.image_folder): one sub-folder per class, read with Pillow.
* `LatentMixupCallback` (latentmix.lightning, needs ``latentmix[lightning]``): the same for a
  `LightningModule`.
* `LatentMixup` (latentmix.mixing): latent mixup as one object your own loop calls (its own
  random stream, eligible layers, alpha, `state_dict`); `LatentMixer`, `mixed_cross_entropy` below it.
* `LossCorrection`, `track_losses` (latentmix.correction): the Beta-mixture loss correction for
  your own loop and DataLoader (P(noisy) per sample index, bootstrapped loss, `state_dict`);
  `class_shares` (latentmix.losses) the prior of its regularizer from your labels.
* `RobustLoss`, `ElrLoss` (latentmix.peer_losses): the peers' losses (GCE, SCE; ELR) in the
  `LossCorrection` role of your own loop (docs/peers.md).
* `DivideMix` (latentmix.dividemix): DivideMix's co-divided MixMatch step for a `PairedNetworks`
  (docs/peers.md).
* `CoTeachingLoss` (latentmix.coteaching): Co-teaching's step on a `PairedNetworks` pair, in the
  same role (docs/peers.md).
* `Method`, `PRESETS`, `get_method` (latentmix.methods): the paper's methods and the peers as data.
* `make_noisy_labels` (latentmix.noise): synthetic label noise.
* `BetaMixture` (latentmix.beta_mixture): the two-component loss mixture giving P(noisy).
* `train` (latentmix.training): the training loop itself; `RunConfig` (latentmix.config) its
  settings, `RunResult` (latentmix.result) what it returns.
* `load_run` (latentmix.predict): the model a run kept, with its input transform (`TrainedModel`:
  ``model(x)``, ``model.predict(x)``), from a run folder or `fit`'s result.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "fit": "latentmix.api",
    "dataset_from_tensors": "latentmix.api",
    "LatentMixer": "latentmix.mixing",
    "LatentMixup": "latentmix.mixing",
    "mixed_cross_entropy": "latentmix.mixing",
    "LossCorrection": "latentmix.correction",
    "track_losses": "latentmix.correction",
    "class_shares": "latentmix.losses",
    "RobustLoss": "latentmix.peer_losses",
    "ElrLoss": "latentmix.peer_losses",
    "DivideMix": "latentmix.dividemix",
    "CoTeachingLoss": "latentmix.coteaching",
    "Method": "latentmix.methods",
    "PRESETS": "latentmix.methods",
    "get_method": "latentmix.methods",
    "make_noisy_labels": "latentmix.noise",
    "NoisyLabels": "latentmix.noise",
    "BetaMixture": "latentmix.beta_mixture",
    "train": "latentmix.training",
    "RunConfig": "latentmix.config",
    "RunResult": "latentmix.result",
    "Dataset": "latentmix.data",
    "WithIndex": "latentmix.data.streamed",
    "ImageFolder": "latentmix.data.image_folder",
    "LatentMixupCallback": "latentmix.lightning",
    "ConfigError": "latentmix.errors",
    "load_run": "latentmix.predict",
    "TrainedModel": "latentmix.predict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'latentmix' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
