"""One data set's tables in a report: best, last and selected accuracy (the paper's numbers in
parentheses where it has them), detection AUC, and the estimated and actual share of wrong labels,
each mean ± std over seeds; with the report.csv rows of the same cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from latentmix.report_data import ACTUAL_NOISE, AUC, BEST, EST_NOISE, LAST, SELECTED, ReportData
from latentmix.summary_tables import (
    UNKNOWN_RATE,
    aggregate,
    column_order,
    mark_paper_footnotes,
    noise_column,
    paper_number,
    row_order,
    seeds_text,
    value_table,
)


@dataclass
class DatasetTables:
    dataset: str
    rows: list
    noise_rates: list
    tables: list  # `Table`s, written as markdown (report.md) and as HTML (report.html)
    csv_rows: list


def accuracy_word(dataset: str, data: Optional[ReportData] = None) -> str:
    """What the accuracies of a data set's runs are measured on: the test set (CIFAR-10), the
    validation set, or the validation rows' given labels where no run had a clean reference
    (`RunSummary.val_acc_on_given_labels`: agreement with labels that may be wrong)."""
    if dataset == "cifar10":
        return "test"
    runs = data.finished(dataset) if data is not None else []
    if runs and all(run.result.val_acc_on_given_labels for run in runs):
        return "given-label validation"
    return "validation"


def _seed_text(results: Sequence[dict]) -> str:
    counts = sorted({cell["n"] for cell in aggregate(results, BEST, 1.0).values()})
    return seeds_text(counts[0], counts[-1]) if counts else "no seeds"


def dataset_tables(data: ReportData, dataset: str) -> DatasetTables:
    """The tables of one data set's finished runs: best and last accuracy (the paper's numbers in
    parentheses where it has them) and the last epoch's detection AUC, each mean ± std over seeds."""
    results = [run.summary() for run in data.finished(dataset)]
    rows = row_order(r["row"] for r in results)
    noise_rates = sorted({noise_column(r["noise"], r.get("noise_kind")) for r in results}, key=column_order)
    word = accuracy_word(dataset, data)
    epochs = sorted({int(r["epochs"]) for r in results if r.get("epochs") is not None})
    setting = _seed_text(results)
    if epochs:
        setting += f", {epochs[0]} epochs" if len(epochs) == 1 else f", {epochs[0]}-{epochs[-1]} epochs"
    table_name = {"spiral": "paper Table 2", "cifar10": "paper Table 1"}.get(dataset)

    def paper_for(which: str):
        has = any(paper_number(dataset, row, noise, which) is not None for row in rows for noise in noise_rates
                  if not isinstance(noise, tuple))
        return (lambda row, noise: paper_number(dataset, row, noise, which)) if has else None

    tables = []
    for key, which, label in ((BEST, "best", "Best"), (LAST, "last", "Last-epoch"),
                              (SELECTED, "selected", "Selected (by noisy-validation accuracy)")):
        if key == SELECTED and not any(r.get(SELECTED) is not None for r in results):
            continue
        lookup = paper_for(which) if key != SELECTED else None
        title = f"{dataset}: {label} {word} accuracy (%), {setting}"
        if lookup is not None and table_name:
            title += f"; {table_name} in parentheses"
        table = value_table(results, key, rows, noise_rates, paper=lookup, title=title)
        tables.append(mark_paper_footnotes(table, which, noise_rates) if dataset == "cifar10" else table)
    if any(r.get(AUC) is not None for r in results):
        tables.append(value_table(results, AUC, rows, noise_rates, scale=1.0, digits=3,
                                     title=f"{dataset}: noise detection AUC of the label issues, {setting}"))
    if any(r.get(EST_NOISE) is not None for r in results):
        # a share of wrong labels is a measurement, not a score: no cell is "best" (no bold)
        tables.append(value_table(results, EST_NOISE, rows, noise_rates, bold_best=False,
                                     title=f"{dataset}: estimated share of wrong labels (%), {setting}"))
        if any(r.get(ACTUAL_NOISE) is not None for r in results):
            tables.append(value_table(results, ACTUAL_NOISE, rows, noise_rates, bold_best=False,
                                         title=f"{dataset}: actual share of wrong labels (%), {setting}"))

    stats = {key: aggregate(results, key, scale) for key, scale in
             ((BEST, 100.0), (LAST, 100.0), (SELECTED, 100.0), (AUC, 1.0), (EST_NOISE, 100.0), (ACTUAL_NOISE, 100.0))}
    csv_rows = []
    for row in rows:
        for column in noise_rates:
            cell = (row, column)
            if cell not in stats[BEST] and cell not in stats[LAST]:
                continue
            kind, noise = column if isinstance(column, tuple) else ("symmetric", column)
            entry: dict = {"dataset": dataset, "row": row, "noise": None if noise == UNKNOWN_RATE else noise,
                           "noise_kind": kind,
                           "n": stats[BEST].get(cell, stats[LAST].get(cell, {})).get("n")}
            for key, name, which in ((BEST, "best_acc", "best"), (LAST, "last_acc", "last"), (SELECTED, "selected_acc", None),
                                     (AUC, "detection_auc", None), (EST_NOISE, "estimated_noise", None),
                                     (ACTUAL_NOISE, "actual_noise", None)):
                values = stats[key].get(cell)
                entry[f"{name}_mean"] = None if values is None else values["mean"]
                entry[f"{name}_std"] = None if values is None else values["std"]
                if which is not None:
                    entry[f"{name}_paper"] = paper_number(dataset, row, noise, which) if kind == "symmetric" else None
            csv_rows.append(entry)
    return DatasetTables(dataset, rows, noise_rates, tables, csv_rows)


CSV_FIELDS = ("dataset", "row", "noise", "noise_kind", "n", "best_acc_mean", "best_acc_std", "best_acc_paper", "last_acc_mean",
              "last_acc_std", "last_acc_paper", "selected_acc_mean", "selected_acc_std", "detection_auc_mean",
              "detection_auc_std", "estimated_noise_mean", "estimated_noise_std", "actual_noise_mean", "actual_noise_std")
