"""The sweep store: an Optuna RDB storage (SQLite by default, PostgreSQL for many machines) with
Optuna's heartbeats and retry callback, and the store's lock for changes of several steps.

What guards what (each run is done exactly once):
* Taking a waiting trial is Optuna's own atomic change WAITING -> RUNNING (latentmix.sweep.worker).
* A worker that dies stops its heartbeats; after the grace period `fail_stale` fails its trial with
  Optuna's ``fail_stale_trials`` and Optuna's retry callback queues a copy (``failed_trial``
  system attribute). A worker process of this machine that is gone is failed at once.
* Enqueueing the grid, failing stale trials with their retries and putting interrupted runs back
  run under the store's lock (latentmix.sweep.lock), so a run never has two live trials.
"""

from __future__ import annotations

import contextlib
import os
import socket
import warnings
from pathlib import Path
from typing import Optional, Sequence

from latentmix.errors import ConfigError
from latentmix.sweep.lock import StoreLock
from latentmix.sweep.trials import enqueue_missing, stored_configs
from latentmix.config import RunConfig

DEFAULT_HEARTBEAT_S = 10
DEFAULT_GRACE_S = 30
DEFAULT_MAX_RETRY = 3


def default_storage_url(out_dir: str | os.PathLike) -> str:
    return f"sqlite:///{(Path(out_dir).resolve() / 'sweep.db').as_posix()}"


def display_url(url: str) -> str:
    """The URL without its password (safe to print)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - printing only
        return url


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    warnings.filterwarnings("ignore", message=".*Heartbeat of storage.*")



def _serialize_sqlite(engine) -> None:
    """Make every SQLite transaction ``BEGIN IMMEDIATE`` (the SQLAlchemy recipe), so concurrent
    processes queue on the busy timeout instead of dead-locking on a read-then-write upgrade."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):  # noqa: ANN001
        dbapi_connection.isolation_level = None
        # Write-ahead logging: readers never block the writer and a commit costs no full fsync of
        # the database file (about 3x faster per trial.report here); safe for processes on one machine.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):  # noqa: ANN001
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()


def store_error(url: str, error: BaseException) -> ConfigError:
    """One line for a store that cannot be opened or read (SQLAlchemy's messages add the SQL and a
    link on further lines), with the fix for a damaged SQLite file."""
    reason = (str(error).strip().splitlines() or [""])[0]
    fix = ""
    if url.startswith("sqlite:") and "database" in reason.lower():
        fix = ("; the file is damaged or not a sweep store: move it away to start the sweep afresh (finished runs "
               "keep their result.json in the run folders; latentmix report DIR reads those)")
    return ConfigError(f"cannot open the sweep store {display_url(url)}: {type(error).__name__}: {reason}{fix}")


@contextlib.contextmanager
def reading_store(url: str):
    """Database errors while reading a store (a file damaged past its header) as one clear line."""
    from sqlalchemy.exc import DatabaseError

    try:
        yield
    except DatabaseError as error:
        raise store_error(url, error) from None


def with_installed_driver(url: str) -> str:
    """`url` with the PostgreSQL driver that is installed. A plain ``postgresql://`` URL (the one
    docs/sweeps.md shows) means psycopg 3 to SQLAlchemy 2.1, while the `postgres` extra installs
    psycopg2: such a URL is given ``+psycopg2`` when psycopg 3 is missing and psycopg2 is there
    (issue 25.10). Every other URL, and one that names its driver, is returned as it is."""
    import importlib.util

    if not (url.startswith("postgresql://") or url.startswith("postgres://")):
        return url
    if importlib.util.find_spec("psycopg") is not None or importlib.util.find_spec("psycopg2") is None:
        return url
    return "postgresql+psycopg2://" + url.split("://", 1)[1]


