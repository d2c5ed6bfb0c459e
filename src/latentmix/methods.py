"""Methods are data: which layers to mix, alpha, which loss correction, warm-up, regularizer
weight, and which loss (the cross-entropy, or a peer's robust loss).

The presets reproduce the rows of the paper's Table 1 and Table 2, and add the peers a user would
pick instead (issue #27: GCE, SCE, ELR, alone and with latent mixup; `latentmix.robust_losses`);
any other combination is the same `Method` with other fields (``latentmix train --layers 1-3
--correction hard``). The training loop reads these fields and never branches on a method's name.

Layer sets use the mixing module's numbering: 0 = input, k >= 1 = output of the k-th mix point.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Optional, Sequence

from latentmix.errors import ConfigError
from latentmix.mixing import format_layers, parse_layers
from latentmix.robust_losses import PAPER_PARAMS, ROBUST_LOSSES

CORRECTIONS = ("none", "soft", "hard")
# the prior of the bootstrapping loss's regularizer: the given labels' class shares, or uniform ([A])
CLASS_PRIORS = ("labels", "uniform")
# M-DYR-S: how the two mixed samples' soft targets are weighted ([A]'s current code "lam", its 2019 release "half")
SIDE_WEIGHTINGS = ("lam", "half")
# DivideMix (Li et al. 2020, LiJunnan1992/DivideMix Train_cifar.py): the clean-probability threshold,
# the sharpening temperature and Lu's rampup (epochs of the reference's 300); `latentmix.dividemix`
DIVIDEMIX_PARAMS = {"p_threshold": 0.5, "T": 0.5, "rampup": 16.0}
# a method's `loss`: the cross-entropy, a peer's robust loss, or DivideMix's semi-supervised step
LOSSES = ROBUST_LOSSES + ("dividemix",)
_SETTINGS = {**PAPER_PARAMS, "dividemix": DIVIDEMIX_PARAMS}
# which samples of a batch each network learns from: all, or (Co-teaching, two networks) the
# small-loss share the other network kept (`latentmix.coteaching`)
SELECTIONS = ("none", "small-loss")


@dataclass(frozen=True)
class Method:
    """A training method.

    Attributes:
        name: display name (``"lr-m-dyr-h"``).
        mix_layers: eligible mix layers S; () means no mixing (plain cross-entropy).
        alpha: mixup's Beta(alpha, alpha) parameter; None takes the data set's protocol default.
        correction: "none", "soft" (M-DYR-S) or "hard" (M-DYR-H) dynamic bootstrapping.
        warmup_epochs: epochs of plain (mixed) cross-entropy before bootstrapping starts; None
            takes the protocol's (105 of 300 in the CIFAR protocol, scaled with --epochs).
        reg_weight: weight of the prior regularizer, added with bootstrapping only.
        soft_side_weighting: "lam" ([A]'s current code) or "half" (its 2019 release), soft only.
        loss: "ce" (the cross-entropy, which `correction` may bootstrap) or a peer's robust loss,
            "gce", "sce" or "elr" (`latentmix.robust_losses`), mixed as mixup mixes the
            cross-entropy; a robust loss replaces the cross-entropy, so it takes no correction.
            "dividemix": DivideMix's co-divided MixMatch step (`latentmix.dividemix`; two networks).
        loss_params: the robust loss's parameters as (name, value) pairs; the presets carry the
            paper's (`latentmix.robust_losses.PAPER_PARAMS`), a name left out takes the paper's.
        networks: 1, or 2 for the peers that train two networks side by side (Co-teaching,
            DivideMix): the run's model is then a `latentmix.models.paired.PairedNetworks`.
        selection: "none", or "small-loss" (Co-teaching, Han et al. 2018: each of the two networks
            learns from the small-loss samples the other kept, `latentmix.coteaching`).
    """

    name: str
    mix_layers: tuple[int, ...] = ()
    alpha: Optional[float] = None
    correction: str = "none"
    warmup_epochs: Optional[int] = None
    reg_weight: float = 1.0
    soft_side_weighting: str = "lam"
    loss: str = "ce"
    loss_params: tuple[tuple[str, float], ...] = ()
    networks: int = 1
    selection: str = "none"

    def __post_init__(self) -> None:
        if self.correction not in CORRECTIONS:
            raise ConfigError(f"unknown correction {self.correction!r}: choose one of {', '.join(CORRECTIONS)}")
        if self.alpha is not None and self.alpha < 0:
            raise ConfigError(f"mixup alpha must be >= 0, got {self.alpha}")
        if self.warmup_epochs is not None and self.warmup_epochs < 0:
            raise ConfigError(f"warm-up epochs must be >= 0, got {self.warmup_epochs}")
        if self.soft_side_weighting not in SIDE_WEIGHTINGS:
            raise ConfigError(f"soft side weighting must be one of {', '.join(map(repr, SIDE_WEIGHTINGS))}, got "
                              f"{self.soft_side_weighting!r}")
        if any(layer < 0 for layer in self.mix_layers):
            raise ConfigError(f"mix layers must be >= 0, got {format_layers(self.mix_layers)}")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.loss != "ce" and self.corrects:
            raise ConfigError(f"method {self.name}: the {self.loss} loss replaces the cross-entropy whose targets "
                              f"{self.correction} bootstrapping corrects; use correction none with it, or a "
                              "cross-entropy method (lr-m-dyr-h) for bootstrapping")
        if self.networks not in (1, 2):
            raise ConfigError(f"method {self.name}: networks must be 1 or 2, got {self.networks!r}")
        if self.loss == "dividemix" and self.networks != 2:
            raise ConfigError(f"method {self.name}: DivideMix trains two networks; set networks=2")
        if self.selection not in SELECTIONS:
            raise ConfigError(f"method {self.name}: unknown selection {self.selection!r}: choose one of "
                              f"{', '.join(SELECTIONS)}")
        if self.selects and (self.networks != 2 or self.loss != "ce" or self.corrects):
            raise ConfigError(f"method {self.name}: small-loss selection (Co-teaching) exchanges the cross-entropy's "
                              "small-loss samples between two networks: it needs networks=2, loss ce and correction "
                              "none")
        known = _SETTINGS.get(self.loss, {})
        unknown = [name for name, _ in self.loss_params if name not in known]
        if unknown:
            raise ConfigError(f"method {self.name}: the {self.loss} loss has no parameter {unknown[0]!r}; its "
                              f"parameters: {', '.join(known) or 'none'}")

    @property
    def mixes(self) -> bool:
        return bool(self.mix_layers)

    @property
    def corrects(self) -> bool:
        return self.correction != "none"

    @property
    def selects(self) -> bool:
        """Whether each network learns from the samples the other selected (Co-teaching)."""
        return self.selection != "none"

    @property
    def robust_loss(self) -> bool:
        """Whether it trains with a peer's robust loss instead of the cross-entropy."""
        return self.loss != "ce"

    @property
    def loss_settings(self) -> dict[str, float]:
        """The robust loss's parameters: the paper's, with `loss_params` over them."""
        return {**_SETTINGS.get(self.loss, {}), **dict(self.loss_params)}

    @property
    def fits_every_epoch(self) -> bool:
        """Whether every epoch ends with a tracking pass and a fit: bootstrapping needs a fresh noise
        model, DivideMix fresh divisions, Co-teaching's forget rate a noise estimate per epoch."""
        return self.corrects or self.selects or self.loss == "dividemix"

    @property
    def is_latentmix(self) -> bool:
        """Whether it is one of this tool's own methods rather than a peer as its paper has it: it
        corrects labels with the noise model (M-DYR-*, LR-M-DYR-*) or mixes a hidden layer (latent
        mixup, alone or with a peer's loss: LR-M, LR-M-ELR, LR-M-Co-teaching, LR-DivideMix). The
        peer tables compare the two groups (`latentmix.experiments.peers`)."""
        return is_latentmix(self.correction, self.mix_layers)

    def describe(self) -> str:
        parts = [self.name, f"layers {format_layers(self.mix_layers)}" if self.mixes else "no mixing"]
        if self.corrects:
            parts.append(f"{self.correction} bootstrapping")
        if self.robust_loss:
            parts.append(f"{self.loss} loss ({', '.join(f'{k} {v:g}' for k, v in self.loss_settings.items())})")
        if self.selects:
            parts.append(f"two networks, {self.selection} selection")
        return ", ".join(parts)


def is_latentmix(correction: str, mix_layers: Sequence[int]) -> bool:
    """`Method.is_latentmix` from a method's settings (as a run records them): a correction other
    than "none", or a mix layer above 0 (the input)."""
    return correction not in (None, "", "none") or any(int(layer) > 0 for layer in mix_layers)


def method_record(method: Method) -> dict:
    """The method as a run folder records it (config.json): its fields, the loss and its
    parameters only for a robust loss, the number of networks only where it is two, the selection
    only where there is one, so that the cross-entropy methods' records are the ones they always
    were (and their run folders still resume)."""
    record = asdict(method)
    if method.networks == 1:
        del record["networks"]
    if not method.selects:
        del record["selection"]
    if not method.robust_loss:
        del record["loss"], record["loss_params"]
    else:
        record["loss_params"] = method.loss_settings
    return record


PRESETS: dict[str, Method] = {
    method.name: method
    for method in [
        Method("ce"),
        Method("m", mix_layers=(0,)),
        Method("lr-m", mix_layers=(0, 1, 2)),
        Method("m-dyr-s", mix_layers=(0,), correction="soft"),
        Method("m-dyr-h", mix_layers=(0,), correction="hard"),
        Method("lr-m-dyr-s", mix_layers=(0, 1, 2), correction="soft"),
        Method("lr-m-dyr-h", mix_layers=(0, 1, 2), correction="hard"),
        Method("dlr-m-dyr-h", mix_layers=(1, 2, 3, 4), correction="hard"),
        Method("lr-m-dyr-h-0-4", mix_layers=(0, 1, 2, 3, 4), correction="hard"),
        # the peers (issue #27), each at its paper's parameters, alone and with latent mixup (lr-m's layers)
        *(Method(name, loss=name) for name in ("gce", "sce", "elr")),
        *(Method(f"lr-m-{name}", mix_layers=(0, 1, 2), loss=name) for name in ("gce", "sce", "elr")),
        # DivideMix (Li et al. 2020): MixMatch on the inputs at the paper's alpha 4, and on latent layers
        Method("dividemix", mix_layers=(0,), alpha=4.0, loss="dividemix", networks=2),
        Method("lr-dividemix", mix_layers=(0, 1, 2), alpha=4.0, loss="dividemix", networks=2),
        # Co-teaching (issue #27): two networks, each trained on the other's small-loss samples
        Method("coteaching", networks=2, selection="small-loss"),
        Method("lr-m-coteaching", mix_layers=(0, 1, 2), networks=2, selection="small-loss"),
    ]
}


def get_method(
    name: str,
    *,
    layers: Optional[str] = None,
    alpha: Optional[float] = None,
    correction: Optional[str] = None,
    warmup_epochs: Optional[int] = None,
    reg_weight: Optional[float] = None,
    soft_side_weighting: Optional[str] = None,
) -> Method:
    """A preset by name, with any field overridden (``get_method("lr-m", layers="3-4")``).

    Overriding the layers of a preset renames it to show them: ``lr-m`` with layers 3-4 is
    ``lr-m(3-4)``, as in the paper's Table 2.
    """
    key = name.strip().lower()
    if key not in PRESETS:
        raise ConfigError(f"unknown method {name!r}: choose one of {', '.join(PRESETS)}")
    method = PRESETS[key]
    changes: dict = {}
    if layers is not None:
        mix_layers = parse_layers(layers)
        changes["mix_layers"] = mix_layers
        if mix_layers != method.mix_layers:
            changes["name"] = f"{method.name}({format_layers(mix_layers)})"
    for field_name, value in [
        ("alpha", alpha), ("correction", correction), ("warmup_epochs", warmup_epochs),
        ("reg_weight", reg_weight), ("soft_side_weighting", soft_side_weighting),
    ]:
        if value is not None:
            changes[field_name] = value
    if "correction" in changes and changes["correction"] != method.correction and "name" not in changes:
        changes["name"] = f"{method.name}+{changes['correction']}"
    return replace(method, **changes) if changes else method
