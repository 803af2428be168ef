"""What `pplang.inference.mcmc.sample` returns: draws per chain, per-draw sampler statistics, and the
convergence diagnostics (computed by ArviZ) with warnings that say what to do about each problem."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pplang import html, plots
from pplang import runtime as rt
from pplang.compiler.diagnostics import error
from pplang.compiler.transforms.marginalize import unscored
from pplang.data import Bound
from pplang.files import check_target, new_folder
from pplang.inference import predictive as exports
from pplang.models import Model
from pplang.results import columns, json_text, load_folder, write_files
from pplang.runtime.archives import load_npz
from pplang.summary import QUANTILES, SiteRows, check_hdi, check_quantiles, format_table, site_rows

COLUMNS = ("mean", "sd", "5%", "50%", "95%", "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat")
DIAGNOSED = ("mcse_mean", "ess_bulk", "ess_tail", "r_hat")  # the per-row diagnostics the summary shows
RHAT_LIMIT = 1.01
ESS_PER_CHAIN = 100  # bulk and tail ESS below 100 per chain are too few to trust the estimates (Vehtari et al. 2021)
BFMI_LIMIT = 0.3
PANELS = 16  # trace and rank plots show the first choices in address order, at most this many scalars
BATCH = 1024  # draws evaluated per vmapped call when mapping draws back to the model


def run_impl(model: Model, bound: Bound, ctx: rt.Context, key: Any, arrays: Mapping[str, Any]) -> tuple:
    """The generated function under `ctx`: (retval, trace, score), errors located at the model line."""
    env = {**bound.static, **arrays}
    try:
        return model.impl(ctx, key, *[env[a] for a, _ in model.fn.args])
    except (TypeError, ValueError, IndexError, ZeroDivisionError) as e:
        raise model.located(e) from None


def arviz() -> Any:
    """The arviz module, which MCMC's diagnostics are computed by (predictive.arviz)."""
    return exports.arviz("MCMC diagnostics need")


def batched(fn: Any, tree: Any, n: int) -> Any:
    """`fn` (vmapped, jitted) over the leading axis of `tree` in batches, concatenated as numpy."""
    parts = [jax.tree.map(np.asarray, fn(jax.tree.map(lambda v, i=i: v[i:i + BATCH], tree)))
             for i in range(0, n, BATCH)]
    return jax.tree.map(lambda *p: np.concatenate(p), *parts)


_MAPPERS: dict[tuple, tuple[Model, Any]] = {}


def mapper(model: Model, bound: Bound, sites: tuple, param_addrs: frozenset) -> Any:
    """A jitted `(positions (n, D), observed, params, arrays) -> (latent values, observed log
    densities)`, one per model and static configuration, so that reruns do not recompile."""
    key = (id(model), tuple(sorted(bound.static.items())), sites, frozenset(bound.observed), param_addrs)
    hit = _MAPPERS.get(key)
    if hit is not None and hit[0] is model:
        return hit[1]
    latents = frozenset(s.address for s in sites)
    # with discrete choices summed out, what depends on one counts in its term `marginal:<address>`
    skip = unscored(model.fn) if model.marginalized else set()

    def one(x: Any, observed: dict, params: dict, arrays: dict) -> tuple:
        given = {s.address: x[s.start:s.stop].reshape(s.ushape) for s in sites}
        ctx = rt.Context({**observed, **given}, params, model.hosts, latents, complete=True, record=True)
        _, trace, score = run_impl(model, bound, ctx, jax.random.key(0), arrays)
        counted = [a for a in observed if a not in skip] + [a for a in score.terms if a.startswith("marginal:")]
        return {a: trace[a] for a in latents}, {a: score.terms[a] for a in counted if a in score.terms}

    fn = jax.jit(jax.vmap(one, in_axes=(0, None, None, None)))
    if len(_MAPPERS) >= 32:
        _MAPPERS.clear()
    _MAPPERS[key] = (model, fn)
    return fn


