"""Automatic guides: variational families generated from a model's latent choices.

`auto_guide(model, kind, data)` reads the model's latent choices (with the data bound: which
choices are observed, and the shape and support of each of the others) and builds a guide that
is an ordinary `Model`: `simulate`, `log_density`, `importance`, importance-sampling proposals and
variational objectives use it exactly as they use a written guide. Every family lives in
unconstrained space: a normal law on the unconstrained coordinates `u` of the choices, pushed
through each support's bijection `x = T(u)` (pplang.stdlib.constraints), so a draw is `T(u)` and
the density of a constrained value is `log N(u) - log|det J_T(u)|` with `u = T^-1(x)`.

Families (D = number of unconstrained coordinates over all latent choices):
- `mean_field`: independent normals per coordinate (loc, scale); 2D parameters.
- `full_rank`: one D-dimensional normal with a dense Cholesky factor; D + D(D+1)/2 parameters.
- `low_rank`: one normal with covariance diag(scale^2) + W W^T, W of shape (D, rank); the default
  rank is ceil(sqrt(D)); D(2 + rank) parameters.
- `delta`: a point mass at T(loc) (MAP in unconstrained space); D parameters.

The joint families draw one choice after another from the chain rule: each choice's block of
coordinates is normal given the earlier blocks, so every choice is a regular random choice
(`ctx.site`) with its own density, and the sum of the per-choice log densities is exactly the
joint normal log density minus the log-Jacobians. For `full_rank`, with z = loc + L eps, block b
given the earlier blocks is normal with mean loc_b + L[b, <b] eps_<b and Cholesky factor L[b, b],
where eps_<b = L[<b, <b]^-1 (z_<b - loc_<b) is accumulated block by block (O(D^2) per run). For
`low_rank`, z = loc + W f + scale * e with f ~ N(0, I_rank): given the earlier blocks, f is normal
with precision P = I + sum W_c^T diag(scale_c^-2) W_c over those blocks, so block b is normal with
mean loc_b + W_b P^-1 h and covariance diag(scale_b^2) + W_b P^-1 W_b^T, again diagonal plus low
rank; its density comes from the Woodbury identity and the matrix determinant lemma. The cost is
O(D rank^2 + B rank^3) per run for B choices: nothing of size D x D is formed.

Initialisation: loc is the coordinate-wise median, in unconstrained space, of 15 draws of the
latent choices from the prior with the observed choices constrained to the data (as NumPyro's
`init_to_median`); improper `flat()` choices start at 0. `init_loc` overrides this per address
with a constrained value. Scales start at `init_scale` (0.1 by default, as NumPyro's AutoNormal).

A guide is built for the data it was given: the latent choices and their shapes come from it.
Binding data under which a latent choice would have another shape is a located error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import linalg
from jax.scipy.stats import norm

from pplang import runtime as rt
from pplang.compiler import ir
from pplang.compiler.diagnostics import did_you_mean, error
from pplang.compiler.dims import eval_shape
from pplang.compiler.names import py_name
from pplang.data import Bound
from pplang.inference.supports import SupportRecorder
from pplang.models import Model
from pplang.stdlib.constraints import CONSTRAINTS, Constraint
from pplang.stdlib.distributions import Distribution

Array = Any

KINDS = ("mean_field", "full_rank", "low_rank", "delta")
INIT_DRAWS = 15  # prior draws whose median initialises loc


# ---------------------------------------------------------------- distributions of one choice


def _sum_trailing(x: Array, ndim: int) -> Array:
    return jnp.sum(x, axis=tuple(range(x.ndim - ndim, x.ndim))) if ndim else x


class Pushforward(Distribution):
    """A law on the unconstrained coordinates of one choice, pushed to the choice's support by the
    support's bijection. Subclasses give the law on `u` (shape `ushape`): `draw_u` and `log_prob_u`.

    The distribution remembers its last draw: the density of the value it just drew is computed
    from the `u` it drew, not from `inverse(forward(u))`, which loses precision where the bijection
    saturates (a logistic near 0 or 1 in float32)."""

    reparameterized = True

    def __init__(self, support: Constraint, shape: tuple):
        self._support = support
        self.ushape = tuple(support.unconstrained_shape(tuple(shape)))
        self.size = math.prod(self.ushape)
        self._drawn: tuple[Array, Array] | None = None
        super().__init__((), tuple(shape))

    @property
    def support(self) -> Constraint:
        return self._support

    def draw_u(self, key: Array, sample_shape: tuple) -> Array:
        raise NotImplementedError

    def log_prob_u(self, u: Array) -> Array:
        """Log density of `u` (shape batch + ushape) -> batch."""
        raise NotImplementedError

    def sample(self, key: Array, sample_shape: tuple = ()) -> Array:
        u = self.draw_u(key, tuple(sample_shape))
        x = self._support.forward(u)
        self._drawn = (x, u)
        return x

    def unconstrained(self, x: Array) -> Array:
        """The coordinates `u` of a value: those it was drawn from, or `inverse(x)`."""
        if self._drawn is not None and x is self._drawn[0]:
            return self._drawn[1]
        return self._support.inverse(jnp.asarray(x))

    def log_prob(self, value: Array) -> Array:
        u = self.unconstrained(value)
        ladj = self._support.log_abs_det_jacobian(u)
        return self.log_prob_u(u) - _sum_trailing(ladj, len(self.ushape) - self._support.event_dim)

    def flat(self, u: Array) -> Array:
        """`u` of shape batch + ushape as batch + (size,)."""
        return u.reshape(u.shape[: u.ndim - len(self.ushape)] + (self.size,))


class DiagonalNormal(Pushforward):
    """Independent normals per unconstrained coordinate (loc, scale of shape `ushape`)."""

    def __init__(self, loc: Array, scale: Array, support: Constraint, shape: tuple):
        super().__init__(support, shape)
        self.loc, self.scale = loc, scale

    def draw_u(self, key: Array, sample_shape: tuple) -> Array:
        return self.loc + self.scale * jax.random.normal(key, sample_shape + self.ushape, jnp.result_type(self.loc))

    def log_prob_u(self, u: Array) -> Array:
        return _sum_trailing(norm.logpdf(u, self.loc, self.scale), len(self.ushape))


class TrilNormal(Pushforward):
    """A normal on the flattened coordinates with mean `loc` (size,) and Cholesky factor
    `scale_tril` (size, size)."""

    def __init__(self, loc: Array, scale_tril: Array, support: Constraint, shape: tuple):
        super().__init__(support, shape)
        self.loc, self.scale_tril = loc, scale_tril

    def whiten(self, u: Array) -> Array:
        """eps with u = loc + L eps (u of shape ushape)."""
        return linalg.solve_triangular(self.scale_tril, u.reshape(self.size) - self.loc, lower=True)

    def draw_u(self, key: Array, sample_shape: tuple) -> Array:
        eps = jax.random.normal(key, sample_shape + (self.size,), jnp.result_type(self.loc))
        return (self.loc + eps @ self.scale_tril.T).reshape(sample_shape + self.ushape)

    def log_prob_u(self, u: Array) -> Array:
        z = self.flat(u)
        batch = z.shape[:-1]
        eps = linalg.solve_triangular(self.scale_tril, (z - self.loc).reshape(-1, self.size).T, lower=True)
        lp = jnp.sum(norm.logpdf(eps), axis=0) - jnp.sum(jnp.log(jnp.abs(jnp.diagonal(self.scale_tril))))
        return lp.reshape(batch)


class LowRankNormal(Pushforward):
    """A normal on the flattened coordinates with covariance diag(cov_diag) + F F^T, F of shape
    (size, k): drawn as loc + sqrt(cov_diag) e + F g, scored with the Woodbury identity."""

    def __init__(self, loc: Array, cov_diag: Array, cov_factor: Array, support: Constraint, shape: tuple):
        super().__init__(support, shape)
        self.loc, self.cov_diag, self.cov_factor = loc, cov_diag, cov_factor

    def draw_u(self, key: Array, sample_shape: tuple) -> Array:
        ke, kg = jax.random.split(key)
        dtype = jnp.result_type(self.loc)
        e = jax.random.normal(ke, sample_shape + (self.size,), dtype)
        g = jax.random.normal(kg, sample_shape + (self.cov_factor.shape[1],), dtype)
        return (self.loc + jnp.sqrt(self.cov_diag) * e + g @ self.cov_factor.T).reshape(sample_shape + self.ushape)

    def log_prob_u(self, u: Array) -> Array:
        y = self.flat(u) - self.loc
        f = self.cov_factor
        k = f.shape[1]
        capacitance = jnp.eye(k, dtype=f.dtype) + f.T @ (f / self.cov_diag[:, None])
        lc = jnp.linalg.cholesky(capacitance)
        w = linalg.solve_triangular(lc, ((y / self.cov_diag) @ f).reshape(-1, k).T, lower=True)
        maha = jnp.sum(jnp.square(y) / self.cov_diag, axis=-1) - jnp.sum(jnp.square(w), axis=0).reshape(y.shape[:-1])
        logdet = 2 * jnp.sum(jnp.log(jnp.diagonal(lc))) + jnp.sum(jnp.log(self.cov_diag))
        return -0.5 * (maha + logdet + self.size * math.log(2 * math.pi))


class PointMass(Pushforward):
    """All mass at T(loc). Its log density at that point is defined as -log|det J_T(loc)|, so that
    an ELBO with this guide is log p(T(u)) + log|det J_T(u)| at u = loc: the MAP estimate in
    unconstrained space. Any other value has log density -inf (compared in constrained space, to
    within 16 units of rounding)."""

    def __init__(self, loc: Array, support: Constraint, shape: tuple):
        super().__init__(support, shape)
        self.loc = loc

    def draw_u(self, key: Array, sample_shape: tuple) -> Array:
        return jnp.broadcast_to(self.loc, sample_shape + self.ushape)

    def log_prob(self, value: Array) -> Array:
        ladj = self._support.log_abs_det_jacobian(self.loc)
        at_point = -jnp.sum(ladj)
        if self._drawn is not None and value is self._drawn[0]:
            return jnp.broadcast_to(at_point, jnp.shape(value)[: jnp.ndim(value) - len(self.event_shape)])
        value = jnp.asarray(value)
        point = self._support.forward(self.loc)
        close = jnp.isclose(value, point, rtol=16 * jnp.finfo(point.dtype).eps, atol=0.0)
        hit = jnp.all(close, axis=tuple(range(value.ndim - len(self.event_shape), value.ndim)))
        return jnp.where(hit, at_point, -jnp.inf)


# ---------------------------------------------------------------- the latent choices of a model


@dataclass(frozen=True)
class Block:
    """One latent choice: its constrained and unconstrained shapes, support, and the coordinates
    [start, stop) it occupies in the concatenated unconstrained vector."""

    address: str
    shape: tuple
    ushape: tuple
    support: Constraint
    start: int
    stop: int
    site: ir.SiteInfo

    @property
    def size(self) -> int:
        return self.stop - self.start


def _record(model: Model, bound: Bound) -> Callable[[Any], tuple[dict, SupportRecorder]]:
    """A function key -> (trace, recorder) running the model with the observations given."""
    order = [a for a, _ in model.fn.args]
    env = {**bound.static, **bound.arrays}

    def run(key: Any) -> tuple[dict, SupportRecorder]:
        ctx = SupportRecorder(bound.observed, model.hosts)
        try:
            _, tr, _ = model.impl(ctx, key, *[env[a] for a in order])
        except (TypeError, ValueError, IndexError, ZeroDivisionError) as e:
            raise model.located(e) from None
        return tr, ctx

    return run


def _support_values(support: Constraint) -> dict[str, Any]:
    """The parameters of a support that has any (the bounds of an interval)."""
    return {k: v for k, v in vars(support).items() if isinstance(v, (int, float, np.ndarray, jax.Array))}


def _fixed_supports(model: Model, bound: Bound, latents: list[str]) -> dict[str, Constraint]:
    """Supports whose bounds are parameters (uniform's interval), evaluated by running the model
    twice: the bounds must be concrete (not computed per loop iteration) and the same in both runs
    (not computed from other random choices), since the guide fixes each choice's bijection."""
    run = _record(model, bound)
    _, first = run(jax.random.key(1))
    _, second = run(jax.random.key(2))
    out = {}
    for a in latents:
        s1, s2 = first.supports[a], second.supports[a]
        v1, v2 = _support_values(s1), _support_values(s2)
        if not v1:
            continue
        concrete = not any(isinstance(v, jax.core.Tracer) for v in [*v1.values(), *v2.values()])
        if not concrete or any(not np.array_equal(np.asarray(v1[k]), np.asarray(v2[k])) for k in v1):
            site = model.fn.sites[a]
            raise error(f"an automatic guide needs fixed bounds for `{a}` ({site.dist}), but they are computed "
                        "inside a loop or from other random choices", site.span, model.source,
                        hint=f"draw `{a}` on fixed bounds and rescale it, e.g. `w ~ uniform(0.0, 1.0)` then "
                        "`x = low + (high - low) * w`, or write a guide for it")
        out[a] = s1
    return out


def _layout(model: Model, bound: Bound, init_loc: Mapping[str, Any] | None) -> tuple[list[Block], dict[str, Array]]:
    """The latent choices in program order, and the initial unconstrained loc of each."""
    run = _record(model, bound)
    holder: list[SupportRecorder] = []

    def draws(keys: Any) -> dict:
        def one(k: Any) -> dict:
            tr, ctx = run(k)
            holder.append(ctx)
            return tr

        return jax.vmap(one)(keys)

    traces = jax.jit(draws)(jax.random.split(jax.random.key(0), INIT_DRAWS))
    recorded = holder[0].supports
    latents = [a for a in model.latent_addresses(bound) if a in recorded]
    for a in latents:
        site = model.fn.sites[a]
        if site.kind in ("int", "bool") or recorded[a].is_discrete:
            raise error(f"an automatic guide covers continuous choices only; `{a}` ({site.dist}) is discrete",
                        site.span, model.source,
                        hint=f"write a guide that draws `{a}` (with `via enum` or `via reinforce`), observe it, "
                        "or sum it out of the model with factor(logsumexp(...))")
    if not latents:
        raise error(f"{model.kind} `{model.name}` has no latent random choice with this data: there is nothing "
                    "to guide", model.fn.span, model.source, hint="leave out of the data a choice to infer")
    supports = {a: recorded[a] for a in latents}
    if any(_support_values(s) for s in supports.values()):
        supports.update(_fixed_supports(model, bound, latents))
    blocks, start, loc = [], 0, {}
    for a in latents:
        shape = tuple(traces[a].shape[1:])
        support = supports[a]
        ushape = tuple(support.unconstrained_shape(shape))
        size = math.prod(ushape)
        blocks.append(Block(a, shape, ushape, support, start, start + size, model.fn.sites[a]))
        start += size
        u = jnp.median(support.inverse(jnp.asarray(traces[a], float)), axis=0)
        loc[a] = jnp.where(jnp.isfinite(u), u, 0.0)
    for a, value in (init_loc or {}).items():
        block = next((b for b in blocks if b.address == a), None)
        if block is None:
            raise error(f"init_loc names `{a}`, which is not a latent choice of {model.kind} `{model.name}`",
                        model.fn.span, model.source, hint=did_you_mean(a, latents) or f"latent: {', '.join(latents)}")
        try:
            x = jnp.broadcast_to(jnp.asarray(value, float), block.shape)
        except (TypeError, ValueError):
            raise error(f"init_loc for `{a}` has shape {np.shape(value)} but the choice has shape {block.shape}",
                        block.site.span, model.source, hint="give one value, or an array of the choice's shape") \
                from None
        u = block.support.inverse(x)
        if not bool(jnp.all(jnp.isfinite(u))) or not bool(jnp.all(block.support.check(x))):
            raise error(f"init_loc for `{a}` must lie inside its support ({block.site.support})", block.site.span,
                        model.source, found=str(np.asarray(value)), hint="give a value the choice can take")
        loc[a] = u
    return blocks, loc


# ---------------------------------------------------------------- the families


@dataclass(frozen=True)
class ParamSpec:
    """A parameter of a family: its address, constraint and (constrained) initial value."""

    address: str
    constraint: str
    init: np.ndarray


def _array(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=jnp.result_type(float))


class Family:
    """A variational family over the blocks: its parameters, and how to draw (or score) the
    choices one after another from the constrained parameter values `p`."""

    kind = ""

    def __init__(self, blocks: list[Block], loc: dict[str, Array], init_scale: float, rank: int | None):
        self.blocks = blocks
        self.dim = blocks[-1].stop
        self.params = self.specs(loc, init_scale, rank)

    def specs(self, loc: dict[str, Array], init_scale: float, rank: int | None) -> list[ParamSpec]:
        raise NotImplementedError

    def draw(self, ctx: rt.Context, key: Any, p: dict[str, Array]) -> tuple[dict, rt.Score]:
        raise NotImplementedError

    def moments(self, p: dict[str, Array]) -> tuple[Array, Array, Array | None]:
        """Mean (D,), marginal standard deviations (D,) and covariance (D, D) of the law on the
        unconstrained vector; no covariance for the factorized families (it would be D x D zeros)."""
        raise NotImplementedError

    def flat_loc(self, loc: dict[str, Array]) -> np.ndarray:
        return _array(jnp.concatenate([jnp.ravel(loc[b.address]) for b in self.blocks]))


class MeanField(Family):
    kind = "mean_field"

    def specs(self, loc: dict[str, Array], init_scale: float, rank: int | None) -> list[ParamSpec]:
        out = []
        for b in self.blocks:
            out.append(ParamSpec(f"{b.address}_auto_loc", "real", _array(loc[b.address])))
            out.append(ParamSpec(f"{b.address}_auto_scale", "positive", _array(np.full(b.ushape, init_scale))))
        return out

    def draw(self, ctx: rt.Context, key: Any, p: dict[str, Array]) -> tuple[dict, rt.Score]:
        tr, s = {}, ctx.zero()
        for i, b in enumerate(self.blocks):
            dist = DiagonalNormal(p[f"{b.address}_auto_loc"], p[f"{b.address}_auto_scale"], b.support, b.shape)
            tr[b.address], s = ctx.site(b.address, dist, rt.key(key, i + 1), s, ctx.given(b.address))
        return tr, s

    def moments(self, p: dict[str, Array]) -> tuple[Array, Array, Array | None]:
        mean = jnp.concatenate([jnp.ravel(p[f"{b.address}_auto_loc"]) for b in self.blocks])
        return mean, jnp.concatenate([jnp.ravel(p[f"{b.address}_auto_scale"]) for b in self.blocks]), None


class Delta(Family):
    kind = "delta"

    def specs(self, loc: dict[str, Array], init_scale: float, rank: int | None) -> list[ParamSpec]:
        return [ParamSpec(f"{b.address}_auto_loc", "real", _array(loc[b.address])) for b in self.blocks]

    def draw(self, ctx: rt.Context, key: Any, p: dict[str, Array]) -> tuple[dict, rt.Score]:
        tr, s = {}, ctx.zero()
        for i, b in enumerate(self.blocks):
            dist = PointMass(p[f"{b.address}_auto_loc"], b.support, b.shape)
            tr[b.address], s = ctx.site(b.address, dist, rt.key(key, i + 1), s, ctx.given(b.address))
        return tr, s

    def moments(self, p: dict[str, Array]) -> tuple[Array, Array, Array | None]:
        mean = jnp.concatenate([jnp.ravel(p[f"{b.address}_auto_loc"]) for b in self.blocks])
        return mean, jnp.zeros_like(mean), None


class FullRank(Family):
    """Cholesky factor L = diag(auto_scale_diag) + the strictly lower triangle filled row by row
    from `auto_scale_lower` (D(D-1)/2 reals): a positive diagonal through the `positive` constraint."""

    kind = "full_rank"

    def specs(self, loc: dict[str, Array], init_scale: float, rank: int | None) -> list[ParamSpec]:
        d = self.dim
        return [ParamSpec("auto_loc", "real", self.flat_loc(loc)),
                ParamSpec("auto_scale_diag", "positive", _array(np.full(d, init_scale))),
                ParamSpec("auto_scale_lower", "real", _array(np.zeros(d * (d - 1) // 2)))]

    def scale_tril(self, p: dict[str, Array]) -> Array:
        rows, cols = np.tril_indices(self.dim, -1)
        return jnp.diag(p["auto_scale_diag"]).at[rows, cols].set(p["auto_scale_lower"])

    def draw(self, ctx: rt.Context, key: Any, p: dict[str, Array]) -> tuple[dict, rt.Score]:
        loc, tril = p["auto_loc"], self.scale_tril(p)
        tr, s = {}, ctx.zero()
        eps = jnp.zeros(0, loc.dtype)  # whitened coordinates of the blocks drawn so far
        for i, b in enumerate(self.blocks):
            mean = loc[b.start:b.stop] + tril[b.start:b.stop, :b.start] @ eps
            dist = TrilNormal(mean, tril[b.start:b.stop, b.start:b.stop], b.support, b.shape)
            tr[b.address], s = ctx.site(b.address, dist, rt.key(key, i + 1), s, ctx.given(b.address))
            eps = jnp.concatenate([eps, dist.whiten(dist.unconstrained(tr[b.address]))])
        return tr, s

    def moments(self, p: dict[str, Array]) -> tuple[Array, Array, Array | None]:
        tril = self.scale_tril(p)
        cov = tril @ tril.T
        return p["auto_loc"], jnp.sqrt(jnp.diagonal(cov)), cov


class LowRank(Family):
    """Covariance diag(auto_scale^2) + W W^T with W = auto_cov_factor of shape (D, rank). W starts
    at small fixed pseudo-random values (a zero W is a stationary point of the ELBO in W); both
    parts start at half the variance init_scale^2."""

    kind = "low_rank"

    def specs(self, loc: dict[str, Array], init_scale: float, rank: int | None) -> list[ParamSpec]:
        d = self.dim
        r = rank if rank is not None else default_rank(d)
        factor = jax.random.normal(jax.random.key(0), (d, r)) * init_scale / math.sqrt(2 * r)
        return [ParamSpec("auto_loc", "real", self.flat_loc(loc)),
                ParamSpec("auto_scale", "positive", _array(np.full(d, init_scale / math.sqrt(2)))),
                ParamSpec("auto_cov_factor", "real", _array(factor))]

    def draw(self, ctx: rt.Context, key: Any, p: dict[str, Array]) -> tuple[dict, rt.Score]:
        loc, w, var = p["auto_loc"], p["auto_cov_factor"], jnp.square(p["auto_scale"])
        r = w.shape[1]
        precision = jnp.eye(r, dtype=loc.dtype)  # of the factor f given the blocks drawn so far
        h = jnp.zeros(r, loc.dtype)  # precision @ E[f | those blocks]
        tr, s = {}, ctx.zero()
        for i, b in enumerate(self.blocks):
            wb, vb = w[b.start:b.stop], var[b.start:b.stop]
            chol = jnp.linalg.cholesky(precision)
            mean = loc[b.start:b.stop] + wb @ linalg.cho_solve((chol, True), h)
            factor = linalg.solve_triangular(chol, wb.T, lower=True).T  # W_b P^-1 W_b^T = factor factor^T
            dist = LowRankNormal(mean, vb, factor, b.support, b.shape)
            tr[b.address], s = ctx.site(b.address, dist, rt.key(key, i + 1), s, ctx.given(b.address))
            y = dist.unconstrained(tr[b.address]).reshape(b.size) - loc[b.start:b.stop]
            scaled = wb / vb[:, None]
            precision = precision + wb.T @ scaled
            h = h + y @ scaled
        return tr, s

    def moments(self, p: dict[str, Array]) -> tuple[Array, Array, Array | None]:
        w = p["auto_cov_factor"]
        cov = jnp.diag(jnp.square(p["auto_scale"])) + w @ w.T
        return p["auto_loc"], jnp.sqrt(jnp.diagonal(cov)), cov


FAMILIES: dict[str, type[Family]] = {"mean_field": MeanField, "full_rank": FullRank, "low_rank": LowRank,
                                      "delta": Delta}
SITE_DIST = {"mean_field": "normal (unconstrained, independent)", "full_rank": "multivariate normal (unconstrained)",
             "low_rank": "low-rank multivariate normal (unconstrained)", "delta": "point mass (unconstrained)"}


def default_rank(dim: int) -> int:
    """ceil(sqrt(D)), at least 1 and at most D."""
    return max(1, min(dim, math.ceil(math.sqrt(dim))))


# ---------------------------------------------------------------- the guide


@dataclass
class AutoGuide(Model):
    """A generated guide: a `Model` whose `fn` is a synthetic declaration with the model's
    arguments and one site per latent choice, and whose `impl` follows the calling convention of
    generated code. `family` holds the layout of the latent choices and the parameters."""

    family: Family | None = None
    model_name: str = ""
    init_params: dict[str, np.ndarray] = field(default_factory=dict)  # unconstrained, by address

    def bind(self, data: Mapping[str, Any] | None = None, *, observations: bool = True,
             strict: bool = True, **kwargs: Any) -> Bound:
        """As for any model, and each latent choice must keep the shape the guide was built for."""
        bound = super().bind(data, observations=observations, strict=strict, **kwargs)
        env = {py_name(k): v for k, v in {**bound.static, **bound.arrays}.items()}
        for b in self.family.blocks:
            want = eval_shape(b.site.shape, env)
            if want is not None and None not in want and tuple(want) != b.shape:
                raise error(f"this automatic guide was built for `{b.address}` of shape {b.shape}, but with this "
                            f"data {self.model_name} draws it with shape {tuple(want)}", b.site.span, self.source,
                            hint=f"build the guide with this data: auto_guide(model, {self.family.kind!r}, data)")
        return bound


def auto_guide(model: Model, kind: str = "mean_field", data: Mapping[str, Any] | None = None, *,
               init_scale: float = 0.1, rank: int | None = None, init_loc: Mapping[str, Any] | None = None,
               **data_kwargs: Any) -> AutoGuide:
    """A guide over the latent choices of `model` given `data` (arguments and observations), of
    family `kind`: "mean_field", "full_rank", "low_rank" (with `rank`) or "delta"."""
    if kind not in FAMILIES:
        raise error(f"unknown automatic guide `{kind}`", hint=did_you_mean(kind, KINDS) or f"kinds: {', '.join(KINDS)}")
    if isinstance(init_scale, bool) or not isinstance(init_scale, (int, float)) or not init_scale > 0 \
            or not math.isfinite(init_scale):
        raise error(f"init_scale must be a positive number, got {init_scale!r}", hint="for example init_scale=0.1")
    if rank is not None and kind != "low_rank":
        raise error(f"rank applies to the low_rank guide, not to {kind}", hint="leave rank out, or use kind='low_rank'")
    bound = model.bind(data, **data_kwargs)
    blocks, loc = _layout(model, bound, init_loc)
    dim = blocks[-1].stop
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= dim):
        raise error(f"rank must be an int from 1 to {dim} (the number of unconstrained coordinates), got {rank!r}",
                    model.fn.span, model.source, hint=f"the default is ceil(sqrt({dim})) = {default_rank(dim)}")
    family = FAMILIES[kind](blocks, loc, float(init_scale), rank)
    name = f"auto_{kind}_{model.name}"
    hosts = {f"auto_init:{spec.address}": (lambda v=spec.init: v) for spec in family.params}
    params = {}
    for spec in family.params:
        ty = ir.Ty("real", spec.init.shape)
        init = ir.HostCall(f"auto_init:{spec.address}", (), (), ty)
        pname = py_name("".join(c if c.isalnum() else "_" for c in spec.address))
        pname = pname if pname not in params else f"{pname}_{len(params)}"  # `u/a` and `u_a` both present
        params[pname] = ir.ParamDef(pname, spec.address, init, spec.constraint, model.fn.span, spec.init.shape)
    sites = {b.address: ir.SiteInfo(b.address, b.shape, "real", b.site.support, True, False, SITE_DIST[kind],
                                    b.site.span, "reparam") for b in blocks}
    fn = ir.Function("guide", name, list(model.fn.args), [], sites, {}, params, None, model.fn.span,
                     dict(model.fn.arg_constraints), dict(model.fn.arg_spans), dict(model.fn.arg_types),
                     list(model.fn.checks))

    def impl(ctx: rt.Context, key: Any, *args: Any) -> tuple[None, dict, rt.Score]:
        p = {s.address: ctx.param(s.address, s.init, s.constraint, s.init.shape) for s in family.params}
        tr, score = family.draw(ctx, key, p)
        return None, tr, score

    init_params = {s.address: np.asarray(CONSTRAINTS[s.constraint].inverse(s.init)) for s in family.params}
    return AutoGuide(fn, impl, hosts, model.source, family=family, model_name=f"{model.kind} `{model.name}`",
                     init_params=init_params)


def describe(guide: AutoGuide, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The fitted family in human terms, from unconstrained `params` (as passed to `simulate`;
    missing ones at their initial values): per address the unconstrained mean `loc`, marginal
    standard deviations `scale` and `value` = T(loc) (the median of each coordinate for elementwise
    supports); and the joint normal's `loc` and `covariance` over the concatenated coordinates
    (covariance None for mean_field and delta), with `layout` giving each address's coordinates
    [start, stop)."""
    if not isinstance(guide, AutoGuide) or guide.family is None:
        raise error("describe() reads automatic guides (from auto_guide)", hint="pass the guide auto_guide returned")
    family = guide.family
    p = {}
    for s in family.params:
        raw = (params or {}).get(s.address)
        p[s.address] = s.init if raw is None else CONSTRAINTS[s.constraint].forward(jnp.asarray(raw))
    mean, sd, cov = family.moments(p)
    sites = {}
    for b in family.blocks:
        loc = mean[b.start:b.stop].reshape(b.ushape)
        sites[b.address] = {"support": repr(b.support), "loc": np.asarray(loc),
                            "scale": np.asarray(sd[b.start:b.stop].reshape(b.ushape)),
                            "value": np.asarray(b.support.forward(loc))}
    return {"kind": family.kind, "sites": sites, "loc": np.asarray(mean),
            "covariance": None if cov is None else np.asarray(cov),
            "layout": {b.address: (b.start, b.stop) for b in family.blocks}}
