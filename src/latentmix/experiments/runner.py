"""Run a grid through the sweep store: each run in its own folder, finished runs never run again.

`run_grid` turns the grid into an Optuna study (`latentmix.sweep`): by default a SQLite file
``OUT/sweep.db`` beside the run folders ``OUT/runs/<run_id>``; with a PostgreSQL `storage` other
machines can work on the same grid (``latentmix sweep work``). Runs that the vectorized population
trainer supports are trained together when `vectorized` is True.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from latentmix.experiments import Grid
from latentmix.run_folder import RunFolder


def load_finished(run_dir: Path) -> Optional[dict]:
    """A finished run's summary (result.json), None when the run has not finished."""
    return RunFolder(run_dir).read_result()


def run_grid(grid: Grid, out_dir: Path, *, storage: Optional[str] = None, workers: int = 1, vectorized: bool = True,
             progress: bool = True) -> list[dict]:
    """Train every run of `grid` not yet finished in the sweep store; returns one summary per
    finished run (with ``row``, ``run_id`` and ``run_dir``), in grid order."""
    from latentmix.sweep import run_sweep

    configs = grid.runs()
    # One worker takes every pending run of a shape into one population: the per-step overhead is
    # then paid once for the whole grid (sweeps shared between machines use smaller populations).
    return run_sweep(grid.name, configs, Path(out_dir), storage=storage, workers=workers, vectorized=vectorized,
                     population_size=max(1, len(configs) // max(1, workers)), progress=progress)


def run_grid_sequential(grid: Grid, out_dir: Path, progress: bool = True,
                        on_result: Optional[Callable[[dict], None]] = None) -> list[dict]:
    """`run_grid` with every run trained on its own (no vectorized populations)."""
    results = run_grid(grid, out_dir, vectorized=False, progress=progress)
    if on_result:
        for summary in results:
            on_result(summary)
    return results

