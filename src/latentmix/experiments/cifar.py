"""`latentmix reproduce cifar10`: the paper's Table 1 and the curves of its Figures 3-5.

Table 1 (paper section III): CE, M, M-DYR-S, M-DYR-H and LR-M-DYR-H on CIFAR-10 with 0/20/50/80%
symmetric label noise; best and last test accuracy, mean ± std over seeds, the paper's numbers
beside ours. Every run follows `PROTOCOLS["cifar10"]` (paper Appendix A, Arazo et al. 2019
RunScripts.sh): PreAct ResNet-18, SGD momentum 0.9, weight decay 1e-4, batch 128, 300 epochs,
lr 0.1 divided by 10 at epochs 100 and 250 (in [A]'s effective schedule, see `lr_at_epoch`),
alpha 32, bootstrapping from epoch 106. `--epochs E` scales milestones and warm-up in proportion
(`Protocol.scaled`).

Figures (drawn from each finished run's metrics.csv, whichever of these runs the output folder holds):

* Figure 3: validation and training accuracy at 50% noise for M-DYR-H, LR-M-DYR-H (layers 0-2)
  and DLR-M-DYR-H (layers 1-4);
* Figure 4: the same at 80% noise for M-DYR-H, LR-M-DYR-H and LR-M-DYR-H with layers 0-4;
* Figure 5: validation accuracy at 0% and 20% noise for those three.

"Training accuracy" is the per-epoch accuracy of the eval-mode loss-tracking pass against the
given (noisy) labels (`train_acc_noisy`): fitting the noise shows as this curve rising while the
validation accuracy falls. The two figure-only methods (dlr-m-dyr-h, lr-m-dyr-h-0-4) run only with
`--figures`, and only at the noise rates their figures show.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from latentmix.errors import ConfigError
from latentmix.experiments import Grid, GridMethod
from latentmix.experiments import paper
from latentmix.experiments.runner import run_grid
from latentmix.io import atomic_write_csv, atomic_write_json, atomic_write_text
from latentmix.methods import get_method
from latentmix.summary_tables import mark_paper_footnotes, markdown_table, results_csv_rows, value_table
from latentmix.config import RunConfig

__all__ = [
    "TABLE1_METHODS",
    "FIGURE_METHODS",
    "FIGURES",
    "FigureSpec",
    "cifar10_table1_grid",
    "cifar10_figure_grids",
    "write_table",
    "collect_curves",
    "write_figures",
    "reproduce_cifar10",
]

TABLE1_METHODS: tuple[str, ...] = ("ce", "m", "m-dyr-s", "m-dyr-h", "lr-m-dyr-h")
# Methods that appear only in the figures, with the noise rates at which they are drawn.
FIGURE_METHODS: dict[str, tuple[float, ...]] = {
    "dlr-m-dyr-h": (0.5,),
    "lr-m-dyr-h-0-4": (0.0, 0.2, 0.8),
}
# How the paper's figures name each method.
DISPLAY_NAMES = {
    "ce": "CE",
    "m": "M",
    "m-dyr-s": "M-DYR-S",
    "m-dyr-h": "M-DYR-H",
    "lr-m-dyr-h": "LR-M-DYR-H (0-2)",
    "dlr-m-dyr-h": "DLR-M-DYR-H (1-4)",
    "lr-m-dyr-h-0-4": "LR-M-DYR-H (0-4)",
}


@dataclass(frozen=True)
class FigureSpec:
    """One of the paper's accuracy-curve figures: which runs, which metric columns."""

    name: str
    noise_rates: tuple[float, ...]
    methods: tuple[str, ...]
    keys: tuple[str, ...]
    title: str


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("figure3", (0.5,), ("m-dyr-h", "lr-m-dyr-h", "dlr-m-dyr-h"), ("val_acc", "train_acc_noisy"),
               "Fig. 3: CIFAR-10, 50% noise: validation (solid) and training (dashed, vs given labels) accuracy"),
    FigureSpec("figure4", (0.8,), ("m-dyr-h", "lr-m-dyr-h", "lr-m-dyr-h-0-4"), ("val_acc", "train_acc_noisy"),
               "Fig. 4: CIFAR-10, 80% noise: validation (solid) and training (dashed, vs given labels) accuracy"),
    FigureSpec("figure5", (0.0, 0.2), ("m-dyr-h", "lr-m-dyr-h", "lr-m-dyr-h-0-4"), ("val_acc",),
               "Fig. 5: CIFAR-10, 0% and 20% noise: validation accuracy"),
)


