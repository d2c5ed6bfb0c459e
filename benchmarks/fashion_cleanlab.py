"""The Fashion-MNIST table beside cleanlab, on the very same noisy labels.

For every noise setting and seed of a finished `latentmix reproduce fashion-mnist` table (either
model), cleanlab 2.9 (optional extra: `pip install cleanlab scikit-learn`) gets the same 5,000
images with the same noisy labels (rebuilt from each run's config.json, exactly as the run made
them) and a classifier of the same family as the table's model (`latentmix.models`: the MLP or the
SmallCNN), trained with plain cross-entropy and SGD as the table's first phase (lr 0.05, batch 128,
momentum 0.9, weight decay 1e-4) for the protocol's warm-up length: plain CE stopped where its test
accuracy peaks in the table, before it memorises (docs/fashion-mnist.md).

* label issues: K-fold (default 4) out-of-fold predicted probabilities ->
  `cleanlab.rank.get_label_quality_scores` (the ranking: AUC) and `cleanlab.filter.find_label_issues`
  (the flagged set: precision, recall);
* `CleanLearning`: cleanlab's own class, given those label issues, fits the classifier on the rows
  it keeps; its test accuracy on the 10,000 t10k images.

Ours, from the table's runs on the same labels (one training run each): the label-issue ranking of
`label_issues.csv` (every one of the 5,000 rows, the held-out ones included) and its flagged set
(P(noisy) > 0.5), with the runs' best / last / selected test accuracy and wall time.

    python benchmarks/fashion_cleanlab.py runs/reproduce-fashion-mnist-mlp --out benchmarks/results/fashion-cleanlab/mlp
    python benchmarks/fashion_cleanlab.py runs/reproduce-fashion-mnist --out benchmarks/results/fashion-cleanlab/small-cnn

Each (noise, seed) writes OUT/jobs/<id>.json (an interrupted benchmark continues); OUT/table.md and
OUT/results.csv hold the comparison (mean ± std over seeds).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin

from latentmix.noise_model import detection_metrics
from latentmix.summary_tables import column_label, column_order, mean_std, noise_column
from latentmix.config import RunConfig
from latentmix.protocols import protocol_for
from latentmix.run_setup import build_run_model, load_run_dataset, make_labels


@functools.lru_cache(maxsize=1)
def run_data(config_json: str):
    """The run's config and data set, read once for all the folds' classifiers (sklearn clones the
    estimator per fold)."""
    config = RunConfig(**json.loads(config_json))
    return config, load_run_dataset(config)


class TorchClassifier(BaseEstimator, ClassifierMixin):
    """The table's model as an sklearn classifier, for cleanlab. X holds row numbers into the
    run's image tensor (cleanlab only slices X), so images are never copied into a 2-D array."""

    def __init__(self, config_json: str = "", epochs: int = 10, seed: int = 0):
        self.config_json = config_json
        self.epochs = epochs
        self.seed = seed

    def _data(self):
        return run_data(self.config_json)

    def fit(self, X, y):
        config, dataset = self._data()
        rows, labels = torch.as_tensor(np.asarray(X)[:, 0]), torch.as_tensor(np.asarray(y), dtype=torch.long)
        self.classes_ = np.arange(dataset.num_classes)
        protocol = protocol_for(config)
        self.model_ = build_run_model(RunConfig(**{**json.loads(self.config_json), "seed": self.seed}), dataset)
        optimizer = torch.optim.SGD(self.model_.parameters(), lr=protocol.lr, momentum=protocol.momentum,
                                    weight_decay=protocol.weight_decay)
        generator = torch.Generator().manual_seed(self.seed)
        self.model_.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(rows), generator=generator)
            for start in range(0, len(rows), protocol.batch_size):
                batch = order[start:start + protocol.batch_size]
                inputs = dataset.eval_transform(dataset.train_inputs[rows[batch]])
                loss = F.cross_entropy(self.model_(inputs), labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return self

    @torch.no_grad()
    def _probabilities(self, images) -> np.ndarray:
        _, dataset = self._data()
        self.model_.eval()
        parts = [F.softmax(self.model_(dataset.eval_transform(images[start:start + 1000])), dim=1)
                 for start in range(0, len(images), 1000)]
        return torch.cat(parts).numpy()

    def predict_proba(self, X) -> np.ndarray:
        _, dataset = self._data()
        return self._probabilities(dataset.train_inputs[torch.as_tensor(np.asarray(X)[:, 0])])

    def predict(self, X) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)

    def test_accuracy(self) -> float:
        _, dataset = self._data()
        return float((self._probabilities(dataset.val_inputs).argmax(axis=1) == dataset.val_labels.numpy()).mean())


