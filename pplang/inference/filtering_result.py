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

from pplang.compiler.diagnostics import did_you_mean, error
from pplang.data import check_support
from pplang.files import folder_for, save_figure
from pplang.models import as_key
from pplang.runtime import smc as rs
from pplang.summary import summarize

if TYPE_CHECKING:
    from pplang.inference.filtering import Engine, Inputs

QUANTILES = (0.05, 0.5, 0.95)
PLOTS = ("filtering.png", "ess.png")  # what `plot` writes


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

    def summary(self, rows: int = 6) -> str:
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
        lines += self.warnings()
        cols = list(eng.loop_latents)
        if cols:
            bands = " [5%, 95%]" if opts.history else ""
            lines.append(f"filtering means{bands} at the position each step draws:")
            table = {a: (self.filtering_mean(a), self.filtering_quantiles(a, (0.05, 0.95)) if opts.history else None)
                     for a in cols}
            length = max(m.shape[0] for m, _ in table.values())
            show = list(range(length)) if length <= 2 * rows else \
                list(range(rows // 2)) + [None] + list(range(length - rows // 2, length))
            width = 30 if opts.history else 12
            lines.append(f"{'':>6}" + "".join(f"{self.column(a, m):>{width}}" for a, (m, _) in table.items()))
            for i in show:
                if i is None:
                    lines.append(f"{'...':>6}")
                    continue
                cells = []
                for m, q in table.values():
                    cell = f"{first_of(m, i):.4g}"
                    if q is not None:
                        cell += f" [{first_of(q[0], i):.3g}, {first_of(q[1], i):.3g}]"
                    cells.append(cell.rjust(width))
                lines.append(f"{i:>6}" + "".join(cells))
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

    def plot(self, folder: str | Path, overwrite: bool = False) -> list[Path]:
        """Write filtering.png (filtering means with 5-95% bands of each latent drawn in the loop)
        and ess.png (effective sample size per step, resampling marked). Returns the paths.
        Existing plots of those names are replaced only with `overwrite`."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        folder = folder_for(folder, PLOTS, overwrite)
        cols = self.engine.loop_latents
        fig, axes = plt.subplots(max(1, len(cols)), 1, figsize=(8, 2.6 * max(1, len(cols))), squeeze=False)
        for ax, a in zip(axes[:, 0], cols):
            m = self.filtering_mean(a)
            q = self.filtering_quantiles(a, (0.05, 0.95))
            m, lo, hi = (v.reshape(v.shape[0], -1)[:, 0] for v in (m, q[0], q[1]))
            x = np.arange(m.shape[0])
            ax.fill_between(x, lo, hi, alpha=0.3, label="5-95%")
            ax.plot(x, m, label="filtering mean")
            ax.set_ylabel(self.column(a, self.filtering_mean(a)))
            ax.legend(loc="upper right", fontsize="small")
        axes[-1, 0].set_xlabel("position (step)")
        fig.tight_layout()
        paths = [folder / name for name in PLOTS]
        try:
            save_figure(fig, paths[0], overwrite)
        finally:
            plt.close(fig)
        fig, ax = plt.subplots(figsize=(8, 3))
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
        ax.legend(loc="lower right", fontsize="small")
        fig.tight_layout()
        try:
            save_figure(fig, paths[1], overwrite)
        finally:
            plt.close(fig)
        return paths

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
