"""Small CPU-sized classifiers with named mix points.

Mix-point convention (shared with the trainer): every model has an attribute ``mix_points``, an
ordered tuple whose entry k-1 names the submodule(s) whose OUTPUT is mix layer k (layer 0 is the
input itself). An entry that is a tuple of names means "layer k = the outputs of all these modules,
mixed with the same lam and permutation" (multimodal encoders). Every mix-point module runs exactly
once per forward. ``forward`` takes the inputs as ONE positional argument (a tensor, or a dict of
tensors for `FusionNet`) and returns logits.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from latentmix.errors import ConfigError

__all__ = [
    "MLP",
    "SpiralMLP",
    "SmallCNN",
    "SequenceEncoder",
    "match_saved_widths",
    "TokenEncoder",
    "TextClassifier",
    "ImageEncoder",
    "FeatureEncoder",
    "FusionNet",
    "model_for_inputs",
]

MixPoints = tuple  # tuple[str | tuple[str, ...], ...]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def _activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name.lower()]()
    except (KeyError, AttributeError):
        raise ConfigError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}") from None


class MLP(nn.Module):
    """Fully connected classifier.

    Layers: ``block1`` .. ``blockK`` (K = len(hidden)), each ``nn.Sequential(Linear, activation)``,
    then ``head`` (Linear to logits). Inputs with more than 2 dims are flattened.

    Mix layers: 0 = input, k = output of ``block{k}`` (k = 1..K). The head is never a mix point.
    """

    mix_points: MixPoints = ()
    DEFAULT_HIDDEN = (256, 256)  # the hidden sizes `build_model` gives it: two mix points

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = DEFAULT_HIDDEN,
                 activation: str = "relu") -> None:
        super().__init__()
        if in_features < 1 or num_classes < 2:
            raise ConfigError(f"MLP needs in_features >= 1 and num_classes >= 2, got {in_features}, {num_classes}")
        hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in hidden):
            raise ConfigError(f"MLP hidden sizes must be positive, got {hidden}")
        width = int(in_features)
        names = []
        for i, h in enumerate(hidden, start=1):
            self.add_module(f"block{i}", nn.Sequential(nn.Linear(width, h), _activation(activation)))
            names.append(f"block{i}")
            width = h
        self.head = nn.Linear(width, num_classes)
        self.mix_points = tuple(names)
        self.in_features = int(in_features)
        self.num_classes = int(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2:
            x = x.flatten(1)
        for name in self.mix_points:
            x = getattr(self, name)(x)
        return self.head(x)


class SpiralMLP(nn.Module):
    """The tanh network of the paper's Appendix B for the spiral data: 4-16-24-24-24-16-2.

    Layers: ``layer1`` Linear(4,16)+Tanh, ``layer2`` Linear(16,24)+Tanh, ``layer3`` Linear(24,24)+Tanh,
    ``layer4`` Linear(24,24)+Tanh, ``layer5`` Linear(24,16)+Tanh, ``output`` Linear(16,2).

    Mix layers: 0 = input, k = output of ``layer{k}`` (k = 1..5). ``output`` is never eligible.
    """

    mix_points: MixPoints = ("layer1", "layer2", "layer3", "layer4", "layer5")
    widths = (16, 24, 24, 24, 16)

    def __init__(self, in_features: int = 4, num_classes: int = 2) -> None:
        super().__init__()
        width = int(in_features)
        for i, h in enumerate(self.widths, start=1):
            self.add_module(f"layer{i}", nn.Sequential(nn.Linear(width, h), nn.Tanh()))
            width = h
        self.output = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.layer5(x)
        return self.output(x)


def _pair(size: Union[int, Sequence[int]]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ConfigError(f"image_size must be an int or (H, W), got {size}")
    return size  # type: ignore[return-value]


class SmallCNN(nn.Module):
    """Two conv blocks and a dense block for small images (MNIST-sized by default).

    Layers: ``block1`` conv3x3(in, width)-BN-ReLU-maxpool2, ``block2`` conv3x3(width, 2*width)-BN-
    ReLU-maxpool2, ``block3`` flatten + Linear(2*width*H/4*W/4, 128) + ReLU, ``head`` Linear(128, C).

    Mix layers: 0 = input image, 1 = ``block1`` output (N, width, H/2, W/2), 2 = ``block2`` output
    (N, 2*width, H/4, W/4), 3 = ``block3`` output (N, 128).
    """

    mix_points: MixPoints = ("block1", "block2", "block3")

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32,
                 image_size: Union[int, Sequence[int]] = 28) -> None:
        super().__init__()
        h, w = _pair(image_size)
        if h < 4 or w < 4:
            raise ConfigError(f"SmallCNN needs images of at least 4x4 pixels, got {h}x{w}")
        self.block1 = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width),
                                    nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width),
                                    nn.ReLU(), nn.MaxPool2d(2))
        flat = 2 * width * (h // 2 // 2) * (w // 2 // 2)
        self.block3 = nn.Sequential(nn.Flatten(), nn.Linear(flat, 128), nn.ReLU())
        self.head = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return self.head(self.block3(self.block2(self.block1(x))))


class SequenceEncoder(nn.Module):
    """(N, T, E) float sequence -> (N, hidden): one Conv1d (same padding) + ReLU per kernel width,
    side by side (the `hidden` channels split evenly between the widths), then global pooling.

    Several widths are Kim's (2014) sentence CNN; Zhang & Wallace (2015, "A Sensitivity Analysis of
    ... CNNs for Sentence Classification") find the best width depends on the data and that width 1
    (each channel a detector of a set of tokens, wherever they stand) wins where words matter more
    than their order. The default token model (`TextClassifier`) uses widths (1, 3): width 3 alone
    capped plain CE at 57-58% on bag-of-keywords tokens where width 1 reached 86% and (1, 3) 74-78%,
    while width 1 alone fell to 24% on order-dependent tokens where (1, 3) kept width 3's 66%
    (docs/robust-defaults.md, "The token model")."""

    def __init__(self, embed_dim: int, hidden: int, kernel_sizes: Union[int, Sequence[int]] = (3,),
                 pooling: str = "max") -> None:
        super().__init__()
        if pooling not in ("max", "mean"):
            raise ConfigError(f"pooling must be 'max' or 'mean', got {pooling!r}")
        # one width as an int too (the encoder's `kernel_size` before it took several)
        kernel_sizes = (int(kernel_sizes),) if isinstance(kernel_sizes, int) else tuple(int(k) for k in kernel_sizes)
        if not kernel_sizes or min(kernel_sizes) < 1 or len(kernel_sizes) > hidden:
            raise ConfigError(f"kernel_sizes must be 1 to {hidden} widths >= 1, got {kernel_sizes}")
        widths = [hidden // len(kernel_sizes) + (i < hidden % len(kernel_sizes)) for i in range(len(kernel_sizes))]
        convs = [nn.Conv1d(embed_dim, width, k, padding=k // 2) for k, width in zip(kernel_sizes, widths)]
        if len(convs) == 1:
            self.conv = convs[0]  # the one-width encoder's parameter names, as its run folders hold them
        else:
            self.convs = nn.ModuleList(convs)
        self.kernel_sizes = kernel_sizes
        self.act = nn.ReLU()
        self.pooling = pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # (N, E, T)
        length = x.shape[2]
        convs = [self.conv] if len(self.kernel_sizes) == 1 else self.convs
        # an even width pads one step more than it needs: keep T positions for every width
        h = self.act(torch.cat([conv(x)[:, :, :length] for conv in convs], dim=1))  # (N, hidden, T)
        return h.amax(dim=2) if self.pooling == "max" else h.mean(dim=2)


def match_saved_widths(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Give each `SequenceEncoder` of `model` the convolution widths its saved weights in `state`
    have, in place, so a run folder written before the default token model had widths 1 and 3 (one
    width-3 convolution, ``encoder.conv.*``) still loads for `predict` and `detect`. Encoders whose
    saved widths are already theirs, or that `state` does not hold, are left as they are."""
    for name, module in list(model.named_modules()):
        if not isinstance(module, SequenceEncoder):
            continue
        prefix = f"{name}." if name else ""
        weights = [state[f"{prefix}conv.weight"]] if f"{prefix}conv.weight" in state else []
        while f"{prefix}convs.{len(weights)}.weight" in state:
            weights.append(state[f"{prefix}convs.{len(weights)}.weight"])
        saved = tuple(int(weight.shape[2]) for weight in weights)
        if not saved or saved == module.kernel_sizes:
            continue
        hidden, embed_dim = sum(int(weight.shape[0]) for weight in weights), int(weights[0].shape[1])
        parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        setattr(parent, name.rpartition(".")[2],
                SequenceEncoder(embed_dim, hidden, kernel_sizes=saved, pooling=module.pooling))


