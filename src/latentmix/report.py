"""Tables from run results: mean ± std over seeds, the paper's numbers beside ours; whole reports.

The table functions (`aggregate`, `value_table` and its markdown `markdown_table`,
`results_csv_rows`) take a list of run summaries (the dicts of `RunSummary.to_dict()` /
result.json) with a ``row`` key (`latentmix.experiments.row_label`) added by the grid runner.
`value_table` returns a `latentmix.table.Table`, which report.md and report.html are both
written from.

`load_report_data` reads the runs of a sweep or reproduce output folder (``DIR/runs/<run_id>/``
with config.json, metrics.csv, result.json) or of an Optuna sweep store (a storage URL), and
`write_report` turns them into report.md, report.csv, runs.csv, PNG figures and one self-contained
report.html (the `latentmix report` command, see docs/reports.md).
"""

from __future__ import annotations

import base64
import csv
import datetime as _datetime
import html as _html
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from latentmix.errors import ConfigError
from latentmix.run_folder import RunFolder
from latentmix.summary import RunSummary
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


# ============================================================================================
# Whole reports: load the runs of an output folder or a sweep store, write tables, plots, HTML
# ============================================================================================

# Loading shows a progress bar (stderr) from this many runs on.
PROGRESS_MIN_RUNS = 50
# Summary keys of the tables: best / last validation accuracy, the accuracy selected by noisy-
# validation accuracy, detection AUC of the label issues, the estimated and actual share of wrong labels.
BEST, LAST, AUC = "best_val_acc", "last_val_acc", "detection_auc"
SELECTED, EST_NOISE, ACTUAL_NOISE = "selected_val_acc", "estimated_noise_rate", "actual_noise_rate"
# Methods in the order the paper lists them; other methods follow in alphabetical order.
METHOD_ORDER = ("ce", "m", "lr-m", "m-dyr-s", "m-dyr-h", "lr-m-dyr-s", "lr-m-dyr-h", "dlr-m-dyr-h", "lr-m-dyr-h-0-4")
STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


@dataclass
class RunRecord:
    """One run as the report sees it: its table row, settings, summary (None: unfinished) and
    per-epoch metrics (metrics.csv rows with numbers parsed; a store without the run folder gives
    only epoch and val_acc)."""

    run_id: str
    dataset: str
    method: str
    layers: Optional[str]
    noise: float
    seed: Optional[int]
    config: dict = field(default_factory=dict)
    noise_kind: str = "symmetric"
    result: Optional[RunSummary] = None
    metrics: list = field(default_factory=list)
    run_dir: Optional[str] = None
    row: str = ""
    wall_time_s: Optional[float] = None  # from timing.json (result.json holds no timings)

    @property
    def finished(self) -> bool:
        return self.result is not None

    def summary(self) -> dict:
        """result.json with the report's row, run id and settings; the detection AUC of the last
        epoch that has one when the summary lacks it."""
        out = self.result.to_dict() if self.result is not None else {}
        out.update(row=self.row, run_id=self.run_id, dataset=self.dataset, noise=self.noise, noise_kind=self.noise_kind,
                   seed=self.seed, run_dir=self.run_dir)
        if out.get(AUC) is None:
            values = [row.get(AUC) for row in self.metrics if row.get(AUC) is not None]
            out[AUC] = values[-1] if values else None
        if out.get("wall_time_s") is None:
            out["wall_time_s"] = self.wall_time_s
        return out


@dataclass
class ReportData:
    source: str  # what was read, for the header (a folder, or a storage URL without its password)
    kind: str  # "folder" or "storage"
    runs: list
    studies: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # run folders that could not be read: "NAME (what is unreadable)"

    def finished(self, dataset: Optional[str] = None) -> list:
        return [r for r in self.runs if r.finished and (dataset is None or r.dataset == dataset)]

    @property
    def datasets(self) -> list:
        return sorted({r.dataset for r in self.runs})


@dataclass
class ReportFiles:
    out: Path
    markdown: Path
    csv: Path
    runs_csv: Path
    html: Path
    figures: list


# ---- loading ---------------------------------------------------------------------------------


