"""Checks of what a user hands us, at the boundary, each declared once.

* the rules a `RunConfig` field's value must meet (`whole_number`, `number`, `one_of`, ...): each
  field names its own in its declaration (`latentmix.config`), and `RunConfig.validate` applies
  them; the checks of a loaded data set are `latentmix.data.checks`'.
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

# Width multipliers of the CNNs beyond this give billions of weights (PreAct ResNet-18 x16: ~2.8e9).
MAX_WIDTH = 16.0
# The largest seed: torch's and NumPy's generators take 64-bit seeds, and a larger one was an
# "Overflow when unpacking long long" traceback.
MAX_SEED = 2**63 - 1
# Largest learning rate / weight decay taken (SGD steps of lr x gradient; the protocols use <= 0.1).
MAX_STEP = 1000.0

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
