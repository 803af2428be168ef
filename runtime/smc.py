"""Particle systems: resampling schemes, one step of a particle filter, the scan over time, and
what is read off a finished filter (lineages, weighted means and quantiles).

The compiler's `smc` transformation turns a model into two per-particle functions, `init` (the
statements before the loop over time) and `step` (one iteration of it). This module runs them:
`start` draws the particles of step 0, `advance` does one step for all particles at once
(resample when the effective sample size is low, propagate with the step function vectorized
over particles, weight), and `run` is `lax.scan` over `advance`. Nothing here knows about the
model beyond those two functions; it never imports the compiler.

Weights are kept normalized (their log-sum-exp is 0 after each step); the log marginal likelihood
estimate accumulates the log of each step's weight sum, `log Z = sum_k log sum_n w_(k-1)^n a_k^n`
with `a_k^n` the incremental weight of particle n at step k. Its exponential is unbiased for the
marginal likelihood whenever every resampling draws ancestor `j` with expected count `N V_j` and
gives the copy weight `W_j / (N V_j)` (V = W for ordinary resampling, so each copy weighs 1/N; V
is the tempered W under entropy-guided annealing).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp

Array = Any

# ---------------------------------------------------------------- helpers generated steps call


def window(arr: Array, pos: Any, steps: int) -> Array:
    """The `steps` positions of `arr` before `pos` (`arr[pos - steps:pos]`): the past a step reads.
    Positions before 0 wrap around, as `x[t - 1]` does at `t = 0` in the model."""
    idx = pos - steps + jnp.arange(steps)
    return jnp.take(jnp.asarray(arr), idx, axis=0, mode="wrap")


def shift(win: Array, piece: Array | None) -> Array:
    """Drop the oldest position of a window and append this step's piece."""
    new = jnp.zeros_like(win[0]) if piece is None else jnp.asarray(piece, win.dtype)
    return jnp.concatenate([win[1:], new[None]], axis=0)


# ---------------------------------------------------------------- weights


def normalize(log_w: Array) -> Array:
    return log_w - logsumexp(log_w)


def ess(log_w: Array) -> Array:
    """Kish's effective sample size, 1 / sum W^2, of (unnormalized) log weights."""
    return jnp.exp(-logsumexp(2.0 * normalize(log_w)))


def normalized_entropy(log_w: Array) -> Array:
    """Entropy of the normalized weights divided by log N: 1 for equal weights, 0 for one particle."""
    n = log_w.shape[0]
    lw = normalize(log_w)
    w = jnp.exp(lw)
    h = -jnp.sum(jnp.where(w > 0, w * lw, 0.0))
    return h / math.log(n) if n > 1 else jnp.ones_like(h)


def tempered(log_w: Array, beta: Array) -> Array:
    """Normalized log of W^beta; particles of weight zero stay at zero (also for beta = 0)."""
    return normalize(jnp.where(jnp.isfinite(log_w), beta * log_w, -jnp.inf))


def temper(log_w: Array, target: float, iters: int = 30) -> Array:
    """The largest beta in [0, 1] (to 2^-iters) whose tempered weights W^beta have normalized entropy at
    least `target`. Entropy falls as beta grows (its derivative is -beta Var_V(log W)), so bisect."""

    def body(_: int, lohi: tuple) -> tuple:
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        ok = normalized_entropy(tempered(log_w, mid)) >= target
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, _ = lax.fori_loop(0, iters, body, (jnp.zeros((), log_w.dtype), jnp.ones((), log_w.dtype)))
    return lo


# ---------------------------------------------------------------- resampling schemes
# Each maps (key, log weights of N particles) to N ancestor indices with E[count of j] = N W_j.


def _inverse_cdf(log_w: Array, u: Array) -> Array:
    """Ancestors for sorted points `u` in [0, 1): the particle whose cumulative-weight interval
    holds each point (weight-zero particles have empty intervals and are never chosen)."""
    n = log_w.shape[0]
    top = jnp.max(log_w)
    cdf = jnp.cumsum(jnp.exp(log_w - jnp.where(jnp.isfinite(top), top, 0.0)))  # scaled by cdf[-1] below
    idx = jnp.searchsorted(cdf, u * cdf[-1], side="right")
    return jnp.minimum(idx, n - 1).astype(jnp.int32)