class TokenEncoder(nn.Module):
    """(N, T) int64 token ids -> (N, hidden): ``embed`` (nn.Embedding) then ``encoder`` (SequenceEncoder)."""

    def __init__(self, vocab_size: int, embed_dim: int = 64, hidden: int = 128, pooling: str = "max") -> None:
        super().__init__()
        if vocab_size < 1:
            raise ConfigError(f"vocab_size must be >= 1, got {vocab_size}")
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.encoder = SequenceEncoder(embed_dim, hidden, pooling=pooling)
        self.out_features = hidden

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embed(tokens.long()))


class TextClassifier(nn.Module):
    """Token-sequence classifier.

    Layers: ``embed`` nn.Embedding(vocab_size, embed_dim) -> (N, T, E); ``encoder`` Conv1d of kernel
    widths 1 and 3 side by side + ReLU + global max (or mean) pooling -> (N, hidden) (`SequenceEncoder`
    says why both widths); ``block1`` Linear(hidden, hidden) + ReLU; ``head``.

    Mix layers: 0 = input token ids (integers: the mixing module refuses layer 0), 1 = ``embed``
    output (embedded tokens), 2 = ``encoder`` output, 3 = ``block1`` output.
    """

    mix_points: MixPoints = ("embed", "encoder", "block1")

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 64, hidden: int = 128,
                 pooling: str = "max", kernel_sizes: Sequence[int] = (1, 3)) -> None:
        super().__init__()
        if vocab_size < 1:
            raise ConfigError(f"vocab_size must be >= 1, got {vocab_size}")
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.encoder = SequenceEncoder(embed_dim, hidden, kernel_sizes=kernel_sizes, pooling=pooling)
        self.block1 = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.block1(self.encoder(self.embed(tokens.long()))))


