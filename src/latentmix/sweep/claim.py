"""Taking waiting runs of a sweep, and keeping them alive with heartbeats while they train.

Taking a trial is Optuna's own compare-and-set, the one ``Study.ask`` uses to pop an enqueued
trial: ``storage.set_trial_state_values(trial_id, RUNNING)`` moves a WAITING trial to RUNNING for
one caller only (a row lock on PostgreSQL; on SQLite every transaction is ``BEGIN IMMEDIATE``,
latentmix.sweep.store) and returns False to the others. A run has at most one waiting trial
(latentmix.sweep.trials), so one taken trial is one run taken, with no lock. We do not call
``Study.ask`` itself: with no waiting trial left it creates a new, empty trial.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence

from latentmix.errors import ConfigError
from latentmix.sweep.store import SweepStore
from latentmix.config import RunConfig

# Fields that the runs of one vectorized population must share.
POPULATION_SHARED = ("dataset", "data", "data_dir", "model", "width", "epochs", "batch_size", "lr",
                     "weight_decay", "device", "track_every")


@dataclass
class Claim:
    """A run this worker took: its RUNNING trial, the config it trains (with this machine's
    overrides), its id and its table row."""

    trial: Any  # optuna.Trial
    config: RunConfig
    run_id: str
    row: str


def population_key(config: RunConfig) -> tuple:
    return tuple(getattr(config, name) for name in POPULATION_SHARED)


def population_module():
    """latentmix.population, imported only where a worker may train populations."""
    from latentmix import population

    return population


def worker_name() -> str:
    """This worker as "host:pid" (the `worker` user attribute of the trials it runs)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _run_config(frozen, overrides: Optional[dict]) -> Optional[RunConfig]:
    """The config of a waiting trial, with this machine's overrides; None for a trial that is not a
    run of a grid, or was written by a latentmix version whose configs this one cannot read (left
    to a worker that can)."""
    if frozen.user_attrs.get("run_id") is None or "config" not in frozen.user_attrs:
        return None
    try:
        config = RunConfig.from_dict(frozen.user_attrs["config"])
    except (ConfigError, TypeError):
        return None
    return replace(config, **overrides) if overrides else config


def _take(storage, trial_id: int) -> bool:
    """WAITING -> RUNNING for this worker alone (False: another worker took it first)."""
    import optuna
    from optuna.trial import TrialState

    try:
        return storage.set_trial_state_values(trial_id, TrialState.RUNNING)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def claim_runs(store: SweepStore, study, *, limit: int = 1, vectorized: bool = True,
               overrides: Optional[dict] = None) -> list[Claim]:
    """Take up to `limit` waiting runs, oldest first: more than one only for runs that can share
    the first one's vectorized population. Each taken trial is RUNNING with a first heartbeat."""
    import optuna
    from optuna.trial import TrialState

    storage = store.storage
    waiting = storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,))
    population = population_module() if vectorized and limit > 1 and waiting else None
    claims: list[Claim] = []
    group_key = None
    for frozen in sorted(waiting, key=lambda t: t.number):
        config = _run_config(frozen, overrides)
        if config is None:
            continue
        if claims and (not population.supports_population(config) or population_key(config) != group_key):
            continue
        if not _take(storage, frozen._trial_id):
            continue
        # Who runs it, at once: a retry carries its dead predecessor's "worker", which `fail_stale`
        # would take for this trial's. Then a first heartbeat: Optuna counts a RUNNING trial
        # without any as alive forever.
        storage.set_trial_user_attr(frozen._trial_id, "worker", worker_name())
        storage.record_heartbeat(frozen._trial_id)
        rid = frozen.user_attrs["run_id"]
        claims.append(Claim(optuna.trial.Trial(study, frozen._trial_id), config, rid, frozen.user_attrs.get("row", rid)))
        if len(claims) == 1:
            if population is None or not population.supports_population(config):
                break
            group_key = population_key(config)
        if len(claims) >= limit:
            break
    return claims


class Heartbeat:
    """Records a heartbeat for each trial every `interval` seconds until stopped.

    Optuna records heartbeats only inside ``Study.optimize`` (its documentation: with ask and tell
    they do not work); its thread class is private, serves one trial, and stops at the first
    database error. A population keeps many trials alive, and a database hiccup must not let a
    training run go stale (its retry would train the same run a second time): this thread beats
    for all of them and tries again at the next beat.
    """

    def __init__(self, storage, trial_ids: Sequence[int], interval: int):
        self.storage, self.trial_ids, self.interval = storage, list(trial_ids), interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="latentmix-heartbeat", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            for trial_id in self.trial_ids:
                with contextlib.suppress(Exception):  # a DB hiccup: the next beat tries again
                    self.storage.record_heartbeat(trial_id)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
