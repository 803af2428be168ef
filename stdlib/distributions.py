"""The distributions of the language: thin layers over jax.scipy.stats and jax.random.

A distribution is a batch of independent distributions over values of shape
`event_shape`; parameters broadcast against each other to give `batch_shape`.
`sample(key, sample_shape)` has shape sample_shape + batch_shape + event_shape and
`log_prob(value)` sums over the event dims only. Discrete conventions follow scipy:
`geometric` and `negative_binomial` count failures (0, 1, 2, ...), not trials.

Distributions with `has_mvd` give a measure-valued derivative (Mohamed, Rosca, Figurnov,
Mnih 2020, "Monte Carlo Gradient Estimation in Machine Learning", section 6): for each scalar
parameter theta_k of `mvd_params()`, a constant c_k and two distributions with
d/dtheta_k E_p[f(x)] = c_k (E[f(x+_k)] - E[f(x-_k)]) for every f. `mvd` draws x+_k and x-_k.

`DISTRIBUTIONS` maps each name to its class; the type checker's view of them (`SIGNATURES`,
`describe`) is in pplang.stdlib.signatures, which does not import JAX.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, nn
from jax.scipy import special, stats

from . import constraints
from .constraints import Constraint
from .signatures import SIGNATURES, ParamSpec, Signature, describe  # noqa: F401 - re-exported

Array = Any


def _promote(*params: Array) -> list:
    """Parameters as float arrays of one dtype, broadcast to the batch shape."""
    arrays = [jnp.asarray(p) for p in params]
    dtype = jnp.result_type(float, *arrays)
    return jnp.broadcast_arrays(*(a.astype(dtype) for a in arrays))


def _int_dtype() -> Any:
    """JAX's default integer type (int32 unless x64 is enabled)."""
    return jax.dtypes.canonicalize_dtype(jnp.int_)


def _one_of(name: str, probs: Array | None, logits: Array | None) -> None:
    if (probs is None) == (logits is None):
        raise ValueError(f"{name}() takes exactly one of `probs` and `logits`")


def _logit_log_linear(k: Array, n: Array, logits: Array) -> Array:
    """k log p + (n - k) log(1 - p) for p = sigmoid(logits), as k logits - n log(1 + e^logits).

    scipy's pmfs take probabilities only, and sigmoid rounds to 0 or 1 for large |logits|; this form
    never does, and its gradient k - n sigmoid(logits) is finite everywhere. log(1 + e^l) is written
    max(l, 0) + log1p(e^-|l|) (as NumPyro writes it) rather than jax.nn.softplus (logaddexp(l, 0)):
    the same values, but XLA computes e^-|l| once for the density and its gradient where logaddexp's
    NaN handling and custom derivative recompute it in each fused kernel; a fit of logistic
    regression (N = 5000) ran about 17% faster per step. Both parts select on l >= 0 rather than
    calling maximum and abs, whose derivatives at l = 0 (1/2 and 1) would give the gradient 0 there
    instead of sigmoid(0) = 1/2.
    """
    positive = logits >= 0
    log1pexp = jnp.where(positive, logits, 0.0) + jnp.log1p(jnp.exp(jnp.where(positive, -logits, logits)))
    return k * logits - n * log1pexp


def _one_param(value: Array) -> Array:
    """A single parameter's side of an MVD: a new leading axis of length 1."""
    return jnp.asarray(value)[None]


def _enumerate(values: Array, batch_shape: tuple) -> Array:
    """`values` along a new leading axis, broadcast over the batch."""
    values = values.reshape(values.shape + (1,) * len(batch_shape))
    return jnp.broadcast_to(values, values.shape[:1] + batch_shape)


