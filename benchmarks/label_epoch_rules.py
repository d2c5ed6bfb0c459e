"""Which epoch's P(noisy) should a user get? Offline, from finished run folders.

Every run of a user's file logs per epoch the noisy-validation accuracy (`select_acc`) and, where
the true flips are known (benchmarks), the detection AUC of that epoch's P(noisy)
(`detection_auc` in metrics.csv). This script replays rules that pick the epoch without clean
labels and reports the mean detection AUC each would have given, beside the oracle (the run's
best epoch):

  * single  - the epoch of the best single noisy-validation accuracy (what `train` keeps for
              label_issues.csv, `latentmix.run_log.RunLog`);
  * window  - the epoch `latentmix.selection.selected_epoch` picks for the checkpoint (best
              trailing mean over 3 epochs);
  * se-K    - like single, but a later epoch replaces the kept one only when it improves the
              accuracy by more than K standard errors of the held-out accuracy
              (sqrt(p (1 - p) / n_holdout), n_holdout = 10% of the samples as in the grid).

    python benchmarks/label_epoch_rules.py benchmarks/results/robust-defaults/runs runs/rd-gen1k-new/runs

Run folders are named as benchmarks/robust_defaults.py names them (SOURCE-N-noiseR-seedS-METHOD-eE).
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from latentmix.selection import selected_epoch

NAME = re.compile(r"(?P<source>\w+)-(?P<n>\d+)-noise(?P<noise>\d+)-seed\d+-(?P<method>.+)-e(?P<epochs>\d+)$")


def single_best(rows: list[dict], n_holdout: int, margin_se: float = 0.0) -> int:
    """The epoch of the best noisy-validation accuracy; with `margin_se` > 0 a later epoch must beat
    the kept one by that many standard errors of a held-out accuracy on `n_holdout` labels."""
    best, epoch = -1.0, int(rows[0]["epoch"])
    for row in rows:
        accuracy = float(row["select_acc"])
        p = min(max(best, 0.05), 0.95)
        needed = margin_se * math.sqrt(p * (1 - p) / n_holdout) if best >= 0 else 0.0
        if accuracy > best + needed:
            best, epoch = accuracy, int(row["epoch"])
    return epoch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="folders of run folders")
    args = parser.parse_args(argv)
    results: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    seen = set()
    for folder in args.folders:
        for run in sorted(Path(folder).iterdir()):
            match, metrics = NAME.match(run.name), run / "metrics.csv"
            if match is None or not metrics.exists() or run.name in seen:
                continue
            with metrics.open() as handle:
                rows = [r for r in csv.DictReader(handle) if r.get("detection_auc") and r.get("select_acc")]
            if len(rows) < int(match["epochs"]):  # unfinished
                continue
            seen.add(run.name)
            auc = {int(r["epoch"]): float(r["detection_auc"]) for r in rows}
            n_holdout = int(match["n"]) // 10
            for row in rows:
                row["select_acc"] = float(row["select_acc"])
            key = (match["source"], int(match["n"]), match["method"], int(match["epochs"]))
            picks = {"single": single_best(rows, n_holdout), "window": selected_epoch(rows),
                     "se-0.5": single_best(rows, n_holdout, 0.5), "se-1": single_best(rows, n_holdout, 1.0)}
            for rule, epoch in picks.items():
                results[key][rule].append(auc[epoch])
            results[key]["oracle"].append(max(auc.values()))
    rules = ["single", "window", "se-0.5", "se-1", "oracle"]
    print("| data | method | epochs | runs | " + " | ".join(rules) + " |")
    print("|---|---|---|---|" + "---|" * len(rules))
    for (source, n, method, epochs), by_rule in sorted(results.items()):
        cells = " | ".join(f"{100 * np.mean(by_rule[rule]):.1f}" for rule in rules)
        print(f"| {source} {n} | {method} | {epochs} | {len(by_rule['single'])} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
