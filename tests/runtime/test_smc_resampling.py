"""Resampling schemes and annealed resampling of `pplang.runtime.smc`, by their defining properties.

Every scheme must draw particle j with expected count N W_j (what keeps the particle filter's
likelihood estimate unbiased); systematic, stratified and residual resampling must have smaller
count variance than multinomial. Annealed resampling draws from tempered weights and reweights the
copies; the weighted sum of any function over the copies must still have the old weighted mean as
its expectation. Means are checked within 4.5 standard errors over many independent draws.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pplang.runtime import smc as rs

Z_TOL = 4.5
N = 12
DRAWS = 20_000
LOG_W = jnp.asarray(np.log(np.random.RandomState(0).dirichlet(np.full(N, 0.7))), jnp.float32)
W = np.exp(np.asarray(LOG_W, np.float64))
W /= W.sum()


@functools.cache
def counter(scheme: str) -> Callable:
    """Jitted: (keys, log weights) -> copies of each particle per draw, smallest and largest ancestor."""

    def one(key: jax.Array, log_w: jax.Array) -> tuple:
        anc = rs.SCHEMES[scheme](key, log_w)
        return jnp.bincount(anc, length=log_w.shape[0]), anc.min(), anc.max()

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


def counts(scheme: str, log_w: jnp.ndarray = LOG_W) -> np.ndarray:
    """(DRAWS, N) how many copies of each particle each independent resampling made."""
    c, lo, hi = counter(scheme)(jax.random.split(jax.random.key(1), DRAWS), log_w)
    assert int(lo.min()) >= 0 and int(hi.max()) < log_w.shape[0]
    return np.asarray(c)


def test_counts() -> None:
    """E[count_j] = N W_j for every scheme. Multinomial counts have variance N W (1 - W); the
    others at most that, and in total clearly less; systematic and stratified never stray far from
    N W. (One test, so that the draws are made once.)"""
    all_counts = {s: counts(s) for s in rs.SCHEMES}
    expected = N * W
    for scheme, c in all_counts.items():
        assert np.all(c.sum(axis=1) == N)
        mean, se = c.mean(axis=0), c.std(axis=0, ddof=1) / np.sqrt(DRAWS)
        # a scheme can copy a particle a fixed number of times (zero variance): allow float rounding there
        assert np.all(np.abs(mean - expected) <= Z_TOL * se + 1e-3), (scheme, mean, expected, se)
    multi = all_counts["multinomial"].var(axis=0, ddof=1)
    np.testing.assert_allclose(multi, N * W * (1 - W), rtol=0.1, atol=0.02)
    for scheme in ("systematic", "stratified", "residual"):
        v = all_counts[scheme].var(axis=0, ddof=1)
        assert v.sum() < 0.6 * multi.sum(), (scheme, v.sum(), multi.sum())
    assert np.abs(all_counts["systematic"] - expected).max() < 1.0 + 1e-4
    assert np.abs(all_counts["stratified"] - expected).max() < 2.0


def test_zero_weights_are_never_drawn() -> None:
    log_w = LOG_W.at[jnp.array([0, 5, 11])].set(-jnp.inf)
    for scheme in rs.SCHEMES:
        c = counts(scheme, log_w)
        assert c[:, [0, 5, 11]].sum() == 0, scheme


def test_ess_and_entropy() -> None:
    assert float(rs.ess(jnp.zeros(10))) == pytest.approx(10.0, rel=1e-5)
    assert float(rs.ess(jnp.array([0.0] + [-jnp.inf] * 9))) == pytest.approx(1.0)
    assert float(rs.ess(LOG_W)) == pytest.approx(1.0 / np.sum(W**2), rel=1e-4)
    assert float(rs.normalized_entropy(jnp.zeros(10))) == pytest.approx(1.0, rel=1e-5)
    assert float(rs.normalized_entropy(jnp.array([0.0] + [-jnp.inf] * 9))) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("target", [0.5, 0.9, 0.99])
def test_temper_reaches_the_target_entropy(target: float) -> None:
    low = jnp.asarray(np.log(np.random.RandomState(2).dirichlet(np.full(200, 0.05))), jnp.float32)
    assert float(rs.normalized_entropy(low)) < 0.5
    beta = float(rs.temper(low, target))
    assert 0.0 < beta < 1.0
    assert float(rs.normalized_entropy(rs.tempered(low, beta))) == pytest.approx(target, abs=2e-3)


@pytest.mark.parametrize("scheme", ["multinomial", "systematic"])
def test_annealed_resampling_is_unbiased(scheme: str) -> None:
    """E[sum over copies of exp(copy log weight) f(x_ancestor)] = sum_j W_j f(x_j) for any f, here
    f = the particle's index and its square; and the total weight has expectation 1."""
    rng = np.random.RandomState(3)
    n = 50
    log_w = jnp.asarray(np.log(rng.dirichlet(np.full(n, 0.05))), jnp.float32)
    opts = rs.Options(scheme=scheme, anneal=0.8)
    keys = jax.random.split(jax.random.key(4), DRAWS)
    anc, lw, beta = jax.jit(jax.vmap(lambda k: rs.resample(k, log_w, opts)))(keys)
    assert np.all(np.asarray(beta) < 1.0)  # the weights are degenerate enough to be tempered
    w_copies = np.exp(np.asarray(lw, np.float64))
    f = np.arange(n, dtype=np.float64)
    w = np.exp(np.asarray(log_w, np.float64))
    w /= w.sum()
    for g, exact in ((np.ones(n), 1.0), (f, w @ f), (f**2, w @ f**2)):
        est = (w_copies * g[np.asarray(anc)]).sum(axis=1)
        se = est.std(ddof=1) / np.sqrt(DRAWS)
        assert abs(est.mean() - exact) < Z_TOL * se, (g[:3], est.mean(), exact, se)
    # the copies are more diverse than plain resampling from the degenerate weights
    plain = jax.jit(jax.vmap(rs.SCHEMES[scheme], in_axes=(0, None)))(keys[:500], log_w)
    distinct = lambda a: np.mean([len(np.unique(r)) for r in np.asarray(a)])  # noqa: E731
    assert distinct(anc[:500]) > 1.5 * distinct(plain)


