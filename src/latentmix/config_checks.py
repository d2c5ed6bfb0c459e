"""Checks of what a user hands us, at the boundary, each declared once.

* `validate_run_config(config)`: every `RunConfig` field by the rule its declaration names
  (`latentmix.config`; the rules are here: `whole_number`, `number`, `one_of`, ...) and the
  combinations that cannot mean anything (synthetic ``noise`` beside a real noisy-labels file). The
  error names the field the way the caller wrote it: the CLI flag (``--alpha``), the argument of
  `latentmix.fit` (``alpha=``), or the key of a TOML sweep spec (``alphas``, ``[settings] lr``).
* `check_dataset(dataset)`: the labels of a loaded data set, whatever loaded it: at least two
  training classes, a sane class count, validation classes that training has, label ids inside
  the head.
* `check_model_outputs(model, dataset)`: one forward of a user's model on two training samples
  (`latentmix.fit`): the inputs fit the model and its output width fits the classes.
* `check_output_folder(path, name)`: a run/output folder that is a folder and writable.

Every failure is one `ConfigError` line: the field, the value, and the fix.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

from latentmix.errors import ConfigError

# A class id this large is a data error (ids must be 0..C-1), not a 100k-way classifier: its output
# layer alone would hold MAX_CLASSES x hidden weights, and a stray 1e9 would ask for a terabyte.
MAX_CLASSES = 100_000
# Width multipliers of the CNNs beyond this give billions of weights (PreAct ResNet-18 x16: ~2.8e9).
MAX_WIDTH = 16.0
# The largest seed: torch's and NumPy's generators take 64-bit seeds, and a larger one was an
# "Overflow when unpacking long long" traceback.
MAX_SEED = 2**63 - 1
# Largest learning rate / weight decay taken (SGD steps of lr x gradient; the protocols use <= 0.1).
MAX_STEP = 1000.0

Naming = Union[str, Callable[[str], str]]


def field_name(field: str, style: Naming = "cli") -> str:
    """How `field` is written where the user wrote it: ``"cli"`` (``--reg-weight``), ``"fit"``
    (``fit argument reg_weight``), ``"spec"`` (``spec key 'alphas'``, ``[settings] lr``) or ``"key"``
    (``setting 'reg_weight'``, a key of config.json / `RunConfig.from_dict`); or a callable. The
    flags, arguments and keys are the fields' declarations (`latentmix.config.Option`)."""
    from latentmix.config import OPTIONS, SETTINGS, cli_flag

    if callable(style):
        return style(field)
    option = OPTIONS[field]
    if style == "cli":
        # a flag named for the opposite (--noise-exclude-true-label) cannot carry a wrong value
        flag = cli_flag(field) if option.switch != "off" else None
        return flag if flag is not None else f"setting {field!r}"
    if style == "fit":
        return f"fit argument {field if option.fit in (SETTINGS, None) else option.fit}"
    if style == "spec":
        return f"spec key {option.spec_key!r}" if option.spec_key is not None else f"[settings] {field}"
    return f"setting {field!r}"


# ---- the rules a field's value must meet (each field names its own: latentmix.config) ----------
# Each returns None when the value is fine, else what the value must be.


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def whole_number(low: int, high: Optional[int] = None) -> Callable[[Any], Optional[str]]:
    """A whole number from `low` on, at most `high`."""
    if high is None:
        return lambda v: None if _is_int(v) and v >= low else f"a whole number >= {low}"
    return lambda v: None if _is_int(v) and low <= v <= high else f"a whole number in [{low}, {high}]"


def number(low: float, *, strict: bool, high: Optional[float] = None) -> Callable[[Any], Optional[str]]:
    """A finite number above `low` (or from `low` on, unless `strict`), at most `high`."""
    def check(value: Any) -> Optional[str]:
        ok = _is_number(value) and math.isfinite(value) and (value > low if strict else value >= low)
        ok = ok and (high is None or value <= high)
        if ok:
            return None
        if high is not None:
            return f"a finite number in {'(' if strict else '['}{low:g}, {high:g}]"
        return f"a finite number {'>' if strict else '>='} {low:g}"
    return check


def one_of(*choices: str) -> Callable[[Any], Optional[str]]:
    return lambda v: None if isinstance(v, str) and v in choices else f"one of {', '.join(choices)}"


def text(value: Any) -> Optional[str]:
    return None if isinstance(value, str) and value.strip() else "a non-empty text"


def boolean(value: Any) -> Optional[str]:
    return None if isinstance(value, bool) else "true or false"


def method_name(value: Any) -> Optional[str]:
    from latentmix.methods import PRESETS

    if isinstance(value, str) and value.strip().lower() in PRESETS:
        return None
    return f"one of {', '.join(PRESETS)}"


def layer_text(value: Any) -> Optional[str]:
    from latentmix.mixing import parse_layers

    if not isinstance(value, str) or not value.strip():
        return "a layer range like 0-2, a list like 0,2 or one index (0 = the input)"
    try:
        parse_layers(value)
    except ConfigError:
        return "a layer range like 0-2 (lower bound first), a list like 0,2 or one index (0 = the input)"
    return None


