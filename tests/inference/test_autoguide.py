"""Automatic guides against exact references.

Each family is set to known parameters (the exact posterior of a conjugate model where the family
contains it) and checked: draws have the right moments within standard errors, the log density of a
trace equals the closed form (normal density of the unconstrained coordinates minus the
log-Jacobian of each support's bijection; the joint normal density for the chain-rule families),
importance sampling with the exact posterior as proposal has constant weights, and the pathwise
ELBO gradient is exactly zero at the exact posterior (every draw has the same ELBO integrand
log p(y) there) and nonzero elsewhere. Seeds are fixed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import multivariate_normal
from pplang.stdlib.constraints import CONSTRAINTS
from scipy import stats

import pplang as pp
from pplang.inference.autoguide import KINDS, auto_guide, default_rank, describe

NUM = 20_000
Z_TOL = 5.0  # standard errors

# ---------------------------------------------------------------- normal mean, known variance

M0, S0, SIGMA = 1.0, 2.0, 1.5
Y = [2.1, 3.4, 1.7, 2.9, 4.0]
PREC = 1 / S0**2 + len(Y) / SIGMA**2
POST_MEAN = float((M0 / S0**2 + sum(Y) / SIGMA**2) / PREC)
POST_SD = float(PREC**-0.5)
LOG_Z = float(stats.multivariate_normal.logpdf(
    Y, np.full(len(Y), M0), SIGMA**2 * np.eye(len(Y)) + S0**2 * np.ones((len(Y), len(Y)))))

# ---------------------------------------------------------------- a correlated 2-D posterior

TAU = 0.5  # y ~ normal(a + b, TAU) with a, b ~ normal(0, 1): a and b are negatively correlated
Y2 = 1.3
P2 = np.eye(2) + np.ones((2, 2)) / TAU**2
COV2 = np.linalg.inv(P2)
MEAN2 = COV2 @ (np.ones(2) * Y2 / TAU**2)
LOG_Z2 = float(stats.norm.logpdf(Y2, 0.0, np.sqrt(2 + TAU**2)))

SOURCE = f"""
model nn(N: int):
    mu ~ normal({M0}, {S0})
    for i in range(N):
        y[i] ~ normal(mu, {SIGMA})

model pair():
    a ~ normal(0.0, 1.0)
    b ~ normal(0.0, 1.0)
    y ~ normal(a + b, {TAU})

model mixed():
    mu ~ normal(0.0, 1.0)
    v ~ normal(zeros(3), 1.0)
    s ~ gamma(2.0, 1.0)
    w ~ dirichlet(ones(3))
    p ~ uniform(-1.0, 3.0)

model bounded():
    p ~ uniform(-1.0, 3.0)

model positive_only():
    s ~ half_normal(2.0)

model shaped(K: int):
    v ~ normal(zeros(K), 1.0)
    y ~ normal(sum(v), 1.0)

model coin_flip():
    z ~ bernoulli(0.3)
    y ~ normal(z * 1.0, 1.0)

model dependent_bounds():
    h ~ gamma(2.0, 1.0)
    x ~ uniform(0.0, h)