def resolve_source(source: str, study: Optional[str] = None) -> tuple[str, str]:
    """("folder", path) or ("storage", URL) for the command's DIR_OR_STORAGE argument. A path to a
    .db file is read as a SQLite store; a folder with --study reads the folder's sweep.db."""
    text = str(source)
    if "://" in text:
        return "storage", text
    path = Path(text)
    if path.is_file() and path.suffix in STORE_SUFFIXES:
        return "storage", f"sqlite:///{path.resolve().as_posix()}"
    if not path.exists():
        raise ConfigError(f"{text}: no such folder; give a sweep or reproduce output folder (with runs/<run_id>/ "
                          "inside) or a sweep store URL such as sqlite:///OUT/sweep.db")
    if not path.is_dir():
        raise ConfigError(f"{text} is not a folder; give a sweep or reproduce output folder or a store URL")
    if study is not None:
        database = path / "sweep.db"
        if not database.exists():
            raise ConfigError(f"--study {study!r} reads a sweep store, but {path} has no sweep.db; "
                              "pass the store URL instead")
        return "storage", f"sqlite:///{database.resolve().as_posix()}"
    return "folder", str(path)


def load_report_data(source: str, study: Optional[str] = None, progress: bool = True) -> ReportData:
    """The runs of an output folder or a sweep store (see `resolve_source`), rows assigned."""
    kind, where = resolve_source(source, study)
    data = load_store(where, study, progress) if kind == "storage" else load_folder(where, progress)
    assign_rows(data.runs)
    return data


def _progress(iterable, total: int, enabled: bool, what: str):
    from tqdm.auto import tqdm

    # disable=None: no bar where stderr is no terminal
    return tqdm(iterable, total=total, desc=what, unit="run", disable=None if enabled and total >= PROGRESS_MIN_RUNS else True,
                leave=False, dynamic_ncols=True)


def _number(value):
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return value
    if value in ("True", "False"):
        return value == "True"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return None if math.isnan(number) else number


def read_metrics(path: Path) -> list[dict]:
    """metrics.csv rows with numbers parsed (empty cells: None); [] when missing or unreadable."""
    try:
        with Path(path).open(newline="") as handle:
            rows = [{key: _number(value) for key, value in row.items()} for row in csv.DictReader(handle)]
    except (OSError, ValueError, csv.Error):
        return []
    for index, row in enumerate(rows, start=1):
        row["epoch"] = int(row["epoch"]) if isinstance(row.get("epoch"), (int, float)) else index
    return rows


def _read_json(path: Path) -> Optional[dict]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def run_folders(root: Path) -> list[Path]:
    """The run folders of an output folder: ROOT/runs/*/ (or ROOT/*/, or ROOT itself) holding a
    config.json or a result.json."""
    def is_run(path: Path) -> bool:
        return path.is_dir() and ((path / "config.json").exists() or (path / "result.json").exists())

    root = Path(root)
    if is_run(root):
        return [root]
    base = root / "runs" if (root / "runs").is_dir() else root
    return sorted(path for path in base.iterdir() if is_run(path))


def _record(run_id: str, config: dict, result: Optional[RunSummary], metrics: list, run_dir: Optional[str]) -> RunRecord:
    from latentmix.run_folder import read_wall_time

    known = result if result is not None else RunSummary()  # where the config is silent
    noise = config.get("noise", known.noise)
    noise_kind = str(config.get("noise_kind") or known.noise_kind or "symmetric")
    if not noise and labels_as_given(config, result):
        # no synthetic noise on labels as given: filed by their measured rate (a --noisy-labels file, a
        # file's clean_labels), or as unknown (no clean reference), never as 0%
        actual = known.actual_noise_rate
        noise, noise_kind = (actual if isinstance(actual, (int, float)) else UNKNOWN_RATE), GIVEN
    seed = config.get("seed", known.seed)
    return RunRecord(
        run_id=run_id, dataset=str(config.get("dataset") or known.dataset or "unknown"),
        method=str(config.get("method") or known.method or run_id), layers=config.get("layers"),
        noise=round(float(noise or 0.0), 6), seed=None if seed is None else int(seed), config=config, result=result,
        noise_kind=noise_kind, metrics=metrics, run_dir=run_dir, wall_time_s=read_wall_time(run_dir) if run_dir else None,
    )


