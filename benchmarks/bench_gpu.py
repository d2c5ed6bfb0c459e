"""Issue #28's GPU measurement: seconds per CIFAR-10 epoch of PreAct ResNet-18, and its parts,
for CE, M, LR-M, M-DYR-H and LR-M-DYR-H (each `--bootstrap-forward` mode), with and without bf16
autocast, channels-last and `--compile`, beside a plain PyTorch loop measured in the same process.

    python benchmarks/bench_gpu.py                      # on the GPU: writes $OUT (or runs/bench-gpu)
    python benchmarks/bench_gpu.py --smoke --out DIR    # the CPU check of this script (tiny sizes, < 1 min)
    python benchmarks/bench_gpu.py --only ce,plain --budget-s 60    # a rerun of a few configurations

What is timed. A library configuration is `latentmix.training.train` itself (`RunConfig(dataset=
"cifar10", ...)`, one warm-up epoch, then `--timed-epochs` bootstrapping epochs), with its epoch's
parts read off `train`'s own calls (`EpochParts` wraps `Run.set_lr`, `Run.evaluate_epoch`,
`Run.track_training_set` and `LossCorrection.end_epoch`, synchronising the device at each
boundary): training steps (augmentation, bootstrapping targets, mixed forward, loss, backward,
SGD), the tracking pass (every training sample's loss, eval mode), the mixture fit (the Beta
mixture on those losses, on the CPU), evaluation (the validation set), and the rest ("other":
the per-sample view, detection metrics, the metrics row). The plain loop (`PlainLoop`: the same
model, the data on the GPU as uint8, the same batch, its own crop/flip/normalise, cross-entropy,
SGD; no latentmix code but the model class) times the same passes: steps, a per-sample loss pass
over the training set, evaluation.

How an epoch is derived. The data are a partial epoch: `--train-size` images (default 12,800 =
100 steps of 128) and `--val-size` (default 2,560, the release's 5:1), random pixels and labels
written in the real release format by `latentmix.data.fake_cifar10.write_fake_cifar10` and read
back by `latentmix.data.cifar.load_cifar10` (timing only: speed does not depend on the values).
Of the timed epochs the fastest is kept, and each part is scaled to the full release: steps by
391 / (steps measured), tracking, fit and other by 50,000 / train-size, evaluation by 10,000 /
val-size. Fixed per-epoch costs are scaled too, so the full-epoch figure errs on the high side.
Peak GPU memory is the partial data set's (the full one adds ~150 MB of uint8 images).

Every configuration runs in its own try/except (an error is recorded and the next one runs), and
before each one the time left of `--budget-s` is compared with its expected cost: what does not
fit is recorded as skipped, with the reason. On a CPU nothing is claimed for the GPU: the card is
"cpu" and every done-means check is "not measured". Results: bench_gpu.md and bench_gpu.json in
`--out` (default $OUT when set, else runs/bench-gpu).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from latentmix import training
from latentmix.config import RunConfig
from latentmix.correction import LossCorrection
from latentmix.data.cifar import CIFAR10_MEAN, CIFAR10_STD, load_cifar10
from latentmix.data.fake_cifar10 import write_fake_cifar10
from latentmix.models.preact_resnet import PreActResNet18
from latentmix.run_setup import resolve_device

FULL_TRAIN, FULL_VAL, PAPER_BATCH = 50_000, 10_000, 128
PARTS = ("steps", "tracking", "fit", "eval", "other")
GOALS = {"ce_vs_plain": 1.15, "tracked_vs_ce": 1.4, "fastest_epoch_s": 5.0}


@dataclass(frozen=True)
class Configuration:
    """One measured configuration: a method and its switches, or the plain loop (`method` None)."""

    method: Optional[str]
    bootstrap_forward: str = "reference"
    amp: bool = True
    channels_last: bool = True
    compile: bool = False

    @property
    def name(self) -> str:
        base = "plain" if self.method is None else self.method
        if self.method is not None and "dyr" in self.method:
            base += f"/{self.bootstrap_forward}"
        extras = [flag for flag, on in (("fp32", not self.amp), ("nchw", not self.channels_last),
                                        ("compile", self.compile)) if on]
        return "+".join([base] + extras)

    @property
    def flags(self) -> str:
        return ", ".join(["bf16" if self.amp else "fp32", "channels-last" if self.channels_last else "NCHW"]
                         + (["compile"] if self.compile else []))


def configurations() -> list[Configuration]:
    """The configurations in the order they are measured (what matters most first, the compiled
    ones last: compilation takes the longest and is the first to be cut by the time budget)."""
    fast = [Configuration(None), Configuration("ce"), Configuration("lr-m-dyr-h", "tracked"),
            Configuration("lr-m-dyr-h", "reference"), Configuration("lr-m-dyr-h", "single"),
            Configuration("m"), Configuration("lr-m"), Configuration("m-dyr-h", "reference"),
            Configuration("m-dyr-h", "single"), Configuration("m-dyr-h", "tracked")]
    fp32 = [Configuration(None, amp=False), Configuration("ce", amp=False),
            Configuration("lr-m-dyr-h", "tracked", amp=False)]
    nchw = [Configuration(None, channels_last=False), Configuration("ce", channels_last=False),
            Configuration("lr-m-dyr-h", "tracked", channels_last=False)]
    compiled = [Configuration("ce", compile=True), Configuration("lr-m-dyr-h", "tracked", compile=True)]
    return fast + fp32 + nchw + compiled


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------------
# The library's epoch, timed by its parts


class EpochParts:
    """Times the parts of each epoch `train` runs, by wrapping the calls its loop makes (restored
    on exit): `Run.set_lr` opens an epoch (the steps start after it), `Run.evaluate_epoch` ends the
    steps and is the evaluation, `Run.track_training_set` the tracking pass and
    `LossCorrection.end_epoch` the mixture fit, which closes the epoch's record."""

    def __init__(self, device: torch.device):
        self.device = device
        self.epochs: list[dict] = []
        self._saved: list[tuple[type, str, Callable]] = []

    def _open(self) -> Optional[dict]:
        return self.epochs[-1] if self.epochs and not self.epochs[-1].get("closed") else None

    def _timed(self, cls: type, name: str, before: Callable, after: Callable) -> None:
        original = getattr(cls, name)

        def wrapper(*args, **kwargs):
            before()
            result = original(*args, **kwargs)
            after()
            return result

        self._saved.append((cls, name, original))
        setattr(cls, name, wrapper)

    def _now(self) -> float:
        sync(self.device)
        return time.perf_counter()

    def _add(self, part: str, started: float) -> None:
        record = self._open()
        if record is not None:
            record[part] = record.get(part, 0.0) + self._now() - started

    def __enter__(self) -> "EpochParts":
        mark: dict = {}
        self._timed(training.Run, "set_lr", lambda: None,
                    lambda: self.epochs.append({"steps_from": self._now()}))

        def steps_end() -> None:
            mark["eval"] = self._now()
            record = self._open()
            if record is not None and "steps" not in record:
                record["steps"] = mark["eval"] - record["steps_from"]

        self._timed(training.Run, "evaluate_epoch", steps_end, lambda: self._add("eval", mark["eval"]))
        self._timed(training.Run, "track_training_set", lambda: mark.update(tracking=self._now()),
                    lambda: self._add("tracking", mark["tracking"]))

        def fit_end() -> None:
            self._add("fit", mark["fit"])
            if self._open() is not None:
                self.epochs[-1]["closed"] = True

        self._timed(LossCorrection, "end_epoch", lambda: mark.update(fit=self._now()), fit_end)
        return self

    def __exit__(self, *exc) -> None:
        for cls, name, original in reversed(self._saved):
            setattr(cls, name, original)
        self._saved = []


