"""Run a grid through the sweep store: each run in its own folder, finished runs never run again.

`run_grid` is the one grid runner of every table (`reproduce spiral | cifar10 | fashion-mnist |
multimodal`). It turns the grid into an Optuna study (`latentmix.sweep`): by default a SQLite file
``OUT/sweep.db`` beside the run folders ``OUT/runs/<run_id>``; with a PostgreSQL `storage` other
machines can work on the same grid (``latentmix sweep work``). Runs that the vectorized population
trainer supports are trained together when `vectorized` is True.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from latentmix.errors import ConfigError
from latentmix.runtime import set_threads
from latentmix.experiments import Grid


def run_grid(grid: Grid, out_dir: Path, *, storage: Optional[str] = None, workers: int = 1, vectorized: bool = True,
             progress: bool = True) -> list[dict]:
    """Train every run of `grid` not yet finished in the sweep store; returns one summary per
    finished run (the store's record: `latentmix.sweep.results.store_record`, with ``row``,
    ``run_id`` and ``run_dir``), in grid order.

    `workers` processes share the runs; with more than one, each gets an equal share of the CPU
    cores as torch threads (small networks use a second thread poorly:
    benchmarks/fashion_table_cost.py measures both)."""
    from latentmix.sweep import run_sweep

    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if workers > 1:
        set_threads(max(1, (os.cpu_count() or 1) // workers), grid.name)
    configs = grid.runs()
    # One worker takes every pending run of a shape into one population: the per-step overhead is
    # then paid once for the whole grid (sweeps shared between machines use smaller populations).
    return run_sweep(grid.name, configs, Path(out_dir), storage=storage, workers=workers, vectorized=vectorized,
                     population_size=max(1, len(configs) // workers), progress=progress)
