"""Supports of random variables, with bijections from unconstrained real space.

Inference works on unconstrained coordinates `u`; a continuous constraint maps them to
its support with `forward` and reports `log_abs_det_jacobian(u)` of that map, so that
a density over the constrained value can be turned into one over `u`. The transforms
follow Stan's reference manual (exp for lower/upper bounds, logistic for intervals,
stick-breaking for simplexes, tanh of canonical partial correlations for Cholesky
factors of correlation matrices).
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import nn

Array = Any


def _to_float(x: Array) -> Array:
    """`x` as an array of JAX's default float type (or its own float type if it has one)."""
    x = jnp.asarray(x)
    return x.astype(jnp.result_type(float, x))


def _exclusive_cumsum(x: Array) -> Array:
    """Sums of the strictly earlier entries along the last axis (no cancellation from
    subtracting each entry back off an inclusive cumsum)."""
    return jnp.cumsum(jnp.concatenate([jnp.zeros_like(x[..., :1]), x[..., :-1]], axis=-1), axis=-1)


def _log1m_tanh_sq(u: Array) -> Array:
    """log(1 - tanh(u)^2) without the cancellation of computing tanh first."""
    return 2.0 * (math.log(2.0) - u - nn.softplus(-2.0 * u))


def _sum_tol(dtype: Any) -> float:
    """Tolerance for constraints that hold up to rounding (sums to one, unit norms)."""
    return float(np.sqrt(jnp.finfo(dtype).eps))


class Constraint:
    """A support: membership test, plus (for continuous ones) a bijection from R^n."""

    name: str = "constraint"
    is_discrete: bool = False
    event_dim: int = 0

    def check(self, x: Array) -> Array:
        """Boolean array of batch shape: is each (event-sized block of) `x` in the support."""
        raise NotImplementedError

    def forward(self, u: Array) -> Array:
        """Unconstrained `u` -> value in the support."""
        raise NotImplementedError

    def inverse(self, x: Array) -> Array:
        """Value in the support -> unconstrained `u`."""
        raise NotImplementedError

    def log_abs_det_jacobian(self, u: Array) -> Array:
        """log|det d forward(u) / du|, summed over the event dims (batch shape)."""
        raise NotImplementedError

    def unconstrained_shape(self, shape: tuple) -> tuple:
        """Shape of `u` whose image has the constrained `shape`."""
        return tuple(shape)

    def constrained_shape(self, ushape: tuple) -> tuple:
        """Shape of `forward(u)` for `u` of shape `ushape`."""
        return tuple(ushape)

    def __repr__(self) -> str:
        return self.name


# ---------------------------------------------------------------- elementwise, continuous


class Real(Constraint):
    name = "real"

    def check(self, x: Array) -> Array:
        return jnp.isfinite(x)

    def forward(self, u: Array) -> Array:
        return _to_float(u)

    def inverse(self, x: Array) -> Array:
        return _to_float(x)

    def log_abs_det_jacobian(self, u: Array) -> Array:
        return jnp.zeros_like(_to_float(u))


class GreaterThan(Constraint):
    """(lower, inf) via lower + exp(u)."""

    name = "greater_than"

    def __init__(self, lower: Array):
        self.lower = lower

    def check(self, x: Array) -> Array:
        return x > self.lower

    def forward(self, u: Array) -> Array:
        return self.lower + jnp.exp(_to_float(u))

    def inverse(self, x: Array) -> Array:
        return jnp.log(_to_float(x) - self.lower)

    def log_abs_det_jacobian(self, u: Array) -> Array:
        return _to_float(u)

    def __repr__(self) -> str:
        return f"{self.name}({self.lower})"


class Positive(GreaterThan):
    name = "positive"

    def __init__(self):
        super().__init__(0.0)

    def __repr__(self) -> str:
        return self.name


