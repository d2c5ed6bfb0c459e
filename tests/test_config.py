"""Tests for latentmix.config: every run setting declared once, and the command line, the sweep spec
and `fit` that follow from the declaration.

The expected values here are written out by hand (flags as a user types them, spec keys as
docs/sweeps.md gives them, fit's arguments from its signature), so that a declaration that names
a setting wrongly fails, and a new `RunConfig` field that no one wired up fails too (every field
needs an entry in `EXAMPLES`)."""

from __future__ import annotations

import argparse
import inspect
import shlex
from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

import latentmix.api
from latentmix.cli import build_parser, config_from_args
from latentmix.errors import ConfigError
from latentmix.sweep.spec import spec_from_dict
from latentmix.config import RunConfig
from latentmix.tune import train_command

# A valid value of each field that is not its default. A field missing here fails
# `test_every_field_has_an_example`: wire the new field up, then add it.
EXAMPLES = {
    "dataset": "cifar10", "method": "m-dyr-h", "layers": "1-3", "alpha": 2.5, "correction": "soft",
    "warmup_epochs": "auto", "reg_weight": 0.5, "class_prior": "uniform", "soft_side_weighting": "half", "bootstrap_forward": "tracked",
    "plain_twin": False,
    "noise": 0.3, "noise_kind": "asymmetric", "noise_selection": "bernoulli", "noise_include_true_label": False,
    "noise_seed": 7, "noisy_labels_file": "my labels/noisy.npy", "seed": 3, "val_split": 0.2, "epochs": 12,
    "batch_size": 32, "lr": 0.01, "weight_decay": 0.0005, "model": "mlp", "width": 0.5, "data_dir": "data/cifar",
    "data": "my data/mine.csv", "download": True, "noise_model": "gaussian", "posterior_lookup": "reference",
    "track_transform": "eval", "track_every": 5, "device": "cpu", "amp": False, "channels_last": True,
    "compile": True, "checkpoint": False, "loader_workers": 2,
}
# `latentmix train` has no flag for these (docs: set them from Python or a spec's [settings]).
NOT_ON_THE_COMMAND_LINE = {"track_every", "checkpoint"}
# The top-level keys of a sweep spec that set a field (docs/sweeps.md, The spec); a list for the axes.
SPEC_TOP_LEVEL = {"dataset": ("dataset", False), "data": ("data", False), "method": ("methods", True),
                  "layers": ("layers", True), "alpha": ("alphas", True), "noise": ("noise", True),
                  "seed": ("seeds", True), "epochs": ("epochs", False)}
# Settings that `fit` refuses: it trains the model you pass on the inputs you pass.
NOT_FOR_FIT = {"data", "data_dir", "download", "model", "width"}


def _train_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices["train"]


def _from_command_line(line: str) -> RunConfig:
    """What `latentmix train` makes of a printed command line (split as a shell would)."""
    words = shlex.split(line)
    assert words[:2] == ["latentmix", "train"]
    return config_from_args(build_parser().parse_args(words[1:]))


def test_every_field_has_an_example():
    assert set(EXAMPLES) == {f.name for f in fields(RunConfig)}
    for name, value in EXAMPLES.items():
        assert value != getattr(RunConfig(), name), name


def test_the_train_flags_are_the_ones_users_type():
    """The run options of `latentmix train`, as they were before the declaration (and in the docs)."""
    flags = {flag for action in _train_parser()._actions for flag in action.option_strings}
    assert flags == {
        "-h", "--help", "--dataset", "--data", "--loader-workers", "--data-dir", "--download", "--noise",
        "--noise-kind", "--noise-selection", "--noise-exclude-true-label", "--noise-seed", "--noisy-labels",
        "--method", "--layers", "--alpha", "--correction", "--warmup-epochs", "--reg-weight", "--class-prior",
        "--soft-side-weighting", "--bootstrap-forward", "--plain-twin", "--no-plain-twin", "--noise-model", "--posterior-lookup", "--track-transform",
        "--seed", "--val-split", "--epochs", "--batch-size", "--lr", "--weight-decay", "--model", "--width",
        "--device", "--amp", "--no-amp", "--channels-last", "--no-channels-last", "--compile", "--threads",
        "--out", "--resume", "--overwrite", "--quiet",
    }
    groups = {group.title: {a.option_strings[0] for a in group._group_actions} for group in _train_parser()._action_groups}
    assert {"--data", "--noise-exclude-true-label", "--loader-workers"} <= groups["data and noise"]
    assert {"--method", "--track-transform"} <= groups["method"]
    assert {"--seed", "--amp", "--threads"} <= groups["optimisation"]


def test_the_help_states_each_default_once_and_truly():
    """A value flag whose field has a default says which, in its own words; no "(default: None)"."""
    for action in _train_parser()._actions:
        if action.dest in EXAMPLES and action.nargs is None and action.default is not None:
            default = RunConfig().__getattribute__(action.dest)
            shown = f"{default:g}" if isinstance(default, float) else str(default)
            assert f"(default {shown}" in action.help, action.dest
            assert action.help.count("default") == 1, action.dest
        assert "default: None" not in (action.help or "")