class ImageEncoder(nn.Module):
    """(N, C, H, W) -> (N, out_features): two conv3x3-BN-ReLU stages with max-pooling, then
    `pooling="average"` (global average pool; any image size) or `"flatten"` (a second max-pool and
    the flattened map, like SmallCNN: keeps *where* things are, which learns much faster on small
    grey-scale images such as Fashion-MNIST at low width; docs/fashion-mnist.md)."""

    def __init__(self, in_channels: int, width: int = 32, out_features: int = 64,
                 image_size: Union[int, Sequence[int]] = 28, pooling: str = "average") -> None:
        super().__init__()
        h, w = _pair(image_size)
        pool: nn.Module = nn.MaxPool2d(2) if min(h, w) >= 2 else nn.Identity()
        if pooling == "average":
            head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, out_features)]
        elif pooling == "flatten":
            if min(h, w) < 4:
                raise ConfigError(f"flatten pooling needs images of at least 4x4, got {h}x{w}")
            head = [nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * width * (h // 4) * (w // 4), out_features)]
        else:
            raise ConfigError(f"unknown image pooling {pooling!r}; choose 'average' or 'flatten'")
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), pool,
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            *head, nn.ReLU(),
        )
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return self.net(x.float())


class FeatureEncoder(nn.Module):
    """(N, D) -> (N, out_features): Linear + ReLU + Linear + ReLU."""

    def __init__(self, in_features: int, out_features: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, out_features), nn.ReLU(),
                                 nn.Linear(out_features, out_features), nn.ReLU())
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2:
            x = x.flatten(1)
        return self.net(x.float())


