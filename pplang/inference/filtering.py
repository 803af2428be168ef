"""Sequential Monte Carlo: particle filters compiled from sequential models (`pp.smc`; the module
is not named `smc`, so importing it never replaces the function `pp.smc` with a module).

`smc(model, data, particles=N)` runs a particle filter over the model's loop over time: the
compiler's `smc` transformation (`pplang.compiler.transforms.smc`) emits the model's step 0 and one step as
per-particle functions, and `pplang.runtime.smc` runs them vectorized over particles in one
`lax.scan` over time, resampling when the effective sample size falls. The result holds the log
marginal likelihood estimate (its exponential is unbiased), filtering means and quantiles, the
effective sample size per step, the genealogy (trajectories) and the final particles, and can be
extended online with new observations without recompiling.

`smc_log_marginal_fn` gives the log marginal likelihood estimate as a pure function of the
model's and proposal's parameters and a key, for variational SMC / FIVO objectives.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pplang import runtime as rt
from pplang.compiler.diagnostics import did_you_mean, error
from pplang.compiler.pipeline import exec_module
from pplang.compiler.transforms.smc import Plan, SmcProgram, smc_module
from pplang.data import check_support
from pplang.models import Model, as_key
from pplang.runtime import smc as rs

RESAMPLING = tuple(rs.SCHEMES)
QUANTILES = (0.05, 0.5, 0.95)

# ---------------------------------------------------------------- compiling


_PROGRAMS: dict[tuple[int, bool], tuple[weakref.ref, SmcProgram, dict]] = {}


def compiled(model: Model, sequential: bool = True) -> tuple[SmcProgram, dict[str, Any]]:
    """The particle-filter functions of a model (or proposal), generated once per declaration. The
    module's text is cached by content (`exec_module`), so equal models share the same functions."""
    key = (id(model.fn), sequential)
    hit = _PROGRAMS.get(key)
    if hit is not None and hit[0]() is model.fn:
        return hit[1], hit[2]
    prog = smc_module(model.fn, model.fn.span.file, model.source, sequential)
    ns = exec_module(prog.code)
    _PROGRAMS[key] = (weakref.ref(model.fn), prog, ns)
    return prog, ns


def filter_code(model: Model, proposal: Model | None = None) -> str:
    """The generated particle-filter module of a model (and of its proposal): what `smc` runs."""
    code = compiled(model)[0].code
    if proposal is not None:
        code += "\n\n" + compiled(proposal, sequential=False)[0].code
    return code


@dataclass
class Side:
    """One compiled declaration (the model, or the proposal) with its static arguments."""

    model: Model
    plan: Plan
    init: Callable
    step: Callable
    bounds: Callable
    statics: dict[str, Any]

    def args(self, arrays: Mapping[str, Any]) -> list[Any]:
        env = {**self.statics, **arrays}
        return [env[a] for a, _ in self.model.fn.args]