class Distribution:
    """Base class; subclasses set the class attributes and implement sample/log_prob."""

    support: Constraint = constraints.real
    reparameterized: bool = False
    enumerable: bool = False
    has_mvd: bool = False
    value_dtype: str = "real"

    def __init__(self, batch_shape: tuple = (), event_shape: tuple = ()):
        self._batch_shape = tuple(batch_shape)
        self._event_shape = tuple(event_shape)

    @property
    def batch_shape(self) -> tuple:
        return self._batch_shape

    @property
    def event_shape(self) -> tuple:
        return self._event_shape

    def shape(self, sample_shape: Sequence[int] = ()) -> tuple:
        """sample_shape + batch_shape + event_shape."""
        return tuple(sample_shape) + self._batch_shape + self._event_shape

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        raise NotImplementedError

    def log_prob(self, value: Array) -> Array:
        raise NotImplementedError

    def sample_in_block(self, key: Array, n: int, i: Array) -> Array:
        """Draw `i` of a block of `n` independent draws that share `key` (one per iteration of a
        vectorized loop). Where the value is a transform of parameter-free noise, the noise of the
        whole block is drawn from `key` and this draw takes element `i`: inside `jax.vmap` the key
        does not depend on `i`, so the block is drawn once, as hand-written batched code would.
        Otherwise the draw gets a key of its own."""
        z = self.noise(key, (n,) + self.shape())
        if z is None:
            return self.sample(jax.random.fold_in(key, i))
        return self.from_noise(z[i])

    def noise(self, key: Array, shape: tuple) -> Array | None:
        """Parameter-free noise the value is a transform of, or None when sampling is not such a transform."""
        return None

    def from_noise(self, z: Array) -> Array:
        raise TypeError(f"{type(self).__name__} is not a transform of parameter-free noise")

    @property
    def mean(self) -> Array:
        raise NotImplementedError(f"{type(self).__name__} has no closed-form mean here")

    @property
    def variance(self) -> Array:
        raise NotImplementedError(f"{type(self).__name__} has no closed-form variance here")

    def enumerate_support(self) -> Array:
        """All support values along a new leading axis: shape (n,) + batch_shape."""
        raise TypeError(f"{type(self).__name__} has no finite support to enumerate")

    def mvd_params(self) -> Array:
        """The P scalar parameters the measure-valued derivative is taken with respect to, stacked:
        shape batch_shape + (P,), differentiable in whatever the distribution was built from."""
        raise TypeError(f"{type(self).__name__} has no measure-valued derivative")

    def mvd(self, key: Array, value: Array) -> tuple[Array, Array, Array]:
        """Weak derivative `(c, plus, minus)` at `value`, a draw of shape batch_shape + event_shape.

        `c` has shape batch_shape + (P,); `plus` and `minus` have shape (P,) + batch_shape +
        event_shape and the dtype of samples, with d/dtheta_k E[f(x)] = E[c_k (f(plus_k) - f(minus_k))]
        per batch element, theta = `mvd_params()`. Sides may reuse `value`, so they are unbiased
        one at a time but correlated with it; the caller stops their gradients."""
        raise TypeError(f"{type(self).__name__} has no measure-valued derivative")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_shape={self._batch_shape}, event_shape={self._event_shape})"


# ---------------------------------------------------------------- continuous, scalar


class _LocationScale(Distribution):
    """loc + scale * Z for a parameter-free noise Z: sampling, block draws and the density follow
    from the noise sampler and the `jax.scipy.stats` density a subclass names."""

    reparameterized = True
    _draw: Any = None  # jax.random sampler of Z: (key, shape, dtype) -> array
    _stats: Any = None  # jax.scipy.stats module with logpdf(value, loc, scale)

    def __init__(self, loc: Array, scale: Array):
        self.loc, self.scale = _promote(loc, scale)
        super().__init__(self.loc.shape)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        return self.from_noise(self.noise(key, self.shape(sample_shape)))

    def noise(self, key: Array, shape: tuple) -> Array:
        return type(self)._draw(key, shape, self.loc.dtype)

    def from_noise(self, z: Array) -> Array:
        return self.loc + self.scale * z

    def log_prob(self, value: Array) -> Array:
        return type(self)._stats.logpdf(value, self.loc, self.scale)


class Normal(_LocationScale):
    """Measure-valued derivative, z = (x - loc) / scale, theta = (loc, scale):
    - loc: d/dloc N = (z / scale) N splits at z = 0 into two Rayleigh halves,
      c = 1 / (scale sqrt(2 pi)), x+- = loc +- scale R with one R ~ Rayleigh(1) for both sides.
    - scale: d/dscale N = (z^2 - 1) N / scale, c = 1 / scale; z^2 phi(z) is the double-sided
      Maxwell density and phi the normal itself, so x- = value and x+ = loc + scale M with
      M = sign(z) sqrt(z^2 + chi2_2) coupled to the value (sqrt(chi2_3) with an independent sign
      is Maxwell), which lowers the variance of f(x+) - f(x-).
    """

    _draw = jax.random.normal
    _stats = stats.norm
    has_mvd = True

    def mvd_params(self) -> Array:
        return jnp.stack([self.loc, self.scale], axis=-1)

    def mvd(self, key: Array, value: Array) -> tuple[Array, Array, Array]:
        key_r, key_m = jax.random.split(key)
        dtype = self.loc.dtype
        radius = jax.random.rayleigh(key_r, 1.0, self.batch_shape, dtype)
        z = (value - self.loc) / self.scale
        maxwell = jnp.where(z < 0, -1.0, 1.0) * jnp.sqrt(
            jnp.square(z) + 2.0 * jax.random.exponential(key_m, self.batch_shape, dtype)
        )
        c = jnp.stack([1.0 / (self.scale * math.sqrt(2.0 * math.pi)), 1.0 / self.scale], axis=-1)
        plus = jnp.stack([self.loc + self.scale * radius, self.loc + self.scale * maxwell])
        minus = jnp.stack([self.loc - self.scale * radius, jnp.broadcast_to(value, self.batch_shape)])
        return c, plus, minus

    @property
    def mean(self) -> Array:
        return self.loc

    @property
    def variance(self) -> Array:
        return jnp.square(self.scale)

