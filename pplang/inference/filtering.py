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
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pplang import runtime as rt
from pplang.compiler.analysis import called_declarations
from pplang.compiler.diagnostics import did_you_mean, error
from pplang.compiler.pipeline import exec_module
from pplang.compiler.transforms.smc import Plan, SmcProgram, smc_module
from pplang.data import fingerprint, merged
from pplang.inference.filtering_result import SMCResult
from pplang.models import Model, as_key
from pplang.runtime import smc as rs

RESAMPLING = tuple(rs.SCHEMES)

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
    for var in called_declarations(model.fn):  # the right-hand sides of its ODEs, from the model's own module
        ns[var] = model.impl.__globals__[var]
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
        self.whole = jax.jit(self.whole_impl)

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

    def whole_impl(self, key: Any, arrays: dict, observed: dict, params: dict, first: tuple, xs: tuple) -> tuple:
        """Step 0 and every later step in one call: a run without a progress bar dispatches once."""
        carry, rec0 = self.start_impl(key, arrays, observed, params, first)
        carry, rec = self.chunk_impl(carry, key, xs, arrays, params)
        return carry, rec0, rec

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
    made: dict[tuple, Any] = field(default_factory=dict)  # xs and first, built once per run's inputs

    @property
    def steps(self) -> int:
        return self.stop - self.start

    def xs(self, lo: int, hi: int) -> tuple:
        """What the scan over steps lo .. hi-1 reads: step numbers, times and observations."""
        if (lo, hi) not in self.made:
            ks = jnp.arange(lo + 1, hi + 1, dtype=jnp.int32)
            ts = jnp.arange(self.start + lo, self.start + hi, dtype=jnp.int32)
            self.made[lo, hi] = ks, (ts, {a: r[lo:hi] for a, r in self.rows.items()})
        return self.made[lo, hi]

    def first(self) -> tuple | None:
        if self.steps == 0:
            return None
        if "first" not in self.made:
            self.made["first"] = jnp.asarray(self.start, jnp.int32), {a: r[0] for a, r in self.rows.items()}
        return self.made["first"]


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
                    hint="for example anneal=0.9")
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
    given = merged(data, data_kwargs)
    compiled(model, True)  # what a particle filter cannot run is said before anything about the data
    bound = model.bind(given)
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
        q, q_arrays = bind_proposal(model, proposal, given, plan, observed, (start, stop), ps["proposal"])
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
        history: bool = True, progress: bool = False, computed: bool | Sequence[str] = True,
        **data_kwargs: Any) -> SMCResult:
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
    scan then runs in chunks). `computed`: which values the model computes (all, none or a list of
    names) `particles` and `trajectories` keep beside the latent choices, computed from each
    particle's whole trajectory.
    """
    opts = check_options(particles, resample, ess_threshold, anneal, history)
    if isinstance(model, Model):
        model.with_computed({}, None, computed)  # a wrong type or name fails here, before the filter runs
    given = merged(data, data_kwargs)
    prints = [fingerprint(x) if isinstance(x, Mapping) else None for x in (given, params or {}, proposal_params or {})]
    key = None if None in prints or not isinstance(model, Model) else (
        "smc", *prints, int(particles), id(proposal), opts,
        devices if devices is None or isinstance(devices, int) else tuple(devices))


    def build() -> tuple[Engine, Inputs, dict]:
        return prepare(model, given, {}, particles, proposal, opts, params, proposal_params, devices)

    # a repeated call with the same data, settings and parameters binds nothing again
    eng, inputs, ps = build() if key is None else model.reuse(key, build, keep=(proposal, given, dict(params or {}),
                                                                                 dict(proposal_params or {})))
    key = as_key(seed)
    try:
        k = inputs.steps
        if not progress and k > 0:
            carry, first, rec = eng.whole(key, inputs.arrays, inputs.observed, ps, inputs.first(), inputs.xs(0, k))
            # JAX dispatches asynchronously: wait, so that a returned result is a finished run
            # (timings, and errors surfacing here rather than at the first read)
            jax.block_until_ready((carry, first, rec))
            return SMCResult(eng, inputs, key, ps, carry, first, (rec,), given, computed)
        carry, first = eng.start(key, inputs.arrays, inputs.observed, ps, inputs.first())
        chunks = []
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
    jax.block_until_ready((carry, first, chunks))
    return SMCResult(eng, inputs, key, ps, carry, first, tuple(chunks), given, computed)


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
