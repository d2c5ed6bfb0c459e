"""Which per-sample view a corrected run's label issues should come from, replayed on the
robustness suite's runs.

A run keeps three per-sample views in its last checkpoint: the one its label issues are written
from (`label_snapshot`: each sample's P(noisy) averaged over the epochs up to the best single
noisy-validation epoch, `latentmix.run_log`), the one the warm-up left when bootstrapping started
(`warmup_snapshot`, the guard's fallback), and the sum of every tracked epoch's P(noisy)
(`posterior_sums`). For every LR-M-DYR-H run of a suite folder whose correction was kept, this
script ranks the training and held-out samples by each view (P(noisy), then the loss, as
label_issues.csv does) and scores the ranking against the truly wrong labels, the suite's
`ranking_auc`; it first checks that the kept view reproduces the suite's stored AUC. The
alternatives are then put into a copy of the suite's job records and judged with the suite's own
checks (benchmarks/robustness_compare.py).

    python benchmarks/label_views.py benchmarks/results/robustness-suite-tie
        [--out benchmarks/results/label-views.md]

Needs the suite's run folders (runs/, not kept in the repository): run the suite first.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from latentmix.noise_model import detection_metrics  # noqa: E402
from latentmix.selection import ranking_order  # noqa: E402

# view -> what it is (the table's row); "kept" is today's
VIEWS = {
    "kept": "P(noisy) averaged up to the best single noisy-validation epoch (today's)",
    "warmup": "the warm-up's view, as bootstrapping started",
    "all": "P(noisy) averaged over every tracked epoch, to the last",
}


def ranking_auc(p_noisy: np.ndarray, losses: np.ndarray, truth: np.ndarray) -> float:
    """AUC of the label-issues order (P(noisy) first, the loss breaking ties) against `truth`."""
    order = ranking_order(p_noisy, losses)
    score = np.empty(len(order))
    score[order] = -np.arange(len(order), dtype=float)
    return float(detection_metrics(score, truth)["auc"])


def run_views(folder: Path) -> dict[str, float]:
    """The AUC of each view of one corrected run (`VIEWS`)."""
    checkpoint = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=False)
    rows = [row for row in csv.DictReader(open(folder / "label_issues.csv")) if row["split"] != "val"]
    truth = np.zeros(len(rows), dtype=bool)
    for row in rows:  # the training file's rows, numbered as the per-sample arrays are
        truth[int(row["index"])] = row["truly_noisy"] == "1"
    as_numpy = lambda value: value.numpy() if torch.is_tensor(value) else np.asarray(value)  # noqa: E731
    sums = checkpoint["posterior_sums"]
    views = {"kept": checkpoint["label_snapshot"], "warmup": checkpoint["warmup_snapshot"],
             "all": {"p_noisy": sums["p_noisy"] / sums["epochs"], "losses": checkpoint["tracked"]["losses"]}}
    return {name: ranking_auc(as_numpy(view["p_noisy"]), as_numpy(view["losses"]), truth)
            for name, view in views.items()}


def corrected_runs(suite: Path) -> list[tuple[Path, Path]]:
    """(run folder, job record) of every LR-M-DYR-H run whose correction was kept (the image-folder
    cell left out: its label issues name files, not rows)."""
    found = []
    for result in sorted(suite.glob("runs/*/*/*/runs/lr-m-dyr-h*/result.json")):
        data, noise, schedule = result.parts[-6:-3]
        if data == "images-folder" or json.loads(result.read_text()).get("correction_kept") is not True:
            continue
        job = suite / "jobs" / f"{data}-{noise}-lr-m-dyr-h-{schedule}-s{result.parent.name[-1]}.json"
        found.append((result.parent, job))
    if not found:
        raise SystemExit(f"no corrected LR-M-DYR-H run folders under {suite}/runs: run benchmarks/robustness_suite.py first")
    return found


def _compare_module():
    spec = importlib.util.spec_from_file_location("robustness_compare", Path(__file__).with_name("robustness_compare.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checks_with(suite: Path, scores: dict[Path, dict[str, float]], view: str, schedule: str) -> str:
    """The suite's summary line ("43 cells: `acc` short in ...") with each corrected run's
    `ranking_auc` replaced by its AUC from `view`."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch)
        shutil.copytree(suite / "jobs", copy / "jobs")
        for job, by_view in scores.items():
            record = json.loads(job.read_text())
            record["ranking_auc"] = by_view[view]
            (copy / "jobs" / job.name).write_text(json.dumps(record))
        text = _compare_module().compare(suite, copy, schedule)
    return next(line for line in text.splitlines() if " cells: `acc` short in " in line)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", type=Path, help="a robustness-suite output folder with its runs/ and jobs/")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here as well")
    args = parser.parse_args(argv)
    scores, schedules, unmatched = {}, {}, []
    for folder, job in corrected_runs(args.suite):
        by_view = run_views(folder)
        stored = json.loads(job.read_text())["ranking_auc"]
        if abs(by_view["kept"] - stored) > 1e-4:  # a run whose label issues came from elsewhere
            unmatched.append(f"{folder}: kept view {by_view['kept']:.4f}, stored {stored:.4f}")
            continue
        scores[job] = by_view
        schedules.setdefault(folder.parts[-3], []).append(by_view)
    lines = [f"Label issues of the corrected LR-M-DYR-H runs of `{args.suite}` (correction kept), ranked by"
             f" each view (`python benchmarks/label_views.py {args.suite}`); AUC points against today's view.", ""]
    for schedule, runs in sorted(schedules.items()):
        lines += [f"### Schedule `{schedule}` ({len(runs)} runs)", "",
                  "| view | mean AUC change | median | runs up / down | largest loss | the suite's checks with it |",
                  "|---|---|---|---|---|---|"]
        for name, words in VIEWS.items():
            change = 100 * np.array([run[name] - run["kept"] for run in runs])
            lines.append(f"| {words} | {change.mean():+.2f} | {np.median(change):+.2f} | {(change > 1e-9).sum()} / "
                         f"{(change < -1e-9).sum()} | {change.min():+.1f} | {checks_with(args.suite, scores, name, schedule)} |")
        lines.append("")
    if unmatched:
        lines += ["Left out, their kept view not the stored ranking:", ""] + [f"- {u}" for u in unmatched]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
