"""Sweeps: a grid of runs kept in an Optuna study, run by any number of workers, resumable.

A grid (a TOML spec, or a `Grid` built by ``reproduce``) is a list of `RunConfig`s. Each run
becomes one *trial* of an Optuna study, keyed by its `run_id` (a user attribute), holding the run's
config as another user attribute. Workers take pending trials, train them, report the per-epoch
validation accuracy as intermediate values, and finish the trial with the best validation accuracy
as its value and the run's summary and folder as user attributes.

The store is any database Optuna's `RDBStorage` speaks: by default a SQLite file in the sweep's
output folder (``OUT/sweep.db``, one machine), PostgreSQL (or MySQL) for many machines.

Every run is done exactly once
------------------------------
* All lifecycle changes of trials (enqueueing the grid, taking pending trials, failing trials of
  dead workers and queueing their retries) happen under one cross-process lock per store: a file
  lock beside a SQLite file (`fcntl.flock`), a PostgreSQL advisory lock, or a MySQL named lock. All
  three are released by the operating system or the server when the holder dies.
* Enqueueing is idempotent: a run gets a new trial only when none of its trials is pending,
  running or complete; a run whose stored config differs from the grid's is an error.
* A worker records a heartbeat for each of its trials (Optuna's RDB heartbeats). A trial whose
  heartbeat is older than the grace period is failed by whichever worker looks next, and Optuna's
  retry callback queues it again; the retry resumes from the run folder's checkpoint
  (``train(..., resume=True)``) when the folder is shared, or starts afresh where it is not.
* A run whose folder already holds ``result.json`` (its worker died after writing it, or an older
  sequential grid left it) is finished from that file without training.
* A taken trial is checked against the others of its run (a duplicate that raced in is closed
  with the user attribute ``duplicate_of``), so a run never has two complete trials.

Vectorized populations
----------------------
With ``vectorized=True`` a worker that takes a run the vectorized population trainer supports
(`latentmix.population.supports_population`) takes up to ``population_size`` pending runs that can
share one population (same data set, model and optimisation schedule) and trains them together.
The module is imported lazily; without it every run goes through `latentmix.training.train`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable, Optional, Sequence

from latentmix.config_checks import check_output_folder
from latentmix.errors import ConfigError
from latentmix.run_folder import CHECKPOINT_NAME, TIMING_KEYS, TIMING_NAME, read_wall_time, timing_document
from latentmix.training import RunConfig

DEFAULT_HEARTBEAT_S = 10
DEFAULT_GRACE_S = 30
DEFAULT_MAX_RETRY = 3
DEFAULT_POPULATION = 32
DEFAULT_POLL_S = 2.0

# Fields that say where and how a run executes, not what it computes: they may differ between
# machines of one sweep (each worker applies its own) and are ignored when stored configs are compared.
MACHINE_FIELDS = ("device", "amp", "channels_last", "compile", "checkpoint", "data_dir", "data",
                  "noisy_labels_file", "download")
# Fields that the runs of one vectorized population must share.
POPULATION_SHARED = ("dataset", "data", "data_dir", "model", "width", "epochs", "batch_size", "lr",
                     "weight_decay", "device", "track_every")
RESULT_ATTR = "result"
# results.csv of a sweep with no finished run: the columns it would have (a run's summary and where it is)
RESULTS_FIELDS = ("method", "mix_layers", "correction", "dataset", "noise", "noise_kind", "seed", "epochs", "best_val_acc",
                  "last_val_acc", "best_epoch", "last_train_acc_noisy", "last_train_acc_clean", "detection_auc",
                  "detection_precision", "detection_recall", "actual_noise_rate", "wall_time_s", "trained_as", "row",
                  "run_id", "run_dir")


# --------------------------------------------------------------------------------------------
# The spec: a TOML file declaring a grid
# --------------------------------------------------------------------------------------------

SPEC_KEYS = ("name", "dataset", "data", "methods", "layers", "alphas", "noise", "seeds", "epochs",
             "settings", "out", "storage")
AXIS_FIELDS = ("dataset", "method", "layers", "alpha", "noise", "seed", "epochs")


@dataclass
class SweepSpec:
    """A named grid: its run configs (in grid order), and optionally where it lives."""

    name: str
    configs: list[RunConfig]
    out: Optional[str] = None
    storage: Optional[str] = None
    source: Optional[str] = None

    def machine_overrides(self) -> dict:
        """This machine's execution fields (device, data paths, ...), applied to every run it trains."""
        return {name: getattr(self.configs[0], name) for name in MACHINE_FIELDS} if self.configs else {}


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read a sweep spec (TOML); see docs/sweeps.md for the format."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ConfigError("reading a TOML sweep spec on Python 3.10 needs `pip install tomli`") from None

    path = Path(path)
    try:
        with path.open("rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"sweep spec {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"sweep spec {path} is not valid TOML: {error}") from None
    if "sweep" in values and isinstance(values["sweep"], dict):  # allow a [sweep] table as well
        values = {**values.pop("sweep"), **values}
    return spec_from_dict(values, source=str(path))  # a relative `out` is relative to the working folder


def _as_list(value: Any, what: str) -> list:
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"spec key {what!r} is an empty list")
        return value
    return [value]