def labels_as_given(config: dict, result: Optional[RunSummary]) -> bool:
    """Whether a run trained on labels as given, with no synthetic noise that a rate describes:
    measured noisy labels (``actual_noise_rate`` > 0 with no ``noise``), or a user's data without a
    clean reference (``actual_noise_rate`` null; before the run finishes: a --data file)."""
    if result is not None:
        actual = result.actual_noise_rate
        return (isinstance(actual, (int, float)) and actual > 0) or result.val_acc_on_given_labels
    return bool(config.get("data") or config.get("noisy_labels_file"))


def load_folder(root: str | Path, progress: bool = True) -> ReportData:
    """Every run folder under ``ROOT/runs``: config.json, result.json (absent: unfinished), metrics.csv."""
    root = Path(root)
    folders = run_folders(root)
    if not folders:
        raise ConfigError(f"no runs in {root}: expected run folders {root}/runs/<run_id>/ holding config.json, "
                          "metrics.csv and result.json (the output of latentmix reproduce or sweep run)")
    runs, skipped = [], []
    for folder in _progress(folders, len(folders), progress, "loading runs"):
        config_doc = _read_json(folder / "config.json")
        result = RunFolder(folder).read_result()
        # A file that is there but cannot be read is damage, not an unfinished run: the folder is
        # skipped and named (a damaged result.json read as "unfinished" hid finished runs).
        damaged = [name for name, doc in (("config.json", config_doc), ("result.json", result))
                   if doc is None and (folder / name).exists()]
        if damaged or (config_doc is None and result is None):
            skipped.append(f"{folder.name} ({', '.join(damaged)} unreadable)" if damaged else folder.name)
            continue
        config = (config_doc or {}).get("config", {}) if isinstance((config_doc or {}).get("config"), dict) else {}
        summary = None if result is None else RunSummary.from_dict(result)
        runs.append(_record(folder.name, config, summary, read_metrics(folder / "metrics.csv"), str(folder.resolve())))
    return ReportData(source=str(root.resolve()), kind="folder", runs=runs, skipped=skipped)


def skipped_text(data: ReportData, limit: int = 10) -> str:
    """The skipped run folders, named (the first `limit`)."""
    more = f" and {len(data.skipped) - limit} more" if len(data.skipped) > limit else ""
    return ", ".join(data.skipped[:limit]) + more


def load_store(url: str, study: Optional[str] = None, progress: bool = True) -> ReportData:
    """The runs of one sweep (`study`) or of every sweep in an Optuna store. A run's summary is its
    COMPLETE trial's ``result`` attribute; its curves come from ``run_dir/metrics.csv`` where that
    folder is readable here, else from the trial's per-epoch validation accuracies."""
    from latentmix.sweep import reading_store

    with reading_store(url):
        return _load_store(url, study, progress)


def _load_store(url: str, study: Optional[str], progress: bool) -> ReportData:
    from optuna.trial import TrialState

    from latentmix.sweep import RESULT_ATTR, SweepStore, display_url

    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        raise ConfigError(f"no sweep store at {url} (nothing has run there yet?)")
    store = SweepStore(url)
    names = [study] if study else store.study_names()
    if not names:
        raise ConfigError(f"the store {display_url(url)} holds no sweeps")
    studies = [store.load(name) for name in names]
    def done(trial) -> bool:
        return trial.state == TrialState.COMPLETE and RESULT_ATTR in trial.user_attrs

    chosen: dict[str, object] = {}  # per run id: its COMPLETE trial with a summary, else its latest trial
    for loaded in studies:
        for trial in loaded.get_trials(deepcopy=False):
            rid = trial.user_attrs.get("run_id")
            if rid is None:
                continue
            current = chosen.get(rid)
            if current is None or (done(trial) and not done(current)) or (
                    not done(current) and not done(trial) and trial.number >= current.number):
                chosen[rid] = trial
    runs = []
    for rid, trial in _progress(list(chosen.items()), len(chosen), progress, "loading runs"):
        attrs = trial.user_attrs
        result = RunSummary.from_dict(attrs[RESULT_ATTR]) if done(trial) else None
        run_dir = attrs.get("run_dir")
        metrics = read_metrics(Path(run_dir) / "metrics.csv") if run_dir else []
        if not metrics and trial.intermediate_values:
            metrics = [{"epoch": int(epoch), "val_acc": float(value)}
                       for epoch, value in sorted(trial.intermediate_values.items())]
        runs.append(_record(rid, dict(attrs.get("config") or {}), result, metrics, run_dir))
    return ReportData(source=display_url(url), kind="storage", runs=runs, studies=list(names))