def library_epochs(config: Configuration, dataset, args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Every epoch of one `train` run of `config`: its measured parts (seconds) and total."""
    run_config = RunConfig(
        dataset="cifar10", method=config.method, bootstrap_forward=config.bootstrap_forward,
        epochs=1 + args.timed_epochs, warmup_epochs=1, noise=0.5, width=args.width, lr=0.02,
        batch_size=None if args.batch_size == PAPER_BATCH else args.batch_size, device=str(device),
        amp=config.amp, channels_last=config.channels_last, compile=config.compile, checkpoint=False)
    with EpochParts(device) as parts:
        result = training.train(run_config, dataset=dataset, progress=False)
    if len(parts.epochs) != len(result.epoch_time_s):
        raise RuntimeError(f"timed {len(parts.epochs)} epochs but train ran {len(result.epoch_time_s)}")
    epochs = []
    for record, total in zip(parts.epochs, result.epoch_time_s):
        row = {part: float(record.get(part, 0.0)) for part in PARTS[:-1]}
        row["total"] = float(total)
        row["other"] = max(0.0, row["total"] - sum(row[part] for part in PARTS[:-1]))
        epochs.append(row)
    return epochs


# --------------------------------------------------------------------------------------------------
# The plain loop


class PlainLoop:
    """A minimal PyTorch training loop with nothing of latentmix but the model class: the images
    on the device as uint8, a per-image random crop (4-pixel zero padding) and flip, normalisation,
    cross-entropy, SGD with momentum and weight decay; then a per-sample loss pass over the
    training set (eval mode, augmented, as the library's tracking pass) and an evaluation pass."""

    def __init__(self, config: Configuration, dataset, args: argparse.Namespace, device: torch.device):
        torch.manual_seed(0)
        self.device, self.batch_size, self.config = device, args.batch_size, config
        self.model = PreActResNet18(num_classes=10, width=args.width).to(device)
        if config.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
        self.train_images, self.train_labels = dataset.train_inputs.to(device), dataset.train_labels.to(device)
        self.val_images, self.val_labels = dataset.val_inputs.to(device), dataset.val_labels.to(device)
        self.mean = torch.tensor(CIFAR10_MEAN, device=device).reshape(1, 3, 1, 1)
        self.std = torch.tensor(CIFAR10_STD, device=device).reshape(1, 3, 1, 1)
        self.offsets = torch.arange(32, device=device)
        self.generator = torch.Generator(device=device).manual_seed(0)
        self.autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if config.amp else nullcontext

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() / 255.0 - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last if self.config.channels_last else torch.contiguous_format)

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        padded = F.pad(images, (4, 4, 4, 4))
        rows = torch.randint(0, 9, (n, 1), device=self.device, generator=self.generator) + self.offsets
        cols = torch.randint(0, 9, (n, 1), device=self.device, generator=self.generator) + self.offsets
        flip = torch.randint(0, 2, (n, 1), device=self.device, generator=self.generator).bool()
        cols = torch.where(flip, cols.flip(1), cols)
        picked = padded[torch.arange(n, device=self.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
        return self.normalise(picked.permute(0, 3, 1, 2))  # (n, 32, 32, C) -> (n, C, 32, 32)

    def epoch(self) -> dict:
        parts: dict = {}
        started = time.perf_counter()
        self.model.train()
        order = torch.randperm(self.train_labels.shape[0], device=self.device, generator=self.generator)
        loss_sum = torch.zeros((), device=self.device)
        for index in order.split(self.batch_size):
            with self.autocast():
                logits = self.model(self.augment(self.train_images[index]))
            loss = F.cross_entropy(logits.float(), self.train_labels[index])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach()
        float(loss_sum)
        parts["steps"], mark = time.perf_counter() - started, time.perf_counter()
        self.model.eval()
        with torch.no_grad():
            losses = []
            for index in torch.arange(self.train_labels.shape[0], device=self.device).split(1000):
                with self.autocast():
                    logits = self.model(self.augment(self.train_images[index]))
                losses.append(F.cross_entropy(logits.float(), self.train_labels[index], reduction="none"))
            torch.cat(losses).cpu()
            parts["tracking"], mark = time.perf_counter() - mark, time.perf_counter()
            correct = torch.zeros((), device=self.device)
            for index in torch.arange(self.val_labels.shape[0], device=self.device).split(1000):
                with self.autocast():
                    logits = self.model(self.normalise(self.val_images[index]))
                correct += (logits.argmax(dim=1) == self.val_labels[index]).sum()
            float(correct)
        parts["eval"] = time.perf_counter() - mark
        parts.update(fit=0.0, other=0.0, total=time.perf_counter() - started)
        return parts


def plain_epochs(config: Configuration, dataset, args: argparse.Namespace, device: torch.device) -> list[dict]:
    loop = PlainLoop(config, dataset, args, device)
    return [loop.epoch() for _ in range(1 + args.timed_epochs)]


# --------------------------------------------------------------------------------------------------
# One configuration: measured, scaled, recorded


def full_epoch(parts: dict, args: argparse.Namespace) -> dict:
    """The kept epoch's parts scaled to 50,000 + 10,000 images (see the module docstring)."""
    steps_measured = math.ceil(args.train_size / args.batch_size)
    scale = {"steps": math.ceil(FULL_TRAIN / args.batch_size) / steps_measured,
             "eval": FULL_VAL / args.val_size}
    scaled = {part: parts[part] * scale.get(part, FULL_TRAIN / args.train_size) for part in PARTS}
    scaled["total"] = sum(scaled.values())
    return scaled


def measure(config: Configuration, dataset, args: argparse.Namespace, device: torch.device) -> dict:
    """One configuration's record: status "ok" with its figures, or "error" with what was raised."""
    record = {"name": config.name, "flags": config.flags, **asdict(config), "status": "ok"}
    started = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        run = plain_epochs if config.method is None else library_epochs
        epochs = run(config, dataset, args, device)
        kept = min(epochs[1:], key=lambda row: row["total"])
        record.update(epochs=epochs, measured=kept, full=full_epoch(kept, args),
                      images_per_s=args.train_size / kept["steps"] if kept["steps"] > 0 else None)
        record["peak_memory_mib"] = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                                     else None)
    except Exception as error:  # one failing flag must not lose the other figures
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        record.update(status="error", error=f"{type(error).__name__}: {message}"[:500],
                      traceback=traceback.format_exc()[-3000:])
    finally:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    record["cost_s"] = time.perf_counter() - started
    return record


def expected_cost(config: Configuration, done: list[dict]) -> float:
    """What a configuration is expected to take, from those measured so far: the slowest of its
    kind (compiled or not); a compiled one before any was measured, the slowest uncompiled one plus
    a minute of compilation (0 before the first measurement)."""
    costs = {flag: [r["cost_s"] for r in done if r["status"] == "ok" and r["compile"] == flag] for flag in (False, True)}
    if config.compile and costs[True]:
        return max(costs[True])
    return max(costs[False], default=0.0) + (60.0 if config.compile else 0.0)


def run_all(chosen: list[Configuration], dataset, args: argparse.Namespace, device: torch.device,
            started: float, on_record: Callable[[list[dict]], None] = lambda records: None) -> list[dict]:
    """Measure (or skip) each configuration in turn; `on_record` sees the records after each one
    (the files are rewritten then, so a command stopped from outside keeps what was measured)."""
    records: list[dict] = []
    for config in chosen:
        left, needed = args.budget_s - (time.perf_counter() - started), expected_cost(config, records)
        if config.compile and args.smoke:
            reason = "--smoke: torch.compile is not run (minutes of compilation)"
        elif left < needed:
            reason = f"time budget: {left:.0f} s left of --budget-s {args.budget_s:g}, expected ~{needed:.0f} s"
        else:
            reason = None
        if reason is not None:
            records.append({"name": config.name, "flags": config.flags, **asdict(config), "status": "skipped",
                            "reason": reason, "cost_s": 0.0})
        else:
            records.append(measure(config, dataset, args, device))
        entry = records[-1]
        figure = f"{entry['full']['total']:.2f} s/epoch" if entry["status"] == "ok" else entry.get(
            "error", entry.get("reason"))
        print(f"  {config.name:<28} {entry['status']:<8} {figure}  ({entry['cost_s']:.1f} s)", flush=True)
        add_ratios(records)
        on_record(records)
    return records


def add_ratios(records: list[dict]) -> None:
    """x plain: against the plain loop of the same precision and memory format; x CE: against CE
    with the same switches (bootstrap mode aside)."""
    def find(method, record):
        return next((r for r in records if r["status"] == "ok" and r["method"] == method and r["amp"] == record["amp"]
                     and r["channels_last"] == record["channels_last"] and r["compile"] == record["compile"]), None)

    for record in records:
        if record["status"] != "ok":
            continue
        plain = find(None, {**record, "compile": False})
        ce = find("ce", record)
        record["x_plain"] = record["full"]["total"] / plain["full"]["total"] if plain else None
        record["x_plain_steps"] = record["full"]["steps"] / plain["full"]["steps"] if plain else None
        record["x_ce"] = record["full"]["total"] / ce["full"]["total"] if ce and record["method"] else None


# --------------------------------------------------------------------------------------------------
# The done-means checks, the machine, the files


def done_checks(records: list[dict], device: torch.device) -> list[dict]:
    """Issue #28's done-means, from this run's records. Not on a GPU: nothing is claimed."""
    by_name = {r["name"]: r for r in records if r["status"] == "ok"}
    ce, plain = by_name.get("ce"), by_name.get("plain")
    tracked, reference = by_name.get("lr-m-dyr-h/tracked"), by_name.get("lr-m-dyr-h/reference")
    lrm = [r for r in by_name.values() if r["method"] == "lr-m-dyr-h"]
    fastest = min(lrm, key=lambda r: r["full"]["total"]) if lrm else None
    rows = [
        ("CE epoch / plain loop epoch (bf16, channels-last)", f"<= {GOALS['ce_vs_plain']}",
         ce["x_plain"] if ce and plain else None, GOALS["ce_vs_plain"]),
        ("LR-M-DYR-H --bootstrap-forward tracked / CE", f"<= {GOALS['tracked_vs_ce']}",
         tracked["x_ce"] if tracked and ce else None, GOALS["tracked_vs_ce"]),
        ("LR-M-DYR-H default mode (reference) / CE", "stated",
         reference["x_ce"] if reference and ce else None, None),
        (f"LR-M-DYR-H epoch, fastest flags ({fastest['name'] if fastest else '-'}), s", f"<= {GOALS['fastest_epoch_s']:g}"
         " on an H100-class card", fastest["full"]["total"] if fastest else None, GOALS["fastest_epoch_s"]),
    ]
    checks = []
    for check, goal, value, limit in rows:
        if device.type != "cuda":
            status, value = "not measured (no GPU: the card is cpu)", None
        elif value is None:
            status = "not measured (a configuration it needs did not run)"
        else:
            status = "stated" if limit is None else ("met" if value <= limit else "not met")
        checks.append({"check": check, "goal": goal, "value": value, "status": status})
    return checks


def machine(device: torch.device) -> dict:
    cuda = device.type == "cuda"
    return {"card": torch.cuda.get_device_name(device) if cuda else "cpu", "device": str(device),
            "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "cudnn": torch.backends.cudnn.version() if cuda else None, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")}


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    lines = ["# GPU measurement (issue #28): PreAct ResNet-18, CIFAR-10-shaped data", "",
             f"card **{m['card']}**, torch {m['torch']}, CUDA {m['cuda']}, cuDNN {m['cudnn']}, {m['date_utc']} UTC; "
             f"width {s['width']:g}, batch {s['batch_size']}, {s['train_size']} + {s['val_size']} images per measured "
             f"epoch, best of {s['timed_epochs']} timed epoch(s) after one warm-up; `{s['command']}`", "",
             report["derivation"], "",
             "| configuration | flags | steps | tracking | fit | eval | other | **epoch, s** | img/s (steps) "
             "| x plain | x plain (steps) | x CE | peak MiB |", "|" + "---|" * 13]
    for r in report["configurations"]:
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | {r['flags']} | {r['status']}: {r.get('error') or r.get('reason')} "
                         "| | | | | | | | | | |")
            continue
        f = r["full"]
        lines.append(f"| {r['name']} | {r['flags']} | " + " | ".join(_fmt(f[p]) for p in PARTS)
                     + f" | **{_fmt(f['total'])}** | {_fmt(r['images_per_s'], 0)} | {_fmt(r['x_plain'])} "
                     f"| {_fmt(r['x_plain_steps'])} | {_fmt(r['x_ce'])} | {_fmt(r['peak_memory_mib'], 0)} |")
    lines += ["", "## Done-means (issue #28)", "", "| check | goal | value | status |", "|---|---|---|---|"]
    lines += [f"| {c['check']} | {c['goal']} | {_fmt(c['value'])} | {c['status']} |" for c in report["checks"]]
    lines += ["", f"Wall time of this script: {report['wall_s']:.0f} s"
              + ("." if report["complete"] else " (stopped before the last configuration: the figures so far).")]
    return "\n".join(lines) + "\n"