class Engine:
    """The jitted functions of one particle filter: step 0, a chunk of steps (one `lax.scan`) and a
    single step (for `extend`). Cached per model, static arguments and options, so repeated runs
    and new data of the same shapes reuse the compiled code. `traces` counts how often JAX traced
    the step (at trace time; a run that reuses compiled code adds nothing)."""

    def __init__(self, m: Side, q: Side | None, observed: frozenset, n: int, opts: rs.Options,
                 place: rs.Placement, heads: dict[str, int]):
        self.m, self.q, self.n, self.opts, self.place = m, q, n, opts, place
        self.heads = heads  # loop address -> its positions before the loop's first write (drawn at step 0)
        self.loop_latents = [a for a in m.plan.loop_sites if a not in observed]
        self.init_latents = [a for a in m.plan.init_sites if a not in observed]
        self.traces = 0
        self.start = jax.jit(self.start_impl)
        self.chunk = jax.jit(self.chunk_impl)
        self.one = jax.jit(self.one_impl)

    # one particle ------------------------------------------------------------

    def init_one(self, key: Any, i: Any, arrays: dict, observed: dict, params: dict) -> tuple:
        m, q = self.m, self.q
        ctx_given: dict[str, Any] = dict(observed)
        if q is not None:
            key, kq = jax.random.split(key)
            qctx = rt.Context({}, params["proposal"], q.model.hosts)
            qstate, qtr, qs = q.init(qctx, kq, i, self.n, *q.args(arrays["proposal"]))
            ctx_given.update(qtr)
        ctx = rt.Context(ctx_given, params["model"], m.model.hosts)
        state, tr, s = m.init(ctx, key, i, self.n, *m.args(arrays["model"]))
        values = {a: tr[a][:self.heads[a]] if a in self.heads else tr[a] for a in self.init_latents if a in tr}
        if q is None:
            return state, values, s.lw
        return (state, qstate), values, s.lw - qs.lp

    def step_one(self, state: Any, key: Any, i: Any, t: Any, rows: dict, arrays: dict, params: dict) -> tuple:
        m, q = self.m, self.q
        given = dict(rows)
        if q is not None:
            state, qstate = state
            key, kq = jax.random.split(key)
            qctx = rt.Context({}, params["proposal"], q.model.hosts)
            qstate, qpieces, qs = q.step(qctx, kq, i, self.n, qstate, t, {}, *q.args(arrays["proposal"]))
            given.update({a: v for a, v in qpieces.items() if v is not None})
        ctx = rt.Context({}, params["model"], m.model.hosts)
        state, pieces, s = m.step(ctx, key, i, self.n, state, t, given, *m.args(arrays["model"]))
        values = {a: pieces[a] for a in self.loop_latents if pieces.get(a) is not None}
        if q is None:
            return state, values, s.lw
        return (state, qstate), values, s.lw - qs.lp

    # all particles ------------------------------------------------------------

    def propagate(self, arrays: dict, params: dict) -> Callable:
        def propagate(state: Any, key: Any, payload: tuple) -> tuple:
            self.traces += 1
            t, rows = payload
            particle = jnp.arange(self.n)
            return jax.vmap(lambda s, i: self.step_one(s, key, i, t, rows, arrays, params))(state, particle)

        return propagate

    def start_impl(self, key: Any, arrays: dict, observed: dict, params: dict, first: tuple | None) -> tuple:
        def init(key: Any) -> tuple:
            return jax.vmap(lambda i: self.init_one(key, i, arrays, observed, params))(jnp.arange(self.n))

        carry, rec = rs.start(init, key, self.n, self.opts, self.place)
        if first is not None:  # the carry's dtypes are those the step produces
            prop = self.propagate(arrays, params)
            carry = carry._replace(state=rs.promote(lambda s: prop(s, key, first)[0], carry.state))
        return carry, rec

    def chunk_impl(self, carry: rs.Carry, key: Any, xs: tuple, arrays: dict, params: dict) -> tuple:
        return rs.run(self.propagate(arrays, params), self.opts, self.place, key, carry, xs)

    def one_impl(self, carry: rs.Carry, key: Any, x: tuple, arrays: dict, params: dict) -> tuple:
        carry, rec = rs.advance(self.propagate(arrays, params), self.opts, self.place, key, carry, x)
        return carry, jax.tree.map(lambda v: v[None], rec)


_ENGINES: dict[tuple, Engine] = {}


def engine_for(m: Side, q: Side | None, observed: frozenset, n: int, opts: rs.Options,
               devices: tuple | None, heads: dict[str, int]) -> Engine:
    """The engine for these generated functions (shared by equal models, which share them), host
    functions, static arguments and options."""

    def ident(s: Side | None) -> tuple:
        if s is None:
            return ()
        hosts = tuple(sorted((k, id(v)) for k, v in s.model.hosts.items()))
        return id(s.init), id(s.step), hosts, tuple(sorted(s.statics.items()))

    key = (ident(m), ident(q), observed, n, opts, devices, tuple(sorted(heads.items())))
    if key not in _ENGINES:
        place = rs.ON_ONE_DEVICE if devices is None else rs.placement(devices)
        _ENGINES[key] = Engine(m, q, observed, n, opts, place, heads)
    return _ENGINES[key]


# ---------------------------------------------------------------- binding a run


@dataclass
class Inputs:
    """The data of one run: arguments, observations, and each step's rows of the observed arrays."""

    arrays: dict[str, dict[str, Any]]
    observed: dict[str, Any]
    start: int
    stop: int
    rows: dict[str, Any]  # address -> (K, ...) this address's observation at each step
    offsets: dict[str, int]  # loop address -> c of its write index t + c

    @property
    def steps(self) -> int:
        return self.stop - self.start

    def xs(self, lo: int, hi: int) -> tuple:
        ks = jnp.arange(lo + 1, hi + 1, dtype=jnp.int32)
        ts = jnp.arange(self.start + lo, self.start + hi, dtype=jnp.int32)
        return ks, (ts, {a: r[lo:hi] for a, r in self.rows.items()})

    def first(self) -> tuple | None:
        if self.steps == 0:
            return None
        return jnp.asarray(self.start, jnp.int32), {a: r[0] for a, r in self.rows.items()}


