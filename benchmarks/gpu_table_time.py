"""How long the Fashion-MNIST tables (MLP and SmallCNN, 3 seeds: 108 runs each) take on this
machine's device (issue #28, item 3), under a hard time cap.

    python benchmarks/gpu_table_time.py --data-dir .gpu-data/fashion-mnist --device cuda --workers 8 --cap-s 150
    python benchmarks/gpu_table_time.py --smoke --out DIR        # one 1-epoch CE run per model on the CPU

Each table is `latentmix reproduce fashion-mnist --model M --seeds 3 --device D --workers W` run as
a child process (its own process group) in a work folder outside --out; the time left of --cap-s
is shared between the tables still to run, and a table that reaches its share is stopped (its
process group gets SIGTERM, then SIGKILL). What is then read off the work folder: the runs that
finished (each run's result.json) and their own wall times (timing.json). A finished table's time
is its wall time; a stopped one's is estimated as elapsed x total runs / finished runs (the runs
of a table are alike in size, and the first minutes include the process start-up, so the
estimate errs on the high side). Writes fashion_gpu.md and fashion_gpu.json (and a finished
table's table.md as fashion_<model>_table.md) into --out (default $OUT, else runs/gpu-table-time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

MODELS = ("mlp", "small-cnn")


def grid_size(model: str, args: argparse.Namespace) -> int:
    """The number of runs of the table `reproduce` runs with these arguments (the grid itself)."""
    from latentmix.experiments.fashion import ASYMMETRIC_RATES, NOISE_RATES, fashion_grid

    noise = tuple(float(v) for v in args.noise.split(",")) if args.noise else NOISE_RATES
    asymmetric = () if args.noise else ASYMMETRIC_RATES
    return len(fashion_grid(".", seeds=args.seeds, methods=args.methods, model=model, noise_rates=noise,
                            asymmetric_rates=asymmetric).runs())


def reproduce_command(model: str, work: Path, args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-m", "latentmix", "reproduce", "fashion-mnist", "--model", model,
               "--seeds", str(args.seeds), "--device", args.device, "--workers", str(args.workers),
               "--out", str(work), "--quiet"]
    for flag, value in (("--data-dir", args.data_dir), ("--methods", args.methods), ("--noise", args.noise),
                        ("--epochs", args.epochs)):
        if value is not None:
            command += [flag, str(value)]
    if args.noise:
        command += ["--asym-noise", "none"]
    return command


def run_capped(command: list[str], cap_s: float, log: Path) -> tuple[Optional[int], float]:
    """Run `command` in its own process group for at most `cap_s` seconds; (exit code or None when
    stopped at the cap, elapsed seconds). Only that group is signalled."""
    started = time.perf_counter()
    with log.open("w") as handle:
        child = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: Optional[int] = child.wait(timeout=max(1.0, cap_s))
        except subprocess.TimeoutExpired:
            code = None
            for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(child.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    child.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
    return code, time.perf_counter() - started


def finished_runs(work: Path) -> list[float]:
    """Wall seconds of each finished run in a reproduce folder (runs/<id>/result.json present)."""
    seconds = []
    for result in sorted(work.glob("runs/*/result.json")):
        timing = result.parent / "timing.json"
        try:
            seconds.append(float(json.loads(timing.read_text())["wall_time_s"]))
        except (OSError, ValueError, KeyError, TypeError):
            seconds.append(float("nan"))
    return seconds


def table_record(model: str, total: int, code: Optional[int], elapsed: float, work: Path) -> dict:
    """What a (possibly stopped) table run says about the whole table's time."""
    runs = finished_runs(work)
    done = len(runs)
    complete = code == 0 and done == total
    summary = work / "summary.json"
    wall = json.loads(summary.read_text()).get("wall_time_s") if complete and summary.exists() else None
    known = [s for s in runs if s == s]  # NaN-free
    record = {"model": model, "total_runs": total, "finished_runs": done, "exit_code": code,
              "stopped_at_cap": code is None, "elapsed_s": elapsed, "complete": complete,
              "table_wall_s": wall, "mean_run_s": statistics.fmean(known) if known else None,
              "median_run_s": statistics.median(known) if known else None}
    if complete:
        record["table_s"], record["how"] = elapsed, "measured (the whole command)"
    elif done:
        record["table_s"] = elapsed * total / done
        record["how"] = f"estimated: {elapsed:.0f} s x {total} / {done} finished runs"
    else:
        record["table_s"], record["how"] = None, "not measured: no run finished within the cap"
    return record


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = ["# Fashion-MNIST tables on this device (issue #28, item 3)", "",
             f"device {s['device']} ({report['card']}), {s['workers']} worker process(es), {s['seeds']} seed(s), "
             f"cap {s['cap_s']:g} s for all tables; `{s['command']}`", "",
             "| model | runs finished / total | elapsed s | table s | how | mean s per run (own wall time) | exit |",
             "|---|---|---|---|---|---|---|"]
    for r in report["tables"]:
        if r.get("skipped"):
            lines.append(f"| {r['model']} | - | - | - | skipped: {r['skipped']} | - | - |")
            continue
        table = "-" if r["table_s"] is None else f"{r['table_s']:.0f}"
        mean = "-" if r["mean_run_s"] is None else f"{r['mean_run_s']:.1f}"
        exit_text = "stopped at its share of the cap" if r["stopped_at_cap"] else str(r["exit_code"])
        lines.append(f"| {r['model']} | {r['finished_runs']} / {r['total_runs']} | {r['elapsed_s']:.0f} | {table} "
                     f"| {r['how']} | {mean} | {exit_text} |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", help="output folder (default: $OUT when set, else runs/gpu-table-time)")
    parser.add_argument("--work", help="the tables' run folders (default: a folder in the temp dir)")
    parser.add_argument("--data-dir", help="the Fashion-MNIST IDX files (default: reproduce's)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cap-s", type=float, default=150.0, help="seconds for all tables together")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--methods", help="a part of the table (reproduce --methods)")
    parser.add_argument("--noise", help="symmetric rates only (reproduce --noise; no class-dependent columns)")
    parser.add_argument("--epochs", type=int, help="reproduce --epochs")
    parser.add_argument("--smoke", action="store_true", help="CPU, 1 seed, CE at 50%% noise, 1 epoch, 1 worker")
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.workers, args.seeds, args.methods, args.noise, args.epochs = "cpu", 1, 1, "ce", "0.5", 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    out = Path(args.out or os.environ.get("OUT") or "runs/gpu-table-time")
    out.mkdir(parents=True, exist_ok=True)
    work_root = Path(args.work) if args.work else Path(os.environ.get("TMPDIR", "/tmp")) / "latentmix-gpu-tables"
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        print(f"gpu_table_time: --models names {', '.join(unknown)}; choose from {', '.join(MODELS)}", file=sys.stderr)
        return 2
    tables = []
    for position, model in enumerate(models):
        share = (args.cap_s - (time.perf_counter() - started)) / (len(models) - position)
        if share < 20:
            tables.append({"model": model, "skipped": f"{share:.0f} s left of --cap-s {args.cap_s:g}"})
            continue
        work = work_root / model
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        command = reproduce_command(model, work, args)
        code, elapsed = run_capped(command, share, work / "reproduce.log")
        tables.append(table_record(model, grid_size(model, args), code, elapsed, work))
        if code not in (0, None):  # the command failed: its last lines say why (the log stays in --work)
            print("".join((work / "reproduce.log").read_text().splitlines(keepends=True)[-20:]), flush=True)
        if (work / "table.md").exists():
            shutil.copyfile(work / "table.md", out / f"fashion_{model}_table.md")
        print(f"gpu_table_time: {model}: {tables[-1]['finished_runs']} of {tables[-1]['total_runs']} runs in "
              f"{elapsed:.0f} s ({tables[-1]['how']})", flush=True)
    card = "cpu"
    if args.device.startswith("cuda"):
        import torch

        card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    report = {"card": card, "settings": {**{k: v for k, v in vars(args).items()},
                                         "command": "python benchmarks/gpu_table_time.py " + " ".join(
                                             sys.argv[1:] if argv is None else argv)},
              "tables": tables, "wall_s": time.perf_counter() - started}
    (out / "fashion_gpu.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "fashion_gpu.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
