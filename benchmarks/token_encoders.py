"""Which sequence encoder should the default token model have? (issue #24, item 0: "the schedule
of each default model ... chosen so that plain CE trains well on clean data of that kind".)

The default token model (`latentmix.models.small.TextClassifier`) embeds the ids, runs a 1-D
convolution and max-pools it (its `encoder` layer). With width 3 alone it capped plain CE at
57-58% on the robustness suite's clean keyword tokens, where bag-of-words logistic regression
reaches 100%. This script trains plain CE on four clean token tasks, exactly as
`latentmix train --data FILE --method ce --val-split 0.1` does (the token schedule, lr 0.01 /
batch 32; the 10% holdout selects; the file's `val_*` set only scores), once per encoder, and
tabulates the selected checkpoint's accuracy on `val_*`:

* `suite`: the robustness suite's `tokens` (1,000 x 40 ids, 8 classes, 3 keywords of 12 among filler);
* `fashion`: Fashion-MNIST images as 7x7 grids of 16 grey levels, read in raster order (5,000
  training / 2,000 test images; `latentmix.data.multimodal.image_tokens`): the order matters here;
* `long`: 2,000 x 120 ids, 20 classes, 4 keywords of 15 among 600 filler ids;
* `small4`: 400 x 40 ids, 4 classes, 8 keywords a class.

Each encoder is built inside the real CLI run by swapping the class `TextClassifier` builds its
`encoder` with (`_ENCODERS`); everything else is the user's path. One thread per run, so every
figure reproduces exactly.

    python benchmarks/token_encoders.py                 # resumes; one job file per run
    python benchmarks/token_encoders.py --summary-only

Writes benchmarks/results/token-encoders/{jobs/*.json, table.md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "token-encoders"
TASKS = ("suite", "fashion", "long", "small4")
# encoder name -> what it is (the table's row); "widths-1-3" is today's default
ENCODERS = {
    "width-3": "width 3 (the model before)",
    "widths-1-3": "widths 1 and 3, 64 channels each (the default now)",
    "width-1": "width 1 alone",
    "widths-1-3-summed": "widths 1 and 3, 128 channels each, their maxima summed",
    "width-3-max-mean": "width 3, max and mean pooled side by side",
    "width-3-bag": "width 3 beside the mean embedding (fastText's bag)",
    "width-3-sum": "width 3 beside a projected sum of embeddings / sqrt(T)",
    "bag-only": "sum of embeddings -> Linear -> ReLU (a bag only)",
    "width-3-small-init": "width 3, embeddings initialised N(0, 0.1)",
    "widths-1-3-arrays-lr": "widths 1 and 3 at the `arrays` protocol's lr 0.05 / batch 64",
    "widths-1-3-max-mean": "widths 1 and 3, 32 channels each, max and mean pooled side by side",
    "width-1-mean-3-max": "width 1 mean pooled (counts) beside width 3 max pooled, 64 channels each",
}
# the two compared for the default, the default at the other schedule, and the two pooled by mean as
# well (a count of the keywords, which max pooling cannot give): both seeds
SEEDS = {"width-3": (0, 1), "widths-1-3": (0, 1), "widths-1-3-arrays-lr": (0, 1), "widths-1-3-max-mean": (0, 1),
         "width-1-mean-3-max": (0, 1)}
EXTRA_ARGS = {"widths-1-3-arrays-lr": ["--lr", "0.05", "--batch-size", "64"]}


def keyword_tokens(n: int, length: int, classes: int, keywords: int, filler: int, seed: int):
    """Each class has `keywords` ids; a sequence holds 3 (`long`: 4) of its own class's, 2 of
    other classes' and filler ids, shuffled (the suite's `tokens` construction)."""
    own_count = 4 if length > 100 else 3
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    rows = []
    for label in labels:
        own = filler + label * keywords + rng.integers(0, keywords, own_count)
        other = rng.choice([c for c in range(classes) if c != label], 2)
        foreign = filler + other * keywords + rng.integers(0, keywords, 2)
        rows.append(rng.permutation(np.concatenate([own, foreign, rng.integers(0, filler, length - own_count - 2)])))
    return np.asarray(rows, dtype=np.int64), labels


def write_tasks(folder: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import robustness_suite as suite
    from latentmix.data.multimodal import image_tokens

    folder.mkdir(parents=True, exist_ok=True)
    x, y, xt, yt = suite.tokens()
    np.savez(folder / "suite.npz", features=x, labels=y, val_features=xt, val_labels=yt)
    x, y = keyword_tokens(4000, 120, 20, 15, 600, seed=3)
    np.savez(folder / "long.npz", features=x[:2000], labels=y[:2000], val_features=x[2000:], val_labels=y[2000:])
    x, y = keyword_tokens(800, 40, 4, 8, 100, seed=4)
    np.savez(folder / "small4.npz", features=x[:400], labels=y[:400], val_features=x[400:], val_labels=y[400:])
    images, labels, test_images, test_labels = suite._fashion()
    train = np.random.default_rng(0).permutation(len(labels))[:5000]
    test = np.random.default_rng(1).permutation(len(test_labels))[:2000]
    np.savez(folder / "fashion.npz", features=image_tokens(images[train]), labels=labels[train],
             val_features=image_tokens(test_images[test]), val_labels=test_labels[test])


# ------------------------------------------------------------------------------------------------
# one run (in its own process: `python token_encoders.py --one ENCODER TASK SEED OUTDIR`)


def _encoder_class(name: str):
    """The class `TextClassifier` builds its `encoder` with, for encoder `name`: called as
    ``cls(embed_dim, hidden, kernel_sizes=..., pooling=...)`` and returning (N, hidden)."""
    import torch
    from torch import nn

    from latentmix.models.small import SequenceEncoder

    def fixed(kernel_sizes):
        class Fixed(SequenceEncoder):
            def __init__(self, embed_dim, hidden, kernel_sizes_=None, **kwargs):
                super().__init__(embed_dim, hidden, kernel_sizes=kernel_sizes, pooling="max")
        return Fixed

    class Summed(nn.Module):
        def __init__(self, embed_dim, hidden, **kwargs):
            super().__init__()
            self.c1, self.c3 = nn.Conv1d(embed_dim, hidden, 1), nn.Conv1d(embed_dim, hidden, 3, padding=1)

        def forward(self, x):
            x = x.transpose(1, 2)
            return torch.relu(self.c1(x)).amax(2) + torch.relu(self.c3(x)).amax(2)

    class Width3Plus(nn.Module):
        """width 3 (half the channels, or all but the bag's) beside a second view of the sequence."""

        def __init__(self, embed_dim, hidden, **kwargs):
            super().__init__()
            width = {"width-3-max-mean": hidden // 2, "width-3-bag": hidden - embed_dim}.get(name, hidden // 2)
            self.conv = nn.Conv1d(embed_dim, width, 3, padding=1)
            if name == "width-3-sum":
                self.lin = nn.Linear(embed_dim, hidden - hidden // 2)

        def forward(self, x):
            h = torch.relu(self.conv(x.transpose(1, 2)))
            if name == "width-3-max-mean":
                return torch.cat([h.amax(2), h.mean(2)], 1)
            if name == "width-3-bag":
                return torch.cat([h.amax(2), x.mean(1)], 1)
            return torch.cat([h.amax(2), torch.relu(self.lin(x.sum(1) / x.shape[1] ** 0.5))], 1)

    class BagOnly(nn.Module):
        def __init__(self, embed_dim, hidden, **kwargs):
            super().__init__()
            self.lin = nn.Linear(embed_dim, hidden)

        def forward(self, x):
            return torch.relu(self.lin(x.sum(1)))

    if name in ("width-3", "width-3-small-init"):
        return fixed((3,))
    if name in ("widths-1-3", "widths-1-3-arrays-lr"):
        return fixed((1, 3))
    if name == "width-1":
        return fixed((1,))
    if name == "widths-1-3-summed":
        return Summed
    if name in ("width-3-max-mean", "width-3-bag", "width-3-sum"):
        return Width3Plus
    if name == "bag-only":
        return BagOnly

    class MaxMean(nn.Module):
        """Mean pooling beside max pooling: the mean of a width-1 channel counts its tokens (a bag of
        words), which a maximum cannot (fastai's / ULMFiT's concat pooling pools both ways)."""

        def __init__(self, embed_dim, hidden, **kwargs):
            super().__init__()
            half = hidden // 2
            if name == "widths-1-3-max-mean":  # 64 channels, each pooled twice: `hidden` features
                self.c1 = nn.Conv1d(embed_dim, half // 2, 1)
                self.c3 = nn.Conv1d(embed_dim, half - half // 2, 3, padding=1)
            else:
                self.c1, self.c3 = nn.Conv1d(embed_dim, half, 1), nn.Conv1d(embed_dim, hidden - half, 3, padding=1)

        def forward(self, x):
            x = x.transpose(1, 2)
            h1, h3 = torch.relu(self.c1(x)), torch.relu(self.c3(x))
            if name == "widths-1-3-max-mean":
                h = torch.cat([h1, h3], 1)
                return torch.cat([h.amax(2), h.mean(2)], 1)
            return torch.cat([h1.mean(2), h3.amax(2)], 1)

    if name in ("widths-1-3-max-mean", "width-1-mean-3-max"):
        return MaxMean
    raise SystemExit(f"unknown encoder {name!r}; choose from {', '.join(ENCODERS)}")


def run_one(encoder: str, task: Path, seed: int, out: Path) -> int:
    from torch import nn

    import latentmix.models.small as small
    from latentmix.cli import main

    small.SequenceEncoder = _encoder_class(encoder)  # what TextClassifier.__init__ builds `encoder` from
    if encoder == "width-3-small-init":
        build = small.TextClassifier.__init__

        def small_init(self, *args, **kwargs):
            build(self, *args, **kwargs)
            nn.init.normal_(self.embed.weight, 0.0, 0.1)
        small.TextClassifier.__init__ = small_init
    return main(["train", "--data", str(task), "--method", "ce", "--val-split", "0.1", "--seed", str(seed),
                 "--out", str(out), "--threads", "1", "--quiet", *EXTRA_ARGS.get(encoder, [])])


# ------------------------------------------------------------------------------------------------


def job_path(encoder: str, task: str, seed: int) -> Path:
    return OUT / "jobs" / f"{encoder}-{task}-s{seed}.json"


def run_job(encoder: str, task: str, seed: int) -> str:
    path = job_path(encoder, task, seed)
    if path.exists():
        return f"{path.stem}: done before"
    run_dir = OUT / "runs" / path.stem
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT / "src")}
    start = time.time()
    done = subprocess.run([sys.executable, __file__, "--one", encoder, str(OUT / "data" / f"{task}.npz"), str(seed),
                           str(run_dir), "--overwrite-run"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return f"{path.stem}: FAILED\n{done.stderr[-2000:]}"
    result = json.loads((run_dir / "result.json").read_text())
    job = {"encoder": encoder, "task": task, "seed": seed, "selected_val_acc": result["selected_val_acc"],
           "best_val_acc": result["best_val_acc"], "last_train_acc_noisy": result["last_train_acc_noisy"],
           "training_note": result["training_note"], "wall_time_s": round(time.time() - start, 1)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(job, indent=1) + "\n")
    return f"{path.stem}: selected {100 * job['selected_val_acc']:.1f}% ({job['wall_time_s']:.0f}s)"


def table() -> str:
    lines = ["Plain CE on clean labels, `latentmix train --data TASK.npz --method ce --val-split 0.1` (the token",
             "schedule: lr 0.01, batch 32, 50 epochs) with the token model's `encoder` swapped; selected accuracy",
             "(%) on the task's `val_*` set, seeds 0 / 1 where two ran. `python benchmarks/token_encoders.py`.", "",
             "| encoder | " + " | ".join(TASKS) + " |", "|---|" + "---|" * len(TASKS)]
    for encoder, words in ENCODERS.items():
        cells = []
        for task in TASKS:
            values = [json.loads(job_path(encoder, task, seed).read_text())["selected_val_acc"]
                      for seed in SEEDS.get(encoder, (0,)) if job_path(encoder, task, seed).exists()]
            cells.append(" / ".join(f"{100 * v:.1f}" for v in values) or "—")
        lines.append(f"| {words} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="runs in parallel, one process and thread each")
    parser.add_argument("--encoders", default=",".join(ENCODERS), help="comma-separated (default: all)")
    parser.add_argument("--summary-only", action="store_true", help="only rebuild table.md from finished jobs")
    parser.add_argument("--one", nargs=4, metavar=("ENCODER", "TASK_FILE", "SEED", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--overwrite-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        encoder, task, seed, out = args.one
        if args.overwrite_run and Path(out).exists():
            import shutil
            shutil.rmtree(out)  # a run cut off before its job file was written starts again
        return run_one(encoder, Path(task), int(seed), Path(out))
    if not args.summary_only:
        if not (OUT / "data" / "long.npz").exists():
            write_tasks(OUT / "data")
        jobs = [(e, t, s) for e in args.encoders.split(",") for t in TASKS for s in SEEDS.get(e, (0,))]
        start = time.time()
        with ThreadPoolExecutor(args.workers) as pool:
            for index, line in enumerate(pool.map(lambda job: run_job(*job), jobs), 1):
                print(f"[{index}/{len(jobs)} {time.time() - start:.0f}s] {line}", flush=True)
    text = table()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
