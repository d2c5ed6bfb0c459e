"""`latentmix reproduce fashion-mnist` and `latentmix reproduce multimodal`: CPU-sized tables on real data.

fashion-mnist: a CPU-sized Table 1
----------------------------------
The paper's Table 1 methods (CE, M, M-DYR-S, M-DYR-H, LR-M-DYR-H with layers 0-2) plus a deeper,
input-free range DLR-M-DYR-H (layers 1-3: the SmallCNN's block outputs) on Fashion-MNIST with
0/20/50/80% symmetric noise; best and last test accuracy and the final epoch's noise-detection AUC,
mean ± std over seeds. Sized so that the whole table (6 methods x 4 noise rates x 3 seeds = 72 runs)
runs in under an hour on a 2-core CPU (docs/fashion-mnist.md has the measured timings):

* training set: a fixed random subset of ``FASHION_TRAIN_SIZE`` = 10,000 of the 60,000 training
  images (drawn once with ``SUBSET_SEED``), written as IDX files to ``OUT/data/fashion-mnist-10k``
  so that every run (and any single cell, with ``latentmix train --dataset fashion-mnist --data-dir
  OUT/data/fashion-mnist-10k``) reads exactly the same images; test set: the full 10,000 t10k images;
* model: `SmallCNN` at width ``FASHION_WIDTH`` = 0.25 (8 and 16 conv channels, then 128 units; mix
  layers 0 = input, 1-3 = block1..block3), or ``--model mlp`` (two 256-unit layers, mix layers 0-2);
* schedule: ``PROTOCOLS["fashion-mnist"]`` in `latentmix.training` (the one place its numbers live).

The runs go through the project's grid runner (`latentmix.experiments.runner`), one folder per run
under ``OUT/runs``; an interrupted table resumes where it stopped.

multimodal: latent mixup when the input cannot be mixed
-------------------------------------------------------
`latentmix.data.multimodal`: every Fashion-MNIST image paired with a 49-token sequence derived from
it (7x7 cell means quantised to 16 levels). A `FusionNet` (image encoder + token encoder, two fusion
layers) is trained with CE, input-free latent mixup (LR-M over layers 1-3: the encoder outputs, mixed
together, and the two fusion layers) and the same with hard bootstrapping (LR-M-DYR-H, layers 1-3).
Layer 0 is refused: the token ids are integers. The data set (``--dataset fashion-mnist-multimodal``)
declares its image encoder (width 8, flattened map) in its modality specs, so its runs are ordinary
`RunConfig`s through the same grid runner as every table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from latentmix.errors import ConfigError
from latentmix.experiments import Grid, GridMethod, paper
from latentmix.naming import row_label
from latentmix.io import atomic_write_csv, atomic_write_json, atomic_write_text
from latentmix.methods import get_method
from latentmix.summary_tables import column_label, markdown_table, noise_column, results_csv_rows, seeds_text
from latentmix.data import load_dataset
from latentmix.data.multimodal import DEFAULT_TRAIN_SIZE as MULTIMODAL_TRAIN_SIZE, IMAGE_ENCODER_WIDTH, NAME
from latentmix.experiments.runner import run_grid
from latentmix.config import RunConfig

__all__ = [
    "FASHION_TRAIN_SIZE", "FASHION_WIDTH", "SUBSET_SEED", "FASHION_METHODS", "MULTIMODAL_METHODS", "FashionTable",
    "TABLE1",
    "MULTIMODAL_TRAIN_SIZE", "prepare_fashion_subset", "fashion_grid",
    "multimodal_grid", "write_tables", "write_curves", "table_grid", "display_row",
    "reproduce_fashion_mnist", "reproduce_multimodal",
]

FASHION_TRAIN_SIZE = 5_000
FASHION_WIDTH = 0.25
SUBSET_SEED = 0
# 10% of the training subset held out with its noisy labels: the checkpoint a user would select
# (the "selected" column) is picked by accuracy on it, never by the test set
VAL_SPLIT = 0.1

NOISE_RATES = paper.TABLE1_NOISE  # 0, 20, 50, 80 % symmetric
# class-dependent noise between confusable classes (`noise.FASHION_MNIST_ASYMMETRIC_MAP`)
ASYMMETRIC_RATES = (0.2, 0.4)

# Table rows: key -> (preset, layers override or None). "dlr-m-dyr-h" keeps the paper's idea (a
# deeper, input-free range) sized to the model: layers 1..(number of mix points).
FASHION_METHODS: tuple[str, ...] = ("ce", "m", "m-dyr-s", "m-dyr-h", "lr-m-dyr-h", "dlr-m-dyr-h")
MULTIMODAL_METHODS: tuple[str, ...] = ("ce", "lr-m", "lr-m-dyr-h")


@dataclass(frozen=True)
class FashionTable:
    """What one `reproduce fashion-mnist` table runs by default: its rows, its noise columns, the
    name of its sweep (grid) and of its default output folder, and `extra`, a writer of further
    tables from the finished runs ((results, out folder, rows, columns) -> markdown appended to
    table.md; the peer table's paired differences, `latentmix.experiments.peers`). --methods,
    --noise and --asym-noise override the defaults as for every table."""

    name: str
    methods: tuple[str, ...]
    noise_rates: tuple[float, ...]
    asymmetric_rates: tuple[float, ...]
    extra: Optional[Callable[[Sequence[dict], Path, Sequence[str], Sequence], str]] = None


TABLE1 = FashionTable("fashion-mnist-table1", FASHION_METHODS, NOISE_RATES, ASYMMETRIC_RATES)
MULTIMODAL_LAYERS = "1-3"

DISPLAY = {
    "ce": "CE", "m": "M", "m-dyr-s": "M-DYR-S", "m-dyr-h": "M-DYR-H", "lr-m-dyr-h": "LR-M-DYR-H (0-2)",
    "lr-m": "LR-M", "lr-m-dyr-s": "LR-M-DYR-S (0-2)",
    **{f"lr-m-{peer}": f"LR-M-{peer.upper()} (0-2)" for peer in ("gce", "sce", "elr")},
    "coteaching": "Co-teaching", "lr-m-coteaching": "LR-M-Co-teaching (0-2)", "dividemix": "DivideMix",
    "lr-dividemix": "LR-DivideMix (0-2)",
}


# --------------------------------------------------------------------------------------------
# Method lists
# --------------------------------------------------------------------------------------------

_METHOD_RE = re.compile(r"^([a-z0-9-]+)(?:\(([0-9,\- ]+)\))?$")


def _grid_methods(text: Optional[str], default: Sequence[str], deep_layers: str,
                  default_layers: Optional[str] = None) -> tuple[GridMethod, ...]:
    """Parse --methods ("ce,m-dyr-h,lr-m(1-2)") into grid rows. "dlr-m-dyr-h" gets `deep_layers`;
    with `default_layers`, every layer-range preset (lr-m, lr-m-dyr-h, ...) without explicit layers
    gets them (multimodal); input mixup (m, m-dyr-*) keeps layer 0 and is refused by the trainer."""
    names = default if not text else tuple(p.strip().lower() for p in text.split(",") if p.strip())
    if not names:
        raise ConfigError(f"--methods must name methods like ce,m-dyr-h, got {text!r}")
    rows = []
    for name in names:
        match = _METHOD_RE.match(name)
        if not match:
            raise ConfigError(f"cannot read method {name!r}: write a preset name, optionally with layers, "
                              "e.g. lr-m-dyr-h or lr-m(1-3)")
        preset, layers = match.group(1), match.group(2)
        method = get_method(preset, layers=layers)  # a clear error for an unknown name, now
        if layers is None and preset == "dlr-m-dyr-h":
            layers = deep_layers
        elif layers is None and default_layers is not None and len(method.mix_layers) > 1:
            layers = default_layers  # a range preset (lr-*) moves to the given range; m / m-dyr-* keep layer 0
        rows.append(GridMethod(preset, layers=layers))
    return tuple(rows)


def display_row(row: str) -> str:
    """A table row's name as the tables print it: "LR-M-DYR-H (0-2)", "DLR-M-DYR-H (1-2)", "GCE"."""
    if row in DISPLAY:
        return DISPLAY[row]
    match = re.match(r"^([a-z0-9-]+)\((.+)\)$", row)
    if match:
        return f"{match.group(1).upper()} ({match.group(2)})"
    return row.upper()


# --------------------------------------------------------------------------------------------
# fashion-mnist
# --------------------------------------------------------------------------------------------


def prepare_fashion_subset(source: Optional[str], out: Path, train_size: int = FASHION_TRAIN_SIZE,
                           seed: int = SUBSET_SEED) -> tuple[Path, int]:
    """Write the table's training subset (and the full test set) as IDX files under ``out/data``.

    Returns (folder, number of training images). A source with fewer training images than
    `train_size` is used whole. An existing folder is reused when its ``subset.json`` matches."""
    from latentmix.data.idx import DEFAULT_ROOTS, load_mnist_like, write_idx

    source_path = Path(source or DEFAULT_ROOTS["fashion-mnist"]).resolve()
    full = load_mnist_like(source_path, name="fashion-mnist")
    n = min(int(train_size), full.num_train)
    folder = (Path(out) / "data" / f"fashion-mnist-{n // 1000}k" if n >= 1000 else Path(out) / "data" / f"fashion-mnist-{n}").resolve()
    stamp = {"source": str(source_path), "train_size": n, "seed": int(seed), "val_size": full.num_val}
    marker = folder / "subset.json"
    if marker.exists():
        try:
            if json.loads(marker.read_text()) == stamp:
                return folder, n
        except (OSError, json.JSONDecodeError):
            pass
    if n < full.num_train:
        index = np.sort(np.random.default_rng(seed).permutation(full.num_train)[:n])
    else:
        index = np.arange(n)
    images = full.train_inputs.numpy()[index]
    labels = full.train_labels.numpy()[index].astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte", images[:, 0] if images.shape[1] == 1 else images)
    write_idx(folder / "train-labels-idx1-ubyte", labels)
    val = full.val_inputs.numpy()
    write_idx(folder / "t10k-images-idx3-ubyte", val[:, 0] if val.shape[1] == 1 else val)
    write_idx(folder / "t10k-labels-idx1-ubyte", full.val_labels.numpy().astype(np.uint8))
    atomic_write_json(marker, stamp)
    return folder, n


def _mix_point_count(model: Optional[str]) -> int:
    return 2 if (model or "small-cnn") == "mlp" else 3  # MLP(hidden=(256, 256)) / SmallCNN blocks 1-3


def fashion_grid(data_dir: str, seeds: int = 3, epochs: Optional[int] = None, alpha: Optional[float] = None,
                 noise_rates: Sequence[float] = NOISE_RATES, methods: Optional[str] = None,
                 model: Optional[str] = None, width: float = FASHION_WIDTH, device: str = "auto",
                 asymmetric_rates: Sequence[float] = ASYMMETRIC_RATES, table: FashionTable = TABLE1) -> Grid:
    """The CPU-sized Table 1 grid (or `table`'s methods) over the IDX folder `data_dir` (see
    `prepare_fashion_subset`); the noise columns are the arguments'."""
    if model not in (None, "small-cnn", "mlp"):
        raise ConfigError(f"reproduce fashion-mnist --model must be small-cnn or mlp, got {model!r}")
    rows = _grid_methods(methods, table.methods, deep_layers=f"1-{_mix_point_count(model)}")
    base = RunConfig(dataset="fashion-mnist", data_dir=str(data_dir), epochs=epochs, alpha=alpha,
                     model=None if model in (None, "small-cnn") else model, width=float(width), device=device,
                     # channels-last: a ~35% faster CNN training step on the CPU (docs/fashion-mnist.md)
                     channels_last=model in (None, "small-cnn"), checkpoint=True, val_split=VAL_SPLIT)
    name = table.name + ("" if base.model is None else f"-{base.model}")
    return Grid(name=name, dataset="fashion-mnist", methods=rows, noise_rates=tuple(noise_rates),
                seeds=tuple(range(seeds)), base=base, asymmetric_rates=tuple(asymmetric_rates))


def _write_outputs(results: list[dict], out: Path, rows: list[str], columns: Sequence, title: str,
                   setting: str, facts: dict, extra: Optional[Callable] = None, cost: str = "") -> list[Path]:
    """table.md + results.csv, the curves, runs.csv and summary.json (`facts` plus the counts); prints
    the tables and returns the figure paths. `columns`: noise rates (symmetric) and
    ("asymmetric", rate) keys, as `report.noise_column`. `extra` (a `FashionTable.extra`) writes
    further tables, appended to table.md; `cost`, a line on what the table cost, ends it."""
    text = write_tables(results, out, columns, rows, title, setting)
    if extra is not None or cost:
        text = "\n".join(part for part in (text, extra(results, out, rows, columns) if extra else "", cost) if part)
        atomic_write_text(out / "table.md", text)
    figures = write_curves(results, out, rows, columns, title)
    atomic_write_csv(out / "runs.csv", results)
    run_times = [r["wall_time_s"] for r in results if r.get("wall_time_s")]
    atomic_write_json(out / "summary.json", {
        "runs": len(results), **facts, "methods": rows, "noise_rates": [c for c in columns if not isinstance(c, tuple)],
        "asymmetric_rates": [c[1] for c in columns if isinstance(c, tuple)],
        "figures": [p.name for p in figures], "mean_run_time_s": float(np.mean(run_times)) if run_times else None,
    })
    print(text)
    return figures


def _asymmetric_rates(args: argparse.Namespace, default: Sequence[float] = ASYMMETRIC_RATES) -> tuple[float, ...]:
    """--asym-noise rates; by default the table's, unless --noise picked symmetric rates alone."""
    from latentmix.experiments.reproduce import _noise_list

    text = getattr(args, "asym_noise", None)
    if text is None:
        return () if args.noise else tuple(default)
    if text.strip().lower() in ("", "none"):
        return ()
    return _noise_list(text, tuple(default))


def _check_common(args: argparse.Namespace) -> tuple[Optional[float], str]:
    width = getattr(args, "width", None)  # --epochs and --width: checked by reproduce.check_run_arguments
    return width, getattr(args, "device", None) or "auto"


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its finished, waited-for children: the
    sweep's helper worker processes (`latentmix.sweep.launch`), which end before `run_grid` returns.
    On a machine shared with other work this is the table's cost; its wall time is inflated."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


COST_FIELDS = ("when", "runs", "runs_trained", "wall_time_s", "cpu_time_s", "workers", "load_average")


def record_cost(out: Path, entry: dict) -> dict:
    """Append one command's cost to OUT/cost.csv (a table resumed over several sessions has one line
    per session) and return the totals over its lines: sessions, wall_time_s, cpu_time_s."""
    path = out / "cost.csv"
    lines = []
    if path.exists():
        with path.open(newline="") as handle:
            lines = list(csv.DictReader(handle))
    lines.append({key: entry.get(key) for key in COST_FIELDS})
    atomic_write_csv(path, lines)
    return {"sessions": len(lines), "wall_time_s": sum(float(line["wall_time_s"]) for line in lines),
            "cpu_time_s": sum(float(line["cpu_time_s"]) for line in lines)}


def _trained_since(results: Sequence[dict], since: float) -> int:
    """How many of the finished runs wrote their result.json after `since` (a time.time()): trained now."""
    paths = [Path(r["run_dir"]) / "result.json" for r in results if r.get("run_dir")]
    return sum(1 for path in paths if path.exists() and path.stat().st_mtime >= since)


def _cost_line(results: Sequence[dict], totals: dict) -> str:
    run_times = [float(r["wall_time_s"]) for r in results if r.get("wall_time_s")]
    runs = f"{len(results)} runs" + (f" (run wall time {min(run_times):.0f}-{max(run_times):.0f} s, mean "
                                     f"{np.mean(run_times):.0f} s)" if run_times else "")
    return (f"Cost: {runs}; the commands that trained them took {totals['wall_time_s']:,.0f} s of wall time and "
            f"{totals['cpu_time_s']:,.0f} s of CPU time in {totals['sessions']} session(s) (cost.csv).\n")


def table_grid(args: argparse.Namespace, table: FashionTable, data_dir: str) -> Grid:
    """The grid a `reproduce fashion-mnist` command line runs: `table`'s rows and noise columns,
    unless --methods, --noise or --asym-noise name others, over the IDX folder `data_dir`."""
    from latentmix.experiments.reproduce import _noise_list

    width, device = _check_common(args)
    return fashion_grid(data_dir, seeds=args.seeds, epochs=args.epochs, alpha=args.alpha,
                        noise_rates=_noise_list(args.noise, table.noise_rates),
                        methods=getattr(args, "methods", None), model=getattr(args, "model", None),
                        width=FASHION_WIDTH if width is None else width, device=device,
                        asymmetric_rates=_asymmetric_rates(args, table.asymmetric_rates), table=table)


def reproduce_fashion_mnist(args: argparse.Namespace, table: FashionTable = TABLE1) -> int:
    """Run the CPU-sized Table 1 (or `table`, or the part named by --methods / --noise); write
    table.md, results.csv, runs.csv, summary.json, cost.csv and curves_noise<P>.png into --out."""
    from latentmix.experiments.reproduce import default_out

    width = getattr(args, "width", None)
    width = FASHION_WIDTH if width is None else width
    model = getattr(args, "model", None)
    out = Path(default_out(args))
    progress = not getattr(args, "quiet", False)
    workers = getattr(args, "workers", 1) or 1
    table_grid(args, table, ".")  # the cheap arguments, checked before the data are touched
    folder, n_train = prepare_fashion_subset(getattr(args, "data_dir", None), out)
    grid = table_grid(args, table, str(folder))
    started, started_cpu, started_at = time.perf_counter(), cpu_seconds(), time.time()
    results = run_grid(grid, out, vectorized=not getattr(args, "sequential", False), progress=progress,
                       workers=workers)
    wall, cpu = time.perf_counter() - started, cpu_seconds() - started_cpu
    totals = record_cost(out, {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": len(results),
                               "runs_trained": _trained_since(results, started_at), "wall_time_s": round(wall, 1),
                               "cpu_time_s": round(cpu, 1), "workers": workers,
                               "load_average": round(os.getloadavg()[0], 2)})
    rows = grid.rows()
    epochs = max((int(r.get("epochs") or 0) for r in results), default=0)
    model_text = ("MLP 784-256-256-10" if model == "mlp"
                  else f"SmallCNN width {width:g} ({max(4, round(32 * width))}/{2 * max(4, round(32 * width))} channels)")
    setting = (f"{n_train} training images ({VAL_SPLIT:.0%} held out with their noisy labels to select by), "
               f"10k-image test set, {model_text}, {epochs} epochs, {seeds_text(args.seeds)}")
    figures = _write_outputs(results, out, rows, _columns(grid), "Fashion-MNIST", setting, {
        "wall_time_s": wall, "cpu_time_s": cpu, "total_wall_time_s": totals["wall_time_s"],
        "total_cpu_time_s": totals["cpu_time_s"], "sessions": totals["sessions"], "seeds": args.seeds,
        "epochs": epochs, "train_size": n_train, "data_dir": str(folder), "model": model or "small-cnn",
        "width": width, "workers": workers, "table": table.name}, extra=table.extra, cost=_cost_line(results, totals))
    print(f"{len(results)} runs in {wall:.1f} s; tables in {out}/table.md and results.csv, per-run results in "
          f"{out}/runs.csv, curves in {', '.join(p.name for p in figures) or '(none)'}")
    return 0


# --------------------------------------------------------------------------------------------
# Tables and curves (both targets)
# --------------------------------------------------------------------------------------------


def _columns(grid: Grid) -> list:
    """The table's columns: symmetric rates, then ("asymmetric", rate) keys (`report.noise_column`)."""
    return [noise_column(rate, kind) for kind, rate in grid.noise_settings()]


# What a table shows, in order: (summary key, what it is, scale, digits, only where labels are noisy)
TABLE_VALUES = (
    ("best_val_acc", "best test accuracy (%), the maximum over epochs (the paper's, an oracle)", 100.0, 1, False),
    ("last_val_acc", "last-epoch test accuracy (%)", 100.0, 1, False),
    ("selected_val_acc", "selected test accuracy (%): the checkpoint with the best accuracy on the held-out noisy "
                         "labels, what a user without clean labels can pick", 100.0, 1, False),
    ("detection_auc", "noise-detection AUC x100 of the run's label-issue ranking (P(noisy) of the epoch chosen "
                      "without clean labels, ties broken by the loss) against the true noise mask", 100.0, 1, True),
    ("estimated_noise_rate", "estimated share of wrong labels (%), from the fitted noise model", 100.0, 1, False),
    ("actual_noise_rate", "actual share of wrong labels (%) (symmetric noise may draw the true label back)",
     100.0, 1, False),
)


def write_tables(results: Sequence[dict], out: Path, columns: Sequence, rows: Sequence[str],
                 dataset: str, setting: str) -> str:
    """table.md: best, last and selected test accuracy (%), the label-issue detection AUC (x100)
    and the estimated and actual share of wrong labels (%), mean ± std over seeds; results.csv: one
    line per (row, noise) with mean/std/n of each. Returns the markdown."""
    shown = [{**r, "row": display_row(r["row"])} for r in results]
    display_rows = [display_row(r) for r in rows]
    columns = [c if isinstance(c, tuple) else noise_column(c) for c in columns]
    noisy_columns = [c for c in columns if (c[1] if isinstance(c, tuple) else c) > 0]
    parts = []
    for key, what, scale, digits, needs_noise in TABLE_VALUES:
        shown_columns = noisy_columns if needs_noise else columns
        if not shown_columns or not any(r.get(key) is not None for r in results):
            continue
        parts.append(markdown_table(shown, key, display_rows, shown_columns, scale=scale, digits=digits,
                                    bold_best=key not in ("estimated_noise_rate", "actual_noise_rate"),
                                    title=f"{dataset}, {what}; {setting}"))
    text = "\n".join(parts)
    atomic_write_text(out / "table.md", text)
    atomic_write_csv(out / "results.csv", results_csv_rows(results, [key for key, *_ in TABLE_VALUES]))
    return text


def _read_metrics(result: dict, out: Path) -> list[dict]:
    run_dir = Path(result.get("run_dir") or out / "runs" / str(result.get("run_id")))
    path = run_dir / "metrics.csv"
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_curves(results: Sequence[dict], out: Path, rows: Sequence[str], columns: Sequence,
                 dataset: str) -> list[Path]:
    """curves_noise<P>.png (symmetric) and curves_asym_noise<P>.png per noise column: test accuracy
    (solid) and training accuracy against the given labels (dashed) per epoch, mean ± std over
    seeds, one colour per method."""
    from latentmix.plots import plot_curves

    written = []
    for column in columns:
        column = column if isinstance(column, tuple) else noise_column(column)
        series: dict[str, list[list[dict]]] = {}
        for row in rows:
            runs = [_read_metrics(r, out) for r in results
                    if r["row"] == row and noise_column(r["noise"], r.get("noise_kind")) == column]
            runs = [run for run in runs if run]
            if runs:
                series[display_row(row)] = runs
        if series:
            rate = column[1] if isinstance(column, tuple) else column
            prefix = "curves_asym_noise" if isinstance(column, tuple) else "curves_noise"
            path = out / f"{prefix}{round(rate * 100):d}.png"
            written.append(plot_curves(series, ("val_acc", "train_acc_noisy"), path,
                                       title=f"{dataset}, {column_label(column)} noise: test (solid) and training "
                                             "accuracy vs given labels (dashed)"))
    return written


# --------------------------------------------------------------------------------------------
# multimodal
# --------------------------------------------------------------------------------------------


def multimodal_grid(seeds: int = 3, epochs: Optional[int] = None, alpha: Optional[float] = None,
                    noise_rates: Sequence[float] = NOISE_RATES, methods: Optional[str] = None,
                    device: str = "auto", data_dir: Optional[str] = None,
                    asymmetric_rates: Sequence[float] = ASYMMETRIC_RATES) -> Grid:
    """CE, LR-M (1-3) and LR-M-DYR-H (1-3) on the image+tokens set (mixing presets get layers 1-3
    unless --methods names others; a layer-0 range is refused when the run starts)."""
    rows = _grid_methods(methods, MULTIMODAL_METHODS, deep_layers=MULTIMODAL_LAYERS, default_layers=MULTIMODAL_LAYERS)
    base = RunConfig(dataset=NAME, data_dir=data_dir, epochs=epochs, alpha=alpha, device=device, channels_last=True,
                     checkpoint=True, val_split=VAL_SPLIT)
    return Grid(name="fashion-mnist-multimodal", dataset=NAME, methods=rows, noise_rates=tuple(noise_rates),
                seeds=tuple(range(seeds)), base=base, asymmetric_rates=tuple(asymmetric_rates))


def reproduce_multimodal(args: argparse.Namespace) -> int:
    """CE vs input-free latent mixup (layers 1-3) vs latent mixup + hard bootstrapping on the
    image+tokens Fashion-MNIST benchmark; writes table.md, results.csv, runs.csv, summary.json and
    curves into --out (default runs/reproduce-multimodal)."""
    from latentmix.experiments.reproduce import _noise_list

    width, device = _check_common(args)
    if width is not None:
        raise ConfigError("reproduce multimodal has a fixed fusion model (docs/fashion-mnist.md); --width is not offered")
    if getattr(args, "model", None) not in (None, "fusion"):
        raise ConfigError(f"reproduce multimodal trains the fusion model only; --model {args.model!r} is not offered")
    noise_rates = _noise_list(args.noise, NOISE_RATES)
    from latentmix.data.idx import DEFAULT_ROOTS

    source = getattr(args, "data_dir", None) or DEFAULT_ROOTS["fashion-mnist"]
    grid = multimodal_grid(seeds=args.seeds, epochs=args.epochs, alpha=args.alpha, noise_rates=noise_rates,
                           methods=getattr(args, "methods", None), device=device, data_dir=str(source),
                           asymmetric_rates=_asymmetric_rates(args))
    for row in grid.methods:
        if 0 in get_method(row.method, layers=row.layers).mix_layers:
            raise ConfigError(f"method {row_label(row.method, row.layers)} mixes layer 0 (the input), but the inputs include integer token ids, "
                              "which cannot be interpolated; choose hidden layers (e.g. lr-m(1-3))")
    out = Path(args.out or "runs/reproduce-multimodal")
    progress = not getattr(args, "quiet", False)
    dataset = load_dataset(NAME, data_dir=str(source))
    started = time.perf_counter()
    results = run_grid(grid, out, vectorized=False, progress=progress, workers=getattr(args, "workers", 1) or 1)
    wall = time.perf_counter() - started
    rows = grid.rows()
    epochs = max((int(r.get("epochs") or 0) for r in results), default=0)
    setting = (f"{dataset.num_train} training images + 49 tokens each ({VAL_SPLIT:.0%} held out to select by), {dataset.num_val}-sample test set, FusionNet "
               f"(image encoder width {IMAGE_ENCODER_WIDTH}), {epochs} epochs, {seeds_text(args.seeds)}")
    figures = _write_outputs(results, out, rows, _columns(grid), "Fashion-MNIST image+tokens", setting, {
        "wall_time_s": wall, "seeds": args.seeds, "epochs": epochs, "train_size": dataset.num_train,
        "image_width": IMAGE_ENCODER_WIDTH, "token_grid": dataset.info["token_grid"],
        "token_levels": dataset.info["token_levels"]})
    print(f"{len(results)} runs in {wall:.1f} s; tables in {out}/table.md and results.csv, per-run results in "
          f"{out}/runs.csv, curves in {', '.join(p.name for p in figures) or '(none)'}")
    return 0
