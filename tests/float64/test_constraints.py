"""Constraints: membership, forward/inverse round trips, and log|det J| against autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pplang.stdlib import constraints as C

ELEMENTWISE = {
    "real": C.real,
    "positive": C.positive,
    "unit": C.unit_interval,
    "interval": C.interval(-2.0, 3.5),
    "greater_than": C.greater_than(1.5),
    "less_than": C.less_than(-0.5),
}


# ---------------------------------------------------------------- elementwise


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@settings(max_examples=30, deadline=None)
@given(u=st.floats(-15.0, 15.0))
def test_elementwise_properties(name, u):
    c = ELEMENTWISE[name]
    assert c.event_dim == 0 and not c.is_discrete
    x = c.forward(u)
    assert bool(c.check(x))
    # Bounded transforms lose relative precision as they saturate, so compare there loosely.
    np.testing.assert_allclose(c.inverse(x), u, rtol=1e-6, atol=1e-6 if abs(u) < 10 else 1e-2)
    np.testing.assert_allclose(c.log_abs_det_jacobian(u), jnp.log(jnp.abs(jax.grad(c.forward)(u))),
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_shapes_and_batches(name):
    c = ELEMENTWISE[name]
    u = jnp.linspace(-4.0, 4.0, 12).reshape(3, 4)
    assert c.unconstrained_shape((3, 4)) == (3, 4) == c.constrained_shape((3, 4))
    assert c.forward(u).shape == c.log_abs_det_jacobian(u).shape == (3, 4)
    np.testing.assert_allclose(c.inverse(c.forward(u)), u, rtol=1e-10, atol=1e-10)


def test_elementwise_check():
    x = jnp.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    assert C.real.check(x).tolist() == [True] * 5
    assert C.real.check(jnp.array([jnp.nan, jnp.inf])).tolist() == [False, False]
    assert C.positive.check(x).tolist() == [False, False, True, True, True]
    assert C.unit_interval.check(x).tolist() == [False, True, True, True, False]
    assert C.interval(0.5, 1.0).check(x).tolist() == [False, False, True, True, False]
    assert C.greater_than(0.5).check(x).tolist() == [False, False, False, True, True]
    assert C.less_than(0.5).check(x).tolist() == [True, True, False, False, False]


def test_array_bounds_broadcast():
    lo, hi = jnp.array([0.0, -1.0, 5.0]), jnp.array([1.0, 1.0, 50.0])
    c = C.interval(lo, hi)
    u = jnp.array([[0.3], [-2.0]])
    x = c.forward(u)
    assert x.shape == (2, 3) and bool(jnp.all(c.check(x)))
    np.testing.assert_allclose(c.inverse(x), jnp.broadcast_to(u, (2, 3)), rtol=1e-10)
    jac = jax.vmap(jax.vmap(jax.grad(lambda v, a, b: C.interval(a, b).forward(v)),
                            (None, 0, 0)), (0, None, None))(u[:, 0], lo, hi)
    np.testing.assert_allclose(c.log_abs_det_jacobian(u), jnp.log(jac), rtol=1e-10)


def test_saturation_stays_finite():
    u = jnp.array([-800.0, -40.0, 40.0, 800.0])
    for c in (C.unit_interval, C.interval(-1.0, 1.0)):
        assert bool(jnp.all(c.check(c.forward(u))))
        assert bool(jnp.all(jnp.isfinite(c.log_abs_det_jacobian(u))))
    assert bool(jnp.all(jnp.isfinite(C.positive.log_abs_det_jacobian(u))))


# ---------------------------------------------------------------- vectors and matrices

# (constraint, constrained event shape, function picking the free coordinates of a value).
_ROWS, _COLS = np.tril_indices(4, -1)
STRUCTURED = {
    "simplex": (C.simplex, (5,), lambda x: x[:-1]),
    "ordered": (C.ordered, (4,), lambda x: x),
    "positive_ordered": (C.positive_ordered, (4,), lambda x: x),
    "cholesky_corr": (C.corr_cholesky, (4, 4), lambda x: x[_ROWS, _COLS]),
}


@pytest.mark.parametrize("name", sorted(STRUCTURED))
def test_structured_round_trip_and_jacobian(name):
    c, shape, free = STRUCTURED[name]
    ushape = c.unconstrained_shape((2, 3) + shape)
    assert c.constrained_shape(ushape) == (2, 3) + shape
    u = 1.5 * jax.random.normal(jax.random.key(0), ushape)

    @jax.jit
    def run(u):
        x = c.forward(u)
        jac = jax.vmap(jax.jacfwd(lambda v: free(c.forward(v))))(u.reshape((6,) + ushape[2:]))
        return x, c.check(x), c.inverse(x), c.log_abs_det_jacobian(u), jnp.linalg.slogdet(jac)[1]

    x, inside, back, ladj, numeric = run(u)
    assert x.shape == (2, 3) + shape
    assert inside.shape == (2, 3) and bool(jnp.all(inside))
    np.testing.assert_allclose(back, u, rtol=1e-8, atol=1e-8)
    assert ladj.shape == (2, 3)
    np.testing.assert_allclose(ladj.reshape(6), numeric, rtol=1e-9, atol=1e-9)


def test_simplex_zero_is_uniform_and_extremes_are_finite():
    np.testing.assert_allclose(C.simplex.forward(jnp.zeros(4)), jnp.full(5, 0.2), rtol=1e-12)
    u = jnp.array([60.0, -60.0, 300.0, -300.0])
    x = C.simplex.forward(u)
    assert bool(C.simplex.check(x)) and bool(jnp.isfinite(C.simplex.log_abs_det_jacobian(u)))


def test_corr_cholesky_is_a_correlation_factor():
    forward = jax.jit(C.corr_cholesky.forward)
    chol = np.asarray(forward(3 * jax.random.normal(jax.random.key(1), (10,))))
    corr = chol @ chol.T
    np.testing.assert_allclose(np.diag(corr), np.ones(5), rtol=1e-12)
    assert np.all(np.linalg.eigvalsh(corr) > 0)
    np.testing.assert_allclose(forward(jnp.zeros(10)), np.eye(5))
    big = jnp.full((10,), 25.0)
    assert bool(jnp.isfinite(jax.jit(C.corr_cholesky.log_abs_det_jacobian)(big)))


def test_structured_check_rejects():
    assert not bool(C.simplex.check(jnp.array([0.5, 0.6, -0.1])))
    assert not bool(C.simplex.check(jnp.array([0.5, 0.6, 0.1])))
    assert not bool(C.ordered.check(jnp.array([0.0, 1.0, 1.0])))
    assert bool(C.ordered.check(jnp.array([-3.0, 1.0, 2.0])))
    assert not bool(C.positive_ordered.check(jnp.array([-3.0, 1.0, 2.0])))
    assert not bool(C.corr_cholesky.check(jnp.array([[1.0, 0.0], [0.6, 0.6]])))
    assert not bool(C.corr_cholesky.check(jnp.array([[1.0, 0.1], [0.6, 0.8]])))
    assert bool(C.corr_cholesky.check(jnp.array([[1.0, 0.0], [0.6, 0.8]])))


def test_structured_shapes():
    assert C.simplex.unconstrained_shape((7, 3)) == (7, 2)
    assert C.corr_cholesky.unconstrained_shape((4, 4)) == (6,)
    assert C.corr_cholesky.constrained_shape((2, 6)) == (2, 4, 4)
    assert C.corr_cholesky.constrained_shape((0,)) == (1, 1)
    with pytest.raises(ValueError, match="triangular"):
        C.corr_cholesky.constrained_shape((5,))
    with pytest.raises(ValueError, match="square"):
        C.corr_cholesky.unconstrained_shape((3, 4))


# ---------------------------------------------------------------- discrete and lookup


def test_discrete_constraints():
    x = jnp.array([-1.0, 0.0, 0.5, 1.0, 3.0])
    assert C.integer.check(x).tolist() == [True, True, False, True, True]
    assert C.nonnegative_integer.check(x).tolist() == [False, True, False, True, True]
    assert C.boolean.check(x).tolist() == [False, True, False, True, False]
    assert C.integer_interval(0, 2).check(x).tolist() == [False, True, False, True, False]
    for c in (C.integer, C.nonnegative_integer, C.boolean, C.integer_interval(0, 2)):
        assert c.is_discrete and c.event_dim == 0
        for method in (c.forward, c.inverse, c.log_abs_det_jacobian, c.unconstrained_shape):
            with pytest.raises(TypeError, match="discrete"):
                method(x)


def test_names_and_lookup():
    for name, c in C.CONSTRAINTS.items():
        assert c.name == name and repr(c) == name
    assert C.CONSTRAINTS["cholesky_corr"] is C.corr_cholesky
    assert repr(C.interval(0, 2)) == "interval(0, 2)"
    assert C.bounded() is C.real
    assert C.bounded(lower=0) is C.positive
    assert C.bounded(lower=0.0, upper=1.0) is C.unit_interval
    assert repr(C.bounded(lower=2.0)) == "greater_than(2.0)"
    assert repr(C.bounded(upper=2.0)) == "less_than(2.0)"
    assert repr(C.bounded(-1.0, 1.0)) == "interval(-1.0, 1.0)"
    assert isinstance(C.bounded(jnp.zeros(3)), C.GreaterThan)