@dataclass
class SampleResult:
    """MCMC draws. `draws[address]` has shape (chains, draws, *shape), constrained; `stats[name]`
    (chains, draws) per-draw sampler statistics (diverging, tree_depth (NUTS), n_steps,
    acceptance_rate, energy, lp); `adapted` the step size and inverse mass matrix of each chain;
    `info` what was run. The model is kept (not saved) for log-likelihoods and predictive draws."""

    draws: dict[str, np.ndarray]
    stats: dict[str, np.ndarray]
    info: dict[str, Any]
    observed: dict[str, np.ndarray] = field(default_factory=dict)
    adapted: dict[str, np.ndarray] = field(default_factory=dict)
    model: Model | None = field(default=None, repr=False, compare=False)
    bound: Bound | None = field(default=None, repr=False, compare=False)
    params: dict | None = field(default=None, repr=False, compare=False)
    sites: list | None = field(default=None, repr=False, compare=False)
    unconstrained: np.ndarray | None = field(default=None, repr=False, compare=False)
    _pointwise: dict | None = field(default=None, repr=False, compare=False)
    _diagnostics: dict | None = field(default=None, repr=False, compare=False)

    @property
    def num_chains(self) -> int:
        return int(next(iter(self.stats.values())).shape[0])

    @property
    def num_draws(self) -> int:
        return int(next(iter(self.stats.values())).shape[1])

    def __repr__(self) -> str:
        return (f"SampleResult({self.info.get('method', 'nuts')}, model={self.info.get('model')!r}, "
                f"chains={self.num_chains}, draws={self.num_draws}, choices={sorted(self.draws)})")

    # ------------------------------------------------------------ back through the model

    def constrained(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """Constrained values of the latent choices at unconstrained positions (chains, n, D), and,
        kept for `log_likelihood`, the log density of each observed choice (pointwise over the
        iterations of vectorized loops)."""
        bound, params = self.bound, self.params or {}
        chains, n, dim = positions.shape
        fn = mapper(self.model, bound, tuple(self.sites), frozenset(params))
        values, terms = batched(lambda x: fn(x, bound.observed, params, bound.arrays),
                                jnp.asarray(positions.reshape(chains * n, dim)), chains * n)
        self._pointwise = {a: v.reshape(chains, n, *v.shape[1:]) for a, v in terms.items()}
        return {a: v.reshape(chains, n, *v.shape[1:]) for a, v in values.items()}

    def attached(self, what: str) -> tuple[Model, Bound]:
        if self.model is None or self.bound is None:
            raise error(f"{what} needs the model, and this result has none (it was loaded from disk)",
                        hint="sample again with pp.sample(model, data)")
        return self.model, self.bound

    def log_likelihood(self) -> dict[str, np.ndarray]:
        """Log density of each observed choice per draw: (chains, draws, *iterations) where the
        observation sits in vectorized loops (pointwise), else (chains, draws) for the choice's total.
        With discrete choices summed out, the observations that depend on one count together in
        `marginal:<address>`, their log density with the choice summed out (pointwise over the
        iterations of a mixture)."""
        self.attached("the log-likelihood")
        if self._pointwise is None:
            self.constrained(self.unconstrained)
        return dict(self._pointwise)

    def posterior_predictive(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Replicated observations: each observed choice drawn anew given each draw of the latents."""
        model, bound = self.attached("posterior predictive simulation")
        chains, n = self.num_chains, self.num_draws
        flat = {a: jnp.asarray(v.reshape(chains * n, *v.shape[2:])) for a, v in self.draws.items()}
        if model.full is not None:  # simulate from the full model, the summed-out choices recovered per draw
            data = {**bound.static, **bound.arrays, **bound.observed}
            model, flat = model.generative(flat, data, self.params, seed + 1)
            bound = model.bind(data)
        flat = {a: v for a, v in flat.items() if a in model.sites}
        runner = model.runner(bound, frozenset(flat), param_addrs=frozenset(self.params or {}))
        keys = jax.random.split(jax.random.key(seed), chains * n)
        fn = jax.jit(jax.vmap(lambda k, v: runner(k, v, self.params or {}, bound.arrays)[1]))
        values = batched(lambda tree: fn(*tree), (keys, flat), chains * n)
        return {a: values[a].reshape(chains, n, *values[a].shape[1:]) for a in bound.observed}

    # ------------------------------------------------------------ ArviZ

    def to_arviz(self, predictive: bool = True) -> Any:
        """An arviz.InferenceData: posterior, sample_stats, observed_data and, when the model is
        attached, log_likelihood and (with `predictive`) posterior_predictive, prior and
        prior_predictive (as many draws per chain as the posterior has)."""
        arviz()
        groups: dict[str, Any] = {"posterior": self.draws, "sample_stats": self.stats, "observed_data": self.observed}
        if self.model is not None:
            groups["log_likelihood"] = self.log_likelihood()
            if predictive and self.model.replicable:
                groups["posterior_predictive"] = self.posterior_predictive()
                chains, n = self.num_chains, self.num_draws
                before, implied = exports.prior(self.model, self.bound, chains * n, self.params, seed=1)
                groups["prior"], groups["prior_predictive"] = (
                    {a: v.reshape(chains, n, *v.shape[1:]) for a, v in d.items()} for d in (before, implied))
        return exports.inference_data(self.info, **groups)

    def numeric(self) -> dict[str, np.ndarray]:
        """The draws with booleans (recovered discrete choices) as 0/1 integers, which ArviZ's
        statistics and plots take."""
        return {a: v.astype(np.int8) if v.dtype == bool else v for a, v in self.draws.items()}

    def table(self) -> Any:
        """ArviZ's summary (a pandas DataFrame): mean, sd, quantiles, MCSE, bulk/tail ESS, R-hat."""
        az = arviz()
        funcs = {f"{100 * q:g}%": (lambda x, q=q: np.quantile(x, q)) for q in QUANTILES}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = az.summary(az.from_dict(posterior=self.numeric()), kind="all", stat_funcs=funcs, extend=True,
                               round_to="none")
        return frame[list(COLUMNS)]

    def diagnostics(self) -> dict[str, Any]:
        """Convergence and sampler diagnostics as data, with `warnings`: readable advice, one per
        problem (R-hat, ESS, divergences, tree depth, E-BFMI)."""
        if self._diagnostics is not None:
            return self._diagnostics
        az = arviz()
        frame = self.table()
        chains = self.num_chains
        out: dict[str, Any] = {"max_rhat": float(np.nanmax(frame["r_hat"])),
                               "min_ess_bulk": float(np.nanmin(frame["ess_bulk"])),
                               "min_ess_tail": float(np.nanmin(frame["ess_tail"]))}
        # NaN (a constant: a computed size, the fixed entries of a Cholesky factor) is no warning
        out["high_rhat"] = [str(k) for k, v in frame["r_hat"].items() if v > RHAT_LIMIT]
        limit = ESS_PER_CHAIN * chains
        out["low_ess_bulk"] = [str(k) for k, v in frame["ess_bulk"].items() if v < limit]
        out["low_ess_tail"] = [str(k) for k, v in frame["ess_tail"].items() if v < limit]
        diverging = np.asarray(self.stats["diverging"], bool)
        out["divergences"] = int(diverging.sum())
        out["divergent_parameters"] = divergent_parameters(self.draws, diverging)
        if "tree_depth" in self.stats:
            out["max_tree_depth_hits"] = int((self.stats["tree_depth"] >= self.info["max_tree_depth"]).sum())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bfmi = np.atleast_1d(az.bfmi(np.asarray(self.stats["energy"], float)))
        out["bfmi"] = [float(b) for b in bfmi]
        out["warnings"] = advice(out, self.info, self.num_draws * chains, limit)
        self._diagnostics = out
        return out

    def facts(self) -> list[str]:
        """The summary's header lines: what was run, divergences, observed choices, warnings."""
        i = self.info
        head = [f"{i.get('method', 'nuts').upper()} on {i.get('model')}: {self.num_chains} chains x {self.num_draws} "
                f"draws (warmup {i.get('warmup')}, thin {i.get('thin', 1)}), step size "
                + ", ".join(f"{s:.3g}" for s in np.ravel(self.adapted.get("step_size", [])))]
        d = self.diagnostics()
        head.append(f"divergences: {d['divergences']}")
        if self.observed:
            head.append(f"observed: {', '.join(self.observed)}")
        return head + [f"warning: {w}" for w in d["warnings"]]

    def rows(self, quantiles: Sequence[float] = QUANTILES, hdi_prob: float | None = None) -> list[SiteRows]:
        """The summary's row data (pplang.summary.site_rows) over all chains' draws, in model order,
        each continuous element with ArviZ's MCSE of the mean, bulk and tail ESS and R-hat."""
        frame = self.table()
        diagnostics = {str(name): {c: float(row[c]) for c in DIAGNOSED} for name, row in frame.iterrows()}
        flat = {a: v.reshape(-1, *v.shape[2:]) for a, v in self.draws.items()}
        return site_rows(flat, order=self.info.get("order", ()), computed=self.info.get("computed", ()),
                         quantiles=check_quantiles(quantiles), hdi_prob=check_hdi(hdi_prob), diagnostics=diagnostics)

    def problems(self) -> list[str]:
        """What makes these draws unreliable (empty when nothing does): R-hat above 1.01, too few
        effective draws (bulk or tail ESS below 100 per chain), divergent transitions."""
        d = self.diagnostics()
        out = []
        if d["high_rhat"]:
            out.append(f"R-hat {d['max_rhat']:.3f} > {RHAT_LIMIT}")
        if d["low_ess_bulk"] or d["low_ess_tail"]:
            out.append(f"ESS {min(d['min_ess_bulk'], d['min_ess_tail']):.0f} < {ESS_PER_CHAIN * self.num_chains}")
        if d["divergences"]:
            out.append(f"{d['divergences']} divergent transitions")
        return out

    def summary(self, quantiles: Sequence[float] = QUANTILES, hdi_prob: float | None = None,
                max_rows: int | None = 40) -> str:
        """What was run, the diagnostics warnings (what to do), then the table of every scalar (see `rows`)."""
        return "\n".join(self.facts()) + "\n\n" + format_table(self.rows(quantiles, hdi_prob), max_rows)

    def _repr_html_(self) -> str:
        return html.sites_table(f"{self.info.get('method', 'nuts').upper()} on {self.info.get('model')}",
                                self.facts(), self.rows())

    def plotted(self) -> list[str]:
        """The choices drawn in trace and rank plots: in address order, those that fit in PANELS
        scalars together (an array too long for them is left out; the first choice is always in)."""
        names, total = [], 0
        for a in sorted(self.draws):
            size = int(np.prod(self.draws[a].shape[2:]))
            if not names or total + size <= PANELS:
                names.append(a)
                total += size
        return names

    def trace_drawing(self) -> Any:
        """Per choice, the density of each chain and the draws against step (ArviZ's trace plot)."""
        names = self.plotted()

        def draw(fig: Any) -> None:
            axes = fig.subplots(len(names), 2, squeeze=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arviz().plot_trace(arviz().from_dict(posterior={a: self.numeric()[a] for a in names}), axes=axes,
                                   show=False)
        return draw

    def rank_drawing(self) -> Any:
        """Rank histograms per chain (ArviZ): flat when the chains mix, skewed when they disagree."""
        names = self.plotted()
        count = sum(int(np.prod(self.draws[a].shape[2:])) for a in names)

        def draw(fig: Any) -> None:
            axes = np.atleast_1d(fig.subplots(-(-count // 4), min(4, count), squeeze=False).ravel())
            for ax in axes[count:]:
                ax.set_visible(False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arviz().plot_rank(arviz().from_dict(posterior={a: self.numeric()[a] for a in names}), ax=axes[:count],
                                  show=False)
        return draw

    def sections(self) -> list[tuple[str, Any, float]]:
        rows = len(self.plotted())
        count = sum(int(np.prod(self.draws[a].shape[2:])) for a in self.plotted())
        out = [("trace.png", self.trace_drawing(), 1.8 * rows + 0.4),
               ("rank.png", self.rank_drawing(), 2.2 * -(-count // 4))]
        if self.model is not None and self.observed and self.model.replicable:
            out.append(("ppc.png", plots.ppc(self.observed, self.flat(self.posterior_predictive())), 2.8))
        return out

    def flat(self, draws: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Chains and draws as one leading axis."""
        return {a: v.reshape(-1, *v.shape[2:]) for a, v in draws.items()}

    def plot(self, folder: str | Path | None = None, overwrite: bool = False) -> Any:
        """A matplotlib Figure: the trace plot, the rank plot and, with the model attached, a
        posterior predictive check. With `folder`, the same as trace.png, rank.png and ppc.png
        written there (existing ones replaced only with `overwrite`), and the paths returned."""
        title = f"{self.info.get('method', 'nuts').upper()} on {self.info.get('model')}"
        if folder is not None:
            return plots.write(folder, title, self.sections(), overwrite)
        return plots.combined(title, self.sections())

    def plot_trace(self, path: str | Path, overwrite: bool = False) -> Path:
        """The trace plot (see `trace_drawing`) written to `path` (replaced only with `overwrite`)."""
        return self.write_one(self.sections()[0], path, overwrite)

    def plot_rank(self, path: str | Path, overwrite: bool = False) -> Path:
        """The rank plot (see `rank_drawing`) written to `path` (replaced only with `overwrite`)."""
        return self.write_one(self.sections()[1], path, overwrite)

    def write_one(self, section: tuple[str, Any, float], path: str | Path, overwrite: bool) -> Path:
        path = check_target(path, "file", overwrite, "plot")
        return plots.write(path.parent, f"{self.info.get('method', 'nuts').upper()} on {self.info.get('model')}",
                           [(path.name, *section[1:])], overwrite)[0]

    # ------------------------------------------------------------ saving

    def to_json(self) -> dict[str, Any]:
        """Info, adapted step sizes, diagnostics and the summary table, as JSON-able data."""
        frame = self.table()
        return {"info": self.info, "adapted": {"step_size": np.ravel(self.adapted.get("step_size", [])).tolist()},
                "diagnostics": self.diagnostics(),
                "summary": {str(k): {c: float(row[c]) for c in COLUMNS} for k, row in frame.iterrows()}}

    def save(self, folder: str | Path, plots: bool = False, overwrite: bool = False) -> Path:
        """params.npz (the adapted step size and inverse mass matrix), values.npy (lp per draw),
        info.json, draws.npz, sample_stats.npz, observed.npz and summary.json (and the plots), all
        at once: into a temporary folder beside `folder` that then takes its place, so a failure
        leaves any previous folder whole. An existing folder is replaced only with `overwrite`."""
        summary = json_text(self.to_json(), indent=2) + "\n"
        with new_folder(folder, overwrite) as tmp:
            write_files(tmp, {"adaptation": self.adapted}, self.stats["lp"], self.info)
            np.savez(tmp / "draws.npz", **self.draws)
            np.savez(tmp / "sample_stats.npz", **self.stats)
            np.savez(tmp / "observed.npz", **self.observed)
            (tmp / "summary.json").write_text(summary)
            if plots:
                self.plot(tmp)
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path) -> SampleResult:
        """Read back what `save` wrote (without the model: no log-likelihood or predictive draws)."""
        extra = ("draws.npz", "sample_stats.npz", "observed.npz")
        params, _, info, folder = load_folder(folder, "MCMC result", "pplang sample ... --output folder", extra)
        loaded = []
        try:
            for name in extra:
                loaded.append(load_npz(folder / name))
        except (OSError, ValueError) as exc:
            raise error(f"cannot read the saved MCMC result at {folder}: {exc}",
                        hint="save it again with `result.save(folder)`") from None
        return cls(loaded[0], loaded[1], info, loaded[2], params.get("adaptation", {}))


def divergent_parameters(draws: Mapping[str, np.ndarray], diverging: np.ndarray, top: int = 3) -> list[dict]:
    """The scalars whose values differ most between divergent and other draws: the difference of
    the means in units of the scalar's sd (largest first). Where divergences cluster in one region
    (a funnel's neck at small scale), its parameter leads this list."""
    if not diverging.any() or diverging.all():
        return []
    flat_div = diverging.reshape(-1)
    rows = []
    for name, col in columns({a: v.reshape(-1, *v.shape[2:]) for a, v in draws.items()}):
        sd = col.std()
        if sd > 0:
            gap = (col[flat_div].mean() - col[~flat_div].mean()) / sd
            rows.append({"parameter": name, "standardized_difference": float(gap)})
    rows.sort(key=lambda r: -abs(r["standardized_difference"]))
    return rows[:top]


def advice(d: dict[str, Any], info: Mapping[str, Any], total: int, ess_limit: int) -> list[str]:
    """One readable warning per problem the diagnostics show, each saying what to do."""
    out = []

    def names(xs: list[str]) -> str:
        return ", ".join(xs[:6]) + (f" and {len(xs) - 6} more" if len(xs) > 6 else "")

    if d["high_rhat"]:
        out.append(f"R-hat above {RHAT_LIMIT} for {names(d['high_rhat'])} (max {d['max_rhat']:.3f}): the chains "
                   "disagree. Run longer (more warmup and draws); if it persists, reparameterize the model.")
    if d["low_ess_bulk"]:
        out.append(f"bulk ESS below {ess_limit} ({ESS_PER_CHAIN} per chain) for {names(d['low_ess_bulk'])} "
                   f"(min {d['min_ess_bulk']:.0f}): means and sds are imprecise. Run longer (more draws).")
    if d["low_ess_tail"]:
        out.append(f"tail ESS below {ess_limit} for {names(d['low_ess_tail'])} (min {d['min_ess_tail']:.0f}): "
                   "quantiles and intervals are imprecise. Run longer (more draws).")
    if d["divergences"]:
        which = d["divergent_parameters"]
        where = ""
        if which:
            where = (" They concentrate where " + ", ".join(
                f"{r['parameter']} is {'lower' if r['standardized_difference'] < 0 else 'higher'} "
                f"({r['standardized_difference']:+.2f} sd)" for r in which) + ".")
        lead = which[0]["parameter"].split("[")[0] if which else "the hierarchical scale"
        out.append(f"{d['divergences']} of {total} draws diverged: the sampler could not follow the posterior's "
                   f"curvature, and the draws may be biased.{where} Raise target_accept (now "
                   f"{info.get('target_accept', 0.8)}, e.g. 0.95), or reparameterize: a non-centered "
                   f"parameterization of what depends on `{lead}`.")
    hits = d.get("max_tree_depth_hits", 0)
    if hits:
        out.append(f"{hits} of {total} draws hit the maximum tree depth ({info.get('max_tree_depth')}): the "
                   "trajectories were cut short, which slows exploration. Raise max_tree_depth, or reparameterize "
                   "strongly correlated parameters (a dense mass matrix can help).")
    low = [f"chain {i}: {b:.2f}" for i, b in enumerate(d["bfmi"]) if b < BFMI_LIMIT]
    if low:
        out.append(f"E-BFMI below {BFMI_LIMIT} ({'; '.join(low)}): the momentum resampling explores the energy "
                   "poorly, typical of heavy tails or a funnel. Reparameterize (non-centered scales), or run longer.")
    return out
