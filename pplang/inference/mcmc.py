"""Gradient-based MCMC (NUTS, HMC) through blackjax: `sample(model, data)` -> `SampleResult`.

The latent choices are laid out as one flat vector of unconstrained coordinates (each choice's
block in program order, mapped to its support by pplang.stdlib.constraints; the log density
includes the log-Jacobians). All chains run in one compiled program: the blackjax kernel and
Stan's window adaptation (blackjax's step-size dual averaging and Welford mass-matrix estimate,
on Stan's schedule of fast and slow windows) are vmapped over chains; with several devices the
chain axis is sharded over a 1-D mesh.

Steps run in chunks of one `lax.scan` each, so the progress bar and checkpoints cost nothing per
step. Step `t` (counted over warmup and sampling) of chain `c` uses the key `fold_in(key_c, t)`,
so a run resumed from a checkpoint, or run with other chunks, takes exactly the same steps.
Warmup and sampling are one scan body (the adaptation updates only while `t < warmup`), so one
compilation serves both; the last chunk is padded to the chunk length rather than compiled again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from pplang import runtime as rt
from pplang.compiler.diagnostics import did_you_mean, error
from pplang.data import Bound
from pplang.files import check_target
from pplang.inference.mcmc_result import SampleResult, run_impl
from pplang.inference.supports import SupportRecorder
from pplang.models import Model, as_key
from pplang.runtime.archives import load_npz

METHODS = ("nuts", "hmc")
MASS_MATRICES = ("diag", "dense")
INIT_RADIUS = 2.0  # default initial points: uniform(-2, 2) on every unconstrained coordinate, as Stan's
INIT_TRIES = 100  # candidate initial points per chain; the first with a finite log density and gradient is used
CHECKPOINT_FILE = "mcmc_checkpoint.npz"
CHECKPOINT_FORMAT = 1
STAT_NAMES = ("diverging", "tree_depth", "n_steps", "acceptance_rate", "energy", "lp")


# ---------------------------------------------------------------- the latent choices


@dataclass(frozen=True)
class Site:
    """One latent choice: its shape, the shape of its unconstrained coordinates, and the slice
    [start, stop) of them in the flat position vector."""

    address: str
    shape: tuple
    ushape: tuple
    start: int
    stop: int


def layout(model: Model, bound: Bound) -> list[Site]:
    """The latent choices in program order (a located error for a discrete one, which gradient-based
    samplers cannot move)."""
    holder: list[SupportRecorder] = []

    def run(key: Any) -> dict:
        ctx = SupportRecorder(bound.observed, model.hosts)
        holder.append(ctx)
        return run_impl(model, bound, ctx, key, bound.arrays)[1]

    trace = jax.eval_shape(run, jax.random.key(0))
    supports = holder[0].supports
    sites, start = [], 0
    for a in model.latent_addresses(bound):
        if a not in supports:
            continue
        info = model.sites[a]
        if info.kind in ("int", "bool") or supports[a].is_discrete:
            raise error(f"NUTS and HMC move continuous choices only; `{a}` ({info.dist}) is discrete", info.span,
                        model.source, hint="leave marginalize on to sum it out (bernoulli, categorical and "
                        "binomial choices), or use `pplang smc` or importance sampling (`pplang infer --method is`)")
        shape = tuple(trace[a].shape)
        ushape = tuple(supports[a].unconstrained_shape(shape))
        sites.append(Site(a, shape, ushape, start, start + math.prod(ushape)))
        start += math.prod(ushape)
    if not sites:
        raise error(f"{model.kind} `{model.name}` has no latent random choice with this data: there is nothing to "
                    "sample", model.fn.span, model.source, hint="leave out of the data a choice to infer")
    return sites


def unflatten(sites: list[Site], x: Any) -> dict[str, Any]:
    return {s.address: x[s.start:s.stop].reshape(s.ushape) for s in sites}


def flatten(sites: list[Site], values: Mapping[str, Any]) -> Any:
    return jnp.concatenate([jnp.ravel(values[s.address]) for s in sites])


# ---------------------------------------------------------------- initial points


def initial_points(model: Model, bound: Bound, sites: list[Site], init: Any, key: Any, chains: int,
                   params: dict, score: Callable) -> Any:
    """(chains, D) initial unconstrained points: uniform(-2, 2) per coordinate by default (the
    first of 100 candidates with a finite log density and gradient), draws from the prior with
    `init="prior"`, or the given constrained values (a dict; other choices uniform)."""
    dim = sites[-1].stop
    if init is None or init == "uniform":
        cand = jax.random.uniform(key, (INIT_TRIES, chains, dim), minval=-INIT_RADIUS, maxval=INIT_RADIUS)
        return first_finite(model, bound, sites, cand, params, score)
    if isinstance(init, str) and init != "prior":
        raise error(f"unknown init {init!r}", hint="init is 'uniform' (the default), 'prior', or a dict of "
                    "initial values by choice")
    given = {} if init == "prior" else checked_init(model, sites, init)
    latents = frozenset(s.address for s in sites)

    def coords(k: Any) -> tuple[dict, dict]:
        ctx = SupportRecorder({**bound.observed, **given}, model.hosts, latents)
        trace = run_impl(model, bound, ctx, k, bound.arrays)[1]
        supports = {a: ctx.supports[a] for a in latents}
        return ({a: supports[a].inverse(jnp.asarray(trace[a], float)) for a in latents},
                {a: jnp.all(supports[a].check(trace[a])) for a in latents})

    try:
        u, inside = jax.jit(jax.vmap(coords))(jax.random.split(key, chains))
    except jax.errors.UnexpectedTracerError:
        raise error("initial values by choice (or from the prior) need supports with fixed bounds, but a bound of "
                    "this model is computed inside a loop", model.fn.span, model.source,
                    hint="use the default init (uniform(-2, 2) in unconstrained coordinates)") from None
    for s in sites:
        if s.address in given and not bool(jnp.all(inside[s.address])):
            info = model.sites[s.address]
            raise error(f"the initial value of `{s.address}` lies outside its support ({info.support})", info.span,
                        model.source, found=str(np.asarray(given[s.address])), hint="give a value the choice can take")
    if init != "prior":
        uniform = jax.random.uniform(jax.random.fold_in(key, 1), (chains, dim), minval=-INIT_RADIUS,
                                     maxval=INIT_RADIUS)
        u = {s.address: u[s.address] if s.address in given else uniform[:, s.start:s.stop].reshape((chains, *s.ushape))
             for s in sites}
    x = jax.vmap(lambda v: flatten(sites, v))(u)
    return first_finite(model, bound, sites, x[None], params, score)


def checked_init(model: Model, sites: list[Site], init: Any) -> dict[str, Any]:
    """The constrained initial values of a dict `init`, checked against the latent choices."""
    if not isinstance(init, Mapping):
        raise error(f"init must be 'uniform', 'prior' or a dict of initial values, not {type(init).__name__}",
                    hint='for example init={"tau": 1.0}')
    by_name = {s.address: s for s in sites}
    out = {}
    for a, value in init.items():
        if a not in by_name:
            raise error(f"init names `{a}`, which is not a latent choice of {model.kind} `{model.name}`",
                        model.fn.span, model.source, hint=did_you_mean(a, by_name) or f"latent: {', '.join(by_name)}")
        try:
            out[a] = jnp.broadcast_to(jnp.asarray(value, float), by_name[a].shape)
        except (TypeError, ValueError):
            raise error(f"the initial value of `{a}` has shape {np.shape(value)} but the choice has shape "
                        f"{by_name[a].shape}", model.sites[a].span, model.source,
                        hint="give one value, or an array of the choice's shape") from None
    return out


def first_finite(model: Model, bound: Bound, sites: list[Site], cand: Any, params: dict, score: Callable) -> Any:
    """Per chain, the first candidate (axis 0) where the log density and its gradient are finite; a
    located error naming the choice whose density is not finite when a chain has none."""
    lp, grad = score(cand)
    ok = jnp.isfinite(lp) & jnp.all(jnp.isfinite(grad), axis=-1)
    first = jnp.argmax(ok, axis=0)
    if bool(jnp.all(jnp.any(ok, axis=0))):
        return cand[first, jnp.arange(cand.shape[1])]
    chain = int(jnp.argmin(jnp.any(ok, axis=0)))
    raise bad_point(model, bound, sites, cand[0, chain], params, cand.shape[0])


def bad_point(model: Model, bound: Bound, sites: list[Site], x: Any, params: dict, tries: int) -> Exception:
    """An error naming the choices whose log density (or its gradient) is not finite at `x`."""
    values = unflatten(sites, x)
    latents = frozenset(values)

    def terms(v: dict) -> dict:
        ctx = rt.Context({**bound.observed, **v}, params, model.hosts, latents, complete=True, record=True)
        return run_impl(model, bound, ctx, jax.random.key(0), bound.arrays)[2].terms

    lps = jax.jit(terms)(values)
    grads = jax.jit(jax.grad(lambda v: sum(jnp.sum(t) for t in terms(v).values())))(values)
    bad = [a for a, t in lps.items() if not bool(jnp.all(jnp.isfinite(t)))]
    bad += [a for a, g in grads.items() if a not in bad and not bool(jnp.all(jnp.isfinite(g)))]
    where = ", ".join(f"`{a}`" for a in bad) or "the model"
    first = model.sites.get(bad[0]) if bad else None
    shown = {s.address: np.round(np.asarray(values[s.address]), 3).tolist() for s in sites if s.address in bad}
    tried = f" (tried {tries} initial points)" if tries > 1 else ""
    return error(f"the log density is not finite at the initial point{tried}: the density of {where} is "
                 f"{'-inf or NaN' if bad else 'not finite'}", first.span if first else model.fn.span, model.source,
                 found=f"unconstrained values {shown}" if shown else None,
                 hint="give init={...} with values inside each choice's support where the data are possible, "
                 "or check the model's parameters")


# ---------------------------------------------------------------- the compiled chunk of steps


@dataclass(frozen=True)
class Config:
    """The static configuration of the sampler (hashable: it keys the compiled-runner cache)."""

    method: str
    diagonal: bool
    target_accept: float
    max_tree_depth: int
    num_integration_steps: int
    fixed_metric: bool


def adaptation(cfg: Config) -> tuple[Callable, Callable, Callable]:
    """blackjax's Stan window adaptation, one step at a time: (init, update, final)."""
    from blackjax.adaptation.window_adaptation import base

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the step-wise form, which chunking needs
        return base(cfg.diagonal, target_acceptance_rate=cfg.target_accept)


