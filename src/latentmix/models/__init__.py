"""Models with named mix points, built by name through one factory.

Every model here has a `mix_points` attribute: the submodule names whose outputs are mixing layers
1, 2, ... (layer 0 is the input). Any other `nn.Module` works too: pass its mix points by name.
"""

from __future__ import annotations

from typing import Optional

from torch import nn

from latentmix.errors import ConfigError

MODELS = ("spiral-mlp", "mlp", "small-cnn", "preact-resnet18", "text", "fusion")


def default_model_name(dataset) -> str:
    name = dataset.name
    if name == "spiral":
        return "spiral-mlp"
    if name == "cifar10":
        return "preact-resnet18"
    if name in ("fashion-mnist", "mnist", "kmnist"):
        return "small-cnn"
    return "auto"


def build_model(name: Optional[str], dataset, *, width: float = 1.0) -> nn.Module:
    """Build model `name` (or the data set's default) sized for `dataset`'s inputs and classes."""
    from latentmix.models import small

    key = (name or default_model_name(dataset)).strip().lower()
    num_classes = dataset.num_classes
    inputs = dataset.train_inputs
    if key == "spiral-mlp":
        return small.SpiralMLP(in_features=_feature_dim(inputs, key), num_classes=num_classes)
    if key == "mlp":
        # MLP flattens its input, so images (N, C, H, W) work too: in_features = C*H*W.
        return small.MLP(in_features=_flat_dim(inputs, key), num_classes=num_classes)
    if key == "small-cnn":
        channels, height = _image_shape(inputs, key)
        return small.SmallCNN(in_channels=channels, num_classes=num_classes, width=max(4, round(32 * width)),
                              image_size=height)
    if key == "preact-resnet18":
        from latentmix.models.preact_resnet import PreActResNet18

        channels, _ = _image_shape(inputs, key)
        return PreActResNet18(num_classes=num_classes, in_channels=channels, width=width)
    if key in ("auto", "text", "fusion"):
        return small.model_for_inputs(dataset, num_classes, dataset.info.get("input_kinds"))
    raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")


def _feature_dim(inputs, key: str) -> int:
    import torch

    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 2:
        raise ConfigError(f"model {key} needs (N, D) feature inputs; these inputs are not")
    return int(inputs.shape[1])


def _flat_dim(inputs, key: str) -> int:
    import math

    import torch

    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 2:
        raise ConfigError(f"model {key} needs one tensor input (N, D) or (N, C, H, W); these inputs are not")
    return int(math.prod(inputs.shape[1:]))


def _image_shape(inputs, key: str) -> tuple[int, int]:
    import torch

    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
        raise ConfigError(f"model {key} needs (N, C, H, W) image inputs; these inputs are not")
    return int(inputs.shape[1]), int(inputs.shape[2])