def multinomial(key: Array, log_w: Array) -> Array:
    """N independent draws from the weights."""
    n = log_w.shape[0]
    return jax.random.choice(key, n, (n,), p=jnp.exp(normalize(log_w))).astype(jnp.int32)


def stratified(key: Array, log_w: Array) -> Array:
    """One uniform point in each of the N strata [i/N, (i+1)/N)."""
    n = log_w.shape[0]
    return _inverse_cdf(log_w, (jnp.arange(n) + jax.random.uniform(key, (n,))) / n)


def systematic(key: Array, log_w: Array) -> Array:
    """The points (i + U)/N for one uniform U: the lowest-variance of the four, the usual default."""
    n = log_w.shape[0]
    return _inverse_cdf(log_w, (jnp.arange(n) + jax.random.uniform(key, ())) / n)


def residual(key: Array, log_w: Array) -> Array:
    """floor(N W_j) copies of each particle, then multinomial draws from the remainders for the rest."""
    n = log_w.shape[0]
    nw = n * jnp.exp(normalize(log_w))
    counts = jnp.floor(nw)
    kept = jnp.cumsum(counts).astype(jnp.int32)
    pos = jnp.arange(n)
    fixed = jnp.minimum(jnp.searchsorted(kept, pos, side="right"), n - 1).astype(jnp.int32)
    rest = nw - counts
    total = jnp.sum(rest)
    p = jnp.where(total > 0, rest / jnp.where(total > 0, total, 1.0), 1.0 / n)
    drawn = jax.random.choice(key, n, (n,), p=p).astype(jnp.int32)
    return jnp.where(pos < kept[-1], fixed, drawn)


SCHEMES: dict[str, Callable[[Array, Array], Array]] = {
    "multinomial": multinomial,
    "stratified": stratified,
    "systematic": systematic,
    "residual": residual,
}


# ---------------------------------------------------------------- the filter


class Options(NamedTuple):
    """Static choices of a particle filter (they select code, so they are not traced)."""

    scheme: str = "systematic"
    threshold: float = 0.5  # resample when ESS < threshold * N; >= 1 every step; <= 0 never
    anneal: float | None = None  # target normalized entropy of tempered resampling weights; None: off
    record: bool = True  # keep each step's evidence, ESS and filtering means (off for a bare log Z estimate)
    history: bool = True  # also keep each step's particles, weights and ancestors (quantiles, genealogy)


class Carry(NamedTuple):
    """The particle system between steps."""

    state: Any  # what each particle carries to the next step (leading axis: particles)
    log_w: Array  # (N,) normalized log weights
    log_z: Array  # log marginal likelihood estimate so far
    origin: Array  # (N,) each particle's ancestor at step 0
    ess: Array  # effective sample size of `log_w` (decides the next resampling)


class Record(NamedTuple):
    """What one step leaves behind (stacked over steps by `run`)."""

    log_z_inc: Array  # log of this step's evidence increment
    ess: Array  # effective sample size of the weights after this step
    resampled: Array  # whether the particles were resampled before this step
    beta: Array  # tempering exponent of that resampling (1: not tempered)
    means: Any  # weighted mean of each choice this step drew
    ancestors: Array | None  # (N,) index of each particle's parent among the previous step's particles
    log_w: Array | None  # (N,) normalized log weights after this step
    values: Any  # the random choices this step drew, per particle (None without history)


def record(opts: Options, z: Array, log_w: Array, w: Array, ess_: Array, flag: Array, beta: Array, anc: Array,
           values: Any) -> Record:
    """What a step keeps; `w = exp(log_w)` (normalized weights), `ess_` their effective sample size."""
    means = jax.tree.map(lambda v: jnp.tensordot(w, jnp.asarray(v, w.dtype), axes=1), values)
    if not opts.history:
        return Record(z, ess_, flag, beta, means, None, None, None)
    return Record(z, ess_, flag, beta, means, anc, log_w, values)


class Placement(NamedTuple):
    """Where arrays live: `particles` constrains a per-particle pytree (leading axis sharded over
    devices), `replicated` puts an array on every device."""

    particles: Callable[[Any], Any]
    replicated: Callable[[Any], Any]