class HalfNormal(Distribution):
    """|X| for X ~ normal(0, scale)."""

    support = constraints.positive
    reparameterized = True

    def __init__(self, scale: Array):
        (self.scale,) = _promote(scale)
        super().__init__(self.scale.shape)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        return self.scale * jnp.abs(jax.random.normal(key, self.shape(sample_shape), self.scale.dtype))

    def noise(self, key: Array, shape: tuple) -> Array:
        return jax.random.normal(key, shape, self.scale.dtype)

    def from_noise(self, z: Array) -> Array:
        return self.scale * jnp.abs(z)

    def log_prob(self, value: Array) -> Array:
        return jnp.where(value >= 0, math.log(2.0) + stats.norm.logpdf(value, 0.0, self.scale), -jnp.inf)

    @property
    def mean(self) -> Array:
        return self.scale * math.sqrt(2.0 / math.pi)

    @property
    def variance(self) -> Array:
        return jnp.square(self.scale) * (1.0 - 2.0 / math.pi)


class LogNormal(Distribution):
    """exp(X) for X ~ normal(loc, scale)."""

    support = constraints.positive
    reparameterized = True

    def __init__(self, loc: Array, scale: Array):
        self.loc, self.scale = _promote(loc, scale)
        super().__init__(self.loc.shape)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        return jnp.exp(self.loc) * jax.random.lognormal(key, self.scale, self.shape(sample_shape), self.loc.dtype)

    def noise(self, key: Array, shape: tuple) -> Array:
        return jax.random.normal(key, shape, self.loc.dtype)

    def from_noise(self, z: Array) -> Array:
        return jnp.exp(self.loc + self.scale * z)

    def log_prob(self, value: Array) -> Array:
        inside = value > 0
        log_x = jnp.log(jnp.where(inside, value, 1.0))
        return jnp.where(inside, stats.norm.logpdf(log_x, self.loc, self.scale) - log_x, -jnp.inf)

    @property
    def mean(self) -> Array:
        return jnp.exp(self.loc + 0.5 * jnp.square(self.scale))

    @property
    def variance(self) -> Array:
        s2 = jnp.square(self.scale)
        return jnp.expm1(s2) * jnp.exp(2.0 * self.loc + s2)


class StudentT(Distribution):
    reparameterized = True

    def __init__(self, df: Array, loc: Array = 0.0, scale: Array = 1.0):
        self.df, self.loc, self.scale = _promote(df, loc, scale)
        super().__init__(self.df.shape)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        return self.loc + self.scale * jax.random.t(key, self.df, self.shape(sample_shape), self.df.dtype)

    def log_prob(self, value: Array) -> Array:
        return stats.t.logpdf(value, self.df, self.loc, self.scale)

    @property
    def mean(self) -> Array:
        return jnp.where(self.df > 1, self.loc, jnp.nan)

    @property
    def variance(self) -> Array:
        finite = jnp.square(self.scale) * self.df / (self.df - 2)
        return jnp.where(self.df > 2, finite, jnp.where(self.df > 1, jnp.inf, jnp.nan))


class Cauchy(_LocationScale):
    """No mean or variance."""

    _draw = jax.random.cauchy
    _stats = stats.cauchy

class HalfCauchy(Distribution):
    """|X| for X ~ cauchy(0, scale)."""

    support = constraints.positive
    reparameterized = True

    def __init__(self, scale: Array):
        (self.scale,) = _promote(scale)
        super().__init__(self.scale.shape)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        return self.scale * jnp.abs(jax.random.cauchy(key, self.shape(sample_shape), self.scale.dtype))

    def log_prob(self, value: Array) -> Array:
        return jnp.where(value >= 0, math.log(2.0) + stats.cauchy.logpdf(value, 0.0, self.scale), -jnp.inf)


class HalfStudentT(Distribution):
    """|X| for X ~ student_t(df, 0, scale): a weakly informative prior on a scale."""

    support = constraints.positive
    reparameterized = True

    def __init__(self, df: Array, scale: Array = 1.0):
        self.df, self.scale = _promote(df, scale)
        super().__init__(self.df.shape)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        return self.scale * jnp.abs(jax.random.t(key, self.df, self.shape(sample_shape), self.df.dtype))

    def log_prob(self, value: Array) -> Array:
        return jnp.where(value >= 0, math.log(2.0) + stats.t.logpdf(value, self.df, 0.0, self.scale), -jnp.inf)


class Laplace(_LocationScale):
    _draw = jax.random.laplace
    _stats = stats.laplace

    @property
    def mean(self) -> Array:
        return self.loc

    @property
    def variance(self) -> Array:
        return 2.0 * jnp.square(self.scale)

class Uniform(Distribution):
    reparameterized = True

    def __init__(self, low: Array, high: Array):
        self.low, self.high = _promote(low, high)
        super().__init__(self.low.shape)

    @property
    def support(self) -> Constraint:
        return constraints.interval(self.low, self.high)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        return jax.random.uniform(key, self.shape(sample_shape), self.low.dtype, self.low, self.high)

    def noise(self, key: Array, shape: tuple) -> Array:
        return jax.random.uniform(key, shape, self.low.dtype)

    def from_noise(self, z: Array) -> Array:
        return self.low + (self.high - self.low) * z

    def log_prob(self, value: Array) -> Array:
        return stats.uniform.logpdf(value, self.low, self.high - self.low)

    @property
    def mean(self) -> Array:
        return 0.5 * (self.low + self.high)

    @property
    def variance(self) -> Array:
        return jnp.square(self.high - self.low) / 12.0