def check_options(particles: Any, resample: Any, ess_threshold: Any, anneal: Any, history: bool = True) -> rs.Options:
    if not isinstance(particles, (int, np.integer)) or isinstance(particles, bool) or particles < 1:
        raise error(f"particles must be a positive int, got {particles!r}", hint="for example particles=1000")
    if resample not in rs.SCHEMES:
        raise error(f"unknown resampling scheme {resample!r}",
                    hint=did_you_mean(str(resample), RESAMPLING) or f"choose one of {', '.join(RESAMPLING)}")
    if not isinstance(ess_threshold, (int, float)) or not 0.0 <= float(ess_threshold) <= 1.0:
        raise error(f"ess_threshold must be a number in [0, 1], got {ess_threshold!r}",
                    hint="0.5 resamples when fewer than half the particles are effective; 1 every step; 0 never")
    if anneal is not None and (not isinstance(anneal, (int, float)) or not 0.0 < float(anneal) < 1.0):
        raise error(f"anneal must be a target normalized entropy in (0, 1), or None, got {anneal!r}",
                    hint="for example anneal=0.5")
    return rs.Options(str(resample), float(ess_threshold), None if anneal is None else float(anneal),
                      history=bool(history))


def side(model: Model, bound: Any, sequential: bool) -> Side:
    prog, ns = compiled(model, sequential)
    init, step, bounds = prog.plan.names
    return Side(model, prog.plan, ns[init], ns[step], ns[bounds], dict(bound.static))


def steps_of(s: Side, bound: Any, params: Mapping) -> tuple[int, int]:
    """The loop's range for this data."""
    start, stop = s.bounds(rt.Context({}, params, s.model.hosts), *s.args(bound.arrays))
    return int(start), max(int(stop), int(start))


def device_list(devices: Any, n: int) -> tuple | None:
    if devices is None:
        return None
    avail = jax.devices()
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(avail):
            raise error(f"devices={devices} but {len(avail)} device(s) are available",
                        hint="pass at most jax.device_count() devices, or a list of devices")
        devs = tuple(avail[:devices])
    else:
        devs = tuple(devices)
    if not devs or n % len(devs):
        raise error(f"{n} particles cannot be split evenly over {len(devs)} device(s)",
                    hint=f"use a multiple of {len(devs)} particles")
    return devs


def prepare(model: Model, data: Mapping | None, data_kwargs: Mapping, particles: int, proposal: Model | None,
            opts: rs.Options, params: Mapping | None, proposal_params: Mapping | None,
            devices: Any) -> tuple[Engine, Inputs, dict]:
    """Check everything and bind the data: the engine (compiled code) and the inputs of one run."""
    if not isinstance(model, Model):
        raise error(f"smc needs a model, not {type(model).__name__}", hint="pp.load(file)[name]")
    merged = {**data, **data_kwargs} if isinstance(data, Mapping) else (dict(data_kwargs) if data is None else data)
    bound = model.bind(merged)
    m = side(model, bound, True)
    plan = m.plan
    ps = {"model": {a: jnp.asarray(v) for a, v in (params or {}).items()},
          "proposal": {a: jnp.asarray(v) for a, v in (proposal_params or {}).items()}}
    model.check_addresses({}, ps["model"])
    start, stop = steps_of(m, bound, ps["model"])
    observed = dict(bound.observed)
    in_loop = [a for a in plan.loop_sites if a in observed]
    if not in_loop and not plan.factors:
        names = ", ".join(f"`{a}`" for a in plan.loop_sites) or "nothing"
        raise error(f"nothing the loop over time draws is observed in the data ({model.kind} `{model.name}` draws "
                    f"{names} there): a particle filter needs an observation at each step", plan.loop.span,
                    model.source, hint="add the observed values of the choices the loop draws to the data")
    q = None
    arrays = {"model": dict(bound.arrays), "proposal": {}}
    if proposal is not None:
        q, q_arrays = bind_proposal(model, proposal, merged, plan, observed, (start, stop), ps["proposal"])
        arrays["proposal"] = q_arrays
    rows = {a: observed[a][start + plan.loop_sites[a]:stop + plan.loop_sites[a]] for a in in_loop}
    heads = {a: start + c for a, c in plan.loop_sites.items()}
    eng = engine_for(m, q, frozenset(observed), int(particles), opts, device_list(devices, int(particles)), heads)
    inputs = Inputs(arrays, observed, start, stop, rows, dict(plan.loop_sites))
    return eng, inputs, ps


