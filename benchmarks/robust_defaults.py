"""A user's own data, measured: `latentmix train --data FILE --method M` with nothing else, at the
default schedule and at three times its epochs, beside cleanlab on the very same noisy labels.

For every data set x noise rate x seed a `.npz` file is written as a user would bring it
(`features`, noisy `labels`, the `clean_labels` for scoring, and a clean test set as `val_*`
arrays), then:
  * latentmix runs (`latentmix.training.train` on that file, exactly what `latentmix train --data
    FILE --method M --epochs E --val-split 0.1` runs: the file's `val_*` arrays are a clean test
    set a user would not have, so 10% of the noisy training data is held out to select by, as a
    file without them gets by default): best / last / selected test accuracy, the detection AUC of the ranking a user gets
    (`label_issues.csv`, every training row) against the flipped labels, the estimated share of
    wrong labels, the epoch bootstrapping started;
  * cleanlab 2.9 (optional extra, `pip install cleanlab scikit-learn`): label-quality ranking
    from 5-fold out-of-fold probabilities of a logistic regression and of an MLP (256, 256), its
    AUC on the same labels, and `CleanLearning`'s test accuracy.

Every job writes one JSON file under OUT/jobs/, so an interrupted benchmark continues where it
stopped (they are kept in git, so a grid started on one machine finishes on another); `--workers`
runs CPU jobs in parallel processes (one torch thread each), `--cuda fmnist:4000 --gpu-workers 6`
sends the larger runs to a GPU. Results:
OUT/results.csv (one line per job), OUT/table.md (mean and spread over seeds), OUT/comparison.md and
OUT/criteria.md (against the issue's done-means), the last two also copied into the page `--doc`
(docs/robust-defaults.md) where it marks them as copies.

    python benchmarks/robust_defaults.py --data gen:1000,fmnist:4000 --noise 0.2,0.4,0.6 --seeds 2 \\
        --epochs 50,150 --methods ce,lr-m-dyr-h --peers lr,mlp --workers 2
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent  # the repository
FMNIST_ROOT = "/usr/share/datasets/fashion-mnist"
TEST_SIZE = {"gen": 5000, "fmnist": 10000}


# ------------------------------------------------------------------------------------------------
# data sets as a user brings them


def generated(n: int, seed: int, classes: int = 10, dim: int = 20):
    """Ten classes, two Gaussian clusters each in 10 informative dimensions, 10 noise dimensions,
    a random rotation (in the manner of scikit-learn's make_classification); clean test set of 5k."""
    rng = np.random.default_rng(1000 + seed)
    centers = rng.normal(0.0, 1.3, size=(classes, 2, 10))
    rotation = np.linalg.qr(rng.normal(size=(dim, dim)))[0]

    def draw(m):
        y = rng.integers(0, classes, m)
        x = np.concatenate([centers[y, rng.integers(0, 2, m)] + rng.normal(size=(m, 10)),
                            rng.normal(size=(m, dim - 10))], axis=1) @ rotation
        return x.astype(np.float32), y

    (x, y), (xt, yt) = draw(n), draw(TEST_SIZE["gen"])
    return x, y, xt, yt


@functools.lru_cache(maxsize=1)
def _fashion_files():
    from latentmix.data.idx import load_mnist_like

    return load_mnist_like(os.environ.get("FMNIST_ROOT", FMNIST_ROOT))


def fashion(n: int, seed: int):
    """A seeded subset of n Fashion-MNIST training images as 784 raw pixel features; the t10k test set."""
    data = _fashion_files()
    x, y = data.train_inputs.reshape(len(data.train_labels), -1).numpy(), data.train_labels.numpy()
    pick = np.random.default_rng(seed).permutation(len(y))[:n]
    return (x[pick].astype(np.float32), y[pick], data.val_inputs.reshape(len(data.val_labels), -1).numpy()
            .astype(np.float32), data.val_labels.numpy())


def write_cell(folder: Path, source: str, n: int, noise: float, seed: int) -> Path:
    """The user's file for one cell: features, noisy labels, clean labels, a clean test set."""
    import torch

    from latentmix.noise import make_noisy_labels

    path = folder / f"{source}-{n}-noise{round(noise * 100)}-seed{seed}.npz"
    if path.exists():
        return path
    x, y, xt, yt = (generated if source == "gen" else fashion)(n, seed)
    noisy = make_noisy_labels(torch.from_numpy(y).long(), 10, kind="symmetric", rate=noise, seed=seed).labels.numpy()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, features=x, labels=noisy, clean_labels=y, val_features=xt, val_labels=yt)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------------