class Exponential(Distribution):
    """Measure-valued derivative in the rate: d/drate (rate e^{-rate x}) = (1 / rate) (p(x) -
    rate^2 x e^{-rate x}), the second term being gamma(2, rate): c = 1 / rate, x+ = value,
    x- = value + a fresh exponential(rate) draw."""

    support = constraints.positive
    reparameterized = True
    has_mvd = True

    def __init__(self, rate: Array):
        (self.rate,) = _promote(rate)
        super().__init__(self.rate.shape)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        return jax.random.exponential(key, self.shape(sample_shape), self.rate.dtype) / self.rate

    def noise(self, key: Array, shape: tuple) -> Array:
        return jax.random.exponential(key, shape, self.rate.dtype)

    def from_noise(self, z: Array) -> Array:
        return z / self.rate

    def mvd_params(self) -> Array:
        return self.rate[..., None]

    def mvd(self, key: Array, value: Array) -> tuple[Array, Array, Array]:
        value = jnp.broadcast_to(value, self.batch_shape)
        return (1.0 / self.rate)[..., None], _one_param(value), _one_param(value + self.sample(key))

    def log_prob(self, value: Array) -> Array:
        return stats.expon.logpdf(value, scale=1.0 / self.rate)

    @property
    def mean(self) -> Array:
        return 1.0 / self.rate

    @property
    def variance(self) -> Array:
        return 1.0 / jnp.square(self.rate)


class Gamma(Distribution):
    """Shape/rate parameterization; jax.random.gamma is implicitly reparameterized."""

    support = constraints.positive
    reparameterized = True

    def __init__(self, concentration: Array, rate: Array):
        self.concentration, self.rate = _promote(concentration, rate)
        super().__init__(self.rate.shape)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        shape = self.shape(sample_shape)
        return jax.random.gamma(key, self.concentration, shape, self.rate.dtype) / self.rate

    def log_prob(self, value: Array) -> Array:
        return stats.gamma.logpdf(value, self.concentration, scale=1.0 / self.rate)

    @property
    def mean(self) -> Array:
        return self.concentration / self.rate

    @property
    def variance(self) -> Array:
        return self.concentration / jnp.square(self.rate)


class InverseGamma(Distribution):
    """1/Y for Y ~ gamma(concentration, rate=scale)."""

    support = constraints.positive
    reparameterized = True

    def __init__(self, concentration: Array, scale: Array):
        self.concentration, self.scale = _promote(concentration, scale)
        super().__init__(self.scale.shape)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        shape = self.shape(sample_shape)
        return self.scale / jax.random.gamma(key, self.concentration, shape, self.scale.dtype)

    def log_prob(self, value: Array) -> Array:
        inside = value > 0
        x = jnp.where(inside, value, 1.0)
        density = stats.gamma.logpdf(1.0 / x, self.concentration, scale=1.0 / self.scale) - 2.0 * jnp.log(x)
        return jnp.where(inside, density, -jnp.inf)

    @property
    def mean(self) -> Array:
        return jnp.where(self.concentration > 1, self.scale / (self.concentration - 1), jnp.inf)

    @property
    def variance(self) -> Array:
        a = self.concentration
        finite = jnp.square(self.scale) / (jnp.square(a - 1) * (a - 2))
        return jnp.where(a > 2, finite, jnp.inf)


class Beta(Distribution):
    support = constraints.unit_interval
    reparameterized = True

    def __init__(self, a: Array, b: Array):
        self.a, self.b = _promote(a, b)
        super().__init__(self.a.shape)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        return jax.random.beta(key, self.a, self.b, self.shape(sample_shape), self.a.dtype)

    def log_prob(self, value: Array) -> Array:
        return stats.beta.logpdf(value, self.a, self.b)

    @property
    def mean(self) -> Array:
        return self.a / (self.a + self.b)

    @property
    def variance(self) -> Array:
        total = self.a + self.b
        return self.a * self.b / (jnp.square(total) * (total + 1))


# ---------------------------------------------------------------- discrete


class Bernoulli(Distribution):
    """Values are booleans; log_prob also accepts 0/1 numbers.

    Measure-valued derivative in `probs` (also when built from logits; the chain rule through
    `mvd_params` reaches them): E[f] = p f(1) + (1 - p) f(0), so c = 1, x+ = True, x- = False.
    """

    support = constraints.boolean
    enumerable = True
    has_mvd = True
    value_dtype = "bool"

    def __init__(self, probs: Array | None = None, *, logits: Array | None = None):
        _one_of("bernoulli", probs, logits)
        self.logits = None if logits is None else _promote(logits)[0]
        self.probs = nn.sigmoid(self.logits) if probs is None else _promote(probs)[0]
        super().__init__(self.probs.shape)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        return jax.random.bernoulli(key, self.probs, self.shape(sample_shape))

    def noise(self, key: Array, shape: tuple) -> Array:
        return jax.random.uniform(key, shape, self.probs.dtype)

    def from_noise(self, z: Array) -> Array:
        return z < self.probs

    def log_prob(self, value: Array) -> Array:
        if self.logits is None:
            return stats.bernoulli.logpmf(value, self.probs)
        k = jnp.asarray(value, self.logits.dtype)
        lp = _logit_log_linear(k, 1.0, self.logits)
        if jnp.result_type(value) == jnp.bool_:  # always 0 or 1: no support test (a select in the gradient too)
            return lp
        return jnp.where((k == 0) | (k == 1), lp, -jnp.inf)

    def enumerate_support(self) -> Array:
        return _enumerate(jnp.array([False, True]), self.batch_shape)

    def mvd_params(self) -> Array:
        return self.probs[..., None]

    def mvd(self, key: Array, value: Array) -> tuple[Array, Array, Array]:
        side = (1,) + self.batch_shape
        return jnp.ones(self.batch_shape + (1,), self.probs.dtype), jnp.ones(side, bool), jnp.zeros(side, bool)

    @property
    def mean(self) -> Array:
        return self.probs

    @property
    def variance(self) -> Array:
        return self.probs * (1 - self.probs)


