"""Measure-valued derivatives, implicit reparameterization and enumeration of the distributions.

Every gradient estimate is a Monte Carlo mean compared with an exact derivative (closed forms,
or jax.grad of an exact or truncated sum) within 4.5 standard errors of that mean."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats
from pplang.stdlib import distributions as D

N = 200_000  # draws per MVD check
N_PATH = 50_000  # draws per pathwise check (implicit gamma gradients are slow on CPU)
TOL_SE = 4.5

CONTINUOUS_F = {"square": lambda x: x**2, "sin": jnp.sin, "exp_neg": lambda x: jnp.exp(-x)}
DISCRETE_F = {"shifted_square": lambda x: (x - 1.0) ** 2, "cos": jnp.cos}


def _as_float(x):
    return jnp.asarray(x).astype(jnp.float64)


def _mvd_terms(make, params, fs, seed=0, n=N):
    """Per-draw c_k (f(plus_k) - f(minus_k)) for each f of `fs` (one compilation for all):
    a list of arrays of shape (n,) + batch_shape + (P,)."""
    dist = make(*params)

    def one(key):
        key_x, key_mvd = jax.random.split(key)
        value = dist.sample(key_x)
        c, plus, minus = dist.mvd(key_mvd, value)
        return [c * jnp.moveaxis(f(_as_float(plus)) - f(_as_float(minus)), 0, -1) for f in fs]

    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(seed), n))


def _deviation_in_se(terms, exact):
    """|mean - exact| in standard errors of the mean, elementwise. Exact estimators (bernoulli's
    has no noise) get a floor of 1e-12 on the standard error, room for rounding only."""
    terms = np.asarray(terms)
    se = np.maximum(terms.std(0, ddof=1) / np.sqrt(terms.shape[0]), 1e-12)
    return np.abs(terms.mean(0) - np.asarray(exact)) / se


def _exact_grad(expectation, params):
    """d/dtheta_k E[f] per batch element: each element's expectation depends on its own parameters
    only, so the gradient of the batch sum is the elementwise derivative; stacked to batch + (P,)."""
    grads = jax.grad(lambda *ps: jnp.sum(expectation(*ps)), argnums=tuple(range(len(params))))(*params)
    return jnp.stack(grads, axis=-1)


# ---------------------------------------------------------------- exact expectations


def _normal_expect(name):
    forms = {
        "square": lambda m, s: m**2 + s**2,
        "sin": lambda m, s: jnp.sin(m) * jnp.exp(-(s**2) / 2),
        "exp_neg": lambda m, s: jnp.exp(-m + s**2 / 2),
    }
    return forms[name]


def _exponential_expect(name):
    forms = {
        "square": lambda r: 2.0 / r**2,
        "sin": lambda r: 1.0 / (r + 1.0 / r),  # E sin(x) = 1 / (1 + r^2) * r
        "exp_neg": lambda r: r / (r + 1.0),
    }
    return forms[name]


def _truncated(pmf, f, top):
    """E[f] as a sum over 0..top of a pmf with a batch axis last."""
    xs = jnp.arange(top + 1, dtype=jnp.float64)[:, None]
    return lambda *ps: jnp.sum(pmf(xs, *ps) * f(xs), axis=0)


DISCRETE_CASES = {
    # name: (constructor, params, exact E[f] as a function of the params)
    "poisson": (D.poisson, (jnp.array([0.5, 2.0, 4.5]),),
                lambda f: _truncated(lambda x, r: jnp.exp(stats.poisson.logpmf(x, r)), f, 80)),
    "geometric": (D.geometric, (jnp.array([0.2, 0.5, 0.85]),),
                  lambda f: _truncated(lambda x, p: p * (1 - p) ** x, f, 400)),
    "binomial": (lambda p: D.binomial(jnp.array([1.0, 4.0, 7.0]), p), (jnp.array([0.3, 0.6, 0.9]),),
                 lambda f: _truncated(lambda x, p: jnp.exp(stats.binom.logpmf(x, jnp.array([1.0, 4.0, 7.0]), p)),
                                      f, 7)),
    "bernoulli": (D.bernoulli, (jnp.array([0.1, 0.5, 0.75]),),
                  lambda f: lambda p: p * f(1.0) + (1 - p) * f(0.0)),
}


# ---------------------------------------------------------------- unbiasedness


def test_normal_mvd_is_unbiased():
    params = (jnp.array([-0.5, 0.3, 1.2]), jnp.array([0.6, 1.0, 2.0]))
    names = sorted(CONTINUOUS_F)
    for name, terms in zip(names, _mvd_terms(D.normal, params, [CONTINUOUS_F[n] for n in names], seed=1)):
        assert terms.shape == (N, 3, 2)
        exact = _exact_grad(_normal_expect(name), params)
        assert np.all(_deviation_in_se(terms, exact) < TOL_SE), name


def test_exponential_mvd_is_unbiased():
    params = (jnp.array([0.5, 1.0, 3.0]),)
    names = sorted(CONTINUOUS_F)
    for name, terms in zip(names, _mvd_terms(D.exponential, params, [CONTINUOUS_F[n] for n in names], seed=2)):
        exact = _exact_grad(_exponential_expect(name), params)
        assert np.all(_deviation_in_se(terms, exact) < TOL_SE), name


@pytest.mark.parametrize("name", sorted(DISCRETE_CASES))
def test_discrete_mvd_is_unbiased(name):
    make, params, expect = DISCRETE_CASES[name]
    fs = [DISCRETE_F[n] for n in sorted(DISCRETE_F)]
    for f, terms in zip(fs, _mvd_terms(make, params, fs, seed=3)):
        assert terms.shape == (N, 3, 1)
        exact = _exact_grad(expect(f), params)
        assert np.all(_deviation_in_se(terms, exact) < TOL_SE)


def test_categorical_mvd_is_unbiased():
    # Gradient of E[f] = sum_j w_j f(j) / sum(w) at normalized w: what categorical(probs=w) computes.
    weights = jnp.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]])
    fs = [DISCRETE_F[n] for n in sorted(DISCRETE_F)]
    for f, terms in zip(fs, _mvd_terms(D.categorical, (weights,), fs, seed=4)):
        assert terms.shape == (N, 3, 4)
        exact = jax.grad(lambda w: jnp.sum(jnp.sum(w * f(jnp.arange(4.0)), -1) / jnp.sum(w, -1)))(weights)  # noqa: B023
        assert np.all(_deviation_in_se(terms, exact) < TOL_SE)


def test_the_check_can_fail():
    # The same estimator against wrong derivatives: off by 0.05, and the geometric decomposition
    # for trials (1, 2, ...) instead of failures (x- without the + 1).
    f = DISCRETE_F["shifted_square"]
    make, params, expect = DISCRETE_CASES["poisson"]
    (terms,) = _mvd_terms(make, params, [f], seed=3)
    exact = _exact_grad(expect(f), params)
    assert np.all(_deviation_in_se(terms, exact) < TOL_SE)
    assert np.all(_deviation_in_se(terms, exact + 0.05) > TOL_SE)

    dist = D.geometric(jnp.array([0.2, 0.5, 0.85]))

    def trials_convention(key):
        key_x, key_mvd = jax.random.split(key)
        value = dist.sample(key_x)
        c, plus, _ = dist.mvd(key_mvd, value)
        wrong_minus = value + dist.sample(key_mvd)
        return c[..., 0] * (f(_as_float(plus[0])) - f(_as_float(wrong_minus)))

    wrong = jax.jit(jax.vmap(trials_convention))(jax.random.split(jax.random.key(5), N))
    exact = _exact_grad(DISCRETE_CASES["geometric"][2](f), (dist.probs,))[..., 0]
    assert np.all(_deviation_in_se(wrong, exact) > TOL_SE)


# ---------------------------------------------------------------- shapes and parameters


@pytest.mark.parametrize("make, p, dtype", [
    (lambda b: D.normal(jnp.zeros(b), jnp.ones(b)), 2, jnp.float64),
    (lambda b: D.exponential(jnp.ones(b)), 1, jnp.float64),
    (lambda b: D.bernoulli(jnp.full(b, 0.3)), 1, jnp.bool_),
    (lambda b: D.bernoulli_logit(jnp.zeros(b)), 1, jnp.bool_),
    (lambda b: D.binomial(3, jnp.full(b, 0.3)), 1, jnp.int64),
    (lambda b: D.categorical(jnp.ones(b + (5,))), 5, jnp.int64),
    (lambda b: D.categorical_logit(jnp.zeros(b + (5,))), 5, jnp.int64),
    (lambda b: D.poisson(jnp.ones(b)), 1, jnp.int64),
    (lambda b: D.geometric(jnp.full(b, 0.4)), 1, jnp.int64),
])
@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_mvd_shapes(make, p, dtype, batch):
    dist = make(batch)
    assert dist.has_mvd
    value = dist.sample(jax.random.key(0))
    assert dist.mvd_params().shape == batch + (p,)
    c, plus, minus = dist.mvd(jax.random.key(1), value)
    assert c.shape == batch + (p,)
    assert plus.shape == minus.shape == (p,) + batch
    assert plus.dtype == minus.dtype == value.dtype == dtype


def test_without_mvd():
    assert not D.Distribution.has_mvd and not D.gamma(1.0, 1.0).has_mvd
    with pytest.raises(TypeError, match="no measure-valued derivative"):
        D.gamma(1.0, 1.0).mvd(jax.random.key(0), 1.0)
    with pytest.raises(TypeError, match="no measure-valued derivative"):
        D.lognormal(0.0, 1.0).mvd_params()


def test_mvd_params_follow_the_constructor():
    _close = np.testing.assert_allclose
    _close(D.normal(1.0, 2.0).mvd_params(), [1.0, 2.0])
    _close(D.bernoulli(logits=jnp.log(3.0)).mvd_params(), [0.75])
    _close(D.categorical(jnp.array([1.0, 3.0, 0.0])).mvd_params(), [0.25, 0.75, 0.0])
    _close(D.categorical(logits=jnp.log(jnp.array([1.0, 3.0]))).mvd_params(), [0.25, 0.75])
    # Zero weights keep finite gradients.
    jac = jax.jacobian(lambda w: D.categorical(w).mvd_params())(jnp.array([1.0, 3.0, 0.0]))
    assert np.all(np.isfinite(jac))


@pytest.mark.parametrize("make, n_logits", [
    (D.bernoulli_logit, None),
    (lambda logits: D.bernoulli(logits=logits), None),
    (D.categorical_logit, 3),
])
def test_chain_rule_through_mvd_params_reaches_logits(make, n_logits):
    # Surrogate sum_k stop_gradient(c_k (f(plus_k) - f(minus_k))) * theta_k(logits): its gradient
    # per draw, averaged, must match the exact gradient of E[f] w.r.t. the logits.
    f = DISCRETE_F["shifted_square"]
    logits = jnp.array([-1.0, 0.2, 1.5]) if n_logits is None else jnp.array([[0.3, -1.0, 0.8], [0.0, 0.0, 2.0]])
    batch = logits.shape if n_logits is None else logits.shape[:-1]

    def per_draw(key):
        key_x, key_mvd = jax.random.split(key)
        dist = make(logits)
        value = dist.sample(key_x)
        c, plus, minus = dist.mvd(key_mvd, value)
        weight = jax.lax.stop_gradient(c * jnp.moveaxis(f(_as_float(plus)) - f(_as_float(minus)), 0, -1))
        return jax.grad(lambda lg: jnp.sum(weight * make(lg).mvd_params()))(logits)

    grads = jax.jit(jax.vmap(per_draw))(jax.random.split(jax.random.key(6), N))
    if n_logits is None:
        exact_expect = lambda lg: jnp.sum(jax.nn.sigmoid(lg) * f(1.0) + jax.nn.sigmoid(-lg) * f(0.0))  # noqa: E731
    else:
        exact_expect = lambda lg: jnp.sum(jax.nn.softmax(lg, -1) * f(jnp.arange(3.0)))  # noqa: E731
    exact = jax.grad(exact_expect)(logits)
    assert grads.shape == (N,) + batch + (() if n_logits is None else (n_logits,))
    assert np.all(_deviation_in_se(grads, exact) < TOL_SE)


# ---------------------------------------------------------------- implicit reparameterization


def _pathwise(make, params, f, seed, vector=False):
    """Per-draw d/dtheta_k f(sample(theta)) for each parameter k, by forward mode with unit tangents
    (batch elements depend only on their own parameters; with `vector`, parameters are one
    distribution's vectors and get one tangent per component). Shape (tangents, N_PATH) + the shape
    of f's output; the tangents are vmapped, so the draws are made once."""
    key = jax.random.key(seed)
    tangents = []
    for k, p in enumerate(params):
        units = list(jnp.eye(p.shape[-1])) if vector else [jnp.ones_like(p)]
        for unit in units:
            tangents.append(tuple(unit if j == k else jnp.zeros_like(q) for j, q in enumerate(params)))
    stacked = tuple(jnp.stack([t[j] for t in tangents]) for j in range(len(params)))

    def along(*tangent):
        return jax.jvp(lambda *ps: f(make(*ps).sample(key, (N_PATH,))), params, tangent)[1]

    return jax.jit(jax.vmap(along))(*stacked)


def _moments(x):
    return jnp.stack([x, x**2])


def test_gamma_pathwise_gradient():
    params = (jnp.array([0.4, 1.5, 5.0]), jnp.array([0.5, 2.0, 1.0]))
    grads = _pathwise(D.gamma, params, _moments, seed=7)  # (2 params, 2 moments, N_PATH, 3)
    for m, mean in enumerate([lambda a, r: a / r, lambda a, r: a * (a + 1) / r**2]):
        exact = _exact_grad(mean, params)
        for k in range(2):
            assert np.all(_deviation_in_se(grads[k, m], exact[..., k]) < TOL_SE), (m, k)


def test_beta_pathwise_gradient():
    params = (jnp.array([0.5, 2.0, 3.0]), jnp.array([0.7, 2.0, 0.4]))
    grads = _pathwise(D.beta, params, _moments, seed=8)
    means = [lambda a, b: a / (a + b), lambda a, b: a * (a + 1) / ((a + b) * (a + b + 1))]
    for m, mean in enumerate(means):
        exact = _exact_grad(mean, params)
        for k in range(2):
            assert np.all(_deviation_in_se(grads[k, m], exact[..., k]) < TOL_SE), (m, k)


def test_dirichlet_pathwise_gradient():
    alpha = jnp.array([0.6, 1.5, 4.0])
    grads = _pathwise(D.dirichlet, (alpha,), lambda x: x**2, seed=9, vector=True)
    assert grads.shape == (3, N_PATH, 3)  # d/dalpha_j of x_i^2: (j, draw, i)
    for i in range(3):
        exact = jax.grad(lambda a: a[i] * (a[i] + 1) / (jnp.sum(a) * (jnp.sum(a) + 1)))(alpha)  # noqa: B023
        assert np.all(_deviation_in_se(grads[:, :, i].T, exact) < TOL_SE), i


# ---------------------------------------------------------------- enumeration


def test_enumerate_support_batched():
    np.testing.assert_array_equal(D.bernoulli(jnp.full(3, 0.2)).enumerate_support(),
                                  np.array([[False] * 3, [True] * 3]))
    values = D.categorical(jnp.ones((2, 3, 4))).enumerate_support()
    assert values.shape == (4, 2, 3)
    np.testing.assert_array_equal(values, np.broadcast_to(np.arange(4)[:, None, None], (4, 2, 3)))
    values = D.binomial(jnp.array([2, 5, 3]), jnp.full(3, 0.5)).enumerate_support()
    np.testing.assert_array_equal(values, np.broadcast_to(np.arange(6)[:, None], (6, 3)))
    with pytest.raises(ValueError, match="concrete total_count"):
        jax.jit(lambda n: D.binomial(n, jnp.full(3, 0.5)).enumerate_support())(jnp.array([2, 5, 3]))
