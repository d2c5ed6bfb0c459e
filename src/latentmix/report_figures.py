"""One data set's figures in a report: per noise column, each method's mean curves over seeds
(validation accuracy, training accuracy against the given labels, detection AUC), and for a
Table-2-like grid of layer ranges a heatmap of best accuracy (beside the paper's Table 2 on the
spirals). Matplotlib is imported only when a figure is drawn (`latentmix.plots`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from latentmix.report_data import AUC, BEST, ReportData
from latentmix.report_tables import DatasetTables, accuracy_word
from latentmix.summary_tables import GIVEN, RANGE_ROW, UNKNOWN_RATE, aggregate, column_label, noise_column, paper_number


def curve_stats(runs: Sequence[Sequence[dict]], key: str, scale: float = 1.0):
    """(epochs, mean, std) of a metric over runs at the epochs where any run has it; None when no
    run has it (sparse columns such as training accuracy tracked every 10th epoch stay joined)."""
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        for row in run:
            value = row.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
                by_epoch[int(row["epoch"])].append(float(value) * scale)
    if not by_epoch:
        return None
    epochs = sorted(by_epoch)
    mean = np.array([np.mean(by_epoch[e]) for e in epochs])
    std = np.array([np.std(by_epoch[e]) if len(by_epoch[e]) > 1 else 0.0 for e in epochs])
    return np.array(epochs), mean, std


def plot_series(series: dict, path: Path, title: str, ylabel: str) -> Optional[Path]:
    """One line per label (mean; shaded ± std over runs when there are few lines); `series` maps
    label -> curve_stats."""
    from latentmix.plots import _pyplot, _save

    series = {label: stats for label, stats in series.items() if stats is not None}
    if not series:
        return None
    epochs_seen = {int(epoch) for epochs, _, _ in series.values() for epoch in epochs}
    if all(len(epochs) == 1 for epochs, _, _ in series.values()):
        # known at one epoch only (population runs' detection AUC): one point per method, on an
        # axis of the values, not a lone dot per method on an epoch axis such as 284..316
        from latentmix.plots import plot_points

        at = f"epoch {epochs_seen.pop()}" if len(epochs_seen) == 1 else "last epoch"
        return plot_points(list(series), [float(m[0]) for _, m, _ in series.values()],
                           [float(sd[0]) for _, _, sd in series.values()], path, f"{title}, at {at}", ylabel)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colors = plt.get_cmap("tab10" if len(series) <= 10 else "tab20")
    for index, (label, (epochs, mean, std)) in enumerate(series.items()):
        color = colors(index % colors.N)
        marker = "o" if len(epochs) <= 30 else None
        ax.plot(epochs, mean, "-", marker=marker, markersize=2.5, color=color, lw=1.3, label=label)
        if len(series) <= SHADE_MAX_SERIES and np.any(std > 0):
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.12, lw=0)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=1 if len(series) <= 12 else 2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, Path(path))


SHADE_MAX_SERIES = 5  # more lines than this: no ± std bands (they would cover each other)


def _noise_tag(column) -> str:
    """n20 (symmetric 20%), asym_n20 (class-dependent 20%): the file-name part of a column."""
    if isinstance(column, tuple):
        if column == (GIVEN, UNKNOWN_RATE):
            return GIVEN
        return f"{column[0][:4]}_n{column[1] * 100:g}"
    return f"n{column * 100:g}"


CURVE_KEYS = (
    ("val_acc", 100.0, "validation accuracy (%)", "{word} accuracy"),
    ("train_acc_noisy", 100.0, "training accuracy vs given labels (%)", "training accuracy (vs the given, noisy labels)"),
    (AUC, 1.0, "detection AUC", "noise detection AUC"),
)


def range_grid(rows: Sequence[str]) -> list[tuple[str, str]]:
    """(row, layer range) of the rows of a Table-2-like grid (lr-m(a-b), and m(0-0)); [] unless at
    least two lr-m(a-b) rows."""
    found = [(row, f"{m['low']}-{m['high']}") for row in rows if (m := RANGE_ROW.match(row))
             and (m["method"] == "lr-m" or (m["low"], m["high"]) == ("0", "0"))]
    if sum(1 for row, _ in found if row.startswith("lr-m(")) < 2:
        return []
    return sorted(found, key=lambda item: tuple(int(n) for n in item[1].split("-")))


def dataset_figures(data: ReportData, tables: DatasetTables, out: Path, prefix: str = "") -> list[tuple[Path, str]]:
    """The PNGs of one data set: per noise rate, each method's mean validation accuracy, training
    accuracy and detection AUC curves; a layer range x noise heatmap of best accuracy for a
    Table-2-like grid (and the paper's Table 2 beside it on the spirals). Returns (path, caption)."""
    from latentmix.plots import plot_heatmap

    dataset = tables.dataset
    word = accuracy_word(dataset, data)
    runs = data.finished(dataset)
    figures = []
    for column in tables.noise_rates:
        for key, scale, ylabel, what in CURVE_KEYS:
            series = {row: curve_stats([r.metrics for r in runs if r.row == row
                                        and noise_column(r.noise, r.noise_kind) == column], key, scale)
                      for row in tables.rows}
            title = f"{dataset}, {column_label(column)}{'' if isinstance(column, tuple) and column[0] == GIVEN else ' noise'}: {what.format(word=word)} per method (mean over seeds)"
            label = ylabel.replace("validation", word)
            path = plot_series(series, out / f"{prefix}{key}_{_noise_tag(column)}.png", title, label)
            if path is not None:
                figures.append((path, title))
    grid = range_grid(tables.rows)
    if grid:
        stats = aggregate([r.summary() for r in runs], BEST)
        values = np.array([[stats.get((row, n), {}).get("mean", math.nan) for n in tables.noise_rates]
                           for row, _ in grid])
        columns = [column_label(n) for n in tables.noise_rates]
        ranges = [r for _, r in grid]
        title = f"{dataset}: best {word} acc. (%), layer range x noise"
        figures.append((plot_heatmap(values, ranges, columns, out / f"{prefix}heatmap_best_acc.png", title=title,
                                     colorbar_label="accuracy (%)"), title))
        if dataset == "spiral":
            theirs = np.array([[paper_number(dataset, row, n) or math.nan for n in tables.noise_rates]
                               for row, _ in grid], dtype=float)
            if not np.all(np.isnan(theirs)):
                title = "paper Table 2: best val. acc. (%), layer range x noise"
                figures.append((plot_heatmap(theirs, ranges, columns, out / f"{prefix}heatmap_paper_table2.png",
                                             title=title), title))
    return figures
