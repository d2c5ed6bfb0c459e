"""How much of a two-network method's accuracy is the pair's ensemble: each network of a finished
Co-teaching / DivideMix run (and their latent-mixup variants) scored alone on the clean test set,
beside the pair's averaged logits, which is what the run reports (issue 27, "then win": why
Co-teaching leads some robustness-suite cells).

    python benchmarks/pair_ensemble.py benchmarks/results/robustness-suite-after/runs/slow/sym40/default/runs/*coteaching*

Each argument is a run folder of a two-network method: of `latentmix train --data FILE.npz` whose
file holds the clean test set as `val_*` arrays (the robustness suite's files), or of a built-in
data set (`reproduce fashion-mnist --peers`: its 10k test images); its selected checkpoint is
loaded with `latentmix.load_run`. Prints a markdown table (test accuracy %, first / second / pair) and the mean
of (pair - the better single network) over the folders given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from latentmix import load_run  # noqa: E402


def test_set(config: dict) -> tuple[object, np.ndarray]:
    """The run's clean test set: a suite file's `val_*` arrays (under the training arrays' names), or
    a built-in data set's own test split (Fashion-MNIST's 10k images), as the run loads it."""
    from latentmix.config import RunConfig
    from latentmix.run_setup import load_run_dataset

    dataset = load_run_dataset(RunConfig.from_dict(config["config"]))
    if dataset.test_labels is not None:  # a file's own test arrays, when it has them
        return dataset.test_inputs, dataset.test_labels.numpy()
    return dataset.val_inputs, dataset.val_labels.numpy()


@torch.no_grad()
def scores(run_dir: Path) -> dict:
    """Test accuracy of the first network, the second and the pair (mean logits) of a run's
    selected checkpoint."""
    config = json.loads((run_dir / "config.json").read_text())
    trained = load_run(run_dir)
    inputs, labels = test_set(config)
    x = trained.transform(inputs)
    pair = trained.network
    if not hasattr(pair, "first"):
        raise SystemExit(f"{run_dir}: not a two-network run (method {config['method'].get('name')})")
    labels = torch.as_tensor(labels)
    first = torch.cat([pair.first(b) for b in _batches(x)])
    second = torch.cat([pair.second(b) for b in _batches(x)])
    return {"run": "/".join(part for part in run_dir.resolve().parts[-5:] if part != "runs"),
            "first": float((first.argmax(1) == labels).float().mean()),
            "second": float((second.argmax(1) == labels).float().mean()),
            "pair": float(((first + second).argmax(1) == labels).float().mean())}


def _batches(x, size: int = 1000):
    from latentmix.data import index_inputs, map_inputs

    lengths = []
    map_inputs(x, lambda t: lengths.append(int(t.shape[0])) or t)
    return [index_inputs(x, batch) for batch in torch.arange(lengths[0]).split(size)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders of two-network methods")
    args = parser.parse_args(argv)
    rows = [scores(Path(run)) for run in args.runs]
    print("| run | first network | second network | pair (mean logits) | pair minus the better one |")
    print("|---|---|---|---|---|")
    for row in rows:
        gain = row["pair"] - max(row["first"], row["second"])
        print(f"| {row['run']} | {100 * row['first']:.1f} | {100 * row['second']:.1f} | {100 * row['pair']:.1f} "
              f"| {100 * gain:+.1f} |")
    gains = [r["pair"] - max(r["first"], r["second"]) for r in rows]
    means = [r["pair"] - (r["first"] + r["second"]) / 2 for r in rows]
    print(f"\nmean over {len(rows)} runs: pair minus the better network {100 * np.mean(gains):+.1f} points, "
          f"minus the networks' mean {100 * np.mean(means):+.1f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