def bind_proposal(model: Model, proposal: Model, data: Mapping, plan: Plan, observed: Mapping,
                  steps: tuple[int, int], q_params: Mapping) -> tuple[Side, dict]:
    if not isinstance(proposal, Model):
        raise error(f"the proposal must be a guide, not {type(proposal).__name__}", hint="pp.load(file)[guide_name]")
    proposal.check_addresses({}, q_params)
    q_bound = proposal.bind({a: data[a] for a, _ in proposal.fn.args if a in data}, observations=False)
    q = side(proposal, q_bound, False)
    src, where = proposal.source, f"the proposal `{proposal.name}`"
    for a in proposal.sites:
        if a not in model.sites:
            raise error(f"{where} draws `{a}`, which {model.kind} `{model.name}` does not have", proposal.fn.span,
                        src, hint=did_you_mean(a, model.sites) or "a guide's choices must use the model's addresses")
        if a in observed:
            raise error(f"{where} draws `{a}`, which is observed in the data", proposal.fn.span, src,
                        hint="a proposal draws only latent choices")
    for a, c in q.plan.loop_sites.items():
        if plan.loop_sites.get(a) != c:
            raise error(f"{where} draws `{a}` in its loop over time at a different step than the model does",
                        q.plan.loop.span, src,
                        hint="draw each choice at the step where the model draws it (same index, e.g. `x[t]`)")
    for a in q.plan.init_sites:
        if a not in plan.init_sites:
            raise error(f"{where} draws `{a}` before its loop over time, but the model draws it inside its loop",
                        proposal.fn.span, src, hint="propose each choice at the step where the model draws it")
    q_steps = steps_of(q, q_bound, q_params)
    if q_steps != steps:
        raise error(f"{where} loops over range{q_steps}, the model over range{steps}", q.plan.loop.span, src,
                    hint="a proposal for SMC must step through the same time steps as the model")
    return q, dict(q_bound.arrays)


# ---------------------------------------------------------------- user API


def smc(model: Model, data: Mapping[str, Any] | None = None, *, particles: int = 1000, proposal: Model | None = None,
        resample: str = "systematic", ess_threshold: float = 0.5, anneal: float | None = None, seed: Any = 0,
        params: Mapping | None = None, proposal_params: Mapping | None = None, devices: Any = None,
        history: bool = True, progress: bool = False, **data_kwargs: Any) -> SMCResult:
    """Run a particle filter over the model's loop over time.

    `proposal`: a guide with the same sequential structure (default: the prior, a bootstrap
    filter). `resample`: multinomial, stratified, systematic or residual, done when the effective
    sample size falls below `ess_threshold * particles` (1: every step, 0: never). `anneal`: a
    target normalized entropy; resampling from weights whose entropy is below it draws from
    tempered weights and carries the correction (see docs/smc.md). `params`/`proposal_params`:
    unconstrained values of `param`s. `devices`: shard the particles over this many devices (or
    these devices). `history`: keep every step's particles, weights and ancestors (quantiles,
    trajectories, final particles); without it memory does not grow with the number of steps and
    only the evidence, ESS and filtering means are kept. `progress`: a progress bar over time (the
    scan then runs in chunks).
    """
    opts = check_options(particles, resample, ess_threshold, anneal, history)
    eng, inputs, ps = prepare(model, data, data_kwargs, particles, proposal, opts, params, proposal_params, devices)
    key = as_key(seed)
    try:
        carry, first = eng.start(key, inputs.arrays, inputs.observed, ps, inputs.first())
        chunks = []
        k = inputs.steps
        size = k if not progress else max(1, math.ceil(k / 20))
        bar = progress_bar(k, f"smc {model.name}", progress)
        for lo in range(0, k, max(size, 1)):
            hi = min(k, lo + size)
            carry, rec = eng.chunk(carry, key, inputs.xs(lo, hi), inputs.arrays, ps)
            if bar is not None:
                jax.block_until_ready(carry.log_z)
                bar.update(hi - lo)
            chunks.append(rec)
        if bar is not None:
            bar.close()
    except (TypeError, ValueError, IndexError, ZeroDivisionError) as e:
        raise model.located(e) from None
    return SMCResult(eng, inputs, key, ps, carry, first, tuple(chunks))


