"""The robustness suite before and after a change of the defaults, cell by cell.

    python benchmarks/robustness_compare.py BEFORE_OUT AFTER_OUT [--schedule default]

Reads the job records both suite runs wrote (`benchmarks/robustness_suite.py --out DIR`, the
sweep-store runs resumable) and, for each data set x noise cell the two share, prints and writes
AFTER_OUT/compare-SCHEDULE.md: plain CE's and the default LR-M-DYR-H's selected accuracy,
LR-M-DYR-H's detection AUC and its noise estimate beside the truth, before -> after (means over the
seeds), and the issue's done-means checks on the after side. An estimate more than 5 points off
counts as met when every LR-M-DYR-H run of the cell says it doubts it (`noise_estimate_doubt`,
issue 24 item 4). Below the table: the counts, each `acc`-short cell seed by seed (a shortfall of
every seed is the method's, one of a single seed may be the selection's luck), and the worst cell
and mean gain over CE.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from robustness_suite import SEEDS, doubted, mean_of, with_test_figures  # noqa: E402  (the suite's own)

# what a record written before the suite kept them lacks, read from its run folder's result.json
FROM_RUN_FOLDER = ("noise_estimate_doubt", "selected_test_acc", "best_test_acc", "last_test_acc")


def load(out: Path, schedule: str) -> list[dict]:
    """The job records of one schedule (and cleanlab's), a run scored on a test set of its own (an
    image folder's `test/`) with those figures as its `*_val_acc` (`with_test_figures`)."""
    records = [json.loads(path.read_text()) for path in sorted((out / "jobs").glob("*.json"))]
    records = [r for r in records if r.get("kind") == "cleanlab" or r.get("schedule") == schedule]
    # the checks are on the suite's two seeds; a further seed (robustness_suite.py --seeds) is not
    # in the other folder's means
    records = [r for r in records if r.get("seed") in (None, *SEEDS)]
    return with_test_figures([completed(out, r) for r in records])


def completed(out: Path, record: dict) -> dict:
    """A record with the run's doubt and test figures: its own where it keeps them (records written
    since 2026-12-07, `robustness_suite.run_cell`), else those of its run folder's result.json
    where that is still there (runs/ is not kept in the repository), else the record as it is."""
    if record.get("kind") != "latentmix" or "noise_estimate_doubt" in record:
        return record
    result = out / record.get("run_dir", "-") / "result.json"
    if not result.exists():
        return record
    summary = json.loads(result.read_text())
    return {**record, **{key: summary[key] for key in FROM_RUN_FOLDER if key in summary}}


def seed_differences(records: list[dict], **cell) -> list[float]:
    """LR-M-DYR-H's selected accuracy minus CE's for each seed both have in `cell`, by seed."""
    def by_seed(method: str) -> dict:
        return {r["seed"]: r["selected_val_acc"] for r in records if r.get("method") == method
                and r.get("selected_val_acc") is not None and all(r.get(k) == v for k, v in cell.items())}

    ours, ce = by_seed("lr-m-dyr-h"), by_seed("ce")
    return [ours[seed] - ce[seed] for seed in sorted(ours.keys() & ce.keys())]


def pct(value: Optional[float]) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def compare(before_out: Path, after_out: Path, schedule: str) -> str:
    before, after = load(before_out, schedule), load(after_out, schedule)
    cells = sorted({(r["data"], r["noise"]) for r in after if r.get("kind") == "latentmix"}
                   & {(r["data"], r["noise"]) for r in before if r.get("kind") == "latentmix"})
    lines = [f"Schedule `{schedule}`; means over the seeds; before -> after. Checks on the after side: `acc` "
             "LR-M-DYR-H selected below CE's - 0.5; `auc` its AUC below CE's or cleanlab's - 0.5; `est` its estimate "
             "more than 5 points off and not doubted by every run (`est?`: off, but doubted: met).", "",
             "| data | noise (true %) | CE selected | LR-M-DYR-H selected | AUC LR-M-DYR-H | AUC CE / cleanlab "
             "(after) | estimate | checks |", "|---|---|---|---|---|---|---|---|"]
    counts = {"cells": 0, "acc": 0, "auc": 0, "est": 0}
    gains = {}  # the cell's LR-M-DYR-H selected minus CE's, after
    short_by_seed = []  # the `acc`-short cells' differences seed by seed, after
    for data, noise in cells:
        cell = dict(kind="latentmix", data=data, noise=noise)

        def pair(key: str, method: str) -> tuple[Optional[float], Optional[float]]:
            return mean_of(before, key, method=method, **cell), mean_of(after, key, method=method, **cell)

        ce, ours = pair("selected_val_acc", "ce"), pair("selected_val_acc", "lr-m-dyr-h")
        auc, ce_auc = pair("ranking_auc", "lr-m-dyr-h"), pair("ranking_auc", "ce")
        estimate, truth = pair("estimated_noise_rate", "lr-m-dyr-h"), mean_of(after, "actual_noise_rate", **cell)
        cleanlab = mean_of(after, "ranking_auc", kind="cleanlab", data=data, noise=noise)
        checks = []
        if None not in (ours[1], ce[1]) and ours[1] < ce[1] - 0.005:
            checks.append("acc")
        if None not in (auc[1], ce_auc[1], cleanlab) and auc[1] < max(ce_auc[1], cleanlab) - 0.005:
            checks.append("auc")
        if None not in (estimate[1], truth) and abs(estimate[1] - truth) > 0.05:
            checks.append("est?" if doubted(after, method="lr-m-dyr-h", **cell) else "est")
        counts["cells"] += 1
        if None not in (ours[1], ce[1]):
            gains[f"`{data}` {noise}"] = ours[1] - ce[1]
        for key in ("acc", "auc", "est"):
            counts[key] += key in checks
        if "acc" in checks:
            differences = ", ".join(f"{100 * d:+.1f}" for d in seed_differences(after, **cell))
            short_by_seed.append(f"`{data}` {noise} {differences}")
        lines.append(f"| {data} | {noise} ({pct(truth)}) | {pct(ce[0])} -> {pct(ce[1])} | {pct(ours[0])} -> "
                     f"{pct(ours[1])} | {pct(auc[0])} -> {pct(auc[1])} | {pct(ce_auc[1])} / {pct(cleanlab)} | "
                     f"{pct(estimate[0])} -> {pct(estimate[1])} | {' '.join(checks) or 'ok'} |")
    lines += ["", f"{counts['cells']} cells: `acc` short in {counts['acc']}, `auc` in {counts['auc']}, `est` "
                  f"(off and not doubted) in {counts['est']}."]
    if short_by_seed:
        # the same seed has the same noisy labels, data order and initial weights for both methods:
        # a shortfall of every seed is the method's, one of a single seed may be the selection's luck
        lines += ["", "`acc` short, LR-M-DYR-H selected minus CE selected seed by seed (points): "
                      + "; ".join(short_by_seed) + "."]
    if gains:
        worst = min(gains, key=gains.get)
        lines += ["", f"LR-M-DYR-H selected minus CE selected, after: worst cell {worst} "
                      f"{100 * gains[worst]:+.1f} points, mean over the {len(gains)} cells {100 * np.mean(list(gains.values())):+.2f}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--schedule", default="default", choices=("default", "3x"))
    args = parser.parse_args(argv)
    text = compare(args.before, args.after, args.schedule)
    (args.after / f"compare-{args.schedule}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