class SweepStore:
    """An Optuna RDB storage with heartbeats and retries, plus the store's lock."""

    def __init__(self, url: str, *, heartbeat_interval: int = DEFAULT_HEARTBEAT_S,
                 grace_period: Optional[int] = DEFAULT_GRACE_S, max_retry: Optional[int] = DEFAULT_MAX_RETRY):
        _quiet_optuna()
        if heartbeat_interval < 1 or (grace_period is not None and grace_period < 1):
            raise ConfigError(f"--heartbeat and --grace must be whole seconds >= 1, got {heartbeat_interval} and "
                              f"{grace_period}")
        self.url = url = with_installed_driver(url)
        self.heartbeat_interval = int(heartbeat_interval)
        self.grace_period = grace_period
        self.lock = StoreLock(url)
        self.retry = _retry_callback(max_retry)
        with self.lock:  # creating the tables is not safe to race
            self.storage = _open_storage(url, self.lock, self.heartbeat_interval, grace_period, self.retry)

    # ---- studies -------------------------------------------------------------------------

    def study_names(self) -> list[str]:
        with reading_store(self.url):
            return [s.study_name for s in self.storage.get_all_studies()]

    def load(self, name: str):
        import optuna

        with reading_store(self.url):
            try:
                return optuna.load_study(study_name=name, storage=self.storage,
                                         sampler=optuna.samplers.RandomSampler())
            except KeyError:
                known = ", ".join(self.study_names()) or "(none)"
                raise ConfigError(f"the store {display_url(self.url)} has no sweep {name!r}; sweeps there: {known}; "
                                  "check --study (or the spec's name) and --storage") from None

    def prepare(self, name: str, configs: Sequence[RunConfig]):
        """Create or load the study `name` and make sure every run of `configs` has a trial that
        is pending, running or complete (adding only what is missing). Returns (study, counts)."""
        import optuna

        with self.lock, reading_store(self.url):
            study = optuna.create_study(study_name=name, storage=self.storage, direction="maximize",
                                        load_if_exists=True, sampler=optuna.samplers.RandomSampler())
            added, requeued = enqueue_missing(study, configs)
            if configs:
                study.set_user_attr("grid_runs", len(configs))
        return study, {"added": added, "requeued": requeued}

    def requeue_unfinished(self, study) -> int:
        """Give each run of the study whose trials all failed (and have no retry pending) a new trial."""
        with self.lock:
            configs = stored_configs(study)
            _, requeued = enqueue_missing(study, configs)
        return requeued

    def fail_stale(self, study) -> int:
        """Fail the running trials whose heartbeat is older than the grace period, and at once those
        whose worker was a process of this machine that no longer exists (a rerun after a kill need
        not wait out the grace period); the retry callback queues each again. Returns how many
        were failed."""
        import optuna

        dead = _dead_local_trials(study)
        find_stale = getattr(self.storage, "_get_stale_trial_ids", None)
        if not dead and find_stale is not None and not find_stale(study._study_id):
            return 0  # the common case: no lock needed
        with self.lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            before = sum(1 for t in study.get_trials(deepcopy=False) if t.state.name == "FAIL")
            failed_now = []
            for trial_id in dead:
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                    if self.storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL):
                        failed_now.append(trial_id)
            for trial_id in failed_now:  # queued again exactly as a stale heartbeat would be
                self.retry(study, self.storage.get_trial(trial_id))
            optuna.storages.fail_stale_trials(study)
            after = sum(1 for t in study.get_trials(deepcopy=False) if t.state.name == "FAIL")
        return after - before

    def put_back(self, study, trials: Sequence, configs: Sequence[RunConfig]) -> None:
        """Interrupted (Ctrl-C): close the worker's `trials` and queue their runs (`configs`) again
        for the other workers, as one step."""
        from optuna.trial import TrialState

        with self.lock:
            for trial in trials:
                with contextlib.suppress(Exception):  # already closed (a stale heartbeat): nothing to do
                    trial.storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
                    study.tell(trial, state=TrialState.FAIL)
            enqueue_missing(study, configs)


def _retry_callback(max_retry: Optional[int]):
    """Optuna's callback that queues a copy of a trial failed for a stale heartbeat (its name since
    Optuna 4.9; RetryFailedTrialCallback before)."""
    from optuna import storages

    cls = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
    return cls(max_retry=max_retry)


def _open_storage(url: str, lock: StoreLock, heartbeat_interval: int, grace_period: Optional[int], retry):
    """Optuna's RDBStorage for `url`, its heartbeats on (a trial without one for `grace_period` s is
    stale) and `retry` called for each stale trial; SQLite files serialised (`_serialize_sqlite`)."""
    import inspect

    import optuna

    engine_kwargs: dict = {}
    if lock.backend == "sqlite":
        engine_kwargs = {"connect_args": {"timeout": 300}}  # seconds a writer waits for the others
        if lock.path is not None:
            lock.path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = dict(heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    callback_name = ("heartbeat_stale_trial_callback"
                     if "heartbeat_stale_trial_callback" in inspect.signature(optuna.storages.RDBStorage).parameters
                     else "failed_trial_callback")  # Optuna < 4.9
    kwargs[callback_name] = retry
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except ImportError as error:
        raise ConfigError(f"cannot open the sweep store {display_url(url)}: {error} "
                          "(PostgreSQL needs `pip install psycopg2-binary`)") from None
    except Exception as error:  # noqa: BLE001 - a wrong URL, an unreachable server, a damaged file
        raise store_error(url, error) from None
    if lock.backend == "sqlite":
        _serialize_sqlite(storage.engine)
    return storage


def _process_gone(pid: int) -> bool:
    """Whether no process `pid` runs on this machine (POSIX; elsewhere: never claimed)."""
    if os.name != "posix" or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: a check only, nothing is sent
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: it exists
        return False
    return False


def _dead_local_trials(study) -> list[int]:
    """Running trials whose recorded worker ("host:pid") is a process of this host that is gone."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    dead = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        name, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if name == host and pid.isdigit() and _process_gone(int(pid)):
            dead.append(trial._trial_id)
    return dead

