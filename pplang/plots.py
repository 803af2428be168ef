"""The figures every result draws, each into a matplotlib Figure or SubFigure, so that `plot()`
returns one Figure for a notebook and `plot(folder)` writes the same drawings as separate files.

Conventions: a discrete choice is shown as probabilities (bars, or a heat map over positions), never
as a mean with a band; a vector gets one panel per component; legends sit outside the data; the
figure's title names the model."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pplang.compiler.diagnostics import error
from pplang.files import folder_for, save_figure
from pplang.summary import display_order, weighted_quantile

PANELS = 16  # at most this many panels of marginals
COMPONENTS = 4  # per-component panels of a short vector (a longer one is drawn against its index)
DISCRETE_VALUES = 50  # an integer choice with at most this many values is drawn as probabilities
PPC_PANELS = 4  # observed choices in a posterior predictive check
PPC_REPLICATES = 50  # replicated data sets drawn over the observed one
OUTSIDE = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": "small", "frameon": False}

Drawing = Callable[[Any], None]  # fills a Figure or SubFigure


def figure_class() -> Any:
    """matplotlib's Figure (not pyplot's: no global state, no screen), or a located error."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise error("plotting needs matplotlib, which is not installed", hint="pip install matplotlib") from None
    return Figure


def combined(title: str, sections: Sequence[tuple[str, Drawing, float]]) -> Any:
    """One Figure holding each section (name, drawing, height in inches) as a subfigure, stacked."""
    Figure = figure_class()
    heights = [h for _, _, h in sections]
    fig = Figure(figsize=(10, sum(heights) + 0.4), layout="constrained")
    fig.suptitle(title)
    subs = fig.subfigures(len(sections), 1, height_ratios=heights, squeeze=False)[:, 0] if len(sections) > 1 \
        else [fig]
    for sub, (_, draw, _) in zip(subs, sections):
        draw(sub)
    return fig


def write(folder: str | Path, title: str, sections: Sequence[tuple[str, Drawing, float]],
          overwrite: bool = False) -> list[Path]:
    """Each section drawn into its own Figure and written to folder/NAME (existing files of those
    names are replaced only with `overwrite`)."""
    Figure = figure_class()
    folder = folder_for(folder, [name for name, _, _ in sections], overwrite)
    paths = []
    for name, draw, height in sections:
        fig = Figure(figsize=(10, height + 0.4), layout="constrained")
        fig.suptitle(title)
        draw(fig)
        paths.append(save_figure(fig, folder / name, overwrite, dpi=110))
    return paths


def outside_legend(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**OUTSIDE)