class Programs(NamedTuple):
    """The compiled pieces of a sampler, all taking the data as an argument (so one compilation
    serves every call with data of the same shapes):
    - score(candidates (T, chains, D), data) -> (log density, gradient), for initial points;
    - start(positions (chains, D), metric, data) -> carry: per chain the blackjax state, the
      adaptation state, the step size and the inverse mass matrix in force;
    - chunk(carry, chain_keys, ts, stages, ends, warmup, data) -> (carry, records): one chunk of
      steps of every chain."""

    score: Callable
    start: Callable
    chunk: Callable


@lru_cache(maxsize=32)
def programs(runner: Callable, sites: tuple, latents: frozenset, cfg: Config) -> Programs:
    """The jitted pieces for one model runner and configuration; cached so reruns do not recompile."""
    import blackjax

    algorithm = blackjax.nuts if cfg.method == "nuts" else blackjax.hmc
    kernel = algorithm.build_kernel()
    extra = {"max_num_doublings": cfg.max_tree_depth} if cfg.method == "nuts" else \
        {"num_integration_steps": cfg.num_integration_steps}
    adapt_init, adapt_update, adapt_final = adaptation(cfg)
    site_list = list(sites)

    def score(cand: Any, data: tuple) -> tuple:
        return jax.vmap(jax.vmap(jax.value_and_grad(density(runner, site_list, latents, data))))(cand)

    def start(positions: Any, metric: Any, data: tuple) -> tuple:
        log_density = density(runner, site_list, latents, data)

        def one(x: Any) -> tuple:
            a = adapt_init(x, 1.0)
            carry = algorithm.init(x, log_density), a, a.step_size, metric if cfg.fixed_metric else \
                a.inverse_mass_matrix
            return jax.tree.map(lambda v: jnp.asarray(v, jnp.asarray(v).dtype), carry)  # no weak types

        return jax.vmap(one)(positions)

    def one_chain(carry: tuple, chain_key: Any, ts: Any, stages: Any, ends: Any, warmup: Any, data: tuple) -> tuple:
        log_density = density(runner, site_list, latents, data)

        def step(c: tuple, x: tuple) -> tuple:
            state, astate, step_size, imm = c
            t, stage, end = x
            new, info = kernel(jax.random.fold_in(chain_key, t), state, log_density, step_size, imm, **extra)

            def adapt(a: Any) -> tuple:
                a = adapt_update(a, (stage, end), new.position, info.acceptance_rate)
                last_size, last_imm = adapt_final(a)
                size = jnp.where(t == warmup - 1, last_size, a.step_size)
                inv = jax.tree.map(lambda f, cur: jnp.where(t == warmup - 1, f, cur), last_imm, a.inverse_mass_matrix)
                return a, size, imm if cfg.fixed_metric else inv

            astate, step_size, imm = jax.lax.cond(t < warmup, adapt, lambda a: (a, step_size, imm), astate)
            depth = info.num_trajectory_expansions if cfg.method == "nuts" else jnp.zeros((), jnp.int32)
            record = (new.position, info.is_divergent, depth, info.num_integration_steps, info.acceptance_rate,
                      info.energy, new.logdensity)
            return (new, astate, step_size, imm), record

        return jax.lax.scan(step, carry, (ts, stages, ends))

    chunk = jax.vmap(one_chain, in_axes=(0, 0, None, None, None, None, None))
    return Programs(jax.jit(score), jax.jit(start), jax.jit(chunk))


