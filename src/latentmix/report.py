"""Whole reports: `write_report` turns the runs of an output folder or a sweep store
(`latentmix.report_data.load_report_data`) into report.md, report.csv, runs.csv, PNG figures and
one self-contained report.html (the `latentmix report` command, see docs/reports.md).

Each data set is one section: its tables (`latentmix.report_tables`) and figures
(`latentmix.report_figures`); the numbers in them are aggregated by `latentmix.summary_tables`,
as the experiments' own tables are.
"""

from __future__ import annotations

import base64
import datetime as _datetime
import html as _html
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from latentmix.errors import ConfigError
from latentmix.report_data import ACTUAL_NOISE, AUC, BEST, EST_NOISE, LAST, SELECTED, ReportData, skipped_text
from latentmix.report_figures import dataset_figures
from latentmix.report_tables import CSV_FIELDS, DatasetTables, dataset_tables
from latentmix.summary_tables import UNKNOWN_RATE, column_label, column_order, noise_column, row_order
from latentmix.selection import NOT_STARTED
from latentmix.plain_twin import KEPT_TWIN


@dataclass
class ReportFiles:
    out: Path
    markdown: Path
    csv: Path
    runs_csv: Path
    html: Path
    figures: list


RUN_FIELDS = ("run_id", "dataset", "row", "method", "noise", "noise_kind", "seed", "finished", "epochs", "val_labels", BEST, "best_epoch", LAST,
              SELECTED, "selected_epoch", "last_train_acc_noisy", "last_train_acc_clean", AUC, EST_NOISE, ACTUAL_NOISE,
              "bootstrap_start_epoch", "bootstrap_start_reason", "correction_kept", "correction_stopped", "noise_estimate_doubt",
              "training_note", "kept_model", "kept_val_acc", "kept_epoch", "wall_time_s", "run_dir")


def run_rows(data: ReportData) -> list[dict]:
    """One line per run (finished or not), for runs.csv and the HTML page's run list."""
    lines = []
    rank = {row: index for index, row in enumerate(row_order(r.row for r in data.runs))}
    for run in sorted(data.runs, key=lambda r: (r.dataset, rank[r.row], r.noise, r.seed or 0, r.run_id)):
        summary = run.summary()
        lines.append({**{key: summary.get(key) for key in RUN_FIELDS}, "method": run.method, "finished": run.finished,
                      "epochs": summary.get("epochs") if run.finished else len(run.metrics),
                      "noise": None if run.noise == UNKNOWN_RATE else run.noise})
    return lines


def _header(data: ReportData, generated: str) -> dict:
    finished = sum(1 for r in data.runs if r.finished)
    seeds = sorted({r.seed for r in data.runs if r.seed is not None})
    lines = {
        "source": data.source + (f" (sweeps: {', '.join(data.studies)})" if data.studies else ""),
        "generated": generated,
        "runs": f"{len(data.runs)} ({finished} finished, {len(data.runs) - finished} unfinished"
                + (f", {len(data.skipped)} unreadable folder(s) skipped: {skipped_text(data)}" if data.skipped else "")
                + ")",
        "data sets": ", ".join(data.datasets),
        "noise": ", ".join(column_label(c) for c in sorted({noise_column(r.noise, r.noise_kind) for r in data.runs},
                                                             key=column_order)),
        "seeds": ", ".join(str(s) for s in seeds) or "–",
    }
    decisions = decision_counts(data)
    if decisions:
        lines["decided by the runs"] = decisions
    return lines