class LessThan(Constraint):
    """(-inf, upper) via upper - exp(u)."""

    name = "less_than"

    def __init__(self, upper: Array):
        self.upper = upper

    def check(self, x: Array) -> Array:
        return x < self.upper

    def forward(self, u: Array) -> Array:
        return self.upper - jnp.exp(_to_float(u))

    def inverse(self, x: Array) -> Array:
        return jnp.log(self.upper - _to_float(x))

    def log_abs_det_jacobian(self, u: Array) -> Array:
        return _to_float(u)

    def __repr__(self) -> str:
        return f"{self.name}({self.upper})"


class Interval(Constraint):
    """[lower, upper] via lower + (upper - lower) * sigmoid(u); closed because sigmoid
    rounds to 0 or 1 for large |u|."""

    name = "interval"

    def __init__(self, lower: Array, upper: Array):
        self.lower = lower
        self.upper = upper

    def check(self, x: Array) -> Array:
        return (x >= self.lower) & (x <= self.upper)

    def forward(self, u: Array) -> Array:
        return self.lower + (self.upper - self.lower) * nn.sigmoid(_to_float(u))

    def inverse(self, x: Array) -> Array:
        p = (_to_float(x) - self.lower) / (self.upper - self.lower)
        return jnp.log(p) - jnp.log1p(-p)

    def log_abs_det_jacobian(self, u: Array) -> Array:
        u = _to_float(u)
        return jnp.log(self.upper - self.lower) + nn.log_sigmoid(u) + nn.log_sigmoid(-u)

    def __repr__(self) -> str:
        return f"{self.name}({self.lower}, {self.upper})"


class UnitInterval(Interval):
    name = "unit"

    def __init__(self):
        super().__init__(0.0, 1.0)

    def __repr__(self) -> str:
        return self.name


# ---------------------------------------------------------------- vectors and matrices


class Simplex(Constraint):
    """Non-negative K-vectors summing to one, from R^(K-1) by Stan's stick-breaking.

    The offset -log(K - k) makes u = 0 map to the uniform vector. Everything is carried
    in log space so that long or very uneven sticks neither underflow nor cancel.
    """

    name = "simplex"
    event_dim = 1

    @staticmethod
    def _offset(n: int, dtype: Any) -> Array:
        return jnp.log(jnp.arange(n, 0, -1, dtype=dtype))

    def _pieces(self, u: Array) -> tuple:
        """log z_k, log(1 - z_k) and log of the stick left before break k."""
        t = u - self._offset(u.shape[-1], u.dtype)
        log_z, log_1mz = nn.log_sigmoid(t), nn.log_sigmoid(-t)
        return log_z, log_1mz, _exclusive_cumsum(log_1mz)

    def check(self, x: Array) -> Array:
        x = _to_float(x)
        return jnp.all(x >= 0, axis=-1) & (jnp.abs(jnp.sum(x, -1) - 1) <= _sum_tol(x.dtype))

    def forward(self, u: Array) -> Array:
        u = _to_float(u)
        log_z, log_1mz, log_left = self._pieces(u)
        last = jnp.sum(log_1mz, axis=-1, keepdims=True)
        return jnp.exp(jnp.concatenate([log_z + log_left, last], axis=-1))

    def inverse(self, x: Array) -> Array:
        x = _to_float(x)
        tail = jnp.flip(jnp.cumsum(jnp.flip(x, -1), -1), -1)
        return jnp.log(x[..., :-1]) - jnp.log(tail[..., 1:]) + self._offset(x.shape[-1] - 1, x.dtype)

    def log_abs_det_jacobian(self, u: Array) -> Array:
        log_z, log_1mz, log_left = self._pieces(_to_float(u))
        return jnp.sum(log_z + log_1mz + log_left, axis=-1)

    def unconstrained_shape(self, shape: tuple) -> tuple:
        return tuple(shape[:-1]) + (shape[-1] - 1,)

    def constrained_shape(self, ushape: tuple) -> tuple:
        return tuple(ushape[:-1]) + (ushape[-1] + 1,)


