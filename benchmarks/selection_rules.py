"""Other ways to pick the checkpoint, replayed on the robustness suite's finished runs.

A run picks the epoch with the highest mean noisy-validation accuracy over it and the two epochs
before it (`latentmix.selection.selected_epoch`). The choice of epoch changes no training, so any
other rule can be judged exactly on the runs the suite has already trained: each run's metrics.csv
holds every epoch's accuracy on the noisy held-out split (what a rule may read) and on the clean
test set (what the user would get). This script replays a set of rules on every CE and
LR-M-DYR-H run of a suite folder and writes, per schedule, the suite's accuracy checks under each
rule (LR-M-DYR-H's selected test accuracy against CE's, each cell a mean of its seeds) beside what
each method's user gets on average.

First it replays today's rule and checks that it picks every run's stored `selected_epoch`: the
replay reads metrics.csv's 6 significant digits where the run read float32 accuracies, and the two
agree only because equal means are treated as equal (`selection.SAME_MEAN`).

    python benchmarks/selection_rules.py benchmarks/results/robustness-suite-tie
        [--out benchmarks/results/selection-rules.md]

Only the selected checkpoint is replayed: a rule that picks another epoch would, in a real run,
also change whether the correction counts as kept and so which view the label issues come from
(the guard, docs/robust-defaults.md), so AUCs are not part of this table.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from latentmix.selection import SAME_MEAN, selected_epoch  # noqa: E402

METHODS = ("ce", "lr-m-dyr-h")


def read_run(folder: Path) -> dict:
    """One run folder: its stored result, its metrics rows (numbers parsed) and the size of the
    split it selects on (label_issues.csv's `holdout` rows, or its `val` rows for a file's split)."""
    rows = [{key: (None if value == "" else float(value) if key not in ("bootstrapping",) else value == "True")
             for key, value in row.items()} for row in csv.DictReader(open(folder / "metrics.csv"))]
    splits = [row["split"] for row in csv.DictReader(open(folder / "label_issues.csv"))]
    size = splits.count("holdout") or splits.count("val")
    return {"result": json.loads((folder / "result.json").read_text()), "rows": rows, "size": size}


def test_accuracy(rows: list[dict], epoch: int) -> float:
    """The clean test accuracy at `epoch`: `test_acc` where the data has a test set beside its
    validation set (the image folder), else `val_acc` (the suite's `val_*` arrays are the test set)."""
    row = next(row for row in rows if int(row["epoch"]) == epoch)
    return float(row["test_acc"] if row.get("test_acc") is not None else row["val_acc"])


def _means(rows: list[dict], before: int, after: int = 0) -> tuple[list[int], np.ndarray]:
    epochs = [int(row["epoch"]) for row in rows if row.get("select_acc") is not None]
    values = np.array([float(row["select_acc"]) for row in rows if row.get("select_acc") is not None])
    means = np.array([values[max(0, i - before):i + after + 1].mean() for i in range(len(values))])
    return epochs, means


def _first_max(epochs: list[int], means: np.ndarray) -> int:
    """The first epoch whose mean is the highest (means within `SAME_MEAN` are equal)."""
    return epochs[int(np.flatnonzero(means >= means.max() - SAME_MEAN)[0])]


def trailing(window: int) -> Callable[[list[dict], int], int]:
    return lambda rows, size: _first_max(*_means(rows, window - 1))


def centred(window: int) -> Callable[[list[dict], int], int]:
    return lambda rows, size: _first_max(*_means(rows, window // 2, window // 2))


def within_one_se(latest: bool) -> Callable[[list[dict], int], int]:
    """The latest (or earliest) epoch whose 3-epoch mean is within one binomial standard error of
    the highest one: the one-standard-error rule (Breiman et al. 1984; Hastie et al., The Elements
    of Statistical Learning, 7.10), read towards more training or towards earlier stopping."""
    def rule(rows: list[dict], size: int) -> int:
        epochs, means = _means(rows, 2)
        best = means.max()
        close = np.flatnonzero(means >= best - np.sqrt(best * (1 - best) / size) - SAME_MEAN)
        return epochs[int(close[-1] if latest else close[0])]
    return rule


def full_windows(window: int) -> Callable[[list[dict], int], int]:
    """The trailing mean of `window` epochs, but only full windows compete once there are that
    many epochs (a one-epoch "mean" is the noisiest estimate, and a maximum favours the noisiest)."""
    def rule(rows: list[dict], size: int) -> int:
        epochs, means = _means(rows, window - 1)
        start = window - 1 if len(epochs) >= window else 0
        return _first_max(epochs[start:], means[start:])
    return rule


def last_epoch(rows: list[dict], size: int) -> int:
    return int(rows[-1]["epoch"])


# name -> (rule, what it is); the first is today's
RULES: dict[str, tuple[Callable[[list[dict], int], int], str]] = {
    "today": (lambda rows, size: selected_epoch(rows), "highest mean over the epoch and the 2 before it (today's)"),
    "full-3": (full_windows(3), "highest mean over the epoch and the 2 before it, full windows only from epoch 3"),
    "single": (trailing(1), "highest single epoch"),
    "trailing-5": (trailing(5), "highest mean over the epoch and the 4 before it"),
    "trailing-7": (trailing(7), "highest mean over the epoch and the 6 before it"),
    "centred-5": (centred(5), "highest mean over the epoch and 2 on each side (looks ahead: the weights must be kept longer)"),
    "latest-1se": (within_one_se(True), "latest epoch within one standard error of the highest 3-epoch mean"),
    "earliest-1se": (within_one_se(False), "earliest epoch within one standard error of the highest 3-epoch mean"),
    "last": (last_epoch, "the last epoch (no selection)"),
}


def load_runs(suite: Path) -> list[dict]:
    runs = []
    for result in sorted(suite.glob("runs/*/*/*/runs/*/result.json")):
        data, noise, schedule = result.parts[-6:-3]
        method = result.parent.name.split("_")[0]
        if method in METHODS:
            runs.append({"data": data, "noise": noise, "schedule": schedule, "method": method,
                         "name": result.parent.name, **read_run(result.parent)})
    if not runs:
        raise SystemExit(f"no CE or LR-M-DYR-H run folders under {suite}/runs: run benchmarks/robustness_suite.py first")
    return runs


def check_replay(runs: list[dict]) -> list[str]:
    """Runs whose stored `selected_epoch` today's rule, replayed from metrics.csv, does not pick."""
    return [f"{r['data']} {r['noise']} {r['schedule']} {r['name']}: stored {r['result']['selected_epoch']}, "
            f"replayed {selected_epoch(r['rows'])}" for r in runs
            if r["result"].get("selected_epoch") is not None and selected_epoch(r["rows"]) != r["result"]["selected_epoch"]]


def score(runs: list[dict], rule: Callable[[list[dict], int], int], schedule: str) -> dict:
    """The suite's accuracy checks under `rule` at `schedule`: cells where LR-M-DYR-H's selected
    test accuracy is below CE's - 0.5 (means over the seeds), the worst cell, the mean gain, and
    each method's mean selected test accuracy over the cells."""
    cells: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run["schedule"] == schedule:
            cells[(run["data"], run["noise"])][run["method"]].append(100 * test_accuracy(run["rows"], rule(run["rows"], run["size"])))
    gains, short, ce_means, ours_means = [], [], [], []
    for (data, noise), by_method in sorted(cells.items()):
        ce, ours = float(np.mean(by_method["ce"])), float(np.mean(by_method["lr-m-dyr-h"]))
        gains.append((ours - ce, f"{data} {noise}"))
        ce_means.append(ce), ours_means.append(ours)
        if ours < ce - 0.5:
            short.append(f"{data} {noise} ({ours - ce:+.1f})")
    worst = min(gains)
    return {"short": short, "worst": f"{worst[0]:+.1f} ({worst[1]})", "gain": float(np.mean([g for g, _ in gains])),
            "ce": float(np.mean(ce_means)), "ours": float(np.mean(ours_means)), "cells": len(cells)}


def table(runs: list[dict], suite: Path, mismatches: list[str]) -> str:
    lines = [f"Checkpoint-selection rules replayed on the finished CE and LR-M-DYR-H runs of `{suite}`"
             f" (`python benchmarks/selection_rules.py {suite}`): each cell's selected clean test accuracy,"
             " a mean over its seeds. Today's rule replayed from metrics.csv picks the stored epoch of"
             f" {len(runs) - len(mismatches)} of {len(runs)} runs.", ""]
    for schedule in sorted({run["schedule"] for run in runs}):
        lines += [f"### Schedule `{schedule}`", "",
                  "| rule | `acc` short (LR-M-DYR-H below CE - 0.5) | worst cell vs CE | mean gain over CE | CE, mean of cells | LR-M-DYR-H, mean of cells | cells short |",
                  "|---|---|---|---|---|---|---|"]
        for name, (rule, words) in RULES.items():
            s = score(runs, rule, schedule)
            lines.append(f"| {words} | {len(s['short'])} of {s['cells']} | {s['worst']} | {s['gain']:+.2f} | {s['ce']:.2f} | "
                         f"{s['ours']:.2f} | {', '.join(s['short']) or '-'} |")
        lines.append("")
    if mismatches:
        lines += ["Runs whose stored selection the replay does not reproduce:", ""] + [f"- {m}" for m in mismatches]
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", type=Path, help="a robustness-suite output folder with its runs/")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here as well")
    args = parser.parse_args(argv)
    runs = load_runs(args.suite)
    mismatches = check_replay(runs)
    text = table(runs, args.suite, mismatches)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