def test_lineage_and_origins() -> None:
    """Ancestor tracing: particle n at the last step descends from lineage[k, n] at step k."""
    anc = jnp.array([[1, 1, 0], [2, 0, 0], [1, 2, 2]], jnp.int32)  # steps 1..3, 3 particles
    lin = np.asarray(rs.lineage(anc, jnp.arange(3, dtype=jnp.int32)))
    assert lin.tolist() == [[1, 1, 1], [0, 0, 0], [1, 2, 2], [0, 1, 2]]
    org = np.asarray(rs.origins(anc))
    assert org.tolist() == [[0, 1, 2], [1, 1, 0], [0, 1, 1], [1, 1, 1]]
    assert org[-1].tolist() == lin[0].tolist()


def test_window_and_shift() -> None:
    x = jnp.arange(6.0)
    np.testing.assert_array_equal(rs.window(x, 3, 2), [1.0, 2.0])
    np.testing.assert_array_equal(rs.window(x, 1, 2), [5.0, 0.0])  # x[-1] wraps, as in the model
    np.testing.assert_array_equal(rs.shift(jnp.array([1.0, 2.0]), 7.0), [2.0, 7.0])


def test_weighted_quantiles() -> None:
    rng = np.random.RandomState(5)
    v = rng.normal(size=(3, 4000))
    lw = np.log(rng.uniform(0.5, 1.5, size=(3, 4000)))
    lw -= np.log(np.exp(lw).sum(axis=1, keepdims=True))
    q = np.asarray(rs.weighted_quantiles(jnp.asarray(v), jnp.asarray(lw), (0.1, 0.5, 0.9)))
    assert q.shape == (3, 3)
    for k in range(3):
        order = np.argsort(v[k])
        cdf = np.cumsum(np.exp(lw[k])[order])
        for j, p in enumerate((0.1, 0.5, 0.9)):
            assert q[j, k] == pytest.approx(v[k][order][np.searchsorted(cdf, p * cdf[-1])], abs=1e-6)
