"""Readable summaries of (weighted) posterior draws: mean, sd and quantiles per scalar."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

import numpy as np

QUANTILES = (0.05, 0.5, 0.95)


def weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    order = np.argsort(x)
    cdf = np.cumsum(w[order])
    cdf = cdf / cdf[-1]
    return float(x[order][min(np.searchsorted(cdf, q), len(x) - 1)])


def display_order(names: Iterable[str], last: Collection[str] = ()) -> list[str]:
    """Random choices in address order, then the computed values (`last`), so that a long computed
    array never pushes a choice out of a truncated table."""
    names = list(names)
    return sorted(n for n in names if n not in last) + [n for n in last if n in names]


def rows(samples: Mapping[str, np.ndarray], weights: np.ndarray | None = None,
         last: Collection[str] = ()) -> list[tuple]:
    """(name, mean, sd, q05, q50, q95) for every scalar element of every address (`last` after)."""
    out = []
    for addr in display_order(samples, last):
        v = np.asarray(samples[addr], dtype=float)
        n = v.shape[0]
        w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, float)
        flat = v.reshape(n, -1)
        for j in range(flat.shape[1]):
            col = flat[:, j]
            idx = np.unravel_index(j, v.shape[1:]) if v.ndim > 1 else ()
            name = addr + (f"[{', '.join(str(int(i)) for i in idx)}]" if idx else "")
            mean = float(np.sum(w * col))
            sd = float(np.sqrt(max(np.sum(w * (col - mean) ** 2), 0.0)))
            out.append((name, mean, sd, *(weighted_quantile(col, w, q) for q in QUANTILES)))
    return out


def summarize(samples: Mapping[str, np.ndarray], weights: np.ndarray | None = None, max_rows: int = 40,
              last: Collection[str] = ()) -> str:
    table = rows(samples, weights, last)
    if not table:
        return "(no latent random choices)"
    width = max(8, max(len(r[0]) for r in table))
    head = f"{'':<{width}} {'mean':>10} {'sd':>10} {'5%':>10} {'50%':>10} {'95%':>10}"
    lines = [head]
    for r in table[:max_rows]:
        lines.append(f"{r[0]:<{width}} " + " ".join(f"{x:>10.4g}" for x in r[1:]))
    if len(table) > max_rows:
        lines.append(f"... {len(table) - max_rows} more rows")
    return "\n".join(lines)