def test_hand_written_flags_give_the_hand_written_config():
    args = build_parser().parse_args([
        "train", "--data", "runs/mine.npz", "--noisy-labels", "noisy.npy", "--noise-exclude-true-label",
        "--warmup-epochs", "auto", "--no-amp", "--channels-last", "--compile", "--download", "--alpha", "0.25",
        "--loader-workers", "0", "--soft-side-weighting", "half", "--method", "m-dyr-s"])
    assert config_from_args(args) == RunConfig(
        dataset="mine", data="runs/mine.npz", noisy_labels_file="noisy.npy", noise_include_true_label=False,
        warmup_epochs="auto", amp=False, channels_last=True, compile=True, download=True, alpha=0.25,
        loader_workers=0, soft_side_weighting="half", method="m-dyr-s")


def test_train_command_is_the_line_a_user_would_type():
    config = RunConfig(method="lr-m", layers="1-3", alpha=0.1 + 0.2, noise=0.4, noise_include_true_label=False,
                       amp=True, noisy_labels_file=None, data_dir="my data", seed=2)
    assert train_command(config) == ("latentmix train --dataset spiral --method lr-m --layers 1-3 "
                                     "--alpha 0.30000000000000004 --noise 0.4 --noise-exclude-true-label --seed 2 "
                                     "--data-dir 'my data' --amp")


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_field_is_reachable_from_the_command_line(name):
    """Each field set alone comes back through the printed `latentmix train` line, except the
    fields the command has no flag for, which the line refuses rather than dropping silently."""
    config = RunConfig(**{name: EXAMPLES[name]})
    if name == "data":  # the command line names a run after its --data file
        config = replace(config, dataset=Path(EXAMPLES["data"]).stem)
    if name == "data_dir":  # spiral is generated: a --data-dir beside it is refused (issue 25)
        config = replace(config, dataset="fashion-mnist")
    if name in NOT_ON_THE_COMMAND_LINE:
        with pytest.raises(ConfigError, match=f"no `latentmix train` flag sets {name}"):
            train_command(config)
        return
    assert _from_command_line(train_command(config)) == config


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_field_is_reachable_from_a_sweep_spec(name):
    """Top-level keys for the axes and the data, [settings] for every other field."""
    spec = {"name": "s", "methods": ["lr-m"]}
    if name == "data_dir":  # spiral is generated: a data_dir beside it is refused (issue 25)
        spec["dataset"] = "fashion-mnist"
    key, is_list = SPEC_TOP_LEVEL.get(name, (None, False))
    if key is None:
        spec["settings"] = {name: EXAMPLES[name]}
    else:
        spec[key] = [EXAMPLES[name]] if is_list else EXAMPLES[name]
    configs = spec_from_dict(spec).configs
    assert [getattr(config, name) for config in configs] == [EXAMPLES[name]]
    if key is not None and name != "data":  # data may also be given per machine, under [settings]
        with pytest.raises(ConfigError, match="top level"):
            spec_from_dict({"name": "s", "settings": {name: EXAMPLES[name]}})


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_field_is_reachable_from_fit_or_refused_by_name(name, monkeypatch):
    """`fit(...)` passes each field to the training loop: its own argument where it has one (its
    signature), `name=` for the data set's name, `run_dir` for checkpoints, ``**settings`` for the
    rest; the settings that cannot apply to your model and tensors are refused, naming them."""
    seen = {}

    def fake_train(config, **kwargs):
        seen["config"] = config
        return "trained"

    monkeypatch.setattr(latentmix.api, "train", fake_train)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 2, generator=generator)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    arguments = dict(val_inputs=x[:10], val_labels=y[:10], mix_points=["1"], progress=False)
    value = EXAMPLES[name]
    if name == "dataset":
        arguments["name"] = value
    elif name == "checkpoint":
        pass  # no run_dir: no checkpoints
    elif name == "model":  # fit's own `model` is the module it trains: it builds no model by name
        assert latentmix.fit(model, x, y, **arguments) == "trained"
        assert seen["config"].model is None
        return
    else:
        arguments[name] = value  # its own argument (fit's signature) or one of **settings
    if name in NOT_FOR_FIT:
        with pytest.raises(ConfigError, match=f"fit\\(\\) takes no {name}"):
            latentmix.fit(model, x, y, **arguments)
        return
    assert latentmix.fit(model, x, y, **arguments) == "trained"
    assert getattr(seen["config"], name) == value


