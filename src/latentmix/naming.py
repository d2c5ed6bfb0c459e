"""How runs and table rows are named, one place for every table, the sweep store, the report and
the command line: `run_id` (a run's folder name and its key in the sweep store) and `row_label`
(a table row). Kept below the experiments, the sweep and the report, so that none of them has to
import another for a name."""

from __future__ import annotations

from typing import Any, Optional

from latentmix.errors import ConfigError
from latentmix.mixing import format_layers, parse_layers


def run_id(config: Any) -> str:
    """A readable, stable folder name for a run: method, layers, noise (kind and rate), seed (and alpha if set)."""
    layers = "" if config.layers is None else f"_L{format_layers(parse_layers(config.layers))}"
    alpha = "" if config.alpha is None else f"_a{config.alpha:g}"
    correction = "" if config.correction is None else f"_{config.correction}"
    kind = "_asym" if config.noise_kind == "asymmetric" else ""
    return f"{config.method}{layers}{correction}{alpha}{kind}_n{config.noise:g}_s{config.seed}".replace(",", "+")


def row_label(method: str, layers: Optional[str] = None, dataset: Optional[str] = None) -> str:
    """The table row of a run: the method, and its layers when they were overridden ("lr-m(1-3)").
    Every table, the sweep store and `latentmix report` name rows with this function.

    On the spirals input mixup is "m(0-0)", as the paper's Table 2 names it beside the lr-m(a-b)
    ranges. Layers that cannot be read (a hand-edited config.json) are shown as written."""
    if layers is None:
        row = method
    else:
        try:
            row = f"{method}({format_layers(parse_layers(layers))})"
        except (ConfigError, ValueError):
            row = f"{method}({layers})"
    return "m(0-0)" if dataset == "spiral" and row == "m" else row
