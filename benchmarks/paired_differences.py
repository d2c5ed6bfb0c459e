"""Paired differences between two rows of a table, seed by seed (the same seed has the same noisy
labels, data order and initial weights for every method), mean ± std over seeds, in points.

Reads the `runs.csv` that `latentmix reproduce ...` writes; answers questions like "does latent
mixing beat input mixing here?" with the spread of the difference, not of each row.

    python benchmarks/paired_differences.py benchmarks/results/fashion-mnist-table/mlp/runs.csv \
        lr-m-dyr-h:m-dyr-h "dlr-m-dyr-h(1-2):lr-m-dyr-h" lr-m-dyr-h:ce
"""

from __future__ import annotations

import argparse
import csv
import sys

from latentmix.summary_tables import column_label, column_order, mean_std, noise_column, seed_differences

KEYS = (("best_val_acc", "best"), ("last_val_acc", "last"), ("selected_val_acc", "selected"))


def paired(rows: list[dict], first: str, second: str) -> str:
    differences = {key: seed_differences(rows, first, second, key) for key, _ in KEYS}
    columns = sorted({noise_column(float(row["noise"]), row.get("noise_kind") or "symmetric") for row in rows},
                     key=column_order)
    lines = [f"**{first} minus {second}, points (mean ± std of the per-seed differences)**", "",
             "| | " + " | ".join(column_label(c) for c in columns) + " |", "|---|" + "---|" * len(columns)]
    for key, label in KEYS:
        cells = []
        for column in columns:
            per_seed = list(differences[key].get(column, {}).values())
            mean, std = mean_std(per_seed)
            cells.append("—" if not per_seed else f"{mean:+.1f} ± {std:.1f} ({len(per_seed)})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_csv")
    parser.add_argument("pairs", nargs="+", help="ROW_A:ROW_B (the table's row names, e.g. lr-m-dyr-h:m-dyr-h)")
    args = parser.parse_args(argv)
    with open(args.runs_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for pair in args.pairs:
        first, _, second = pair.partition(":")
        print(paired(rows, first, second))
    return 0


if __name__ == "__main__":
    sys.exit(main())
