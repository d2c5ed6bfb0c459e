"""What parallel run processes buy on this CPU: the same Fashion-MNIST runs through the grid runner
with one worker using every core (torch threads) against one single-thread worker per core.

Each mode trains the same runs (SmallCNN width 0.25 or the MLP on the 5,000-image subset of
`latentmix reproduce fashion-mnist`, a few epochs each) into a fresh folder through
`latentmix.experiments.runner.run_grid` (the path `reproduce fashion-mnist --workers N` takes) and
reports the wall time; the ratio is the figure to read (same machine, same run).

    python benchmarks/fashion_table_cost.py --model small-cnn --runs 4 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from latentmix.experiments.fashion import fashion_grid, prepare_fashion_subset
from latentmix.experiments.runner import run_grid


def timed(grid, workers: int, threads: int) -> float:
    folder = Path(tempfile.mkdtemp(prefix="fashion-cost-"))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the helper processes read it
    try:
        started = time.perf_counter()
        run_grid(grid, folder, vectorized=False, progress=False, workers=workers)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small-cnn", choices=("small-cnn", "mlp"))
    parser.add_argument("--runs", type=int, default=4, help="runs per mode (seeds of CE at 50%% noise)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir", help="Fashion-MNIST IDX folder (default /usr/share/datasets/fashion-mnist)")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    data = Path(tempfile.mkdtemp(prefix="fashion-cost-data-"))
    folder, _ = prepare_fashion_subset(args.data_dir, data)
    grid = fashion_grid(str(folder), seeds=args.runs, epochs=args.epochs, methods="ce", noise_rates=(0.5,),
                        asymmetric_rates=(), model=None if args.model == "small-cnn" else args.model, device="cpu")
    one = timed(grid, workers=1, threads=cores)
    many = timed(grid, workers=cores, threads=1)
    shutil.rmtree(data, ignore_errors=True)
    print(f"| {args.model}, {args.runs} runs x {args.epochs} epochs | seconds | ratio |")
    print("|---|---|---|")
    print(f"| 1 worker x {cores} threads | {one:.1f} | 1.00 |")
    print(f"| {cores} workers x 1 thread | {many:.1f} | {one / many:.2f}x faster |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
