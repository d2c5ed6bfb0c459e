"""`label_issues.csv`: every scored sample of a run, most likely mislabeled first, as a person
opens it (a spreadsheet included: a cell that starts like a formula is kept as text). Written by
`latentmix.run_folder.RunFolder.write_label_issues`, read by `latentmix detect`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from latentmix.io import atomic_write_csv
from latentmix.selection import ranking_order


def write_label_issues(path: Path, result: Any) -> None:
    """`label_issues.csv`: every scored sample, most likely mislabeled first (P(noisy) descending,
    ties by the loss descending). Columns: `index` (the row of the user's data file when the data
    came from one, else the position in the training set), `file` (its name, where the data name
    their rows: an image folder's file paths), `split` (train; holdout = the noisy
    validation split; val = validation rows of the user's file), `given_label`, `p_noisy`,
    `loss` (cross-entropy against the given label), `predicted_label`, and `truly_noisy` when the
    clean labels are known. `result` needs `p_noisy`, `predictions`, `noisy_labels`, `is_noisy`;
    `losses`, `sample_rows`, `holdout` and `extra_rows` are used when present."""
    n = len(result.p_noisy)
    losses = getattr(result, "losses", None)
    holdout = getattr(result, "holdout", None)
    rows_of = getattr(result, "sample_rows", None)
    columns = {
        "index": np.arange(n) if rows_of is None else np.asarray(rows_of),
        "split": np.where(holdout, "holdout", "train") if holdout is not None else np.full(n, "train"),
        "given_label": np.asarray(result.noisy_labels), "p_noisy": np.asarray(result.p_noisy),
        **({} if losses is None else {"loss": np.asarray(losses)}),
        "predicted_label": np.asarray(result.predictions),
    }
    known = result.is_noisy is not None
    if known:
        columns["truly_noisy"] = np.asarray(result.is_noisy).astype(int)
    extra = getattr(result, "extra_rows", None)
    if extra:  # validation rows of the user's file: no clean reference for them
        for key in columns:
            columns[key] = np.concatenate([columns[key].astype(object), np.asarray(extra[key], dtype=object)
                                           if key in extra else np.full(len(extra["index"]), None)])
    names = getattr(result, "sample_names", None)
    if names is not None:  # which file each row is (an image folder), beside its row number
        columns = {"index": columns["index"],
                   "file": np.asarray([spreadsheet_safe(names[int(row)]) for row in columns["index"]], dtype=object),
                   **{key: value for key, value in columns.items() if key != "index"}}
    order = ranking_order(columns["p_noisy"].astype(float),
                          columns["loss"].astype(float) if "loss" in columns else np.zeros(len(columns["p_noisy"])))
    fieldnames = list(columns)
    rows = [{key: _plain(columns[key][i]) for key in fieldnames} for i in order]
    atomic_write_csv(path, rows, fieldnames)


# The first characters that make a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """A text cell that a spreadsheet shows as text: one that starts like a formula (an image named
    ``=HYPERLINK(...).png``, a class folder ``+cmd``) gets a leading ``'``, as OWASP's CSV-injection
    page advises; every other text is unchanged."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value the CSV writer formats."""
    return value.item() if hasattr(value, "item") else value
