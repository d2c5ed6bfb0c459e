"""The settings of one run, each declared once: `RunConfig`.

Every field of `RunConfig` carries, in its ``field(metadata=...)``, how a user gives it (the idiom
of HuggingFace's ``HfArgumentParser``): the help text, the group and flag of ``latentmix train``,
how the flag's text becomes a value, the rule a value must meet (`latentmix.config_checks`), the
key of a TOML sweep spec, the argument of `latentmix.fit`, and whether the field only says where
or how fast a run executes. Everything that names or checks a setting reads that one declaration:

* the command line: `add_run_arguments` (argparse options of ``train`` and ``tune``), `cli_values`
  (options -> `RunConfig` fields) and `command_line` (a config -> the flags that give it back);
* validation: `RunConfig.validate` checks each field by its declared rule and names it the way the
  caller wrote it (``--flag``, ``fit argument``, ``spec key``, `latentmix.config_checks.field_name`);
* the sweep spec: `TOP_LEVEL_KEYS` (its keys for fields; every other field goes under ``[settings]``) and
  `EXECUTION_FIELDS` (settings each machine of a sweep gives itself, not compared between runs);
* `latentmix.fit`: `Option.fit` says which of its arguments sets a field, or that it takes none.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Optional, Union

from latentmix.config_checks import (
    MAX_SEED, MAX_STEP, MAX_WIDTH, boolean, device_name, fraction, layer_text, method_name, model_name, number, one_of,
    text, warmup, whole_number,
)
from latentmix.errors import ConfigError
from latentmix.correction import BOOTSTRAP_FORWARDS, TRACK_TRANSFORMS
from latentmix.methods import CLASS_PRIORS, CORRECTIONS, PRESETS, SIDE_WEIGHTINGS, Method, get_method
from latentmix.models import mix_layer_count
from latentmix.noise import ASYMMETRIC_MAPS, NOISE_KINDS, SELECTION_MODES
from latentmix.beta_mixture import LOOKUP_MODES
from latentmix.noise_model import NOISE_MODEL_KINDS

# The groups of the run options in `latentmix train --help`, in this order.
DATA, METHOD, OPTIMISATION = "data and noise", "method", "optimisation"
GROUPS = (DATA, METHOD, OPTIMISATION)
# `Option.fit` of a field that `fit` takes in its ``**settings`` under the field's own name.
SETTINGS = "**settings"

Check = Callable[[Any], Optional[str]]
Naming = Union[str, Callable[[str], str]]


@dataclass(frozen=True)
class Option:
    """How a user gives one `RunConfig` field.

    help: the help text of its flag; ``{default}`` in it is replaced by the field's default, so a
        default is written once, in the field.
    check: None when a value is fine, else what the value must be (``"a whole number >= 1"``);
        None is always fine for a field whose default is None (the protocol's or method's value).
    fix: a hint appended to the error.
    group: its group in ``latentmix train --help``; None: no flag (Python and the spec only).
    flag: the flag, where it is not ``--`` + the name with dashes.
    parse: the flag's text -> the value (argparse's ``type``); None: the text itself.
    choices: the only values the flag takes (also what `check` requires).
    switch: a flag without a value: ``"on"`` sets True, ``"off"`` sets False (a flag named for the
        opposite, such as ``--noise-exclude-true-label``), ``"on/off"`` is ``--x`` / ``--no-x``
        over a default of None ("decide by the machine").
    spec_key: its key at the top level of a sweep spec; None: under ``[settings]``.
    fit: the argument of `latentmix.fit` that sets it; `SETTINGS`: fit's ``**settings`` under
        its own name; None: fit takes no such setting (it trains your model on your tensors).
    execution: it says where or how fast the run executes, not what it computes: runs that differ
        only in these are the same run (a resume on another machine, a sweep spread over machines).
        The data paths are among them because the data themselves are compared by content (a run
        record's ``data_sha256``, `latentmix.run_folder`), so a moved file still resumes and a
        changed one does not; ``amp`` is the machine's precision choice (on by default on CUDA
        only), as ``device`` is: both change results at rounding level only.
    """

    help: str
    check: Check
    fix: str = ""
    group: Optional[str] = None
    flag: Optional[str] = None
    parse: Optional[Callable[[str], Any]] = None
    choices: tuple[str, ...] = ()
    switch: Optional[str] = None
    spec_key: Optional[str] = None
    fit: Optional[str] = SETTINGS
    execution: bool = False


def option(default: Any, group: Optional[str], help: str, *, check: Optional[Check] = None,
           choices: tuple[str, ...] = (), **facts: Any) -> Any:
    """A dataclass field with `default` and its `Option`; `choices` alone give its check."""
    if check is None:
        if not choices:
            raise TypeError("a run option needs its check, or the choices that make it")
        check = one_of(*choices)
    return field(default=default,
                 metadata={"option": Option(help=help, check=check, group=group, choices=choices, **facts)})


def _warmup_epochs(given: str) -> Union[int, str]:
    """`--warmup-epochs N` or `--warmup-epochs auto`."""
    if given.strip().lower() == "auto":
        return "auto"
    try:
        return int(given)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of epochs or 'auto', got {given!r}") from None


# --------------------------------------------------------------------------------------------
# The settings
# --------------------------------------------------------------------------------------------


@dataclass
class RunConfig:
    """Everything that defines one run. None means "the data set's protocol default" (or the
    method's). Each field's `Option` says how it is given (module docstring)."""

    dataset: str = option(
        "spiral", DATA, "spiral, cifar10, fashion-mnist, mnist, kmnist (default {default})",
        check=text, spec_key="dataset", fit="name")
    method: str = option(
        "ce", METHOD, f"{', '.join(PRESETS)} (default {{default}}; README, Methods)",
        check=method_name, spec_key="methods", fit="method")
    layers: Optional[str] = option(
        None, METHOD, "eligible mix layers, e.g. 0-2, 3-4 or 0,2 (0 = input; default: the method's)",
        check=layer_text, fix="omit it for the method's own layers", spec_key="layers", fit="layers")
    alpha: Optional[float] = option(
        None, METHOD, "mixup Beta(alpha, alpha), > 0 (default: the data set's protocol)",
        parse=float, check=number(0.0, strict=True), fix="mixup draws lam ~ Beta(alpha, alpha)", spec_key="alphas")
    correction: Optional[str] = option(
        None, METHOD, "override the method's bootstrapping (default: the method's)", choices=CORRECTIONS)
    # epochs before bootstrapping; "auto" = when early learning ends; None = the protocol's
    warmup_epochs: Optional[Union[int, str]] = option(
        None, METHOD, "epochs before bootstrapping starts, or 'auto': when the run's own signals say early learning "
                      "is over (default: auto for your own data, the protocol's otherwise, scaled with --epochs)",
        parse=_warmup_epochs, check=warmup)
    reg_weight: Optional[float] = option(
        None, METHOD, "weight of the prior regularizer, >= 0 (default 1)",
        parse=float, check=number(0.0, strict=False))
    # the regularizer's prior: "labels" = the class shares of the trained samples' given labels
    # (imbalanced data stays imbalanced); "uniform" = [A]'s, made for balanced data sets
    class_prior: str = option(
        "labels", METHOD, "prior of the regularizer: labels (the class shares of the training labels: the data set's "
                          "own when --noise draws the noise, else the labels as given) or uniform (as the reference; "
                          "for classes you know are balanced) (default {default})",
        choices=CLASS_PRIORS)
    soft_side_weighting: Optional[str] = option(
        None, METHOD, "M-DYR-S side weights (default lam)", choices=SIDE_WEIGHTINGS)
    # Where the per-batch bootstrapping inputs come from: "reference" = [A]'s two extra forwards
    # (train mode for the target, eval mode for P(noisy)); "single" = one eval-mode forward for both.
    bootstrap_forward: str = option(
        "reference", METHOD, "reference: two extra forwards per batch as [A]; single: one (faster); tracked: none, "
                             "targets and P(noisy) from the previous epoch's tracking pass (fastest) (default {default})",
        choices=BOOTSTRAP_FORWARDS)
    # A plain CE run of the same data, seed and split, trained after the run; the run keeps the model
    # that scores higher on the noisy validation split (`latentmix.plain_twin`). None: the protocol's
    # (on for a mixing or correcting method on your own data).
    plain_twin: Optional[bool] = option(
        None, METHOD, "also train a plain CE twin (same data, seed and validation split, in RUN/plain-twin) and keep "
                      "the model that scores higher on the noisy validation split; the label issues average both runs' "
                      "P(noisy), the noise estimate stays this run's (default: on for a method that mixes or corrects on "
                      "your own data; about 1.75x "
                      "the time)",
        check=boolean, switch="on/off")
    noise: float = option(
        0.0, DATA, "synthetic noise rate in [0, 1] (default {default})",
        parse=float, check=number(0.0, strict=False, high=1.0), fix="a fraction of the training labels",
        spec_key="noise", fit="noise")
    noise_kind: str = option(
        "symmetric", DATA, "synthetic noise: uniform relabelling, or class-dependent flips (Patrini et al.) "
                           "(default {default})",
        choices=NOISE_KINDS)
    noise_selection: str = option(
        "exact", DATA, "exact: round(rate*N) samples relabelled; bernoulli: each with probability rate "
                       "(default {default})",
        choices=SELECTION_MODES)
    noise_include_true_label: bool = option(
        True, DATA, "relabel to a different class (default: uniform over all classes, as the paper)",
        check=boolean, flag="--noise-exclude-true-label", switch="off")
    noise_seed: Optional[int] = option(
        None, DATA, "seed of the noisy labels (default: --seed)", parse=int, check=whole_number(0, MAX_SEED))
    noisy_labels_file: Optional[str] = option(
        None, DATA, "real noisy labels, one per sample (.npy/.csv); not with --noise",
        check=text, flag="--noisy-labels", execution=True)
    seed: int = option(
        0, OPTIMISATION, "seed of the data order, mixing and model (default {default})",
        parse=int, check=whole_number(0, MAX_SEED), spec_key="seeds", fit="seed")
    # fraction of the training set held out with its noisy labels for checkpoint selection
    # (None: the protocol's; 0: none)
    val_split: Optional[float] = option(
        None, OPTIMISATION, "fraction held out with its given labels to select the checkpoint by. A --data file "
                            "or image folder without its own validation set: that split is the validation set "
                            "(default 0.1). Built-in data sets and files with val_* arrays: an extra split of the "
                            "training set (default 0, none)",
        parse=float, check=fraction)
    epochs: Optional[int] = option(
        None, OPTIMISATION, "shorten/lengthen the protocol; lr milestones scale in proportion (default: the "
                            "protocol's)",
        parse=int, check=whole_number(1), spec_key="epochs", fit="epochs")
    batch_size: Optional[int] = option(
        None, OPTIMISATION, "(default: the protocol's)",
        parse=int, check=whole_number(2), fix="mixup pairs samples within a batch", fit="batch_size")
    # beyond float32's range SGD cannot even store them; long before, no run learns anything
    lr: Optional[float] = option(
        None, OPTIMISATION, "learning rate, > 0 (default: the protocol's)",
        parse=float, check=number(0.0, strict=True, high=MAX_STEP), fix="the protocols use 0.03-0.1", fit="lr")
    weight_decay: Optional[float] = option(
        None, OPTIMISATION, ">= 0 (default: the protocol's)",
        parse=float, check=number(0.0, strict=False, high=MAX_STEP), fix="the protocols use 1e-4")
    model: Optional[str] = option(
        None, OPTIMISATION, "spiral-mlp, mlp, small-cnn, preact-resnet18, text, fusion (default: per data set)",
        check=model_name, fit=None)
    width: float = option(
        1.0, OPTIMISATION, "width multiplier of the CNNs, in (0, 16] (default {default})",
        parse=float, check=number(0.0, strict=True, high=MAX_WIDTH), fix="1 is the paper's network", fit=None)
    data_dir: Optional[str] = option(
        None, DATA, "folder of a file-based data set (CIFAR-10 release, IDX files)",
        check=text, fit=None, execution=True)
    data: Optional[str] = option(
        None, DATA, "your own .npz or .csv file, or a folder of images with one sub-folder per class (see "
                    "docs/data.md); not with --dataset",
        check=text, spec_key="data", fit=None, execution=True)
    download: bool = option(
        False, DATA, "fetch the official CIFAR-10 archive (opt-in)",
        check=boolean, switch="on", fit=None, execution=True)
    noise_model: str = option(
        "beta", METHOD, "mixture over per-sample losses that gives P(noisy) (default {default})",
        choices=NOISE_MODEL_KINDS)
    posterior_lookup: str = option(
        "monotone", METHOD, "how P(noisy) is read from the fitted mixture (default {default}; docs/algorithm.md)",
        choices=LOOKUP_MODES)
    track_transform: str = option(
        "train", METHOD, "transform of the per-epoch loss-tracking pass (default {default}, as the reference)",
        choices=TRACK_TRANSFORMS)
    track_every: int = option(
        1, None, "epochs between passes over the training set (train accuracy, per-sample losses, noise model); "
                 "loss-correcting methods need it every epoch, for plain grids a sparser curve saves time",
        check=whole_number(1))
    device: str = option(
        "auto", OPTIMISATION, "auto, cpu, cuda, cuda:N (default {default})",
        check=device_name, fit="device", execution=True)
    amp: Optional[bool] = option(
        None, OPTIMISATION, "bf16 autocast (default: on for CUDA)", check=boolean, switch="on/off", execution=True)
    channels_last: Optional[bool] = option(
        None, OPTIMISATION, "channels-last memory format for images (default: on for CUDA)",
        check=boolean, switch="on/off", execution=True)
    compile: bool = option(
        False, OPTIMISATION, "torch.compile the un-mixed forwards", check=boolean, switch="on", execution=True)
    checkpoint: bool = option(
        True, None, "write a checkpoint after every epoch (`latentmix train` always does; fit when given a run_dir)",
        check=boolean, fit="run_dir", execution=True)
    loader_workers: Optional[int] = option(
        None, DATA, "DataLoader processes reading an image folder (default: one per spare core, at most 4; more than the "
        "CPU cores are capped at them, with a note)",
        parse=int, check=whole_number(0), fix="DataLoader processes; 0 reads in the training process",
        execution=True)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self, style: str = "key") -> "RunConfig":
        """Raise `ConfigError` for a setting that cannot be run (`latentmix.config_checks`), naming
        it as the caller wrote it: ``"cli"`` (--flag), ``"fit"`` (argument), ``"spec"`` (TOML key),
        ``"key"`` (setting name). Returns the config. A config is checked once: its fields cannot
        change (a frozen dataclass), so the checks the command line runs are not run again by
        `build_run` (`replace` makes a new config, checked anew)."""
        if self.__dict__.get("_checked"):
            return self
        validate_run_config(self, style)
        object.__setattr__(self, "_checked", True)
        return self

    @classmethod
    def from_dict(cls, values: dict, style: str = "key") -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown run setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**values).validate(style)

    def resolved_method(self) -> Method:
        return get_method(
            self.method, layers=self.layers, alpha=self.alpha, correction=self.correction,
            warmup_epochs=self.warmup_epochs if self.warmup_epochs != "auto" else None, reg_weight=self.reg_weight,
            soft_side_weighting=self.soft_side_weighting,
        )


# Each field's `Option`, in the order of the fields.
OPTIONS: dict[str, Option] = {f.name: f.metadata["option"] for f in fields(RunConfig)}
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(RunConfig)}
# Field -> its top-level key in a sweep spec (the other fields go under [settings]).
TOP_LEVEL_KEYS: dict[str, str] = {name: o.spec_key for name, o in OPTIONS.items() if o.spec_key is not None}
# Fields that say where and how fast a run executes, not what it computes.
EXECUTION_FIELDS: tuple[str, ...] = tuple(name for name, o in OPTIONS.items() if o.execution)


# --------------------------------------------------------------------------------------------
# The command line, both ways
# --------------------------------------------------------------------------------------------


def cli_flag(name: str) -> Optional[str]:
    """The ``latentmix train`` flag of field `name`; None where the command line has none."""
    spec = OPTIONS[name]
    if spec.group is None:
        return None
    return spec.flag or "--" + name.replace("_", "-")


def _help(name: str, spec: Option) -> str:
    default = DEFAULTS[name]
    return spec.help.format(default=f"{default:g}" if isinstance(default, float) else default)


def add_run_arguments(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Add a flag for every `RunConfig` field that has a group, group by group (`GROUPS`) in field
    order, each storing into the field's own name with the field's default. Returns the argument
    groups by title, for a command's own options beside them (``--threads``)."""
    groups = {title: parser.add_argument_group(title) for title in GROUPS}
    for title, group in groups.items():
        for name, spec in OPTIONS.items():
            if spec.group == title:
                _add_flag(group, name, spec)
    return groups


def _add_flag(group: Any, name: str, spec: Option) -> None:
    """The argparse option of field `name`: a value, or a switch (`Option.switch`)."""
    flag, helps = cli_flag(name), _help(name, spec)
    if spec.switch == "on":
        group.add_argument(flag, dest=name, action="store_true", help=helps)
    elif spec.switch == "off":
        group.add_argument(flag, dest=name, action="store_false", help=helps)
    elif spec.switch == "on/off":
        group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=DEFAULTS[name], help=helps)
    else:
        group.add_argument(flag, dest=name, type=spec.parse, default=DEFAULTS[name],
                           choices=list(spec.choices) or None, help=helps)


