"""`latentmix reproduce TABLE`: run one of the paper's grids and write its table beside the paper's."""

from __future__ import annotations

import argparse
import datetime
import time
from dataclasses import replace
from pathlib import Path

from latentmix.config import add_override_argument
from latentmix.config_checks import check_output_folder
from latentmix.errors import ConfigError
from latentmix.experiments import paper
from latentmix.io import atomic_write_csv, atomic_write_json, atomic_write_text
from latentmix.summary_tables import markdown_table, results_csv_rows, seeds_text

# Each target lives in its own module with a `run(args) -> int`; this file only dispatches.
TARGETS = {
    "spiral": "latentmix.experiments.reproduce:reproduce_spiral",
    "cifar10": "latentmix.experiments.cifar:reproduce_cifar10",
    "fashion-mnist": "latentmix.experiments.fashion:reproduce_fashion_mnist",
    "multimodal": "latentmix.experiments.fashion:reproduce_multimodal",
}
# `--peers`: the target's peer table (issue 27), a preset of the same target
PEER_TARGETS = {
    "fashion-mnist": "latentmix.experiments.peers:reproduce_fashion_peers",
}


def add_reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help=f"which table: {', '.join(TARGETS)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per cell (default 3)")
    # The run settings a table lets you override: flag, type and rule from `RunConfig`'s declaration
    # (latentmix.config), checked as `latentmix train` checks them (`check_run_arguments`).
    add_override_argument(parser, "epochs", "shorten the protocol (milestones scale in proportion)")
    add_override_argument(parser, "alpha", "mixup alpha (default: the data set's protocol)")
    parser.add_argument("--noise", help="comma-separated noise rates to run (default: the table's)")
    parser.add_argument("--asym-noise", help="fashion-mnist, multimodal: comma-separated rates of class-dependent "
                                             "noise (default 0.2,0.4 unless --noise is given; 'none' for none)")
    parser.add_argument("--workers", type=int, default=1,
                        help="fashion-mnist, multimodal: parallel run processes, one torch thread each (default 1)")
    parser.add_argument("--out", help="output folder (default runs/reproduce-TARGET)")
    parser.add_argument("--sequential", action="store_true", help="train runs one at a time (plain path)")
    parser.add_argument("--methods", help="comma-separated methods to run (default: the table's)")
    parser.add_argument("--peers", action="store_true",
                        help="fashion-mnist: the peer table (CE, the paper's methods and the peers GCE, SCE, ELR, "
                             "...; 20/50/80%% symmetric and 20/40%% class-dependent noise; docs/peers.md)")
    add_override_argument(parser, "data_dir", "data folder (cifar10: the release; fashion-mnist: IDX files)")
    add_override_argument(parser, "width", "network width multiplier (CNN targets; default: the table's)")
    add_override_argument(parser, "model", "model of the table's runs where a target offers a choice "
                                           "(fashion-mnist: small-cnn, the default, or mlp)")
    add_override_argument(parser, "device", "auto, cpu, cuda, cuda:N (default auto)")
    parser.add_argument("--figures", action="store_true",
                        help="cifar10: also run the methods of Figures 3-5 (dlr-m-dyr-h, lr-m-dyr-h-0-4)")
    add_override_argument(parser, "download", "cifar10: fetch the official archive (opt-in)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: 1 for sequential spiral runs)")
    parser.add_argument("--quiet", action="store_true")


def _noise_list(text: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
    if not text:
        return default
    try:
        rates = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--noise must be comma-separated rates like 0,0.2,0.5, got {text!r}") from None
    for rate in rates:
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"--noise rates must be in [0, 1], got {rate}")
    return rates


def main(args: argparse.Namespace) -> int:
    import importlib

    if args.target not in TARGETS:
        raise ConfigError(f"unknown reproduce target {args.target!r}: choose one of {', '.join(TARGETS)}")
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1 (parallel run processes; 1 runs them in this process), got "
                          f"{args.workers}")
    peers = getattr(args, "peers", False)
    if peers and args.target not in PEER_TARGETS:
        raise ConfigError(f"--peers is offered for {', '.join(PEER_TARGETS)} only, not {args.target!r}; "
                          "leave --peers out or choose reproduce fashion-mnist --peers")
    check_run_arguments(args)
    out = check_output_folder(default_out(args), "--out")
    from latentmix.runtime import set_threads

    # One thread suits one tiny run at a time; a vectorized population is real arithmetic.
    set_threads(args.threads, args.target if args.sequential else "population")
    module_name, function_name = (PEER_TARGETS if peers else TARGETS)[args.target].split(":")
    started = datetime.datetime.now()
    code = getattr(importlib.import_module(module_name), function_name)(args)
    failed = failed_since(out, started)
    if failed:
        from latentmix.sweep import print_failed_runs

        print_failed_runs(failed)
        return 1
    return code