# jobs


def ranking_auc(rows: list[dict]) -> float:
    """AUC of the ranking a user reads (label_issues.csv order, most suspicious first)."""
    from latentmix.noise_model import detection_metrics

    truth = np.array([int(r["truly_noisy"]) for r in rows])
    score = -np.arange(len(rows), dtype=float)
    return detection_metrics(score, truth)["auc"]


def run_latentmix(path: Path, method: str, epochs: int, seed: int, run_dir: Path, device: str,
                  alpha: Optional[float] = None) -> dict:
    import torch

    from latentmix.config import RunConfig
    from latentmix.training import train

    torch.set_num_threads(1)
    # The file's val_* arrays are a clean test set, which a user does not have: as a file without
    # them does by default, 10% of the noisy training data is held out to select the checkpoint by.
    config = RunConfig(dataset=path.stem, data=str(path), method=method, epochs=epochs, seed=seed, device=device,
                       val_split=0.1, alpha=alpha)
    started = time.perf_counter()
    # a folder without its job file is an interrupted job: start it afresh
    result = train(config, run_dir=run_dir, progress=False, overwrite=True)
    summary = result.summary()
    with (run_dir / "label_issues.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] != "val"]
    return {**{k: summary[k] for k in ("best_val_acc", "last_val_acc", "selected_val_acc", "selected_epoch",
                                       "bootstrap_start_epoch", "label_issues_epoch", "estimated_noise_rate",
                                       "actual_noise_rate", "last_train_acc_noisy")},
            "ranking_auc": ranking_auc(rows), "last_epoch_auc": result.metrics[-1].get("detection_auc"),
            "seconds": time.perf_counter() - started}


def run_cleanlab(path: Path, model: str, seed: int) -> dict:
    from cleanlab.classification import CleanLearning
    from cleanlab.rank import get_label_quality_scores
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from latentmix.noise_model import detection_metrics

    data = np.load(path)
    x, noisy, clean = data["features"], data["labels"], data["clean_labels"]

    def classifier():
        inner = (LogisticRegression(max_iter=500) if model == "lr" else
                 MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=60, early_stopping=False, random_state=seed))
        return make_pipeline(StandardScaler(), inner)

    started = time.perf_counter()
    probs = cross_val_predict(classifier(), x, noisy, cv=5, method="predict_proba")
    quality = get_label_quality_scores(noisy, probs)
    auc = detection_metrics(-quality, noisy != clean)["auc"]
    # n_jobs=1: cleanlab's own process pool fails inside a pool worker (NameError pred_probs_by_class)
    learner = CleanLearning(classifier(), cv_n_folds=5, seed=seed, find_label_issues_kwargs={"n_jobs": 1}).fit(x, noisy)
    accuracy = float((learner.predict(data["val_features"]) == data["val_labels"]).mean())
    return {"ranking_auc": auc, "clean_learning_acc": accuracy, "actual_noise_rate": float((noisy != clean).mean()),
            "seconds": time.perf_counter() - started}


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The commit the job ran (with "+changes" when the working tree differed), so that a grid
    finished across sessions says which of its jobs predate a change."""
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if dirty else "")


def do_job(job: dict, out: str) -> dict:
    out_dir = Path(out)
    target = out_dir / "jobs" / f"{job['id']}.json"
    if target.exists():
        return json.loads(target.read_text())
    path = write_cell(out_dir / "data", job["source"], job["n"], job["noise"], job["seed"])
    if job["kind"] == "latentmix":
        measured = run_latentmix(path, job["method"], job["epochs"], job["seed"], out_dir / "runs" / job["id"],
                                 job["device"], job.get("alpha"))
    else:
        measured = run_cleanlab(path, job["method"], job["seed"])
    record = {**job, **measured, "code": code_version()}
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(record, indent=1))
    return record


def plan(args) -> list[dict]:
    """The jobs of `--data`: each entry SOURCE:N, optionally @NOISES@SEEDS@PEERS to override
    --noise (rates separated by /), --seeds and --peers (classifiers separated by /, - for none)
    for that data set, e.g. fmnist:60000@0.4@1@- for one large cell without cleanlab."""
    jobs = []
    alphas = [float(a) for a in args.alpha.split(",") if a] or [None]
    cuda_from = {spec.split(":")[0]: int(spec.split(":")[1]) for spec in args.cuda.split(",") if spec}
    for spec in args.data.split(","):
        parts = spec.split("@")
        source, n = parts[0].split(":")
        noises = [float(v) for v in (parts[1].split("/") if len(parts) > 1 else args.noise.split(","))]
        seeds = int(parts[2]) if len(parts) > 2 else args.seeds
        peers = (parts[3].replace("-", "").split("/") if len(parts) > 3 else args.peers.split(","))
        for noise in noises:
            for seed in range(seeds):
                cell = {"source": source, "n": int(n), "noise": noise, "seed": seed}
                tag = f"{source}-{n}-noise{round(noise * 100)}-seed{seed}"
                device = "cuda" if cuda_from.get(source, float("inf")) <= int(n) else args.device
                for method in [m for m in args.methods.split(",") if m]:
                    for epochs in [int(e) for e in args.epochs.split(",")]:
                        for alpha in alphas:  # None: the protocol's
                            suffix = "" if alpha is None else f"-a{alpha:g}"
                            jobs.append({**cell, "kind": "latentmix", "method": method, "epochs": epochs,
                                         "device": device, "id": f"{tag}-{method}-e{epochs}{suffix}",
                                         **({} if alpha is None else {"alpha": alpha})})
                for peer in [p for p in peers if p]:
                    jobs.append({**cell, "kind": "cleanlab", "method": peer, "epochs": 0, "device": "cpu",
                                 "id": f"{tag}-cleanlab-{peer}"})
    # the longest first, so that the pool ends together
    return sorted(jobs, key=lambda j: -j["n"] * max(j["epochs"], 60))


# ------------------------------------------------------------------------------------------------
# tables


def summarise(records: list[dict], out: Path) -> str:
    fields = sorted({k for r in records for k in r})
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)

    def stat(values, scale=100.0):
        values = [v for v in values if v is not None]
        if not values:
            return "—"
        mean = np.mean(values) * scale
        return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {np.std(values) * scale:.1f}"

    lines = ["| data | noise | row | best | last | selected | AUC | est. noise / actual | boot. start | cleanlab acc |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    groups = {}
    for r in records:
        row = (f"{r['method']} {r['epochs']} ep" + (f" alpha {r['alpha']:g}" if r.get("alpha") is not None else "")
               if r["kind"] == "latentmix" else f"cleanlab-{r['method']}")
        groups.setdefault((r["source"], r["n"], r["noise"], r["kind"] != "latentmix", row), []).append(r)
    for (source, n, noise, _, row), rs in sorted(groups.items()):
        pick = lambda key: [r.get(key) for r in rs]  # noqa: E731
        if rs[0]["kind"] == "latentmix":
            cells = [stat(pick("best_val_acc")), stat(pick("last_val_acc")), stat(pick("selected_val_acc")),
                     stat(pick("ranking_auc")), f"{stat(pick('estimated_noise_rate'))} / {stat(pick('actual_noise_rate'))}",
                     stat(pick("bootstrap_start_epoch"), 1.0), ""]
        else:
            cells = ["", "", "", stat(pick("ranking_auc")), "", "", stat(pick("clean_learning_acc"))]
        lines.append(f"| {source} {n} | {round(noise * 100)}% | {row} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    if any(r.get("alpha") is not None for r in records):  # an --alpha sweep: each alpha against the default's
        paired = alpha_pairs(records)
        (out / "alpha.md").write_text(paired)
        return table + "\n" + paired
    comparison = compare(records)
    (out / "comparison.md").write_text(comparison)
    checked = criteria(records)
    (out / "criteria.md").write_text(checked)
    return table + "\n" + comparison + "\n" + checked


def cell_values(records: list[dict], kind: str, method: str, epochs: int, key: str, cell: tuple) -> list:
    """The known values of `key` over the seeds of one row (kind, method, epochs, the protocol's
    alpha) in one cell (source, n, noise)."""
    return [r[key] for r in records if r["kind"] == kind and r["method"] == method and r["epochs"] == epochs
            and r.get("alpha") is None and (r["source"], r["n"], r["noise"]) == cell and r.get(key) is not None]


def criteria(records: list[dict], method: str = "lr-m-dyr-h", default: int = 50, longer: int = 150) -> str:
    """The issue's "done means", cell by cell (data set x noise rate, means over seeds), each with
    the margin in points (negative = short of it):
      AUC       our ranking's AUC minus the better of cleanlab's (LR, MLP), at both schedules;
      vs CL     selected accuracy minus the better CleanLearning accuracy, at both schedules;
      vs CE     selected accuracy minus CE-with-early-stopping's (same schedule), must be > 0;
      longer    3x the epochs minus the default, selected accuracy and AUC: short only when it
                falls below by more than the seed spread (the larger std of the two);
      estimate  5 minus |estimated - actual noise rate| at both schedules.
    A criterion without its peer's figures reads "—"."""
    values = functools.partial(cell_values, records)

    def mean(vals):
        return 100 * float(np.mean(vals)) if vals else None

    def mark(margin, strict=False):
        if margin is None:
            return "—"
        ok = margin > 0 if strict else margin >= -0.05  # shown to 0.1 point: -0.0 is level
        return f"{'ok' if ok else 'SHORT'} {margin:+.1f}"

    def worst(*margins):
        known = [m for m in margins if m is not None]
        return min(known) if known else None

    lines = ["| data | noise | AUC vs cleanlab | selected vs CleanLearning | selected vs CE early-stopped "
             "| 3x epochs vs default | noise estimate |", "|---|---|---|---|---|---|---|"]
    for cell in sorted({(r["source"], r["n"], r["noise"]) for r in records}):
        ours = {e: {key: values("latentmix", method, e, key, cell) for key in
                    ("ranking_auc", "selected_val_acc", "estimated_noise_rate", "actual_noise_rate")}
                for e in (default, longer)}
        peer_auc = [mean(values("cleanlab", m, 0, "ranking_auc", cell)) for m in ("lr", "mlp")]
        peer_acc = [mean(values("cleanlab", m, 0, "clean_learning_acc", cell)) for m in ("lr", "mlp")]
        best_auc = max([v for v in peer_auc if v is not None], default=None)
        best_acc = max([v for v in peer_acc if v is not None], default=None)
        auc = worst(*[(mean(ours[e]["ranking_auc"]) - best_auc) if best_auc is not None and ours[e]["ranking_auc"]
                      else None for e in (default, longer)])
        vs_cl = worst(*[(mean(ours[e]["selected_val_acc"]) - best_acc) if best_acc is not None and ours[e]["selected_val_acc"]
                        else None for e in (default, longer)])
        vs_ce = worst(*[(mean(ours[e]["selected_val_acc"]) - mean(ce)) if ours[e]["selected_val_acc"] and ce else None
                        for e in (default, longer) for ce in [values("latentmix", "ce", e, "selected_val_acc", cell)]])
        longer_margins = []
        for key in ("selected_val_acc", "ranking_auc"):
            short, long_ = ours[default][key], ours[longer][key]
            if short and long_:
                spread = 100 * max(float(np.std(short)), float(np.std(long_)))
                longer_margins.append(mean(long_) - mean(short) + spread)
        estimate = worst(*[5 - abs(mean(ours[e]["estimated_noise_rate"]) - mean(ours[e]["actual_noise_rate"]))
                           if ours[e]["estimated_noise_rate"] else None for e in (default, longer)])
        source, n, noise = cell
        lines.append(f"| {source} {n} | {round(noise * 100)}% | {mark(auc)} | {mark(vs_cl)} | {mark(vs_ce, strict=True)} "
                     f"| {mark(worst(*longer_margins))} | {mark(estimate)} |")
    return ("\n".join(lines) + "\n\nEach cell: the smaller margin of the two schedules, in points (negative = short). "
            "`python benchmarks/robust_defaults.py --summary-only` rebuilds it.\n")


