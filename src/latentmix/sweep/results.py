"""What a sweep's store says: runs by state, failed runs with their errors, the finished runs'
summaries (the results table) and a one-line status."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from latentmix.summary import POPULATION_KEYS, RunSummary
from latentmix.sweep.store import display_url
from latentmix.sweep.trials import RESULT_ATTR, trials_by_run
from latentmix.config import RunConfig

# results.csv of a sweep with no finished run: the columns it would have (the figures every run's
# summary has, its wall time and how it was trained, and where it is)
RESULTS_FIELDS = tuple(key for key in POPULATION_KEYS if key != "trained_as") + (
    "wall_time_s", "trained_as", "row", "run_id", "run_dir")


def store_record(summary: RunSummary, wall_time_s: Optional[float], trained_as: str) -> dict:
    """What the store keeps of a finished run (its trial's ``result`` attribute, one line of
    results.csv): the summary's flat figures, the run's wall time, and how it was trained (the
    summary's own ``trained_as``, a population's, else `trained_as`: "sequential", "reused").
    A population summary carries ``trained_as`` among its keys, so its column comes before
    ``wall_time_s``, as it always has."""
    return {**summary.scalars(), "wall_time_s": wall_time_s, "trained_as": summary.trained_as or trained_as}


def sweep_counts(study) -> dict:
    """Runs by state (done / running / pending / failed), and the store's trial bookkeeping."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    by_run = trials_by_run(trials)
    counts = {"runs": len(by_run), "done": 0, "running": 0, "pending": 0, "failed": 0}
    for run_trials in by_run.values():
        states = {t.state for t in run_trials}
        key = ("done" if TrialState.COMPLETE in states else "running" if TrialState.RUNNING in states
               else "pending" if TrialState.WAITING in states else "failed")
        counts[key] += 1
    complete = [t for t in trials if t.state == TrialState.COMPLETE and "run_id" in t.user_attrs]
    best = max(complete, key=lambda t: t.value, default=None)
    counts.update(
        trials=len(trials),
        complete_trials=len(complete),
        retries=sum(1 for t in trials if "failed_trial" in t.system_attrs),
        stale_failed=sum(1 for t in trials if t.state == TrialState.FAIL and "run_id" in t.user_attrs
                         and not {"error", "interrupted", "duplicate_of"} & set(t.user_attrs)),
        requeued=sum(1 for t in trials if int(t.user_attrs.get("attempt", 1)) > 1 and "failed_trial" not in t.system_attrs),
        interrupted=sum(1 for t in trials if t.user_attrs.get("interrupted")),
        errors=sum(1 for t in trials if "error" in t.user_attrs),
        duplicates=sum(1 for t in trials if "duplicate_of" in t.user_attrs),
        best_value=None if best is None else best.value,
        best_run=None if best is None else best.user_attrs.get("run_id"),
    )
    return counts


def failed_runs(study, since=None) -> list[tuple[str, str]]:
    """(run id, error) of each run whose trials all failed (none pending, running or complete),
    with its last recorded error; with `since` (a datetime), only runs whose last trial ended then
    or later (the runs one command tried)."""
    from optuna.trial import TrialState

    live = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
    failed = []
    for rid, trials in trials_by_run(study.get_trials(deepcopy=False)).items():
        if any(t.state in live for t in trials):
            continue
        last = max(trials, key=lambda t: t.number)
        if since is not None and (last.datetime_complete is None or last.datetime_complete < since):
            continue
        errors = [t.user_attrs["error"] for t in sorted(trials, key=lambda t: t.number) if "error" in t.user_attrs]
        error = (str(errors[-1]).strip().splitlines() or ["?"])[0] if errors else \
            "its worker stopped without recording an error (killed?); run the command again to retry it"
        failed.append((rid, error))
    return failed


def print_failed_runs(failed: Sequence[tuple[str, str]]) -> None:
    """One stderr line per failed run: its id and its error."""
    for rid, error in failed:
        print(f"latentmix: run {rid} failed: {error}", file=sys.stderr)


def collect_results(study, configs: Optional[Sequence[RunConfig]] = None) -> list[dict]:
    """The summaries of the finished runs (with ``row``, ``run_id`` and ``run_dir``), in the grid's
    order when `configs` is given, else in trial order."""
    from optuna.trial import TrialState

    from latentmix.naming import row_label, run_id

    finished = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        rid = trial.user_attrs.get("run_id")
        if rid is None or rid in finished:
            continue
        summary = dict(trial.user_attrs.get(RESULT_ATTR, {}))
        summary.update(row=trial.user_attrs.get("row", rid), run_id=rid, run_dir=trial.user_attrs.get("run_dir"))
        finished[rid] = summary
    if configs is None:
        return list(finished.values())
    # The grid's rows from its own configs: a store written before the spirals' input mixup was
    # named "m(0-0)" in the store holds "m".
    for config in configs:
        if run_id(config) in finished:
            finished[run_id(config)]["row"] = row_label(config.method, config.layers, config.dataset)
    return [finished[run_id(c)] for c in configs if run_id(c) in finished]


def format_status(study, url: str) -> str:
    c = sweep_counts(study)
    line = (f"sweep {study.study_name} ({display_url(url)}): {c['runs']} runs: {c['done']} done, {c['running']} running, "
            f"{c['pending']} pending, {c['failed']} failed")
    extra = [f"{c['retries']} retried after a worker died" if c["retries"] else "",
             f"{c['requeued']} queued again" if c["requeued"] else "",
             f"{c['errors']} error(s)" if c["errors"] else "",
             f"{c['duplicates']} duplicate trial(s) closed" if c["duplicates"] else ""]
    extra = [e for e in extra if e]
    if extra:
        line += "; " + ", ".join(extra)
    if c["best_value"] is not None:
        line += f"\n  best val acc {c['best_value']:.4f} ({c['best_run']})"
    return line

