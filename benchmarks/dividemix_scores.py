"""DivideMix's own label-issue score against the run's tracked-loss ranking (issue #27, item 4).

For each DivideMix run folder given: the detection AUC (x100) against the true noise mask of
* DivideMix's score, 1 - the mean of the two networks' GMM P(clean), at the last epoch
  (`latentmix.dividemix.DivideMix.issue_scores`, from the checkpoint's ``dividemix`` state);
* the run's tracked loss at the last epoch (the pair's mean logits, the ranking every method's
  noise model gives);
* label_issues.csv's P(noisy), the ranking the run keeps (the epoch chosen without clean labels).

    python benchmarks/dividemix_scores.py RUN_DIR [RUN_DIR ...] > benchmarks/results/dividemix-scores.md
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import torch

from latentmix.noise_model import detection_metrics


def scores(run_dir: Path) -> dict:
    with open(run_dir / "label_issues.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "train"]
    index = np.array([int(row["index"]) for row in rows])
    noisy = np.array([int(row["truly_noisy"]) for row in rows])
    state = torch.load(run_dir / "checkpoint.pt", weights_only=False, map_location="cpu")
    own = (1.0 - state["dividemix"]["clean"].mean(dim=0)).numpy()[index]
    loss = state["tracked"]["losses"].numpy()[index]
    kept = np.array([float(row["p_noisy"]) + 1e-9 * float(row["loss"]) for row in rows])  # ties broken by the loss
    auc = lambda values: 100 * detection_metrics(values, noisy)["auc"]  # noqa: E731
    return {"run": run_dir.name, "epoch": state["epoch"], "own": auc(own), "loss": auc(loss), "kept": auc(kept),
            "lambda_u": state["dividemix"]["lambda_u"]}


def main(paths: list[str]) -> None:
    print("| run | last epoch | DivideMix 1 - P(clean), last epoch | tracked loss, last epoch | label_issues.csv | lambda_u |")
    print("|---|---|---|---|---|---|")
    for path in paths:
        s = scores(Path(path))
        print(f"| {s['run']} | {s['epoch']} | {s['own']:.1f} | {s['loss']:.1f} | {s['kept']:.1f} | {s['lambda_u']:g} |")


if __name__ == "__main__":
    main(sys.argv[1:])
