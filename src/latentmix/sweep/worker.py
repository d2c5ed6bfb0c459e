"""A sweep worker: take waiting runs, train them (alone, or together as a vectorized population),
report each epoch's validation accuracy as the trial's intermediate values, and finish the trial
with the run's best validation accuracy and summary. A run whose folder already holds
``result.json`` is finished from that file without training; a retry resumes from the run
folder's checkpoint (``train(..., resume=True)``).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from latentmix.errors import ConfigError
from latentmix.protocols import protocol_for
from latentmix.run_folder import CHECKPOINT_NAME, RunFolder, read_wall_time, timing_document
from latentmix.summary import RunSummary
from latentmix.sweep.claim import Claim, Heartbeat, claim_runs, population_module
from latentmix.sweep.results import store_record, sweep_counts
from latentmix.sweep.store import SweepStore
from latentmix.sweep.trials import RESULT_ATTR, differing_settings
from latentmix.config import RunConfig

DEFAULT_POPULATION = 32
DEFAULT_POLL_S = 2.0


@dataclass
class WorkerReport:
    """What one worker did."""

    trained: int = 0  # runs trained here (sequentially or in a population)
    resumed: int = 0  # of those, continued from a checkpoint
    reused: int = 0  # finished from an existing result.json, without training
    failed: int = 0  # raised an error (the trial is FAIL with the error message)
    lost: int = 0  # finished here, but the store had already failed the trial (stale heartbeat)
    populations: int = 0  # vectorized populations trained
    stale_failed: int = 0  # trials of dead workers this worker failed (each queued again)
    show_progress: bool = False  # a progress bar over the epochs of each vectorized population

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "show_progress"}


def _load_result(run_dir: Path, config: RunConfig) -> Optional[RunSummary]:
    """A finished run's result.json, if its config.json matches this run (else ConfigError)."""
    folder = RunFolder(run_dir)
    document = folder.read_result()
    if document is None:
        return None
    stored = None
    with contextlib.suppress(ConfigError):  # no readable record: the result alone says the run finished
        stored = folder.saved_record()["config"]
    diff = differing_settings(config.to_dict(), stored) if stored is not None else []
    if diff:
        raise ConfigError(f"{run_dir} holds a finished run with other settings ({', '.join(diff[:3])}); "
                          "move it away or use another --out")
    return RunSummary.from_dict(document)


def set_user_attrs(trial, attrs: dict) -> None:
    """Set several user attributes of a running trial."""
    for key, value in attrs.items():
        trial.storage.set_trial_user_attr(trial._trial_id, key, value)


def _finish(study, claim: Claim, summary: RunSummary, wall_time_s: Optional[float], run_dir: Path,
            report: WorkerReport, how: str) -> None:
    """Record the finished run on its trial (`store_record`) and complete the trial with the run's
    best validation accuracy."""
    import optuna
    from optuna.trial import TrialState

    record = store_record(summary, wall_time_s, how)
    try:
        set_user_attrs(claim.trial, {RESULT_ATTR: record, "run_dir": str(run_dir.resolve()), "trained_as": record["trained_as"]})
        study.tell(claim.trial, float(summary.best_val_acc))
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
        state = claim.trial.storage.get_trial(claim.trial._trial_id).state
        if state != TrialState.COMPLETE:
            report.lost += 1  # its retry will find result.json and finish from it


def _fail(study, claim: Claim, error: BaseException, report: WorkerReport) -> None:
    from optuna.trial import TrialState

    report.failed += 1
    with contextlib.suppress(Exception):
        set_user_attrs(claim.trial, {"error": f"{type(error).__name__}: {error}"[:2000]})
        study.tell(claim.trial, state=TrialState.FAIL)


def _report_missing(trial, metrics: Iterable[dict], reported: set) -> None:
    for row in metrics:
        if row["epoch"] not in reported:
            trial.report(float(row["val_acc"]), int(row["epoch"]))
            reported.add(row["epoch"])


