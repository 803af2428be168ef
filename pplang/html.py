"""HTML for notebooks: a result's facts and its summary table, from the same rows as its text summary."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

import numpy as np


def cell(x: Any) -> str:
    if isinstance(x, (float, np.floating)):
        return "" if np.isnan(x) else f"{float(x):.4g}"
    return escape(str(x))


def table(title: str, notes: Sequence[str], labels: Sequence[str], rows: Sequence[Sequence[Any]],
          max_rows: int = 40) -> str:
    """A titled HTML table: `notes` (facts, warnings) above, a header of `labels` (the first for the
    row names), then `rows`, at most `max_rows` of them (a last row counts the rest)."""
    parts = [f"<div class='pplang-result'><strong>{escape(title)}</strong>"]
    if notes:
        parts.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    if rows:
        head = "".join(f"<th>{escape(str(label))}</th>" for label in labels)
        body = ["<tr>" + "".join(f"<td>{cell(x)}</td>" if i else f"<th>{cell(x)}</th>" for i, x in enumerate(r))
                + "</tr>" for r in rows[:max_rows]]
        if len(rows) > max_rows:
            body.append(f"<tr><td colspan='{len(labels)}'>... {len(rows) - max_rows} more rows</td></tr>")
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    parts.append("</div>")
    return "".join(parts)


def sites_table(title: str, notes: Sequence[str], sites: Sequence[Any], max_rows: int = 40) -> str:
    """`table` of a result's summary rows (pplang.summary.site_rows), the columns its text table
    has; a discrete element's probabilities (`value: probability`) in its first column."""
    from pplang.summary import columns_of, probability_text

    columns = columns_of(sites)
    rows = []
    for s in sites:
        for r in s.rows:
            if r.probabilities is not None:
                rows.append([r.name, f"P {probability_text(r.probabilities)}", *[""] * (len(columns) - 1)])
            else:
                rows.append([r.name, *(r.stats.get(c, float("nan")) for c in columns)])
    return table(title, notes, ["", *columns], rows, max_rows)