def decision_counts(data: ReportData) -> str:
    """What the finished runs decided by themselves that a reader of the tables should know (issue
    24): how many doubt their noise estimate, kept their warm-up over the correction, stopped a
    correction that collapsed the network, never started
    it (no memorisation to undo), were never told apart from chance, or kept their plain CE twin's model
    (`latentmix.plain_twin`); each run's reason is in runs.csv. Empty when none did."""
    finished = [r.summary() for r in data.runs if r.finished]
    counts = [(sum(1 for s in finished if s.get("noise_estimate_doubt")), "doubt their estimated share of wrong labels"),
              (sum(1 for s in finished if s.get("correction_kept") is False and not s.get("correction_stopped")),
               "kept their warm-up: the correction did not beat it on the validation split"),
              (sum(1 for s in finished if s.get("correction_stopped")),
               "stopped the correction when it collapsed the network, and trained on as plain CE"),
              (sum(1 for s in finished if str(s.get("bootstrap_start_reason") or "").startswith(NOT_STARTED)),
               "never started the correction and trained on as plain CE: the network had not measurably begun to "
               "memorise by the end of early learning"),
              (sum(1 for s in finished if s.get("training_note")), "were never told apart from chance"),
              (sum(1 for s in finished if s.get("kept_model") == KEPT_TWIN),
               "kept their plain CE twin's model, which scored higher on the validation split (the tables give each "
               "run's own; kept_val_acc in runs.csv)")]
    said = [f"{n} of {len(finished)} runs {what}" for n, what in counts if n]
    return "; ".join(said) + ("; the reasons are in runs.csv" if said else "")


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; font-size: 0.92em; color: #444; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
table { border-collapse: collapse; margin: 1em 0 0.3em; font-size: 0.88em; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.4em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
thead th { background: #f3f4f6; } tbody th { text-align: left; font-weight: 500; }
tbody tr:nth-child(even) { background: #fafafa; }
p.note { font-size: 0.85em; color: #555; margin: 0.2em 0; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
details { margin: 1.5em 0; } summary { cursor: pointer; font-weight: 600; }
.scroll { overflow-x: auto; }
"""


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_html(data: ReportData, sections: Sequence[tuple[DatasetTables, list]], runs: Sequence[dict],
                generated: str) -> str:
    """One self-contained page: header, every table, every PNG inline (base64), the run list."""
    esc = _html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>latentmix report: {esc(data.source)}</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>latentmix report</h1>",
             "<p>Noisy-label training runs: best and last accuracy and noise-detection AUC as mean ± std over "
             "seeds, grouped by method (and mixup layers) and noise rate; the paper's numbers in parentheses "
             "where it reports them; curves of each method's mean over seeds.</p>", '<dl class="meta">']
    parts += [f"<dt>{esc(key)}</dt><dd>{esc(value)}</dd>" for key, value in _header(data, generated).items()]
    parts.append("</dl>")
    for tables, figures in sections:
        parts.append(f"<h2>{esc(tables.dataset)}</h2>")
        parts += [f'<div class="scroll">{table.html()}</div>' for table in tables.tables]
        if figures:
            parts.append("<h3>Figures</h3>")
        for path, caption in figures:
            parts.append(f'<figure><img src="{_png_data_uri(path)}" alt="{esc(path.name)}">'
                         f"<figcaption>{esc(caption)} ({esc(path.name)})</figcaption></figure>")
    parts.append(f"<details><summary>All {len(runs)} runs</summary><div class=\"scroll\"><table><thead><tr>"
                 + "".join(f"<th>{esc(key)}</th>" for key in RUN_FIELDS if key != "run_dir") + "</tr></thead><tbody>")
    for line in runs:
        cells = []
        for key in RUN_FIELDS:
            if key == "run_dir":
                continue
            value = line.get(key)
            if isinstance(value, float):
                value = f"{value:.4g}"
            cells.append(f"<td>{esc('' if value is None else str(value))}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table></div></details></body></html>")
    return "\n".join(parts) + "\n"


def render_markdown(data: ReportData, sections: Sequence[tuple[DatasetTables, list]], generated: str) -> str:
    lines = ["# latentmix report", ""]
    lines += [f"- **{key}**: {value}" for key, value in _header(data, generated).items()]
    for tables, figures in sections:
        lines += ["", f"## {tables.dataset}", ""]
        for table in tables.tables:
            lines += [table.markdown().rstrip("\n"), ""]
        for path, caption in figures:
            lines += [f"![{caption}]({path.name})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_report(data: ReportData, out: str | Path, plots: bool = True) -> ReportFiles:
    """report.md, report.csv (one line per row x noise), runs.csv (one line per run), the PNGs and
    report.html (everything inline) in `out`."""
    from latentmix.io import atomic_write_csv, atomic_write_text

    out = Path(out)
    finished = [r for r in data.runs if r.finished]
    if not finished:
        skipped = (f"; skipped {len(data.skipped)} run folder(s) with unreadable files: {skipped_text(data)} (restore "
                   "or retrain them)") if data.skipped else ""
        raise ConfigError(f"no finished runs in {data.source} ({len(data.runs)} readable run(s), none with a result "
                          f"yet{skipped})")
    out.mkdir(parents=True, exist_ok=True)
    generated = _datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    datasets = sorted({r.dataset for r in finished})
    sections = []
    for dataset in datasets:
        tables = dataset_tables(data, dataset)
        prefix = f"{dataset}_" if len(datasets) > 1 else ""
        figures = dataset_figures(data, tables, out, prefix) if plots else []
        sections.append((tables, figures))
    runs = run_rows(data)
    files = ReportFiles(out=out, markdown=out / "report.md", csv=out / "report.csv", runs_csv=out / "runs.csv",
                        html=out / "report.html", figures=[path for _, figures in sections for path, _ in figures])
    atomic_write_text(files.markdown, render_markdown(data, sections, generated))
    atomic_write_csv(files.csv, [row for tables, _ in sections for row in tables.csv_rows], CSV_FIELDS)
    atomic_write_csv(files.runs_csv, runs, RUN_FIELDS)
    atomic_write_text(files.html, render_html(data, sections, runs, generated))
    return files