# --------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------


def _base_config(epochs: Optional[int], alpha: Optional[float], data_dir: Optional[str], download: bool,
                 width: Optional[float], device: str) -> RunConfig:
    return RunConfig(dataset="cifar10", epochs=epochs, alpha=alpha, data_dir=data_dir, download=download,
                     width=1.0 if width is None else float(width), device=device, checkpoint=True)


def cifar10_table1_grid(
    seeds: int = 3, epochs: Optional[int] = None, alpha: Optional[float] = None,
    noise_rates: Sequence[float] = paper.TABLE1_NOISE, methods: Sequence[str] = TABLE1_METHODS,
    data_dir: Optional[str] = None, download: bool = False, width: Optional[float] = None, device: str = "auto",
) -> Grid:
    """Paper Table 1: `methods` x `noise_rates` x seeds 0..seeds-1 on CIFAR-10, protocol defaults."""
    for method in methods:
        get_method(method)  # a clear error for an unknown name before anything runs
    return Grid(
        name="cifar10-table1", dataset="cifar10", methods=tuple(GridMethod(m) for m in methods),
        noise_rates=tuple(noise_rates), seeds=tuple(range(seeds)),
        base=_base_config(epochs, alpha, data_dir, download, width, device),
    )


def cifar10_figure_grids(
    seeds: int = 3, epochs: Optional[int] = None, alpha: Optional[float] = None,
    noise_rates: Optional[Sequence[float]] = None, data_dir: Optional[str] = None, download: bool = False,
    width: Optional[float] = None, device: str = "auto",
) -> list[Grid]:
    """The runs only the figures need: each figure method at its figures' noise rates (restricted to
    `noise_rates` when given). The figures' M-DYR-H and LR-M-DYR-H runs are Table 1's."""
    grids = []
    for method, rates in FIGURE_METHODS.items():
        if noise_rates is not None:
            rates = tuple(r for r in rates if any(abs(r - n) < 1e-9 for n in noise_rates))
        if rates:
            grids.append(Grid(
                name=f"cifar10-figures-{method}", dataset="cifar10", methods=(GridMethod(method),),
                noise_rates=rates, seeds=tuple(range(seeds)),
                base=_base_config(epochs, alpha, data_dir, download, width, device),
            ))
    return grids


# --------------------------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------------------------


def _paper_value(which: str):
    return lambda row, noise: paper.table1_paper(row, noise, which)


def write_table(results: Sequence[dict], out: Path, noise_rates: Sequence[float], rows: Sequence[str],
                seeds: int, epochs: int, width: float) -> str:
    """table.md (best and last test accuracy, mean ± std, the paper's numbers in parentheses) and
    results.csv (one line per method and noise, with the paper's numbers). Returns the markdown."""
    from latentmix.summary_tables import seeds_text

    setting = (f"{seeds_text(seeds)}, {epochs} epochs, width {width:g}; "
               "paper Table 1 in parentheses")
    best = markdown_table(results, "best_val_acc", rows, noise_rates, paper=_paper_value("best"),
                          title=f"CIFAR-10 (Table 1), best test accuracy (%), {setting}")
    last = mark_paper_footnotes(value_table(results, "last_val_acc", rows, noise_rates, paper=_paper_value("last"),
                                            title=f"CIFAR-10 (Table 1), last-epoch test accuracy (%), {setting}"),
                                "last", noise_rates)
    text = best + "\n" + last.markdown()
    atomic_write_text(out / "table.md", text)
    csv_rows = results_csv_rows(results, ["best_val_acc", "last_val_acc"])
    for row in csv_rows:
        row["paper_best"] = paper.table1_paper(row["row"], row["noise"], "best")
        row["paper_last"] = paper.table1_paper(row["row"], row["noise"], "last")
    atomic_write_csv(out / "results.csv", csv_rows)
    return text


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def collect_curves(out: Path, finished_only: bool = True) -> dict[tuple[str, float], list[list[dict]]]:
    """Per-epoch metric rows of the preset-method runs under ``out/runs``, keyed by (method, noise).

    Runs with overridden layers, correction or alpha are left out (they are not the figures'
    methods); with `finished_only`, so are runs without result.json (an interrupted run would cut
    every curve of its label short)."""
    curves: dict[tuple[str, float], list[list[dict]]] = {}
    runs_dir = Path(out) / "runs"
    if not runs_dir.is_dir():
        return curves
    for run_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        config_path, metrics_path = run_dir / "config.json", run_dir / "metrics.csv"
        if not (config_path.exists() and metrics_path.exists()):
            continue
        if finished_only and not (run_dir / "result.json").exists():
            continue
        try:
            config = json.loads(config_path.read_text())["config"]
            with metrics_path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
        except (OSError, ValueError, KeyError):
            continue
        if config.get("dataset") != "cifar10" or config.get("layers") is not None or config.get("correction") is not None:
            continue
        if rows:
            key = (str(config["method"]), round(float(config["noise"]), 6))
            curves.setdefault(key, []).append(rows)
    return curves