"""


@pytest.fixture(scope="module")
def mod() -> pp.Module:
    return pp.loads(SOURCE, file="auto.ppl")


def unconstrained(values: dict, guide) -> tuple[np.ndarray, float]:
    """The concatenated unconstrained coordinates of a trace (in the guide's layout) and the sum of
    the log-Jacobians of the bijections at them."""
    us, ladj = [], 0.0
    for b in guide.family.blocks:
        u = b.support.inverse(jnp.asarray(values[b.address]))
        us.append(np.ravel(u))
        ladj += float(jnp.sum(b.support.log_abs_det_jacobian(u)))
    return np.concatenate(us), ladj


def se_check(estimate: np.ndarray, truth: np.ndarray, se: np.ndarray) -> None:
    assert np.all(np.abs(estimate - truth) < Z_TOL * se), (estimate, truth, se)


# ---------------------------------------------------------------- mean field


def test_mean_field_at_the_exact_posterior(mod: pp.Module) -> None:
    guide = auto_guide(mod.nn, "mean_field", {"N": len(Y), "y": Y})
    assert isinstance(guide, pp.Model) and guide.kind == "guide" and list(guide.sites) == ["mu"]
    assert guide.sites["mu"].reparameterized and guide.sites["mu"].strategy == "reparam"
    assert {a: p.shape for a, p in guide.params.items()} == {"mu_auto_loc": (), "mu_auto_scale": ()}
    params = {"mu_auto_loc": POST_MEAN, "mu_auto_scale": np.log(POST_SD)}  # unconstrained: log of the scale
    assert describe(guide, params)["sites"]["mu"]["scale"] == pytest.approx(POST_SD)
    draws = np.asarray(guide.simulate({"N": len(Y)}, seed=1, num_samples=NUM, params=params)["mu"])
    se_check(draws.mean(), POST_MEAN, POST_SD / np.sqrt(NUM))
    se_check(draws.std(), POST_SD, POST_SD / np.sqrt(2 * NUM))
    for x in (-1.0, POST_MEAN, 4.5):
        lq = guide.log_density({"mu": x}, {"N": len(Y)}, params=params)
        np.testing.assert_allclose(lq, stats.norm.logpdf(x, POST_MEAN, POST_SD), rtol=1e-5)
    post = pp.importance_sampling(mod.nn, {"N": len(Y), "y": Y}, num_samples=2000, proposal=guide,
                                  proposal_params=params)
    assert post.ess > 0.999 * 2000  # the weights p(y, mu) / q(mu) = p(y) are constant
    assert abs(post.log_marginal_likelihood - LOG_Z) < 1e-3


def test_mean_field_positive_and_interval_jacobians(mod: pp.Module) -> None:
    guide = auto_guide(mod.positive_only, "mean_field")
    loc, scale = 0.3, 0.7
    params = {"s_auto_loc": loc, "s_auto_scale": np.log(scale)}
    for x in (0.05, 1.0, 3.7):
        lq = guide.log_density({"s": x}, params=params)
        np.testing.assert_allclose(lq, stats.norm.logpdf(np.log(x), loc, scale) - np.log(x), rtol=1e-5)
    draws = np.asarray(guide.simulate(seed=2, num_samples=NUM, params=params)["s"])
    logs = np.log(draws)
    se_check(logs.mean(), loc, scale / np.sqrt(NUM))
    se_check(logs.std(), scale, scale / np.sqrt(2 * NUM))

    guide = auto_guide(mod.bounded, "mean_field")  # p ~ uniform(-1, 3): x = -1 + 4 sigmoid(u)
    params = {"p_auto_loc": -0.4, "p_auto_scale": np.log(1.3)}
    draws = np.asarray(guide.simulate(seed=3, num_samples=2000, params=params)["p"])
    assert np.all((draws > -1) & (draws < 3))
    for x in (-0.9, 0.5, 2.2):
        t = (x + 1) / 4
        u = np.log(t) - np.log1p(-t)
        lq = guide.log_density({"p": x}, params=params)
        np.testing.assert_allclose(lq, stats.norm.logpdf(u, -0.4, 1.3) - np.log(4 * t * (1 - t)), rtol=1e-4)


# ---------------------------------------------------------------- full rank and low rank


def chain_rule_matches_joint(guide, cov_of) -> None:
    """The sum of the per-choice conditional densities equals the joint normal density of the
    concatenated unconstrained coordinates minus the log-Jacobians, for random parameters."""
    key = jax.random.key(7)
    params = {}
    for a, p in guide.params.items():
        key, k = jax.random.split(key)
        params[a] = np.asarray(0.4 * jax.random.normal(k, p.shape))
    d = describe(guide, params)
    cov = cov_of(params)
    np.testing.assert_allclose(d["covariance"], cov, rtol=1e-5, atol=1e-6)
    tr = guide.simulate(seed=11, num_samples=5, params=params)
    for i in range(5):
        values = {a: v[i] for a, v in tr.values.items()}
        u, ladj = unconstrained(values, guide)
        want = float(multivariate_normal.logpdf(u, params["auto_loc"], cov)) - ladj
        np.testing.assert_allclose(guide.log_density(values, params=params), want, rtol=2e-4, atol=2e-4)
        np.testing.assert_allclose(tr.log_density[i], want, rtol=2e-4, atol=2e-4)


def test_full_rank_chain_rule_is_the_joint_normal(mod: pp.Module) -> None:
    guide = auto_guide(mod.mixed, "full_rank")
    assert guide.family.dim == 1 + 3 + 1 + 2 + 1  # the simplex of 3 has 2 free coordinates
    rows, cols = np.tril_indices(guide.family.dim, -1)

    def cov_of(params: dict) -> np.ndarray:
        tril = np.diag(np.exp(params["auto_scale_diag"]))
        tril[rows, cols] = params["auto_scale_lower"]
        return tril @ tril.T

    chain_rule_matches_joint(guide, cov_of)


def test_low_rank_chain_rule_is_the_joint_normal(mod: pp.Module) -> None:
    guide = auto_guide(mod.mixed, "low_rank", rank=2)
    assert guide.params["auto_cov_factor"].shape == (8, 2)
    assert default_rank(8) == 3 and default_rank(1) == 1

    def cov_of(params: dict) -> np.ndarray:
        w = params["auto_cov_factor"]
        return np.diag(np.exp(2 * params["auto_scale"])) + w @ w.T

    chain_rule_matches_joint(guide, cov_of)


def pair_params(kind: str) -> dict:
    """Parameters that make the family exactly the posterior of `pair`."""
    if kind == "full_rank":
        tril = np.linalg.cholesky(COV2)
        return {"auto_loc": MEAN2, "auto_scale_diag": np.log(np.diag(tril)), "auto_scale_lower": tril[1:, 0]}
    t = np.sqrt((COV2[0, 0] + COV2[0, 1] ** 2 / COV2[1, 1]) / 2)  # COV2 = diag + w w^T with w = (t, c / t)
    w = np.array([[t], [COV2[0, 1] / t]])
    diag = np.diag(COV2) - np.square(w[:, 0])
    return {"auto_loc": MEAN2, "auto_scale": 0.5 * np.log(diag), "auto_cov_factor": w}


@pytest.mark.parametrize("kind", ["full_rank", "low_rank"])
def test_joint_families_at_a_correlated_posterior(mod: pp.Module, kind: str) -> None:
    guide = auto_guide(mod.pair, kind, {"y": Y2})
    params = pair_params(kind)
    np.testing.assert_allclose(describe(guide, params)["covariance"], COV2, rtol=1e-5)
    tr = guide.simulate(seed=4, num_samples=NUM, params=params)
    x = np.stack([np.asarray(tr["a"]), np.asarray(tr["b"])], axis=1)
    se_check(x.mean(0), MEAN2, np.sqrt(np.diag(COV2) / NUM))
    emp = np.cov(x.T)
    se = np.sqrt((np.outer(np.diag(COV2), np.diag(COV2)) + COV2**2) / NUM)
    se_check(emp, COV2, se)
    np.testing.assert_allclose(tr.log_density[:50], stats.multivariate_normal.logpdf(x[:50], MEAN2, COV2), rtol=1e-4)
    post = pp.importance_sampling(mod.pair, {"y": Y2}, num_samples=2000, proposal=guide, proposal_params=params)
    assert post.ess > 0.999 * 2000
    assert abs(post.log_marginal_likelihood - LOG_Z2) < 1e-3


# ---------------------------------------------------------------- delta


def test_delta_is_map_in_unconstrained_space(mod: pp.Module) -> None:
    guide = auto_guide(mod.mixed, "delta", init_loc={"s": 2.5, "p": 0.0})
    tr = guide.simulate(seed=5, num_samples=3)
    np.testing.assert_allclose(tr["s"], 2.5, rtol=1e-6)
    np.testing.assert_allclose(tr["p"], 0.0, atol=1e-6)
    assert np.all(tr["w"] == tr["w"][0]) and np.all(tr["mu"] == tr["mu"][0])
    values = {a: v[0] for a, v in tr.values.items()}
    _, ladj = unconstrained(values, guide)
    np.testing.assert_allclose(tr.log_density, -ladj, rtol=1e-5)  # log q = -log|J| at the point
    np.testing.assert_allclose(guide.log_density(values), -ladj, rtol=1e-5)
    assert guide.log_density({**values, "s": 2.6}) == -np.inf
    d = describe(guide)
    np.testing.assert_allclose(d["sites"]["s"]["value"], 2.5, rtol=1e-6)
    assert d["covariance"] is None and np.all(d["sites"]["v"]["scale"] == 0)


# ---------------------------------------------------------------- gradients


def elbo_grad(model: pp.Model, guide: pp.Model, data: dict, params: dict, n: int = 8,
              stick: bool = False) -> dict:
    """Pathwise gradient of a Monte Carlo ELBO with `n` draws, as an objective would compute it.
    With `stick`, log q is evaluated at stopped parameters ("sticking the landing"): the score
    term, whose expectation is zero, is left out, so at the exact posterior every draw's gradient
    is zero."""
    bound = guide.bind({a: data[a] for a, _ in guide.fn.args})
    run = guide.runner(bound, frozenset(), frozenset(), frozenset(params))
    score = guide.runner(bound, frozenset(guide.sites), frozenset(), frozenset(params), complete=True)
    log_p = model.log_density_fn(data)
    keys = jax.random.split(jax.random.key(9), n)

    def elbo(p: dict) -> jax.Array:
        def one(k: jax.Array) -> jax.Array:
            _, tr, s = run(k, {}, p, bound.arrays)
            log_q = score(k, tr, jax.lax.stop_gradient(p), bound.arrays)[2].lp if stick else s.lp
            return log_p(tr) - log_q

        return jnp.mean(jax.vmap(one)(keys))

    return jax.grad(elbo)({a: jnp.asarray(v, jnp.float32) for a, v in params.items()})


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_flow_through_the_draws(mod: pp.Module, kind: str) -> None:
    guide = auto_guide(mod.mixed, kind)
    grads = elbo_grad(mod.mixed, guide, {}, guide.init_params)
    for a, g in grads.items():
        g = np.asarray(g)
        assert np.all(np.isfinite(g)), a
        assert g.size == 0 or np.any(g != 0), a


def test_gradient_vanishes_at_the_exact_posterior(mod: pp.Module) -> None:
    data = {"N": len(Y), "y": Y}
    guide = auto_guide(mod.nn, "mean_field", data)
    exact = {"mu_auto_loc": POST_MEAN, "mu_auto_scale": np.log(POST_SD)}
    for a, g in elbo_grad(mod.nn, guide, data, exact, stick=True).items():
        assert abs(float(g)) < 1e-4, a
    off = {"mu_auto_loc": POST_MEAN + 0.5, "mu_auto_scale": np.log(POST_SD)}
    assert float(elbo_grad(mod.nn, guide, data, off, stick=True)["mu_auto_loc"]) < -0.1  # pushes loc back
    for kind in ("full_rank", "low_rank"):
        guide = auto_guide(mod.pair, kind, {"y": Y2})
        for a, g in elbo_grad(mod.pair, guide, {"y": Y2}, pair_params(kind), stick=True).items():
            assert np.all(np.abs(np.asarray(g)) < 1e-3), (kind, a)


# ---------------------------------------------------------------- initialisation and errors


def test_initial_values(mod: pp.Module) -> None:
    guide = auto_guide(mod.mixed, "mean_field", init_scale=0.3, init_loc={"s": 2.0, "v": [0.1, 0.2, 0.3]})
    np.testing.assert_allclose(guide.init_params["s_auto_loc"], np.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(guide.init_params["v_auto_loc"], [0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(guide.init_params["s_auto_scale"], np.log(0.3), rtol=1e-6)
    # loc of mu: the median of a few prior draws, near the prior median 0
    assert abs(float(guide.init_params["mu_auto_loc"])) < 1.0
    params = {p.address: p for p in guide.fn.params.values()}
    assert params["w_auto_loc"].shape == (2,) and params["w_auto_scale"].constraint == "positive"
    tr = guide.simulate(seed=0)  # without params: the initial values
    assert tr["v"].shape == (3,) and np.isfinite(tr.log_density)
    full = auto_guide(mod.mixed, "full_rank", init_loc={"s": 2.0})
    np.testing.assert_allclose(describe(full)["sites"]["s"]["loc"], np.log(2.0), rtol=1e-6)
    assert CONSTRAINTS["positive"].forward(full.init_params["auto_scale_diag"][0]) == pytest.approx(0.1)


def test_discrete_latent_is_a_located_error(mod: pp.Module) -> None:
    with pytest.raises(pp.PplError) as e:
        auto_guide(mod.coin_flip, "mean_field", {"y": 0.4})
    text = str(e.value)
    assert "`z`" in text and "discrete" in text and "via enum" in text and "auto.ppl:" in text
    assert "z ~ bernoulli(0.3)" in text


def test_user_errors(mod: pp.Module) -> None:
    with pytest.raises(pp.PplError, match="did you mean `full_rank`"):
        auto_guide(mod.pair, "fullrank", {"y": Y2})
    with pytest.raises(pp.PplError, match="inside its support"):
        auto_guide(mod.positive_only, init_loc={"s": -1.0})
    with pytest.raises(pp.PplError, match="not a latent choice"):
        auto_guide(mod.pair, init_loc={"y": 1.0}, y=Y2)
    with pytest.raises(pp.PplError, match="rank applies to the low_rank guide"):
        auto_guide(mod.pair, "full_rank", {"y": Y2}, rank=1)
    with pytest.raises(pp.PplError, match="rank must be an int from 1 to 2"):
        auto_guide(mod.pair, "low_rank", {"y": Y2}, rank=3)
    with pytest.raises(pp.PplError, match="fixed bounds for `x`"):
        auto_guide(mod.dependent_bounds)
    with pytest.raises(pp.PplError, match="nothing to guide"):
        auto_guide(mod.positive_only, s=1.0)
    guide = auto_guide(mod.shaped, "mean_field", {"K": 3, "y": 0.5})
    assert guide.simulate({"K": 3})["v"].shape == (3,)
    with pytest.raises(pp.PplError, match="built for `v` of shape"):
        guide.simulate({"K": 4})


def test_a_repeated_fit_reuses_its_automatic_guide() -> None:
    """The same model, guide kind and data build the guide once: a second fit starts at once."""
    m = pp.loads("model r(N: int):\n    mu ~ normal(0.0, 1.0)\n    for i in range(N):\n"
                 "        y[i] ~ normal(mu, 1.0)\n", file="r.ppl")["r"]
    data = {"N": 3, "y": [0.1, 0.2, 0.3]}
    first = pp.fit(m, "mean_field", "elbo", data, steps=50, progress=False)
    again = pp.fit(m, "mean_field", "elbo", data, steps=50, progress=False)
    other = pp.fit(m, "mean_field", "elbo", {**data, "y": [1.0, 2.0, 3.0]}, steps=50, progress=False)
    guide = next(g for g in first.problem.roles.values() if g is not m)
    assert guide is next(g for g in again.problem.roles.values() if g is not m)
    assert guide is not next(g for g in other.problem.roles.values() if g is not m)
    np.testing.assert_array_equal(first.values, again.values)  # same seed, same fit
    assert again.info["setup_s"] >= 0.0
