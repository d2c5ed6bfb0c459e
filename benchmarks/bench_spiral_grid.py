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
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from latentmix.experiments import spiral_table2_grid
from latentmix.models.small import SpiralMLP
from latentmix.population import train_population
from latentmix.stacked_mlp import EVAL_CHUNK
from latentmix.protocols import PROTOCOLS
from latentmix.training import train


def arithmetic_floor(num_runs: int, threads: int, epochs: int = 3) -> tuple[float, float]:
    """Seconds per epoch of the population's batched matrix products alone, and of its activations
    (one sigmoid per hidden unit) alone: the same shapes and counts as `train_population` on the
    spiral protocol (per step: 6 forward products, 6 weight-gradient and 5 input-gradient products;
    per epoch: the validation pass, and the training-set pass every 10th epoch), the runs split
    over `threads` threads as the population splits them. No implementation built from these
    kernels can be faster than their sum."""
    protocol = PROTOCOLS["spiral"]
    widths = (4,) + SpiralMLP.widths + (2,)
    shapes = list(zip(widths[1:], widths[:-1]))  # (out, in) per layer
    batch, steps = protocol.batch_size, -(-1000 // protocol.batch_size)
    eval_chunks = -(-1000 // EVAL_CHUNK) * 1.1  # validation every epoch, training set every 10th

    def buffers(runs: int) -> list[dict]:
        return [dict(h=torch.randn(runs, batch, i), w=torch.randn(runs, o, i) * 0.3, out=torch.empty(runs, batch, o),
                     g=torch.randn(runs, batch, o), v=torch.zeros(runs, o, i), dh=torch.empty(runs, batch, i),
                     eval_in=torch.randn(runs, i, EVAL_CHUNK), eval_out=torch.empty(runs, o, EVAL_CHUNK)) for o, i in shapes]

    def products(layers: list[dict]) -> None:
        for _ in range(steps):
            for t in layers:
                t["out"].baddbmm_(t["h"], t["w"].transpose(1, 2), beta=0)
            for l, t in reversed(list(enumerate(layers))):
                t["v"].baddbmm_(t["g"].transpose(1, 2), t["h"], beta=0.9)
                if l:
                    torch.bmm(t["g"], t["w"], out=t["dh"])
        for _ in range(round(eval_chunks)):
            for t in layers:
                t["eval_out"].baddbmm_(t["w"], t["eval_in"], beta=0)

    def activations(layers: list[dict]) -> None:
        for _ in range(steps):
            for t in layers[:-1]:
                t["out"].sigmoid_()
        for _ in range(round(eval_chunks)):
            for t in layers[:-1]:
                t["eval_out"].sigmoid_()

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    parts = [buffers(len(rows)) for rows in np.array_split(np.arange(num_runs), threads)]
    seconds = []
    with ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        for work in (products, activations):
            list(pool.map(work, parts))  # warm-up
            started = time.perf_counter()
            for _ in range(epochs):
                list(pool.map(work, parts))
            seconds.append((time.perf_counter() - started) / epochs)
    torch.set_num_threads(torch_threads)
    return seconds[0], seconds[1]


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
    products, activations = arithmetic_floor(len(configs), args.threads)
    print(f"floor: the grid's batched matrix products alone take {products * args.epochs:.0f} s and its activations "
          f"alone {activations * args.epochs:.0f} s ({(products + activations) * 1e3:.0f} ms per epoch) with "
          f"{args.threads} thread(s): the vectorized run is {vectorized / ((products + activations) * args.epochs):.2f}x that floor")
    best = max(results, key=lambda r: r.best_val_acc)
    print(f"(sanity: best run {best.method.name} at noise {best.config.noise:g}: {best.best_val_acc:.3f})")


if __name__ == "__main__":
    main()
