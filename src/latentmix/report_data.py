"""The runs a report reads: every run folder of a sweep or reproduce output folder
(``DIR/runs/<run_id>/`` with config.json, metrics.csv, result.json), or every trial of an Optuna
sweep store (a storage URL), as `RunRecord`s with their table rows assigned.

A report must show unfinished and damaged runs for what they are: a run without result.json is
unfinished (kept, with its curves so far), a file that is there but cannot be read is damage (the
folder is skipped and named), and labels used as given are filed by their measured share of wrong
labels, never as "0% noise".
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from latentmix.errors import ConfigError
from latentmix.run_folder import RunFolder
from latentmix.summary import RunSummary
from latentmix.summary_tables import GIVEN, UNKNOWN_RATE


# Loading shows a progress bar (stderr) from this many runs on.
PROGRESS_MIN_RUNS = 50

# Summary keys of the tables: best / last validation accuracy, the accuracy selected by noisy-
# validation accuracy, detection AUC of the label issues, the estimated and actual share of wrong labels.
BEST, LAST, AUC = "best_val_acc", "last_val_acc", "detection_auc"
SELECTED, EST_NOISE, ACTUAL_NOISE = "selected_val_acc", "estimated_noise_rate", "actual_noise_rate"
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
