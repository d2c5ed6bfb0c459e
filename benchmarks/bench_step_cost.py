"""Per-step cost of each method relative to plain cross-entropy, on the same model and batch.

    python benchmarks/bench_step_cost.py [--model spiral|cifar|both] [--steps 200] [--width 0.25]

A step is what `latentmix.training.train` runs per batch: `LossCorrection.batch_targets`
(bootstrapping inputs), `LatentMixup`'s mixed forward, `LossCorrection.loss`, the SGD step. M-DYR-H is timed with the reference's two extra
forwards per batch (`--bootstrap-forward reference`), with one (`single`), and with none
(`tracked`: the batch's target rows gathered from a whole-epoch table, as the trainer does). Methods are timed in
interleaved rounds and the median per step is kept, so a machine shared with other work biases all
methods alike; the printed ratios are what to read.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from latentmix.data import Dataset
from latentmix.methods import get_method
from latentmix.correction import LossCorrection
from latentmix.mixing import LatentMixup
from latentmix.models import build_model
from latentmix.beta_mixture import BetaMixture

METHODS = [("ce", "reference"), ("m", "reference"), ("lr-m", "reference"),
           ("m-dyr-h", "reference"), ("m-dyr-h", "single"), ("m-dyr-h", "tracked"),
           ("lr-m-dyr-h", "single"), ("lr-m-dyr-h", "tracked")]


def setup(kind: str, width: float, batch_size: int):
    generator = torch.Generator().manual_seed(0)
    if kind == "spiral":
        x = torch.randn(batch_size, 4, generator=generator)
        dataset = Dataset("spiral", x, torch.zeros(batch_size, dtype=torch.long), x, torch.zeros(2, dtype=torch.long), 2)
        model_name, num_classes = "spiral-mlp", 2
    else:
        x = torch.randn(batch_size, 3, 32, 32, generator=generator)
        dataset = Dataset("cifar10", x, torch.zeros(batch_size, dtype=torch.long), x, torch.zeros(2, dtype=torch.long), 10)
        model_name, num_classes = "preact-resnet18", 10
    y = torch.randint(0, num_classes, (batch_size,), generator=generator)
    torch.manual_seed(0)
    model = build_model(model_name, dataset, width=width)
    return model, x, y


def time_method(model, x, y, name: str, mode: str, steps: int, rng: np.random.Generator) -> list[float]:
    method = get_method(name)
    alpha = 32.0 if x.dim() == 4 else 2.0
    mixup = LatentMixup(model, layers=method.mix_layers, alpha=alpha, seed=rng)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    num_train, num_classes = 50 * y.shape[0], int(y.max()) + 1
    correction = LossCorrection(num_train, correction=method.correction, reg_weight=method.reg_weight,
                                bootstrap_forward=mode, warmup_epochs=0)
    if method.corrects:  # a fitted noise model, and (for "tracked") the tracking pass the trainer observes
        generator = torch.Generator().manual_seed(1)
        correction.observe(torch.arange(num_train), torch.rand(num_train, generator=generator) * 3,
                           torch.randn(num_train, num_classes, generator=generator),
                           torch.randint(0, num_classes, (num_train,), generator=generator))
        correction.noise_model = BetaMixture.fit(np.random.default_rng(0).gamma(2.0, 0.5, 5000))
    indices = torch.randint(0, num_train, (steps, y.shape[0]), generator=torch.Generator().manual_seed(2))
    mixup.start_epoch(steps, y.shape[0])
    times = []
    for step in range(steps):
        plan = mixup.next_plan(y.shape[0])
        started = time.perf_counter()
        targets = correction.batch_targets(model, x, y, indices[step])
        logits, _ = mixup(x, plan)
        loss = correction.loss(logits, y, plan, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return times


def bench(kind: str, steps: int, rounds: int, width: float, batch_size: int) -> None:
    model, x, y = setup(kind, width, batch_size)
    rng = np.random.default_rng(0)
    per_method: dict[str, list[float]] = {f"{n}/{m}": [] for n, m in METHODS}
    time_method(model, x, y, "ce", "reference", 5, rng)  # warm-up
    for _ in range(rounds):
        for name, mode in METHODS:
            per_method[f"{name}/{mode}"] += time_method(model, x, y, name, mode, steps // rounds, rng)
    base = statistics.median(per_method["ce/reference"])
    label = "spiral MLP" if kind == "spiral" else f"PreAct ResNet-18 width {width:g}"
    print(f"\n{label}, batch {batch_size}, {steps} steps per method (median of interleaved rounds)")
    print(f"{'method':24s} {'ms/step':>9s} {'x CE':>6s}")
    for key, times in per_method.items():
        median = statistics.median(times)
        print(f"{key:24s} {median * 1e3:9.3f} {median / base:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="both", choices=["spiral", "cifar", "both"])
    parser.add_argument("--steps", type=int, default=400, help="timed steps per method (spiral)")
    parser.add_argument("--cifar-steps", type=int, default=24, help="timed steps per method (cifar)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--width", type=float, default=0.25, help="PreAct ResNet-18 width on CPU")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    if args.model in ("spiral", "both"):
        bench("spiral", args.steps, args.rounds, 1.0, 24)
    if args.model in ("cifar", "both"):
        bench("cifar", args.cifar_steps, args.rounds, args.width, 128)


if __name__ == "__main__":
    main()
