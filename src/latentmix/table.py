"""A results table as data, rendered as markdown and as HTML from the same rows and columns.

`latentmix.summary_tables.value_table` fills one (mean ± std over seeds per method and noise rate);
`markdown()` writes it for table.md / report.md, `html()` for report.html, so the two cannot
disagree and nothing re-reads markdown text.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class Cell:
    """One cell's text ("85.0 ± 7.1 (93.7)"); `bold` marks the best of its column."""

    text: str
    bold: bool = False


@dataclass
class Table:
    """A title, the column labels (the first labels the row names), labelled rows of cells, and
    notes shown below the table (footnotes)."""

    title: str
    columns: list[str]
    rows: list[tuple[str, list[Cell]]]
    notes: list[str] = field(default_factory=list)

    def row(self, label: str) -> Optional[list[Cell]]:
        """The cells of the row labelled `label` (None: no such row)."""
        return next((cells for name, cells in self.rows if name == label), None)

    def markdown(self) -> str:
        """The bold title, the table, then the notes after a blank line."""
        lines = [f"**{self.title}**", ""] if self.title else []
        lines += [f"| {self.columns[0]} | " + " | ".join(self.columns[1:]) + " |", "|" + "---|" * len(self.columns)]
        for label, cells in self.rows:
            lines.append(f"| {label} | " + " | ".join(f"**{c.text}**" if c.bold else c.text for c in cells) + " |")
        text = "\n".join(lines) + "\n"
        return text + ("\n" + "\n".join(self.notes) + "\n" if self.notes else "")

    def html(self) -> str:
        """An HTML table: the title as its caption, row names as row headers, the best of each
        column in <strong>; the notes as paragraphs below it."""
        esc = html.escape
        parts = ["<table>"]
        if self.title:
            parts.append(f"<caption>{esc(self.title)}</caption>")
        parts.append("<thead><tr>" + "".join(f"<th>{esc(label)}</th>" for label in self.columns) + "</tr></thead>")
        parts.append("<tbody>")
        for label, cells in self.rows:
            parts.append(f"<tr><th>{esc(label)}</th>" + "".join(
                f"<td><strong>{esc(c.text)}</strong></td>" if c.bold else f"<td>{esc(c.text)}</td>" for c in cells)
                + "</tr>")
        parts.append("</tbody></table>")
        parts += [f'<p class="note">{esc(note)}</p>' for note in self.notes]
        return "\n".join(parts)