def write_figures(out: Path) -> list[Path]:
    """The PNGs of Figures 3-5 for whichever of their runs exist under ``out/runs``."""
    from latentmix.plots import plot_curves

    curves = collect_curves(out)
    written = []
    for spec in FIGURES:
        series = {}
        for noise in spec.noise_rates:
            for method in spec.methods:
                runs = curves.get((method, round(noise, 6)))
                if runs:
                    label = DISPLAY_NAMES.get(method, method)
                    series[label if len(spec.noise_rates) == 1 else f"{label}, {noise:.0%}"] = runs
        if series:
            written.append(plot_curves(series, spec.keys, Path(out) / f"{spec.name}.png", title=spec.title))
    return written


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def _methods(text: Optional[str]) -> tuple[str, ...]:
    if not text:
        return TABLE1_METHODS
    methods = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    if not methods:
        raise ConfigError(f"--methods must name methods like ce,m-dyr-h, got {text!r}")
    for method in methods:
        get_method(method)
    return methods


def reproduce_cifar10(args: argparse.Namespace) -> int:
    """Run Table 1 (or the part named by --methods / --noise), write table.md, results.csv,
    runs.csv, summary.json and figure PNGs into --out (default runs/reproduce-cifar10)."""
    from latentmix.experiments.reproduce import _noise_list

    data_dir = getattr(args, "data_dir", None)
    download = bool(getattr(args, "download", False))
    if not data_dir and not download:
        raise ConfigError("reproduce cifar10 needs --data-dir pointing at cifar-10-batches-py/ (or its parent, or "
                          "cifar-10-python.tar.gz); or --download to fetch the official archive")
    if not download:  # once, before the grid: not the same error from each of its runs
        from latentmix.data.cifar import check_cifar10_found

        check_cifar10_found(data_dir)
    width = getattr(args, "width", None)  # --epochs and --width: checked by reproduce.check_run_arguments
    noise_given = bool(args.noise)
    noise_rates = _noise_list(args.noise, paper.TABLE1_NOISE)
    methods = _methods(getattr(args, "methods", None))
    device = getattr(args, "device", None) or "auto"
    common = dict(seeds=args.seeds, epochs=args.epochs, alpha=args.alpha, data_dir=data_dir, download=download,
                  width=width, device=device)
    grids = [cifar10_table1_grid(noise_rates=noise_rates, methods=methods, **common)]
    if getattr(args, "figures", False):
        grids += [g for g in cifar10_figure_grids(noise_rates=noise_rates if noise_given else None, **common)
                  if g.methods[0].method not in methods]

    out = Path(args.out or "runs/reproduce-cifar10")
    progress = not getattr(args, "quiet", False)
    started = time.perf_counter()
    results: list[dict] = []
    for grid in grids:
        results += run_grid(grid, out, vectorized=not getattr(args, "sequential", False), progress=progress)
    wall = time.perf_counter() - started

    rows = [row for grid in grids for row in grid.rows()]
    table_noise = tuple(sorted({*noise_rates, *(r for g in grids[1:] for r in g.noise_rates)}))
    epochs = max((int(r.get("epochs") or 0) for r in results), default=0)
    table = write_table(results, out, table_noise, rows, args.seeds, epochs, 1.0 if width is None else width)
    atomic_write_csv(out / "runs.csv", results)
    figures = write_figures(out)
    atomic_write_json(out / "summary.json", {
        "runs": len(results), "wall_time_s": wall, "seeds": args.seeds, "epochs": epochs,
        "methods": rows, "noise_rates": list(table_noise), "width": 1.0 if width is None else width,
        "figures": [p.name for p in figures], "run_ids": [r.get("run_id") for r in results],
    })
    print(table)
    print(f"{len(results)} runs in {wall:.1f} s; tables in {out}/table.md and results.csv, per-run results in "
          f"{out}/runs.csv" + (f", figures {', '.join(p.name for p in figures)}" if figures else ""))
    return 0
