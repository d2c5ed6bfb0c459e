"""Command line of sweeps: ``latentmix sweep run | work | status`` (docs/sweeps.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

from latentmix.config_checks import check_output_folder
from latentmix.errors import ConfigError
from latentmix.sweep.launch import run_sweep
from latentmix.sweep.results import RESULTS_FIELDS, failed_runs, format_status, print_failed_runs, sweep_counts
from latentmix.sweep.spec import MACHINE_FIELDS, SweepSpec, load_spec
from latentmix.sweep.store import (DEFAULT_GRACE_S, DEFAULT_HEARTBEAT_S, DEFAULT_MAX_RETRY, SweepStore,
                                   default_storage_url)
from latentmix.sweep.worker import DEFAULT_POLL_S, DEFAULT_POPULATION, run_worker


def _add_worker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--population", type=int, default=DEFAULT_POPULATION,
                        help="runs one worker trains together as a vectorized population (small MLPs)")
    parser.add_argument("--sequential", action="store_true", help="train every run on its own (no populations)")
    parser.add_argument("--heartbeat", type=int, default=DEFAULT_HEARTBEAT_S, help="seconds between heartbeats")
    parser.add_argument("--grace", type=int, default=DEFAULT_GRACE_S,
                        help="seconds without a heartbeat after which a run's worker counts as dead")
    parser.add_argument("--max-retry", type=int, default=DEFAULT_MAX_RETRY,
                        help="retries of a run whose worker died (a new `sweep run` tries again)")
    parser.add_argument("--poll", type=float, default=DEFAULT_POLL_S, help="seconds between looks at the store")
    parser.add_argument("--no-wait", action="store_true",
                        help="stop when nothing is pending (do not wait for other workers' runs)")
    parser.add_argument("--device", help="device for the runs this worker trains (auto, cpu, cuda)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--overrides", help=argparse.SUPPRESS)  # JSON of machine fields, from `run --workers`


def register(commands) -> None:
    sweep = commands.add_parser("sweep", help="run a grid as a resumable sweep, on one machine or many",
                                description="Run a grid of runs from a TOML spec as an Optuna study (see docs/sweeps.md).")
    sub = sweep.add_subparsers(dest="sweep_command", required=True)

    run = sub.add_parser("run", help="run (or join, or resume) the sweep of a spec")
    run.add_argument("spec", help="the sweep's TOML spec")
    run.add_argument("--storage", help="store URL (default sqlite:///OUT/sweep.db; postgresql://... for many machines)")
    run.add_argument("--out", help="output folder (default: the spec's `out`, else runs/sweep-NAME)")
    run.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    _add_worker_options(run)
    run.set_defaults(handler=cmd_run)

    work = sub.add_parser("work", help="join a sweep already in a store (no spec needed)")
    work.add_argument("--storage", required=True)
    work.add_argument("--study", required=True, help="the sweep's name")
    work.add_argument("--out", required=True, help="output folder for the run folders trained here")
    _add_worker_options(work)
    work.set_defaults(handler=cmd_work)

    status = sub.add_parser("status", help="done / running / pending counts of a sweep")
    status.add_argument("spec", nargs="?", help="the sweep's TOML spec (or give --storage and --study)")
    status.add_argument("--storage")
    status.add_argument("--study", help="the sweep's name (default: the spec's, or the store's only sweep)")
    status.add_argument("--out", help="output folder whose sweep.db to read")
    status.add_argument("--json", action="store_true", help="print the counts as JSON")
    status.set_defaults(handler=cmd_status)


def _spec_location(spec: SweepSpec, args: argparse.Namespace) -> tuple[Path, str]:
    out = Path(args.out or spec.out or f"runs/sweep-{spec.name}")
    url = args.storage or spec.storage or default_storage_url(out)
    return out, url


def _overrides(args: argparse.Namespace, spec: Optional[SweepSpec]) -> dict:
    overrides = spec.machine_overrides() if spec is not None else {}
    if getattr(args, "overrides", None):
        given = json.loads(args.overrides)
        overrides.update({k: v for k, v in given.items() if k in MACHINE_FIELDS})
    if getattr(args, "device", None):
        overrides["device"] = args.device
    return overrides


def check_worker_options(args: argparse.Namespace) -> None:
    """`--population` runs trained together (>= 1; 0 trained one run alone, as --sequential does,
    without saying so) and, for `sweep run`, `--workers` processes (>= 1)."""
    if args.population < 1:
        raise ConfigError(f"--population must be >= 1 (runs one worker trains together), got {args.population}; "
                          "--sequential trains every run on its own")
    if getattr(args, "workers", 1) < 1:
        raise ConfigError(f"--workers must be >= 1 (worker processes on this machine), got {args.workers}")


def cmd_run(args: argparse.Namespace) -> int:
    check_worker_options(args)
    spec = load_spec(args.spec)
    if args.sequential and all(config.dataset == "spiral" for config in spec.configs):
        from latentmix.runtime import set_threads

        set_threads(None, "spiral")  # one tiny run at a time: one thread (see set_threads)
    out, url = _spec_location(spec, args)
    check_output_folder(out, "--out")
    overrides = _overrides(args, spec)
    results = run_sweep(spec.name, spec.configs, out, storage=url, workers=args.workers,
                        vectorized=not args.sequential, population_size=args.population, progress=not args.quiet,
                        heartbeat_interval=args.heartbeat, grace_period=args.grace, max_retry=args.max_retry,
                        wait=not args.no_wait, poll_interval=args.poll, overrides=overrides)
    from latentmix.io import atomic_write_csv

    atomic_write_csv(out / "results.csv", results, None if results else RESULTS_FIELDS)  # a header at least
    summary = json.loads((out / "sweep.json").read_text())
    store = SweepStore(url, heartbeat_interval=args.heartbeat, grace_period=args.grace, max_retry=args.max_retry)
    study = store.load(spec.name)
    print(format_status(study, url))
    mine = summary["this_worker"]
    print(f"  this worker: trained {mine['trained']} (resumed {mine['resumed']}), reused {mine['reused']}, "
          f"failed {mine['failed']}; results in {out}/results.csv and {out}/runs/")
    failed = failed_runs(study)
    print_failed_runs(failed)
    return 1 if failed else 0


def cmd_work(args: argparse.Namespace) -> int:
    check_worker_options(args)
    check_output_folder(args.out, "--out")
    store = SweepStore(args.storage, heartbeat_interval=args.heartbeat, grace_period=args.grace, max_retry=args.max_retry)
    study = store.load(args.study)
    store.requeue_unfinished(study)
    report = run_worker(store, study, args.out, vectorized=not args.sequential, population_size=args.population,
                        wait=not args.no_wait, poll_interval=args.poll, progress=not args.quiet,
                        overrides=_overrides(args, None))
    if not args.quiet:
        print(format_status(study, args.storage))
        print(f"  this worker: {json.dumps(report.as_dict())}")
    return 1 if report.failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec) if args.spec else None
    if spec is not None:
        out, url = _spec_location(spec, args)
    elif args.storage:
        url = args.storage
    elif args.out:
        url = default_storage_url(args.out)
    else:
        raise ConfigError("sweep status needs a spec, --storage URL or --out DIR")
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        raise ConfigError(f"no sweep store at {url} (nothing has run yet?)")
    store = SweepStore(url)
    name = args.study or (spec.name if spec is not None else None)
    if name is None:
        names = store.study_names()
        if len(names) != 1:
            raise ConfigError(f"the store holds {len(names)} sweeps ({', '.join(names) or 'none'}); pick one with --study")
        name = names[0]
    study = store.load(name)
    if args.json:
        print(json.dumps({"name": name, **sweep_counts(study)}, indent=2))
    else:
        print(format_status(study, url))
    return 0
