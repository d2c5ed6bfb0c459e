"""PNG plots of runs: accuracy curves per method (the paper's Figures 3-5) and grid heatmaps.

matplotlib runs headless (Agg backend); every function writes one PNG atomically and returns its path.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from latentmix.io import atomic_write_bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_curves(
    curves: Mapping[str, Sequence[Sequence[dict]]], keys: Sequence[str], path: str | Path, title: str = "",
    ylabel: str = "accuracy (%)", scale: float = 100.0,
) -> Path:
    """One line per label and metric key, averaged over the label's runs (shaded: ± std).

    Args:
        curves: label -> list of runs, each run a list of per-epoch metric rows (metrics.csv rows).
        keys: metric columns to draw, e.g. ("val_acc", "train_acc_noisy"); drawn solid, dashed, dotted.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    styles = ["-", "--", ":", "-."]
    for color_index, (label, runs) in enumerate(curves.items()):
        color = f"C{color_index % 10}"
        for key_index, key in enumerate(keys):
            series = [[_float(row.get(key)) for row in run] for run in runs if run]
            if not series:
                continue
            length = min(len(s) for s in series)
            values = np.array([s[:length] for s in series], dtype=float) * scale
            if np.all(np.isnan(values)):
                continue
            epochs = np.arange(1, length + 1)
            mean = np.nanmean(values, axis=0)
            ax.plot(epochs, mean, styles[key_index % len(styles)], color=color, lw=1.4,
                    label=f"{label} {key}" if len(keys) > 1 else label)
            if values.shape[0] > 1:
                std = np.nanstd(values, axis=0)
                ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.15, lw=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, Path(path))


def plot_points(
    labels: Sequence[str], means: Sequence[float], stds: Sequence[float], path: str | Path, title: str = "",
    xlabel: str = "",
) -> Path:
    """One value per label (mean, ± std as an error bar), a row each: for a metric known at one
    epoch only (the detection AUC of population runs), where a curve would be a lone dot per
    method on an epoch axis. The value axis spans the values, not 0..1, so differences show."""
    plt = _pyplot()
    means, stds = np.asarray(means, dtype=float), np.asarray(stds, dtype=float)
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.3 * len(labels)))
    rows = np.arange(len(labels))[::-1]  # the first label on top
    ax.errorbar(means, rows, xerr=np.where(stds > 0, stds, np.nan), fmt="o", color="C0", ecolor="0.5", capsize=3)
    ax.set_yticks(rows, list(labels))
    low, high = float(np.nanmin(means - stds)), float(np.nanmax(means + stds))
    margin = max(0.05 * (high - low), 1e-3 * max(1.0, abs(high)), 1e-6)
    ax.set_xlim(low - margin, high + margin)
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, Path(path))


def plot_heatmap(
    values: np.ndarray, row_labels: Sequence[str], column_labels: Sequence[str], path: str | Path,
    title: str = "", colorbar_label: str = "accuracy (%)", fmt: str = "{:.1f}",
) -> Path:
    """A table as a heatmap with the value written in each cell (NaN cells left blank)."""
    plt = _pyplot()
    values = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(column_labels), 0.8 + 0.32 * len(row_labels)))
    image = ax.imshow(values, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(column_labels)), column_labels)
    ax.set_yticks(range(len(row_labels)), row_labels)
    for (i, j), value in np.ndenumerate(values):
        if not np.isnan(value):
            ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=7,
                    color="white" if value < np.nanmean(values) else "black")
    fig.colorbar(image, ax=ax, label=colorbar_label)
    if title:
        ax.set_title(title)
    return _save(fig, Path(path))


def _float(value) -> float:
    if value is None or value == "":
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
