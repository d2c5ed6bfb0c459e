"""Label issues from a run and its plain CE twin, replayed on a robustness-suite folder.

A default run on a user's own data trains a plain CE twin (`latentmix.plain_twin`) and keeps the
better model, but its label issues are the run's own noise model's. This script asks whether the
two noise models together rank the wrong labels better than the run's alone, from the finished
runs' label_issues.csv files (no training): for every LR-M-DYR-H run of OUT that has a
`plain-twin/` folder, the detection AUC (against the truth, over the rows trained on or held out
for selection, as the suite scores it) of

* `run`: the run's label_issues.csv as it is (what the library writes);
* `twin`: the twin's (plain CE's own ranking);
* `kept`: the kept model's run (the twin's where the run kept the twin's model);
* `mean`: each sample's P(noisy) averaged over the two noise models, (p_run + p_twin) / 2, ties by
  the mean of the two losses (two posterior estimates of one event, weighted equally): what the
  library writes since (`latentmix.plain_twin.averaged_view`), here from the files' 6 digits;
* `rank-mean`: the mean of each sample's two rank positions.

Per cell (mean over the seeds, each schedule), the suite's `auc` check (below CE's own ranking or
cleanlab's by more than 0.5 points) for each view, then the views against `run`: mean AUC, the
cells better and worse by more than 0.5 points, the worst. `twin` meets the CE half of the check
by construction (it is the CE run), so its count says little; `mean` and `rank-mean` do not.

    python benchmarks/twin_detection.py benchmarks/results/robustness-suite-twin [--out FILE.md]
    python benchmarks/twin_detection.py REFERENCE --built FOLDER   # the library against this replay
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import robustness_suite as suite  # noqa: E402  (its files, truth and checks)
from latentmix.noise_model import detection_metrics  # noqa: E402
from latentmix.plain_twin import averaged_view  # noqa: E402  (what the library writes)
from latentmix.selection import ranking_order  # noqa: E402

VIEWS = ("run", "twin", "kept", "mean", "rank-mean")


def sample_key(row: dict) -> str:
    """A sample's identity in both files: an image folder's file, else the row index."""
    return row.get("file") or row["index"]


def positions(order_of: dict, rows: list[dict]) -> np.ndarray:
    """Each row's suspicion as a score: minus its position in a file (first = most suspicious)."""
    return np.array([-float(order_of[sample_key(r)]) for r in rows])


def view_scores(run_dir: Path, path: Path, data: suite.SuiteData) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Whether each scored row of the run is truly wrong and, per view, a suspicion score for each
    (higher: more suspicious)."""
    ours, truth = suite.scored_issues(run_dir, path, data)
    twin, _ = suite.scored_issues(run_dir / "plain-twin", path, data)
    twin_by_key = {sample_key(r): r for r in twin}
    twin_rows = [twin_by_key[sample_key(r)] for r in ours]
    ours_order = {sample_key(r): i for i, r in enumerate(ours)}
    twin_order = {sample_key(r): i for i, r in enumerate(twin)}
    def view(rows):
        return {"p_noisy": np.array([float(r["p_noisy"]) for r in rows]), "loss": np.array([float(r["loss"]) for r in rows])}

    averaged = averaged_view(view(ours), view(twin_rows))  # the library's average, from the files' 6 digits
    by_mean = ranking_order(averaged["p_noisy"], averaged["loss"])
    mean_score = np.empty(len(ours))
    mean_score[by_mean] = -np.arange(len(ours), dtype=float)
    run_score, twin_score = positions(ours_order, ours), positions(twin_order, ours)
    kept = json.loads((run_dir / "result.json").read_text()).get("kept_model")
    return truth, {"run": run_score, "twin": twin_score, "kept": twin_score if kept == "plain-twin" else run_score,
                  "mean": mean_score, "rank-mean": run_score + twin_score}


def replay(out: Path) -> dict[tuple[str, str, str], dict[str, list[float]]]:
    """Per (data, noise, schedule): each view's AUC, one per seed."""
    cells: dict = {}
    for record in sorted(out.glob("jobs/*-lr-m-dyr-h-*.json")):
        job = json.loads(record.read_text())
        run_dir = out / job["run_dir"]
        if not (run_dir / "plain-twin" / "label_issues.csv").exists():
            continue
        data = suite.KNOWN[job["data"]]
        truth, scores = view_scores(run_dir, suite.cell_path(out, data, job["noise"]), data)
        cell = cells.setdefault((job["data"], job["noise"], job["schedule"]), {v: [] for v in VIEWS})
        for view in VIEWS:
            cell[view].append(detection_metrics(scores[view], truth)["auc"])
    return cells