def _seeds(value: Any) -> list[int]:
    if isinstance(value, bool):
        raise ConfigError(f"spec key 'seeds' must be a count or a list of seeds, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"spec key 'seeds' must be >= 1, got {value}")
        return list(range(value))
    seeds = _as_list(value, "seeds")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"spec key 'seeds' must hold integers, got {seeds!r}")
    return seeds


def _number_value(value: Any, key: str, source: str) -> Optional[float]:
    """A number of a spec axis (alphas, noise); text such as "two" is refused, naming the key."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{source}: spec key {key!r} must hold numbers, got {value!r}")
    return float(value)


def _layers_value(value: Any, source: str) -> Optional[str]:
    """One entry of a `layers` axis: a range/list text ("1-3", "0,2") or one index; "default" (or
    "") for the method's own layers."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "default")):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"{source}: spec key 'layers' must hold ranges like \"1-3\" or layer indices, got {value!r}")
    return str(value)


def spec_from_dict(values: dict, source: str = "spec") -> SweepSpec:
    """A `SweepSpec` from parsed TOML: the product methods x layers x alphas x noise x seeds.

    `layers` and `alphas` apply to the methods that mix (a method that does not mix, such as ``ce``,
    is run once per noise rate and seed); a method may also be a table with its own ``layers``,
    ``alphas`` and ``correction``. `settings` holds any other `RunConfig` field, shared by every run.
    """
    from latentmix.experiments import run_id

    unknown = sorted(set(values) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(SPEC_KEYS)}")
    if "name" not in values or not isinstance(values["name"], str) or not values["name"].strip():
        raise ConfigError(f"{source}: a sweep needs a 'name' (the study name in the store)")
    settings = dict(values.get("settings", {}))
    clash = sorted(set(settings) & set(AXIS_FIELDS))
    if clash:
        raise ConfigError(f"{source}: put {', '.join(clash)} at the top level of the spec, not under [settings]")
    known = {f.name for f in fields(RunConfig)}
    bad = sorted(set(settings) - known)
    if bad:
        raise ConfigError(f"{source}: unknown run setting(s) {', '.join(bad)} under [settings]; "
                          f"valid: {', '.join(sorted(known - set(AXIS_FIELDS)))}")
    base_values = dict(settings)
    base_values["dataset"] = values.get("dataset", "spiral")
    if "data" in values:
        base_values["data"] = values["data"]
    if "epochs" in values:
        base_values["epochs"] = values["epochs"]
    try:
        base = RunConfig(**base_values)
    except TypeError as error:
        raise ConfigError(f"{source}: {error}") from None

    layer_axis = [_layers_value(v, source) for v in _as_list(values.get("layers", [None]), "layers")]
    alpha_axis = [_number_value(v, "alphas", source) for v in _as_list(values.get("alphas", [None]), "alphas")]
    noise_axis = [_number_value(v, "noise", source) for v in _as_list(values.get("noise", [0.0]), "noise")]
    for rate in noise_axis:
        if rate is None or not 0.0 <= rate <= 1.0:
            raise ConfigError(f"{source}: noise rates must be in [0, 1], got {rate}")
    seeds = _seeds(values.get("seeds", 1))
    methods = _as_list(values.get("methods", ["ce"]), "methods")

    configs: list[RunConfig] = []
    for entry in methods:
        if isinstance(entry, str):
            name, own_layers, own_alphas, correction = entry, None, None, None
        elif isinstance(entry, dict):
            extra = sorted(set(entry) - {"method", "layers", "alphas", "alpha", "correction"})
            if extra or "method" not in entry:
                raise ConfigError(f"{source}: a method table needs 'method' and may have layers, alphas, correction; "
                                  f"got {entry!r}")
            name = entry["method"]
            own_layers = ([_layers_value(v, source) for v in _as_list(entry["layers"], "layers")]
                          if "layers" in entry else None)
            raw_alphas = entry.get("alphas", entry.get("alpha"))
            own_alphas = ([_number_value(a, "alphas", source) for a in _as_list(raw_alphas, "alphas")]
                          if raw_alphas is not None else None)
            correction = entry.get("correction")
        else:
            raise ConfigError(f"{source}: each method is a preset name or a table, got {entry!r}")
        probe = replace(base, method=name, correction=correction)
        try:
            probe.validate("spec")
            mixes = probe.resolved_method().mixes
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None
        layer_values = own_layers if own_layers is not None else (layer_axis if mixes else [None])
        alpha_values = own_alphas if own_alphas is not None else (alpha_axis if mixes or own_layers else [None])
        for layers in layer_values:
            for alpha in alpha_values:
                for noise in noise_axis:
                    for seed in seeds:
                        config = replace(base, method=name, layers=layers, alpha=alpha, correction=correction,
                                         noise=noise, seed=seed)
                        try:  # every value checked now, not by each run failing later
                            config.validate("spec")
                            config.resolved_method()
                        except ConfigError as error:
                            raise ConfigError(f"{source}: {error}") from None
                        configs.append(config)
    ids = [run_id(c) for c in configs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"{source}: the grid names some runs twice ({', '.join(duplicates[:5])}); "
                          "remove the repeated methods/layers/alphas")
    return SweepSpec(name=values["name"].strip(), configs=configs, out=values.get("out"),
                     storage=values.get("storage"), source=source)


