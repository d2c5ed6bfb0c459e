"""The spiral Table 2 grid: vectorized population training vs one run at a time.

    python benchmarks/bench_spiral_grid.py [--seeds 5] [--epochs 300] [--sample 8] [--threads 2]

Vectorized: the whole grid (17 layer settings x 5 noise rates x seeds) trained as one population
by `latentmix.population.train_population`, timed end to end (model set-up included).
Sequential: `latentmix.training.train` on a sample of the grid's runs (spread over its methods,
one torch thread, the fastest setting for one tiny run), timed per run and *estimated* for the
whole grid as mean time per run x number of runs. Both measured in this one process, so the
printed ratio compares like with like on whatever machine runs it.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace

import numpy as np
import torch

from latentmix.experiments import spiral_table2_grid
from latentmix.population import train_population
from latentmix.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--sample", type=int, default=8, help="sequential runs timed for the estimate")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for the population")
    args = parser.parse_args()

    grid = spiral_table2_grid(seeds=args.seeds, epochs=args.epochs)
    configs = grid.runs()
    print(f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs; grid of {len(configs)} runs "
          f"x {args.epochs} epochs ({len(grid.methods)} layer settings, {len(grid.noise_rates)} noise rates, "
          f"{args.seeds} seeds)")

    torch.set_num_threads(1)
    picks = np.linspace(0, len(configs) - 1, args.sample).round().astype(int)
    sequential_times = []
    for index in picks:
        started = time.perf_counter()
        train(configs[index], progress=False)
        sequential_times.append(time.perf_counter() - started)
    per_run = float(np.mean(sequential_times))
    estimate = per_run * len(configs)
    print(f"sequential: {args.sample} sampled runs, {per_run:.2f} s per run (min {min(sequential_times):.2f}, "
          f"max {max(sequential_times):.2f}); whole grid estimated at {estimate:.0f} s")

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results = train_population(configs, progress=False)
    vectorized = time.perf_counter() - started
    print(f"vectorized: whole grid trained in {vectorized:.1f} s with {args.threads} thread(s) "
          f"({vectorized / len(configs) * 1e3:.0f} ms per run)")
    print(f"speed-up: {estimate / vectorized:.1f}x (sequential estimated from measured runs / vectorized measured)")
    best = max(results, key=lambda r: r["best_val_acc"])
    print(f"(sanity: best run {best['method']} at noise {best['noise']:g}: {best['best_val_acc']:.3f})")


if __name__ == "__main__":
    main()
