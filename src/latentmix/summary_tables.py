"""Tables of run summaries: mean ± std over seeds, one line per row (method and layers), one column
per noise rate (or class-dependent / given-label noise), the paper's numbers beside ours.

The experiments (each paper table), the benchmarks and `latentmix report` all aggregate seeds and
label columns through these functions, so a number reads the same wherever it is printed. They take
a list of run summaries (the dicts of `RunSummary.to_dict()` / result.json) with a ``row`` key
(`latentmix.naming.row_label`); `value_table` returns a `latentmix.table.Table`, which markdown and
HTML are both written from.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from latentmix.table import Cell, Table


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    array = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))], dtype=float)
    if array.size == 0:
        return math.nan, math.nan
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


# The noise "kind" of runs on labels as given (a user's file, a --noisy-labels file): no synthetic
# noise was added, and the rate is the measured one, or UNKNOWN_RATE without a clean reference.
GIVEN = "given"
UNKNOWN_RATE = -1.0


def noise_column(noise: float, kind: Optional[str] = "symmetric"):
    """A table column's key: the rate for symmetric noise (as every table has had), ("asymmetric",
    rate) for class-dependent noise, ("given", rate) for labels as given (`GIVEN`)."""
    rate = round(float(noise), 6)
    return rate if kind in (None, "symmetric") else (str(kind), rate)


def column_order(column) -> tuple:
    """Symmetric columns first, each kind by rate."""
    return (1, column[0] == GIVEN, column[1]) if isinstance(column, tuple) else (0, False, column)


def column_label(column) -> str:
    """'20%' for symmetric noise, 'asym. 20%' for class-dependent noise, 'given labels (22% wrong)'
    or 'given labels (noise unknown)' for labels as given: never '0%' for noise nobody measured."""
    if isinstance(column, tuple):
        kind, rate = column
        if kind == GIVEN:
            return "given labels (noise unknown)" if rate == UNKNOWN_RATE else f"given labels ({rate:.0%} wrong)"
        return f"{kind[:4]}. {rate:.0%}"
    return f"{column:.0%}"


def aggregate(results: Iterable[dict], value_key: str, scale: float = 100.0) -> dict[tuple, dict]:
    """Group runs by (row, noise column): mean, std and count of `value_key` (times `scale`)."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for result in results:
        value = result.get(value_key)
        if value is None:
            continue
        groups[(result["row"], noise_column(result["noise"], result.get("noise_kind")))].append(float(value) * scale)
    return {key: dict(zip(("mean", "std"), mean_std(values)), n=len(values)) for key, values in groups.items()}


def seed_differences(results: Iterable[dict], row: str, reference: str, value_key: str,
                     scale: float = 100.0) -> dict:
    """Paired differences, seed by seed: {noise column: {seed: (row's value - reference's) x scale}}
    for every (column, seed) where both rows have the value. The same seed has the same noisy labels,
    data order and initial weights for every method, so the difference of one seed is free of the
    spread those bring to each row (benchmarks/paired_differences.py, `reproduce fashion-mnist --peers`).
    Reads run summaries or runs.csv rows (values may be strings; "" counts as missing)."""
    values: dict = defaultdict(dict)
    for result in results:
        value = result.get(value_key)
        if result.get("row") not in (row, reference) or value in (None, ""):
            continue
        column = noise_column(float(result["noise"]), result.get("noise_kind") or "symmetric")
        values[(column, int(result["seed"]))][result["row"]] = float(value)
    differences: dict = defaultdict(dict)
    for (column, seed), pair in values.items():
        if row in pair and reference in pair:
            differences[column][seed] = scale * (pair[row] - pair[reference])
    return {column: dict(sorted(seeds.items())) for column, seeds in differences.items()}


def beats_beyond_spread(differences: Iterable[Sequence[float]]) -> bool:
    """Whether a method beats each of several others beyond the seed spread: `differences` holds,
    per other method, the paired per-seed differences (this method minus that one); every list must
    have at least two seeds (one seed has no spread) and lie wholly above zero (its minimum > 0), i.e.
    the method wins on every seed against every one of them. No lists: nothing to beat, False."""
    lists = [list(d) for d in differences]
    return bool(lists) and all(len(d) >= 2 and min(d) > 0 for d in lists)


def format_cell(stats: Optional[dict], paper: Optional[float] = None, digits: int = 1) -> str:
    """"mean ± std (paper)"; one run (n = 1) has no spread to show: "mean (paper)"."""
    if not stats or math.isnan(stats["mean"]):
        return "–"
    cell = f"{stats['mean']:.{digits}f}"
    if stats.get("n", 2) > 1:
        cell += f" ± {stats['std']:.{digits}f}"
    if paper is not None:
        cell += f" ({paper:.1f})"
    return cell