def _train_sequential(study, claim: Claim, run_dir: Path, report: WorkerReport) -> None:
    from latentmix.training import train

    reported: set = set()

    def on_epoch_end(row: dict) -> None:
        claim.trial.report(float(row["val_acc"]), int(row["epoch"]))
        reported.add(row["epoch"])

    result = train(claim.config, run_dir=run_dir, resume=True, progress=False, on_epoch_end=on_epoch_end)
    restored = len(result.metrics) - len(reported)
    _report_missing(claim.trial, result.metrics, reported)
    report.trained += 1
    if restored > 0:
        report.resumed += 1
    with contextlib.suppress(Exception):
        set_user_attrs(claim.trial, {"resumed_from_epoch": restored})
    _finish(study, claim, result.run_summary(), round(result.wall_time_s, 3), run_dir, report, "sequential")


def _epochs_of(config: RunConfig) -> int:
    return protocol_for(config).epochs


def _train_population(study, claims: Sequence[Claim], out_dir: Path, report: WorkerReport, population) -> None:
    configs = [c.config for c in claims]
    reported: list[set] = [set() for _ in claims]
    # Every trial.report is a database transaction (~2 ms): a population of hundreds of runs would
    # spend longer reporting than training. Its runs report every `stride`-th epoch (<= 30 values
    # per run); the full per-epoch curve is in each run's metrics.csv and its `val_acc_curve` attr.
    stride = max(1, max(_epochs_of(c) for c in configs) // 30)

    def on_epoch_end(epoch: int, rows: list[dict]) -> None:
        if epoch % stride:
            return
        for claim, row, seen in zip(claims, rows, reported):
            claim.trial.report(float(row["val_acc"]), int(epoch))
            seen.add(epoch)

    results = population.train_population(configs, progress=report.show_progress, on_epoch_end=on_epoch_end)
    report.populations += 1
    for claim, result, seen in zip(claims, results, reported):
        run_dir = out_dir / "runs" / claim.run_id
        folder = RunFolder(run_dir)
        summary, metrics = result.run_summary(), result.metrics
        _report_missing(claim.trial, [row for row in metrics if row["epoch"] % stride == 0 or row is metrics[-1]], seen)
        set_user_attrs(claim.trial, {"val_acc_curve": [round(float(row["val_acc"]), 6) for row in metrics]})
        folder.write_population_record(claim.config.to_dict(), summary.trained_as)
        if metrics:
            folder.write_metrics(metrics)
        folder.write_label_issues(result)
        # Timings go to timing.json, so that result.json is the same file for same-seed runs.
        folder.write_timing(timing_document(
            [{"epochs": [1, len(metrics)] if metrics else None, "wall_time_s": result.wall_time_s,
              "device": claim.config.device}], result.epoch_time_s))
        folder.write_result(summary.to_dict())
        report.trained += 1
        _finish(study, claim, summary, result.wall_time_s, run_dir, report, summary.trained_as)


def work_on(store: SweepStore, study, claims: Sequence[Claim], out_dir: Path, report: WorkerReport) -> None:
    """Train (or finish from result.json) the claimed runs, with heartbeats, and tell the store."""
    with Heartbeat(store.storage, [c.trial._trial_id for c in claims], store.heartbeat_interval):
        try:
            to_train = []
            for claim in claims:
                run_dir = out_dir / "runs" / claim.run_id
                set_user_attrs(claim.trial, {"run_dir": str(run_dir.resolve())})
                try:
                    summary = _load_result(run_dir, claim.config)
                except ConfigError as error:
                    _fail(study, claim, error, report)
                    continue
                if summary is not None:
                    report.reused += 1
                    set_user_attrs(claim.trial, {"reused": True})
                    _report_missing(claim.trial, _metrics_from_csv(run_dir), set())
                    wall_time_s = summary.extra.get("wall_time_s")  # older result.json files held it
                    _finish(study, claim, summary, read_wall_time(run_dir) if wall_time_s is None else wall_time_s,
                            run_dir, report, "reused")
                else:
                    to_train.append(claim)
            # A run with a checkpoint (a retry) resumes on its own; the others may share a population.
            has_checkpoint = [(out_dir / "runs" / c.run_id / CHECKPOINT_NAME).exists() for c in to_train]
            resume = [c for c, yes in zip(to_train, has_checkpoint) if yes]
            fresh = [c for c, yes in zip(to_train, has_checkpoint) if not yes]
            population = population_module() if len(fresh) > 1 else None
            if population is not None:
                try:
                    _train_population(study, fresh, out_dir, report, population)
                except Exception as error:  # noqa: BLE001 - record it on every run of the population
                    for claim in fresh:
                        _fail(study, claim, error, report)
                fresh = []
            for claim in resume + fresh:
                try:
                    _train_sequential(study, claim, out_dir / "runs" / claim.run_id, report)
                except Exception as error:  # noqa: BLE001 - the run failed; the sweep goes on
                    _fail(study, claim, error, report)
        except KeyboardInterrupt:
            from optuna.trial import TrialState

            open_claims = [c for c in claims
                           if store.storage.get_trial(c.trial._trial_id).state == TrialState.RUNNING]
            with contextlib.suppress(Exception):  # the store unreachable: the heartbeats' grace period will do
                store.put_back(study, [c.trial for c in open_claims], [_stored_config(c) for c in open_claims])
            raise


def _stored_config(claim: Claim) -> RunConfig:
    """The run's config as the store holds it (without this machine's overrides), to queue it again."""
    stored = claim.trial.user_attrs.get("config")
    return RunConfig.from_dict(stored) if stored is not None else claim.config


def _metrics_from_csv(run_dir: Path) -> list[dict]:
    import csv

    path = run_dir / "metrics.csv"
    if not path.exists():
        return []
    rows = []
    with contextlib.suppress(OSError, ValueError, KeyError):
        with path.open() as handle:
            for row in csv.DictReader(handle):
                rows.append({"epoch": int(row["epoch"]), "val_acc": float(row["val_acc"])})
    return rows


def run_worker(store: SweepStore, study, out_dir: str | os.PathLike, *, vectorized: bool = True,
               population_size: int = DEFAULT_POPULATION, wait: bool = True, poll_interval: float = DEFAULT_POLL_S,
               progress: bool = True, overrides: Optional[dict] = None, max_runs: Optional[int] = None) -> WorkerReport:
    """Take and train pending runs until none is pending or running (or, with ``wait=False``,
    none is pending). Runs of dead workers are failed after the grace period and taken again."""
    out_dir = Path(out_dir)
    report = WorkerReport(show_progress=progress)
    limit = max(1, int(population_size)) if vectorized else 1
    bar = None
    if progress:
        from tqdm.auto import tqdm

        counts = sweep_counts(study)
        bar = tqdm(total=counts["runs"], initial=counts["done"], desc=f"sweep {study.study_name}", unit="run",
                   dynamic_ncols=True, disable=None)  # None: no bar where stderr is no terminal
        _update_bar(bar, counts)
    taken = 0
    try:
        while max_runs is None or taken < max_runs:
            report.stale_failed += store.fail_stale(study)
            want = limit if max_runs is None else min(limit, max_runs - taken)
            claims = claim_runs(store, study, limit=want, vectorized=vectorized, overrides=overrides)
            if claims:
                taken += len(claims)
                work_on(store, study, claims, out_dir, report)
                if bar is not None:
                    _update_bar(bar, sweep_counts(study))
                continue
            counts = sweep_counts(study)
            if bar is not None:
                _update_bar(bar, counts)
            if counts["pending"] == 0 and (counts["running"] == 0 or not wait):
                break
            time.sleep(poll_interval)
    finally:
        if bar is not None:
            bar.close()
    return report


def _update_bar(bar, counts: dict) -> None:
    bar.total = counts["runs"]
    bar.n = counts["done"]
    postfix = {"running": counts["running"]}
    if counts["best_value"] is not None:
        postfix["best"] = f"{counts['best_value']:.4f}"
    if counts["retries"]:
        postfix["retries"] = counts["retries"]
    bar.set_postfix(postfix, refresh=False)
    bar.refresh()