def test_fit_names_the_argument_that_sets_a_field():
    own = set(inspect.signature(latentmix.fit).parameters) & set(EXAMPLES)
    assert own == {"method", "layers", "epochs", "batch_size", "lr", "noise", "seed", "device", "model"}
    with pytest.raises(ConfigError, match=r"fit\(\) sets checkpoint, dataset itself; pass run_dir=, name= instead"):
        latentmix.fit(nn.Linear(2, 2), torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]), val_inputs=torch.zeros(2, 2),
                      val_labels=torch.tensor([0, 1]), checkpoint=True, dataset="mine")


def _maybe(strategy):
    return st.none() | strategy


# Every value a user may give each field that the command line takes (track_every and checkpoint
# stay at their defaults: no flag sets them). Floats are drawn from their whole valid range, so the
# printed line must carry them exactly.
CLI_STRATEGIES = {
    "dataset": st.sampled_from(["spiral", "cifar10", "fashion-mnist"]),
    "method": st.sampled_from(["ce", "m", "lr-m", "m-dyr-s", "m-dyr-h", "lr-m-dyr-h"]),
    "layers": _maybe(st.sampled_from(["0-1", "1-3", "0,2", "2"])),
    "alpha": _maybe(st.floats(min_value=1e-4, max_value=64.0)),
    "correction": _maybe(st.sampled_from(["none", "soft", "hard"])),
    "warmup_epochs": _maybe(st.just("auto") | st.integers(0, 400)),
    "reg_weight": _maybe(st.floats(min_value=0.0, max_value=10.0)),
    "soft_side_weighting": _maybe(st.sampled_from(["lam", "half"])),
    "bootstrap_forward": st.sampled_from(["reference", "single", "tracked"]),
    "plain_twin": _maybe(st.booleans()),
    "noise": st.just(0.0) | st.floats(min_value=0.0, max_value=1.0),
    "noise_kind": st.sampled_from(["symmetric", "asymmetric"]),
    "noise_selection": st.sampled_from(["exact", "bernoulli"]),
    "noise_include_true_label": st.booleans(),
    "noise_seed": _maybe(st.integers(0, 2**31)),
    "noisy_labels_file": _maybe(st.sampled_from(["noisy.npy", "my labels/noisy's.csv"])),
    "seed": st.integers(0, 10**6),
    "val_split": _maybe(st.floats(min_value=0.0, max_value=0.99)),
    "epochs": _maybe(st.integers(1, 1000)),
    "batch_size": _maybe(st.integers(2, 4096)),
    "lr": _maybe(st.floats(min_value=1e-7, max_value=1000.0)),
    "weight_decay": _maybe(st.floats(min_value=0.0, max_value=1000.0)),
    "model": _maybe(st.sampled_from(["mlp", "spiral-mlp", "small-cnn", "preact-resnet18"])),
    "width": st.floats(min_value=0.0, max_value=16.0, exclude_min=True),
    "data_dir": _maybe(st.sampled_from(["data", "/tmp/my data"])),
    "data": _maybe(st.sampled_from(["mine.csv", "my data/mine.npz", "images/"])),
    "download": st.booleans(),
    "noise_model": st.sampled_from(["beta", "gaussian"]),
    "posterior_lookup": st.sampled_from(["monotone", "reference"]),
    "class_prior": st.sampled_from(["labels", "uniform"]),
    "track_transform": st.sampled_from(["train", "eval"]),
    "device": st.sampled_from(["auto", "cpu", "cuda", "cuda:1"]),
    "amp": _maybe(st.booleans()),
    "channels_last": _maybe(st.booleans()),
    "compile": st.booleans(),
    "loader_workers": _maybe(st.integers(0, 64)),
}


def test_the_value_table_covers_every_flag():
    assert set(CLI_STRATEGIES) == set(EXAMPLES) - NOT_ON_THE_COMMAND_LINE


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(st.fixed_dictionaries(CLI_STRATEGIES))
def test_printed_train_command_gives_the_same_config_back(values):
    """For any config the command line can make, `latentmix train` reads the line `tune` prints
    for it back into that very config (exact floats, quoted paths, inverted and on/off flags)."""
    if values["data"]:  # as the command line names it
        values["dataset"] = Path(values["data"]).stem or "arrays"
    try:
        config = RunConfig(**values).validate("cli")
    except ConfigError:
        assume(False)
    assert _from_command_line(train_command(config)) == config


def test_a_cli_run_checks_its_settings_once(tmp_path, monkeypatch):
    """The command line checks the settings (naming flags), and build_run does not check the same
    frozen config again; a changed copy (`replace`) is checked anew."""
    from dataclasses import replace

    import latentmix.config as config_module
    from latentmix.cli import main

    calls = []
    real = config_module.validate_run_config
    monkeypatch.setattr(config_module, "validate_run_config", lambda config, style="cli": calls.append(style) or real(config, style))
    assert main(["train", "--dataset", "spiral", "--epochs", "1", "--device", "cpu", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    assert calls == ["cli"]
    config = RunConfig(epochs=2).validate()
    config.validate()
    replace(config, epochs=3).validate()
    assert calls == ["cli", "key", "key"]