# --------------------------------------------------------------------------------------------
# The store: Optuna RDB storage + one cross-process lock
# --------------------------------------------------------------------------------------------


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


class StoreLock:
    """One mutual-exclusion lock per store, across processes and machines.

    SQLite: ``flock`` on ``DB.lock`` beside the file. PostgreSQL: ``pg_advisory_lock`` on a private
    connection. MySQL: ``GET_LOCK``. The OS/server releases each when its holder dies, so a killed
    worker never leaves the sweep locked. Other back-ends get an in-process lock and a warning.
    """

    KEY = int.from_bytes(hashlib.sha256(b"latentmix.sweep").digest()[:8], "big", signed=True)

    def __init__(self, url: str):
        from sqlalchemy.engine import make_url

        self.url = url
        parsed = make_url(url)
        self.backend = parsed.get_backend_name()
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._handle = None
        self._connection = None
        self._engine = None
        self._path: Optional[Path] = None
        if self.backend == "sqlite":
            database = parsed.database
            if database and database != ":memory:" and not database.startswith("file::memory"):
                self._path = Path(database + ".lock")
        elif self.backend not in ("postgresql", "mysql"):
            warnings.warn(f"no cross-process lock for {self.backend} stores; run one worker per store", stacklevel=2)

    def _engine_for_lock(self):
        if self._engine is None:
            import sqlalchemy
            from sqlalchemy.pool import NullPool

            self._engine = sqlalchemy.create_engine(self.url, poolclass=NullPool)
        return self._engine

    def acquire(self) -> None:
        import sqlalchemy

        self._thread_lock.acquire()
        self._depth += 1
        if self._depth > 1:
            return
        try:
            if self._path is not None and _fcntl() is not None:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = open(self._path, "a+")
                _fcntl().flock(self._handle.fileno(), _fcntl().LOCK_EX)
            elif self.backend == "postgresql":
                self._connection = self._engine_for_lock().connect()
                self._connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self.KEY})
                self._connection.commit()
            elif self.backend == "mysql":
                self._connection = self._engine_for_lock().connect()
                self._connection.execute(sqlalchemy.text("SELECT GET_LOCK('latentmix.sweep', -1)"))
        except BaseException:
            self._depth -= 1
            self._close()
            self._thread_lock.release()
            raise

    def release(self) -> None:
        import sqlalchemy

        self._depth -= 1
        try:
            if self._depth == 0:
                if self._connection is not None:
                    with contextlib.suppress(Exception):
                        if self.backend == "postgresql":
                            self._connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self.KEY})
                        else:
                            self._connection.execute(sqlalchemy.text("SELECT RELEASE_LOCK('latentmix.sweep')"))
                self._close()
        finally:
            self._thread_lock.release()

    def _close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(Exception):
                _fcntl().flock(self._handle.fileno(), _fcntl().LOCK_UN)
            self._handle.close()
            self._handle = None
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    def __enter__(self) -> "StoreLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _fcntl():
    try:
        import fcntl
    except ImportError:  # Windows: one worker process per SQLite store
        return None
    return fcntl


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


def _retry_callback(max_retry: Optional[int]):
    from optuna import storages

    cls = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
    return cls(max_retry=max_retry)


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