def grid(fig: Any, count: int, ncols: int = 4) -> list[Any]:
    ncols = max(1, min(ncols, count))
    nrows = -(-count // ncols)
    return [fig.add_subplot(nrows, ncols, i + 1) for i in range(count)]


def is_discrete(values: np.ndarray) -> bool:
    """Integer or boolean draws over a short range (a discrete choice)."""
    v = np.asarray(values)
    if v.dtype.kind not in "biu" or v.size == 0:
        return False
    return int(v.max()) - int(v.min()) < DISCRETE_VALUES


def probabilities(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the values k from min to max, P(value = k)) of weighted draws along the first axis, per
    element of the rest: probabilities have shape (len(k), *rest)."""
    v = np.asarray(values).astype(int)
    ks = np.arange(v.min(), v.max() + 1)
    w = np.asarray(weights, float) / np.sum(weights)
    return ks, np.stack([np.tensordot(w, (v == k).astype(float), axes=1) for k in ks])


def uniform(n: int) -> np.ndarray:
    return np.full(n, 1.0 / n)


# ------------------------------------------------------------------ marginals


def marginals(draws: Mapping[str, np.ndarray], weights: np.ndarray | None = None,
              last: Collection[str] = ()) -> Drawing:
    """Posterior marginals of (weighted) draws with a leading draw axis: a discrete choice as
    probability bars (a heat map for an array of them), a continuous scalar as a histogram, a
    short vector one panel per component, a longer one its mean and 5-95% interval per index."""
    panels: list[tuple[str, Callable[[Any], None]]] = []
    for name in display_order(draws, last):
        v = np.asarray(draws[name])
        w = uniform(v.shape[0]) if weights is None else np.asarray(weights, float)
        if v.shape[0] == 0:
            continue
        if is_discrete(v):
            panels.append((name, lambda ax, v=v, w=w: discrete_panel(ax, v, w)))
        elif v.ndim == 1 or int(np.prod(v.shape[1:])) == 1:
            panels.append((name, lambda ax, v=v, w=w: histogram(ax, v.reshape(-1), w)))
        elif int(np.prod(v.shape[1:])) <= COMPONENTS:
            flat = v.reshape(v.shape[0], -1)
            for j in range(flat.shape[1]):
                index = ", ".join(str(int(i)) for i in np.unravel_index(j, v.shape[1:]))
                panels.append((f"{name}[{index}]", lambda ax, c=flat[:, j], w=w: histogram(ax, c, w)))
        else:
            panels.append((name, lambda ax, v=v, w=w: interval_panel(ax, v.reshape(v.shape[0], -1), w)))
    panels = panels[:PANELS]

    def draw(fig: Any) -> None:
        if not panels:
            fig.add_subplot().text(0.5, 0.5, "no latent random choices", ha="center", va="center")
            return
        for ax, (title, fill) in zip(grid(fig, len(panels)), panels):
            fill(ax)
            ax.set_title(title, fontsize=9)
            ax.tick_params(labelsize=7)

    return draw


def rows_of(panels: int, ncols: int = 4) -> int:
    return -(-panels // max(1, min(ncols, panels)))


def marginal_height(draws: Mapping[str, np.ndarray]) -> float:
    count = 0
    for v in draws.values():
        v = np.asarray(v)
        size = int(np.prod(v.shape[1:]))
        count += size if (1 < size <= COMPONENTS and not is_discrete(v)) else 1
    return 2.4 * rows_of(max(1, min(count, PANELS)))


def histogram(ax: Any, x: np.ndarray, w: np.ndarray) -> None:
    ok = np.isfinite(x)
    if not ok.any():
        ax.text(0.5, 0.5, "no finite draws", ha="center", va="center", transform=ax.transAxes)
        return
    edges = np.histogram_bin_edges(x[ok], bins="auto") if ok.sum() > 1 else 1  # bins from the draws, unweighted
    ax.hist(x[ok], bins=edges, weights=w[ok], density=True, alpha=0.7)
    ax.set_yticks([])


def discrete_panel(ax: Any, v: np.ndarray, w: np.ndarray) -> None:
    """P(value) as bars for a scalar; for an array, P(= 1) per index as bars when it is binary,
    else a heat map of P(value) per index."""
    ks, p = probabilities(v, w)
    p = p.reshape(len(ks), -1)
    if p.shape[1] == 1:
        ax.bar(ks, p[:, 0], width=0.8)
        ax.set_xticks(ks if len(ks) <= 12 else ks[:: -(-len(ks) // 12)])
        ax.set_ylabel("probability", fontsize=8)
        ax.set_ylim(0, 1)
    elif len(ks) <= 2 and ks[-1] == 1:
        ax.bar(np.arange(p.shape[1]), p[-1], width=0.8)
        ax.set_xlabel("index", fontsize=8)
        ax.set_ylabel("P(= 1)", fontsize=8)
        ax.set_ylim(0, 1)
    else:
        heat(ax, p.T, ks, "index")


def heat(ax: Any, p: np.ndarray, ks: np.ndarray, xlabel: str) -> None:
    """Probabilities p[position, value] as a heat map (value up, position across)."""
    image = ax.imshow(p.T, aspect="auto", origin="lower", vmin=0, vmax=1, cmap="Blues", interpolation="nearest",
                      extent=(-0.5, p.shape[0] - 0.5, ks[0] - 0.5, ks[-1] + 0.5))
    ax.set_yticks(ks if len(ks) <= 12 else ks[:: -(-len(ks) // 12)])
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("value", fontsize=8)
    ax.figure.colorbar(image, ax=ax, label="probability", fraction=0.05)


def interval_panel(ax: Any, flat: np.ndarray, w: np.ndarray) -> None:
    """Mean and 5-95% interval of each element of a long vector, against its index."""
    flat = flat.astype(float)
    ok = np.isfinite(flat).all(axis=1)  # draws with every element finite
    if not ok.any():
        ax.text(0.5, 0.5, "no finite draws", ha="center", va="center", transform=ax.transAxes)
        return
    flat, w = flat[ok], w[ok] / np.sum(w[ok])
    mean = w @ flat
    lo, hi = (np.array([weighted_quantile(flat[:, j], w, q) for j in range(flat.shape[1])]) for q in (0.05, 0.95))
    x = np.arange(flat.shape[1])
    ax.fill_between(x, lo, hi, alpha=0.3, label="5-95%")
    ax.plot(x, mean, lw=1.2, label="mean")
    ax.set_xlabel("index", fontsize=8)
    outside_legend(ax)


# ------------------------------------------------------------------ objective


def objective(values: np.ndarray, label: str) -> Drawing:
    """The objective per step and its moving average, drawn only where its window is full (a
    partial window at the start would average a few poor early steps and dip)."""
    values = np.asarray(values, float)

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        steps = np.arange(len(values))
        ax.plot(steps, values, lw=0.6, alpha=0.35, label="per step")
        if len(values):
            window = max(1, len(values) // 50)
            ax.plot(steps[window - 1:], moving_average(values, window)[window - 1:], lw=1.8,
                    label=f"moving average\n({window} steps)")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        outside_legend(ax)

    return draw


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the finite values among the last `window` (NaN where there are none)."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    sums = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
    counts = np.concatenate([[0], np.cumsum(ok)])
    lo = np.maximum(np.arange(1, len(v) + 1) - window, 0)
    n = counts[1:] - counts[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[1:] - sums[lo]) / np.maximum(n, 1), np.nan)


# ------------------------------------------------------------------ posterior predictive check


def ppc(observed: Mapping[str, np.ndarray], replicated: Mapping[str, np.ndarray]) -> Drawing:
    """Observed data against data replicated from the posterior (`replicated[a]`: a leading draw
    axis), one panel per observed choice: for discrete data the frequency of each value, observed
    (bars) against the replicates' 5-95% range; for continuous data the histogram of the observed
    values over those of replicated data sets."""
    names = [a for a in observed if a in replicated][:PPC_PANELS]

    def draw(fig: Any) -> None:
        if not names:
            fig.add_subplot().text(0.5, 0.5, "no observed choices", ha="center", va="center")
            return
        for ax, a in zip(grid(fig, len(names)), names):
            obs = np.asarray(observed[a]).reshape(-1).astype(float)
            rep = np.asarray(replicated[a]).reshape(np.shape(replicated[a])[0], -1)
            rep = rep[np.isfinite(rep.astype(float)).all(axis=1)]  # replicated data sets without NaN
            if not rep.size or not np.isfinite(obs).all():
                ax.text(0.5, 0.5, "no finite replicated data", ha="center", va="center", transform=ax.transAxes)
            elif is_discrete(rep) and np.array_equal(obs, np.round(obs)) and \
                    obs.max() - obs.min() < DISCRETE_VALUES:
                discrete_ppc(ax, obs.astype(int), rep.astype(int))
            else:
                continuous_ppc(ax, obs, rep.astype(float))
            ax.set_title(f"{a}: observed and replicated", fontsize=9)
            ax.tick_params(labelsize=7)
        outside_legend(ax)

    return draw


def discrete_ppc(ax: Any, obs: np.ndarray, rep: np.ndarray) -> None:
    ks = np.arange(min(obs.min(), rep.min()), max(obs.max(), rep.max()) + 1)
    freq_obs = np.array([(obs == k).mean() for k in ks])
    freq_rep = np.stack([(rep == k).mean(axis=1) for k in ks], axis=1)  # (draws, values)
    lo, mid, hi = np.quantile(freq_rep, (0.05, 0.5, 0.95), axis=0)
    ax.bar(ks, freq_obs, width=0.8, alpha=0.6, label="observed")
    ax.errorbar(ks, mid, yerr=[mid - lo, hi - mid], fmt="o", ms=3, color="black", label="replicated (median, 5-95%)")
    ax.set_xticks(ks if len(ks) <= 12 else ks[:: -(-len(ks) // 12)])
    ax.set_ylabel("frequency", fontsize=8)


def continuous_ppc(ax: Any, obs: np.ndarray, rep: np.ndarray) -> None:
    lo, hi = np.quantile(np.concatenate([obs, rep.reshape(-1)]), (0.005, 0.995))
    edges = np.histogram_bin_edges(obs, bins="auto", range=(lo, hi) if hi > lo else None)
    if len(edges) < 6:
        edges = np.linspace(edges[0], edges[-1], 6)
    take = np.linspace(0, rep.shape[0] - 1, min(PPC_REPLICATES, rep.shape[0])).astype(int)
    for n, i in enumerate(take):
        ax.hist(rep[i], bins=edges, density=True, histtype="step", color="tab:blue", alpha=0.15, lw=0.8,
                label="replicated" if n == 0 else None)
    ax.hist(obs, bins=edges, density=True, histtype="step", color="black", lw=1.8, label="observed")
    ax.set_yticks([])


# ------------------------------------------------------------------ over time (filters)


def time_series(ax: Any, mean: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None, label: str) -> None:
    x = np.arange(mean.shape[0])
    if lo is not None and hi is not None:
        ax.fill_between(x, lo, hi, alpha=0.3, label="5-95%")
    ax.plot(x, mean, lw=1.4, label=label)