def default_out(args: argparse.Namespace) -> str:
    """--out, or the target's default folder: runs/reproduce-TARGET, with -peers for the peer table
    and -mlp for fashion-mnist's MLP (runs/reproduce-fashion-mnist-peers-mlp)."""
    if args.out:
        return args.out
    suffix = "-peers" if getattr(args, "peers", False) else ""
    if args.target == "fashion-mnist" and getattr(args, "model", None) == "mlp":
        suffix += "-mlp"
    return f"runs/reproduce-{args.target}{suffix}"


def check_run_arguments(args: argparse.Namespace) -> None:
    """The run settings of the command line (--epochs, --alpha, --width, --device, --model), checked
    as `latentmix train` checks them, before any data is read or any run starts."""
    from latentmix.config import RunConfig

    width = getattr(args, "width", None)
    # the target's data set: --data-dir is read by the file-based ones only (spiral is generated)
    dataset = {"multimodal": "fashion-mnist-multimodal"}.get(args.target, args.target)
    RunConfig(dataset=dataset, epochs=args.epochs, alpha=args.alpha, width=1.0 if width is None else width,
              device=getattr(args, "device", None) or "auto", model=getattr(args, "model", None),
              data_dir=getattr(args, "data_dir", None)).validate("cli")


def failed_since(out: Path, started: datetime.datetime) -> list[tuple[str, str]]:
    """(run id, error) of the runs of `out`'s sweep store that this command tried and that failed."""
    database = out / "sweep.db"
    if not database.exists():
        return []
    from latentmix.sweep import SweepStore, default_storage_url, failed_runs

    store = SweepStore(default_storage_url(out))
    return [item for name in store.study_names() for item in failed_runs(store.load(name), since=started)]


def reproduce_spiral(args: argparse.Namespace) -> int:
    from latentmix.experiments import spiral_table2_grid
    from latentmix.experiments.runner import run_grid

    noise_rates = _noise_list(args.noise, paper.TABLE2_NOISE)
    grid = spiral_table2_grid(seeds=args.seeds, epochs=args.epochs, alpha=args.alpha, noise_rates=noise_rates)
    grid = replace(grid, methods=_spiral_methods(getattr(args, "methods", None), grid.methods))
    out = Path(args.out or "runs/reproduce-spiral")
    started = time.perf_counter()
    results = run_grid(grid, out, vectorized=not args.sequential, progress=not args.quiet)
    wall = time.perf_counter() - started
    rows = grid.rows()

    def paper_value(row: str, noise: float):
        key = "ce" if row == "ce" else row[row.index("(") + 1: -1]
        return paper.table2_paper(key, noise)

    epochs = results[0]["epochs"] if results else 0
    table = markdown_table(
        results, "best_val_acc", rows, noise_rates, paper=paper_value,
        title=f"Two spirals, best validation accuracy (%), {seeds_text(args.seeds)}, {epochs} epochs; "
              "(paper Table 2 in parentheses)",
    )
    last = markdown_table(results, "last_val_acc", rows, noise_rates, title="Last-epoch validation accuracy (%)")
    atomic_write_text(out / "table.md", table + "\n" + last)
    atomic_write_csv(out / "results.csv", results_csv_rows(results, ["best_val_acc", "last_val_acc"]))
    atomic_write_csv(out / "runs.csv", results)
    atomic_write_json(out / "summary.json", {"runs": len(results), "wall_time_s": wall, "seeds": args.seeds,
                                             "epochs": epochs, "path": "sequential" if args.sequential else "vectorized"})
    print(table)
    print(f"{len(results)} runs in {wall:.1f} s; tables in {out}/table.md, per-run results in {out}/runs.csv")
    return 0


def _spiral_methods(text: str | None, methods: tuple) -> tuple:
    """The rows of Table 2 that --methods names: a method (ce, m, lr-m: all its layer ranges) or a
    row (m(0-0), lr-m(1-3)); anything else is refused, listing what the table has."""
    from latentmix.experiments import SPIRAL_RANGES
    from latentmix.naming import row_label

    if not text:
        return methods
    chosen = []
    for name in (part.strip().lower() for part in text.split(",")):
        picked = [m for m in methods if name in (m.method, row_label(m.method, m.layers, "spiral"))]
        if not picked:
            raise ConfigError(f"--methods {name!r} is not in the spiral table; choose from ce, m, lr-m (every range) "
                              f"or rows such as m(0-0), lr-m(1-3) (ranges {SPIRAL_RANGES[0]} .. {SPIRAL_RANGES[-1]})")
        chosen += [m for m in picked if m not in chosen]
    return tuple(m for m in methods if m in chosen)
