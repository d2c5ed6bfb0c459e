"""Is cleanlab's lead on instance-dependent noise a property of the noise's maker? (issue #24)

The robustness suite's `inst30` noise (`latentmix.noise.instance_dependent_noise`) gives the 30%
of samples a logistic regression trained on the clean labels is least sure of the wrong class that
same logistic regression finds most likely, and the suite's cleanlab ranks labels from 5-fold
out-of-fold probabilities of a logistic regression: the ranker shares the noise maker's model
family, so the mistakes it was built to find are the ones it ranks first. On `inst30`, cleanlab's
AUC beats latentmix's tracked-loss ranking on several data sets (docs/robustness-suite.md).

This script ranks the same labels with cleanlab from out-of-fold probabilities of another model
family (scikit-learn's MLPClassifier, two hidden layers of 256, like the default MLP; and a
histogram gradient-boosting classifier), beside the logistic regression, on the `inst30` cells and
on `sym40` for contrast, so the lead can be read as the ranker's or the model family's.

    python benchmarks/cleanlab_model_family.py     # writes benchmarks/results/cleanlab-model-family.md
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

SUITE = ROOT / "benchmarks" / "results" / "robustness-suite-after"
CELLS = [(data, noise) for data in ("few", "imbalanced", "many-classes", "tabular-csv", "slow", "signal")
         for noise in ("inst30", "sym40")]


def rankers():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    return {
        "logistic regression (the suite's)": lambda: LogisticRegression(max_iter=300),
        "MLP 256-256": lambda: MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=200, early_stopping=True,
                                             random_state=0),
        "gradient boosting": lambda: HistGradientBoostingClassifier(max_iter=100, random_state=0),
    }


def cleanlab_auc(model, x: np.ndarray, noisy: np.ndarray, clean: np.ndarray) -> float:
    from cleanlab.rank import get_label_quality_scores
    from sklearn.model_selection import cross_val_predict

    from latentmix.noise_model import detection_metrics

    probabilities = cross_val_predict(model, x, noisy, cv=5, method="predict_proba")
    quality = get_label_quality_scores(noisy, probabilities)
    return detection_metrics(-quality, noisy != clean)["auc"]


def latentmix_auc(data: str, noise: str) -> dict:
    """The suite's own AUCs for the cell (means over seeds, default schedule) from its job files."""
    out = {}
    for method in ("ce", "lr-m-dyr-h"):
        values = [json.loads(p.read_text())["ranking_auc"] for p in (SUITE / "jobs").glob(f"{data}-{noise}-{method}-default-s*.json")]
        out[method] = float(np.mean(values)) if values else float("nan")
    return out


def main() -> int:
    import robustness_suite as suite

    lines = ["| data | noise | " + " | ".join(f"cleanlab, {name}" for name in rankers()) + " | CE loss | LR-M-DYR-H |",
             "|---|---|" + "---|" * (len(rankers()) + 2)]
    for data, noise in CELLS:
        spec = suite.DATASETS[data]
        path = suite.write_cell(SUITE, spec, noise)
        x, noisy, clean = suite.training_rows(path, spec)
        x = suite._model_view(x)
        cells = []
        for name, make in rankers().items():
            started = time.perf_counter()
            cells.append(f"{100 * cleanlab_auc(make(), x, noisy, clean):.1f}")
            print(f"{data} {noise} {name}: {cells[-1]} ({time.perf_counter() - started:.0f}s)", flush=True)
        ours = latentmix_auc(data, noise)
        lines.append(f"| {data} | {noise} | " + " | ".join(cells) + f" | {100 * ours['ce']:.1f} | {100 * ours['lr-m-dyr-h']:.1f} |")
    text = ("Detection AUC (x100) of cleanlab's label-quality ranking from 5-fold out-of-fold probabilities of "
            "three model families, on the robustness suite's files (benchmarks/results/robustness-suite-after/data), "
            "beside the suite's CE and LR-M-DYR-H rankings (default schedule, mean of 2 seeds).\n\n"
            + "\n".join(lines) + "\n")
    (ROOT / "benchmarks" / "results" / "cleanlab-model-family.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
