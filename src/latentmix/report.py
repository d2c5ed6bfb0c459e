"""Tables from run results: mean ± std over seeds, the paper's numbers beside ours.

Input everywhere is a list of run summaries (the dicts of `RunResult.summary()` / `result.json`)
with a ``row`` key (the table row: method and layers) added by the grid runner.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable, Iterable, Optional, Sequence

import numpy as np


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    array = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))], dtype=float)
    if array.size == 0:
        return math.nan, math.nan
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def aggregate(results: Iterable[dict], value_key: str, scale: float = 100.0) -> dict[tuple[str, float], dict]:
    """Group runs by (row, noise): mean, std and count of `value_key` (times `scale`)."""
    groups: dict[tuple[str, float], list[float]] = defaultdict(list)
    for result in results:
        value = result.get(value_key)
        if value is None:
            continue
        groups[(result["row"], round(float(result["noise"]), 6))].append(float(value) * scale)
    return {key: dict(zip(("mean", "std"), mean_std(values)), n=len(values)) for key, values in groups.items()}


def format_cell(stats: Optional[dict], paper: Optional[float] = None, digits: int = 1) -> str:
    if not stats or math.isnan(stats["mean"]):
        return "–"
    cell = f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"
    if paper is not None:
        cell += f" ({paper:.1f})"
    return cell


def markdown_table(
    results: Sequence[dict], value_key: str, rows: Sequence[str], noise_rates: Sequence[float],
    paper: Optional[Callable[[str, float], Optional[float]]] = None, title: str = "", scale: float = 100.0,
    bold_best: bool = True,
) -> str:
    """A markdown table: one line per row, one column per noise rate, "mean ± std (paper)" cells.
    The best mean of each column is bold."""
    stats = aggregate(results, value_key, scale)
    best = {}
    for noise in noise_rates:
        means = [stats[(row, round(noise, 6))]["mean"] for row in rows if (row, round(noise, 6)) in stats]
        best[noise] = max(means) if means else None
    header = "| method | " + " | ".join(f"{noise:.0%}" for noise in noise_rates) + " |"
    lines = ([f"**{title}**", ""] if title else []) + [header, "|" + "---|" * (len(noise_rates) + 1)]
    for row in rows:
        cells = []
        for noise in noise_rates:
            cell_stats = stats.get((row, round(noise, 6)))
            cell = format_cell(cell_stats, paper(row, noise) if paper else None)
            if bold_best and cell_stats and best[noise] is not None and cell_stats["mean"] == best[noise]:
                cell = f"**{cell}**"
            cells.append(cell)
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def results_csv_rows(results: Sequence[dict], value_keys: Sequence[str], scale: float = 100.0) -> list[dict]:
    """One CSV row per (row, noise) with mean/std/n of each value key."""
    per_key = {key: aggregate(results, key, scale) for key in value_keys}
    keys = sorted({k for stats in per_key.values() for k in stats}, key=lambda k: (k[0], k[1]))
    rows = []
    for row, noise in keys:
        entry: dict = {"row": row, "noise": noise}
        for key, stats in per_key.items():
            cell = stats.get((row, noise))
            entry[f"{key}_mean"] = None if cell is None else cell["mean"]
            entry[f"{key}_std"] = None if cell is None else cell["std"]
            entry[f"{key}_n"] = None if cell is None else cell["n"]
        rows.append(entry)
    return rows