def report(out: Path) -> str:
    records = [json.loads(p.read_text()) for p in (out / "jobs").glob("*.json")]
    cells = replay(out)
    lines = [f"Detection AUC (x100) of label issues from a run and its plain CE twin, replayed on `{out.name}` "
             "(`python benchmarks/twin_detection.py`); mean over the seeds; `*`: the suite's `auc` check fails "
             "(below CE's or cleanlab's AUC by more than 0.5).", "",
             "| data | noise | schedule | CE | cleanlab | " + " | ".join(VIEWS) + " |",
             "|---" * (5 + len(VIEWS)) + "|"]
    summary = {}
    for (data, noise, schedule), views in sorted(cells.items()):
        ce = suite.mean_of(records, "ranking_auc", kind="latentmix", method="ce", data=data, noise=noise,
                           schedule=schedule)
        cleanlab = suite.mean_of(records, "ranking_auc", kind="cleanlab", data=data, noise=noise)
        means = {v: float(np.mean(a)) for v, a in views.items()}
        bar = max(x for x in (ce, cleanlab) if x is not None) - 0.005
        cols = [f"{100 * means[v]:.1f}{'*' if means[v] < bar else ''}" for v in VIEWS]
        lines.append(f"| {data} | {noise} | {schedule} | {100 * ce:.1f} | {100 * cleanlab:.1f} | " + " | ".join(cols) + " |")
        for view in VIEWS:
            s = summary.setdefault((schedule, view), {"short": 0, "auc": [], "diff": []})
            s["short"] += means[view] < bar
            s["auc"].append(means[view])
            s["diff"].append(means[view] - means["run"])
    lines += ["", "| schedule | view | cells | `auc` short | mean AUC | better than `run` by > 0.5 | worse by > 0.5 | "
              "worst vs `run` |", "|---|---|---|---|---|---|---|---|"]
    for (schedule, view), s in sorted(summary.items(), key=lambda kv: (kv[0][0] != "default", VIEWS.index(kv[0][1]))):
        diff = np.array(s["diff"])
        lines.append(f"| {schedule} | {view} | {len(diff)} | {s['short']} | {100 * np.mean(s['auc']):.2f} | "
                     f"{int((diff > 0.005).sum())} | {int((diff < -0.005).sum())} | {100 * diff.min():+.1f} |")
    return "\n".join(lines) + "\n"


# How far a built run's AUC may be from the replayed `mean` view: the replay averages the files'
# 6-digit P(noisy) and losses, the library the full ones, which can order a few near-ties differently.
BUILT_TOLERANCE = 1e-3


def check_built(built: Path, reference: Path) -> list[str]:
    """The library's label issues against this replay: `built` is a suite folder trained with the
    averaged label issues, `reference` one whose runs (the same seeds and files) wrote their own
    and their twin's, each on its own. Every LR-M-DYR-H record of `built` must have the ranking AUC
    that the `mean` view gives on `reference` (within `BUILT_TOLERANCE`). Returns the differences."""
    expected = {}
    for record in sorted(reference.glob("jobs/*-lr-m-dyr-h-*.json")):
        job = json.loads(record.read_text())
        if (reference / job["run_dir"] / "plain-twin" / "label_issues.csv").exists():
            data = suite.KNOWN[job["data"]]
            truth, scores = view_scores(reference / job["run_dir"], suite.cell_path(reference, data, job["noise"]), data)
            expected[job["id"]] = detection_metrics(scores["mean"], truth)["auc"]
    differences = []
    for record in sorted(built.glob("jobs/*-lr-m-dyr-h-*.json")):
        job = json.loads(record.read_text())
        if job["id"] not in expected:
            differences.append(f"{job['id']}: not in {reference} with a twin")
        elif abs(job["ranking_auc"] - expected[job["id"]]) > BUILT_TOLERANCE:
            differences.append(f"{job['id']}: ranking_auc {job['ranking_auc']:.6f}, replayed {expected[job['id']]:.6f}")
    return differences


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a robustness-suite results folder whose LR-M-DYR-H runs trained a twin")
    parser.add_argument("--out", help="also write the tables to this markdown file")
    parser.add_argument("--built", type=Path, default=None,
                        help="a suite folder trained with the averaged label issues: check each LR-M-DYR-H run's "
                             "ranking AUC against the `mean` view replayed on FOLDER, run by run")
    args = parser.parse_args(argv)
    if args.built is not None:
        differences = check_built(args.built.resolve(), Path(args.folder).resolve())
        print("\n".join(differences) or f"{args.built}: every LR-M-DYR-H run's ranking AUC is the replayed `mean` view's")
        return 1 if differences else 0
    text = report(Path(args.folder).resolve())
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
