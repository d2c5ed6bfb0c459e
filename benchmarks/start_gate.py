"""Which runs should start the loss correction at all: candidate rules judged on the robustness suite
without training anything new (issue 24, item 2: "a start rule that cannot fire on a barely trained
network"; item 3: "correction never ends below the uncorrected run").

LR-M-DYR-H trains as LR-M (latent mixup, no correction) until early learning ends, then bootstraps.
Both presets draw the same data order, mixing and initial weights from one seed, so up to the start
epoch an LR-M-DYR-H run *is* its LR-M twin (checked below, row by row), and a rule that decides at
that epoch not to correct turned the run into its LR-M twin (as the code did when the rule was
chosen; since then such a run trains on as plain CE instead, `latentmix.training.Run.trains_plainly`,
measured by retraining: benchmarks/results/robustness-suite-plain). So with the suite's CE, LR-M and
LR-M-DYR-H runs finished (`robustness_suite.py --methods ce,lr-m,lr-m-dyr-h`), every rule that reads
only the metrics up to the start epoch can be judged exactly: per run, LR-M-DYR-H's result where the
rule lets it correct, LR-M's where it does not; per cell, the mean over the seeds against CE's
selected accuracy minus 0.5 points (the issue's "done means").

    python benchmarks/start_gate.py benchmarks/results/robustness-suite-after [--schedule 3x]

Prints, per rule, the cells short of CE - 0.5 and the mean gain over CE, and per cell the decision
each rule takes. The rules (each reads only what a run knows at its start epoch, no clean label):

* `always`: today's (correct whenever early learning ends).
* `never`: LR-M throughout (what a user gets without correction).
* `memorising`: correct only if the network agrees with the given labels of the samples it trains
  on more than with those of the held-out ones (`train_acc_noisy > select_acc` at the last epoch of
  early learning): a network that fits its training labels no better than labels it never saw has
  memorised no wrong label, so there is nothing for a correction to undo, while its predictions,
  which would replace the flagged labels, are no better than the given ones.
* `memorising-se`: the same beyond one standard error of the difference.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from latentmix.selection import memorisation_check  # noqa: E402


def metrics(out: Path, record: dict) -> list[dict]:
    path = out / record["run_dir"] / "metrics.csv"
    with path.open() as handle:
        return list(csv.DictReader(handle))


def split_sizes(out: Path, record: dict) -> tuple[int, int]:
    """(samples trained on, samples held out): the suite's --val-split 0.1 of the training rows."""
    config = json.loads((out / record["run_dir"] / "config.json").read_text())
    total = int(config.get("num_train") or 0)
    held = max(int(round(total * 0.1)), 1)
    return max(total - held, 1), held


def signals(out: Path, record: dict) -> dict:
    """What an LR-M-DYR-H run knew at the last epoch of early learning (start - 1)."""
    rows = metrics(out, record)
    start = record.get("bootstrap_start_epoch")
    if not start or start < 2:
        return {"start": start}
    row = rows[int(start) - 2]
    n_train, n_held = split_sizes(out, record)
    check = memorisation_check(float(row["train_acc_noisy"]), float(row["select_acc"]), train_size=n_train,
                               holdout_size=n_held, epoch=int(start) - 1)  # the gap and its standard error
    return {"start": start, "gap": check.gap, "se": check.standard_error}


RULES = {
    "always": lambda s: True,
    "never": lambda s: False,
    "memorising": lambda s: s.get("gap") is not None and s["gap"] > 0,
    "memorising-se": lambda s: s.get("gap") is not None and s["gap"] > s["se"],
}


def judge(out: Path, schedule: str) -> str:
    records = [json.loads(p.read_text()) for p in sorted((out / "jobs").glob("*.json"))]
    runs = {(r["data"], r["noise"], r["method"], r["seed"]): r for r in records
            if r.get("kind") == "latentmix" and r.get("schedule") == schedule}
    cells = sorted({(d, n) for d, n, m, s in runs if m == "lr-m"})
    lines, totals = [], {rule: {"short": [], "gains": []} for rule in RULES}
    mismatch = 0
    table = ["| data | noise | CE | LR-M | LR-M-DYR-H | " + " | ".join(RULES) + " |", "|---|---|---|---|---|" + "---|" * len(RULES)]
    for data, noise in cells:
        seeds = sorted(s for d, n, m, s in runs if (d, n, m) == (data, noise, "lr-m"))
        chosen = defaultdict(list)
        ce, lrm, ours = [], [], []
        for seed in seeds:
            twin, corrected, plain = (runs.get((data, noise, m, seed)) for m in ("lr-m", "lr-m-dyr-h", "ce"))
            if twin is None or corrected is None or plain is None:
                continue
            # the twins share every epoch before the start: check it, or the judgement is void
            start = corrected.get("bootstrap_start_epoch")
            if start:
                a, b = metrics(out, twin)[: start - 1], metrics(out, corrected)[: start - 1]
                if [r["select_acc"] for r in a] != [r["select_acc"] for r in b]:
                    mismatch += 1
            s = signals(out, corrected)
            ce.append(plain["selected_val_acc"])
            lrm.append(twin["selected_val_acc"])
            ours.append(corrected["selected_val_acc"])
            for rule, decide in RULES.items():
                correct = start is not None and decide(s)
                chosen[rule].append((corrected if correct else twin)["selected_val_acc"])
        if not ce:
            continue
        ce_mean = float(np.mean(ce))
        cellline = f"| {data} | {noise} | {100 * ce_mean:.1f} | {100 * np.mean(lrm):.1f} | {100 * np.mean(ours):.1f} |"
        for rule in RULES:
            value = float(np.mean(chosen[rule]))
            short = value < ce_mean - 0.005
            totals[rule]["gains"].append(value - ce_mean)
            if short:
                totals[rule]["short"].append(f"{data} {noise} ({100 * (value - ce_mean):+.1f})")
            cellline += f" {100 * value:.1f}{' ✗' if short else ''} |"
        table.append(cellline)
    lines.append(f"Schedule {schedule}: {len(table) - 2} cells; selected test accuracy (%), means over the seeds; "
                 "✗ = below CE - 0.5.\n")
    lines += table
    lines.append("")
    for rule, total in totals.items():
        lines.append(f"* `{rule}`: short in {len(total['short'])} cells, mean gain over CE "
                     f"{100 * np.mean(total['gains']):+.2f} points; short: {', '.join(total['short']) or 'none'}")
    if mismatch:
        lines.append(f"\n{mismatch} LR-M-DYR-H runs did not match their LR-M twin before the start: the judgement is void there.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="a robustness-suite folder with CE, LR-M and LR-M-DYR-H jobs")
    parser.add_argument("--schedule", default="default", choices=("default", "3x"))
    args = parser.parse_args(argv)
    print(judge(Path(args.out), args.schedule))
    return 0


if __name__ == "__main__":
    sys.exit(main())
