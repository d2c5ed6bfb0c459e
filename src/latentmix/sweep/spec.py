"""A sweep's spec: a TOML file declaring a grid of runs (docs/sweeps.md, The spec).

`load_spec` reads the file, `spec_from_dict` builds the grid: the product methods x layers x alphas
x noise x seeds, every run checked as `latentmix train` checks it, before anything runs.
"""

from __future__ import annotations

import itertools
from collections import Counter
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Optional

from latentmix.config import EXECUTION_FIELDS, TOP_LEVEL_KEYS, RunConfig
from latentmix.errors import ConfigError

# Fields that say where and how a run executes, not what it computes: they may differ between
# machines of one sweep (each worker applies its own) and are ignored when stored configs are compared.
MACHINE_FIELDS = EXECUTION_FIELDS
# The spec's top-level keys: its name, the run settings that have a key of their own (the grid's
# axes, the data), [settings] for every other run setting, and where the sweep lives.
SPEC_KEYS = ("name", *TOP_LEVEL_KEYS.values(), "settings", "out", "storage")
# Settings given only at the top level; an execution field (`data`) may also come under [settings].
AXIS_FIELDS = tuple(name for name in TOP_LEVEL_KEYS if name not in EXECUTION_FIELDS)


@dataclass
class SweepSpec:
    """A named grid: its run configs (in grid order), and optionally where it lives."""

    name: str
    configs: list[RunConfig]
    out: Optional[str] = None
    storage: Optional[str] = None
    source: Optional[str] = None

    def machine_overrides(self) -> dict:
        """This machine's execution fields (device, data paths, ...), applied to every run it trains."""
        return {name: getattr(self.configs[0], name) for name in MACHINE_FIELDS} if self.configs else {}


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read a sweep spec (TOML); see docs/sweeps.md for the format."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ConfigError("reading a TOML sweep spec on Python 3.10 needs `pip install tomli`") from None

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"sweep spec {path} is a folder; give the spec's .toml file")
    try:
        with path.open("rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"sweep spec {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"sweep spec {path} is not valid TOML (UTF-8 text): {error}") from None
    except OSError as error:
        raise ConfigError(f"sweep spec {path} cannot be read ({error.strerror or type(error).__name__})") from None
    if "sweep" in values and isinstance(values["sweep"], dict):  # allow a [sweep] table as well
        values = {**values.pop("sweep"), **values}
    return spec_from_dict(values, source=str(path))  # a relative `out` is relative to the working folder


def _as_list(value: Any, what: str) -> list:
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"spec key {what!r} is an empty list")
        return value
    return [value]


# The most runs one spec may declare: each is a run folder and a row of the store, and the grid is
# built and checked before anything runs (10^7 runs took ~1.7 h of checking before this limit).
MAX_RUNS = 100_000


def _check_grid_size(entries: list, layers: int, alphas: int, noise: int, seeds: int, source: str) -> None:
    """The grid's size, counted from the axes' lengths before any run is built: at most `MAX_RUNS`
    (a method that does not mix may run fewer; the count is an upper bound)."""
    total = 0
    for _, own_layers, own_alphas, _ in entries:
        total += (len(own_layers) if own_layers is not None else layers) * (
            len(own_alphas) if own_alphas is not None else alphas) * noise * seeds
    if total > MAX_RUNS:
        raise ConfigError(f"{source}: the grid declares up to {total:,} runs ({len(entries)} method(s) x layers x "
                          f"alphas x {noise} noise rate(s) x {seeds} seed(s)); a spec takes at most {MAX_RUNS:,}: "
                          "split it into several sweeps")


def _seeds(value: Any, source: str = "spec") -> list[int]:
    if isinstance(value, bool):
        raise ConfigError(f"spec key 'seeds' must be a count or a list of seeds, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"spec key 'seeds' must be >= 1, got {value}")
        if value > MAX_RUNS:
            raise ConfigError(f"{source}: spec key 'seeds' asks for {value:,} seeds; a spec takes at most "
                              f"{MAX_RUNS:,} runs: split it into several sweeps")
        return list(range(value))
    seeds = _as_list(value, "seeds")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"spec key 'seeds' must hold integers, got {seeds!r}")
    return seeds


def _number_value(value: Any, key: str, source: str) -> Optional[float]:
    """A number of a spec axis (alphas, noise); text such as "two" is refused, naming the key."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{source}: spec key {key!r} must hold numbers, got {value!r}")
    return float(value)


def _layers_value(value: Any, source: str) -> Optional[str]:
    """One entry of a `layers` axis: a range/list text ("1-3", "0,2") or one index; "default" (or
    "") for the method's own layers."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "default")):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"{source}: spec key 'layers' must hold ranges like \"1-3\" or layer indices, got {value!r}")
    return str(value)