class BernoulliLogit(Bernoulli):
    def __init__(self, logits: Array):
        super().__init__(logits=logits)


class Binomial(Distribution):
    """Measure-valued derivative in `probs` (also when built from logits): with B ~
    binomial(n - 1, p), d/dp E[f(X)] = n (E[f(B + 1)] - E[f(B)]) (which of the n trials
    succeeds first is irrelevant), so c = n, x+ = B + 1, x- = B with one fresh B for both sides."""

    enumerable = True
    has_mvd = True
    value_dtype = "int"

    def __init__(self, total_count: Array, probs: Array | None = None, *, logits: Array | None = None):
        _one_of("binomial", probs, logits)
        if logits is None:
            self.total_count, self.probs = _promote(total_count, probs)
            self.logits = None
        else:
            self.total_count, self.logits = _promote(total_count, logits)
            self.probs = nn.sigmoid(self.logits)
        self._concrete_count = total_count
        super().__init__(self.probs.shape)

    @property
    def support(self) -> Constraint:
        return constraints.integer_interval(0, self.total_count)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        draws = jax.random.binomial(key, self.total_count, self.probs, self.shape(sample_shape), self.probs.dtype)
        return draws.astype(_int_dtype())

    def log_prob(self, value: Array) -> Array:
        if self.logits is None:
            return stats.binom.logpmf(value, self.total_count, self.probs)
        k, n = jnp.asarray(value, self.logits.dtype), self.total_count
        log_choose = special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
        inside = (k >= 0) & (k <= n)
        return jnp.where(inside, log_choose + _logit_log_linear(k, n, self.logits), -jnp.inf)

    def enumerate_support(self) -> Array:
        """0 .. max(total_count); values above a batch member's own count get -inf."""
        try:
            n = int(np.max(np.asarray(self._concrete_count)))
        except jax.errors.JAXTypeError:
            raise ValueError("enumerating binomial() needs a concrete total_count, not a traced value") from None
        return _enumerate(jnp.arange(n + 1, dtype=_int_dtype()), self.batch_shape)

    def mvd_params(self) -> Array:
        return self.probs[..., None]

    def mvd(self, key: Array, value: Array) -> tuple[Array, Array, Array]:
        rest = jnp.maximum(self.total_count - 1, 0.0)
        draws = jax.random.binomial(key, rest, self.probs, self.batch_shape, self.probs.dtype).astype(_int_dtype())
        return self.total_count[..., None], _one_param(draws + 1), _one_param(draws)

    @property
    def mean(self) -> Array:
        return self.total_count * self.probs

    @property
    def variance(self) -> Array:
        return self.total_count * self.probs * (1 - self.probs)


class Categorical(Distribution):
    """Values 0 .. K-1; `probs` are normalized, so any non-negative weights w work.

    Measure-valued derivative in the K normalized probabilities p = w / sum(w) (also when built
    from logits): E[f] = sum_j w_j f(j) / sum(w), whose gradient at sum(w) = 1 is
    f(k) - E[f]. So c_k = 1, x+_k = k, and x-_k = value for every k. Along the simplex (any
    change of p summing to zero, which is all that logits or normalized weights can produce) the
    E[f] term cancels, so the chain rule through `mvd_params` gives the exact gradient.
    """

    enumerable = True
    has_mvd = True
    value_dtype = "int"

    def __init__(self, probs: Array | None = None, *, logits: Array | None = None):
        _one_of("categorical", probs, logits)
        weights = None if probs is None else _promote(probs)[0]
        unnormalized = _promote(logits)[0] if probs is None else jnp.log(weights)
        self.logits = nn.log_softmax(unnormalized, axis=-1)
        # Normalizing the weights directly keeps finite gradients at zero weights, unlike exp(log w).
        self._normalized = None if weights is None else weights / jnp.sum(weights, axis=-1, keepdims=True)
        super().__init__(self.logits.shape[:-1])

    @property
    def probs(self) -> Array:
        return jnp.exp(self.logits)

    @property
    def support(self) -> Constraint:
        return constraints.integer_interval(0, self.logits.shape[-1] - 1)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        return jax.random.categorical(key, self.logits, shape=self.shape(sample_shape))

    def log_prob(self, value: Array) -> Array:
        value = jnp.asarray(value)
        k = self.logits.shape[-1]
        logits = jnp.broadcast_to(self.logits, lax.broadcast_shapes(value.shape, self.batch_shape) + (k,))
        index = jnp.clip(value, 0, k - 1).astype(_int_dtype())
        index = jnp.broadcast_to(index, logits.shape[:-1])[..., None]
        picked = jnp.take_along_axis(logits, index, axis=-1)[..., 0]
        return jnp.where((value >= 0) & (value < k), picked, -jnp.inf)

    def enumerate_support(self) -> Array:
        return _enumerate(jnp.arange(self.logits.shape[-1], dtype=_int_dtype()), self.batch_shape)

    def mvd_params(self) -> Array:
        return self.probs if self._normalized is None else self._normalized

    def mvd(self, key: Array, value: Array) -> tuple[Array, Array, Array]:
        k = self.logits.shape[-1]
        minus = jnp.broadcast_to(jnp.asarray(value).astype(_int_dtype()), (k,) + self.batch_shape)
        return jnp.ones(self.logits.shape, self.logits.dtype), self.enumerate_support(), minus