def density(runner: Callable, sites: list[Site], latents: frozenset, data: tuple) -> Callable:
    """The log joint of a flat unconstrained vector (NaN read as -inf: a point the sampler rejects)."""
    observed, params, arrays = data
    key = jax.random.key(0)

    def log_density(x: Any) -> Any:
        lp = runner(key, {**observed, **unflatten(sites, x)}, params, arrays)[2].lp
        return jnp.where(jnp.isnan(lp), -jnp.inf, lp)

    return log_density


def checked_metric(metric: Any, dim: int, sites: list[Site]) -> tuple[bool, Any]:
    """(diagonal, inverse mass matrix or None) from `mass_matrix`."""
    if isinstance(metric, str):
        if metric not in MASS_MATRICES:
            raise error(f"unknown mass_matrix {metric!r}", hint="'diag', 'dense', or an array: the inverse mass "
                        f"matrix, of shape ({dim},) or ({dim}, {dim})")
        return metric == "diag", None
    m = np.asarray(metric, dtype=float)
    if m.shape not in ((dim,), (dim, dim)):
        order = ", ".join(f"{s.address} {s.stop - s.start}" for s in sites)
        raise error(f"the mass matrix has shape {m.shape}, but the model has {dim} unconstrained coordinates",
                    expected=f"({dim},) for a diagonal or ({dim}, {dim}) for a dense inverse mass matrix",
                    found=str(m.shape), hint=f"coordinates in program order: {order}")
    if not np.all(np.isfinite(m)) or (m.ndim == 1 and np.any(m <= 0)):
        raise error("the mass matrix must be finite with positive diagonal entries",
                    hint="give the (approximate) posterior variances in unconstrained coordinates")
    return m.ndim == 1, jnp.asarray(m, jnp.result_type(float))