# ---- rows --------------------------------------------------------------------------------------


def assign_rows(runs: Sequence[RunRecord]) -> None:
    """Set each run's row: method and layers; when runs of one row differ in alpha or in an
    overridden correction, those settings are added to the row so they are not averaged together."""
    from latentmix.naming import row_label

    variants: dict[tuple[str, str], set] = defaultdict(set)
    for run in runs:
        run.row = row_label(run.method, run.layers, run.dataset)
        variants[(run.dataset, run.row)].add((run.config.get("alpha"), run.config.get("correction")))
    for run in runs:
        if len(variants[(run.dataset, run.row)]) > 1:
            alpha, correction = run.config.get("alpha"), run.config.get("correction")
            extra = [f"α={alpha:g}" if alpha is not None else "α=default"]
            if len({v[1] for v in variants[(run.dataset, run.row)]}) > 1:
                extra.append(f"correction {correction or 'default'}")
            run.row = f"{run.row} [{', '.join(extra)}]"


_RANGE_ROW = re.compile(r"^(?P<method>lr-m|m)\((?P<low>\d+)-(?P<high>\d+)\)$")


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
        match = _RANGE_ROW.match(row)
        if match and (match["method"] == "lr-m" or (match["low"], match["high"]) == ("0", "0")):
            return paper.table2_paper(f"{match['low']}-{match['high']}", noise)
        return None
    if dataset == "cifar10":
        return paper.table1_paper(row, noise, which)
    return None


# ---- tables ------------------------------------------------------------------------------------


@dataclass
class DatasetTables:
    dataset: str
    rows: list
    noise_rates: list
    tables: list  # `Table`s, written as markdown (report.md) and as HTML (report.html)
    csv_rows: list


def _accuracy_word(dataset: str, data: Optional[ReportData] = None) -> str:
    """What the accuracies of a data set's runs are measured on: the test set (CIFAR-10), the
    validation set, or the validation rows' given labels where no run had a clean reference
    (`RunSummary.val_acc_on_given_labels`: agreement with labels that may be wrong)."""
    if dataset == "cifar10":
        return "test"
    runs = data.finished(dataset) if data is not None else []
    if runs and all(run.result.val_acc_on_given_labels for run in runs):
        return "given-label validation"
    return "validation"


def seeds_text(low: int, high: Optional[int] = None) -> str:
    """How a table's cells aggregate seeds, for its title: "1 seed" where every cell is one run
    (`format_cell` then shows no ± std, and the title must not promise one), else "mean ± std over
    N seeds" (or "over 1-3 seeds" where cells differ)."""
    high = low if high is None else high
    if high <= 1:
        return "1 seed" if high == 1 else "no seeds"
    return f"mean ± std over {low if low == high else f'{low}-{high}'} seeds"


def _seed_text(results: Sequence[dict]) -> str:
    counts = sorted({cell["n"] for cell in aggregate(results, BEST, 1.0).values()})
    return seeds_text(counts[0], counts[-1]) if counts else "no seeds"