class SweepStore:
    """An Optuna RDB storage with heartbeats and retries, plus the store's lock."""

    def __init__(self, url: str, *, heartbeat_interval: int = DEFAULT_HEARTBEAT_S,
                 grace_period: Optional[int] = DEFAULT_GRACE_S, max_retry: Optional[int] = DEFAULT_MAX_RETRY):
        import optuna

        _quiet_optuna()
        if heartbeat_interval < 1 or (grace_period is not None and grace_period < 1):
            raise ConfigError("heartbeat interval and grace period must be whole seconds >= 1")
        self.url = url
        self.heartbeat_interval = int(heartbeat_interval)
        self.grace_period = grace_period
        self.lock = StoreLock(url)
        engine_kwargs: dict = {}
        if self.lock.backend == "sqlite":
            engine_kwargs = {"connect_args": {"timeout": 300}}
            if self.lock._path is not None:
                self.lock._path.parent.mkdir(parents=True, exist_ok=True)
        kwargs = dict(heartbeat_interval=self.heartbeat_interval, grace_period=grace_period)
        callback = self.retry = _retry_callback(max_retry)
        import inspect

        if "heartbeat_stale_trial_callback" in inspect.signature(optuna.storages.RDBStorage).parameters:
            kwargs["heartbeat_stale_trial_callback"] = callback
        else:
            kwargs["failed_trial_callback"] = callback
        try:
            with self.lock:  # table creation is not safe to race
                self.storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except ImportError as error:
            raise ConfigError(f"cannot open the sweep store {display_url(url)}: {error} "
                              "(PostgreSQL needs `pip install psycopg2-binary`)") from None
        except Exception as error:  # noqa: BLE001 - a wrong URL, an unreachable server, a damaged file
            if isinstance(error, ConfigError):
                raise
            raise store_error(url, error) from None
        if self.lock.backend == "sqlite":
            _serialize_sqlite(self.storage.engine)

    # ---- studies -------------------------------------------------------------------------

    def study_names(self) -> list[str]:
        with reading_store(self.url):
            return [s.study_name for s in self.storage.get_all_studies()]

    def load(self, name: str):
        import optuna

        with reading_store(self.url):
            return self._load(name)

    def _load(self, name: str):
        import optuna

        try:
            return optuna.load_study(study_name=name, storage=self.storage, sampler=optuna.samplers.RandomSampler())
        except KeyError:
            known = ", ".join(self.study_names()) or "(none)"
            raise ConfigError(f"the store {display_url(self.url)} has no sweep {name!r}; sweeps there: {known}") from None

    def prepare(self, name: str, configs: Sequence[RunConfig]):
        """Create or load the study `name` and make sure every run of `configs` has a trial that
        is pending, running or complete (adding only what is missing). Returns (study, counts)."""
        import optuna

        with self.lock, reading_store(self.url):
            study = optuna.create_study(study_name=name, storage=self.storage, direction="maximize",
                                        load_if_exists=True, sampler=optuna.samplers.RandomSampler())
            added, requeued = _enqueue_missing(study, configs)
            if configs:
                study.set_user_attr("grid_runs", len(configs))
        return study, {"added": added, "requeued": requeued}

    def requeue_unfinished(self, study) -> int:
        """Give each run of the study whose trials all failed (and have no retry pending) a new trial."""
        with self.lock:
            configs = _stored_configs(study)
            _, requeued = _enqueue_missing(study, configs)
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


# --------------------------------------------------------------------------------------------
# Trials <-> runs
# --------------------------------------------------------------------------------------------


def _comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in MACHINE_FIELDS}


def _params(config: RunConfig) -> dict:
    return {"method": config.method, "layers": config.layers, "alpha": config.alpha,
            "correction": config.correction, "noise": config.noise, "seed": config.seed}


def _runs_of(trials) -> dict[str, list]:
    by_run: dict[str, list] = {}
    for trial in trials:
        rid = trial.user_attrs.get("run_id")
        if rid is not None:
            by_run.setdefault(rid, []).append(trial)
    return by_run


def _stored_configs(study) -> list[RunConfig]:
    configs, seen = [], set()
    for trial in study.get_trials(deepcopy=False):
        rid = trial.user_attrs.get("run_id")
        if rid is not None and rid not in seen and "config" in trial.user_attrs:
            seen.add(rid)
            configs.append(RunConfig.from_dict(trial.user_attrs["config"]))
    return configs


def _enqueue_missing(study, configs: Sequence[RunConfig]) -> tuple[int, int]:
    """Under the store lock: a new trial for each run with no pending, running or complete trial."""
    from optuna.trial import TrialState

    from latentmix.experiments import row_label, run_id

    by_run = _runs_of(study.get_trials(deepcopy=False))
    live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
    added = requeued = 0
    for config in configs:
        rid = run_id(config)
        stored = by_run.get(rid, [])
        wanted = _comparable(config.to_dict())
        for trial in stored:
            have = _comparable(trial.user_attrs.get("config", {}))
            diff = sorted(k for k in set(wanted) & set(have) if wanted[k] != have[k])
            if diff:
                raise ConfigError(
                    f"sweep {study.study_name!r} already holds run {rid} with other settings "
                    f"({', '.join(f'{k}: {have[k]!r} there, {wanted[k]!r} here' for k in diff[:3])}); "
                    "use another --out/--storage or another sweep name")
        if any(t.state in live for t in stored):
            continue
        study.enqueue_trial(_params(config), user_attrs={
            "run_id": rid, "row": row_label(config), "config": config.to_dict(), "attempt": len(stored) + 1,
        })
        if stored:
            requeued += 1
        else:
            added += 1
    return added, requeued


@dataclass
class Claim:
    trial: Any  # optuna.Trial
    config: RunConfig
    run_id: str
    row: str


def _population_key(config: RunConfig) -> tuple:
    return tuple(getattr(config, name) for name in POPULATION_SHARED)


def _population_module():
    from latentmix import population

    return population