def warmup(value: Any) -> Optional[str]:
    if value == "auto" or (_is_int(value) and value >= 0):
        return None
    return "a whole number >= 0 (or 'auto': when early learning ends)"


def fraction(value: Any) -> Optional[str]:
    return None if _is_number(value) and 0.0 <= value < 1.0 else "a fraction in [0, 1)"


def device_name(value: Any) -> Optional[str]:
    if not isinstance(value, str) or not value.strip():
        return "auto, cpu, cuda or cuda:N"
    if value == "auto":
        return None
    import torch

    try:
        torch.device(value)
    except (RuntimeError, ValueError):
        return "auto, cpu, cuda or cuda:N"
    return None


def model_name(value: Any) -> Optional[str]:
    from latentmix.models import MODELS

    return None if isinstance(value, str) and value.strip().lower() in MODELS else f"one of {', '.join(MODELS)}"


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def validate_run_config(config: Any, style: Naming = "cli") -> None:
    """Raise `ConfigError` for the first `RunConfig` field that cannot be run, by the rule its
    declaration names (`latentmix.config.Option.check`; None is fine where the field's default is
    None), naming it in `style` (see `field_name`). Checks that need the data (classes, input
    shapes) are `check_dataset`'s."""
    from dataclasses import fields

    for spec in fields(config):
        option = spec.metadata["option"]
        value = getattr(config, spec.name)
        if value is None and spec.default is None:
            continue
        must = option.check(value)
        if must is not None:
            name = field_name(spec.name, style)
            fix = f" ({option.fix})" if option.fix else ""
            raise ConfigError(f"{name} must be {must}{fix}, got {_shown(value)}")
    if config.noise > 0 and config.noisy_labels_file:
        raise ConfigError(
            f"{field_name('noise', style)} {config.noise:g} adds synthetic noise, but "
            f"{field_name('noisy_labels_file', style)} {config.noisy_labels_file} already gives the noisy labels "
            f"(its own noise is what is trained on and measured): drop {field_name('noise', style)}")
    if config.data_dir and (config.data or config.dataset == "spiral"):
        reads = f"{field_name('data', style)} {config.data}" if config.data else "spiral, which is generated,"
        raise ConfigError(f"{field_name('data_dir', style)} {config.data_dir} is not read: the run trains on {reads} "
                          f"(it is the folder of cifar10, fashion-mnist, mnist or kmnist files): drop "
                          f"{field_name('data_dir', style)}")
    if config.noise_kind == "asymmetric" and config.noise > 0:
        from latentmix.noise import ASYMMETRIC_MAPS

        if config.data or config.dataset not in ASYMMETRIC_MAPS:
            raise ConfigError(
                f"{field_name('noise_kind', style)} 'asymmetric' flips classes by a class map defined for "
                f"{', '.join(ASYMMETRIC_MAPS)}, not for {config.data or config.dataset!r}: use symmetric noise, or "
                f"give your own noisy labels with {field_name('noisy_labels_file', style)}")
    _check_layer_range(config, style)


def _check_layer_range(config: Any, style: Naming) -> None:
    """Mix layers beyond the model's, found before any data is read where the model is known from
    the settings alone (the built-in data sets' models); other models are checked when built."""
    from latentmix.methods import get_method
    from latentmix.models import mix_layer_count

    if config.data:
        return
    count = mix_layer_count(config.model, config.dataset)
    if count is None:
        return
    layers = get_method(config.method, layers=config.layers).mix_layers
    bad = [layer for layer in layers if layer > count]
    if bad:
        model = config.model or f"the {config.dataset} model"
        raise ConfigError(f"{field_name('layers', style)} {config.layers or config.method}: mix layer {bad[0]} is out of "
                          f"range for {model}: valid layers are 0..{count} (0 = the input)")


# ---- data -------------------------------------------------------------------------------------


def check_class_count(max_label: int, where: str) -> None:
    """A class id of `max_label` means `max_label` + 1 outputs: refuse absurd ones (a stray 1e9)."""
    if max_label + 1 > MAX_CLASSES:
        raise ConfigError(f"{where}: class id {max_label} would need a {max_label + 1}-way output layer; latentmix "
                          f"takes at most {MAX_CLASSES} classes: number the classes 0..C-1")