def value_table(
    results: Sequence[dict], value_key: str, rows: Sequence[str], noise_rates: Sequence[float],
    paper: Optional[Callable[[str, float], Optional[float]]] = None, title: str = "", scale: float = 100.0,
    bold_best: bool = True, digits: int = 1,
) -> Table:
    """A table of one summary value: one line per row, one column per noise rate (a rate, symmetric
    noise, or a `noise_column` key), "mean ± std (paper)" cells (`digits` decimals). The best mean
    of each column is bold."""
    stats = aggregate(results, value_key, scale)
    columns = [noise if isinstance(noise, tuple) else noise_column(noise) for noise in noise_rates]
    best = {}
    for column in columns:
        means = [stats[(row, column)]["mean"] for row in rows if (row, column) in stats]
        best[column] = max(means) if means else None
    table_rows = []
    for row in rows:
        cells = []
        for column in columns:
            cell_stats = stats.get((row, column))
            paper_value = paper(row, column) if paper and not isinstance(column, tuple) else None
            bold = bool(bold_best and cell_stats and best[column] is not None and cell_stats["mean"] == best[column])
            cells.append(Cell(format_cell(cell_stats, paper_value, digits=digits), bold))
        table_rows.append((row, cells))
    return Table(title, ["method"] + [column_label(column) for column in columns], table_rows)


def markdown_table(
    results: Sequence[dict], value_key: str, rows: Sequence[str], noise_rates: Sequence[float],
    paper: Optional[Callable[[str, float], Optional[float]]] = None, title: str = "", scale: float = 100.0,
    bold_best: bool = True, digits: int = 1,
) -> str:
    """`value_table` as markdown."""
    return value_table(results, value_key, rows, noise_rates, paper=paper, title=title, scale=scale,
                       bold_best=bold_best, digits=digits).markdown()


def mark_paper_footnotes(table: Table, which: str, noise_rates: Sequence) -> Table:
    """Mark (†) the paper's Table 1 numbers of `table` that carry a footnote in the paper, and add
    each footnote below the table; `which` is "best" or "last", `noise_rates` the table's columns."""
    from latentmix.experiments import paper

    for (method, noise, kind), note in paper.TABLE1_FOOTNOTES.items():
        columns = [i for i, n in enumerate(noise_rates) if not isinstance(n, tuple) and abs(n - noise) < 1e-9]
        cells = table.row(method)
        if kind != which or cells is None or not columns:
            continue
        value = paper.table1_paper(method, noise, kind)
        cell = cells[columns[0]]
        cell.text = cell.text.replace(f"({value:.1f})", f"({value:.1f}†)")
        table.notes.append(f"† Paper, {method} {kind} at {noise:.0%}: {value:.1f} {note}.")
    return table


def results_csv_rows(results: Sequence[dict], value_keys: Sequence[str], scale: float = 100.0) -> list[dict]:
    """One CSV row per (row, noise) with mean/std/n of each value key."""
    per_key = {key: aggregate(results, key, scale) for key in value_keys}
    keys = sorted({k for stats in per_key.values() for k in stats},
                  key=lambda k: (k[0], isinstance(k[1], tuple), k[1] if not isinstance(k[1], tuple) else k[1][1]))
    rows = []
    for row, column in keys:
        kind, noise = column if isinstance(column, tuple) else ("symmetric", column)
        entry: dict = {"row": row, "noise": noise, "noise_kind": kind}
        for key, stats in per_key.items():
            cell = stats.get((row, column))
            entry[f"{key}_mean"] = None if cell is None else cell["mean"]
            entry[f"{key}_std"] = None if cell is None else cell["std"]
            entry[f"{key}_n"] = None if cell is None else cell["n"]
        rows.append(entry)
    return rows


def seeds_text(low: int, high: Optional[int] = None) -> str:
    """How a table's cells aggregate seeds, for its title: "1 seed" where every cell is one run
    (`format_cell` then shows no ± std, and the title must not promise one), else "mean ± std over
    N seeds" (or "over 1-3 seeds" where cells differ)."""
    high = low if high is None else high
    if high <= 1:
        return "1 seed" if high == 1 else "no seeds"
    return f"mean ± std over {low if low == high else f'{low}-{high}'} seeds"


# Methods in the order the paper lists them; other methods follow in alphabetical order.
METHOD_ORDER = ("ce", "m", "lr-m", "m-dyr-s", "m-dyr-h", "lr-m-dyr-s", "lr-m-dyr-h", "dlr-m-dyr-h", "lr-m-dyr-h-0-4")
RANGE_ROW = re.compile(r"^(?P<method>lr-m|m)\((?P<low>\d+)-(?P<high>\d+)\)$")


def row_order(rows: Iterable[str]) -> list[str]:
    """The paper's method order (ce, m, lr-m, the -dyr- methods), then layers low to high."""
    def key(row: str):
        method, _, rest = row.partition("(")
        method = method.split(" [")[0]
        rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
        numbers = tuple(int(n) for n in re.findall(r"\d+", rest.split(")")[0])) if rest else ()
        return rank, method, len(rest) > 0, numbers, row

    return sorted(set(rows), key=key)


def paper_number(dataset: str, row: str, noise: float, which: str = "best") -> Optional[float]:
    """The paper's number beside ours: Table 2 (spirals, best validation accuracy) for ce, m(0-0)
    and lr-m(a-b); Table 1 (CIFAR-10, best or last test accuracy) for its five methods."""
    from latentmix.experiments import paper

    if dataset == "spiral":
        if which != "best":
            return None
        if row == "ce":
            return paper.table2_paper("ce", noise)
        match = RANGE_ROW.match(row)
        if match and (match["method"] == "lr-m" or (match["low"], match["high"]) == ("0", "0")):
            return paper.table2_paper(f"{match['low']}-{match['high']}", noise)
        return None
    if dataset == "cifar10":
        return paper.table1_paper(row, noise, which)
    return None