class Ordered(Constraint):
    """Strictly increasing vectors: x_1 = u_1, x_k = x_(k-1) + exp(u_k)."""

    name = "ordered"
    event_dim = 1

    def check(self, x: Array) -> Array:
        return jnp.all(jnp.diff(x, axis=-1) > 0, axis=-1)

    def forward(self, u: Array) -> Array:
        u = _to_float(u)
        return jnp.cumsum(jnp.concatenate([u[..., :1], jnp.exp(u[..., 1:])], -1), -1)

    def inverse(self, x: Array) -> Array:
        x = _to_float(x)
        return jnp.concatenate([x[..., :1], jnp.log(jnp.diff(x, axis=-1))], -1)

    def log_abs_det_jacobian(self, u: Array) -> Array:
        return jnp.sum(_to_float(u)[..., 1:], axis=-1)


class PositiveOrdered(Constraint):
    """Strictly increasing positive vectors: cumulative sums of exp(u)."""

    name = "positive_ordered"
    event_dim = 1

    def check(self, x: Array) -> Array:
        return jnp.all(jnp.diff(x, axis=-1, prepend=0) > 0, axis=-1)

    def forward(self, u: Array) -> Array:
        return jnp.cumsum(jnp.exp(_to_float(u)), axis=-1)

    def inverse(self, x: Array) -> Array:
        return jnp.log(jnp.diff(_to_float(x), axis=-1, prepend=0))

    def log_abs_det_jacobian(self, u: Array) -> Array:
        return jnp.sum(_to_float(u), axis=-1)


