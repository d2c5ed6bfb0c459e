"""Seconds per epoch of the Dataset/DataLoader path against the in-memory tensor path, same model,
same data, same run settings; the ratios are measured in the same run.

    python benchmarks/bench_loader_path.py [--train 2000] [--epochs 3] [--repeats 2] [--workers 2]
                                           [--out benchmarks/results/loader-path.md]

The data: `--train` + 20% grey 28x28 images of 4 classes (a bright band per class, noise), written
once as PNG files in one sub-folder per class. Each path trains `lr-m-dyr-h` (small CNN, batch 64,
bootstrapping from epoch 2) on those images:

    tensors           the images read once into a uint8 tensor (`latentmix.data.Dataset`), sliced per batch
    dataset, 0 workers    the same tensor behind a map-style Dataset of (image, label) items, read by a
                          DataLoader in the training process (`latentmix.data.streamed.StreamedInputs`)
    image folder, 0 / N   `latentmix.ImageFolder` over the PNG files: each item decoded by Pillow, by the
                          training process or by N DataLoader workers

An epoch holds the training steps, the tracking pass over the training set and the validation pass,
each of which reads the data. Paths are run in interleaved rounds and the median epoch is kept, so a
machine shared with other work biases all paths alike. Every path must give the same results (same
batches in the same order); the script checks that too.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from latentmix.data import Dataset
from latentmix.data.image_folder import ImageFolder, load_image_folder
from latentmix.data.streamed import StreamedInputs
from latentmix.config import RunConfig
from latentmix.training import train


def write_folder(root: Path, n: int, seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        label = i % 4
        pixels = rng.integers(0, 90, size=(28, 28), dtype=np.uint8)
        pixels[6 * label: 6 * label + 4] = 200
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(root / f"class{label}" / f"{i:05d}.png")


class Pairs(torch.utils.data.Dataset):
    """In-memory images behind the map-style interface: the DataLoader's per-item cost alone."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])


def datasets(root: Path, workers: int) -> dict:
    """Builders of each path's `Dataset` over the same images, split and transforms."""
    def folder_dataset(w: int) -> Dataset:
        return load_image_folder(root, workers=w)

    def in_memory(streamed: bool) -> Dataset:
        dataset = load_image_folder(root, workers=0)
        train_x = dataset.train_inputs.take(torch.arange(len(dataset.train_inputs)))
        val_x = dataset.val_inputs.take(torch.arange(len(dataset.val_inputs)))
        if streamed:
            dataset.train_inputs = StreamedInputs(Pairs(train_x, dataset.train_labels), workers=0)
            dataset.val_inputs = StreamedInputs(Pairs(val_x, dataset.val_labels), workers=0)
        else:
            dataset.train_inputs, dataset.val_inputs = train_x, val_x
        return dataset

    return {"tensors": lambda: in_memory(False), "dataset, 0 workers": lambda: in_memory(True),
            "image folder, 0 workers": lambda: folder_dataset(0),
            f"image folder, {workers} workers": lambda: folder_dataset(workers)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/loader-path.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = RunConfig(dataset="images", method="lr-m-dyr-h", model="small-cnn", epochs=args.epochs, batch_size=64,
                       warmup_epochs=1, noise=0.2, seed=0, device="cpu", checkpoint=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        write_folder(root, int(args.train * 1.111) + 1)
        assert len(ImageFolder(root)) > args.train
        builders = datasets(root, args.workers)
        epoch_times = {name: [] for name in builders}
        summaries = {}
        for _ in range(args.repeats):
            for name, build in builders.items():
                dataset = build()
                dataset.train_labels_clean = True  # synthetic noise on the folder's (clean) labels
                started = time.perf_counter()
                result = train(config, dataset=dataset, progress=False)
                epoch_times[name] += result.epoch_time_s
                summaries.setdefault(name, result.summary())
                print(f"{name:28s} {time.perf_counter() - started:6.1f} s, epochs {[round(t, 2) for t in result.epoch_time_s]}",
                      flush=True)
    base = statistics.median(epoch_times["tensors"])
    same = all(summary == summaries["tensors"] for summary in summaries.values())
    lines = [
        "# Seconds per epoch: Dataset/DataLoader path vs in-memory tensors",
        "",
        f"`python benchmarks/bench_loader_path.py --train {args.train} --epochs {args.epochs} --repeats {args.repeats} "
        f"--workers {args.workers}` (torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        "1 torch thread; a 2-core machine shared with other work, run at nice 19). "
        f"{dataset.num_train} training and {dataset.num_val} validation images, 1x28x28, small CNN, lr-m-dyr-h "
        "(bootstrapping from epoch 2), batch 64. Median epoch (training steps + tracking pass + validation) over "
        f"{len(epoch_times['tensors'])} epochs per path.",
        "",
        "| path | s / epoch | vs tensors |",
        "|---|---|---|",
    ]
    for name, times in epoch_times.items():
        median = statistics.median(times)
        lines.append(f"| {name} | {median:.2f} | {median / base:.2f}x |")
    lines += ["", f"Same results on every path (summary: accuracies, P(noisy) detection, epochs): {'yes' if same else 'NO'}."]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
