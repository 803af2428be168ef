"""Distributions against scipy.stats: densities, sample shapes, sample moments, enumeration
and the signature registry the type checker reads."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as ss
from pplang.stdlib import constraints as C
from pplang.stdlib import distributions as D

N_DRAWS = 20_000

# Batched parameters: a (3,) vector against a (2, 1) column gives batch shape (2, 3).
ROW = np.array([0.7, 1.3, 4.0])
COL = np.array([[0.5], [2.5]])
REAL_ROW = np.array([-1.5, 0.0, 2.0])
UNIT_ROW = np.array([0.1, 0.5, 0.85])


def _close(actual, expected, rtol=1e-7, atol=1e-9):
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- log densities vs scipy

# (distribution, scipy log density of the same broadcast parameters, values of shape (n, 1, 1)).
_REAL_X = np.array([-3.0, -0.4, 0.2, 1.7, 6.0]).reshape(-1, 1, 1)
_POS_X = np.array([-1.0, 0.05, 0.6, 2.2, 9.0]).reshape(-1, 1, 1)
_UNIT_X = np.array([-0.2, 0.03, 0.4, 0.97, 1.4]).reshape(-1, 1, 1)
_COUNT_X = np.array([-1, 0, 1, 3, 7, 12]).reshape(-1, 1, 1)

SCALAR_CASES = {
    "normal": (D.normal(REAL_ROW, COL), lambda x: ss.norm.logpdf(x, REAL_ROW, COL), _REAL_X),
    "half_normal": (D.half_normal(COL * ROW), lambda x: ss.halfnorm.logpdf(x, scale=COL * ROW), _POS_X),
    "lognormal": (D.lognormal(REAL_ROW, COL), lambda x: ss.lognorm.logpdf(x, COL, scale=np.exp(REAL_ROW)),
                  _POS_X),
    "student_t": (D.student_t(ROW, REAL_ROW, COL), lambda x: ss.t.logpdf(x, ROW, REAL_ROW, COL), _REAL_X),
    "student_t_defaults": (D.student_t(COL * ROW), lambda x: ss.t.logpdf(x, COL * ROW), _REAL_X),
    "cauchy": (D.cauchy(REAL_ROW, COL), lambda x: ss.cauchy.logpdf(x, REAL_ROW, COL), _REAL_X),
    "half_cauchy": (D.half_cauchy(COL * ROW), lambda x: ss.halfcauchy.logpdf(x, scale=COL * ROW), _POS_X),
    "half_student_t": (D.half_student_t(ROW, COL), lambda x: np.where(
        x >= 0, np.log(2.0) + ss.t.logpdf(x, ROW, 0.0, COL), -np.inf), _POS_X),
    "laplace": (D.laplace(REAL_ROW, COL), lambda x: ss.laplace.logpdf(x, REAL_ROW, COL), _REAL_X),
    "uniform": (D.uniform(REAL_ROW, REAL_ROW + COL),
                lambda x: ss.uniform.logpdf(x, REAL_ROW, COL + 0 * REAL_ROW), _REAL_X),
    "exponential": (D.exponential(COL * ROW), lambda x: ss.expon.logpdf(x, scale=1 / (COL * ROW)), _POS_X),
    "gamma": (D.gamma(ROW, COL), lambda x: ss.gamma.logpdf(x, ROW, scale=1 / COL), _POS_X),
    "inverse_gamma": (D.inverse_gamma(ROW, COL), lambda x: ss.invgamma.logpdf(x, ROW, scale=COL), _POS_X),
    "beta": (D.beta(ROW, COL), lambda x: ss.beta.logpdf(x, ROW, COL), _UNIT_X),
    "bernoulli": (D.bernoulli(UNIT_ROW + 0 * COL), lambda x: ss.bernoulli.logpmf(x, UNIT_ROW + 0 * COL),
                  _COUNT_X),
    "bernoulli_logits": (D.bernoulli(logits=REAL_ROW * COL),
                         lambda x: ss.bernoulli.logpmf(x, sp.expit(REAL_ROW * COL)), _COUNT_X),
    "bernoulli_logit": (D.bernoulli_logit(REAL_ROW * COL),
                        lambda x: ss.bernoulli.logpmf(x, sp.expit(REAL_ROW * COL)), _COUNT_X),
    "binomial": (D.binomial(np.array([[3], [10]]), UNIT_ROW),
                 lambda x: ss.binom.logpmf(x, np.array([[3], [10]]), UNIT_ROW), _COUNT_X),
    "binomial_logits": (D.binomial(np.array([[3], [10]]), logits=REAL_ROW),
                        lambda x: ss.binom.logpmf(x, np.array([[3], [10]]), sp.expit(REAL_ROW)), _COUNT_X),
    "poisson": (D.poisson(COL * ROW), lambda x: ss.poisson.logpmf(x, COL * ROW), _COUNT_X),
    "geometric": (D.geometric(UNIT_ROW + 0 * COL), lambda x: ss.geom.logpmf(x + 1, UNIT_ROW + 0 * COL),
                  _COUNT_X),
    "negative_binomial": (D.negative_binomial(COL, UNIT_ROW), lambda x: ss.nbinom.logpmf(x, COL, UNIT_ROW),
                          _COUNT_X),
    "negative_binomial_2": (D.negative_binomial_2(ROW, COL),
                            lambda x: ss.nbinom.logpmf(x, COL, COL / (ROW + COL)), _COUNT_X),
}


@pytest.mark.parametrize("case", sorted(SCALAR_CASES))
def test_scalar_log_prob_matches_scipy(case):
    dist, reference, x = SCALAR_CASES[case]
    assert dist.batch_shape == (2, 3) and dist.event_shape == ()
    actual = jax.jit(dist.log_prob)(x)
    assert actual.shape == (x.shape[0], 2, 3)
    _close(actual, reference(x))


def test_logits_forms_stay_finite_where_probabilities_round():
    # sigmoid(60) rounds to 1 in float64, which would give log(0) for the failures.
    logits = jnp.array([60.0, -60.0])
    _close(jax.jit(D.bernoulli(logits=logits).log_prob)(jnp.array([0, 1])), [-60.0, -60.0], rtol=1e-12)
    _close(jax.jit(D.binomial(4, logits=logits).log_prob)(jnp.array([0, 4])), [-240.0, -240.0], rtol=1e-12)


def test_categorical_log_prob():
    probs = np.array([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]])
    x = np.array([-1, 0, 1, 2, 3]).reshape(-1, 1)
    expected = np.where((x >= 0) & (x < 3), np.log(probs[np.arange(2), np.clip(x, 0, 2)]), -np.inf)
    for dist in (D.categorical(probs), D.categorical(logits=np.log(probs) + 7.0),
                 D.categorical_logit(np.log(probs)), D.categorical(probs * 4.0)):
        assert dist.batch_shape == (2,) and dist.event_shape == ()
        _close(dist.log_prob(x), expected)


def test_dirichlet_log_prob():
    alpha = np.array([[0.5, 1.0, 3.0], [2.0, 2.0, 7.0]])
    x = ss.dirichlet.rvs([1.0, 1.0, 1.0], size=(4, 1), random_state=0)
    expected = np.array([[ss.dirichlet.logpdf(x[i, 0], a) for a in alpha] for i in range(4)])
    dist = D.dirichlet(alpha)
    assert dist.batch_shape == (2,) and dist.event_shape == (3,)
    _close(jax.jit(dist.log_prob)(x), expected)
    assert dist.log_prob(np.array([0.5, 0.6, -0.1]))[0] == -np.inf


def _spd(rng, k):
    a = rng.normal(size=(k, k))
    return a @ a.T + k * np.eye(k)


def test_multivariate_normal_log_prob_both_forms():
    rng = np.random.default_rng(1)
    locs = rng.normal(size=(2, 3))
    covs = np.stack([_spd(rng, 3), _spd(rng, 3)])
    x = rng.normal(size=(5, 1, 3))
    expected = np.array([[ss.multivariate_normal.logpdf(x[i, 0], locs[b], covs[b]) for b in range(2)]
                         for i in range(5)])
    by_cov = D.multivariate_normal(locs, covs)
    by_chol = D.multivariate_normal(locs, scale_tril=np.linalg.cholesky(covs))
    for dist in (by_cov, by_chol):
        assert dist.batch_shape == (2,) and dist.event_shape == (3,)
        _close(dist.log_prob(x), expected)
    with pytest.raises(ValueError, match="exactly one"):
        D.multivariate_normal(locs)
    with pytest.raises(ValueError, match="covariance"):
        D.multivariate_normal(locs, np.eye(2))


def test_flat_is_improper():
    dist = D.flat()
    _close(dist.log_prob(np.ones((4, 2))), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"flat\(\) is improper and cannot be sampled"):
        dist.sample(jax.random.key(0))


def test_exactly_one_of_probs_and_logits():
    for make in (D.bernoulli, D.categorical, lambda **kw: D.binomial(3, **kw)):
        with pytest.raises(ValueError, match="exactly one"):
            make()
        with pytest.raises(ValueError, match="exactly one"):
            make(probs=0.5, logits=0.0)


# ---------------------------------------------------------------- LKJ


def test_lkj_cholesky_dim2_is_a_scaled_beta():
    # For dim 2, L[1, 0] is the correlation r and (r + 1) / 2 ~ beta(eta, eta).
    r = np.linspace(-0.95, 0.95, 7)
    chol = np.zeros((7, 2, 2))
    chol[:, 0, 0], chol[:, 1, 0], chol[:, 1, 1] = 1.0, r, np.sqrt(1 - r**2)
    for eta in (0.5, 1.0, 3.0):
        _close(D.lkj_cholesky(2, eta).log_prob(chol), ss.beta.logpdf((r + 1) / 2, eta, eta) - np.log(2))


@pytest.mark.parametrize("eta", [1.0, 2.5])
def test_lkj_cholesky_dim3_normalizes(eta):
    # Pull the density back through the corr_cholesky bijection and integrate it over the three
    # unconstrained coordinates (trapezoid rule, spectrally accurate for this smooth, fast-decaying
    # integrand): checks the normalizer and the Jacobian together.
    grid, step = np.linspace(-12.0, 12.0, 97, retstep=True)
    u = jnp.stack(jnp.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)

    @jax.jit
    def total(u):
        log_density = D.lkj_cholesky(3, eta).log_prob(C.corr_cholesky.forward(u))
        return jnp.sum(jnp.exp(log_density + C.corr_cholesky.log_abs_det_jacobian(u))) * step**3

    _close(total(u), 1.0, rtol=1e-9)


def test_lkj_cholesky_samples():
    d, eta = 4, np.array([0.8, 3.0])
    dist = D.lkj_cholesky(d, eta)
    assert dist.batch_shape == (2,) and dist.event_shape == (4, 4)
    chol = jax.jit(dist.sample, static_argnums=1)(jax.random.key(3), (N_DRAWS,))
    assert chol.shape == (N_DRAWS, 2, 4, 4)
    assert bool(jnp.all(C.corr_cholesky.check(chol)))
    corr = np.asarray(chol @ jnp.swapaxes(chol, -1, -2))
    rows, cols = np.tril_indices(d, -1)
    # Each off-diagonal correlation of LKJ(eta) in dim d is 2 * beta(b, b) - 1, b = eta - 1 + d / 2.
    b = eta - 1 + d / 2
    _assert_moments(corr[..., rows, cols], 0.0, (1 / (2 * b + 1))[:, None])
    with pytest.raises(ValueError, match="dim >= 2"):
        D.lkj_cholesky(1)


# ---------------------------------------------------------------- sampling


# (distribution, exact mean and variance from scipy's `stats`), batch shape (2, 3).
MOMENT_CASES = {
    "normal": (D.normal(REAL_ROW, COL), ss.norm(REAL_ROW, COL)),
    "half_normal": (D.half_normal(COL * ROW), ss.halfnorm(scale=COL * ROW)),
    "lognormal": (D.lognormal(REAL_ROW / 4, COL / 4), ss.lognorm(COL / 4, scale=np.exp(REAL_ROW / 4))),
    "student_t": (D.student_t(ROW + 8, REAL_ROW, COL), ss.t(ROW + 8, REAL_ROW, COL)),
    "laplace": (D.laplace(REAL_ROW, COL), ss.laplace(REAL_ROW, COL)),
    "uniform": (D.uniform(REAL_ROW, REAL_ROW + COL), ss.uniform(REAL_ROW, COL + 0 * REAL_ROW)),
    "exponential": (D.exponential(COL * ROW), ss.expon(scale=1 / (COL * ROW))),
    "gamma": (D.gamma(ROW, COL), ss.gamma(ROW, scale=1 / COL)),
    "inverse_gamma": (D.inverse_gamma(ROW + 4, COL), ss.invgamma(ROW + 4, scale=COL)),
    "beta": (D.beta(ROW, COL), ss.beta(ROW, COL)),
    "bernoulli": (D.bernoulli(UNIT_ROW + 0 * COL), ss.bernoulli(UNIT_ROW + 0 * COL)),
    "bernoulli_logits": (D.bernoulli(logits=REAL_ROW * COL), ss.bernoulli(sp.expit(REAL_ROW * COL))),
    "binomial": (D.binomial(np.array([[3], [10]]), UNIT_ROW), ss.binom(np.array([[3], [10]]), UNIT_ROW)),
    "binomial_logits": (D.binomial(np.array([[3], [10]]), logits=REAL_ROW),
                        ss.binom(np.array([[3], [10]]), sp.expit(REAL_ROW))),
    "poisson": (D.poisson(COL * ROW), ss.poisson(COL * ROW)),
    "geometric": (D.geometric(UNIT_ROW + 0 * COL + 0.05), ss.geom(UNIT_ROW + 0 * COL + 0.05, loc=-1)),
    "negative_binomial": (D.negative_binomial(COL, UNIT_ROW + 0.05), ss.nbinom(COL, UNIT_ROW + 0.05)),
    "negative_binomial_2": (D.negative_binomial_2(ROW, COL), ss.nbinom(COL, COL / (ROW + COL))),
}


def _assert_moments(x, mean, var):
    """Sample mean and variance within 5 standard errors of the exact ones."""
    x = np.asarray(x, dtype=float)
    n = x.shape[0]
    se_mean = np.sqrt(var / n)
    assert np.all(np.abs(x.mean(0) - mean) < 5 * se_mean), (x.mean(0), mean)
    se_var = np.std((x - x.mean(0)) ** 2, axis=0) / np.sqrt(n)
    assert np.all(np.abs(x.var(0) - var) < 5 * se_var + 1e-12), (x.var(0), var)


@pytest.mark.parametrize("case", sorted(MOMENT_CASES))
def test_exact_and_sample_moments(case):
    dist, frozen = MOMENT_CASES[case]
    mean, var = (np.broadcast_to(m, (2, 3)) for m in frozen.stats("mv"))
    _close(dist.mean, mean)
    _close(dist.variance, var)
    x = dist.sample(jax.random.key(7), (N_DRAWS,))
    assert x.shape == (N_DRAWS, 2, 3)
    assert bool(jnp.all(dist.support.check(x)))
    _assert_moments(x, mean, var)


def half_t_ppf(q: float) -> np.ndarray:
    """Quantile of |T| for T ~ t(ROW, 0, COL): P(|T| < x) = 2 F_T(x) - 1."""
    return ss.t(ROW, 0.0, COL).ppf((1 + q) / 2)


@pytest.mark.parametrize("case", ["cauchy", "half_cauchy", "student_t", "half_student_t"])
def test_heavy_tailed_samples_match_cdf(case):
    dist = SCALAR_CASES[case][0]
    ppf = {"cauchy": ss.cauchy(REAL_ROW, COL).ppf, "half_cauchy": ss.halfcauchy(scale=COL * ROW).ppf,
           "student_t": ss.t(ROW, REAL_ROW, COL).ppf, "half_student_t": half_t_ppf}[case]
    x = dist.sample(jax.random.key(11), (N_DRAWS,))
    assert x.shape == (N_DRAWS, 2, 3)
    assert bool(jnp.all(dist.support.check(x)))
    # The fraction of draws below each quartile is binomial(N, q).
    for q in (0.25, 0.5, 0.75):
        below = np.mean(x < ppf(q), axis=0)
        assert np.all(np.abs(below - q) < 5 * np.sqrt(q * (1 - q) / N_DRAWS))


def test_moments_undefined():
    assert np.isnan(D.student_t(1.0).mean)
    assert D.student_t(2.0).variance == np.inf
    assert np.isnan(D.student_t(0.5).variance)
    assert D.inverse_gamma(1.0, 1.0).mean == np.inf
    with pytest.raises(NotImplementedError):
        _ = D.cauchy(0.0, 1.0).mean


def test_categorical_samples():
    probs = np.array([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]])
    x = np.asarray(D.categorical(probs).sample(jax.random.key(5), (N_DRAWS,)))
    assert x.shape == (N_DRAWS, 2) and np.issubdtype(x.dtype, np.integer)
    freq = np.stack([(x == k).mean(0) for k in range(3)], -1)
    assert np.all(np.abs(freq - probs) < 5 * np.sqrt(probs * (1 - probs) / N_DRAWS))


def test_dirichlet_samples():
    alpha = np.array([[0.5, 1.0, 3.0], [2.0, 2.0, 7.0]])
    dist = D.dirichlet(alpha)
    x = dist.sample(jax.random.key(2), (N_DRAWS,))
    assert x.shape == (N_DRAWS, 2, 3)
    assert bool(jnp.all(C.simplex.check(x)))
    frozen = [ss.dirichlet(a) for a in alpha]
    _close(dist.mean, np.stack([f.mean() for f in frozen]))
    _close(dist.variance, np.stack([f.var() for f in frozen]))
    _assert_moments(x, dist.mean, dist.variance)


def test_multivariate_normal_samples():
    rng = np.random.default_rng(4)
    locs = rng.normal(size=(2, 3))
    covs = np.stack([_spd(rng, 3), _spd(rng, 3)])
    for dist in (D.multivariate_normal(locs, covs),
                 D.multivariate_normal(locs, scale_tril=np.linalg.cholesky(covs))):
        x = dist.sample(jax.random.key(9), (N_DRAWS,))
        assert x.shape == (N_DRAWS, 2, 3)
        _assert_moments(x, locs, np.diagonal(covs, axis1=-2, axis2=-1))
        centred = np.asarray(x) - locs
        cov01 = np.mean(centred[..., 0] * centred[..., 1], 0)
        se = np.std(centred[..., 0] * centred[..., 1], 0) / np.sqrt(N_DRAWS)
        assert np.all(np.abs(cov01 - covs[:, 0, 1]) < 5 * se)


def test_gamma_samples_are_reparameterized():
    # jax.random.gamma differentiates implicitly (beta and dirichlet are built on it), so the
    # pathwise estimate of d/da E[x] for gamma(a, rate=2) must be close to 1/2.
    assert D.gamma(1.5, 2.0).reparameterized and D.beta(1.0, 1.0).reparameterized
    grad = jax.grad(lambda a: jnp.mean(D.gamma(a, 2.0).sample(jax.random.key(1), (N_DRAWS,))))(1.5)
    assert abs(float(grad) - 0.5) < 0.03


# ---------------------------------------------------------------- enumeration


@pytest.mark.parametrize("dist, n", [
    (D.bernoulli(UNIT_ROW), 2),
    (D.bernoulli_logit(REAL_ROW), 2),
    (D.categorical(np.array([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3], [1.0, 0.0, 0.0]])), 3),
    (D.binomial(np.array([2, 5, 4]), UNIT_ROW), 6),
    (D.binomial(4, logits=REAL_ROW), 5),
])
def test_enumerate_support(dist, n):
    assert dist.enumerable and not dist.reparameterized
    values = dist.enumerate_support()
    assert values.shape == (n, 3)
    _close(jnp.sum(jnp.exp(jax.jit(dist.log_prob)(values)), 0), np.ones(3), rtol=1e-12)


def test_enumerate_support_values():
    assert D.bernoulli(0.3).enumerate_support().tolist() == [False, True]
    assert D.categorical(np.ones(3)).enumerate_support().tolist() == [0, 1, 2]
    assert D.binomial(np.array([1, 2]), 0.5).enumerate_support()[:, 0].tolist() == [0, 1, 2]


def test_enumeration_errors():
    with pytest.raises(TypeError, match="no finite support"):
        D.poisson(1.0).enumerate_support()
    with pytest.raises(ValueError, match="concrete total_count"):
        jax.jit(lambda n: D.binomial(n, 0.5).enumerate_support())(3)


# ---------------------------------------------------------------- signature registry


def _example(spec):
    """A valid argument for a parameter spec (rank-1 values have 3 components)."""
    if spec.kind == "int":
        return 3
    if spec.event_rank == 2:
        return np.diag([1.0, 2.0, 0.5])
    scalar = {"real": -0.3, "positive": 1.7, "unit": 0.4}
    vector = {"vector": [0.1, -0.2, 0.3], "simplex": [0.2, 0.3, 0.5], "positive": [1.0, 2.0, 3.0]}
    return vector[spec.kind] if spec.event_rank == 1 else scalar[spec.kind]


VALUE_DTYPES = {"real": np.floating, "int": np.integer, "bool": np.bool_}
SIGNATURE_CASES = [(name, i) for name, sigs in D.SIGNATURES.items() for i in range(len(sigs))]


def test_registry_lists_every_distribution():
    assert set(D.SIGNATURES) == set(D.DISTRIBUTIONS)
    for name, constructor in D.DISTRIBUTIONS.items():
        assert getattr(D, name) is constructor
        assert all(sig.name == name and sig.constructor is constructor for sig in D.SIGNATURES[name])


def test_the_checkers_flags_are_the_classes():
    """pplang.stdlib.signatures names each distribution's gradient-strategy flags so that checking a
    file does not import JAX; they must be the class attributes the code generator and adev use."""
    from pplang.stdlib.signatures import FLAGS

    assert set(FLAGS) == set(D.DISTRIBUTIONS)
    for name, constructor in D.DISTRIBUTIONS.items():
        for flag in ("reparameterized", "enumerable", "has_mvd"):
            assert (flag in FLAGS[name]) == bool(getattr(constructor, flag)), (name, flag)
            assert all(getattr(sig, flag) == bool(getattr(constructor, flag)) for sig in D.SIGNATURES[name])


@pytest.mark.parametrize("name, i", SIGNATURE_CASES)
def test_signature_matches_constructor(name, i):
    sig = D.SIGNATURES[name][i]
    parameters = inspect.signature(sig.constructor).parameters
    for spec in sig.params:
        param = parameters[spec.name]
        assert (param.kind is inspect.Parameter.KEYWORD_ONLY) == spec.keyword_only
        if spec.default is not None:
            assert param.default == spec.default
    # Parameters that are not in the signature must be optional.
    missing = set(parameters) - {spec.name for spec in sig.params}
    assert all(parameters[p].default is not inspect.Parameter.empty for p in missing)

    args = [_example(s) for s in sig.params if not s.keyword_only]
    kwargs = {s.name: _example(s) for s in sig.params if s.keyword_only}
    dist = sig.constructor(*args, **kwargs)
    assert dist.value_dtype == sig.value_kind
    assert dist.support.name == sig.support
    assert len(dist.event_shape) == sig.event_rank
    if name == "flat":
        return
    # Shapes and dtypes only (tracing, no compilation); sampled values are checked above.
    x = jax.eval_shape(lambda key: dist.sample(key, (2,)), jax.random.key(0))
    assert x.shape == (2,) + dist.batch_shape + dist.event_shape
    assert np.issubdtype(x.dtype, VALUE_DTYPES[sig.value_kind])
    assert jax.eval_shape(dist.log_prob, x).shape == (2,) + dist.batch_shape


def test_describe():
    assert D.describe("normal") == "normal(loc: real, scale: positive)"
    assert D.describe("bernoulli") == "bernoulli(probs: unit)\nbernoulli(*, logits: real)"
    assert D.describe("student_t") == "student_t(df: positive, loc: real = 0, scale: positive = 1)"
    assert D.describe("dirichlet") == "dirichlet(concentration: positive vector)"
    assert D.describe("multivariate_normal").splitlines()[1] == (
        "multivariate_normal(loc: vector, *, scale_tril: matrix)")
