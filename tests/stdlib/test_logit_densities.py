"""Bernoulli and binomial log densities built from logits, in the default float32: exact values and
gradients where sigmoid rounds to 0 or 1, -inf with a zero (not NaN) gradient outside the support,
integer, boolean and broadcast values. The float64 comparisons with scipy are in tests/float64."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special as sp
from pplang.stdlib import distributions as D

EXTREME = np.array([-200.0, -40.0, -17.0, -1.5, 0.0, 2.0, 17.0, 40.0, 200.0], np.float32)


def _log_binom(k, n, logits):
    """float64 reference: log C(n, k) + k log p + (n - k) log(1 - p), p = sigmoid(logits), via log_expit."""
    k, n, logits = (np.asarray(a, np.float64) for a in (k, n, logits))
    return (sp.gammaln(n + 1) - sp.gammaln(k + 1) - sp.gammaln(n - k + 1)
            + k * sp.log_expit(logits) + (n - k) * sp.log_expit(-logits))


def _value_and_grad(make, value, logits):
    """log_prob at `value` and its gradient with respect to every logit (log_prob summed)."""
    return jax.jit(jax.value_and_grad(lambda lg: make(lg).log_prob(value).sum()))(jnp.asarray(logits))


def test_bernoulli_logits_exact_and_finite_at_extreme_logits():
    for value in (0, 1, False, True):
        total, grad = _value_and_grad(lambda lg: D.bernoulli(logits=lg), value, EXTREME)
        expected = _log_binom(int(value), 1, EXTREME).sum()
        np.testing.assert_allclose(float(total), expected, rtol=1e-6)
        assert np.all(np.isfinite(np.asarray(grad)))
        np.testing.assert_allclose(np.asarray(grad), int(value) - sp.expit(EXTREME.astype(np.float64)), atol=1e-6)


def test_binomial_logits_exact_and_finite_at_extreme_logits():
    n = 7
    for k in (0, 3, 7):
        total, grad = _value_and_grad(lambda lg: D.binomial(n, logits=lg), k, EXTREME)
        np.testing.assert_allclose(float(total), _log_binom(k, n, EXTREME).sum(), rtol=1e-6)
        assert np.all(np.isfinite(np.asarray(grad)))
        np.testing.assert_allclose(np.asarray(grad), k - n * sp.expit(EXTREME.astype(np.float64)), atol=1e-5)


def test_bernoulli_logits_out_of_support_is_minus_infinity_with_zero_gradient():
    logits = jnp.array([-3.0, 0.5, 30.0])
    value = jnp.array([[-1.0], [2.0], [0.5], [0.0], [1.0]])  # (5, 1) against (3,): batch (5, 3)
    lp = jax.jit(D.bernoulli(logits=logits).log_prob)(value)
    assert lp.shape == (5, 3)
    assert np.all(np.isneginf(np.asarray(lp[:3])))
    np.testing.assert_allclose(np.asarray(lp[3:]), _log_binom([[0], [1]], 1, [-3.0, 0.5, 30.0]), rtol=1e-6, atol=1e-5)
    # Outside the support the log density is constant in the logits: a zero gradient, never NaN.
    grad = jax.grad(lambda lg: D.bernoulli(logits=lg).log_prob(value[:3]).sum())(logits)
    np.testing.assert_array_equal(np.asarray(grad), 0.0)


def test_binomial_logits_support_broadcasts_with_per_member_counts():
    counts = np.array([[2], [5]])  # batch (2, 3) with logits (3,)
    logits = np.array([-40.0, 0.3, 25.0], np.float32)
    values = np.array([-1, 0, 2, 3, 5, 6]).reshape(-1, 1, 1)
    for dtype in (np.int32, np.float32):
        lp = np.asarray(jax.jit(D.binomial(counts, logits=logits).log_prob)(values.astype(dtype)))
        assert lp.shape == (6, 2, 3)
        outside = (values < 0) | (values > counts)
        assert np.array_equal(np.isneginf(lp), np.broadcast_to(outside, lp.shape))
        np.testing.assert_allclose(lp[~np.broadcast_to(outside, lp.shape)],
                                   np.broadcast_to(_log_binom(values, counts, logits), lp.shape)[
                                       ~np.broadcast_to(outside, lp.shape)], rtol=1e-6, atol=1e-5)
    # Outside the support the log density is constant in the logits: a zero gradient, never NaN.
    above = np.array([3, 6]).reshape(-1, 1, 1)  # above the first count, inside the second, above both
    grad = jax.grad(lambda lg: D.binomial(counts, logits=lg).log_prob(above)[:, 0].sum())(jnp.asarray(logits))
    np.testing.assert_array_equal(np.asarray(grad), 0.0)


def test_logits_and_probs_forms_agree():
    logits = np.array([-2.0, 0.0, 1.0], np.float32)
    probs = sp.expit(logits.astype(np.float64)).astype(np.float32)
    for value in (0, 1):
        np.testing.assert_allclose(np.asarray(D.bernoulli(logits=logits).log_prob(value)),
                                   np.asarray(D.bernoulli(probs).log_prob(value)), rtol=1e-5)
    for value in (0, 2, 4):
        np.testing.assert_allclose(np.asarray(D.binomial(4, logits=logits).log_prob(value)),
                                   np.asarray(D.binomial(4, probs).log_prob(value)), rtol=1e-5)