def dataset_tables(data: ReportData, dataset: str) -> DatasetTables:
    """The tables of one data set's finished runs: best and last accuracy (the paper's numbers in
    parentheses where it has them) and the last epoch's detection AUC, each mean ± std over seeds."""
    results = [run.summary() for run in data.finished(dataset)]
    rows = row_order(r["row"] for r in results)
    noise_rates = sorted({noise_column(r["noise"], r.get("noise_kind")) for r in results}, key=column_order)
    word = _accuracy_word(dataset, data)
    epochs = sorted({int(r["epochs"]) for r in results if r.get("epochs") is not None})
    setting = _seed_text(results)
    if epochs:
        setting += f", {epochs[0]} epochs" if len(epochs) == 1 else f", {epochs[0]}-{epochs[-1]} epochs"
    table_name = {"spiral": "paper Table 2", "cifar10": "paper Table 1"}.get(dataset)

    def paper_for(which: str):
        has = any(paper_number(dataset, row, noise, which) is not None for row in rows for noise in noise_rates
                  if not isinstance(noise, tuple))
        return (lambda row, noise: paper_number(dataset, row, noise, which)) if has else None

    tables = []
    for key, which, label in ((BEST, "best", "Best"), (LAST, "last", "Last-epoch"),
                              (SELECTED, "selected", "Selected (by noisy-validation accuracy)")):
        if key == SELECTED and not any(r.get(SELECTED) is not None for r in results):
            continue
        lookup = paper_for(which) if key != SELECTED else None
        title = f"{dataset}: {label} {word} accuracy (%), {setting}"
        if lookup is not None and table_name:
            title += f"; {table_name} in parentheses"
        table = value_table(results, key, rows, noise_rates, paper=lookup, title=title)
        tables.append(mark_paper_footnotes(table, which, noise_rates) if dataset == "cifar10" else table)
    if any(r.get(AUC) is not None for r in results):
        tables.append(value_table(results, AUC, rows, noise_rates, scale=1.0, digits=3,
                                     title=f"{dataset}: noise detection AUC of the label issues, {setting}"))
    if any(r.get(EST_NOISE) is not None for r in results):
        # a share of wrong labels is a measurement, not a score: no cell is "best" (no bold)
        tables.append(value_table(results, EST_NOISE, rows, noise_rates, bold_best=False,
                                     title=f"{dataset}: estimated share of wrong labels (%), {setting}"))
        if any(r.get(ACTUAL_NOISE) is not None for r in results):
            tables.append(value_table(results, ACTUAL_NOISE, rows, noise_rates, bold_best=False,
                                         title=f"{dataset}: actual share of wrong labels (%), {setting}"))

    stats = {key: aggregate(results, key, scale) for key, scale in
             ((BEST, 100.0), (LAST, 100.0), (SELECTED, 100.0), (AUC, 1.0), (EST_NOISE, 100.0), (ACTUAL_NOISE, 100.0))}
    csv_rows = []
    for row in rows:
        for column in noise_rates:
            cell = (row, column)
            if cell not in stats[BEST] and cell not in stats[LAST]:
                continue
            kind, noise = column if isinstance(column, tuple) else ("symmetric", column)
            entry: dict = {"dataset": dataset, "row": row, "noise": None if noise == UNKNOWN_RATE else noise,
                           "noise_kind": kind,
                           "n": stats[BEST].get(cell, stats[LAST].get(cell, {})).get("n")}
            for key, name, which in ((BEST, "best_acc", "best"), (LAST, "last_acc", "last"), (SELECTED, "selected_acc", None),
                                     (AUC, "detection_auc", None), (EST_NOISE, "estimated_noise", None),
                                     (ACTUAL_NOISE, "actual_noise", None)):
                values = stats[key].get(cell)
                entry[f"{name}_mean"] = None if values is None else values["mean"]
                entry[f"{name}_std"] = None if values is None else values["std"]
                if which is not None:
                    entry[f"{name}_paper"] = paper_number(dataset, row, noise, which) if kind == "symmetric" else None
            csv_rows.append(entry)
    return DatasetTables(dataset, rows, noise_rates, tables, csv_rows)


CSV_FIELDS = ("dataset", "row", "noise", "noise_kind", "n", "best_acc_mean", "best_acc_std", "best_acc_paper", "last_acc_mean",
              "last_acc_std", "last_acc_paper", "selected_acc_mean", "selected_acc_std", "detection_auc_mean",
              "detection_auc_std", "estimated_noise_mean", "estimated_noise_std", "actual_noise_mean", "actual_noise_std")
