"""One call runs a grid as a sweep: prepare the store, start helper worker processes on this
machine (``latentmix sweep work``), work alongside them, and collect the finished runs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from latentmix.errors import ConfigError
from latentmix.sweep.results import collect_results, sweep_counts
from latentmix.sweep.store import (DEFAULT_GRACE_S, DEFAULT_HEARTBEAT_S, DEFAULT_MAX_RETRY, SweepStore,
                                   default_storage_url, display_url)
from latentmix.sweep.worker import DEFAULT_POLL_S, DEFAULT_POPULATION, run_worker
from latentmix.config import RunConfig


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
    # Through `python -m latentmix`, whose entry point sets OpenMP's passive waiting before torch
    # loads (latentmix.runtime): helpers share the CPU with this process and with each other.
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
    return subprocess.Popen(command, env=env, preexec_fn=exit_with_parent(os.getpid()))


def exit_with_parent(parent: int):
    """A `preexec_fn` that makes the child get SIGTERM when this process dies, however it dies
    (Linux `prctl(PR_SET_PDEATHSIG)`): a `sweep run --workers 2` killed with -9 runs no cleanup, and
    its helper went on training (issue 25.11); its claimed run is then retried after the grace period
    like any dead worker's. None where there is no prctl (the helper then outlives a killed parent)."""
    if not sys.platform.startswith("linux"):
        return None

    def set_death_signal() -> None:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was set
            os._exit(1)

    return set_death_signal

