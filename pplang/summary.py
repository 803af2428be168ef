"""Posterior summaries of (weighted) draws: the row data every result's table is made of, and the
text table the command line prints.

`site_rows` computes the data: one `SiteRows` per address, in model order (the order the choices
appear in the model, then the values it computes), each with one `Row` per scalar element. A
continuous element has mean, sd, the asked-for quantiles, optionally a highest-density interval
(arviz.hdi) and, where the method has them, its effective sample size and Monte Carlo standard
error; a discrete one (integer or boolean draws taking few values) has a probability per value
instead. `format_table` renders them as text, array entries indented under their site; anything
else (HTML, JSON) reads the rows.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

QUANTILES = (0.05, 0.5, 0.95)
MAX_LEVELS = 10  # a discrete choice taking at most this many values is summarized by their probabilities
# The order of the statistic columns, those a table has (quantiles and the interval go after sd).
DIAGNOSTIC_COLUMNS = ("mcse_mean", "ess", "ess_bulk", "ess_tail", "r_hat")


@dataclass
class Row:
    """One scalar element of a site (`index` () for a scalar site). `stats`: mean, sd, quantiles
    (`"5%"`, ...), the HDI (`"hdi_5%"`, `"hdi_95%"`) and what the method diagnoses (`mcse_mean`,
    `ess` or `ess_bulk`/`ess_tail`, `r_hat`); for a discrete element `probabilities` maps each value
    drawn to its posterior probability, and `stats` holds only the diagnostics."""

    site: str
    index: tuple[int, ...]
    stats: dict[str, float] = field(default_factory=dict)
    probabilities: dict[int, float] | None = None

    @property
    def name(self) -> str:
        """`site` or `site[i, j]`, as ArviZ names an element."""
        return self.site + (f"[{', '.join(str(i) for i in self.index)}]" if self.index else "")


@dataclass
class SiteRows:
    """The rows of one address: a random choice or (`computed`) a value the model computes."""

    site: str
    shape: tuple[int, ...]
    discrete: bool
    computed: bool
    rows: list[Row]


def display_order(names: Iterable[str], last: Collection[str] = (), order: Sequence[str] = ()) -> list[str]:
    """Random choices first, then the computed values (`last`), so that a long computed array never
    pushes a choice out of a truncated table; each group in model order (`order`: the addresses as
    the model declares them), names the order does not know after, alphabetically."""
    names = list(names)
    rank: dict[str, int] = {}
    for i, n in enumerate(order):  # a name's first place (a recovered choice is also a computed value)
        rank.setdefault(n, i)

    def key(n: str) -> tuple:
        return (n in last, n not in rank, rank.get(n, 0), n)

    return sorted(names, key=key)


def is_discrete(values: np.ndarray) -> bool:
    """Integer or boolean draws taking at most MAX_LEVELS values: a probability table says more than a mean."""
    v = np.asarray(values)
    return v.dtype.kind in "biu" and v.size > 0 and np.unique(v).size <= MAX_LEVELS


def weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    """The smallest draw whose weighted cumulative probability reaches `q`."""
    order = np.argsort(x)
    cdf = np.cumsum(w[order])
    cdf = cdf / cdf[-1]
    return float(x[order][min(np.searchsorted(cdf, q), len(x) - 1)])


def hdi(x: np.ndarray, prob: float) -> tuple[float, float]:
    """The highest-density interval of draws `x` (arviz.hdi)."""
    from pplang.inference.mcmc_result import arviz

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        low, high = np.asarray(arviz().hdi(np.asarray(x, float), hdi_prob=prob), float).ravel()[:2]
    return float(low), float(high)


def hdi_labels(prob: float) -> tuple[str, str]:
    """Column names of an HDI of probability `prob`, as ArviZ names them (`hdi_5%`, `hdi_95%`)."""
    tail = 100 * (1 - prob) / 2
    return f"hdi_{tail:g}%", f"hdi_{100 - tail:g}%"


def quantile_label(q: float) -> str:
    return f"{100 * q:g}%"


def site_rows(draws: Mapping[str, np.ndarray], weights: np.ndarray | None = None, *,
              order: Sequence[str] = (), computed: Collection[str] = (),
              quantiles: Sequence[float] = QUANTILES, hdi_prob: float | None = None,
              ess: float | None = None, diagnostics: Mapping[str, Mapping[str, float]] | None = None,
              ) -> list[SiteRows]:
    """The summary rows of `draws` (each with a leading draw axis), weighted by `weights` (normalized
    or not; None: equal). `order`: the model's order of its addresses; `computed`: which of them the
    model computes (listed after the choices). `ess`: the effective sample size every row shares
    (importance sampling: the weights' ESS), which gives each mean its MCSE, sd / sqrt(ESS);
    `diagnostics`: per-row statistics by row name (MCMC's ess_bulk, ess_tail, mcse_mean, r_hat).
    Non-finite draws are left out of an element's statistics."""
    out = []
    for site in display_order(draws, computed, order):
        v = np.asarray(draws[site])
        n = v.shape[0]
        w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, float) / np.sum(weights)
        discrete = is_discrete(v)
        flat = v.reshape(n, -1)
        rows = []
        for j in range(flat.shape[1]):
            index = tuple(int(i) for i in np.unravel_index(j, v.shape[1:])) if v.ndim > 1 else ()
            row = Row(site, index)
            column = flat[:, j]
            if discrete:
                row.probabilities = {int(x): float(np.sum(w[column == x])) for x in np.unique(column)}
            else:
                row.stats = continuous_stats(column.astype(float), w, quantiles, hdi_prob, weights is not None)
                if ess is not None and ess > 0:
                    row.stats["mcse_mean"] = row.stats["sd"] / math.sqrt(ess)
            if ess is not None:
                row.stats["ess"] = float(ess)
            row.stats.update((diagnostics or {}).get(row.name, {}))
            rows.append(row)
        out.append(SiteRows(site, tuple(v.shape[1:]), discrete, site in computed, rows))
    return out


def continuous_stats(x: np.ndarray, w: np.ndarray, quantiles: Sequence[float], hdi_prob: float | None,
                     weighted: bool) -> dict[str, float]:
    ok = np.isfinite(x)
    x, w = x[ok], w[ok]
    labels = [quantile_label(q) for q in quantiles] + (list(hdi_labels(hdi_prob)) if hdi_prob else [])
    if not x.size or w.sum() <= 0:
        return dict.fromkeys(["mean", "sd", *labels], math.nan)
    w = w / w.sum()
    mean = float(np.sum(w * x))
    stats = {"mean": mean, "sd": float(np.sqrt(max(np.sum(w * (x - mean) ** 2), 0.0)))}
    for q, label in zip(quantiles, labels, strict=False):
        stats[label] = weighted_quantile(x, w, q) if weighted else float(np.quantile(x, q))
    if hdi_prob:
        # weighted draws: the interval of an equally weighted resample of them (fixed seed)
        drawn = x if not weighted else x[np.random.default_rng(0).choice(x.size, size=x.size, p=w)]
        stats[labels[-2]], stats[labels[-1]] = hdi(drawn, hdi_prob)
    return stats


def columns_of(sites: Sequence[SiteRows]) -> list[str]:
    """The statistic columns the rows have, in table order: mean, sd, quantiles and interval, then
    the diagnostics."""
    seen: dict[str, None] = {}
    for s in sites:
        for r in s.rows:
            seen.update(dict.fromkeys(r.stats))
    head = [c for c in seen if c not in DIAGNOSTIC_COLUMNS]
    return head + [c for c in DIAGNOSTIC_COLUMNS if c in seen]


def cell(column: str, value: float) -> str:
    if column.startswith("ess") and np.isfinite(value):
        return f"{value:>10.0f}"
    return f"{value:>10.4g}" if column != "r_hat" else f"{value:>10.3f}"


def probability_text(probabilities: Mapping[int, float]) -> str:
    return "  ".join(f"{v}: {p:.3f}" for v, p in probabilities.items())


def format_table(sites: Sequence[SiteRows], max_rows: int | None = 40, columns: Sequence[str] | None = None) -> str:
    """The rows as a text table: a line per scalar site; an array site's name on a line of its own
    with its entries indented under it; a discrete element's probabilities (`value: probability`)
    in place of mean, sd and quantiles. At most `max_rows` element lines (None: all)."""
    if not sites:
        return "(no latent random choices)"
    columns = list(columns or columns_of(sites))
    labels = [f"  {r.name[len(s.site):]}" if r.index else s.site for s in sites for r in s.rows]
    width = max(8, *(len(label) for label in labels), *(len(s.site) for s in sites))
    lines = [f"{'':<{width}} " + " ".join(f"{c:>10}" for c in columns)]
    shown, total = 0, sum(len(s.rows) for s in sites)
    for s in sites:
        if max_rows is not None and shown >= max_rows:
            break
        if s.shape:
            lines.append(f"{s.site} ({'computed, ' if s.computed else ''}shape "
                         f"{', '.join(str(d) for d in s.shape)})")
        for r in s.rows:
            if max_rows is not None and shown >= max_rows:
                break
            label = f"  [{', '.join(str(i) for i in r.index)}]" if s.shape else r.site
            if r.probabilities is not None:
                lines.append(f"{label:<{width}} P  {probability_text(r.probabilities)}")
            else:
                lines.append(f"{label:<{width}} " + " ".join(cell(c, r.stats.get(c, math.nan)) for c in columns))
            shown += 1
    if shown < total:
        lines.append(f"... {total - shown} more rows")
    return "\n".join(lines)


def summarize(samples: Mapping[str, np.ndarray], weights: np.ndarray | None = None, max_rows: int | None = 40,
              last: Collection[str] = (), *, order: Sequence[str] = (), quantiles: Sequence[float] = QUANTILES,
              hdi_prob: float | None = None, ess: float | None = None) -> str:
    """The text table of draws (see `site_rows` and `format_table`)."""
    return format_table(site_rows(samples, weights, order=order, computed=last, quantiles=quantiles,
                                  hdi_prob=hdi_prob, ess=ess), max_rows)


def check_quantiles(quantiles: Sequence[float]) -> tuple[float, ...]:
    """Quantiles as a tuple of numbers in [0, 1], or a located error."""
    from pplang.compiler.diagnostics import error

    try:
        qs = tuple(float(q) for q in quantiles)
    except (TypeError, ValueError):
        raise error(f"quantiles must be numbers in [0, 1], got {quantiles!r}", hint="for example (0.05, 0.5, 0.95)") \
            from None
    bad = [q for q in qs if not 0.0 <= q <= 1.0]
    if bad:
        raise error(f"quantiles must be in [0, 1], got {bad[0]:g}", hint="for example 0.025,0.5,0.975")
    return qs


def check_hdi(prob: float | None) -> float | None:
    """An HDI probability in (0, 1) (or None: no interval), or a located error."""
    from pplang.compiler.diagnostics import error

    if prob is None:
        return None
    if not isinstance(prob, (int, float)) or isinstance(prob, bool) or not 0.0 < prob < 1.0:
        raise error(f"the HDI probability must be in (0, 1), got {prob!r}", hint="for example 0.9")
    return float(prob)