RUN_FIELDS = ("run_id", "dataset", "row", "method", "noise", "noise_kind", "seed", "finished", "epochs", "val_labels", BEST, "best_epoch", LAST,
              SELECTED, "selected_epoch", "last_train_acc_noisy", "last_train_acc_clean", AUC, EST_NOISE, ACTUAL_NOISE,
              "wall_time_s", "run_dir")


def run_rows(data: ReportData) -> list[dict]:
    """One line per run (finished or not), for runs.csv and the HTML page's run list."""
    lines = []
    rank = {row: index for index, row in enumerate(row_order(r.row for r in data.runs))}
    for run in sorted(data.runs, key=lambda r: (r.dataset, rank[r.row], r.noise, r.seed or 0, r.run_id)):
        summary = run.summary()
        lines.append({**{key: summary.get(key) for key in RUN_FIELDS}, "method": run.method, "finished": run.finished,
                      "epochs": summary.get("epochs") if run.finished else len(run.metrics),
                      "noise": None if run.noise == UNKNOWN_RATE else run.noise})
    return lines


# ---- figures -----------------------------------------------------------------------------------


def curve_stats(runs: Sequence[Sequence[dict]], key: str, scale: float = 1.0):
    """(epochs, mean, std) of a metric over runs at the epochs where any run has it; None when no
    run has it (sparse columns such as training accuracy tracked every 10th epoch stay joined)."""
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        for row in run:
            value = row.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
                by_epoch[int(row["epoch"])].append(float(value) * scale)
    if not by_epoch:
        return None
    epochs = sorted(by_epoch)
    mean = np.array([np.mean(by_epoch[e]) for e in epochs])
    std = np.array([np.std(by_epoch[e]) if len(by_epoch[e]) > 1 else 0.0 for e in epochs])
    return np.array(epochs), mean, std


def plot_series(series: dict, path: Path, title: str, ylabel: str) -> Optional[Path]:
    """One line per label (mean; shaded ± std over runs when there are few lines); `series` maps
    label -> curve_stats."""
    from latentmix.plots import _pyplot, _save

    series = {label: stats for label, stats in series.items() if stats is not None}
    if not series:
        return None
    epochs_seen = {int(epoch) for epochs, _, _ in series.values() for epoch in epochs}
    if all(len(epochs) == 1 for epochs, _, _ in series.values()):
        # known at one epoch only (population runs' detection AUC): one point per method, on an
        # axis of the values, not a lone dot per method on an epoch axis such as 284..316
        from latentmix.plots import plot_points

        at = f"epoch {epochs_seen.pop()}" if len(epochs_seen) == 1 else "last epoch"
        return plot_points(list(series), [float(m[0]) for _, m, _ in series.values()],
                           [float(sd[0]) for _, _, sd in series.values()], path, f"{title}, at {at}", ylabel)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colors = plt.get_cmap("tab10" if len(series) <= 10 else "tab20")
    for index, (label, (epochs, mean, std)) in enumerate(series.items()):
        color = colors(index % colors.N)
        marker = "o" if len(epochs) <= 30 else None
        ax.plot(epochs, mean, "-", marker=marker, markersize=2.5, color=color, lw=1.3, label=label)
        if len(series) <= SHADE_MAX_SERIES and np.any(std > 0):
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.12, lw=0)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=1 if len(series) <= 12 else 2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, Path(path))


SHADE_MAX_SERIES = 5  # more lines than this: no ± std bands (they would cover each other)


def _noise_tag(column) -> str:
    """n20 (symmetric 20%), asym_n20 (class-dependent 20%): the file-name part of a column."""
    if isinstance(column, tuple):
        if column == (GIVEN, UNKNOWN_RATE):
            return GIVEN
        return f"{column[0][:4]}_n{column[1] * 100:g}"
    return f"n{column * 100:g}"


CURVE_KEYS = (
    ("val_acc", 100.0, "validation accuracy (%)", "{word} accuracy"),
    ("train_acc_noisy", 100.0, "training accuracy vs given labels (%)", "training accuracy (vs the given, noisy labels)"),
    (AUC, 1.0, "detection AUC", "noise detection AUC"),
)


