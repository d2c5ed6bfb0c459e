"""Does the lr decay at the end of early learning belong to methods that do not correct labels?
(issue #24, item 2: "Decide separately whether the lr decay belongs at that point for methods
without correction.")

The `arrays` protocol (a user's own file) decays the learning rate tenfold in the epoch after the
run's own signals say early learning is over (`latentmix.selection.early_learning_end`), instead of
at its first fixed milestone (epoch 25 of 50): [A]'s shape, bootstrapping just after the first
decay, without a schedule tuned to the data. For a method that never bootstraps (CE, LR-M, the
peers) the decay is only a change of schedule. This script trains CE and LR-M on the robustness
suite's feature data sets (benchmarks/robustness_suite.py; the same noisy-label files) with the
decay at the learning end ("auto", today's) and at the fixed milestones only ("fixed"), 2 seeds,
the default 50 epochs, `--val-split 0.1`, and compares the accuracy a user gets: the checkpoint
selected on the noisy holdout, scored on the clean test set.

    python benchmarks/decay_at_learning_end.py                  # resumes; one job file per run
    python benchmarks/decay_at_learning_end.py --summary-only

Writes benchmarks/results/decay-at-learning-end/{jobs/*.json, table.md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

FEATURE_SETS = ("slow", "weak-easy", "many-classes", "few", "imbalanced", "tabular-csv", "signal")
METHODS = ("ce", "lr-m")
DECAYS = ("auto", "fixed")
SEEDS = (0, 1)
SUITE = ROOT / "benchmarks" / "results" / "robustness-suite-after"


def job_path(out: Path, data: str, noise: str, method: str, decay: str, seed: int) -> Path:
    return out / "jobs" / f"{data}-{noise}-{method}-{decay}-s{seed}.json"


def train_one(out: str, data: str, noise: str, method: str, decay: str, seed: int) -> dict:
    """One run in a worker process (one torch thread): the suite's file, the `arrays` protocol with
    its first decay at the learning end (auto) or at the fixed milestone only (fixed)."""
    import tempfile

    import torch

    import latentmix.protocols as protocols
    import robustness_suite as suite
    from latentmix.config import RunConfig
    from latentmix.training import train

    torch.set_num_threads(1)
    target = job_path(Path(out), data, noise, method, decay, seed)
    if target.exists():
        return json.loads(target.read_text())
    spec = suite.DATASETS[data]
    path = suite.write_cell(SUITE, spec, noise)
    protocols.PROTOCOLS["arrays"] = replace(protocols.PROTOCOLS["arrays"], decay_at_learning_end=decay == "auto")
    config = RunConfig(dataset=path.stem, data=str(path), method=method, val_split=0.1, model=spec.model,
                       layers=spec.layers if method != "ce" else None, seed=seed, device="cpu")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        result = train(config, run_dir=run_dir, progress=False)
    lrs = [row["lr"] for row in result.metrics]
    first_decay = next((row["epoch"] for row, before in zip(result.metrics[1:], lrs) if row["lr"] < before), None)
    record = {"data": data, "noise": noise, "method": method, "decay": decay, "seed": seed,
              "selected": result.selected_val_acc, "best": result.best_val_acc, "last": result.last_val_acc,
              "selected_epoch": result.selected_epoch, "first_decay_epoch": first_decay,
              "wall_s": round(time.perf_counter() - started, 1)}
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(record, indent=1))
    return record


def summarise(out: Path) -> str:
    """The table: per data set x noise, selected test accuracy (mean over seeds) with the decay at
    the learning end and at the fixed milestone, for each method; then the mean difference."""
    records = [json.loads(p.read_text()) for p in sorted((out / "jobs").glob("*.json"))]
    cells: dict[tuple, dict] = {}
    for r in records:
        cells.setdefault((r["data"], r["noise"]), {}).setdefault((r["method"], r["decay"]), []).append(r)
    lines = ["| data | noise | CE auto / fixed (first decay) | LR-M auto / fixed (first decay) |", "|---|---|---|---|"]
    differences = {m: [] for m in METHODS}
    for (data, noise), by in sorted(cells.items()):
        row = [data, noise]
        for method in METHODS:
            auto, fixed = by.get((method, "auto"), []), by.get((method, "fixed"), [])
            if len(auto) != len(SEEDS) or len(fixed) != len(SEEDS):
                row.append("?")
                continue
            a, f = (float(np.mean([r["selected"] for r in x])) * 100 for x in (auto, fixed))
            decays = "/".join(str(r["first_decay_epoch"]) for r in auto)
            row.append(f"{a:.1f} / {f:.1f} ({decays})")
            differences[method].append(a - f)
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    for method, diff in differences.items():
        if diff:
            d = np.array(diff)
            lines.append(f"{method}: auto - fixed over {len(d)} cells: mean {d.mean():+.2f} points, "
                         f"auto better by > 0.5 in {(d > 0.5).sum()}, worse by > 0.5 in {(d < -0.5).sum()}, "
                         f"min {d.min():+.1f}, max {d.max():+.1f}")
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=",".join(FEATURE_SETS))
    parser.add_argument("--noise", default="", help="noise kinds (default: the suite's five)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "decay-at-learning-end"))
    parser.add_argument("--summary-only", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not args.summary_only:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        import robustness_suite as suite

        os.environ.setdefault("OMP_NUM_THREADS", "1")
        noises = args.noise.split(",") if args.noise else suite.NOISES
        jobs = [(d, n, m, dec, s) for d in args.data.split(",") for n in noises for m in METHODS
                for dec in DECAYS for s in SEEDS]
        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(train_one, str(out), *job) for job in jobs]
            for done, future in enumerate(as_completed(futures), 1):
                try:
                    r = future.result()
                    print(f"[{done}/{len(jobs)}] {r['data']} {r['noise']} {r['method']} {r['decay']} s{r['seed']}: "
                          f"selected {r['selected']:.3f} ({r['wall_s']}s)", flush=True)
                except Exception as error:  # noqa: BLE001 - report it, go on
                    print(f"[{done}/{len(jobs)}] failed: {error!r}", file=sys.stderr, flush=True)
    print(summarise(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
