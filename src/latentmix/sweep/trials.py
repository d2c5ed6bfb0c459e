"""Runs and trials: how a run of the grid is kept in the sweep's Optuna study.

Each run is one or more *trials* keyed by its `run_id` (user attribute ``run_id``), with the run's
config (``config``) and its table row (``row``); a finished trial holds the run's summary
(``result``) and folder (``run_dir``). A run has at most one *live* trial (waiting, running or
complete): `enqueue_missing` adds a trial only for a run without one, under the store's lock, and
a failed trial's retry replaces it. Workers rely on this to take a waiting trial without a lock.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from latentmix.errors import ConfigError
from latentmix.sweep.spec import MACHINE_FIELDS
from latentmix.config import RunConfig

RESULT_ATTR = "result"  # the user attribute holding a finished run's summary


def live_states() -> tuple:
    """Trial states that mean "this run is done or being done": no new trial for it."""
    from optuna.trial import TrialState

    return (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)


def comparable(config: dict) -> dict:
    """A stored config without the fields that may differ between machines (MACHINE_FIELDS)."""
    return {k: v for k, v in config.items() if k not in MACHINE_FIELDS}


def differing_settings(wanted: dict, have: dict) -> list[str]:
    """The names of the fields two configs share but set differently (machine fields ignored)."""
    wanted, have = comparable(wanted), comparable(have)
    return sorted(k for k in set(wanted) & set(have) if wanted[k] != have[k])


def trials_by_run(trials: Iterable) -> dict[str, list]:
    """The study's trials grouped by run id (trials that are not runs of a grid left out)."""
    by_run: dict[str, list] = {}
    for trial in trials:
        rid = trial.user_attrs.get("run_id")
        if rid is not None:
            by_run.setdefault(rid, []).append(trial)
    return by_run


def stored_configs(study) -> list[RunConfig]:
    """The configs of the runs the study holds, one per run, in the order they were first added."""
    configs, seen = [], set()
    for trial in study.get_trials(deepcopy=False):
        rid = trial.user_attrs.get("run_id")
        if rid is not None and rid not in seen and "config" in trial.user_attrs:
            seen.add(rid)
            configs.append(RunConfig.from_dict(trial.user_attrs["config"]))
    return configs


def _params(config: RunConfig) -> dict:
    """The run's grid coordinates, stored as the trial's parameters (readable in Optuna's tools)."""
    return {"method": config.method, "layers": config.layers, "alpha": config.alpha,
            "correction": config.correction, "noise": config.noise, "seed": config.seed}


def enqueue_missing(study, configs: Sequence[RunConfig]) -> tuple[int, int]:
    """A new waiting trial for each run of `configs` that has no live trial; returns (added, requeued).

    The caller holds the store's lock: reading the trials and enqueueing are separate storage
    calls. (Optuna's ``enqueue_trial(skip_if_exists=True)`` is the same read-then-write without a
    lock, and it skips a run whose only trials failed, which must be queued again.) A run stored
    with other settings is refused rather than mixed in.
    """
    from latentmix.naming import row_label, run_id

    by_run = trials_by_run(study.get_trials(deepcopy=False))
    added = requeued = 0
    for config in configs:
        rid = run_id(config)
        stored = by_run.get(rid, [])
        wanted = config.to_dict()
        for trial in stored:
            have = trial.user_attrs.get("config", {})
            diff = differing_settings(wanted, have)
            if diff:
                raise ConfigError(
                    f"sweep {study.study_name!r} already holds run {rid} with other settings "
                    f"({', '.join(f'{k}: {have[k]!r} there, {wanted[k]!r} here' for k in diff[:3])}); "
                    "use another --out/--storage or another sweep name")
        if any(t.state in live_states() for t in stored):
            continue
        study.enqueue_trial(_params(config), user_attrs={
            "run_id": rid, "row": row_label(config.method, config.layers, config.dataset), "config": config.to_dict(), "attempt": len(stored) + 1,
        })
        if stored:
            requeued += 1
        else:
            added += 1
    return added, requeued