def _encoder_for(key: str, spec: Mapping[str, Any], encoder_dim: int) -> nn.Module:
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise ConfigError(f"modality {key!r}: spec must be a dict with a 'kind' ('image', 'tokens' or 'features'), "
                          f"got {spec!r}")
    kind = spec["kind"]
    try:
        if kind == "image":
            shape = tuple(int(s) for s in spec["shape"])
            if len(shape) == 2:
                shape = (1,) + shape
            if len(shape) != 3:
                raise ConfigError(f"modality {key!r}: image shape must be (C, H, W), got {spec['shape']}")
            return ImageEncoder(shape[0], width=int(spec.get("width", 32)), out_features=encoder_dim,
                                image_size=shape[1:], pooling=str(spec.get("pooling", "average")))
        if kind == "tokens":
            return TokenEncoder(int(spec["vocab_size"]), embed_dim=int(spec.get("embed_dim", 32)), hidden=encoder_dim)
        if kind == "features":
            return FeatureEncoder(int(spec["dim"]), out_features=encoder_dim)
    except KeyError as exc:
        raise ConfigError(f"modality {key!r} of kind {kind!r}: spec lacks {exc.args[0]!r} "
                          "(image: shape=(C,H,W); tokens: vocab_size; features: dim)") from None
    raise ConfigError(f"modality {key!r}: unknown kind {kind!r}; choose 'image', 'tokens' or 'features'")


class FusionNet(nn.Module):
    """Late-fusion classifier for dict inputs ``{modality: tensor}``.

    Layers: ``encoders`` (nn.ModuleDict, one encoder per modality, each -> (N, encoder_dim): images ->
    small conv encoder, tokens -> embedding + conv + pooling, features -> MLP), outputs concatenated
    in the order of `modalities`; ``fusion1`` Linear + ReLU; ``fusion2`` Linear + ReLU; ``head``.

    Mix layers: 0 = the input dict, 1 = all ``encoders.<key>`` outputs (mixed together with one lam
    and permutation), 2 = ``fusion1`` output, 3 = ``fusion2`` output.

    Spec per modality: ``{"kind": "image", "shape": (C, H, W)}``, ``{"kind": "tokens", "vocab_size": V}``
    or ``{"kind": "features", "dim": D}``.
    """

    mix_points: MixPoints = ()

    def __init__(self, modalities: Mapping[str, Mapping[str, Any]], num_classes: int,
                 fusion_hidden: int = 128, encoder_dim: int = 64) -> None:
        super().__init__()
        if not modalities:
            raise ConfigError("FusionNet needs at least one modality")
        self.encoders = nn.ModuleDict()
        for key, spec in modalities.items():
            if not isinstance(key, str) or not key or "." in key:
                raise ConfigError(f"modality name {key!r} is invalid: use a non-empty name without '.'")
            try:
                self.encoders[key] = _encoder_for(key, spec, encoder_dim)
            except KeyError as exc:  # name clashes with a ModuleDict attribute
                raise ConfigError(f"modality name {key!r} cannot be used as a module name: {exc}") from None
        self.modality_keys = tuple(modalities)
        total = sum(enc.out_features for enc in self.encoders.values())
        self.fusion1 = nn.Sequential(nn.Linear(total, fusion_hidden), nn.ReLU())
        self.fusion2 = nn.Sequential(nn.Linear(fusion_hidden, fusion_hidden), nn.ReLU())
        self.head = nn.Linear(fusion_hidden, num_classes)
        self.mix_points = (tuple(f"encoders.{k}" for k in self.modality_keys), "fusion1", "fusion2")

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not isinstance(inputs, Mapping):
            raise TypeError(f"FusionNet takes a dict of tensors {list(self.modality_keys)}, got {type(inputs).__name__}")
        missing = [k for k in self.modality_keys if k not in inputs]
        if missing:
            raise KeyError(f"FusionNet input lacks modalities {missing} (has {list(inputs)})")
        features = [self.encoders[k](inputs[k]) for k in self.modality_keys]
        return self.head(self.fusion2(self.fusion1(torch.cat(features, dim=1))))


# ----------------------------------------------------------------------------------------------


def _infer_kind(t: torch.Tensor) -> str:
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        return "features" if t.dim() <= 2 else "image"
    if t.dtype == torch.uint8 and t.dim() >= 3:
        return "image"
    return "tokens" if t.dim() == 2 else ("image" if t.dim() >= 3 else "features")