def check_count(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise error(f"{name} must be a whole number of at least {low}, got {value!r}",
                    hint=f"for example {name}={1000 if name in ('draws', 'warmup') else 4}")


# ---------------------------------------------------------------- sampling


def sample(model: Model, data: Mapping[str, Any] | None = None, *, method: str = "nuts", chains: int = 4,
           warmup: int = 1000, draws: int = 1000, seed: Any = 0, target_accept: float = 0.8, max_tree_depth: int = 10,
           mass_matrix: Any = "diag", init: Any = None, thin: int = 1, num_integration_steps: int = 16,
           progress: bool = True, checkpoint: str | Path | None = None, params: Mapping | None = None,
           chunk: int = 100, computed: bool | Sequence[str] = True,
           marginalize: bool | Sequence[str] = True) -> SampleResult:
    """Posterior draws of the latent choices by NUTS (default) or HMC with Stan's warmup.

    - warmup: adaptation steps (step size, and the inverse mass matrix 'diag' or 'dense'); 0 runs
      with step size 1 and the given (or unit) mass matrix. `mass_matrix` may be an array, the
      inverse mass matrix in unconstrained coordinates ((D,) or (D, D)); warmup then adapts the
      step size only.
    - init: None or 'uniform' (uniform(-2, 2) per unconstrained coordinate, as Stan), 'prior', or
      a dict of constrained initial values (the other choices uniform).
    - thin: keep every thin-th draw (draws * thin steps run after warmup).
    - checkpoint: a folder; the state is saved after each chunk of `chunk` steps, and a call with
      the same arguments resumes from it, giving the draws of an uninterrupted run.
    - computed: which values the model computes to keep beside the draws (all, none or names).
    - marginalize: discrete latent choices with finite support (bernoulli, categorical, binomial)
      are summed out of the log density so that NUTS samples the continuous ones (True, the
      default: all of them; a list: those; False: none, and a discrete latent choice is an error).
    """
    if method not in METHODS:
        raise error(f"unknown method {method!r}",
                    hint=did_you_mean(str(method), METHODS) or "method is 'nuts' or 'hmc'")
    check_count("chains", chains, 1)
    check_count("draws", draws, 1)
    check_count("warmup", warmup, 0)
    check_count("thin", thin, 1)
    check_count("chunk", chunk, 1)
    check_count("max_tree_depth", max_tree_depth, 1)
    check_count("num_integration_steps", num_integration_steps, 1)
    if not 0.0 < float(target_accept) < 1.0:
        raise error(f"target_accept must be between 0 and 1, got {target_accept!r}", hint="for example 0.8 (or "
                    "0.95 to remove divergences)")
    model = model.summed_out(model.bind(data).observed, marginalize)
    bound = model.bind(data)  # the same data again: the same Bound, and its layout is reused
    sites = model.reuse(("layout", id(bound)), lambda: layout(model, bound), keep=bound)
    dim = sites[-1].stop
    diagonal, metric = checked_metric(mass_matrix, dim, sites)
    params = dict(params or {})
    latents = frozenset(s.address for s in sites)
    runner = model.runner(bound, latents | frozenset(bound.observed), latents, frozenset(params), complete=True)
    cfg = Config(method, diagonal, float(target_accept), int(max_tree_depth), int(num_integration_steps),
                 metric is not None)
    mesh = chain_mesh(chains)
    data_args = place((dict(bound.observed), params, dict(bound.arrays)), mesh, False)
    prog = programs(runner, tuple(sites), latents, cfg)
    fixed = jnp.zeros(()) if metric is None else metric

    key = as_key(seed)
    chain_keys = place(jax.random.split(jax.random.fold_in(key, 1), chains), mesh, True)
    total = warmup + draws * thin
    n_chunks = -(-total // chunk)
    length = -(-total // n_chunks)  # chunks of equal length; the last is padded with steps that are dropped
    stages = np.zeros((n_chunks * length, 2), np.int32)
    if warmup:
        stages[:warmup] = np.asarray(adaptation_schedule(warmup), np.int32)

    fingerprint = {"model": model.name, "program": hashlib.sha256(model.source.encode()).hexdigest()[:16],
                   "method": method, "chains": chains, "warmup": warmup, "draws": draws,
                   "thin": thin, "target_accept": float(target_accept), "max_tree_depth": int(max_tree_depth),
                   "mass_matrix": mass_matrix if isinstance(mass_matrix, str) else "array",
                   "num_integration_steps": int(num_integration_steps), "dim": dim, "chunk": length,
                   "init": init if init is None or isinstance(init, str) else "dict",
                   "seed": np.asarray(jax.random.key_data(key)).tolist(),
                   "inputs": digest(bound, params, init, metric)}
    folder = None if checkpoint is None else check_target(checkpoint, "folder", True, "checkpoint folder")
    saved = load_checkpoint(folder, fingerprint) if folder is not None else None
    if saved is None:
        x0 = initial_points(model, bound, sites, init, jax.random.fold_in(key, 0), chains, params,
                            lambda cand: prog.score(cand, data_args))
        carry = prog.start(place(x0, mesh, True), fixed, data_args)
        done, records = 0, []
    else:
        template = jax.eval_shape(prog.start, jnp.zeros((chains, dim)), fixed, data_args)
        leaves = jax.tree.leaves(template)
        if len(saved["carry"]) != len(leaves) or any(np.shape(a) != t.shape for a, t in zip(saved["carry"], leaves)):
            raise error(f"the checkpoint in {folder} is damaged: its sampler state does not have this run's shapes",
                        hint="delete it to start afresh")
        carry = jax.tree.unflatten(jax.tree.structure(template),
                                   [jnp.asarray(a, t.dtype) for a, t in zip(saved["carry"], leaves)])
        done, records = saved["done"], [tuple(saved["records"])] if saved["done"] > warmup else []
    carry = place(carry, mesh, True)
    bar = tqdm(total=total, initial=min(done, total), disable=not progress, unit="step", dynamic_ncols=True,
               desc="warmup" if done < warmup else "sampling")
    try:
        while done < total:
            t = np.arange(done, done + length, dtype=np.int32)
            carry, out = prog.chunk(carry, chain_keys, jnp.asarray(t), jnp.asarray(stages[t, 0]),
                                    jnp.asarray(stages[t, 1].astype(bool)), jnp.int32(warmup), data_args)
            keep = (t >= warmup) & (t < total)
            if keep.any():
                records.append(tuple(np.asarray(r)[:, keep] for r in jax.tree.leaves(out)))
            bar.update(min(done + length, total) - done)
            done += length
            if done >= warmup:
                bar.set_description("sampling")
            if folder is not None:
                save_checkpoint(folder, fingerprint, carry, min(done, total), records)
    finally:
        bar.close()
    cols = [np.concatenate(parts, axis=1)[:, thin - 1::thin] for parts in zip(*records)]
    positions, stats = cols[0], dict(zip(STAT_NAMES, cols[1:]))
    if method == "hmc":
        del stats["tree_depth"]
    _, step_size, imm = carry[1:]
    adapted = {"step_size": np.asarray(step_size), "inverse_mass_matrix": np.asarray(imm)}
    info = {"model": model.name, "method": method, "chains": chains, "warmup": warmup, "draws": draws, "thin": thin,
            "target_accept": float(target_accept), "max_tree_depth": int(max_tree_depth),
            "mass_matrix": fingerprint["mass_matrix"], "dim": dim, "devices": mesh.size if mesh else 1}
    if method == "hmc":
        info["num_integration_steps"] = int(num_integration_steps)
    result = SampleResult({}, stats, info, {a: np.asarray(v) for a, v in bound.observed.items()}, adapted,
                          model=model, bound=bound, params=params, sites=sites)
    result.unconstrained = positions
    result.draws = kept(model, data, result.constrained(positions), computed, params, jax.random.fold_in(key, 2))
    choices = (model.full or model).fn.sites  # summed-out choices, recovered per draw, are shown as choices
    result.info["computed"] = [a for a in result.draws if a not in choices]
    result.info["order"] = [*choices, *model.computed_names]  # the summary's row order
    return result


def kept(model: Model, data: Mapping[str, Any] | None, draws: dict[str, np.ndarray], computed: bool | Sequence[str],
         params: Mapping | None, key: Any) -> dict[str, np.ndarray]:
    """The draws (chains, draws, ...) with the values the model computes from each beside them."""
    lead = next(iter(draws.values())).shape[:2] if draws else (0, 0)
    flat = {a: v.reshape(-1, *v.shape[2:]) for a, v in draws.items()}
    return {a: np.asarray(v).reshape(*lead, *np.shape(v)[1:])
            for a, v in model.with_computed(flat, data, computed, params, key).items()}


def adaptation_schedule(warmup: int) -> np.ndarray:
    """Stan's warmup schedule from blackjax: (stage, end of a slow window) per step."""
    from blackjax.adaptation.window_adaptation import build_schedule

    return np.asarray(build_schedule(warmup))


def chain_mesh(chains: int) -> Any:
    """A 1-D mesh over the devices that split the chains evenly, or None on one device."""
    devices = jax.devices()
    n = max(d for d in range(1, len(devices) + 1) if chains % d == 0)
    if n == 1:
        return None
    return jax.sharding.Mesh(np.asarray(devices[:n]), ("chains",))


def place(tree: Any, mesh: Any, by_chain: bool) -> Any:
    """Shard the leading (chain) axis over the mesh, or replicate; unchanged on one device."""
    if mesh is None:
        return tree
    spec = jax.sharding.PartitionSpec("chains") if by_chain else jax.sharding.PartitionSpec()
    return jax.device_put(tree, jax.sharding.NamedSharding(mesh, spec))


# ---------------------------------------------------------------- checkpoints


def digest(bound: Bound, params: Mapping, init: Any, metric: Any) -> str:
    """A hash of the data, parameters, initial values and given mass matrix: a checkpoint resumes
    only the run it was written by."""
    return bound.digest(params, init if isinstance(init, Mapping) else {}, {"metric": metric})


def save_checkpoint(folder: Path, fingerprint: dict, carry: tuple, done: int, records: list) -> Path:
    """Everything a resumed run needs, written to a temporary file and renamed over the old one."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {f"carry/{i}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(carry))}
    if records:
        for j, parts in enumerate(zip(*records)):
            arrays[f"records/{j}"] = np.concatenate(parts, axis=1)
    arrays["meta"] = np.array(json.dumps({"format": CHECKPOINT_FORMAT, "done": done, "config": fingerprint}))
    path = folder / CHECKPOINT_FILE
    tmp = folder / f".{CHECKPOINT_FILE}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(folder: Path, fingerprint: dict) -> dict | None:
    """The saved state, None when there is none; an error when it belongs to another run or is
    damaged (every field is checked: a checkpoint folder may come from elsewhere)."""
    path = folder / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        arrays = load_npz(path)
        meta = json.loads(str(arrays["meta"]))
    except (OSError, ValueError, KeyError, RecursionError) as exc:
        raise error(f"cannot read the checkpoint {path}: {exc}", hint="delete it to start afresh") from None
    damaged = error(f"the checkpoint {path} is damaged", hint="delete it to start afresh")
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise damaged
    old = meta["config"]
    differ = sorted(k for k in fingerprint.keys() | old.keys() if old.get(k) != fingerprint.get(k))
    if meta.get("format") != CHECKPOINT_FORMAT or differ:
        raise error(f"the checkpoint {path} was written by another run "
                    f"(it differs in: {', '.join(differ) or 'format'})",
                    hint="resume with the same arguments, or use another checkpoint folder (or delete this one)")
    done, total = meta.get("done"), fingerprint["warmup"] + fingerprint["draws"] * fingerprint["thin"]
    if type(done) is not int or not 0 <= done <= total:
        raise damaged
    carry = [arrays[f"carry/{i}"] for i in range(sum(k.startswith("carry/") for k in arrays))]
    records = [arrays[f"records/{j}"] for j in range(sum(k.startswith("records/") for k in arrays))]
    kept = max(done - fingerprint["warmup"], 0)
    if any(r.ndim < 2 or r.shape[:2] != (fingerprint["chains"], kept) for r in records) \
            or (kept and len(records) != 1 + len(STAT_NAMES)):
        raise damaged
    return {"done": done, "carry": carry, "records": records}