def claim_runs(store: SweepStore, study, *, limit: int = 1, vectorized: bool = True,
               overrides: Optional[dict] = None) -> list[Claim]:
    """Take up to `limit` pending runs (more than one only for runs that can share a vectorized
    population). Each taken trial is RUNNING with a first heartbeat before the lock is released."""
    import optuna
    from optuna.trial import TrialState

    storage = store.storage
    if not storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,)):
        return []
    population = _population_module() if vectorized and limit > 1 else None
    claims: list[Claim] = []
    with store.lock:
        trials = storage.get_all_trials(study._study_id, deepcopy=False)
        busy = {t.user_attrs.get("run_id") for t in trials if t.state in (TrialState.RUNNING, TrialState.COMPLETE)}
        waiting = sorted((t for t in trials if t.state == TrialState.WAITING), key=lambda t: t.number)
        group_key = None
        for frozen in waiting:
            rid = frozen.user_attrs.get("run_id")
            if rid is None or "config" not in frozen.user_attrs:
                continue  # not one of ours
            if rid in busy:  # a duplicate of a run that is running or done: close it
                with contextlib.suppress(Exception):
                    storage.set_trial_user_attr(frozen._trial_id, "duplicate_of", rid)
                    storage.set_trial_state_values(frozen._trial_id, TrialState.FAIL)
                continue
            try:
                config = RunConfig.from_dict(frozen.user_attrs["config"])
            except (ConfigError, TypeError):
                continue  # written by another latentmix version: leave it to a worker that reads it
            if overrides:
                config = replace(config, **overrides)
            if claims:
                if len(claims) >= limit:
                    break
                if group_key is None or not population.supports_population(config) or _population_key(config) != group_key:
                    continue
            try:
                if not storage.set_trial_state_values(frozen._trial_id, TrialState.RUNNING):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            storage.record_heartbeat(frozen._trial_id)
            busy.add(rid)
            claims.append(Claim(optuna.trial.Trial(study, frozen._trial_id), config, rid,
                                frozen.user_attrs.get("row", rid)))
            if len(claims) == 1:
                if population is None or not population.supports_population(config):
                    break
                group_key = _population_key(config)
    return claims


class Heartbeat:
    """Records a heartbeat for each trial every `interval` seconds until stopped."""

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


# --------------------------------------------------------------------------------------------
# The worker
# --------------------------------------------------------------------------------------------


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


def _scalar_summary(summary: dict) -> dict:
    out = {}
    for key, value in summary.items():
        if key in ("metrics", "p_noisy", "losses", "predictions", "noisy_labels", "is_noisy"):
            continue
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
            value = value.item()
        if value is None or isinstance(value, (str, int, float, bool)):
            out[key] = value
    return out


def _load_result(run_dir: Path, config: RunConfig) -> Optional[dict]:
    """A finished run's result.json, if its config.json matches this run (else ConfigError)."""
    path = run_dir / "result.json"
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if summary.get("wall_time_s") is None:  # timings live in timing.json, not in result.json
        summary["wall_time_s"] = read_wall_time(run_dir)
    config_path = run_dir / "config.json"
    if config_path.exists():
        with contextlib.suppress(OSError, json.JSONDecodeError, KeyError, TypeError):
            stored = json.loads(config_path.read_text())["config"]
            have, want = _comparable(stored), _comparable(config.to_dict())
            diff = sorted(k for k in set(have) & set(want) if have[k] != want[k])
            if diff:
                raise ConfigError(f"{run_dir} holds a finished run with other settings ({', '.join(diff[:3])}); "
                                  "move it away or use another --out")
    return summary


def _set_attrs(trial, attrs: dict) -> None:
    for key, value in attrs.items():
        trial.storage.set_trial_user_attr(trial._trial_id, key, value)


def _finish(study, claim: Claim, summary: dict, run_dir: Path, report: WorkerReport, how: str) -> None:
    import optuna
    from optuna.trial import TrialState

    summary = {**_scalar_summary(summary), "trained_as": summary.get("trained_as", how)}
    try:
        _set_attrs(claim.trial, {RESULT_ATTR: summary, "run_dir": str(run_dir.resolve()), "trained_as": summary["trained_as"]})
        study.tell(claim.trial, float(summary["best_val_acc"]))
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
        state = claim.trial.storage.get_trial(claim.trial._trial_id).state
        if state != TrialState.COMPLETE:
            report.lost += 1  # its retry will find result.json and finish from it


def _fail(study, claim: Claim, error: BaseException, report: WorkerReport) -> None:
    from optuna.trial import TrialState

    report.failed += 1
    with contextlib.suppress(Exception):
        _set_attrs(claim.trial, {"error": f"{type(error).__name__}: {error}"[:2000]})
        study.tell(claim.trial, state=TrialState.FAIL)