def alpha_pairs(records: list[dict], reference: float = 2.0) -> str:
    """An --alpha sweep, each alpha against `reference` (the `arrays` protocol's) on the same
    file, method, schedule and seed: the mean paired difference in points and how many runs came
    out above, for selected and last accuracy, the AUC, and the noise estimate's error
    |estimate - actual| (lower is better)."""
    runs = {(r["id"].rsplit("-a", 1)[0], r["alpha"]): r for r in records if r.get("alpha") is not None}
    keys = [("selected_val_acc", "selected"), ("last_val_acc", "last"), ("ranking_auc", "AUC")]
    lines = ["| alpha | runs | " + " | ".join(f"{label} vs {reference:g}" for _, label in keys)
             + f" | noise-estimate error vs {reference:g} |", "|---|---|" + "---|" * (len(keys) + 1)]
    for alpha in sorted({a for _, a in runs} - {reference}):
        pairs = [(runs[(base, alpha)], runs[(base, reference)]) for base, a in runs if a == alpha and (base, reference) in runs]
        if not pairs:
            continue
        cells = []
        for key, _ in keys:
            diffs = [100 * (mine[key] - ref[key]) for mine, ref in pairs]
            cells.append(f"{np.mean(diffs):+.1f} ({sum(d > 0 for d in diffs)} above)")
        errors = [100 * (abs(mine["estimated_noise_rate"] - mine["actual_noise_rate"])
                         - abs(ref["estimated_noise_rate"] - ref["actual_noise_rate"])) for mine, ref in pairs]
        cells.append(f"{np.mean(errors):+.1f} ({sum(e < 0 for e in errors)} closer)")
        lines.append(f"| {alpha:g} | {len(pairs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nMean paired difference in points over the runs (same file, method, epochs, seed).\n"


def compare(records: list[dict]) -> str:
    """One line per data set and noise rate, what a user weighs: the accuracy they can select
    without clean labels (CE with early stopping vs LR-M-DYR-H, default / 3x epochs), the
    detection AUC of our ranking beside cleanlab's, CleanLearning's accuracy, and our estimate
    of the noise rate; each a mean over seeds (n = seeds found)."""
    def mean(kind, method, epochs, key, source, n, noise):
        values = cell_values(records, kind, method, epochs, key, (source, n, noise))
        return (np.mean(values), len(values)) if values else (None, 0)

    def cell(*parts, scale=100.0):
        shown = [f"{v * scale:.1f}" if v is not None else "—" for v, _ in parts]
        seeds = max(k for _, k in parts)
        return " / ".join(shown) + (f" ({seeds})" if seeds else "")

    lines = ["| data | noise | CE selected (50 / 150 ep) | LR-M-DYR-H selected (50 / 150) | LR-M-DYR-H last (50 / 150) "
             "| our AUC (50 / 150) | cleanlab AUC (LR / MLP) | CleanLearning acc (LR / MLP) | noise est. (50 / 150) / actual |",
             "|---|---|---|---|---|---|---|---|---|"]
    cells = sorted({(r["source"], r["n"], r["noise"]) for r in records})
    for source, n, noise in cells:
        args = (source, n, noise)
        ours = lambda key, e: mean("latentmix", "lr-m-dyr-h", e, key, *args)  # noqa: E731
        peer = lambda key, m: mean("cleanlab", m, 0, key, *args)  # noqa: E731
        actual = [r["actual_noise_rate"] for r in records if (r["source"], r["n"], r["noise"]) == args]
        lines.append(
            f"| {source} {n} | {round(noise * 100)}% | {cell(mean('latentmix', 'ce', 50, 'selected_val_acc', *args), mean('latentmix', 'ce', 150, 'selected_val_acc', *args))} "
            f"| {cell(ours('selected_val_acc', 50), ours('selected_val_acc', 150))} | {cell(ours('last_val_acc', 50), ours('last_val_acc', 150))} "
            f"| {cell(ours('ranking_auc', 50), ours('ranking_auc', 150))} | {cell(peer('ranking_auc', 'lr'), peer('ranking_auc', 'mlp'))} "
            f"| {cell(peer('clean_learning_acc', 'lr'), peer('clean_learning_acc', 'mlp'))} "
            f"| {cell(ours('estimated_noise_rate', 50), ours('estimated_noise_rate', 150))} / {np.mean(actual) * 100:.1f} |")
    return "\n".join(lines) + "\n\n(n) = the most seeds behind a cell's values; — = not measured.\n"


COPY_MARK = re.compile(r"^<!-- copy of (\S+) -->\n(?:\|.*\n?)*", re.MULTILINE)  # the mark and the table below it


def copy_tables_into(doc: Path, out: Path) -> None:
    """Refresh the tables of `doc` that are copies of OUT's: each one follows a line
    `<!-- copy of PATH -->` (PATH from the repository root) and is replaced by PATH's table rows,
    so the page a reader opens never lags the job files. Marks naming other folders are left alone
    (an `--out` sweep elsewhere does not overwrite the page's grid)."""
    if not doc.is_file():
        return

    def refreshed(match: re.Match) -> str:
        table = ROOT / match.group(1)
        if table.resolve().parent != out.resolve() or not table.is_file():
            return match.group(0)
        rows = [row for row in table.read_text().splitlines() if row.startswith("|")]
        return f"<!-- copy of {match.group(1)} -->\n" + "".join(row + "\n" for row in rows)

    text = doc.read_text()
    new_text = COPY_MARK.sub(refreshed, text)
    if new_text != text:
        doc.write_text(new_text)
        print(f"tables refreshed in {doc}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="gen:1000,gen:4000,fmnist:1000,fmnist:4000",
                        help="SOURCE:N,... with SOURCE gen (generated) or fmnist (Fashion-MNIST pixels)")
    parser.add_argument("--noise", default="0.2,0.4,0.6")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", default="50,150", help="the default schedule and three times it")
    parser.add_argument("--methods", default="ce,lr-m-dyr-h")
    parser.add_argument("--alpha", default="",
                        help="mixup alphas to run each latentmix job with (e.g. 1,2,4); '' = the protocol's")
    parser.add_argument("--peers", default="lr,mlp", help="cleanlab with these classifiers (lr, mlp); '' for none")
    parser.add_argument("--workers", type=int, default=1, help="parallel CPU jobs")
    parser.add_argument("--gpu-workers", type=int, default=1, help="parallel jobs sharing the GPU (--cuda)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cuda", default="", help="SOURCE:N,...: runs of SOURCE with N or more samples on the GPU")
    parser.add_argument("--out", default="benchmarks/results/robust-defaults",
                        help="jobs/ (one JSON per finished job: kept in git), runs/ and data/ (not kept)")
    parser.add_argument("--summary-only", action="store_true", help="only rebuild the tables from finished jobs")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "robust-defaults.md"),
                        help="a page whose tables marked as copies of OUT's tables are refreshed; '' for none")
    args = parser.parse_args(argv)
    out = Path(args.out)
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    jobs = plan(args)
    if not args.summary_only:
        for job in jobs:  # the data files once, before the pools
            write_cell(out / "data", job["source"], job["n"], job["noise"], job["seed"])
        started = time.perf_counter()
        import multiprocessing

        spawn = multiprocessing.get_context("spawn")  # CUDA in the workers needs spawned processes
        gpu_jobs = [job for job in jobs if job["device"] == "cuda"]
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=spawn) as pool, \
                ProcessPoolExecutor(max_workers=max(1, args.gpu_workers), mp_context=spawn) as gpu_pool:
            futures = {(gpu_pool if job in gpu_jobs else pool).submit(do_job, job, str(out)): job for job in jobs}
            for done, future in enumerate(as_completed(futures), 1):
                job = futures[future]
                try:
                    record = future.result()
                    print(f"[{done}/{len(jobs)} {time.perf_counter() - started:.0f}s] {job['id']}: "
                          f"AUC {record.get('ranking_auc', float('nan')):.3f}", flush=True)
                except Exception as error:  # noqa: BLE001 - report and go on with the other jobs
                    print(f"[{done}/{len(jobs)}] {job['id']} failed: {error!r}", file=sys.stderr, flush=True)
    records = [json.loads(p.read_text()) for p in sorted((out / "jobs").glob("*.json"))]
    print(summarise(records, out))
    if args.doc:
        copy_tables_into(Path(args.doc), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