class CorrCholesky(Constraint):
    """Lower-triangular L with positive diagonal and unit-norm rows (L @ L.T is a
    correlation matrix), from the K(K-1)/2 free coordinates of Stan / LKJ.

    u (row-major strictly lower triangle) -> canonical partial correlations z = tanh(u);
    L_ij = z_ij * sqrt(1 - sum_(k<j) L_ik^2), L_ii = sqrt(1 - sum_(k<i) L_ik^2). The
    squared remaining row norm is the running product of (1 - z^2), kept in log space.
    The Jacobian is to the strictly lower entries of L (the diagonal is determined).
    """

    name = "cholesky_corr"
    event_dim = 2

    @staticmethod
    def _dim(n: int) -> int:
        k = (1 + math.isqrt(1 + 8 * n)) // 2
        if k * (k - 1) // 2 != n:
            raise ValueError(f"{n} is not a triangular number K*(K-1)/2; cannot form a Cholesky factor")
        return k

    def _pieces(self, u: Array) -> tuple:
        """Strict-lower matrices of z and log(1 - z^2), log squared remaining row norms."""
        k = self._dim(u.shape[-1])
        rows, cols = np.tril_indices(k, -1)
        empty = jnp.zeros(u.shape[:-1] + (k, k), u.dtype)
        z = empty.at[..., rows, cols].set(jnp.tanh(u))
        log1mz2 = empty.at[..., rows, cols].set(_log1m_tanh_sq(u))
        return z, log1mz2, _exclusive_cumsum(log1mz2)

    def check(self, x: Array) -> Array:
        x = _to_float(x)
        lower = jnp.all(jnp.tril(x) == x, axis=(-2, -1))
        diag = jnp.all(jnp.diagonal(x, axis1=-2, axis2=-1) > 0, axis=-1)
        norms = jnp.abs(jnp.linalg.norm(x, axis=-1) - 1) <= _sum_tol(x.dtype)
        return lower & diag & jnp.all(norms, axis=-1)

    def forward(self, u: Array) -> Array:
        u = _to_float(u)
        z, _, log_w2 = self._pieces(u)
        return (z + jnp.eye(z.shape[-1], dtype=u.dtype)) * jnp.exp(0.5 * log_w2)

    def inverse(self, x: Array) -> Array:
        x = _to_float(x)
        rows, cols = np.tril_indices(x.shape[-1], -1)
        w2 = 1 - _exclusive_cumsum(jnp.square(x))
        return jnp.arctanh(x[..., rows, cols] / jnp.sqrt(w2[..., rows, cols]))

    def log_abs_det_jacobian(self, u: Array) -> Array:
        _, log1mz2, log_w2 = self._pieces(_to_float(u))
        rows, cols = np.tril_indices(log_w2.shape[-1], -1)
        return jnp.sum(log1mz2, axis=(-2, -1)) + 0.5 * jnp.sum(log_w2[..., rows, cols], axis=-1)

    def unconstrained_shape(self, shape: tuple) -> tuple:
        k = shape[-1]
        if len(shape) < 2 or shape[-2] != k:
            raise ValueError(f"a Cholesky factor must be square, got shape {tuple(shape)}")
        return tuple(shape[:-2]) + (k * (k - 1) // 2,)

    def constrained_shape(self, ushape: tuple) -> tuple:
        k = self._dim(ushape[-1])
        return tuple(ushape[:-1]) + (k, k)


# ---------------------------------------------------------------- discrete


class _Discrete(Constraint):
    """Discrete supports have no bijection from the reals: marginalize or sample them."""

    is_discrete = True

    def _no_bijection(self) -> TypeError:
        return TypeError(
            f"constraint '{self.name}' is discrete and has no bijection from the reals; "
            "a discrete variable must be enumerated, observed or sampled, not transformed"
        )

    def forward(self, u: Array) -> Array:
        raise self._no_bijection()

    def inverse(self, x: Array) -> Array:
        raise self._no_bijection()

    def log_abs_det_jacobian(self, u: Array) -> Array:
        raise self._no_bijection()

    def unconstrained_shape(self, shape: tuple) -> tuple:
        raise self._no_bijection()

    def constrained_shape(self, ushape: tuple) -> tuple:
        raise self._no_bijection()


class Integer(_Discrete):
    name = "int"

    def check(self, x: Array) -> Array:
        return x == jnp.floor(x)


class NonnegativeInteger(_Discrete):
    name = "nonnegative_int"

    def check(self, x: Array) -> Array:
        return (x == jnp.floor(x)) & (x >= 0)


class Boolean(_Discrete):
    name = "bool"

    def check(self, x: Array) -> Array:
        return (x == 0) | (x == 1)


class IntegerInterval(_Discrete):
    """Integers in [lower, upper], both ends included."""

    name = "int_interval"

    def __init__(self, lower: Array, upper: Array):
        self.lower = lower
        self.upper = upper

    def check(self, x: Array) -> Array:
        return (x == jnp.floor(x)) & (x >= self.lower) & (x <= self.upper)

    def __repr__(self) -> str:
        return f"{self.name}({self.lower}, {self.upper})"


real = Real()
positive = Positive()
unit_interval = UnitInterval()
simplex = Simplex()
ordered = Ordered()
positive_ordered = PositiveOrdered()
corr_cholesky = CorrCholesky()
integer = Integer()
nonnegative_integer = NonnegativeInteger()
boolean = Boolean()
interval = Interval
greater_than = GreaterThan
less_than = LessThan
integer_interval = IntegerInterval

CONSTRAINTS: dict[str, Constraint] = {
    "real": real,
    "positive": positive,
    "unit": unit_interval,
    "simplex": simplex,
    "ordered": ordered,
    "positive_ordered": positive_ordered,
    "cholesky_corr": corr_cholesky,
    "int": integer,
    "bool": boolean,
}


def _is_const(x: Array | None, value: float) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == value


def bounded(lower: Array | None = None, upper: Array | None = None) -> Constraint:
    """The real constraint for optional bounds; the named singletons for (0, -) and (0, 1)."""
    if lower is None and upper is None:
        return real
    if upper is None:
        return positive if _is_const(lower, 0) else greater_than(lower)
    if lower is None:
        return less_than(upper)
    return unit_interval if _is_const(lower, 0) and _is_const(upper, 1) else interval(lower, upper)