def check_dataset(dataset: Any) -> None:
    """The labels of a loaded `Dataset` can be trained on and scored: ids inside the head, at least
    two classes to train on, and no validation class that no training label has (its accuracy
    could only be 0)."""
    import torch

    def ids(labels: torch.Tensor) -> list[int]:
        return [int(v) for v in torch.unique(labels.detach().cpu())]

    num_classes = int(dataset.num_classes)
    check_class_count(num_classes - 1, f"data set {dataset.name}")
    trained_on = dataset.given_noisy_labels if dataset.given_noisy_labels is not None else dataset.train_labels
    named = {"training labels": dataset.train_labels, "validation labels": dataset.val_labels}
    if dataset.given_noisy_labels is not None:
        named["given noisy labels"] = dataset.given_noisy_labels
    for what, labels in named.items():
        present = ids(labels)
        if present and (present[0] < 0 or present[-1] >= num_classes):
            bad = present[0] if present[0] < 0 else present[-1]
            raise ConfigError(f"{dataset.name}: {what} hold class id {bad}, outside 0..{num_classes - 1} "
                              f"({num_classes} classes); fix the labels")
    classes = ids(trained_on)
    if len(classes) < 2:
        raise ConfigError(f"{dataset.name}: every training label is class {classes[0] if classes else '?'}; a "
                          "classifier needs at least two classes: check the label column/array")
    seen = set(classes) | set(ids(dataset.train_labels))
    unseen = [c for c in ids(dataset.val_labels) if c not in seen]
    if unseen:
        count = int(sum(int((dataset.val_labels == c).sum()) for c in unseen))
        raise ConfigError(f"{dataset.name}: validation labels hold class(es) {unseen[:5]} ({count} sample(s)) that no "
                          "training label has, so the model can never predict them: drop those samples or fix the "
                          "labels")


def check_model_outputs(model: Any, dataset: Any, num_classes_given: Optional[int] = None,
                        what: str = "model", inputs_name: str = "train_inputs") -> int:
    """One forward of `model` on two training samples (eval mode, no gradients, the RNG untouched):
    the inputs must fit it and it must return (2, C) logits with C >= the number of classes.
    Returns C, the number of classes to train with."""
    import torch

    from latentmix.data import index_inputs, map_inputs

    params = list(model.parameters()) + list(model.buffers())
    device = params[0].device if params else torch.device("cpu")
    sample = index_inputs(dataset.train_inputs, torch.arange(min(2, dataset.num_train)))
    if dataset.eval_transform is not None:
        sample = dataset.eval_transform(sample)
    sample = map_inputs(sample, lambda t: t.to(device))
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            model.eval()
            logits = model(sample)
    except Exception as error:  # noqa: BLE001 - any failure here means the inputs do not fit the model
        detail = " ".join(str(error).split())[:300]
        raise ConfigError(f"{what} cannot take {inputs_name} (a forward on 2 samples of shape "
                          f"{_shapes(sample)} failed: {type(error).__name__}: {detail}); give inputs of the shape "
                          "the model expects") from None
    finally:
        model.train(was_training)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != _first_len(sample):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ConfigError(f"{what} must return logits of shape (N, C); on 2 samples it returned {shape}")
    outputs = int(logits.shape[1])
    max_label = int(dataset.num_classes) - 1
    if num_classes_given is not None and int(num_classes_given) != outputs:
        raise ConfigError(f"num_classes={num_classes_given} but {what} returns {outputs} logits per sample; make them "
                          "agree (or leave num_classes out)")
    if outputs <= max_label:
        raise ConfigError(f"{what} returns {outputs} logits per sample, but the labels go up to class {max_label} "
                          f"(train_labels / val_labels / clean_labels need ids 0..{outputs - 1}); widen the model's "
                          "output layer or fix the labels")
    return outputs


def _first_len(inputs: Any) -> int:
    from latentmix.data import map_inputs

    lengths: list[int] = []
    map_inputs(inputs, lambda t: lengths.append(int(t.shape[0])) or t)
    return lengths[0]


def _shapes(inputs: Any) -> str:
    import torch

    if isinstance(inputs, torch.Tensor):
        return str(tuple(inputs.shape))
    if isinstance(inputs, dict):
        return "{" + ", ".join(f"{k!r}: {tuple(v.shape)}" for k, v in inputs.items()) + "}"
    return "(" + ", ".join(str(tuple(v.shape)) for v in inputs) + ")"


# ---- files -------------------------------------------------------------------------------------


def check_output_folder(path: Union[str, os.PathLike], name: str) -> Path:
    """`path` is (or can become) a folder this process can write in; `name` is the flag/argument
    that gave it. Creates it. Returns it as a `Path`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{name} {path} is a file, not a folder; give a folder for the results")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".latentmix-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"{name} {path}: cannot write there ({reason}); choose a folder you can write to") from None
    return path


def check_out_outside_data(out: Union[str, os.PathLike], data: Optional[str], name: str = "--out") -> None:
    """A run folder is not inside a data folder (``--data photos --out photos/run``): the run's own
    files would be read as data by the next run (an image folder's sub-folders are its classes)."""
    if not data or not Path(data).is_dir():
        return
    out_path, data_path = Path(out).resolve(), Path(data).resolve()
    if out_path == data_path or out_path.is_relative_to(data_path):
        raise ConfigError(f"{name} {out} is inside --data {data}: the run's files would be read as data; give "
                          f"{name} a folder outside the data folder")


def out_of_memory_reason(error: BaseException) -> Optional[str]:
    """The first line of an allocation failure (CPU allocator, CUDA OOM, MemoryError) without
    torch's ``[enforce fail at ...]`` prefix; None for any other error."""
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if "can't allocate memory" in reason:
        return reason[reason.index("can't allocate memory"):][:200]
    if isinstance(error, MemoryError) or "out of memory" in reason.lower():
        return reason[:200]
    return None
