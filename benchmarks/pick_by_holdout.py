"""Can the held-out noisy labels choose the method, run by run? For every noise setting and seed of
a `latentmix reproduce ...` table, pick whichever of two rows has the higher noisy-holdout accuracy
at its selected checkpoint (the 3-epoch mean that `latentmix.selection.selected_epoch` selects by)
and report the test accuracy of the pick beside both rows' selected accuracy.

Needs the table's run folders (each run's `metrics.csv`, column `select_acc`), so point it at the
output folder of `reproduce`, not at a copied `runs.csv`:

    python benchmarks/pick_by_holdout.py runs/reproduce-fashion-mnist-mlp ce lr-m-dyr-h
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

from latentmix.summary_tables import column_label, column_order, mean_std, noise_column
from latentmix.selection import SELECTION_WINDOW


def holdout_score(run_dir: Path, selected_epoch: int) -> float:
    """Mean noisy-holdout accuracy over the window that ends at the selected epoch."""
    with (run_dir / "metrics.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle)
                if selected_epoch - SELECTION_WINDOW < int(row["epoch"]) <= selected_epoch]
    return sum(float(row["select_acc"]) for row in rows) / len(rows)


def pick_table(rows: list[dict], first: str, second: str) -> str:
    runs: dict = defaultdict(dict)
    for row in rows:
        if row["row"] in (first, second) and row.get("selected_epoch") not in (None, ""):
            column = noise_column(float(row["noise"]), row.get("noise_kind") or "symmetric")
            runs[(column, int(row["seed"]))][row["row"]] = row
    columns = sorted({column for column, _ in runs}, key=column_order)
    lines = [f"**Picking {first} or {second} per run by noisy-holdout accuracy: test accuracy %, mean ± std over "
             "seeds; picks = how often the second was picked**", "",
             "| | " + " | ".join(column_label(c) for c in columns) + " |", "|---|" + "---|" * len(columns)]
    table: dict = {name: [] for name in (first, second, "picked", "picks")}
    for column in columns:
        pairs = [pair for (c, _), pair in runs.items() if c == column and len(pair) == 2]
        picked, second_picked = [], 0
        for pair in pairs:
            scores = {name: holdout_score(Path(row["run_dir"]), int(row["selected_epoch"])) for name, row in pair.items()}
            choice = second if scores[second] > scores[first] else first
            second_picked += choice == second
            picked.append(100 * float(pair[choice]["selected_val_acc"]))
        for name in (first, second):
            table[name].append("{:.1f} ± {:.1f}".format(*mean_std([100 * float(p[name]["selected_val_acc"]) for p in pairs])))
        table["picked"].append("{:.1f} ± {:.1f}".format(*mean_std(picked)))
        table["picks"].append(f"{second_picked} of {len(pairs)}")
    for name, label in ((first, f"{first} selected"), (second, f"{second} selected"), ("picked", "picked"),
                        ("picks", f"{second} picked")):
        lines.append(f"| {label} | " + " | ".join(table[name]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table_dir", help="output folder of `latentmix reproduce ...` (holds runs.csv and runs/)")
    parser.add_argument("first", help="a row name of the table, e.g. ce")
    parser.add_argument("second", help="another row name, e.g. lr-m-dyr-h")
    args = parser.parse_args(argv)
    with (Path(args.table_dir) / "runs.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    print(pick_table(rows, args.first, args.second))
    return 0


if __name__ == "__main__":
    sys.exit(main())