def _put_back(store: SweepStore, study, claims: Sequence[Claim]) -> None:
    """Interrupted (Ctrl-C): close the trials and queue each run again for the other workers."""
    from optuna.trial import TrialState

    with contextlib.suppress(Exception), store.lock:
        for claim in claims:
            with contextlib.suppress(Exception):
                _set_attrs(claim.trial, {"interrupted": True})
                study.tell(claim.trial, state=TrialState.FAIL)
        _enqueue_missing(study, [RunConfig.from_dict(c.trial.user_attrs["config"]) if "config" in c.trial.user_attrs
                                 else c.config for c in claims])


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
        _set_attrs(claim.trial, {"resumed_from_epoch": restored})
    _finish(study, claim, {**result.summary(), "wall_time_s": round(result.wall_time_s, 3)}, run_dir, report,
            "sequential")


def _epochs_of(config: RunConfig) -> int:
    from latentmix.training import protocol_for

    return protocol_for(config, "arrays" if config.data else config.dataset).epochs


def _train_population(study, claims: Sequence[Claim], out_dir: Path, report: WorkerReport, population) -> None:
    from latentmix.io import atomic_write_csv, atomic_write_json
    from latentmix.training import METRIC_FIELDS, write_label_issues

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
    for claim, summary, seen in zip(claims, results, reported):
        run_dir = out_dir / "runs" / claim.run_id
        metrics = summary.get("metrics") or []
        _report_missing(claim.trial, [row for row in metrics if row["epoch"] % stride == 0 or row is metrics[-1]], seen)
        _set_attrs(claim.trial, {"val_acc_curve": [round(float(row["val_acc"]), 6) for row in metrics]})
        summary = {**summary, "trained_as": summary.get("trained_as", f"population of {len(claims)}")}
        atomic_write_json(run_dir / "config.json", {"config": claim.config.to_dict(), "trained_as": summary["trained_as"]})
        if metrics:
            atomic_write_csv(run_dir / "metrics.csv", metrics, METRIC_FIELDS)
        if all(summary.get(k) is not None for k in ("p_noisy", "predictions", "noisy_labels")):
            write_label_issues(run_dir / "label_issues.csv", SimpleNamespace(
                p_noisy=summary["p_noisy"], losses=summary.get("losses"), predictions=summary["predictions"],
                noisy_labels=summary["noisy_labels"],
                is_noisy=summary.get("is_noisy") if claim.config.data is None else None))  # clean labels known
        scalars = _scalar_summary(summary)
        # Timings go to timing.json, so that result.json is the same file for same-seed runs.
        atomic_write_json(run_dir / TIMING_NAME, timing_document(
            [{"epochs": [1, len(metrics)] if metrics else None, "wall_time_s": summary.get("wall_time_s", 0.0),
              "device": claim.config.device}], summary.get("epoch_time_s") or []))
        atomic_write_json(run_dir / "result.json", {k: v for k, v in scalars.items() if k not in TIMING_KEYS})
        report.trained += 1
        _finish(study, claim, scalars, run_dir, report, summary["trained_as"])


def work_on(store: SweepStore, study, claims: Sequence[Claim], out_dir: Path, report: WorkerReport) -> None:
    """Train (or finish from result.json) the claimed runs, with heartbeats, and tell the store."""
    host = f"{socket.gethostname()}:{os.getpid()}"
    with Heartbeat(store.storage, [c.trial._trial_id for c in claims], store.heartbeat_interval):
        try:
            to_train = []
            for claim in claims:
                run_dir = out_dir / "runs" / claim.run_id
                _set_attrs(claim.trial, {"worker": host, "run_dir": str(run_dir.resolve())})
                try:
                    summary = _load_result(run_dir, claim.config)
                except ConfigError as error:
                    _fail(study, claim, error, report)
                    continue
                if summary is not None:
                    report.reused += 1
                    _set_attrs(claim.trial, {"reused": True})
                    _report_missing(claim.trial, _metrics_from_csv(run_dir), set())
                    _finish(study, claim, summary, run_dir, report, summary.get("trained_as", "reused"))
                else:
                    to_train.append(claim)
            # A run with a checkpoint (a retry) resumes on its own; the others may share a population.
            has_checkpoint = [(out_dir / "runs" / c.run_id / CHECKPOINT_NAME).exists() for c in to_train]
            resume = [c for c, yes in zip(to_train, has_checkpoint) if yes]
            fresh = [c for c, yes in zip(to_train, has_checkpoint) if not yes]
            population = _population_module() if len(fresh) > 1 else None
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
            _put_back(store, study, open_claims)
            raise


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


# --------------------------------------------------------------------------------------------
# Status and results
# --------------------------------------------------------------------------------------------


