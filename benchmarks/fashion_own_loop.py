"""The README's own loop against `latentmix train` on a Fashion-MNIST subset: same model, seed,
labels, schedule and method; best / last validation accuracy and detection AUC of each.

    python benchmarks/fashion_own_loop.py [--train 2000] [--val 2000] [--epochs 20] [--noise 0.5]
                                          [--seeds 0 1] [--out benchmarks/results/fashion-own-loop.md]

Both train `lr-m-dyr-h` (latent mixup on layers 0-2 of the small CNN, hard bootstrapping from the
end of the fashion-mnist protocol's warm-up, scaled to --epochs) on the same noisy labels (the
run's `make_labels`), from the same initial weights, with SGD on the protocol's step schedule.
They differ where a user's loop differs from the trainer: the own loop shuffles with a
`DataLoader(WithIndex(...), shuffle=True)` and draws one mix per step (`LatentMixup.__call__`),
where `train` draws its order from the run's order stream and a whole epoch's mixing at once; so
the two are two samples of the same method, not the same run (`tests/test_training.py` shows that
the loop written with the trainer's draws gives its very weights). Detection AUC: P(noisy) after
the last epoch against the known wrong labels.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

import latentmix
from latentmix.data.idx import load_mnist_like
from latentmix.noise_model import detection_metrics
from latentmix.config import RunConfig
from latentmix.protocols import lr_at_epoch, protocol_for
from latentmix.run_setup import build_run_model, make_labels
from latentmix.training import train


def own_loop(config: RunConfig, dataset, seed: int) -> dict:
    """The README's loop ("In your own loop"), with the protocol's schedule and the run's labels."""
    protocol = protocol_for(config)
    method = config.resolved_method()
    noisy = make_labels(config, dataset)
    x_train = dataset.eval_transform(dataset.train_inputs)  # no augmentation: the same inputs as train's
    x_val, y_val = dataset.eval_transform(dataset.val_inputs), dataset.val_labels
    train_set = TensorDataset(x_train, noisy.labels, torch.arange(len(noisy.labels)))
    loader = DataLoader(train_set, batch_size=protocol.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    tracking_loader = DataLoader(train_set, batch_size=protocol.eval_batch_size)
    model = build_run_model(config, dataset)
    optimizer = torch.optim.SGD(model.parameters(), lr=protocol.lr, momentum=protocol.momentum,
                                weight_decay=protocol.weight_decay)
    mixup = latentmix.LatentMixup(model, layers=method.mix_layers, alpha=protocol.alpha, seed=seed)
    correction = latentmix.LossCorrection(len(train_set), correction=method.correction,
                                          warmup_epochs=protocol.warmup_epochs)
    accuracies = []
    for epoch in range(1, protocol.epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr_at_epoch(protocol, epoch)
        model.train()
        for x, y, index in loader:
            targets = correction.batch_targets(model, x, y, index)
            logits, plan = mixup(x)
            loss = correction.loss(logits, y, plan, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        tracked = latentmix.track_losses(model, tracking_loader)
        correction.observe(tracked.index, tracked.losses)
        correction.end_epoch()
        model.eval()
        with torch.no_grad():
            accuracies.append(float((torch.cat([model(b).argmax(1) for b in x_val.split(1000)]) == y_val).float().mean()))
    auc = detection_metrics(correction.p_noisy, noisy.is_noisy.numpy())["auc"]
    return {"best": max(accuracies), "last": accuracies[-1], "auc": auc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--val", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", default="benchmarks/results/fashion-own-loop.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = load_mnist_like(name="fashion-mnist", train_size=args.train, val_size=args.val, seed=0)
    rows = []
    for seed in args.seeds:
        config = RunConfig(dataset="fashion-mnist", method="lr-m-dyr-h", model="small-cnn", epochs=args.epochs,
                           noise=args.noise, seed=seed, device="cpu", checkpoint=False)
        started = time.perf_counter()
        result = train(config, dataset=load_mnist_like(name="fashion-mnist", train_size=args.train, val_size=args.val,
                                                       seed=0), progress=False)
        ours = {"best": result.best_val_acc, "last": result.last_val_acc, "auc": result.metrics[-1]["detection_auc"],
                "seconds": time.perf_counter() - started}
        middle = time.perf_counter()
        loop = own_loop(config, dataset, seed)
        loop["seconds"] = time.perf_counter() - middle
        print(f"seed {seed}: train {ours}, own loop {loop}", flush=True)
        rows.append((seed, ours, loop))
    lines = table(rows, args)
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


def table(rows: list, args: argparse.Namespace) -> list[str]:
    """The results page: one row per seed (best, last, AUC, seconds of each loop) and the mean."""
    protocol = protocol_for(RunConfig(dataset="fashion-mnist", model="small-cnn", epochs=args.epochs))
    lines = [
        "# Fashion-MNIST subset: the README's own loop vs `latentmix train`",
        "",
        f"`python benchmarks/fashion_own_loop.py --train {args.train} --val {args.val} --epochs {args.epochs} "
        f"--noise {args.noise:g} --seeds {' '.join(map(str, args.seeds))}` (torch {torch.__version__}, "
        f"{platform.machine()}, 1 thread, a 2-core machine shared with other work, nice 19). lr-m-dyr-h, small CNN, "
        f"{args.noise:.0%} symmetric noise, {args.epochs} epochs (lr {protocol.lr} / 10 at epochs "
        f"{', '.join(map(str, protocol.milestones))}, bootstrapping after epoch {protocol.warmup_epochs}); validation: "
        f"{args.val} t10k images. Detection AUC: P(noisy) after the last epoch against the known wrong labels. "
        "Seconds: the whole run (the own loop reads batches through a DataLoader over a TensorDataset, item by item; "
        "`train` slices the tensors).",
        "",
        "| seed | train best | train last | train AUC | train s | own loop best | own loop last | own loop AUC | own loop s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for seed, ours, loop in rows:
        lines.append(f"| {seed} | {ours['best']:.4f} | {ours['last']:.4f} | {ours['auc']:.3f} | {ours['seconds']:.0f} | "
                     f"{loop['best']:.4f} | {loop['last']:.4f} | {loop['auc']:.3f} | {loop['seconds']:.0f} |")
    mean = lambda side, key: np.mean([row[side][key] for row in rows])  # noqa: E731
    lines.append(f"| mean | {mean(1, 'best'):.4f} | {mean(1, 'last'):.4f} | {mean(1, 'auc'):.3f} | {mean(1, 'seconds'):.0f} | "
                 f"{mean(2, 'best'):.4f} | {mean(2, 'last'):.4f} | {mean(2, 'auc'):.3f} | {mean(2, 'seconds'):.0f} |")
    return lines


if __name__ == "__main__":
    main()
