"""`Table`: one object, written as markdown and as HTML (expected texts written out by hand)."""

from latentmix.summary_tables import mark_paper_footnotes, value_table
from latentmix.table import Cell, Table


def _table() -> Table:
    return Table("spiral: best accuracy (%)", ["method", "0%", "asym. 20%"],
                 [("ce", [Cell("92.7 ± 0.4 (93.7)", bold=True), Cell("–")]),
                  ("lr-m(1|2) <x>", [Cell("91.0"), Cell("80.5 ± 1.0", bold=True)])],
                 notes=["† a note"])


def test_markdown():
    assert _table().markdown() == (
        "**spiral: best accuracy (%)**\n"
        "\n"
        "| method | 0% | asym. 20% |\n"
        "|---|---|---|\n"
        "| ce | **92.7 ± 0.4 (93.7)** | – |\n"
        "| lr-m(1|2) <x> | 91.0 | **80.5 ± 1.0** |\n"
        "\n"
        "† a note\n")


def test_html_from_the_same_rows():
    # a row name holding "|" stays one cell (the HTML is not re-read from the markdown)
    assert _table().html() == "\n".join([
        "<table>",
        "<caption>spiral: best accuracy (%)</caption>",
        "<thead><tr><th>method</th><th>0%</th><th>asym. 20%</th></tr></thead>",
        "<tbody>",
        "<tr><th>ce</th><td><strong>92.7 ± 0.4 (93.7)</strong></td><td>–</td></tr>",
        "<tr><th>lr-m(1|2) &lt;x&gt;</th><td>91.0</td><td><strong>80.5 ± 1.0</strong></td></tr>",
        "</tbody></table>",
        '<p class="note">† a note</p>',
    ])


def test_value_table_cells_and_footnotes():
    # paper Table 1, last accuracy at 0% noise: LR-M-DYR-H 84.6, footnoted as a likely typo
    results = [{"row": "lr-m-dyr-h", "noise": 0.0, "last_val_acc": value} for value in (0.90, 0.92)]
    results += [{"row": "ce", "noise": 0.0, "last_val_acc": 0.95}]
    paper = {"ce": 93.0, "lr-m-dyr-h": 84.6}
    table = value_table(results, "last_val_acc", ["ce", "lr-m-dyr-h"], [0.0], title="t",
                        paper=lambda row, noise: paper[row])
    assert table.columns == ["method", "0%"]
    assert [(label, [(c.text, c.bold) for c in cells]) for label, cells in table.rows] == [
        ("ce", [("95.0 (93.0)", True)]), ("lr-m-dyr-h", [("91.0 ± 1.4 (84.6)", False)])]
    marked = mark_paper_footnotes(table, "last", [0.0])
    assert marked.row("lr-m-dyr-h")[0].text == "91.0 ± 1.4 (84.6†)" and marked.row("ce")[0].text == "95.0 (93.0)"
    assert marked.notes == ["† Paper, lr-m-dyr-h last at 0%: 84.6 as printed; very likely a typo for 94.6."]
    assert mark_paper_footnotes(value_table(results, "best_val_acc", ["ce"], [0.0]), "best", [0.0]).notes == []
