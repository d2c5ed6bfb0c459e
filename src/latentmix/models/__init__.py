"""Models with named mix points, built by name through one factory.

Every model here has a `mix_points` attribute: the submodule names whose outputs are mixing layers
1, 2, ... (layer 0 is the input). Any other `nn.Module` works too: pass its mix points by name.
"""

from __future__ import annotations

from typing import Optional

from torch import nn

from latentmix.errors import ConfigError, out_of_memory_reason

MODELS = ("spiral-mlp", "mlp", "small-cnn", "preact-resnet18", "text", "fusion")


# The model of each built-in data set (others: "auto", chosen from the inputs).
DEFAULT_MODELS = {"spiral": "spiral-mlp", "cifar10": "preact-resnet18", "fashion-mnist": "small-cnn",
                  "mnist": "small-cnn", "kmnist": "small-cnn"}


def mix_layer_counts() -> dict[str, int]:
    """K, the number of mix points (layers 1..K; 0 is the input), of each model whose mix points
    its class fixes, as `build_model` builds it, so that a layer range can be checked before any
    data is read. Read off the classes themselves, so that it cannot drift from them; the fusion
    net's depend on the inputs' modalities."""
    from latentmix.models import small
    from latentmix.models.preact_resnet import PreActResNet18

    fixed = {"spiral-mlp": getattr(small.SpiralMLP, "mix_points", None),
             "mlp": getattr(small.MLP, "DEFAULT_HIDDEN", None), "small-cnn": getattr(small.SmallCNN, "mix_points", None),
             "preact-resnet18": getattr(PreActResNet18, "mix_points", None),
             "text": getattr(small.TextClassifier, "mix_points", None)}
    return {name: len(points) for name, points in fixed.items() if points}  # a stand-in class (a test's): no count


def model_kind(model: nn.Module) -> Optional[str]:
    """The factory name (`MODELS`) of a model `build_model` builds, None for any other module (a
    user's own model): a schedule may depend on the kind of model (`latentmix.protocols`)."""
    from latentmix.models import small
    from latentmix.models.paired import PairedNetworks
    from latentmix.models.preact_resnet import PreActResNet18

    if isinstance(model, PairedNetworks):  # two networks of one kind train on that kind's schedule
        return model_kind(model.first)
    kinds = {small.SpiralMLP: "spiral-mlp", small.MLP: "mlp", small.SmallCNN: "small-cnn",
             PreActResNet18: "preact-resnet18", small.TextClassifier: "text", small.FusionNet: "fusion"}
    return kinds.get(type(model))


def default_model_name(dataset) -> str:
    return DEFAULT_MODELS.get(dataset.name, "auto")


def mix_layer_count(model: Optional[str], dataset: str) -> Optional[int]:
    """K, the number of mix points of `model` (or of `dataset`'s default model); None where it
    depends on the inputs (the "auto" model of user data, fusion nets) or the name is unknown."""
    key = (model or DEFAULT_MODELS.get(str(dataset).strip().lower(), "auto")).strip().lower()
    return mix_layer_counts().get(key)


def build_model(name: Optional[str], dataset, *, width: float = 1.0) -> nn.Module:
    """Build model `name` (or the data set's default) sized for `dataset`'s inputs and classes.

    A model too large for memory (its size follows the inputs: millions of features, a huge token
    vocabulary) is a `ConfigError` that says so, not an allocator traceback."""
    key = (name or default_model_name(dataset)).strip().lower()
    dataset = _with_example_inputs(dataset)
    try:
        return _build(key, name, dataset, width)
    except (MemoryError, RuntimeError) as error:
        reason = out_of_memory_reason(error)
        if reason is None:
            raise
        sizes = _input_sizes(dataset.train_inputs)
        raise ConfigError(f"the {key} model for {dataset.name} (inputs {sizes}, {dataset.num_classes} classes) does not "
                          f"fit in memory ({reason}); its size follows the inputs: reduce the number of features "
                          "or the token vocabulary (or --width)") from None


def _with_example_inputs(dataset):
    """The model is sized by the shapes of the inputs: for inputs read from files batch by batch
    (`latentmix.data.streamed`), a copy of `dataset` holding two samples read now."""
    from dataclasses import replace

    import torch

    from latentmix.data import index_inputs, is_streamed

    if not (is_streamed(dataset.train_inputs) or is_streamed(dataset.val_inputs)):
        return dataset
    example = index_inputs(dataset.train_inputs, torch.arange(min(2, dataset.num_train)))
    return replace(dataset, train_inputs=example, val_inputs=example)


def _input_sizes(inputs) -> str:
    import torch

    if isinstance(inputs, torch.Tensor):
        return str(tuple(inputs.shape[1:]))
    if isinstance(inputs, dict):
        return ", ".join(f"{k}: {tuple(v.shape[1:])}" for k, v in inputs.items())
    return ", ".join(str(tuple(v.shape[1:])) for v in inputs)


def _build(key: str, name: Optional[str], dataset, width: float) -> nn.Module:
    from latentmix.models import small

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
        model = small.model_for_inputs(dataset, num_classes, dataset.info.get("input_kinds"))
        _check_named_model(key, model, dataset)
        return model
    raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")


# The inputs each input-picked model needs (`small.model_for_inputs` picks by the inputs' kinds).
_NAMED_INPUT_MODELS = {"text": ("TextClassifier", "integer token ids (N, T)"),
                       "fusion": ("FusionNet", "several inputs (a dict: one array per modality)")}


def _check_named_model(key: str, model: nn.Module, dataset) -> None:
    """`--model text` / `--model fusion` name a model that only fits some inputs: the model the
    inputs pick must be that one, else the run would record "text" and train an MLP (issue 25.5)."""
    if key not in _NAMED_INPUT_MODELS:
        return
    class_name, needs = _NAMED_INPUT_MODELS[key]
    if type(model).__name__ != class_name:
        kinds = dataset.info.get("input_kinds") or _input_sizes(dataset.train_inputs)
        raise ConfigError(f"--model {key} needs {needs}; the inputs of {dataset.name} are {kinds} (they take "
                          f"{type(model).__name__}): omit --model to use that one")


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