def sweep_counts(study) -> dict:
    """Runs by state (done / running / pending / failed), and the store's trial bookkeeping."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    by_run = _runs_of(trials)
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
    for rid, trials in _runs_of(study.get_trials(deepcopy=False)).items():
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

    from latentmix.experiments import run_id

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


# --------------------------------------------------------------------------------------------
# One call: prepare, work (with local helper processes), collect
# --------------------------------------------------------------------------------------------


def run_sweep(name: str, configs: Sequence[RunConfig], out_dir: str | os.PathLike, *, storage: Optional[str] = None,
              workers: int = 1, vectorized: bool = True, population_size: int = DEFAULT_POPULATION,
              progress: bool = True, heartbeat_interval: int = DEFAULT_HEARTBEAT_S,
              grace_period: Optional[int] = DEFAULT_GRACE_S, max_retry: Optional[int] = DEFAULT_MAX_RETRY,
              wait: bool = True, poll_interval: float = DEFAULT_POLL_S, overrides: Optional[dict] = None) -> list[dict]:
    """Run the grid `configs` as sweep `name`: finished runs are kept, missing ones trained, by this
    process and ``workers - 1`` helper processes (``latentmix sweep work``) on this machine; other
    machines may join with the same `storage`. Returns the finished runs' summaries in grid order and
    writes ``OUT/sweep.json`` (counts of runs, retries, what this worker did)."""
    from latentmix.io import atomic_write_json

    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    url = storage or default_storage_url(out_dir)
    store = SweepStore(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period, max_retry=max_retry)
    study, enqueued = store.prepare(name, list(configs))
    helpers = [_spawn_helper(url, name, out_dir, workers, vectorized=vectorized, population_size=population_size,
                             heartbeat_interval=heartbeat_interval, grace_period=grace_period, max_retry=max_retry,
                             poll_interval=poll_interval, overrides=overrides)
               for _ in range(workers - 1)]
    started = time.perf_counter()
    try:
        report = run_worker(store, study, out_dir, vectorized=vectorized, population_size=population_size,
                            wait=wait, poll_interval=poll_interval, progress=progress, overrides=overrides)
    except BaseException:
        for helper in helpers:  # Ctrl-C: each helper puts its runs back in the queue, then exits
            with contextlib.suppress(Exception):
                helper.send_signal(signal.SIGINT)
        for helper in helpers:
            try:
                helper.wait(timeout=30)
            except subprocess.TimeoutExpired:
                helper.kill()
        raise
    for helper in helpers:
        helper.wait()
    counts = sweep_counts(study)
    atomic_write_json(out_dir / "sweep.json", {
        "name": name, "storage": display_url(url), "counts": counts, "enqueued": enqueued,
        "this_worker": report.as_dict(), "workers_here": workers, "wall_time_s": round(time.perf_counter() - started, 3),
    })
    return collect_results(study, configs)


def _spawn_helper(url: str, name: str, out_dir: Path, workers: int, *, vectorized: bool, population_size: int,
                  heartbeat_interval: int, grace_period: Optional[int], max_retry: Optional[int], poll_interval: float,
                  overrides: Optional[dict]) -> subprocess.Popen:
    command = [sys.executable, "-m", "latentmix", "sweep", "work", "--storage", url, "--study", name,
               "--out", str(out_dir), "--quiet", "--population", str(population_size),
               "--heartbeat", str(heartbeat_interval), "--poll", str(poll_interval)]
    if grace_period is not None:
        command += ["--grace", str(grace_period)]
    if max_retry is not None:
        command += ["--max-retry", str(max_retry)]
    if not vectorized:
        command.append("--sequential")
    if overrides:
        command += ["--overrides", json.dumps(overrides)]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    return subprocess.Popen(command, env=env)


# --------------------------------------------------------------------------------------------
# Command line: latentmix sweep run | work | status
# --------------------------------------------------------------------------------------------


def _add_worker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--population", type=int, default=DEFAULT_POPULATION,
                        help="runs one worker trains together as a vectorized population (small MLPs)")
    parser.add_argument("--sequential", action="store_true", help="train every run on its own (no populations)")
    parser.add_argument("--heartbeat", type=int, default=DEFAULT_HEARTBEAT_S, help="seconds between heartbeats")
    parser.add_argument("--grace", type=int, default=DEFAULT_GRACE_S,
                        help="seconds without a heartbeat after which a run's worker counts as dead")
    parser.add_argument("--max-retry", type=int, default=DEFAULT_MAX_RETRY,
                        help="retries of a run whose worker died (a new `sweep run` tries again)")
    parser.add_argument("--poll", type=float, default=DEFAULT_POLL_S, help="seconds between looks at the store")
    parser.add_argument("--no-wait", action="store_true",
                        help="stop when nothing is pending (do not wait for other workers' runs)")
    parser.add_argument("--device", help="device for the runs this worker trains (auto, cpu, cuda)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--overrides", help=argparse.SUPPRESS)  # JSON of machine fields, from `run --workers`


def register(commands) -> None:
    sweep = commands.add_parser("sweep", help="run a grid as a resumable sweep, on one machine or many",
                                description="Run a grid of runs from a TOML spec as an Optuna study (see docs/sweeps.md).")
    sub = sweep.add_subparsers(dest="sweep_command", required=True)

    run = sub.add_parser("run", help="run (or join, or resume) the sweep of a spec")
    run.add_argument("spec", help="the sweep's TOML spec")
    run.add_argument("--storage", help="store URL (default sqlite:///OUT/sweep.db; postgresql://... for many machines)")
    run.add_argument("--out", help="output folder (default: the spec's `out`, else runs/sweep-NAME)")
    run.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    _add_worker_options(run)
    run.set_defaults(handler=cmd_run)

    work = sub.add_parser("work", help="join a sweep already in a store (no spec needed)")
    work.add_argument("--storage", required=True)
    work.add_argument("--study", required=True, help="the sweep's name")
    work.add_argument("--out", required=True, help="output folder for the run folders trained here")
    _add_worker_options(work)
    work.set_defaults(handler=cmd_work)

    status = sub.add_parser("status", help="done / running / pending counts of a sweep")
    status.add_argument("spec", nargs="?", help="the sweep's TOML spec (or give --storage and --study)")
    status.add_argument("--storage")
    status.add_argument("--study", help="the sweep's name (default: the spec's, or the store's only sweep)")
    status.add_argument("--out", help="output folder whose sweep.db to read")
    status.add_argument("--json", action="store_true", help="print the counts as JSON")
    status.set_defaults(handler=cmd_status)


def _spec_location(spec: SweepSpec, args: argparse.Namespace) -> tuple[Path, str]:
    out = Path(args.out or spec.out or f"runs/sweep-{spec.name}")
    url = args.storage or spec.storage or default_storage_url(out)
    return out, url


def _overrides(args: argparse.Namespace, spec: Optional[SweepSpec]) -> dict:
    overrides = spec.machine_overrides() if spec is not None else {}
    if getattr(args, "overrides", None):
        given = json.loads(args.overrides)
        overrides.update({k: v for k, v in given.items() if k in MACHINE_FIELDS})
    if getattr(args, "device", None):
        overrides["device"] = args.device
    return overrides


def cmd_run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    if args.sequential and all(config.dataset == "spiral" for config in spec.configs):
        from latentmix.runtime import set_threads

        set_threads(None, "spiral")  # one tiny run at a time: one thread (see set_threads)
    out, url = _spec_location(spec, args)
    check_output_folder(out, "--out")
    overrides = _overrides(args, spec)
    results = run_sweep(spec.name, spec.configs, out, storage=url, workers=args.workers,
                        vectorized=not args.sequential, population_size=args.population, progress=not args.quiet,
                        heartbeat_interval=args.heartbeat, grace_period=args.grace, max_retry=args.max_retry,
                        wait=not args.no_wait, poll_interval=args.poll, overrides=overrides)
    from latentmix.io import atomic_write_csv

    atomic_write_csv(out / "results.csv", results, None if results else RESULTS_FIELDS)  # a header at least
    summary = json.loads((out / "sweep.json").read_text())
    store = SweepStore(url, heartbeat_interval=args.heartbeat, grace_period=args.grace, max_retry=args.max_retry)
    study = store.load(spec.name)
    print(format_status(study, url))
    mine = summary["this_worker"]
    print(f"  this worker: trained {mine['trained']} (resumed {mine['resumed']}), reused {mine['reused']}, "
          f"failed {mine['failed']}; results in {out}/results.csv and {out}/runs/")
    failed = failed_runs(study)
    print_failed_runs(failed)
    return 1 if failed else 0


def cmd_work(args: argparse.Namespace) -> int:
    check_output_folder(args.out, "--out")
    store = SweepStore(args.storage, heartbeat_interval=args.heartbeat, grace_period=args.grace, max_retry=args.max_retry)
    study = store.load(args.study)
    store.requeue_unfinished(study)
    report = run_worker(store, study, args.out, vectorized=not args.sequential, population_size=args.population,
                        wait=not args.no_wait, poll_interval=args.poll, progress=not args.quiet,
                        overrides=_overrides(args, None))
    if not args.quiet:
        print(format_status(study, args.storage))
        print(f"  this worker: {json.dumps(report.as_dict())}")
    return 1 if report.failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec) if args.spec else None
    if spec is not None:
        out, url = _spec_location(spec, args)
    elif args.storage:
        url = args.storage
    elif args.out:
        url = default_storage_url(args.out)
    else:
        raise ConfigError("sweep status needs a spec, --storage URL or --out DIR")
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        raise ConfigError(f"no sweep store at {url} (nothing has run yet?)")
    store = SweepStore(url)
    name = args.study or (spec.name if spec is not None else None)
    if name is None:
        names = store.study_names()
        if len(names) != 1:
            raise ConfigError(f"the store holds {len(names)} sweeps ({', '.join(names) or 'none'}); pick one with --study")
        name = names[0]
    study = store.load(name)
    if args.json:
        print(json.dumps({"name": name, **sweep_counts(study)}, indent=2))
    else:
        print(format_status(study, url))
    return 0