def range_grid(rows: Sequence[str]) -> list[tuple[str, str]]:
    """(row, layer range) of the rows of a Table-2-like grid (lr-m(a-b), and m(0-0)); [] unless at
    least two lr-m(a-b) rows."""
    found = [(row, f"{m['low']}-{m['high']}") for row in rows if (m := _RANGE_ROW.match(row))
             and (m["method"] == "lr-m" or (m["low"], m["high"]) == ("0", "0"))]
    if sum(1 for row, _ in found if row.startswith("lr-m(")) < 2:
        return []
    return sorted(found, key=lambda item: tuple(int(n) for n in item[1].split("-")))


def dataset_figures(data: ReportData, tables: DatasetTables, out: Path, prefix: str = "") -> list[tuple[Path, str]]:
    """The PNGs of one data set: per noise rate, each method's mean validation accuracy, training
    accuracy and detection AUC curves; a layer range x noise heatmap of best accuracy for a
    Table-2-like grid (and the paper's Table 2 beside it on the spirals). Returns (path, caption)."""
    from latentmix.plots import plot_heatmap

    dataset = tables.dataset
    word = _accuracy_word(dataset, data)
    runs = data.finished(dataset)
    figures = []
    for column in tables.noise_rates:
        for key, scale, ylabel, what in CURVE_KEYS:
            series = {row: curve_stats([r.metrics for r in runs if r.row == row
                                        and noise_column(r.noise, r.noise_kind) == column], key, scale)
                      for row in tables.rows}
            title = f"{dataset}, {column_label(column)}{'' if isinstance(column, tuple) and column[0] == GIVEN else ' noise'}: {what.format(word=word)} per method (mean over seeds)"
            label = ylabel.replace("validation", word)
            path = plot_series(series, out / f"{prefix}{key}_{_noise_tag(column)}.png", title, label)
            if path is not None:
                figures.append((path, title))
    grid = range_grid(tables.rows)
    if grid:
        stats = aggregate([r.summary() for r in runs], BEST)
        values = np.array([[stats.get((row, n), {}).get("mean", math.nan) for n in tables.noise_rates]
                           for row, _ in grid])
        columns = [column_label(n) for n in tables.noise_rates]
        ranges = [r for _, r in grid]
        title = f"{dataset}: best {word} acc. (%), layer range x noise"
        figures.append((plot_heatmap(values, ranges, columns, out / f"{prefix}heatmap_best_acc.png", title=title,
                                     colorbar_label="accuracy (%)"), title))
        if dataset == "spiral":
            theirs = np.array([[paper_number(dataset, row, n) or math.nan for n in tables.noise_rates]
                               for row, _ in grid], dtype=float)
            if not np.all(np.isnan(theirs)):
                title = "paper Table 2: best val. acc. (%), layer range x noise"
                figures.append((plot_heatmap(theirs, ranges, columns, out / f"{prefix}heatmap_paper_table2.png",
                                             title=title), title))
    return figures


# ---- writing -----------------------------------------------------------------------------------