class CategoricalLogit(Categorical):
    def __init__(self, logits: Array):
        super().__init__(logits=logits)


class Poisson(Distribution):
    """Measure-valued derivative in the rate: d/drate pmf(x) = pmf(x - 1) - pmf(x), so c = 1,
    x+ = value + 1, x- = value."""

    support = constraints.nonnegative_integer
    has_mvd = True
    value_dtype = "int"

    def __init__(self, rate: Array):
        (self.rate,) = _promote(rate)
        super().__init__(self.rate.shape)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        return jax.random.poisson(key, self.rate, self.shape(sample_shape))

    def log_prob(self, value: Array) -> Array:
        return stats.poisson.logpmf(value, self.rate)

    def mvd_params(self) -> Array:
        return self.rate[..., None]

    def mvd(self, key: Array, value: Array) -> tuple[Array, Array, Array]:
        value = jnp.broadcast_to(value, self.batch_shape)
        return jnp.ones(self.batch_shape + (1,), self.rate.dtype), _one_param(value + 1), _one_param(value)

    @property
    def mean(self) -> Array:
        return self.rate

    @property
    def variance(self) -> Array:
        return self.rate


class Geometric(Distribution):
    """Number of failures before the first success (0, 1, 2, ...), success chance `probs`.

    Measure-valued derivative in p: pmf(x) = p (1 - p)^x gives d/dp pmf = pmf / p - x pmf / (1 - p).
    The size-biased law x pmf(x) / E[X] (E[X] = (1 - p) / p) is that of 1 + G1 + G2 for two
    independent geometric draws, so d/dp E[f(X)] = (E[f(X)] - E[f(1 + G1 + G2)]) / p:
    c = 1 / p, x+ = value, x- = value + 1 + a fresh geometric draw.
    """

    support = constraints.nonnegative_integer
    has_mvd = True
    value_dtype = "int"

    def __init__(self, probs: Array):
        (self.probs,) = _promote(probs)
        super().__init__(self.probs.shape)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        # jax.random.geometric counts trials (1, 2, ...).
        return jax.random.geometric(key, self.probs, self.shape(sample_shape), _int_dtype()) - 1

    def log_prob(self, value: Array) -> Array:
        # scipy's geom counts trials; loc=-1 shifts it to failures.
        return stats.geom.logpmf(value, self.probs, loc=-1)

    def mvd_params(self) -> Array:
        return self.probs[..., None]

    def mvd(self, key: Array, value: Array) -> tuple[Array, Array, Array]:
        value = jnp.broadcast_to(value, self.batch_shape)
        return (1.0 / self.probs)[..., None], _one_param(value), _one_param(value + 1 + self.sample(key))

    @property
    def mean(self) -> Array:
        return (1 - self.probs) / self.probs

    @property
    def variance(self) -> Array:
        return (1 - self.probs) / jnp.square(self.probs)


class NegativeBinomial(Distribution):
    """Number of failures before the `total_count`-th success, success chance `probs`
    (scipy's nbinom; torch/numpyro swap the roles of success and failure).
    `total_count` may be any positive real."""

    support = constraints.nonnegative_integer
    value_dtype = "int"

    def __init__(self, total_count: Array, probs: Array):
        self.total_count, self.probs = _promote(total_count, probs)
        super().__init__(self.probs.shape)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        # jax.random has no negative binomial: draw it as a gamma-Poisson mixture.
        key_gamma, key_poisson = jax.random.split(key)
        shape = self.shape(sample_shape)
        odds = (1 - self.probs) / self.probs
        rate = odds * jax.random.gamma(key_gamma, self.total_count, shape, self.probs.dtype)
        return jax.random.poisson(key_poisson, rate, shape)

    def log_prob(self, value: Array) -> Array:
        return stats.nbinom.logpmf(value, self.total_count, self.probs)

    @property
    def mean(self) -> Array:
        return self.total_count * (1 - self.probs) / self.probs

    @property
    def variance(self) -> Array:
        return self.total_count * (1 - self.probs) / jnp.square(self.probs)