def _spec_for(key: str, kind: str, train: torch.Tensor, others: Sequence[torch.Tensor],
              info: Mapping[str, Any]) -> dict[str, Any]:
    if kind == "features":
        return {"kind": "features", "dim": int(train[0].numel()) if train.dim() > 1 else 1}
    if kind == "image":
        shape = tuple(int(s) for s in train.shape[1:])
        if len(shape) == 2:
            shape = (1,) + shape
        if len(shape) != 3:
            raise ConfigError(f"input {key!r}: image tensors must be (N, C, H, W) or (N, H, W), got {tuple(train.shape)}")
        # the image encoder keeps the flattened map, as SmallCNN (the default image model) does:
        # global average pooling learns far slower on small images (clean image + tokens, 4,000
        # Fashion-MNIST images, CE, the `arrays` protocol: 74.2% test accuracy vs 87.0%,
        # docs/robust-defaults.md); maps under 4x4 cannot be pooled twice and keep the average
        pooling = "flatten" if min(shape[1:]) >= 4 else "average"
        return {"kind": "image", "shape": shape, "pooling": pooling}
    if kind == "tokens":
        vocab = (info.get("vocab_sizes") or {}).get(key)
        if vocab is None:
            vocab = max(int(t.max()) for t in (train, *others) if t.numel()) + 1
        return {"kind": "tokens", "vocab_size": int(vocab)}
    raise ConfigError(f"input {key!r}: unknown input kind {kind!r}; choose 'features', 'image' or 'tokens'")


def model_for_inputs(dataset_or_inputs: Any, num_classes: Optional[int] = None,
                     input_kinds: Union[Mapping[str, str], str, None] = None) -> nn.Module:
    """Pick a small model for the inputs: MLP for features, SmallCNN for images, TextClassifier for
    tokens, FusionNet for dict (multimodal) inputs.

    Args:
        dataset_or_inputs: a `latentmix.data.Dataset` (its train inputs, ``num_classes`` and
            ``info["input_kinds"]`` / ``info["vocab_sizes"]`` are used) or the inputs themselves
            (a tensor or a dict of tensors).
        num_classes: number of classes (required for raw inputs).
        input_kinds: ``{key: "features"|"image"|"tokens"}`` (or one kind string for a tensor);
            inferred from dtype and shape when omitted.
    """
    info: Mapping[str, Any] = {}
    others: dict[str, list[torch.Tensor]] = {}
    if hasattr(dataset_or_inputs, "train_inputs"):
        dataset = dataset_or_inputs
        inputs = dataset.train_inputs
        info = dataset.info or {}
        if num_classes is None:
            num_classes = dataset.num_classes
        if input_kinds is None:
            input_kinds = info.get("input_kinds")
        val = dataset.val_inputs
        if isinstance(inputs, Mapping) and isinstance(val, Mapping):
            others = {k: [val[k]] for k in val if isinstance(val[k], torch.Tensor)}
        elif isinstance(inputs, torch.Tensor) and isinstance(val, torch.Tensor):
            others = {"__single__": [val]}
    else:
        inputs = dataset_or_inputs
    if num_classes is None:
        raise ConfigError("model_for_inputs needs num_classes when given raw inputs")
    num_classes = int(num_classes)

    if isinstance(inputs, torch.Tensor):
        if isinstance(input_kinds, str):
            kind = input_kinds
            key = "__single__"
        elif input_kinds:
            if len(input_kinds) != 1:
                raise ConfigError(f"tensor inputs need exactly one input kind, got {dict(input_kinds)}")
            key, kind = next(iter(input_kinds.items()))
        else:
            key, kind = "__single__", _infer_kind(inputs)
        vocab_info = {"vocab_sizes": {key: (info.get("vocab_sizes") or {}).get(key)}} if key != "__single__" else {}
        spec = _spec_for(key, kind, inputs, others.get("__single__", []), vocab_info)
        if kind == "features":
            return MLP(spec["dim"], num_classes)
        if kind == "image":
            c, h, w = spec["shape"]
            return SmallCNN(in_channels=c, num_classes=num_classes, image_size=(h, w))
        return TextClassifier(spec["vocab_size"], num_classes)

    if isinstance(inputs, Mapping):
        kinds = dict(input_kinds) if isinstance(input_kinds, Mapping) else {}
        specs = {}
        for key, tensor in inputs.items():
            kind = kinds.get(key) or _infer_kind(tensor)
            specs[key] = _spec_for(key, kind, tensor, others.get(key, []), info)
            # A data set may declare its encoders (e.g. the image width and pooling of a benchmark).
            specs[key].update((info.get("modalities") or {}).get(key, {}))
        return FusionNet(specs, num_classes)

    raise ConfigError(f"model_for_inputs supports a tensor or a dict of tensors, got {type(inputs).__name__}")
