"""Speed of the CIFAR-10 path: images/second of one training step and seconds per full epoch.

Measures, on the current device and in one process (so the ratios compare like with like):

* images/s of a training step, exactly the body of `latentmix.training.train`'s batch loop
  (augmentation, bootstrapping forwards, mixed forward, loss, backward, SGD step) for
    - CE (plain cross-entropy, one forward),
    - M-DYR-H with ``bootstrap_forward="reference"`` (Arazo et al.: a train-mode and an eval-mode
      forward for the bootstrapping target and P(noisy), then the mixed forward),
    - M-DYR-H with ``bootstrap_forward="single"`` (one eval-mode forward serves both),
  each with its ratio to CE;
* seconds per full LR-M-DYR-H epoch with bootstrapping on (training + loss tracking over the
  training set + validation), from `train` itself (a 2-epoch run with warm-up 1; epoch 2 is timed).

Data: CIFAR-shaped uint8 images generated in memory (speed does not depend on pixel values), or
the real release with ``--data-dir``. On the CPU the defaults are small (width 0.25, a few batches,
a 1,280-image epoch) so the script finishes in about a minute; the epoch time is also scaled to the
full 50,000 + 10,000 images (linear in the number of images; validation is kept at 1/5 of training,
the release's proportion).

Examples::

    python benchmarks/bench_cifar.py                       # CPU defaults, or the GPU if present
    python benchmarks/bench_cifar.py --device cuda --width 1 --batches 50
    python benchmarks/bench_cifar.py --data-dir data/ --no-amp --no-channels-last
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from latentmix.data import Dataset, index_inputs
from latentmix.data.augment import CropFlipNormalize, Normalize
from latentmix.data.cifar import CIFAR10_MEAN, CIFAR10_STD, load_cifar10
from latentmix.methods import get_method
from latentmix.correction import LossCorrection
from latentmix.mixing import LatentMixup
from latentmix.models.preact_resnet import PreActResNet18
from latentmix.noise_model import fit_noise_model
from latentmix.config import RunConfig
from latentmix.protocols import PROTOCOLS
from latentmix.run_setup import resolve_device
from latentmix.training import train

FULL_TRAIN, FULL_VAL = 50_000, 10_000
VARIANTS = (("CE", "ce", "reference"), ("M-DYR-H reference", "m-dyr-h", "reference"),
            ("M-DYR-H single", "m-dyr-h", "single"))


def machine_description(device: torch.device) -> dict:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as handle:
                name = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
    return {"torch": torch.__version__, "device": str(device), "device_name": name,
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "python": platform.python_version()}


def fake_cifar10(num_train: int, num_val: int, seed: int = 0) -> Dataset:
    """A CIFAR-10-shaped `Dataset` of random uint8 images with the real transforms."""
    generator = torch.Generator().manual_seed(seed)
    images = lambda n: torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)  # noqa: E731
    labels = lambda n: torch.randint(0, 10, (n,), generator=generator)  # noqa: E731
    return Dataset(name="cifar10", train_inputs=images(num_train), train_labels=labels(num_train),
                   val_inputs=images(num_val), val_labels=labels(num_val), num_classes=10,
                   train_transform=CropFlipNormalize(CIFAR10_MEAN, CIFAR10_STD, padding=4, flip=True),
                   eval_transform=Normalize(CIFAR10_MEAN, CIFAR10_STD), info={"source": "random uint8"})


def subset(dataset: Dataset, num_train: Optional[int], num_val: Optional[int]) -> Dataset:
    """The first `num_train` / `num_val` images of a loaded release (all when None)."""
    train_slice, val_slice = slice(0, num_train), slice(0, num_val)
    return Dataset(name=dataset.name, train_inputs=dataset.train_inputs[train_slice],
                   train_labels=dataset.train_labels[train_slice], val_inputs=dataset.val_inputs[val_slice],
                   val_labels=dataset.val_labels[val_slice], num_classes=dataset.num_classes,
                   train_transform=dataset.train_transform, eval_transform=dataset.eval_transform, info=dataset.info)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepBench:
    """One method's training step, set up as `train` sets it up (model, SGD, streams, mixer)."""

    def __init__(self, method_name: str, bootstrap_forward: str, dataset: Dataset, width: float,
                 device: torch.device, amp: bool, channels_last: bool, seed: int = 0) -> None:
        protocol = PROTOCOLS["cifar10"]
        self.method = get_method(method_name)
        self.bootstrap_forward = bootstrap_forward
        self.device, self.batch_size = device, protocol.batch_size
        self.alpha = protocol.alpha
        torch.manual_seed(seed)
        self.model = PreActResNet18(num_classes=10, width=width).to(device)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=protocol.momentum,
                                         weight_decay=protocol.weight_decay)
        self.rng = np.random.default_rng(seed)
        self.mixup = LatentMixup(self.model, layers=self.method.mix_layers, alpha=self.alpha, seed=self.rng)
        self.autocast: Callable = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp else nullcontext
        self.inputs = dataset.train_inputs.to(device)
        self.labels = dataset.train_labels.to(device)
        self.transform = dataset.train_transform
        self.channels_last = channels_last
        self.generator = torch.Generator(device=device).manual_seed(seed)
        # A noise model fitted on plausible losses: the per-batch work does not depend on its fit.
        losses = np.random.default_rng(seed).gamma(2.0, 0.6, size=4096)
        self.correction = LossCorrection(len(losses), correction=self.method.correction,
                                         reg_weight=self.method.reg_weight, bootstrap_forward=bootstrap_forward,
                                         warmup_epochs=0)
        if self.method.corrects:
            self.correction.noise_model = fit_noise_model(losses)

    def step(self) -> None:
        num = self.labels.shape[0]  # a tiny release may hold fewer images than one batch
        index = torch.from_numpy(self.rng.choice(num, self.batch_size, replace=num < self.batch_size)).to(self.device)
        x = self.transform(index_inputs(self.inputs, index), self.generator)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.labels[index]
        # the trainer's step: bootstrapping targets (None without correction), mixed forward, loss
        targets = self.correction.batch_targets(self.model, x, y, autocast=self.autocast)
        with self.autocast():
            logits, plan = self.mixup(x)
        loss = self.correction.loss(logits, y, plan, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def time_steps(self, batches: int) -> float:
        """Images per second over `batches` steps (the device is synchronised only at both ends)."""
        _sync(self.device)
        started = time.perf_counter()
        for _ in range(batches):
            self.step()
        _sync(self.device)
        return batches * self.batch_size / (time.perf_counter() - started)


def bench_steps(dataset: Dataset, args: argparse.Namespace, device: torch.device, amp: bool,
                channels_last: bool) -> dict:
    benches = {label: StepBench(method, forward, dataset, args.width, device, amp, channels_last)
               for label, method, forward in VARIANTS}
    for bench in benches.values():  # warm-up: allocator, cuDNN autotuning, first-call overheads
        for _ in range(args.warmup_batches):
            bench.step()
    rounds: dict[str, list[float]] = {label: [] for label in benches}
    for _ in range(args.repeats):  # variants interleaved, so a load change on a shared machine hits all
        for label, bench in benches.items():
            rounds[label].append(bench.time_steps(args.batches))
    best = {label: max(values) for label, values in rounds.items()}
    return {label: {"images_per_s": best[label], "median_images_per_s": statistics.median(rounds[label]),
                    "rounds": rounds[label], "ratio_to_ce": best[label] / best["CE"]} for label in benches}


def bench_epoch(dataset: Dataset, args: argparse.Namespace, device: torch.device, amp: bool,
                channels_last: bool) -> dict:
    """A 2-epoch LR-M-DYR-H run with warm-up 1 through `train`; epoch 2 (bootstrapping) is timed."""
    config = RunConfig(dataset="cifar10", method="lr-m-dyr-h", epochs=2, warmup_epochs=1, noise=0.5,
                       width=args.width, device=str(device), amp=amp, channels_last=channels_last,
                       compile=args.compile, checkpoint=False)
    num_train, num_val = dataset.num_train, dataset.num_val
    result = train(config, dataset=dataset, progress=False)
    row = result.metrics[-1]
    assert row["bootstrapping"], "epoch 2 should bootstrap"
    seconds = float(result.epoch_time_s[-1])
    scale = (FULL_TRAIN + FULL_VAL) / (num_train + num_val)
    return {"train_images": num_train, "val_images": num_val, "seconds": seconds,
            "seconds_full_estimate": seconds * scale if scale != 1 else seconds,
            "warmup_epoch_seconds": float(result.epoch_time_s[0])}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-dir", help="the real CIFAR-10 release (default: random CIFAR-shaped images)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--width", type=float, help="PreAct ResNet-18 width multiplier (default 1 on CUDA, 0.25 on CPU)")
    parser.add_argument("--batches", type=int, help="timed steps per variant and round (default 50 CUDA, 4 CPU)")
    parser.add_argument("--warmup-batches", type=int, help="untimed steps per variant first (default 10 CUDA, 1 CPU)")
    parser.add_argument("--repeats", type=int, help="rounds; the best round is reported (default 3 CUDA, 1 CPU)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast (default: on for CUDA, off on CPU, as in training)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="channels-last memory format (default: on for CUDA, off on CPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the un-mixed forwards (epoch only)")
    parser.add_argument("--train-size", type=int,
                        help="training images of the timed epoch (default 50000 CUDA, 1280 CPU)")
    parser.add_argument("--val-size", type=int, help="validation images (default train-size / 5)")
    parser.add_argument("--no-epoch", action="store_true", help="skip the full-epoch measurement")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    args.width = args.width if args.width is not None else (1.0 if cuda else 0.25)
    args.batches = args.batches or (50 if cuda else 4)
    args.warmup_batches = args.warmup_batches if args.warmup_batches is not None else (10 if cuda else 1)
    args.repeats = args.repeats or (3 if cuda else 1)
    amp = cuda if args.amp is None else args.amp
    channels_last = cuda if args.channels_last is None else args.channels_last
    train_size = args.train_size or (FULL_TRAIN if cuda else 1280)
    val_size = args.val_size or max(1, train_size // 5)

    machine = machine_description(device)
    print(f"torch {machine['torch']} on {machine['device']} ({machine['device_name']}), "
          f"{machine['torch_threads']} torch threads, {machine['cpu_count']} CPUs")
    print(f"width {args.width:g}, batch 128, bf16 autocast {'on' if amp else 'off'}, channels-last "
          f"{'on' if channels_last else 'off'}, {args.batches} timed steps x {args.repeats} round(s) per variant")
    if args.data_dir:
        full = load_cifar10(args.data_dir)
        step_data = full
        epoch_data = lambda: subset(full, None if cuda and not args.train_size else train_size,  # noqa: E731
                                    None if cuda and not args.val_size else val_size)
        print(f"data: {args.data_dir} ({full.num_train} + {full.num_val} images)")
    else:
        step_data = fake_cifar10(max(train_size, 1024), 16)
        epoch_data = lambda: fake_cifar10(train_size, val_size)  # noqa: E731
        print("data: random CIFAR-shaped uint8 images (speed does not depend on pixel values)")

    started = time.perf_counter()
    steps = bench_steps(step_data, args, device, amp, channels_last)
    print("\ntraining step, images/s (best round; ratio to CE):")
    for label, entry in steps.items():
        print(f"  {label:<20} {entry['images_per_s']:10.1f}   x{entry['ratio_to_ce']:.3f}"
              f"   (rounds: {', '.join(f'{v:.1f}' for v in entry['rounds'])})")
    epoch = None
    if not args.no_epoch:
        epoch = bench_epoch(epoch_data(), args, device, amp, channels_last)
        scaled = "" if epoch["seconds_full_estimate"] == epoch["seconds"] else (
            f"; scaled to {FULL_TRAIN} + {FULL_VAL} images: {epoch['seconds_full_estimate']:.1f} s")
        print(f"\nLR-M-DYR-H epoch with bootstrapping (train + loss tracking + validation), "
              f"{epoch['train_images']} + {epoch['val_images']} images: {epoch['seconds']:.2f} s{scaled} "
              f"(warm-up epoch: {epoch['warmup_epoch_seconds']:.2f} s)")
    print(f"\nbenchmark wall time {time.perf_counter() - started:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "settings": {
            "width": args.width, "batches": args.batches, "repeats": args.repeats, "amp": amp,
            "channels_last": channels_last, "data": args.data_dir or "random"}, "steps": steps, "epoch": epoch},
            indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
