"""Importance sampling against exact posteriors and marginal likelihoods of conjugate models.

Every tolerance is a multiple of a standard error: the reported one for log marginal likelihoods,
and for posterior moments the standard error of the self-normalized estimate,
sqrt(sum_i w_i^2 (x_i - mean)^2) with normalized weights w. Seeds are fixed.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

import pplang as pp

NUM = 20_000
Z_TOL = 4.5  # standard errors

# ---------------------------------------------------------------- beta-bernoulli

A, B = 2.0, 3.0
FLIPS = [1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1]
N_FLIPS, K_HEADS = len(FLIPS), sum(FLIPS)
A_POST, B_POST = A + K_HEADS, B + N_FLIPS - K_HEADS
LOG_Z_COIN = float(special.betaln(A_POST, B_POST) - special.betaln(A, B))

COIN = f"""
model coin(n: int):
    p ~ beta({A}, {B})
    for i in range(n):
        flips[i] ~ bernoulli(p)

guide exact(n: int):
    p ~ beta({A_POST}, {B_POST})

guide near(n: int):
    param a: positive = {A_POST + 1.5}
    param b: positive = {B_POST}
    p ~ beta(a, b)
"""

# ---------------------------------------------------------------- normal-normal, known variance

M0, S0, SIGMA = 1.0, 2.0, 1.5
Y = np.array([2.1, 3.4, 1.7, 2.9, 4.0])
PREC = 1 / S0**2 + len(Y) / SIGMA**2
POST_MEAN = float((M0 / S0**2 + Y.sum() / SIGMA**2) / PREC)
POST_SD = float(PREC**-0.5)
LOG_Z_NORMAL = float(stats.multivariate_normal.logpdf(
    Y, np.full(len(Y), M0), SIGMA**2 * np.eye(len(Y)) + S0**2 * np.ones((len(Y), len(Y)))))

NORMAL = f"""
model nn(N: int, sigma: positive):
    mu ~ normal({M0}, {S0})
    for i in range(N):
        y[i] ~ normal(mu, sigma)

guide exact(N: int):
    mu ~ normal({POST_MEAN!r}, {POST_SD!r})

guide wide(N: int):
    param m: real = {POST_MEAN + 0.2!r}
    param s: positive = {1.3 * POST_SD!r}
    mu ~ normal(m, s)
"""
NORMAL_DATA = {"N": len(Y), "sigma": SIGMA, "y": Y.tolist()}
COIN_DATA = {"n": N_FLIPS, "flips": FLIPS}


# ---------------------------------------------------------------- a discrete latent (exact by enumeration)

SWITCH = """
model switch(N: int):
    z ~ categorical([0.5, 0.3, 0.2])
    for i in range(N):
        if z == 0:
            y[i] ~ normal(-1.0, 1.0)
        elif z == 1:
            y[i] ~ normal(0.5, 0.5)
        else:
            y[i] ~ normal(2.0, 1.5)

guide pick(N: int):
    z ~ categorical([0.1, 0.8, 0.1])
