"""Reading the summary tables pplang prints, for tests that check the numbers in them."""

from __future__ import annotations

import math
import re


def parse_rows(text: str) -> dict[str, tuple[float, float]]:
    """{row name: (mean, sd)} from a printed table of draws: scalar sites, the entries listed under an
    array's `name (shape ...)` line (as `name[i]`), and a discrete element's value probabilities
    (`P  0: 0.25  1: 0.75`, read as their mean and sd)."""
    rows, site = {}, None
    for line in text.splitlines():
        head = re.fullmatch(r"([A-Za-z_][\w/]*) \((?:computed, )?shape [\d, ]+\)", line)
        if head:
            site = head.group(1)
            continue
        row = re.fullmatch(r"(\s*)(\[[\d, ]+\]|[A-Za-z_][\w/]*)\s+(.*)", line)
        if not row or (row.group(1) and site is None):
            continue
        name = site + row.group(2) if row.group(1) else row.group(2)
        cells = row.group(3).split()
        if cells[:1] == ["P"]:
            values = [float(v.rstrip(":")) for v in cells[1::2]]
            probs = [float(x) for x in cells[2::2]]
            mean = sum(v * q for v, q in zip(values, probs, strict=True))
            rows[name] = (mean, math.sqrt(max(sum(v * v * q for v, q in zip(values, probs, strict=True)) - mean**2, 0)))
            continue
        try:
            numbers = [float(x) for x in cells]
        except ValueError:
            continue
        if len(numbers) >= 5:
            rows[name] = (numbers[0], numbers[1])
    return rows
