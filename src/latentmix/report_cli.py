"""`latentmix report DIR_OR_STORAGE`: tables, plots and one HTML page from finished runs.

The input is one run folder (a `latentmix train --out`), a sweep or reproduce output folder (run
folders ``DIR/runs/<run_id>/`` with config.json, metrics.csv and result.json) or a sweep store URL (``sqlite:///OUT/sweep.db``,
``postgresql://...``). The output folder (``--out``; default ``DIR/report``, or ``report/`` beside
a SQLite store) receives report.md, report.csv, runs.csv, PNG figures and report.html. See
docs/reports.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from latentmix.errors import ConfigError


def register(commands) -> None:
    parser = commands.add_parser(
        "report", help="tables, plots and an HTML page from a sweep/reproduce output folder or a sweep store",
        description="Summarise finished runs: best/last accuracy and detection AUC (mean ± std over seeds) by "
                    "method and noise rate beside the paper's numbers, accuracy/AUC curves, a layer-range "
                    "heatmap, and one self-contained report.html (see docs/reports.md).")
    parser.add_argument("source", metavar="DIR_OR_STORAGE",
                        help="one run folder (the --out of latentmix train), an output folder holding "
                             "runs/<run_id>/ (of latentmix reproduce or sweep run), a sweep store URL "
                             "(sqlite:///OUT/sweep.db, postgresql://...) or a .db file")
    parser.add_argument("--out", help="folder for the report (default DIR/report; beside a SQLite store: "
                                      "its folder's report/; other stores: runs/report-STUDY)")
    parser.add_argument("--study", help="the sweep to report from a store (default: every sweep in it); with a "
                                        "folder, reads the folder's sweep.db")
    parser.add_argument("--no-plots", action="store_true", help="tables only (no PNGs)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no summary lines")
    parser.set_defaults(handler=cmd_report)


def default_out(source: str, study: str | None) -> Path:
    from latentmix.report_data import resolve_source

    kind, where = resolve_source(source, study)
    if kind == "folder":
        return Path(where) / "report"
    if where.startswith("sqlite:///"):
        return Path(where[len("sqlite:///"):]).parent / "report"
    return Path("runs") / f"report-{study or 'sweep'}"


def cmd_report(args: argparse.Namespace) -> int:
    from latentmix.config_checks import check_output_folder
    from latentmix.report import write_report
    from latentmix.report_data import load_report_data

    if args.study is not None and not args.study.strip():
        raise ConfigError("--study must name a sweep")
    out = Path(args.out) if args.out else default_out(args.source, args.study)
    data = load_report_data(args.source, study=args.study, progress=not args.quiet)
    if data.finished():
        check_output_folder(out, "--out")
    files = write_report(data, out, plots=not args.no_plots)
    if data.skipped:
        from latentmix.report_data import skipped_text

        print(f"latentmix: skipped {len(data.skipped)} run folder(s) with unreadable files: {skipped_text(data)}",
              file=sys.stderr)
    if not args.quiet:
        finished = sum(1 for run in data.runs if run.finished)
        print(f"report of {len(data.runs)} run(s) ({finished} finished) from {data.source}")
        print(f"  {files.html} (self-contained), {files.markdown.name}, {files.csv.name}, {files.runs_csv.name}, "
              f"{len(files.figures)} figure(s) in {files.out}/")
    return 0