def add_override_argument(parser: argparse.ArgumentParser, name: str, help: str) -> None:
    """A grid command's flag for field `name` (``latentmix reproduce --epochs``): the field's own
    flag, parser and choices, its value checked by the field's rule when the grid's runs are made;
    default None, "the table's own", which only the command's `help` can describe."""
    spec = OPTIONS[name]
    if spec.switch == "on":
        parser.add_argument(cli_flag(name), dest=name, action="store_true", help=help)
    elif spec.switch is None:
        parser.add_argument(cli_flag(name), dest=name, type=spec.parse, default=None,
                            choices=list(spec.choices) or None, help=help)
    else:
        raise TypeError(f"{name}: a grid command overrides values and on-switches only")


def cli_values(args: argparse.Namespace) -> dict[str, Any]:
    """The `RunConfig` fields that the parsed run options give (every field with a flag)."""
    return {name: getattr(args, name) for name in OPTIONS if cli_flag(name) is not None}


def command_line(config: RunConfig) -> list[str]:
    """The ``latentmix train`` flags that give `config` back (the reverse of `add_run_arguments`):
    each field that differs from its default, with its exact value; ``--dataset`` always, unless
    ``--data`` names the data. A field without a flag must be at its default, since the command
    would train with the default."""
    words: list[str] = []
    for name, spec in OPTIONS.items():
        value, flag = getattr(config, name), cli_flag(name)
        if value == DEFAULTS[name] and not (name == "dataset" and config.data is None):
            continue
        if name == "dataset" and config.data is not None:  # the run is named after its --data
            continue
        if flag is None:
            raise ConfigError(f"no `latentmix train` flag sets {name} (it would train with {DEFAULTS[name]!r}, "
                              f"not {value!r}): run it from Python or a sweep spec's [settings]")
        if spec.switch == "on/off":
            words.append(flag if value else "--no-" + flag[2:])
        elif spec.switch is not None:
            words.append(flag)  # differs from the default: the flag is what changes it
        else:
            words += [flag, str(value)]
    return words