"""
Y_SWITCH = np.array([0.0, 1.5, -0.5])
SWITCH_JOINT = np.log([0.5, 0.3, 0.2]) + np.array(
    [stats.norm.logpdf(Y_SWITCH, m, s).sum() for m, s in [(-1.0, 1.0), (0.5, 0.5), (2.0, 1.5)]])
LOG_Z_SWITCH = float(special.logsumexp(SWITCH_JOINT))
SWITCH_POSTERIOR = np.exp(SWITCH_JOINT - LOG_Z_SWITCH)


def test_discrete_latent_posterior_and_marginal_likelihood() -> None:
    mod = pp.loads(SWITCH)
    data = {"N": len(Y_SWITCH), "y": Y_SWITCH.tolist()}
    for proposal in (None, mod["pick"]):  # z proposed (not summed out): by the prior, then by a guide
        post = pp.importance_sampling(mod["switch"], data, num_samples=NUM, seed=10, proposal=proposal,
                                      marginalize=False)
        assert_log_z(post, LOG_Z_SWITCH)
        z = np.asarray(post.samples["z"])
        for k in range(3):
            est = float(np.sum(post.weights * (z == k)))
            se = float(np.sqrt(np.sum(post.weights**2 * ((z == k) - est) ** 2)))
            assert abs(est - SWITCH_POSTERIOR[k]) < Z_TOL * se + 1e-6, (k, est, SWITCH_POSTERIOR[k], se)
    # by default z, the only latent choice, is summed out: every weight is the evidence itself, and
    # p(z) is the exact posterior in each draw
    post = pp.importance_sampling(mod["switch"], data, num_samples=100, seed=10)
    assert post.log_marginal_likelihood == pytest.approx(LOG_Z_SWITCH, abs=1e-4)
    np.testing.assert_allclose(post.samples["p(z)"][0], SWITCH_POSTERIOR, atol=1e-5)


@pytest.fixture(scope="module")
def coin() -> pp.Module:
    return pp.loads(COIN)


@pytest.fixture(scope="module")
def normal() -> pp.Module:
    return pp.loads(NORMAL)


def weighted_moments(post: pp.ImportanceResult, address: str) -> tuple[float, float, float]:
    """Posterior mean, its standard error, and the posterior standard deviation."""
    w, x = post.weights, np.asarray(post.samples[address], np.float64)
    mean = float(np.sum(w * x))
    se = float(np.sqrt(np.sum(w**2 * (x - mean) ** 2)))
    sd = float(np.sqrt(np.sum(w * (x - mean) ** 2)))
    return mean, se, sd


def assert_log_z(post: pp.ImportanceResult, exact: float) -> None:
    se = post.log_marginal_likelihood_se
    assert 0 < se < 0.05, se
    assert abs(post.log_marginal_likelihood - exact) < Z_TOL * se, (post.log_marginal_likelihood, exact, se)


# ---------------------------------------------------------------- posteriors and marginal likelihoods


def test_beta_bernoulli_posterior_and_marginal_likelihood(coin: pp.Module) -> None:
    post = pp.importance_sampling(coin["coin"], COIN_DATA, num_samples=NUM, seed=0)
    assert post.observed == ["flips"]
    assert set(post.samples) == {"p"}
    assert_log_z(post, LOG_Z_COIN)
    mean, se, sd = weighted_moments(post, "p")
    exact = stats.beta(A_POST, B_POST)
    assert abs(mean - exact.mean()) < Z_TOL * se
    assert abs(sd - exact.std()) < 0.05 * exact.std()
    assert np.isclose(post.mean("p"), mean)


def test_normal_normal_posterior_and_marginal_likelihood(normal: pp.Module) -> None:
    post = pp.importance_sampling(normal["nn"], NORMAL_DATA, num_samples=NUM, seed=1)
    assert_log_z(post, LOG_Z_NORMAL)
    mean, se, sd = weighted_moments(post, "mu")
    assert abs(mean - POST_MEAN) < Z_TOL * se
    assert abs(sd - POST_SD) < 0.05 * POST_SD


def test_posterior_is_not_the_prior(normal: pp.Module) -> None:
    """Guard against weights that ignore the data: the weighted mean moves far from the prior's."""
    post = pp.importance_sampling(normal["nn"], NORMAL_DATA, num_samples=NUM, seed=2)
    raw = float(np.mean(post.samples["mu"]))
    assert abs(raw - M0) < 0.1
    assert abs(post.mean("mu") - M0) > 1.0


def test_marginal_likelihood_estimate_is_unbiased_on_the_natural_scale(coin: pp.Module) -> None:
    """exp(log Z_hat) averages to Z; log Z_hat itself is biased low (Jensen) with few draws."""
    m = coin["coin"]
    ratios, logs, ses = [], [], []
    for seed in range(60):
        post = pp.importance_sampling(m, COIN_DATA, num_samples=40, seed=100 + seed)
        ratios.append(np.exp(post.log_marginal_likelihood - LOG_Z_COIN))
        logs.append(post.log_marginal_likelihood)
        ses.append(post.log_marginal_likelihood_se)
    ratios = np.array(ratios)
    assert len(set(logs)) == len(logs), "different seeds gave identical estimates"
    se = ratios.std(ddof=1) / np.sqrt(len(ratios))
    assert abs(ratios.mean() - 1.0) < 4 * se, (ratios.mean(), se)
    # the reported standard error describes the spread of log Z_hat across seeds
    spread = float(np.std(logs, ddof=1))
    assert 0.6 < spread / np.mean(ses) < 1.6, (spread, np.mean(ses))


