"""The result of a particle filter (`pp.smc`): log marginal likelihood, effective sample sizes,
filtering means and quantiles, particles and trajectories, reports, and `extend` for one more step
with new observations on the compiled filter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from pplang import html, plots
from pplang.compiler.diagnostics import did_you_mean, error
from pplang.data import check_support
from pplang.inference import predictive as exports
from pplang.models import as_key
from pplang.runtime import smc as rs
from pplang.summary import summarize

if TYPE_CHECKING:
    from pplang.inference.filtering import Engine, Inputs

QUANTILES = (0.05, 0.5, 0.95)
PLOTS = ("filtering.png", "ess.png", "ppc.png")  # what `plot` writes


@dataclass
class SMCResult:
    """A finished (or extendable) particle filter. Steps are numbered 0 (the statements before the
    loop over time) to K (the loop's iterations); arrays per step have length K + 1."""

    engine: Engine
    inputs: Inputs
    key: Any
    params: dict
    carry: rs.Carry
    first: rs.Record
    chunks: tuple = field(default_factory=tuple)
    data: Mapping[str, Any] | None = None  # the data of the run (None after `extend`: see `computed_values`)
    which: bool | Sequence[str] = True  # the values the model computes to keep beside particles

    def computed_values(self, traced: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`traced` (whole arrays of the latents, a leading particle axis) and the named values the
        model computes from them (`which`). A filter extended by `extend` ran past the data it was
        given, so nothing is computed for it: run `smc` on the longer data for those."""
        if self.data is None or self.which is False or not traced:
            return dict(traced)
        return self.engine.m.model.with_computed(traced, self.data, self.which, self.params["model"])

    @property
    def computed_names(self) -> list[str]:
        """The names of the computed values `particles` and `trajectories` keep."""
        if self.data is None or self.which is False:
            return []
        return list(self.engine.m.model.computed_names) if self.which is True else list(self.which)

    # ---- per step

    @cached_property
    def history(self) -> rs.Record | None:
        """The records of steps 1..K, concatenated over chunks (None when the loop is empty)."""
        if not self.chunks:
            return None
        return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *self.chunks)

    @property
    def num_particles(self) -> int:
        return int(self.carry.log_w.shape[0])

    @property
    def num_steps(self) -> int:
        return 1 + (0 if self.history is None else int(self.history.ess.shape[0]))

    def per_step(self, name: str) -> np.ndarray:
        head = np.asarray(getattr(self.first, name))[None]
        if self.history is None:
            return head
        return np.concatenate([head, np.asarray(getattr(self.history, name))])

    @property
    def log_marginal_likelihood(self) -> float:
        """log Z_hat, whose exponential is an unbiased estimate of p(data)."""
        return float(self.carry.log_z)

    @property
    def log_evidence_increments(self) -> np.ndarray:
        """(K + 1,): log p_hat(y_k | y_0..k-1); they sum to `log_marginal_likelihood`."""
        return self.per_step("log_z_inc")

    @property
    def ess(self) -> np.ndarray:
        """(K + 1,): effective sample size of the weights after each step, before resampling."""
        return self.per_step("ess")

    @property
    def resampled(self) -> np.ndarray:
        """(K + 1,): whether the particles were resampled after each step (before the next)."""
        return np.concatenate([self.per_step("resampled")[1:], [False]]).astype(bool)

    @property
    def anneal_beta(self) -> np.ndarray:
        """(K + 1,): the tempering exponent of each resampling (1 when not tempered or not resampled)."""
        return np.concatenate([self.per_step("beta")[1:], [1.0]])

    @property
    def log_weights(self) -> np.ndarray:
        """(N,) normalized log weights of the final particles."""
        return np.asarray(self.carry.log_w)

    # ---- latents

    @property
    def latents(self) -> list[str]:
        eng = self.engine
        return list(dict.fromkeys(eng.loop_latents + eng.init_latents))

    def check_latent(self, address: str) -> None:
        model = self.engine.m.model
        if address in self.latents:
            return
        if address in self.inputs.observed:
            raise error(f"`{address}` is observed: it has no filtering distribution",
                        hint=f"latent choices: {', '.join(self.latents) or 'none'}")
        raise error(f"{model.kind} `{model.name}` has no latent random choice `{address}`",
                    hint=did_you_mean(address, self.latents) or f"latent choices: {', '.join(self.latents) or 'none'}")

    def in_loop(self, address: str) -> bool:
        return address in self.engine.loop_latents

    def need_history(self, what: str) -> None:
        if not self.engine.opts.history:
            raise error(f"{what} needs the particles of every step, which this run did not keep",
                        hint="run smc(..., history=True) (the default)")

    @cached_property
    def origins(self) -> Any:
        """(K + 1, N): each particle's ancestor at step 0."""
        self.need_history("the filtering distribution of a choice drawn before the loop")
        if self.history is None:
            return jnp.arange(self.num_particles)[None]
        return rs.origins(self.history.ancestors)

    def step_log_w(self) -> Any:
        return jnp.asarray(self.per_step("log_w"))

    def first_position(self, address: str) -> int:
        return self.inputs.start + self.inputs.offsets[address]

    def assemble(self, address: str, init_part: Any | None, loop_part: Any, axis: int) -> np.ndarray:
        """A whole array of `address` from its positions drawn at step 0 (`init_part`, or None) and
        the block of positions the loop drew (`loop_part`; `axis` is the position axis). Positions
        nobody drew are NaN (0 in particles, as in the model's trace)."""
        loop_part = np.asarray(loop_part)
        p0, k = self.first_position(address), loop_part.shape[axis]
        lead, rest = loop_part.shape[:axis], loop_part.shape[axis + 1:]
        if init_part is None:
            out = np.full(lead + (p0 + k,) + rest, np.nan, np.result_type(loop_part, np.float32))
        else:
            init_part = np.asarray(init_part)
            length = max(init_part.shape[axis], p0 + k)
            out = np.zeros(lead + (length,) + rest, np.result_type(loop_part, init_part))
            out[(slice(None),) * axis + (slice(0, init_part.shape[axis]),)] = init_part
        out[(slice(None),) * axis + (slice(p0, p0 + k),)] = loop_part
        return out

    def loop_stack(self, address: str, field_: str) -> Any:
        """This address's per-step records over the loop's steps (K, ...)."""
        return getattr(self.history, field_)[address]

    def filtering_mean(self, address: str) -> np.ndarray:
        """Weighted mean of the filtering distribution p(x | observations so far). For a choice
        drawn in the loop, an array like the choice's: position i holds the mean at the step that
        drew it. For a choice drawn before the loop only (a static parameter), (K + 1, ...): its
        mean given the observations up to each step."""
        self.check_latent(address)
        if not self.in_loop(address):
            vals = jnp.asarray(self.first.values[address])[self.origins] if self.engine.opts.history else None
            self.need_history(f"the filtering mean of `{address}` (drawn before the loop) at each step")
            return np.asarray(rs.weighted_mean(vals, self.step_log_w()))
        init = self.first.means.get(address)
        loop = self.loop_stack(address, "means") if self.history is not None else np.zeros((0,))
        return self.assemble(address, init, loop, 0)

    def filtering_quantiles(self, address: str, qs: Sequence[float] = QUANTILES) -> np.ndarray:
        """(len(qs), ...) weighted quantiles, laid out as `filtering_mean` after the first axis."""
        self.check_latent(address)
        self.need_history("filtering quantiles")
        qs = tuple(float(q) for q in qs)
        if not self.in_loop(address):
            vals = jnp.asarray(self.first.values[address])[self.origins]
            return np.asarray(rs.weighted_quantiles(vals, self.step_log_w(), qs=qs))
        init = self.first.values.get(address)
        init_q = None if init is None else rs.weighted_quantiles(init[None], self.first.log_w[None], qs=qs)[:, 0]
        loop = rs.weighted_quantiles(self.loop_stack(address, "values"), self.history.log_w, qs=qs) \
            if self.history is not None else np.zeros((len(qs), 0))
        return self.assemble(address, init_q, loop, 1)

    def traced(self, final: Any) -> dict[str, np.ndarray]:
        """Whole arrays of every latent for the final particles `final`, by ancestor tracing."""
        self.need_history("tracing particles back through the genealogy")
        final = jnp.asarray(final, jnp.int32)
        idx = final[None] if self.history is None else rs.lineage(self.history.ancestors, final)
        out = {}
        for a in self.latents:
            init = self.first.values.get(a)
            init_part = None if init is None else np.asarray(jnp.asarray(init)[idx[0]])
            if not self.in_loop(a) or self.history is None:  # (a loop with no steps drew nothing)
                if init_part is not None:
                    out[a] = init_part
                continue
            block = rs.along(self.loop_stack(a, "values"), idx[1:])  # (K, n, ...)
            out[a] = self.assemble(a, init_part, jnp.moveaxis(block, 0, 1), 1)
            if init_part is None:
                out[a] = np.nan_to_num(out[a], nan=0.0)
        return out

    @cached_property
    def particles(self) -> dict[str, np.ndarray]:
        """address -> (N, ...): the final particles' whole arrays (weights: `log_weights`), and the
        values the model computes from each (`computed=` of `smc`)."""
        return self.computed_values(self.traced(jnp.arange(self.num_particles)))

    def trajectories(self, n: int = 100, seed: Any = 0) -> dict[str, np.ndarray]:
        """n trajectories drawn from the final weights and traced back through the genealogy:
        address -> (n, ...) (draws from the particle approximation of the smoothing distribution)."""
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise error(f"n must be a positive int, got {n!r}", hint="for example n=100")
        idx = jax.random.choice(as_key(seed), self.num_particles, (int(n),), p=jnp.exp(self.carry.log_w))
        return self.computed_values(self.traced(idx))

    # ---- online use

    def extend(self, new_data: Mapping[str, Any]) -> SMCResult:
        """One more step with new observations (`new_data` maps each observed address of the loop to
        its value at the new step), reusing the compiled step: a new result, this one unchanged."""
        eng, inp = self.engine, self.inputs
        model = eng.m.model
        for s in (eng.m, eng.q):
            if s is not None and s.plan.extend_blocker:
                raise error(f"cannot extend the filter: in {s.model.kind} `{s.model.name}`, {s.plan.extend_blocker}",
                            s.plan.loop.span, s.model.source, hint="run `smc` again on the longer data instead")
        if not isinstance(new_data, Mapping):
            raise error("extend takes a mapping from observed addresses to their values at the new step",
                        hint=f"for example {{{', '.join(repr(a) + ': 0.0' for a in inp.rows)}}}")
        for a in new_data:
            if a not in inp.rows:
                raise error(f"`{a}` is not observed in the loop over time of {model.kind} `{model.name}`",
                            hint=did_you_mean(a, inp.rows) or f"observed there: {', '.join(inp.rows)}")
        rows = {}
        for a, r in inp.rows.items():
            if a not in new_data:
                raise error(f"extend needs the new step's value of `{a}`", hint=f"pass {{{a!r}: value, ...}}")
            arr = np.asarray(new_data[a])
            if arr.shape != tuple(r.shape[1:]):
                raise error(f"the new value of `{a}` has shape {arr.shape}, a step observes shape {tuple(r.shape[1:])}",
                            hint="pass the value of this one step")
            check_support(a, model.sites[a], arr, model.source)
            rows[a] = jnp.asarray(arr, r.dtype)
        k = self.num_steps
        x = (jnp.asarray(k, jnp.int32), (jnp.asarray(inp.start + k - 1, jnp.int32), rows))
        carry, rec = eng.one(self.carry, self.key, x, inp.arrays, self.params)
        return SMCResult(eng, inp, self.key, self.params, carry, self.first, self.chunks + (rec,), None, self.which)

    # ---- reports

    def problems(self) -> list[str]:
        """What makes these estimates unreliable (empty when nothing does): every particle losing its
        weight at some step, or the effective sample size falling below 1% of the particles (or 2)."""
        out = []
        if not np.isfinite(self.log_marginal_likelihood):
            out.append("every particle got zero weight at some step")
        low = float(self.ess.min()) if self.num_steps else float(self.num_particles)
        if low < 0.01 * self.num_particles or low < 2:
            out.append(f"effective sample size fell to {low:.1f} of {self.num_particles}")
        return out

    def warnings(self) -> list[str]:
        """One line of advice per problem (see `problems`)."""
        out = []
        if not np.isfinite(self.log_marginal_likelihood):
            out.append("warning: every particle got zero weight at some step: the data is impossible under "
                       "these particles; use more particles or a proposal closer to the data")
        low = float(self.ess.min()) if self.num_steps else float(self.num_particles)
        if low < 0.01 * self.num_particles or low < 2:
            out.append(f"warning: the effective sample size fell to {low:.1f} of {self.num_particles}: the estimates "
                       "rest on very few particles. Use more particles or a proposal (guide) closer to the data.")
        return out

    def facts(self) -> list[str]:
        """The summary's header lines: particles, steps, proposal, resampling, evidence, ESS."""
        eng = self.engine
        n, ess = self.num_particles, self.ess
        opts = eng.opts
        when = ("every step" if opts.threshold >= 1 else "never" if opts.threshold <= 0
                else f"when ESS < {opts.threshold:g} N")
        steps = f"{self.num_steps} step{'s' if self.num_steps != 1 else ''}"
        lines = [f"particle filter of {eng.m.model.name}: {n} particles, {steps}"
                 f"{', proposal ' + eng.q.model.name if eng.q else ' (bootstrap: the prior proposes)'}",
                 f"resampling: {opts.scheme}, {when}"
                 + (f", annealed to entropy {opts.anneal:g}" if opts.anneal else ""),
                 f"log marginal likelihood {self.log_marginal_likelihood:.4f}",
                 f"effective sample size: min {ess.min():.1f}, mean {ess.mean():.1f} (of {n}); "
                 f"resampled after {int(self.resampled.sum())} of {steps}"
                 + (f", {int((self.anneal_beta < 1).sum())} tempered" if opts.anneal else "")]
        return lines + self.warnings()

    def summary(self, rows: int = 6) -> str:
        eng, opts = self.engine, self.engine.opts
        lines = self.facts()
        cols = list(eng.loop_latents)
        if cols:
            bands = " [5%, 95%]" if opts.history else ""
            lines.append(f"filtering means{bands} at the position each step draws:")
            width = 30 if opts.history else 12
            lines.append(f"{'':>6}" + "".join(f"{self.column(a, self.filtering_mean(a)):>{width}}" for a in cols))
            for i, cells in self.filtering_rows(rows):
                if i is None:
                    lines.append(f"{'...':>6}")
                    continue
                text = [f"{m:.4g}" + (f" [{lo:.3g}, {hi:.3g}]" if opts.history else "") for m, lo, hi in cells]
                lines.append(f"{i:>6}" + "".join(t.rjust(width) for t in text))
        names = self.computed_names if opts.history else []
        if names:
            lines.append("values the model computes, over the final particles (weighted; the smoothing distribution):")
            parts = self.particles
            lines.append(summarize({n: parts[n] for n in names}, np.exp(self.log_weights), max_rows=rows * 2))
        statics = [a for a in eng.init_latents if a not in eng.loop_latents]
        if statics:
            lines.append("drawn before the loop (static: particles never rejuvenate them), final filtering mean:")
            w = np.exp(self.log_weights)
            for a in statics:
                final = np.asarray(self.first.values[a])[np.asarray(self.carry.origin)]
                m = np.tensordot(w, final.astype(float), axes=1)
                lines.append(f"  {a} = {np.array2string(np.asarray(m), precision=4)}")
        return "\n".join(lines)

    @staticmethod
    def column(address: str, mean: np.ndarray) -> str:
        return address if mean.ndim == 1 else f"{address}[., 0]"

    # ---- figures, tables and ArviZ

    def title(self) -> str:
        return f"particle filter of {self.engine.m.model.name}: {self.num_particles} particles"

    def discrete(self, address: str) -> bool:
        return self.engine.m.model.sites[address].kind in ("int", "bool")

    def filtering_probabilities(self, address: str) -> tuple[np.ndarray, np.ndarray]:
        """(values k, P (positions, len(k))): the filtering distribution of a discrete choice drawn
        in the loop, laid out as `filtering_mean` (position i at the step that drew it)."""
        self.check_latent(address)
        self.need_history(f"the filtering probabilities of `{address}`")
        init = self.first.values.get(address)
        loop = self.loop_stack(address, "values") if self.history is not None else None
        parts = [np.asarray(p) for p in (init, loop) if p is not None]
        low, high = min(int(p.min()) for p in parts if p.size), max(int(p.max()) for p in parts if p.size)
        ks = np.arange(low, high + 1)

        def probs(values: Any, log_w: Any) -> np.ndarray:  # values (S, N), log_w (S, N) -> (S, len(ks))
            hot = (np.asarray(values)[..., None] == ks).astype(float)
            return np.asarray(rs.weighted_mean(hot, log_w))

        init_p = None if init is None else probs(np.moveaxis(np.asarray(init), 0, 1),
                                                  np.broadcast_to(self.first.log_w, np.shape(init)[::-1]))
        loop_p = probs(loop, self.history.log_w) if loop is not None else np.zeros((0, len(ks)))
        return ks, self.assemble(address, init_p, loop_p, 0)

    def observations(self) -> dict[str, np.ndarray]:
        """Each observed series of the loop, by position: `y` or `y[., j]` -> (positions,)."""
        out = {}
        for a in self.inputs.rows:
            v = np.asarray(self.inputs.observed[a], float)
            flat = v.reshape(v.shape[0], -1)
            for j in range(min(flat.shape[1], plots.COMPONENTS)):
                out[a if flat.shape[1] == 1 else f"{a}[., {j}]"] = flat[:, j]
        return out

    def state_panels(self) -> list[tuple[str, Any]]:
        """(label, fill(ax)) per panel of filtering.png: the path of 2-D positions with their
        observations, each discrete choice as a heat map of probabilities over positions, each
        component of a continuous choice as its mean and 5-95% band with the observations it
        matches, and the observations no panel matched."""
        observed = self.observations()
        panels: list[tuple[str, Any]] = []
        series: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []  # continuous: label, mean, 5%, 95%
        for a in self.engine.loop_latents:
            if self.discrete(a):
                ks, p = self.filtering_probabilities(a)
                if p.ndim == 2:
                    panels.append((a, lambda ax, ks=ks, p=p: plots.heat(ax, p, ks, "position (step)")))
                    continue
            mean = self.filtering_mean(a)
            q = self.filtering_quantiles(a, (0.05, 0.95))
            m, lo, hi = (v.reshape(v.shape[0], -1).astype(float) for v in (mean, q[0], q[1]))
            for j in range(min(m.shape[1], plots.COMPONENTS)):
                series.append((a if m.shape[1] == 1 else f"{a}[., {j}]", m[:, j], lo[:, j], hi[:, j]))
        near = matching([m for _, m, _, _ in series], observed)
        used = {o for i in range(len(series)) for o in near[i]}
        for i, (label, m, lo, hi) in enumerate(series):
            shown = {o: observed[o] for o in near[i]}
            panels.append((label, lambda ax, m=m, lo=lo, hi=hi, shown=shown: series_panel(ax, m, lo, hi, shown)))
        for a in self.inputs.rows:
            path = self.path_of(a)
            if path is not None:
                used.update(o for o in observed if o.startswith(f"{a}[., "))
                panels.insert(0, (f"{path[0]} and {a}", lambda ax, a=a, path=path: self.draw_path(ax, a, *path)))
        rest = [o for o in observed if o not in used]
        return [(o, lambda ax, o=o: ax.plot(observed[o], ".", ms=3, color="black", label=f"observed {o}"))
                for o in rest] + panels

    def path_of(self, observed: str) -> tuple[str, np.ndarray] | None:
        """For observations that are 2-D points (one per step), the latent whose first two
        components' filtering means follow them most closely, if within their spread: (address,
        means (positions, 2))."""
        y = np.asarray(self.inputs.observed[observed], float)
        if y.ndim != 2 or y.shape[1] != 2:
            return None
        best = None
        for a in self.engine.loop_latents:
            mean = np.asarray(self.filtering_mean(a), float)
            if self.discrete(a) or mean.ndim != 2 or mean.shape[1] < 2:
                continue
            n = min(len(y), len(mean))
            gap = np.sqrt(np.nanmean((mean[:n, :2] - y[:n]) ** 2))
            if gap < np.sqrt(np.sum(np.var(y, axis=0))) and (best is None or gap < best[0]):
                best = (gap, a, mean[:, :2])
        return None if best is None else (best[1], best[2])

    def draw_path(self, ax: Any, observed: str, address: str, means: np.ndarray) -> None:
        y = np.asarray(self.inputs.observed[observed], float)
        ax.plot(y[:, 0], y[:, 1], ".", ms=4, color="black", label=f"observed {observed}")
        ax.plot(means[:, 0], means[:, 1], lw=1.6, label=f"filtering mean of {address}[., 0:2]")
        ax.plot(means[:1, 0], means[:1, 1], "o", ms=6, color="tab:green", label="start")
        ax.set_xlabel(f"{address}[., 0]")
        ax.set_ylabel(f"{address}[., 1]")
        ax.set_aspect("equal", adjustable="datalim")

    def filtering_drawing(self) -> tuple[Any, float]:
        panels = self.state_panels()
        heights = [4.0 if " and " in label else 2.0 for label, _ in panels] or [2.0]

        def draw(fig: Any) -> None:
            if not panels:
                fig.add_subplot().text(0.5, 0.5, "no latent choices in the loop", ha="center", va="center")
                return
            spec = fig.add_gridspec(len(panels), 1, height_ratios=heights)
            for i, (label, fill) in enumerate(panels):
                ax = fig.add_subplot(spec[i, 0])
                fill(ax)
                ax.set_title(label, fontsize=9, loc="left")
                ax.tick_params(labelsize=7)
                if " and " not in label:
                    ax.set_xlabel("position (step)", fontsize=8)
                plots.outside_legend(ax)
        return draw, sum(heights)

    def ess_drawing(self) -> Any:
        def draw(fig: Any) -> None:
            ax = fig.add_subplot()
            steps = np.arange(self.num_steps)
            ax.plot(steps, self.ess, label="ESS")
            thr = self.engine.opts.threshold
            if 0 < thr < 1:
                ax.axhline(thr * self.num_particles, color="gray", ls="--", label="threshold")
            res = self.resampled
            ax.plot(steps[res], self.ess[res], "o", ms=3, label="resampled after")
            ax.set_xlabel("step")
            ax.set_ylabel("effective sample size")
            ax.set_ylim(0, self.num_particles * 1.05)
            plots.outside_legend(ax)
        return draw

    def posterior_predictive(self, n: int = 100, seed: int = 0) -> dict[str, np.ndarray]:
        """Replicated observations: each observed choice drawn anew given each of n trajectories
        (`trajectories`: draws from the smoothing distribution); a leading draw axis."""
        if self.data is None:
            raise error("this filter was extended past the data it was given, so there is no data to replicate",
                        hint="run smc again on the longer data")
        model = self.engine.m.model
        draws = {a: v for a, v in self.trajectories(n, seed).items() if a in model.sites}
        return exports.replicate(model, self.data, draws, self.params["model"], seed + 1)

    def sections(self) -> list[tuple[str, Any, float]]:
        draw, height = self.filtering_drawing()
        out = [(PLOTS[0], draw, height), (PLOTS[1], self.ess_drawing(), 2.6)]
        if self.data is not None and self.engine.opts.history and self.inputs.observed:
            observed = {a: np.asarray(v) for a, v in self.inputs.observed.items()}
            out.append((PLOTS[2], plots.ppc(observed, self.posterior_predictive()), 2.8))
        return out

    def plot(self, folder: str | Path | None = None, overwrite: bool = False) -> Any:
        """A matplotlib Figure: the filtering distribution of each choice drawn in the loop (a
        discrete one as a heat map of probabilities over positions, a vector one panel per
        component, 2-D positions as a path over their observations) with the observations, the
        effective sample size per step, and a posterior predictive check. With `folder`, the same
        as filtering.png, ess.png and ppc.png written there (existing ones replaced only with
        `overwrite`), and the paths returned."""
        self.need_history("plotting the filtering distributions")
        if folder is not None:
            return plots.write(folder, self.title(), self.sections(), overwrite)
        return plots.combined(self.title(), self.sections())

    def filtering_rows(self, rows: int = 6) -> list[tuple[int | None, list[tuple[float, float, float]]]]:
        """The summary's table: (position, [(mean, 5%, 95%) per choice drawn in the loop]) at the
        first and last `rows // 2` positions (None marks the positions left out between them); the
        quantiles are NaN without history."""
        history = self.engine.opts.history
        table = {a: (self.filtering_mean(a), self.filtering_quantiles(a, (0.05, 0.95)) if history else None)
                 for a in self.engine.loop_latents}
        if not table:
            return []
        length = max(m.shape[0] for m, _ in table.values())
        show = list(range(length)) if length <= 2 * rows else \
            list(range(rows // 2)) + [None] + list(range(length - rows // 2, length))
        out: list[tuple[int | None, list[tuple[float, float, float]]]] = []
        for i in show:
            cells = []
            for m, q in ([] if i is None else table.values()):
                lo, hi = (first_of(q[0], i), first_of(q[1], i)) if q is not None else (float("nan"),) * 2
                cells.append((first_of(m, i), lo, hi))
            out.append((i, cells))
        return out

    def _repr_html_(self) -> str:
        cols = self.engine.loop_latents
        labels = ["position", *(f"{self.column(a, self.filtering_mean(a))} {c}" for a in cols
                                for c in ("mean", "5%", "95%"))]
        rows = [("...", *[""] * (3 * len(cols))) if i is None else (i, *(x for cell in cells for x in cell))
                for i, cells in self.filtering_rows()]
        return html.table(self.title(), self.facts(), labels, rows)

    def to_arviz(self, n: int | None = None, seed: int = 0) -> Any:
        """An arviz.InferenceData: posterior (n trajectories from the smoothing distribution, one
        chain; n defaults to the number of particles), observed_data, posterior_predictive, prior
        and prior_predictive (the last three need the run's data: not after `extend`)."""
        n = n or self.num_particles
        draws = self.trajectories(n, seed)
        groups: dict[str, Any] = {"posterior": exports.one_chain(draws),
                                  "observed_data": {a: np.asarray(v) for a, v in self.inputs.observed.items()}}
        if self.data is not None:
            model, params = self.engine.m.model, self.params["model"]
            latents = {a: v for a, v in draws.items() if a in model.sites}
            groups["posterior_predictive"] = exports.one_chain(exports.replicate(model, self.data, latents, params,
                                                                                 seed + 1))
            before, implied = exports.prior(model, model.bind(self.data), n, params, seed + 2)
            groups["prior"], groups["prior_predictive"] = exports.one_chain(before), exports.one_chain(implied)
        info = {"method": "smc", "model": self.engine.m.model.name, "particles": self.num_particles,
                "log_marginal_likelihood": self.log_marginal_likelihood}
        return exports.inference_data(info, **groups)

    def to_json(self) -> dict[str, Any]:
        """What `pplang smc --output` writes."""
        out: dict[str, Any] = {
            "log_marginal_likelihood": self.log_marginal_likelihood,
            "log_evidence_increments": self.log_evidence_increments.tolist(),
            "ess": self.ess.tolist(),
            "resampled": self.resampled.tolist(),
            "filtering": {},
        }
        for a in self.latents:
            q = self.filtering_quantiles(a)
            out["filtering"][a] = {"mean": nan_none(self.filtering_mean(a)), "q05": nan_none(q[0]),
                                   "q50": nan_none(q[1]), "q95": nan_none(q[2])}
        if self.computed_names and self.engine.opts.history:
            w = np.exp(self.log_weights)
            out["computed"] = {n: {"mean": nan_none(np.tensordot(w, self.particles[n].astype(float), axes=1))}
                               for n in self.computed_names}
        return out


def first_of(a: np.ndarray, i: int) -> float:
    """The first scalar at position i (a row of a vector-valued choice shows its first entry)."""
    return float(np.ravel(a[i])[0]) if i < a.shape[0] else float("nan")


def nan_none(a: np.ndarray) -> Any:
    """JSON has no NaN: positions never drawn become null."""
    return np.where(np.isnan(a), None, a).tolist() if np.issubdtype(np.asarray(a).dtype, np.floating) \
        else np.asarray(a).tolist()


def matching(series: Sequence[np.ndarray], observed: Mapping[str, np.ndarray]) -> list[list[str]]:
    """For each filtered series (by position), the observed series drawn on its panel: each
    observation goes to the series it follows most closely, when the distance (root mean square)
    is under half the observations' own spread (a position observed beside its filtered path)."""
    out: list[list[str]] = [[] for _ in series]
    for name, o in observed.items():
        best = None
        for i, m in enumerate(series):
            n = min(len(o), len(m))
            ok = np.isfinite(m[:n]) & np.isfinite(o[:n])
            if ok.sum() < 2 or np.std(o[:n][ok]) == 0:
                continue
            gap = np.sqrt(np.mean((m[:n][ok] - o[:n][ok]) ** 2)) / np.std(o[:n][ok])
            if gap < 0.5 and (best is None or gap < best[0]):
                best = (gap, i)
        if best is not None:
            out[best[1]].append(name)
    return out


def series_panel(ax: Any, mean: np.ndarray, lo: np.ndarray, hi: np.ndarray, shown: Mapping[str, np.ndarray]) -> None:
    """A filtering mean with its 5-95% band over positions, and the observations that follow it."""
    plots.time_series(ax, mean, lo, hi, "filtering mean")
    for name, o in shown.items():
        ax.plot(o[:mean.shape[0]], ".", ms=3, color="black", label=f"observed {name}")