def _header(data: ReportData, generated: str) -> dict:
    finished = sum(1 for r in data.runs if r.finished)
    seeds = sorted({r.seed for r in data.runs if r.seed is not None})
    lines = {
        "source": data.source + (f" (sweeps: {', '.join(data.studies)})" if data.studies else ""),
        "generated": generated,
        "runs": f"{len(data.runs)} ({finished} finished, {len(data.runs) - finished} unfinished"
                + (f", {len(data.skipped)} unreadable folder(s) skipped: {skipped_text(data)}" if data.skipped else "")
                + ")",
        "data sets": ", ".join(data.datasets),
        "noise": ", ".join(column_label(c) for c in sorted({noise_column(r.noise, r.noise_kind) for r in data.runs},
                                                             key=column_order)),
        "seeds": ", ".join(str(s) for s in seeds) or "–",
    }
    return lines


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; font-size: 0.92em; color: #444; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
table { border-collapse: collapse; margin: 1em 0 0.3em; font-size: 0.88em; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.4em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
thead th { background: #f3f4f6; } tbody th { text-align: left; font-weight: 500; }
tbody tr:nth-child(even) { background: #fafafa; }
p.note { font-size: 0.85em; color: #555; margin: 0.2em 0; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
details { margin: 1.5em 0; } summary { cursor: pointer; font-weight: 600; }
.scroll { overflow-x: auto; }
"""


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_html(data: ReportData, sections: Sequence[tuple[DatasetTables, list]], runs: Sequence[dict],
                generated: str) -> str:
    """One self-contained page: header, every table, every PNG inline (base64), the run list."""
    esc = _html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>latentmix report: {esc(data.source)}</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>latentmix report</h1>",
             "<p>Noisy-label training runs: best and last accuracy and noise-detection AUC as mean ± std over "
             "seeds, grouped by method (and mixup layers) and noise rate; the paper's numbers in parentheses "
             "where it reports them; curves of each method's mean over seeds.</p>", '<dl class="meta">']
    parts += [f"<dt>{esc(key)}</dt><dd>{esc(value)}</dd>" for key, value in _header(data, generated).items()]
    parts.append("</dl>")
    for tables, figures in sections:
        parts.append(f"<h2>{esc(tables.dataset)}</h2>")
        parts += [f'<div class="scroll">{table.html()}</div>' for table in tables.tables]
        if figures:
            parts.append("<h3>Figures</h3>")
        for path, caption in figures:
            parts.append(f'<figure><img src="{_png_data_uri(path)}" alt="{esc(path.name)}">'
                         f"<figcaption>{esc(caption)} ({esc(path.name)})</figcaption></figure>")
    parts.append(f"<details><summary>All {len(runs)} runs</summary><div class=\"scroll\"><table><thead><tr>"
                 + "".join(f"<th>{esc(key)}</th>" for key in RUN_FIELDS if key != "run_dir") + "</tr></thead><tbody>")
    for line in runs:
        cells = []
        for key in RUN_FIELDS:
            if key == "run_dir":
                continue
            value = line.get(key)
            if isinstance(value, float):
                value = f"{value:.4g}"
            cells.append(f"<td>{esc('' if value is None else str(value))}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table></div></details></body></html>")
    return "\n".join(parts) + "\n"


def render_markdown(data: ReportData, sections: Sequence[tuple[DatasetTables, list]], generated: str) -> str:
    lines = ["# latentmix report", ""]
    lines += [f"- **{key}**: {value}" for key, value in _header(data, generated).items()]
    for tables, figures in sections:
        lines += ["", f"## {tables.dataset}", ""]
        for table in tables.tables:
            lines += [table.markdown().rstrip("\n"), ""]
        for path, caption in figures:
            lines += [f"![{caption}]({path.name})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_report(data: ReportData, out: str | Path, plots: bool = True) -> ReportFiles:
    """report.md, report.csv (one line per row x noise), runs.csv (one line per run), the PNGs and
    report.html (everything inline) in `out`."""
    from latentmix.io import atomic_write_csv, atomic_write_text

    out = Path(out)
    finished = [r for r in data.runs if r.finished]
    if not finished:
        skipped = (f"; skipped {len(data.skipped)} run folder(s) with unreadable files: {skipped_text(data)} (restore "
                   "or retrain them)") if data.skipped else ""
        raise ConfigError(f"no finished runs in {data.source} ({len(data.runs)} readable run(s), none with a result "
                          f"yet{skipped})")
    out.mkdir(parents=True, exist_ok=True)
    generated = _datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    datasets = sorted({r.dataset for r in finished})
    sections = []
    for dataset in datasets:
        tables = dataset_tables(data, dataset)
        prefix = f"{dataset}_" if len(datasets) > 1 else ""
        figures = dataset_figures(data, tables, out, prefix) if plots else []
        sections.append((tables, figures))
    runs = run_rows(data)
    files = ReportFiles(out=out, markdown=out / "report.md", csv=out / "report.csv", runs_csv=out / "runs.csv",
                        html=out / "report.html", figures=[path for _, figures in sections for path, _ in figures])
    atomic_write_text(files.markdown, render_markdown(data, sections, generated))
    atomic_write_csv(files.csv, [row for tables, _ in sections for row in tables.csv_rows], CSV_FIELDS)
    atomic_write_csv(files.runs_csv, runs, RUN_FIELDS)
    atomic_write_text(files.html, render_html(data, sections, runs, generated))
    return files