# ---------------------------------------------------------------- proposals


def test_exact_posterior_proposal_gives_constant_weights(coin: pp.Module, normal: pp.Module) -> None:
    for model, guide, data, log_z in [(coin["coin"], coin["exact"], COIN_DATA, LOG_Z_COIN),
                                      (normal["nn"], normal["exact"], NORMAL_DATA, LOG_Z_NORMAL)]:
        post = pp.importance_sampling(model, data, num_samples=2000, seed=3, proposal=guide)
        np.testing.assert_allclose(post.log_weights, log_z, atol=2e-3)
        assert post.ess > 0.999 * post.num_samples
        assert abs(post.log_marginal_likelihood - log_z) < 2e-3


def test_near_posterior_guide_beats_the_prior(coin: pp.Module, normal: pp.Module) -> None:
    cases = [(coin["coin"], coin["near"], COIN_DATA, LOG_Z_COIN, "p", stats.beta(A_POST, B_POST).mean()),
             (normal["nn"], normal["wide"], NORMAL_DATA, LOG_Z_NORMAL, "mu", POST_MEAN)]
    for model, guide, data, log_z, address, exact_mean in cases:
        prior = pp.importance_sampling(model, data, num_samples=NUM, seed=4)
        guided = pp.importance_sampling(model, data, num_samples=NUM, seed=4, proposal=guide)
        assert guided.ess > 0.6 * NUM
        assert guided.ess > 2.5 * prior.ess, (guided.ess, prior.ess)
        assert guided.log_marginal_likelihood_se < prior.log_marginal_likelihood_se
        assert_log_z(guided, log_z)
        mean, se, _ = weighted_moments(guided, address)
        assert abs(mean - exact_mean) < Z_TOL * se


def test_proposal_params_override_initial_values(normal: pp.Module) -> None:
    """With the guide moved far from the posterior, the ESS collapses: the params are used."""
    model, guide = normal["nn"], normal["wide"]
    good = pp.importance_sampling(model, NORMAL_DATA, num_samples=4000, seed=5, proposal=guide)
    bad = pp.importance_sampling(model, NORMAL_DATA, num_samples=4000, seed=5, proposal=guide,
                                 proposal_params={"m": np.float32(POST_MEAN - 3.0), "s": np.float32(np.log(0.1))})
    assert bad.ess < 0.05 * good.ess
    assert np.all(np.abs(bad.samples["mu"] - (POST_MEAN - 3.0)) < 1.0)


# ---------------------------------------------------------------- weights, ESS and predictive draws