class NegativeBinomial2(NegativeBinomial):
    """Stan's neg_binomial_2: mean `mu`, variance mu + mu^2 / phi."""

    def __init__(self, mu: Array, phi: Array):
        self.mu, self.phi = _promote(mu, phi)
        super().__init__(self.phi, self.phi / (self.mu + self.phi))

    @property
    def mean(self) -> Array:
        return self.mu

    @property
    def variance(self) -> Array:
        return self.mu + jnp.square(self.mu) / self.phi


# ---------------------------------------------------------------- multivariate


class Dirichlet(Distribution):
    support = constraints.simplex
    reparameterized = True

    def __init__(self, concentration: Array):
        (self.concentration,) = _promote(concentration)
        super().__init__(self.concentration.shape[:-1], self.concentration.shape[-1:])

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        shape = tuple(sample_shape) + self.batch_shape
        return jax.random.dirichlet(key, self.concentration, shape, self.concentration.dtype)

    def log_prob(self, value: Array) -> Array:
        # scipy's dirichlet takes one 1-d alpha; vectorize maps it over the batch.
        return jnp.vectorize(stats.dirichlet.logpdf, signature="(k),(k)->()")(value, self.concentration)

    @property
    def mean(self) -> Array:
        return self.concentration / jnp.sum(self.concentration, axis=-1, keepdims=True)

    @property
    def variance(self) -> Array:
        total = jnp.sum(self.concentration, axis=-1, keepdims=True)
        share = self.concentration / total
        return share * (1 - share) / (total + 1)


class MultivariateNormal(Distribution):
    """Given a covariance or its Cholesky factor `scale_tril`; both go through the
    covariance, the form that jax.scipy.stats and jax.random take."""

    reparameterized = True

    def __init__(self, loc: Array, covariance_matrix: Array | None = None, *, scale_tril: Array | None = None):
        if (covariance_matrix is None) == (scale_tril is None):
            raise ValueError("multivariate_normal() takes exactly one of `covariance_matrix` and `scale_tril`")
        if covariance_matrix is None:
            (scale_tril,) = _promote(scale_tril)
            covariance_matrix = scale_tril @ jnp.swapaxes(scale_tril, -1, -2)
        (self.loc,) = _promote(loc)
        (self.covariance_matrix,) = _promote(covariance_matrix)
        n = self.loc.shape[-1]
        if self.covariance_matrix.shape[-2:] != (n, n):
            raise ValueError(
                f"multivariate_normal(): loc has {n} components but the covariance has shape "
                f"{self.covariance_matrix.shape}"
            )
        batch = lax.broadcast_shapes(self.loc.shape[:-1], self.covariance_matrix.shape[:-2])
        super().__init__(batch, (n,))

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        shape = tuple(sample_shape) + self.batch_shape
        return jax.random.multivariate_normal(
            key, self.loc, self.covariance_matrix, shape, self.loc.dtype, method="cholesky"
        )

    def log_prob(self, value: Array) -> Array:
        return stats.multivariate_normal.logpdf(value, self.loc, self.covariance_matrix)

    @property
    def mean(self) -> Array:
        return jnp.broadcast_to(self.loc, self.shape())

    @property
    def variance(self) -> Array:
        diagonal = jnp.diagonal(self.covariance_matrix, axis1=-2, axis2=-1)
        return jnp.broadcast_to(diagonal, self.shape())


class LKJCholesky(Distribution):
    """Cholesky factor L of a dim x dim correlation matrix with L @ L.T ~ LKJ(concentration).

    The density is with respect to the strictly lower entries of L (Stan's
    lkj_corr_cholesky). Sampling uses the onion method (Lewandowski, Kurowicka, Joe 2009).
    """

    support = constraints.corr_cholesky
    reparameterized = True

    def __init__(self, dim: int, concentration: Array = 1.0):
        if not isinstance(dim, (int, np.integer)) or dim < 2:
            raise ValueError(f"lkj_cholesky() needs an integer dim >= 2, got {dim!r}")
        self.dim = int(dim)
        (self.concentration,) = _promote(concentration)
        super().__init__(self.concentration.shape, (self.dim, self.dim))

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        key_beta, key_normal = jax.random.split(key)
        d, eta = self.dim, self.concentration[..., None]
        offset = 0.5 * jnp.arange(d - 1, dtype=eta.dtype)
        batch = tuple(sample_shape) + self.batch_shape
        # Squared length of row i+1 of the strictly lower part, then a uniform direction.
        radius2 = jax.random.beta(key_beta, offset + 0.5, eta + 0.5 * (d - 2) - offset, batch + (d - 1,), eta.dtype)
        normals = jnp.tril(jax.random.normal(key_normal, batch + (d - 1, d - 1), eta.dtype))
        direction = normals / jnp.linalg.norm(normals, axis=-1, keepdims=True)
        lower = jnp.sqrt(radius2)[..., None] * direction
        chol = jnp.zeros(batch + (d, d), eta.dtype).at[..., 1:, :-1].set(lower)
        diagonal = jnp.sqrt(jnp.clip(1 - jnp.sum(jnp.square(chol), axis=-1), 0.0))
        return chol + diagonal[..., None] * jnp.eye(d, dtype=eta.dtype)

    def log_prob(self, value: Array) -> Array:
        d, eta = self.dim, self.concentration
        log_diagonal = jnp.log(jnp.diagonal(value, axis1=-2, axis2=-1)[..., 1:])
        exponent = 2 * (eta[..., None] - 1) + d - jnp.arange(2, d + 1, dtype=eta.dtype)
        alpha = eta + 0.5 * (d - 1)
        log_normalizer = (
            0.5 * (d - 1) * math.log(math.pi)
            + special.multigammaln(alpha - 0.5, d - 1)
            - (d - 1) * special.gammaln(alpha)
        )
        return jnp.sum(exponent * log_diagonal, axis=-1) - log_normalizer