# ---- validation: each field by its declared rule, named as the caller wrote it ----------------


def field_name(field: str, style: Naming = "cli") -> str:
    """How `field` is written where the user wrote it: ``"cli"`` (``--reg-weight``), ``"fit"``
    (``fit argument reg_weight``), ``"spec"`` (``spec key 'alphas'``, ``[settings] lr``) or ``"key"``
    (``setting 'reg_weight'``, a key of config.json / `RunConfig.from_dict`); or a callable. The
    flags, arguments and keys are the fields' declarations (`latentmix.config.Option`)."""
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


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def validate_run_config(config: Any, style: Naming = "cli") -> None:
    """Raise `ConfigError` for the first `RunConfig` field that cannot be run, by the rule its
    declaration names (`latentmix.config.Option.check`; None is fine where the field's default is
    None), naming it in `style` (see `field_name`). Checks that need the data (classes, input
    shapes) are `check_dataset`'s."""
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
        if config.data or config.dataset not in ASYMMETRIC_MAPS:
            raise ConfigError(
                f"{field_name('noise_kind', style)} 'asymmetric' flips classes by a class map defined for "
                f"{', '.join(ASYMMETRIC_MAPS)}, not for {config.data or config.dataset!r}: use symmetric noise, or "
                f"give your own noisy labels with {field_name('noisy_labels_file', style)}")
    _check_layer_range(config, style)


def _check_layer_range(config: Any, style: Naming) -> None:
    """Mix layers beyond the model's, found before any data is read where the model is known from
    the settings alone (the built-in data sets' models); other models are checked when built."""
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