def test_ess_and_weights_match_a_hand_computation(normal: pp.Module) -> None:
    post = pp.importance_sampling(normal["nn"], NORMAL_DATA, num_samples=3000, seed=6)
    lw = np.asarray(post.log_weights, np.float64)
    w = np.exp(lw - lw.max())
    np.testing.assert_allclose(post.ess, w.sum() ** 2 / np.sum(w**2), rtol=1e-4)
    np.testing.assert_allclose(post.weights, w / w.sum(), rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(post.log_marginal_likelihood, np.log(np.mean(w)) + lw.max(), rtol=1e-5)
    delta_se = np.std(w, ddof=1) / (np.sqrt(len(w)) * np.mean(w))
    np.testing.assert_allclose(post.log_marginal_likelihood_se, delta_se, rtol=1e-4)
    assert 1.0 <= post.ess <= post.num_samples


def test_log_weights_are_the_observed_likelihood(normal: pp.Module) -> None:
    post = pp.importance_sampling(normal["nn"], NORMAL_DATA, num_samples=50, seed=7)
    mu = np.asarray(post.samples["mu"], np.float64)
    expected = stats.norm.logpdf(Y[None, :], mu[:, None], SIGMA).sum(axis=1)
    np.testing.assert_allclose(post.log_weights, expected, rtol=1e-5, atol=1e-4)


def test_posterior_predictive_shapes_and_values(coin: pp.Module, normal: pp.Module) -> None:
    post = pp.importance_sampling(coin["coin"], COIN_DATA, num_samples=4000, seed=8)
    rep = pp.posterior_predictive(coin["coin"], post, COIN_DATA, num_samples=3000, seed=1)
    assert rep["flips"].shape == (3000, N_FLIPS)
    assert set(np.unique(rep["flips"])) <= {0, 1}
    # replicated flips are Bernoulli(p) given the resampled p: their mean is the posterior mean of p
    p_mean = A_POST / (A_POST + B_POST)
    assert abs(rep["flips"].mean() - p_mean) < 0.03
    assert not np.all(rep["flips"] == np.asarray(FLIPS)), "replicates copy the data"

    post = pp.importance_sampling(normal["nn"], NORMAL_DATA, num_samples=4000, seed=9)
    rep = pp.posterior_predictive(normal["nn"], post, NORMAL_DATA, num_samples=2000, seed=2)
    assert rep["y"].shape == (2000, len(Y))
    # predictive variance: posterior variance of mu plus the noise variance
    np.testing.assert_allclose(rep["y"].var(axis=0), POST_SD**2 + SIGMA**2, rtol=0.15)
    np.testing.assert_allclose(rep["y"].mean(axis=0), POST_MEAN, atol=0.15)


def test_prior_predictive_shapes(normal: pp.Module) -> None:
    draws = pp.prior_predictive(normal["nn"], NORMAL_DATA, num_samples=500, seed=0)
    assert draws["mu"].shape == (500,)
    assert draws["y"].shape == (500, len(Y))
    assert abs(draws["mu"].mean() - M0) < 4 * S0 / np.sqrt(500)


def test_summary_mentions_the_estimates(coin: pp.Module) -> None:
    post = pp.importance_sampling(coin["coin"], COIN_DATA, num_samples=1000, seed=0)
    text = post.summary()
    assert f"{post.log_marginal_likelihood:.3f}" in text
    assert "flips" in text and "p" in text


ROOT_SD = """
model root_sd(n: int):
    s ~ normal(0.0, 1.0)
    for i in range(n):
        y[i] ~ normal(s, sqrt(s))

guide around(n: int):
    param m = 0.0
    s ~ normal(m, 1.0)
"""


def test_nan_weights_are_refused_naming_the_draw_and_suggesting_float64() -> None:
    """Half the prior's draws of s are negative, where sqrt(s) and so the log weight are NaN: no
    table of NaN with a meaningless Pareto k, but an error at the model with the first culprit."""
    mod = pp.loads(ROOT_SD, file="root_sd.ppl")
    data = {"n": 2, "y": [0.1, 0.2]}
    with pytest.raises(pp.PplError) as e:
        pp.importance_sampling(mod["root_sd"], data, num_samples=200)
    text = e.value.render()
    assert "importance weights are NaN" in text and "model `root_sd` gave it log density nan at s = -" in text
    assert "root_sd.ppl:2" in text and "--x64" in text and "pp.enable_x64()" in text  # this process is float32
    assert "closer to the posterior" in text


def test_a_fit_ending_on_nan_suggests_float64_and_its_correction_is_refused() -> None:
    mod = pp.loads(ROOT_SD, file="root_sd.ppl")
    fit = pp.fit(mod["root_sd"], mod["around"], data={"n": 2, "y": [0.1, 0.2]}, steps=50, progress=False)
    assert fit.info["status"] == "nan" and "pplang" not in fit.info["message"].split("\n")[0]
    assert "--x64" in fit.info["message"] and "float32" in fit.info["message"]
    with pytest.raises(pp.PplError, match="importance weights are NaN"):
        fit.importance_resample(500)


def test_infinite_weights_are_refused() -> None:
    """exp(100 z) overflows float32 for z > 0.89: a log weight of +inf for those draws."""
    model = pp.loads("""
model blowup():
    z ~ normal(0.0, 1.0)
    factor(exp(100.0 * z))
""", file="blowup.ppl")["blowup"]
    with pytest.raises(pp.PplError) as e:
        pp.importance_sampling(model, {}, num_samples=1000)
    assert "importance weights are +inf" in e.value.render() and "blowup.ppl:2" in e.value.render()
