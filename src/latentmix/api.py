"""Python API: train any `nn.Module` with latent mixup and loss correction on tensors you hold.

Example (a text model whose token ids cannot be mixed, so mixing starts at the embeddings)::

    from latentmix import fit

    result = fit(model, train_tokens, train_labels, val_inputs=val_tokens, val_labels=val_labels,
                 method="lr-m-dyr-h", mix_points=["embed", "encoder"], layers="1-2", epochs=20)
    result.best_val_acc, result.p_noisy  # accuracy and each training sample's P(label is wrong)

Or with your data set as you hold it, a map-style `torch.utils.data.Dataset` of ``(inputs, label)``
items, read through a DataLoader with workers (the labels come with it)::

    result = fit(model, train_set, val_inputs=val_set, method="lr-m-dyr-h", mix_points=["embed", "encoder"],
                 layers="1-2", epochs=20, num_workers=2)

`fit` builds a `latentmix.data.Dataset` from the tensors (or around the data sets,
`latentmix.data.streamed.StreamedInputs`) and calls `latentmix.training.train`, the same loop as
the command line; the optimisation schedule is the ``"arrays"`` protocol of
`latentmix.protocols.PROTOCOLS` (SGD, momentum 0.9) unless overridden here.
"""

from __future__ import annotations

from dataclasses import replace

import os
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from latentmix.config_checks import check_output_folder
from latentmix.data.checks import check_class_count, check_dataset, check_model_outputs
from latentmix.data import Dataset, map_inputs
from latentmix.data.streamed import StreamedInputs, dataset_labels, is_map_dataset
from latentmix.errors import ConfigError
from latentmix.config import RunConfig
from latentmix.result import RunResult
from latentmix.training import train

__all__ = ["fit", "dataset_from_tensors"]