DERIVATION = ("Seconds per epoch of the full release (50,000 training + 10,000 validation images): each part of "
              "the fastest timed partial epoch scaled, steps by 391 / steps measured, tracking, fit and other by "
              "50,000 / training images, evaluation by 10,000 / validation images. steps = training steps; tracking "
              "= the pass over the training set that gives each sample's loss; fit = the Beta mixture on those "
              "losses (CPU); eval = the validation pass; other = the rest of `train`'s epoch. x plain: against the "
              "plain PyTorch loop of the same precision and memory format measured in this run; x CE: against CE "
              "with the same switches.")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", help="output folder (default: $OUT when set, else runs/bench-gpu)")
    parser.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when present; cpu with --smoke)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes (width 1/32, batch 16, 40 + 16 images, one timed epoch), no compile")
    parser.add_argument("--width", type=float, help="PreAct ResNet-18 width (default 1)")
    parser.add_argument("--batch-size", type=int, help=f"default {PAPER_BATCH}, the paper's")
    parser.add_argument("--train-size", type=int, help="training images of a measured epoch, a multiple of 5 "
                        "(default 12800)")
    parser.add_argument("--val-size", type=int, help="validation images of a measured epoch (default train-size / 5)")
    parser.add_argument("--timed-epochs", type=int, help="timed epochs after the warm-up; the fastest is kept "
                        "(default 2)")
    parser.add_argument("--budget-s", type=float, default=210.0,
                        help="seconds for all configurations; what would not fit is recorded as skipped")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: 1 with --smoke, else torch's)")
    parser.add_argument("--only", help="comma-separated configuration names to run (e.g. plain,ce,lr-m-dyr-h/tracked)")
    args = parser.parse_args(argv)
    small = args.smoke
    args.width = args.width if args.width is not None else (0.03125 if small else 1.0)
    args.batch_size = args.batch_size or (16 if small else PAPER_BATCH)
    args.train_size = args.train_size or (40 if small else 12_800)
    args.val_size = args.val_size or (16 if small else args.train_size // 5)
    args.timed_epochs = args.timed_epochs or (1 if small else 2)
    args.threads = args.threads or (1 if small else None)  # a shared CPU: spinning threads cost 10x here
    return args


def fail(message: str) -> int:
    print(f"bench_gpu: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device or ("cpu" if args.smoke else "auto"))
    if device.type != "cuda" and not args.smoke:
        return fail("no GPU here (device cpu): pass --smoke for the CPU check of this script, or --device cuda")
    if args.train_size % 5 or args.train_size < 5:
        return fail(f"--train-size {args.train_size} must be a positive multiple of 5 (five release batches)")
    chosen = configurations()
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in {c.name for c in chosen}]
        if unknown:
            return fail(f"--only names {', '.join(unknown)}; choose from {', '.join(c.name for c in chosen)}")
        chosen = [c for c in chosen if c.name in wanted]
    out = Path(args.out or os.environ.get("OUT") or "runs/bench-gpu")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:  # the release format, written and read by the project's code
        write_fake_cifar10(folder, num_train_per_batch=args.train_size // 5, num_test=args.val_size)
        dataset = load_cifar10(folder)
    info = machine(device)
    print(f"bench_gpu: {info['card']}, torch {info['torch']}, {len(chosen)} configurations, "
          f"budget {args.budget_s:g} s", flush=True)
    settings = {
        "width": args.width, "batch_size": args.batch_size, "train_size": args.train_size, "val_size": args.val_size,
        "timed_epochs": args.timed_epochs, "budget_s": args.budget_s, "smoke": args.smoke,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "command": "python benchmarks/bench_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv)}

    def write(records: list[dict]) -> str:
        report = {"machine": info, "settings": settings, "derivation": DERIVATION, "configurations": records,
                  "checks": done_checks(records, device), "wall_s": time.perf_counter() - started,
                  "complete": len(records) == len(chosen)}
        (out / "bench_gpu.json").write_text(json.dumps(report, indent=2) + "\n")
        text = markdown(report)
        (out / "bench_gpu.md").write_text(text)
        return text

    print(write(run_all(chosen, dataset, args, device, started, on_record=write)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