def progress_bar(total: int, desc: str, on: bool) -> Any:
    if not on or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step")


def smc_log_marginal_fn(model: Model, data: Mapping[str, Any] | None = None, particles: int = 1000,
                        proposal: Model | None = None, *, resample: str = "systematic", ess_threshold: float = 0.5,
                        anneal: float | None = None, devices: Any = None,
                        **data_kwargs: Any) -> Callable[[Mapping | None, Any], Any]:
    """A pure function `(params, key) -> log Z_hat`, the particle filter's log marginal likelihood
    estimate, to jit, vmap and differentiate. `params` is `{"model": {...}, "proposal": {...}}`
    (unconstrained `param` values by address; either may be left out).

    Differentiated: the proposal's draws (reparameterized where the distribution is), the model's
    and proposal's densities, and the weights carried between resamplings. Not differentiated:
    resampling. Ancestor indices are discrete and their weights are `stop_gradient`-ed, so the
    gradient ignores how the resampling decisions depend on the parameters (the biased but
    low-variance gradient of variational SMC / FIVO)."""
    opts = check_options(particles, resample, ess_threshold, anneal)._replace(record=False)
    eng, inputs, ps0 = prepare(model, data, data_kwargs, particles, proposal, opts, None, None, devices)
    xs = inputs.xs(0, inputs.steps)

    def log_marginal(params: Mapping | None, key: Any) -> Any:
        ps = {"model": dict((params or {}).get("model", {})), "proposal": dict((params or {}).get("proposal", {}))}
        model.check_addresses({}, ps["model"])
        if proposal is not None:
            proposal.check_addresses({}, ps["proposal"])
        key = as_key(key)
        carry, _ = eng.start_impl(key, inputs.arrays, inputs.observed, ps, inputs.first())
        if inputs.steps:
            carry, _ = eng.chunk_impl(carry, key, xs, inputs.arrays, ps)
        return carry.log_z

    return log_marginal


# ---------------------------------------------------------------- results


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
        """address -> (N, ...): the final particles' whole arrays (weights: `log_weights`)."""
        return self.traced(jnp.arange(self.num_particles))

    def trajectories(self, n: int = 100, seed: Any = 0) -> dict[str, np.ndarray]:
        """n trajectories drawn from the final weights and traced back through the genealogy:
        address -> (n, ...) (draws from the particle approximation of the smoothing distribution)."""
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise error(f"n must be a positive int, got {n!r}", hint="for example n=100")
        idx = jax.random.choice(as_key(seed), self.num_particles, (int(n),), p=jnp.exp(self.carry.log_w))
        return self.traced(idx)

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
        return SMCResult(eng, inp, self.key, self.params, carry, self.first, self.chunks + (rec,))

    # ---- reports

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
        if not np.isfinite(self.log_marginal_likelihood):
            lines.append("warning: every particle got zero weight at some step: the data is impossible under "
                         "these particles; use more particles or a proposal closer to the data")
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

    def plot(self, folder: str | Path) -> list[Path]:
        """Write filtering.png (filtering means with 5-95% bands of each latent drawn in the loop)
        and ess.png (effective sample size per step, resampling marked). Returns the paths."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise error(f"cannot create {folder}: {e.strerror}", hint="check the path") from None
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
        paths = [folder / "filtering.png", folder / "ess.png"]
        fig.savefig(paths[0], dpi=100)
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
        fig.savefig(paths[1], dpi=100)
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
        return out


def first_of(a: np.ndarray, i: int) -> float:
    """The first scalar at position i (a row of a vector-valued choice shows its first entry)."""
    return float(np.ravel(a[i])[0]) if i < a.shape[0] else float("nan")


def nan_none(a: np.ndarray) -> Any:
    """JSON has no NaN: positions never drawn become null."""
    return np.where(np.isnan(a), None, a).tolist() if np.issubdtype(np.asarray(a).dtype, np.floating) \
        else np.asarray(a).tolist()