def ranking_auc(ranked_truth: np.ndarray) -> float:
    """AUC of a ranking given the truth of its rows in ranked order (first = most likely noisy)."""
    return detection_metrics(-np.arange(len(ranked_truth), dtype=float), ranked_truth.astype(bool))["auc"]


def precision_recall(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    hits = float((flagged & truth).sum())
    return hits / max(1, int(flagged.sum())), hits / max(1, int(truth.sum()))


def run_cleanlab(run_dir: Path, folds: int) -> dict:
    """cleanlab on the labels of the run in `run_dir` (every row of its training subset)."""
    from cleanlab.classification import CleanLearning
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    torch.set_num_threads(1)
    values = json.loads((run_dir / "config.json").read_text())["config"]
    config = RunConfig(**values)
    dataset = load_run_dataset(config)
    labels = make_labels(config, dataset)
    noisy, truth = labels.labels.numpy(), labels.is_noisy.numpy()
    epochs = protocol_for(config).warmup_epochs
    X = np.arange(len(noisy))[:, None]
    classifier = TorchClassifier(json.dumps(values), epochs=epochs, seed=config.seed)
    started = time.perf_counter()
    folds_of = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
    probs = cross_val_predict(classifier, X, noisy, cv=folds_of, method="predict_proba")
    quality = get_label_quality_scores(noisy, probs)
    issues = find_label_issues(noisy, probs)
    learner = CleanLearning(TorchClassifier(json.dumps(values), epochs=epochs, seed=config.seed), seed=config.seed)
    learner.fit(X, noisy, label_issues=issues)
    accuracy = learner.clf.test_accuracy()
    precision, recall = precision_recall(issues, truth)
    return {"cleanlab_auc": ranking_auc(truth[np.argsort(quality, kind="stable")]),
            "cleanlab_precision": precision, "cleanlab_recall": recall, "clean_learning_acc": accuracy,
            "cleanlab_flagged": int(issues.sum()), "cleanlab_seconds": time.perf_counter() - started,
            "fold_epochs": epochs, "folds": folds, "actual_noise_rate": float(truth.mean())}


def ours(run_dir: Path) -> dict:
    """The run's label-issue ranking over every row of the subset and its accuracies."""
    with (run_dir / "label_issues.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    truth = np.array([r["truly_noisy"] == "1" for r in rows])
    flagged = np.array([float(r["p_noisy"]) > 0.5 for r in rows])
    result = json.loads((run_dir / "result.json").read_text())
    timing = json.loads((run_dir / "timing.json").read_text())
    precision, recall = precision_recall(flagged, truth)
    return {"auc": ranking_auc(truth), "precision": precision, "recall": recall,
            "best": result["best_val_acc"], "last": result["last_val_acc"], "selected": result["selected_val_acc"],
            "estimated_noise_rate": result.get("estimated_noise_rate"), "seconds": timing["wall_time_s"]}


def table_runs(table: Path) -> dict[tuple, dict[str, Path]]:
    """{(noise column, seed): {method row: run folder}} of the table's finished runs."""
    found: dict[tuple, dict[str, Path]] = defaultdict(dict)
    for result_path in sorted((table / "runs").glob("*/result.json")):
        run_dir = result_path.parent
        config = json.loads((run_dir / "config.json").read_text())["config"]
        if not config["noise"]:
            continue
        key = (noise_column(config["noise"], config.get("noise_kind")), config["seed"])
        row = config["method"] + (f"({config['layers']})" if config.get("layers") else "")
        found[key][row] = run_dir
    return found


def summarise(records: list[dict], methods: list[str]) -> tuple[str, list[dict]]:
    by_column: dict = defaultdict(list)
    for record in records:
        by_column[noise_column(record["noise"], record["noise_kind"])].append(record)

    def cell(values, scale=100.0, digits=1):
        mean, std = mean_std([v * scale for v in values if v is not None])
        return "—" if np.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"

    lines = ["| noise | seeds | who | AUC | precision | recall | test acc. (best / last / selected, or CleanLearning) "
             "| seconds per (noise, seed) |", "|---|---|---|---|---|---|---|---|"]
    csv_rows = []
    for column in sorted(by_column, key=column_order):
        group = by_column[column]
        label = column_label(column)
        lines.append(f"| {label} | {len(group)} | cleanlab ({group[0]['folds']}-fold, {group[0]['fold_epochs']} epochs) | "
                     f"{cell([r['cleanlab_auc'] for r in group])} | {cell([r['cleanlab_precision'] for r in group])} | "
                     f"{cell([r['cleanlab_recall'] for r in group])} | {cell([r['clean_learning_acc'] for r in group])} | "
                     f"{cell([r['cleanlab_seconds'] for r in group], 1.0, 0)} |")
        for method in methods:
            mine = [r["ours"][method] for r in group if method in r["ours"]]
            if not mine:
                continue
            accuracy = " / ".join(cell([m[k] for m in mine]) for k in ("best", "last", "selected"))
            lines.append(f"| {label} | {len(mine)} | {method} (one run) | {cell([m['auc'] for m in mine])} | "
                         f"{cell([m['precision'] for m in mine])} | {cell([m['recall'] for m in mine])} | {accuracy} | "
                         f"{cell([m['seconds'] for m in mine], 1.0, 0)} |")
        for record in group:
            csv_rows.append({k: v for k, v in record.items() if k != "ours"}
                            | {f"{m}_{k}": v for m, values in record["ours"].items() for k, v in values.items()})
    return "\n".join(lines) + "\n", csv_rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help="output folder of `latentmix reproduce fashion-mnist` (finished runs)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--methods", default="lr-m-dyr-h,ce", help="our runs to set beside cleanlab")
    parser.add_argument("--summary-only", action="store_true")
    args = parser.parse_args(argv)
    out, methods = Path(args.out), [m for m in args.methods.split(",") if m]
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    runs = table_runs(Path(args.table))
    if not runs:
        print(f"no finished noisy runs under {args.table}/runs", file=sys.stderr)
        return 2
    records = []
    for (column, seed), by_method in sorted(runs.items(), key=lambda item: (column_order(item[0][0]), item[0][1])):
        kind, rate = column if isinstance(column, tuple) else ("symmetric", column)
        job = out / "jobs" / f"{kind}-{round(rate * 100)}-seed{seed}.json"
        if job.exists():
            record = json.loads(job.read_text())
        elif args.summary_only:
            continue
        else:
            first = next(iter(by_method.values()))
            record = {"noise": rate, "noise_kind": kind, "seed": seed, **run_cleanlab(first, args.folds)}
            job.write_text(json.dumps(record, indent=1))
            print(f"{column_label(column)} seed {seed}: cleanlab AUC {record['cleanlab_auc']:.3f}, CleanLearning "
                  f"{record['clean_learning_acc']:.3f} ({record['cleanlab_seconds']:.0f} s)", flush=True)
        record["ours"] = {m: ours(by_method[m]) for m in methods if m in by_method}
        records.append(record)
    text, csv_rows = summarise(records, methods)
    (out / "table.md").write_text(text)
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=sorted({k for row in csv_rows for k in row}))
        writer.writeheader()
        writer.writerows(csv_rows)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
