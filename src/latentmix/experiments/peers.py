"""`latentmix reproduce fashion-mnist --peers`: the peer table of issue 27.

CE, the paper's methods (M-DYR-H: input mixup with hard bootstrapping; LR-M-DYR-H: the tool's
default, latent mixup over layers 0-2), the peers the tool trains (GCE, SCE, ELR, Co-teaching,
DivideMix) and their latent-mixup compositions (LR-M-ELR, LR-M-Co-teaching, LR-DivideMix;
docs/peers.md) on the CPU-sized Fashion-MNIST table of `latentmix.experiments.fashion`
(the same subset, models, schedules and files: table.md, results.csv, runs.csv, summary.json,
cost.csv, the curves), at the noise of the issue: 20/50/80% symmetric and 20/40% class-dependent,
3 seeds. No 0% column: the peer table asks which method to pick when labels are noisy.

Beside the mean ± std tables it writes the paired differences (`write_paired`): per seed, each
method's selected test accuracy minus LR-M-DYR-H's (the same seed has the same noisy labels, data
order and initial weights for every method, so a difference of one seed carries none of the spread
those bring), their mean and min/max over seeds, and a marker (▲) where a method beats every
latentmix method of the table on every seed (`summary_tables.beats_beyond_spread`): "beyond the seed
spread" means that the whole range of its paired differences lies above zero. Then who leads each
noise column (`cell_leaders`): the best latentmix row against the best other row.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from latentmix.experiments.fashion import FashionTable, display_row, reproduce_fashion_mnist
from latentmix.io import atomic_write_csv
from latentmix.methods import is_latentmix
from latentmix.summary_tables import aggregate, beats_beyond_spread, column_label, noise_column, seed_differences

__all__ = ["PEER_METHODS", "PEER_TABLE", "REFERENCE", "PAIRED_KEY", "MARK", "latentmix_rows", "paired_rows",
           "paired_markdown", "write_paired", "reproduce_fashion_peers", "recorded_layers", "cell_leaders",
           "cell_leaders_markdown"]

# The table's rows. LR-M-ELR is the one composed one-network peer: ELR is the strongest peer of
# docs/peers.md's one-seed cell, and LR-M-GCE / LR-M-SCE would add 30 MLP runs (~8 min) to a table
# that must leave room for the two-network peers. Co-teaching and DivideMix come as the papers'
# and with latent mixing (lr-m-coteaching, lr-dividemix).
PEER_METHODS: tuple[str, ...] = ("ce", "m-dyr-h", "lr-m-dyr-h", "gce", "sce", "elr", "lr-m-elr", "coteaching",
                                 "lr-m-coteaching", "dividemix", "lr-dividemix")
PEER_NOISE_RATES: tuple[float, ...] = (0.2, 0.5, 0.8)
PEER_ASYMMETRIC_RATES: tuple[float, ...] = (0.2, 0.4)
REFERENCE = "lr-m-dyr-h"  # the tool's method: every paired difference is taken against it
PAIRED_KEY = "selected_val_acc"  # what a user without clean labels gets: the checkpoint picked on noisy labels
MARK = "▲"


def recorded_layers(mix_layers) -> tuple[int, ...]:
    """A run record's `mix_layers` ("0-2", "1-2", "0,2", "0-0", "none", "") as layer numbers."""
    text = str(mix_layers or "").strip()
    if not text or text == "none":
        return ()
    layers: list[int] = []
    for part in text.split(","):
        ends = [int(p) for p in part.split("-") if p.strip().isdigit()]
        layers += list(range(ends[0], ends[-1] + 1)) if ends else []
    return tuple(layers)


def latentmix_rows(results: Sequence[dict], rows: Sequence[str]) -> list[str]:
    """The table's rows that are latentmix's own methods (`latentmix.methods.is_latentmix`: a
    correction with the noise model, or latent mixup alone or composed with a peer's loss; issue
    27 counts "a better combination, a latent-mixup DivideMix" as the tool's answer), in table
    order; a peer as its paper has it (GCE, SCE, ELR, Co-teaching, DivideMix with input MixMatch)
    is not one. Read from the runs' records, so a row named with layers counts too."""
    ours = {r["row"] for r in results if is_latentmix(r.get("correction") or "none", recorded_layers(r.get("mix_layers")))}
    return [row for row in rows if row in ours]


def paired_rows(results: Sequence[dict], rows: Sequence[str], columns: Sequence, reference: str = REFERENCE,
                key: str = PAIRED_KEY) -> list[dict]:
    """One line per (row, noise column) but the reference's: the per-seed differences row minus
    `reference` of `key` in points, their mean, min and max, and whether the row beats every
    latentmix row beyond the seed spread (never true for a latentmix row: it does not beat itself)."""
    ours = latentmix_rows(results, rows)
    columns = [c if isinstance(c, tuple) else noise_column(c) for c in columns]
    lines = []
    for row in rows:
        if row == reference:
            continue
        against_reference = seed_differences(results, row, reference, key)
        against_ours = [seed_differences(results, row, other, key) for other in ours]
        for column in columns:
            per_seed = against_reference.get(column, {})
            if not per_seed:
                continue
            values = list(per_seed.values())
            # a latentmix row is among `ours`: its difference to itself is 0 on every seed, never a win
            beats = beats_beyond_spread(list(d.get(column, {}).values()) for d in against_ours)
            kind, rate = column if isinstance(column, tuple) else ("symmetric", column)
            lines.append({"row": row, "reference": reference, "value": key, "noise": rate, "noise_kind": kind,
                          "n": len(values), "mean": sum(values) / len(values), "min": min(values), "max": max(values),
                          "per_seed": " ".join(f"{seed}:{value:+.2f}" for seed, value in per_seed.items()),
                          "beats_every_latentmix_method": beats})
    return lines