class Flat(Distribution):
    """Improper uniform density on the reals: log_prob is 0 for every value."""

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        raise ValueError("flat() is improper and cannot be sampled; observe it or give it a guide")

    def log_prob(self, value: Array) -> Array:
        return jnp.zeros(jnp.shape(value), jnp.result_type(float, jnp.asarray(value)))


class Restricted(Distribution):
    """A distribution's density on a support declared with the choice (`sigma: positive ~
    student_t(3, 0, 1)`, `mu: positive_ordered[K] ~ normal(0, 10)`), as Stan's constrained
    declarations mean: the log density is the distribution's, not renormalized to the support, and
    inference works in the declared support's unconstrained coordinates. It can be drawn from only
    where the distribution's own support already lies inside the declared one."""

    def __init__(self, base: Distribution, support: str, shape: tuple):
        self.base = base
        self.support = constraints.CONSTRAINTS[support]
        self.support_name = support
        self.inside = support == "real" or base.support is self.support
        super().__init__(tuple(shape))

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        if not self.inside:
            raise ValueError(f"a choice declared {self.support_name} cannot be drawn from "
                             f"{type(self.base).__name__}, whose values fall outside it; give it a value (NUTS, "
                             "a guide, observations) instead of drawing it")
        return jnp.broadcast_to(self.base.sample(key, sample_shape), self.shape(sample_shape))

    def log_prob(self, value: Array) -> Array:
        return self.base.log_prob(value)


class Unscored(Distribution):
    """A choice whose density is counted elsewhere: the marginalize transformation keeps the
    choices that depend on a summed-out discrete choice (an HMM's emissions) as choices, so their
    values are bound as before, and adds their densities under every value of the discrete choice
    inside the log-sum-exp; here they count zero. Support, shape and draws are the base's."""

    def __init__(self, base: Distribution):
        self.base = base
        self.support = base.support
        self.value_dtype = base.value_dtype
        super().__init__(base.batch_shape, base.event_shape)

    def sample(self, key: Array, sample_shape: Sequence[int] = ()) -> Array:
        return self.base.sample(key, sample_shape)

    def log_prob(self, value: Array) -> Array:
        return jnp.zeros(jnp.shape(value)[:jnp.ndim(value) - len(self.event_shape)])


normal = Normal
half_normal = HalfNormal
lognormal = LogNormal
student_t = StudentT
cauchy = Cauchy
half_cauchy = HalfCauchy
half_student_t = HalfStudentT
laplace = Laplace
uniform = Uniform
exponential = Exponential
gamma = Gamma
inverse_gamma = InverseGamma
beta = Beta
bernoulli = Bernoulli
bernoulli_logit = BernoulliLogit
binomial = Binomial
categorical = Categorical
categorical_logit = CategoricalLogit
poisson = Poisson
geometric = Geometric
negative_binomial = NegativeBinomial
negative_binomial_2 = NegativeBinomial2
dirichlet = Dirichlet
multivariate_normal = MultivariateNormal
lkj_cholesky = LKJCholesky
flat = Flat
restricted = Restricted  # generated code's name for a declared support; not callable from models
unscored = Unscored  # generated code's name for a choice scored by the marginalize transformation


# ---------------------------------------------------------------- the constructors by name

DISTRIBUTIONS: dict[str, type] = {
    "normal": Normal,
    "half_normal": HalfNormal,
    "lognormal": LogNormal,
    "student_t": StudentT,
    "cauchy": Cauchy,
    "half_cauchy": HalfCauchy,
    "half_student_t": HalfStudentT,
    "laplace": Laplace,
    "uniform": Uniform,
    "exponential": Exponential,
    "gamma": Gamma,
    "inverse_gamma": InverseGamma,
    "beta": Beta,
    "bernoulli": Bernoulli,
    "bernoulli_logit": BernoulliLogit,
    "binomial": Binomial,
    "categorical": Categorical,
    "categorical_logit": CategoricalLogit,
    "poisson": Poisson,
    "geometric": Geometric,
    "negative_binomial": NegativeBinomial,
    "negative_binomial_2": NegativeBinomial2,
    "dirichlet": Dirichlet,
    "multivariate_normal": MultivariateNormal,
    "lkj_cholesky": LKJCholesky,
    "flat": Flat,
}