ON_ONE_DEVICE = Placement(lambda tree: tree, lambda x: x)


def placement(devices: Sequence[Any]) -> Placement:
    """Shard the particle axis over `devices` (a 1-d mesh). The weights are replicated, so
    normalizing, resampling and the evidence are computed on the whole weight vector exactly as
    on one device, and only the per-particle work is split."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(list(devices)), ("particles",))
    split_ = NamedSharding(mesh, PartitionSpec("particles"))
    whole = NamedSharding(mesh, PartitionSpec())

    def particles(tree: Any) -> Any:
        return jax.tree.map(lambda x: lax.with_sharding_constraint(x, split_) if jnp.ndim(x) else x, tree)

    return Placement(particles, lambda x: lax.with_sharding_constraint(x, whole))


def _weigh(log_w0: Array, inc: Array) -> tuple[Array, Array, Array, Array]:
    """New normalized log weights, their exponentials and effective sample size, and the log
    evidence increment; a step that kills every particle gives increment -inf and equal weights
    (so nothing becomes NaN)."""
    n = inc.shape[0]
    lw = log_w0 + jnp.where(jnp.isnan(inc), -jnp.inf, inc)
    z = logsumexp(lw)
    log_w = jnp.where(jnp.isfinite(z), lw - z, -math.log(n))
    w = jnp.exp(log_w)
    return log_w, w, 1.0 / jnp.sum(w * w), z


def start(init: Callable, key: Array, n: int, opts: Options, place: Placement = ON_ONE_DEVICE) -> tuple:
    """Step 0: `init(key) -> (state, values, log weights)` for all particles at once (the key is
    shared: the per-particle functions fold in the particle's index where they need to)."""
    state, values, inc = init(jax.random.fold_in(key, 0))
    state = place.particles(state)
    log_w, w, ess_, z = _weigh(jnp.full((n,), -math.log(n)), place.replicated(inc))
    ident = jnp.arange(n, dtype=jnp.int32)
    carry = Carry(state, log_w, z, ident, ess_)
    if not opts.record:
        return carry, None
    return carry, record(opts, z, log_w, w, ess_, jnp.asarray(False), jnp.ones(()), ident, values)


def resample(key: Array, log_w: Array, opts: Options) -> tuple[Array, Array, Array]:
    """Ancestors, the log weights of the copies, and the tempering exponent used.

    With annealing, when the normalized entropy of W is below the target, ancestors are drawn from
    V proportional to W^beta, beta chosen so that V reaches the target entropy, and each copy of
    particle j carries W_j / (N V_j): still E[sum of copies' weights times f] = sum_j W_j f(x_j),
    so the likelihood estimate stays unbiased, while the draw keeps more distinct particles."""
    n = log_w.shape[0]
    log_w = lax.stop_gradient(log_w)  # the ancestors are discrete: nothing to differentiate
    if opts.anneal is None:
        return SCHEMES[opts.scheme](key, log_w), jnp.full((n,), -math.log(n), log_w.dtype), jnp.ones((), log_w.dtype)
    low = normalized_entropy(log_w) < opts.anneal
    beta = jnp.where(low, temper(log_w, opts.anneal), 1.0)
    log_v = tempered(log_w, beta)
    anc = SCHEMES[opts.scheme](key, log_v)
    return anc, log_w[anc] - log_v[anc] - math.log(n), beta


def advance(propagate: Callable, opts: Options, place: Placement, key: Array, carry: Carry, x: tuple) -> tuple:
    """One step for all particles. `x = (k, payload)`: the step number (which fixes the keys) and
    what `propagate(state, key, payload) -> (state, values, log weights)` needs for this step.
    Resampling (deciding on the previous step's ESS) happens under `lax.cond`, so a step that
    does not resample does not compute ancestors."""
    k, payload = x
    n = carry.log_w.shape[0]
    kr, kp = jax.random.split(jax.random.fold_in(key, k))
    log_w = place.replicated(carry.log_w)

    def resampled(c: Carry) -> tuple:
        anc, lw0, beta = resample(kr, log_w, opts)
        return jax.tree.map(lambda v: v[anc], c.state), c.origin[anc], anc, lw0, beta

    def kept(c: Carry) -> tuple:
        return c.state, c.origin, jnp.arange(n, dtype=jnp.int32), log_w, jnp.ones((), log_w.dtype)

    if opts.threshold <= 0.0:
        flag, parts = jnp.asarray(False), kept(carry)
    elif opts.threshold >= 1.0:
        flag, parts = jnp.asarray(True), resampled(carry)
    else:
        flag = carry.ess < opts.threshold * n
        parts = lax.cond(flag, resampled, kept, carry)
    state, origin, anc, lw0, beta = parts
    state, values, inc = propagate(place.particles(state), kp, payload)
    state = place.particles(state)
    new_w, w, ess_, z = _weigh(lw0, place.replicated(inc))
    carry = Carry(state, new_w, carry.log_z + z, origin, ess_)
    if not opts.record:
        return carry, None
    return carry, record(opts, z, new_w, w, ess_, flag, beta, anc, values)


def run(propagate: Callable, opts: Options, place: Placement, key: Array, carry: Carry, xs: Any) -> tuple:
    """`advance` over the steps in `xs` as one `lax.scan`."""
    return lax.scan(partial(advance, propagate, opts, place, key), carry, xs)


def promote(step: Callable, state: Any) -> Any:
    """Cast the initial state to the dtypes and shapes the step produces (a running sum that
    starts as the int 0 becomes a float), as `rt.scan` does for a scan's carry."""
    for _ in range(4):
        out = jax.eval_shape(step, state)
        same = jax.tree.map(lambda a, b: (jnp.shape(a), jnp.result_type(a)) == (b.shape, b.dtype), state, out)
        if all(jax.tree.leaves(same)):
            break
        state = jax.tree.map(lambda a, b: jnp.broadcast_to(jnp.asarray(a, b.dtype), b.shape), state, out)
    return state


# ---------------------------------------------------------------- reading a finished filter


@jax.jit
def origins(ancestors: Array) -> Array:
    """(K + 1, N): for each step and particle, the index of its step-0 ancestor."""
    n = ancestors.shape[1]

    def body(o: Array, a: Array) -> tuple:
        o = o[a]
        return o, o

    first = jnp.arange(n, dtype=jnp.int32)
    _, rest = lax.scan(body, first, ancestors)
    return jnp.concatenate([first[None], rest], axis=0)


@jax.jit
def lineage(ancestors: Array, final: Array) -> Array:
    """(K + 1, n): the index, at each step, of the particles whose descendants at the last step are
    `final` (ancestor tracing through the genealogy)."""

    def body(idx: Array, a: Array) -> tuple:
        return a[idx], idx

    first, later = lax.scan(body, final, ancestors, reverse=True)
    return jnp.concatenate([first[None], later], axis=0)


@jax.jit
def along(values: Array, idx: Array) -> Array:
    """values (K, N, ...) taken at idx (K, n) per step: (K, n, ...)."""
    return jax.vmap(lambda v, i: v[i])(values, idx)


@jax.jit
def weighted_mean(values: Array, log_w: Array) -> Array:
    """sum_n W_n values_n over the particle axis (axis 1 of `values`, weights (K, N))."""
    w = jnp.exp(log_w)
    return jnp.einsum("kn,kn...->k...", w, jnp.asarray(values, w.dtype))


@partial(jax.jit, static_argnames="qs")
def weighted_quantiles(values: Array, log_w: Array, qs: tuple[float, ...]) -> Array:
    """(len(qs), K, ...): for each step, the smallest value whose weighted CDF reaches q."""
    qs = jnp.asarray(qs)

    def one(v: Array, lw: Array) -> Array:  # v (N,), lw (N,)
        order = jnp.argsort(v)
        cdf = jnp.cumsum(jnp.exp(lw)[order])
        pos = jnp.minimum(jnp.searchsorted(cdf, qs * cdf[-1], side="left"), v.shape[0] - 1)
        return v[order][pos]

    values = jnp.asarray(values, float)
    k, n = values.shape[:2]
    flat = values.reshape(k, n, -1)
    out = jax.vmap(jax.vmap(one, in_axes=(1, None), out_axes=1), in_axes=(0, 0), out_axes=1)(flat, log_w)
    return out.reshape((qs.shape[0], k) + values.shape[2:])