def paired_markdown(lines: Sequence[dict], rows: Sequence[str], columns: Sequence, ours: Sequence[str],
                    reference: str = REFERENCE) -> str:
    """The paired differences as markdown: "mean [min, max]" per cell, ▲ where it beats every
    latentmix method on every seed."""
    columns = [c if isinstance(c, tuple) else noise_column(c) for c in columns]
    cells = {(line["row"], noise_column(line["noise"], line["noise_kind"])): line for line in lines}
    header = (f"**Fashion-MNIST, selected test accuracy, each method minus {display_row(reference)}, points: mean "
              f"[min, max] of the per-seed paired differences; {MARK}: beats every latentmix method of the table "
              f"({', '.join(display_row(r) for r in ours) or 'none'}) on every seed**")
    table = [header, "", "| method | " + " | ".join(column_label(c) for c in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for row in rows:
        if row == reference:
            continue
        texts = []
        for column in columns:
            line = cells.get((row, column))
            texts.append("–" if line is None else f"{line['mean']:+.1f} [{line['min']:+.1f}, {line['max']:+.1f}]"
                         + (f" {MARK}" if line["beats_every_latentmix_method"] else ""))
        table.append(f"| {display_row(row)} | " + " | ".join(texts) + " |")
    return "\n".join(table) + "\n"


def cell_leaders(results: Sequence[dict], rows: Sequence[str], columns: Sequence, key: str = PAIRED_KEY,
                 ours: Optional[Sequence[str]] = None) -> list[dict]:
    """Per noise column, issue 27's question: the best latentmix method and the best other method
    (CE or a peer as its paper has it) by mean `key` over seeds, the gap between them in points
    (latentmix minus other: >= 0 means a latentmix method is at or above every other row), and
    whether that other row beats every latentmix row on every seed (the table's marker). `ours`:
    the latentmix rows, where the records do not say (default: `latentmix_rows`)."""
    ours = latentmix_rows(results, rows) if ours is None else list(ours)
    stats = aggregate(results, key)
    lines = []
    for column in [c if isinstance(c, tuple) else noise_column(c) for c in columns]:
        def best(candidates):
            scored = [(stats[(row, column)]["mean"], row) for row in candidates if (row, column) in stats]
            return max(scored) if scored else None
        ours_best, theirs_best = best(ours), best([row for row in rows if row not in ours])
        if ours_best is None or theirs_best is None:
            continue
        theirs = theirs_best[1]
        marked = beats_beyond_spread(list(seed_differences(results, theirs, row, key).get(column, {}).values())
                                     for row in ours)
        lines.append({"column": column, "latentmix_row": ours_best[1], "latentmix_mean": ours_best[0],
                      "other_row": theirs, "other_mean": theirs_best[0], "gap": ours_best[0] - theirs_best[0],
                      "other_beats_every_latentmix_method": marked})
    return lines


def cell_leaders_markdown(lines: Sequence[dict]) -> str:
    """The leaders table: one line per noise column, the gap in points, ▲ as in the paired table."""
    table = ["**Fashion-MNIST, selected test accuracy: the best latentmix method and the best other method "
             f"of each column (mean over seeds), and the gap between them in points; {MARK}: the other method "
             "beats every latentmix method on every seed**", "",
             "| noise | best latentmix method | best other method | latentmix minus other |", "|---|---|---|---|"]
    for line in lines:
        table.append(f"| {column_label(line['column'])} | {display_row(line['latentmix_row'])} "
                     f"{line['latentmix_mean']:.1f} | {display_row(line['other_row'])} {line['other_mean']:.1f} | "
                     f"{line['gap']:+.1f}" + (f" {MARK}" if line["other_beats_every_latentmix_method"] else "") + " |")
    return "\n".join(table) + "\n"


def write_paired(results: Sequence[dict], out: Path, rows: Sequence[str], columns: Sequence) -> str:
    """The peer table's `FashionTable.extra`: paired_differences.csv (one line per row and noise
    column, the per-seed differences included) and the markdown for table.md; a note instead where
    the reference row was not run (--methods without it)."""
    if REFERENCE not in rows:
        return (f"(No paired differences: the table has no {display_row(REFERENCE)} row to take them against; "
                f"add {REFERENCE} to --methods.)\n")
    lines = paired_rows(results, rows, columns)
    atomic_write_csv(Path(out) / "paired_differences.csv", lines)
    leaders = cell_leaders(results, rows, columns)
    return (paired_markdown(lines, rows, columns, latentmix_rows(results, rows))
            + ("\n" + cell_leaders_markdown(leaders) if leaders else ""))


PEER_TABLE = FashionTable("fashion-mnist-peers", PEER_METHODS, PEER_NOISE_RATES, PEER_ASYMMETRIC_RATES,
                          extra=write_paired)


def reproduce_fashion_peers(args: argparse.Namespace) -> int:
    """`reproduce fashion-mnist --peers`: the Fashion-MNIST table with the peer preset (rows, noise
    columns, default folder runs/reproduce-fashion-mnist-peers[-mlp]) and its paired differences."""
    return reproduce_fashion_mnist(args, PEER_TABLE)