ArrayLike = Union[torch.Tensor, np.ndarray, Sequence]
InputsLike = Union[torch.Tensor, np.ndarray, Mapping[str, Any], tuple]


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        array = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - anything numpy cannot read
        raise ConfigError(f"{what} must be a tensor or an array, got {type(value).__name__}") from exc
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise ConfigError(f"{what} must be numeric, got dtype {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(array))


def _as_inputs(value: Any, what: str) -> Any:
    if isinstance(value, Mapping):
        if not value:
            raise ConfigError(f"{what} is an empty dict; give one tensor per modality")
        return {str(key): _as_tensor(item, f"{what}[{key!r}]") for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(_as_tensor(item, f"{what}[{i}]") for i, item in enumerate(value))
    return _as_tensor(value, what)


def _layer_list(layers: Any) -> str:
    """fit(layers=[1, 2]) -> "1,2"; anything but whole numbers is refused."""
    try:
        items = list(layers)
    except TypeError:
        items = None
    if not items or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
        raise ConfigError(f"fit argument layers must be a range like '1-2' or a list of layer indices like [1, 2], "
                          f"got {layers!r}")
    return ",".join(str(int(layer)) for layer in items)


def _check_finite(inputs: Any, what: str) -> None:
    """NaN/inf inputs make every loss NaN: name the input and the first bad sample instead."""
    def check(key: str, t: torch.Tensor) -> None:
        if torch.is_floating_point(t):
            bad = ~torch.isfinite(t)
            if bool(bad.any()):
                rows = bad.reshape(bad.shape[0], -1).any(dim=1).nonzero()
                raise ConfigError(f"{key} holds {int(bad.sum())} NaN/inf value(s) (first in sample {int(rows[0])}); "
                                  "clean or impute them first")

    if isinstance(inputs, dict):
        for key, value in inputs.items():
            check(f"{what}[{key!r}]", value)
    elif isinstance(inputs, tuple):
        for index, value in enumerate(inputs):
            check(f"{what}[{index}]", value)
    else:
        check(what, inputs)


def _lengths(inputs: Any) -> list[int]:
    lengths: list[int] = []

    def note(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 0:
            raise ConfigError("inputs need a sample axis: got a scalar tensor")
        lengths.append(int(t.shape[0]))
        return t

    map_inputs(inputs, note)
    return lengths


def _labels(value: Any, what: str, n: int) -> torch.Tensor:
    labels = _as_tensor(value, what)
    if labels.dim() == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.dim() != 1:
        raise ConfigError(f"{what} must be 1-D class ids, got shape {tuple(labels.shape)}")
    if torch.is_floating_point(labels):
        if not bool(torch.isfinite(labels).all()) or not bool((labels == labels.round()).all()):
            raise ConfigError(f"{what} must be integer class ids, got non-integral values")
    elif labels.dtype == torch.bool:
        labels = labels.long()
    labels = labels.long()
    if labels.shape[0] != n:
        raise ConfigError(f"length mismatch: {what} has {labels.shape[0]} entries but the inputs have {n} samples")
    if labels.numel() and int(labels.min()) < 0:
        raise ConfigError(f"{what} must be class ids >= 0, found {int(labels.min())}")
    return labels


def _split(inputs: Any, labels: Any, what: str, labels_what: str, workers: Optional[int]) -> tuple[Any, Any, int]:
    """One split as the trainer holds it: (inputs, labels, number of samples). A map-style data set
    stays where it is (`StreamedInputs`) and gives its labels (`dataset_labels`); tensors and arrays
    are converted and their labels checked by the caller."""
    if is_map_dataset(inputs):
        if labels is not None:
            raise ConfigError(f"{what} is a data set whose items carry their labels; omit {labels_what} (or pass "
                              f"tensors with {labels_what})")
        given = dataset_labels(inputs, name=what, workers=workers)
        return StreamedInputs(inputs, workers=workers, name=what), given, len(given)
    if labels is None:
        raise ConfigError(f"{labels_what} is missing: tensors or arrays as {what} need their labels (a Dataset of "
                          "(inputs, label) items carries them)")
    inputs = _as_inputs(inputs, what)
    lengths = _lengths(inputs)
    if len(set(lengths)) != 1:
        raise ConfigError(f"{what} disagree on the number of samples: {lengths}")
    return inputs, labels, lengths[0]


def _structure(inputs: Any) -> Any:
    """What must agree between the training and validation inputs: the kind and the dict keys."""
    if isinstance(inputs, StreamedInputs):
        return "dataset"
    return (type(inputs), tuple(sorted(inputs)) if isinstance(inputs, dict) else
            len(inputs) if isinstance(inputs, tuple) else None)


def dataset_from_tensors(
    train_inputs: InputsLike, train_labels: Optional[ArrayLike], val_inputs: InputsLike,
    val_labels: Optional[ArrayLike], *, num_classes: Optional[int] = None, clean_labels: Optional[ArrayLike] = None,
    noise: float = 0.0, name: str = "custom", num_workers: Optional[int] = None,
) -> Dataset:
    """A `Dataset` over tensors/arrays (a tensor, a tuple or a dict of them per split), or over
    map-style data sets of ``(inputs, label)`` items (their labels omitted here; read batch by batch
    through a DataLoader with `num_workers` workers); no transforms.

    Label semantics: with `clean_labels`, `train_labels` are your noisy labels and `clean_labels`
    the truth (noise detection is scored against them); with ``noise > 0``, `train_labels` are
    taken as clean and synthetic noise is added by the trainer; otherwise `train_labels` are your
    labels as they are (possibly noisy, no reference)."""
    train_inputs, train_labels, n = _split(train_inputs, train_labels, "train_inputs", "train_labels", num_workers)
    val_inputs, val_labels, m = _split(val_inputs, val_labels, "val_inputs", "val_labels", num_workers)
    streamed = isinstance(train_inputs, StreamedInputs) or isinstance(val_inputs, StreamedInputs)
    if not streamed and _structure(train_inputs) != _structure(val_inputs):
        raise ConfigError("val_inputs must have the same structure as train_inputs (the same dict keys / tuple length)")
    if n < 2:
        raise ConfigError(f"need at least 2 training samples (mixup pairs samples), got {n}")
    given = _labels(train_labels, "train_labels", n)
    val = _labels(val_labels, "val_labels", m)
    clean = _labels(clean_labels, "clean_labels", n) if clean_labels is not None else None
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.number)) or not 0.0 <= float(noise) <= 1.0:
        raise ConfigError(f"noise must be a number in [0, 1], got {noise!r}")
    if clean is not None and noise > 0:
        raise ConfigError("give either clean_labels (your labels are already noisy) or noise > 0 (add synthetic "
                          "noise to clean labels), not both")
    for inputs, what in ((train_inputs, "train_inputs"), (val_inputs, "val_inputs")):
        if not isinstance(inputs, StreamedInputs):  # a data set is not read whole to check it
            _check_finite(inputs, what)
    max_label = max(int(t.max()) for t in (given, val, clean) if t is not None and t.numel())
    check_class_count(max_label, "train_labels / val_labels")
    if num_classes is None:
        num_classes = max(max_label + 1, 2)
    elif int(num_classes) < 2 or max_label >= int(num_classes):
        raise ConfigError(f"num_classes={num_classes} does not fit the labels (largest class id {max_label}; "
                          "need num_classes >= 2 and > every id)")
    dataset = Dataset(
        name=name,
        train_inputs=train_inputs,
        train_labels=clean if clean is not None else given,
        val_inputs=val_inputs,
        val_labels=val,
        num_classes=int(num_classes),
        train_labels_clean=clean is not None or noise > 0,
        given_noisy_labels=given if clean is not None else None,
        info={"source": "dataset" if streamed else "tensors",
              **({"dataset_types": [type(getattr(x, "dataset", x)).__name__ for x in (train_inputs, val_inputs)]}
                 if streamed else {})},
        val_selects=True,
    )
    check_dataset(dataset)
    return dataset


def _check_settings(settings: Mapping[str, Any]) -> None:
    """`fit`'s ``**settings`` hold the `RunConfig` fields that it has no argument of its own for;
    each field's declaration says which (`latentmix.config.Option.fit`)."""
    from latentmix.config import OPTIONS, SETTINGS

    declared = {key: OPTIONS[key].fit for key in settings if key in OPTIONS}
    own = sorted(key for key, argument in declared.items() if argument not in (SETTINGS, None))
    if own:
        raise ConfigError(f"fit() sets {', '.join(own)} itself; pass "
                          + ", ".join(f"{OPTIONS[key].fit}=" for key in own) + " instead")
    foreign = sorted(key for key, argument in declared.items() if argument is None)
    if foreign:
        raise ConfigError(f"fit() takes no {', '.join(foreign)}: it trains the model you pass on the inputs you pass")


def _check_trainable(model: nn.Module) -> None:
    """The model has parameters that a gradient step changes: a model without parameters, or with
    every one frozen (``requires_grad=False``), failed inside the optimizer or backward pass."""
    parameters = list(model.parameters())
    if not parameters:
        raise ConfigError(f"model {type(model).__name__} has no parameters to train; give a model with trainable "
                          "layers (nn.Linear, nn.Conv2d, ...)")
    if not any(p.requires_grad for p in parameters):
        raise ConfigError(f"every parameter of model {type(model).__name__} is frozen (requires_grad=False), so "
                          "training cannot change it; unfreeze at least the output layer")


def _fit_config(name: str, *, method: str, layers: Any, noise: float, seed: int, epochs: Optional[int],
                batch_size: Optional[int], lr: Optional[float], device: str, run_dir: Any, optimizer: Any,
                num_classes: Any, settings: Mapping[str, Any]) -> RunConfig:
    """`fit`'s arguments as the `RunConfig` of its run, every one checked before any work (a bad
    argument is one clear error naming it, not a failure after the data is built)."""
    if layers is not None and not isinstance(layers, str):
        layers = _layer_list(layers)
    _check_settings(settings)
    values = dict(dataset=name, method=method, layers=layers, noise=noise, seed=seed,
                  epochs=epochs, batch_size=batch_size, lr=lr, device=device,
                  checkpoint=run_dir is not None, **settings)
    config = RunConfig.from_dict(values, style="fit")
    if (optimizer is not None) and (lr is not None or "weight_decay" in settings):
        raise ConfigError("fit arguments lr / weight_decay set the default SGD; with your own optimizer, set them "
                          "on it (e.g. optimizer=lambda params: torch.optim.SGD(params, lr=0.05, weight_decay=1e-4))")
    if num_classes is not None and not (isinstance(num_classes, int) and not isinstance(num_classes, bool)):
        raise ConfigError(f"fit argument num_classes must be a whole number >= 2, got {num_classes!r}")
    if run_dir is not None:
        check_output_folder(run_dir, "fit argument run_dir")
    return config


def _fit_dataset(model: nn.Module, train_inputs: InputsLike, train_labels: Optional[ArrayLike], val_inputs: InputsLike,
                 val_labels: Optional[ArrayLike], *, num_classes: Optional[int], clean_labels: Optional[ArrayLike],
                 noise: float, name: str, num_workers: Optional[int]) -> Dataset:
    """`fit`'s data as a `Dataset` whose class count the model's output can hold.

    The model's output width must hold every class: one forward on 2 samples says so (and that the
    inputs fit the model) before training; without num_classes the model's width is C.
    """
    dataset = dataset_from_tensors(train_inputs, train_labels, val_inputs, val_labels, num_classes=num_classes,
                                   clean_labels=clean_labels, noise=noise, name=name, num_workers=num_workers)
    dataset.num_classes = check_model_outputs(model, dataset, num_classes)
    # the validation inputs too: another width would fail only at the end of epoch 1
    check_model_outputs(model, replace(dataset, train_inputs=dataset.val_inputs, train_labels=dataset.val_labels),
                        dataset.num_classes, inputs_name="val_inputs")
    return dataset


def _mix_points_for(model: nn.Module, mix_points: Optional[Sequence], method: Any) -> Optional[Sequence]:
    """The mix points `train` gets: the given ones, else None (read the model's ``mix_points``
    attribute), else () when the method mixes no hidden layer; a method that mixes hidden layers
    on a model that names none is refused here, with the fix."""
    if mix_points is None and getattr(model, "mix_points", None) is None:
        if method.mixes and any(layer > 0 for layer in method.mix_layers):
            raise ConfigError(
                f"method {method.name} mixes hidden layers {list(method.mix_layers)}, but {type(model).__name__} "
                "has no `mix_points` attribute: pass mix_points=[...] naming the submodules whose outputs are layers 1, 2, ..."
            )
        mix_points = ()
    return mix_points


def fit(
    model: nn.Module,
    train_inputs: InputsLike,
    train_labels: Optional[ArrayLike] = None,
    *,
    val_inputs: InputsLike,
    val_labels: Optional[ArrayLike] = None,
    method: str = "lr-m-dyr-h",
    mix_points: Optional[Sequence] = None,
    layers: Union[str, Sequence[int], None] = None,
    num_classes: Optional[int] = None,
    epochs: Optional[int] = None,
    batch_size: Optional[int] = None,
    lr: Optional[float] = None,
    noise: float = 0.0,
    clean_labels: Optional[ArrayLike] = None,
    seed: int = 0,
    device: str = "auto",
    run_dir: Optional[Union[str, os.PathLike]] = None,
    overwrite: bool = False,
    progress: bool = True,
    optimizer: Any = None,
    scheduler: Any = None,
    num_workers: Optional[int] = None,
    **settings: Any,
) -> RunResult:
    """Train `model` on the given tensors with a method of `latentmix.methods` and return the result.

    Args:
        model: any `nn.Module` whose forward takes the inputs as one argument (a tensor, a tuple or a
            dict of tensors) and returns logits (N, C). It is trained in place (and moved to `device`).
        train_inputs / val_inputs: tensors or numpy arrays (or a tuple / dict of them), N and M samples;
            or map-style `torch.utils.data.Dataset` s whose items are ``(inputs, label)``, read batch
            by batch through a DataLoader (never loaded whole), with the same results as tensors.
            They reach the model as given: normalise them yourself.
        train_labels / val_labels: class ids 0..C-1, shapes (N,) and (M,); omitted for a data set
            (its items carry them).
        method: a preset (``ce``, ``m``, ``lr-m``, ``m-dyr-s``, ``m-dyr-h``, ``lr-m-dyr-s``,
            ``lr-m-dyr-h``, ...). Its eligible layers are overridden by `layers`.
        mix_points: submodule names (or tuples of names) whose outputs are mix layers 1, 2, ...;
            default: the model's ``mix_points`` attribute. Not needed for ``ce``.
        layers: eligible mix layers, e.g. ``"1-2"`` or ``[1, 2]`` (0 = the input; refused when the
            inputs hold integer token ids).
        num_classes: C (default: largest label + 1).
        epochs / batch_size / lr: override the ``"arrays"`` protocol (50 epochs, batch 64, lr 0.05;
            the lr milestones and the bootstrapping warm-up scale with `epochs`).
        noise: add this rate of synthetic symmetric noise to `train_labels` (taken as clean).
        clean_labels: the true labels when `train_labels` are already noisy (scores noise detection).
        seed: seeds data order, mixing and synthetic noise (the model's initialisation is yours).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        run_dir: when given, config.json, metrics.csv, result.json, label_issues.csv, timing.json and
            checkpoints are written there. A folder that already holds a run is refused unless
            `overwrite` is True (latentmix.run_folder).
        overwrite: replace the run that `run_dir` holds.
        progress: show a progress bar.
        optimizer: your optimizer instead of the protocol's SGD: an instance built on
            ``model.parameters()``, or a factory, e.g. ``lambda params: torch.optim.AdamW(params, lr=1e-3)``.
        scheduler: your lr scheduler, stepped once after each epoch: an instance on that optimizer,
            or a factory, e.g. ``lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, 20)``.
            Either one replaces the protocol's step schedule (the lr is then the optimizer's).
        num_workers: DataLoader worker processes reading a data set (default: one per spare CPU
            core, at most 4; 0 reads in this process). Tensors need none.
        **settings: any other `RunConfig` field (``alpha``, ``warmup_epochs``, ``weight_decay``,
            ``correction``, ``reg_weight``, ``bootstrap_forward``, ``noise_kind``, ...).

    Returns a `RunResult`: ``best_val_acc``, ``last_val_acc``, per-epoch ``metrics``, per-sample
    ``p_noisy`` (probability that each training label is wrong, from the final noise model),
    ``predictions``, the ``noisy_labels`` trained on, ``is_noisy`` (when known) and the ``model``.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    name = str(settings.pop("name", "custom"))
    config = _fit_config(name, method=method, layers=layers, noise=noise, seed=seed, epochs=epochs, batch_size=batch_size,
                         lr=lr, device=device, run_dir=run_dir, optimizer=optimizer, num_classes=num_classes, settings=settings)
    dataset = _fit_dataset(model, train_inputs, train_labels, val_inputs, val_labels, num_classes=num_classes,
                           clean_labels=clean_labels, noise=noise, name=name, num_workers=num_workers)
    mix_points = _mix_points_for(model, mix_points, config.resolved_method())
    _check_trainable(model)
    return train(config, dataset=dataset, model=model, mix_points=mix_points, run_dir=run_dir, overwrite=overwrite,
                 progress=progress, optimizer=optimizer, scheduler=scheduler)
