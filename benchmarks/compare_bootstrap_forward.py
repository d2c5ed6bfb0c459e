"""Accuracy effect of `--bootstrap-forward single` (one extra forward) and `tracked` (none: the
previous epoch's tracking pass) against the reference's two extra forwards.

    python benchmarks/compare_bootstrap_forward.py [--variants single,tracked] [--noise 0.5,0.8]
        [--seeds 3] [--out DIR] [--reference-out runs/reproduce-fashion-mnist]   # reuse the table's M-DYR-H runs

Trains M-DYR-H on the CPU-sized Fashion-MNIST setting (the `reproduce fashion-mnist` subset,
model and schedule: a SmallCNN with batch-norm, so the variants really differ) with each variant
on the same seeds and noisy labels, and prints best/last test accuracy and the final detection
AUC of each (mean ± std over seeds) with the paired difference from the reference. Per-step cost is
measured separately by bench_step_cost.py.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from latentmix.experiments import GridMethod
from latentmix.experiments.fashion import fashion_grid, prepare_fashion_subset
from latentmix.experiments.runner import run_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="single,tracked", help="bootstrap-forward modes to compare")
    parser.add_argument("--noise", default="0.5,0.8")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="runs/compare-bootstrap-forward")
    parser.add_argument("--data-dir", help="Fashion-MNIST IDX folder (default: the system copy)")
    parser.add_argument("--reference-out", help="output folder of `latentmix reproduce fashion-mnist`: its finished "
                                                "M-DYR-H runs (same seeds and labels) serve as the reference side")
    args = parser.parse_args()
    noise = tuple(float(x) for x in args.noise.split(","))
    out = Path(args.out)
    folder, _ = prepare_fashion_subset(args.data_dir, out)
    variants = [v for v in args.variants.split(",") if v and v != "reference"]
    results = {}
    for mode in ["reference"] + variants:
        grid = fashion_grid(str(folder), seeds=args.seeds, noise_rates=noise)
        grid = replace(grid, name=f"bootstrap-forward-{mode}", methods=(GridMethod("m-dyr-h"),),
                       base=replace(grid.base, bootstrap_forward=mode))
        where = Path(args.reference_out) if mode == "reference" and args.reference_out else out / mode
        results[mode] = {(r["noise"], r["seed"]): r for r in run_grid(grid, where, progress=True)}
    for variant in variants:
        print(f"\nM-DYR-H on Fashion-MNIST (10k subset), {args.seeds} seeds: reference (2 extra forwards) vs {variant}")
        print(f"{'noise':>6s} {'metric':>14s} {'reference':>16s} {variant:>16s} {variant + ' - ref':>16s}")
        for rate in noise:
            keys = sorted(k for k in results["reference"] if k[0] == rate)
            for metric in ("best_val_acc", "last_val_acc", "detection_auc"):
                ref = np.array([results["reference"][k][metric] for k in keys], dtype=float) * 100
                other = np.array([results[variant][k][metric] for k in keys], dtype=float) * 100
                diff = other - ref
                print(f"{rate:6.0%} {metric:>14s} {ref.mean():8.2f} ± {ref.std(ddof=1):4.2f} "
                      f"{other.mean():8.2f} ± {other.std(ddof=1):4.2f} {diff.mean():+10.2f} ± {diff.std(ddof=1):4.2f}")


if __name__ == "__main__":
    main()