def spec_from_dict(values: dict, source: str = "spec") -> SweepSpec:
    """A `SweepSpec` from parsed TOML: the product methods x layers x alphas x noise x seeds.

    `layers` and `alphas` apply to the methods that mix (a method that does not mix, such as ``ce``,
    is run once per noise rate and seed); a method may also be a table with its own ``layers``,
    ``alphas`` and ``correction``. `settings` holds any other `RunConfig` field, shared by every run.
    """
    from latentmix.naming import run_id

    unknown = sorted(set(values) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(SPEC_KEYS)}")
    if "name" not in values:
        raise ConfigError(f"{source}: a sweep needs a 'name' (the study name in the store)")
    if not isinstance(values["name"], str) or not values["name"].strip():
        raise ConfigError(f"{source}: spec key 'name' must be a non-empty text (the study name in the store), got "
                          f"{values['name']!r}")
    for key in ("out", "storage"):
        if key in values and not (isinstance(values[key], str) and values[key].strip()):
            raise ConfigError(f"{source}: spec key {key!r} must be a text (a folder / a store URL), got {values[key]!r}")
    if not isinstance(values.get("settings", {}), dict):
        raise ConfigError(f"{source}: spec key 'settings' must be a table ([settings] with one run setting a line), "
                          f"got {values['settings']!r}")
    base = _base_config(values, source)
    layer_axis = [_layers_value(v, source) for v in _as_list(values.get("layers", [None]), "layers")]
    alpha_axis = [_number_value(v, "alphas", source) for v in _as_list(values.get("alphas", [None]), "alphas")]
    noise_axis = [_number_value(v, "noise", source) for v in _as_list(values.get("noise", [0.0]), "noise")]
    for rate in noise_axis:
        if rate is None or not 0.0 <= rate <= 1.0:
            raise ConfigError(f"{source}: noise rates must be in [0, 1], got {rate}")
    seeds = _seeds(values.get("seeds", 1), source)
    entries = [_method_entry(entry, source) for entry in _as_list(values.get("methods", ["ce"]), "methods")]
    _check_grid_size(entries, len(layer_axis), len(alpha_axis), len(noise_axis), len(seeds), source)

    configs: list[RunConfig] = []
    for name, own_layers, own_alphas, correction in entries:
        if correction is None:  # a method table's own correction, else the one [settings] gives every run
            correction = base.correction
        mixes = _checked(replace(base, method=name, correction=correction), source).resolved_method().mixes
        layer_values = own_layers if own_layers is not None else (layer_axis if mixes else [None])
        alpha_values = own_alphas if own_alphas is not None else (alpha_axis if mixes or own_layers else [None])
        for layers, alpha, noise, seed in itertools.product(layer_values, alpha_values, noise_axis, seeds):
            configs.append(_checked(replace(base, method=name, layers=layers, alpha=alpha, correction=correction,
                                            noise=noise, seed=seed), source))
    counts = Counter(run_id(c) for c in configs)
    duplicates = sorted(i for i, count in counts.items() if count > 1)
    if duplicates:
        raise ConfigError(f"{source}: the grid names some runs twice ({', '.join(duplicates[:5])}); "
                          "remove the repeated methods/layers/alphas")
    return SweepSpec(name=values["name"].strip(), configs=configs, out=values.get("out"),
                     storage=values.get("storage"), source=source)


def _base_config(values: dict, source: str) -> RunConfig:
    """The settings every run shares: [settings], and the top-level dataset, data and epochs."""
    settings = dict(values.get("settings", {}))
    clash = sorted(set(settings) & set(AXIS_FIELDS))
    if clash:
        raise ConfigError(f"{source}: put {', '.join(clash)} at the top level of the spec, not under [settings]")
    known = {f.name for f in fields(RunConfig)}
    bad = sorted(set(settings) - known)
    if bad:
        raise ConfigError(f"{source}: unknown run setting(s) {', '.join(bad)} under [settings]; "
                          f"valid: {', '.join(sorted(known - set(AXIS_FIELDS)))}")
    base_values = {**settings, "dataset": values.get("dataset", "spiral")}
    base_values.update({key: values[key] for key in ("data", "epochs") if key in values})
    try:
        return RunConfig(**base_values)
    except TypeError as error:
        raise ConfigError(f"{source}: {error}") from None


def _method_entry(entry: Any, source: str) -> tuple[str, Optional[list], Optional[list], Optional[str]]:
    """(name, own layers, own alphas, correction) of one entry of `methods`: a preset name, or a
    table with its own axes."""
    if isinstance(entry, str):
        return entry, None, None, None
    if not isinstance(entry, dict):
        raise ConfigError(f"{source}: each method is a preset name or a table, got {entry!r}")
    extra = sorted(set(entry) - {"method", "layers", "alphas", "alpha", "correction"})
    if extra or "method" not in entry:
        raise ConfigError(f"{source}: a method table needs 'method' and may have layers, alphas, correction; "
                          f"got {entry!r}")
    own_layers = ([_layers_value(v, source) for v in _as_list(entry["layers"], "layers")]
                  if "layers" in entry else None)
    raw_alphas = entry.get("alphas", entry.get("alpha"))
    own_alphas = ([_number_value(a, "alphas", source) for a in _as_list(raw_alphas, "alphas")]
                  if raw_alphas is not None else None)
    return entry["method"], own_layers, own_alphas, entry.get("correction")


def _checked(config: RunConfig, source: str) -> RunConfig:
    """`config`, checked as `latentmix train` checks it: every value now, not each run failing later."""
    try:
        config.validate("spec")
        config.resolved_method()
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    return config
