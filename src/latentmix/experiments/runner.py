"""Run a grid one run at a time, each in its own folder; finished runs are never run again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

from latentmix.experiments import Grid, row_label, run_id
from latentmix.training import RunConfig, train


def load_finished(run_dir: Path) -> Optional[dict]:
    path = run_dir / "result.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a half-written file cannot exist (atomic writes), but a hand-edited one can


def run_grid_sequential(grid: Grid, out_dir: Path, progress: bool = True,
                        on_result: Optional[Callable[[dict], None]] = None) -> list[dict]:
    """Train every run of `grid` that has no `result.json` yet under ``out_dir/runs/<run_id>``."""
    from tqdm.auto import tqdm

    results = []
    configs = grid.runs()
    bar = tqdm(configs, desc=grid.name, unit="run", disable=not progress, dynamic_ncols=True)
    best = 0.0
    for config in bar:
        run_dir = out_dir / "runs" / run_id(config)
        summary = load_finished(run_dir)
        if summary is None:
            result = train(config, run_dir=run_dir, progress=False, resume=True)
            summary = result.summary()
        summary = {**summary, "row": row_label(config), "run_id": run_id(config)}
        results.append(summary)
        best = max(best, summary["best_val_acc"])
        bar.set_postfix(best=f"{best:.3f}")
        if on_result:
            on_result(summary)
    return results
