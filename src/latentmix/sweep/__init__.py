"""Sweeps: a grid of runs kept in an Optuna study, run by any number of workers, resumable.

A grid (a TOML spec, or a `Grid` built by ``reproduce``) is a list of `RunConfig`s. Each run
becomes a *trial* of an Optuna study, keyed by its run id. Workers take waiting trials, train them,
report the per-epoch validation accuracy as intermediate values, and finish each trial with the
run's best validation accuracy and its summary. The store is any database Optuna's `RDBStorage`
speaks: a SQLite file in the output folder (``OUT/sweep.db``, one machine) by default, PostgreSQL
(or MySQL) for many machines. Every run is done exactly once however many workers start, stop or
die (latentmix.sweep.store says what guards what).

One module per concern, each importing only those above it:

* `spec`    the TOML spec -> the grid's run configs
* `trials`  how a run is kept as trials; enqueueing the runs that have no live trial
* `lock`    one cross-process lock per store
* `store`   the Optuna storage, its heartbeats and retries; the changes made under the lock
* `results` counts by state, failed runs, the finished runs' summaries
* `claim`   taking waiting runs; heartbeats while they train
* `worker`  training the taken runs (alone or as a vectorized population) and finishing trials
* `launch`  one call: prepare, start helper workers on this machine, work, collect
* `cli`     ``latentmix sweep run | work | status`` (the command line's, not imported here: the
            library, `tune`, `report` and the grid runner do not load a CLI)
"""

from latentmix.sweep.claim import POPULATION_SHARED, Claim, Heartbeat, claim_runs
from latentmix.sweep.launch import run_sweep
from latentmix.sweep.lock import StoreLock
from latentmix.sweep.results import (RESULTS_FIELDS, collect_results, failed_runs, format_status, print_failed_runs,
                                     sweep_counts)
from latentmix.sweep.spec import MACHINE_FIELDS, SweepSpec, load_spec, spec_from_dict
from latentmix.sweep.store import (DEFAULT_GRACE_S, DEFAULT_HEARTBEAT_S, DEFAULT_MAX_RETRY, SweepStore,
                                   default_storage_url, display_url, reading_store, store_error)
from latentmix.sweep.trials import RESULT_ATTR
from latentmix.sweep.worker import DEFAULT_POLL_S, DEFAULT_POPULATION, WorkerReport, run_worker, set_user_attrs, work_on

__all__ = [
    "Claim", "DEFAULT_GRACE_S", "DEFAULT_HEARTBEAT_S", "DEFAULT_MAX_RETRY", "DEFAULT_POLL_S", "DEFAULT_POPULATION",
    "Heartbeat", "MACHINE_FIELDS", "POPULATION_SHARED", "RESULTS_FIELDS", "RESULT_ATTR", "StoreLock", "SweepSpec",
    "SweepStore", "WorkerReport", "claim_runs", "collect_results", "default_storage_url", "display_url",
    "failed_runs", "format_status", "load_spec", "print_failed_runs", "reading_store", "run_sweep",
    "run_worker", "set_user_attrs", "spec_from_dict", "store_error", "sweep_counts", "work_on",
]
