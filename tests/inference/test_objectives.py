"""The standard objectives (stdlib/objectives.ppl) compute what they are documented to compute.

References are exact: closed forms for a conjugate normal model and for hierarchical VI with
Gaussian guides, and enumeration of all 2^k joint draws of k particles for a model with one
Bernoulli latent (IWELBO, Renyi, the reweighted wake-sleep gradients with their self-normalized
weights). Monte Carlo means over many keys are compared with them within 4.5 standard errors;
inequalities (IWELBO(k) >= ELBO, increasing in k) are checked on the exact values and on the
estimates. Also: a user's own objective file with pp.fit, a conjugate fit reaching the exact
posterior, and a NaN during a fit reported with the choice that produced it. Seeds are fixed.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy import stats
from jax.scipy.special import logsumexp
from scipy.stats import ks_2samp

import pplang as pp
from pplang.gradcheck import compare, gradient_draws
from pplang.inference.variational import Problem

NUM = 4000
Z = 4.5
LOG_2PI = math.log(2 * math.pi)

SOURCE = """
model disc():
    param pz: unit = 0.3
    z ~ bernoulli(pz)
    x ~ normal(2.0 * to_real(z), 1.0)

guide disc_q():
    param g: unit = 0.5
    z ~ bernoulli(g) via reinforce

# For the sleep phase: a guide of z given x (the model's observation, passed by name)
guide disc_qx(x: real):
    param a: real = 0.0
    param b: real = 0.0
    z ~ bernoulli(sigmoid(a + b * x))

model nn():
    z ~ normal(0.0, 1.0)
    x ~ normal(z, 1.0)

guide nq():
    param m: real = 0.0
    param s: positive = 1.0
    z ~ normal(m, s)

# Hierarchical guide: an auxiliary choice a, then z given a; the reverse model scores a given z
guide hq():
    param m: real = 0.0
    param s: positive = 1.0
    param t: positive = 0.5
    a ~ normal(m, s)
    z ~ normal(a, t)

model hr(z: real):
    param c: real = 0.5
    param d: real = 0.0
    param u: positive = 0.5
    a ~ normal(c * z + d, u)

# The same reverse model not conditioned on z (c = 0): a valid, looser reverse model
model hr0():
    param d: real = 0.0
    param u: positive = 0.5
    a ~ normal(d, u)
"""
X = 1.4  # the observation of `disc`
XN = 1.2  # ... and of `nn`: the posterior is normal(0.6, sqrt(0.5)), log p(x) = log N(1.2; 0, sqrt(2))


@pytest.fixture(scope="module")
def module():
    return pp.loads(SOURCE, file="objectives_test.ppl")


def values(pr: Problem, params: dict, num: int = NUM, seed: int = 0) -> np.ndarray:
    keys = jax.random.split(jax.random.key(seed), num)
    return np.asarray(jax.jit(jax.vmap(lambda k: pr.value_and_grad(params, k)[0]))(keys), np.float64)


def grads(pr: Problem, params: dict, num: int = NUM, seed: int = 0) -> dict:
    return gradient_draws(lambda p, k: pr.value_and_grad(p, k)[1], params, num, seed)


def mean_se(v: np.ndarray) -> tuple[float, float]:
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))


def assert_mean(v: np.ndarray, exact: float) -> None:
    m, se = mean_se(v)
    assert abs(m - exact) < Z * se + 1e-5, (m, se, exact)


def disc_params(pz: float = 0.3, g: float = 0.5) -> dict:
    return {"p": {"pz": jnp.asarray(math.log(pz / (1 - pz)))}, "q": {"g": jnp.asarray(math.log(g / (1 - g)))}}


# ---------------------------------------------------------------- exact values by enumeration


def _log_weights(p: dict):
    """z in {0, 1}: log q(z) and log w(z) = log p(x, z) - log q(z)."""
    pz, g = jax.nn.sigmoid(p["p"]["pz"]), jax.nn.sigmoid(p["q"]["g"])
    z = jnp.array([0.0, 1.0])
    lq = stats.bernoulli.logpmf(z, g)
    lp = stats.bernoulli.logpmf(z, pz) + stats.norm.logpdf(X, 2.0 * z, 1.0)
    return lq, lp, lp - lq


def _over_draws(k: int, f):
    """Sum over the 2^k joint draws of k particles of prod q(z_j) * f(indices)."""
    combos = jnp.array(list(itertools.product([0, 1], repeat=k)))

    def total(p: dict):
        lq, lp, lw = _log_weights(p)
        return jnp.sum(jnp.exp(jnp.sum(lq[combos], axis=1)) * jax.vmap(lambda c: f(p, c, lq, lp, lw))(combos))

    return total


def exact_iwelbo(k: int):
    return _over_draws(k, lambda p, c, lq, lp, lw: logsumexp(lw[c]) - math.log(k))


def exact_renyi(k: int, alpha: float):
    return _over_draws(k, lambda p, c, lq, lp, lw: (logsumexp((1 - alpha) * lw[c]) - math.log(k)) / (1 - alpha))


def exact_wake(k: int, which: str):
    """A function whose gradient is the expected wake-phase gradient: the draws' probabilities and
    the self-normalized weights are held fixed, the log densities are differentiated."""

    def f(p, c, lq, lp, lw):
        w = jax.lax.stop_gradient(jax.nn.softmax(lw[c]))
        return jnp.sum(w * (lq[c] if which == "q" else lp[c]))

    combos = jnp.array(list(itertools.product([0, 1], repeat=k)))

    def total(p: dict):
        lq, lp, lw = _log_weights(p)
        prob = jax.lax.stop_gradient(jnp.exp(jnp.sum(lq[combos], axis=1)))
        return jnp.sum(prob * jax.vmap(lambda c: f(p, c, lq, lp, lw))(combos))

    return total


def log_evidence(p: dict) -> float:
    _, lp, _ = _log_weights(p)
    return float(logsumexp(lp))


def exact_posterior_g(pz: float = 0.3) -> float:
    lp = np.log([1 - pz, pz]) + np.array([-0.5 * X**2, -0.5 * (X - 2) ** 2])
    return float(np.exp(lp[1] - np.logaddexp(lp[0], lp[1])))


# ---------------------------------------------------------------- ELBO


def test_elbo_of_a_conjugate_model_equals_the_closed_form(module):
    pr = Problem.build(module["nn"], module["nq"], "elbo", {"x": XN})
    m, s = 0.2, 0.8
    params = {"p": {}, "q": {"m": jnp.asarray(m), "s": jnp.asarray(math.log(s))}}
    closed = -LOG_2PI - 0.5 * (m**2 + s**2) - 0.5 * ((XN - m) ** 2 + s**2) + 0.5 * math.log(2 * math.pi * math.e * s**2)
    assert_mean(values(pr, params), closed)
    # at the exact posterior the ELBO is log p(x) for every draw: zero variance
    post = {"p": {}, "q": {"m": jnp.asarray(0.6), "s": jnp.asarray(0.5 * math.log(0.5))}}
    v = values(pr, post, num=64)
    np.testing.assert_allclose(v, float(stats.norm.logpdf(XN, 0.0, math.sqrt(2.0))), rtol=1e-5)


def test_elbo_of_a_discrete_model_equals_the_enumeration(module):
    pr = Problem.build(module["disc"], module["disc_q"], "elbo", {"x": X})
    params = disc_params(g=0.6)
    assert_mean(values(pr, params), float(exact_iwelbo(1)(params)))


# ---------------------------------------------------------------- IWELBO and Renyi


def test_iwelbo_is_above_the_elbo_and_increases_with_k(module):
    params = disc_params(g=0.9)  # a poor guide (the posterior has 0.49): gaps of about 0.1 between k = 1, 2, 4
    exact = {k: float(exact_iwelbo(k)(params)) for k in (1, 2, 4)}
    assert exact[1] < exact[2] < exact[4] < log_evidence(params)
    est = {}
    for k in (1, 2, 4):
        pr = Problem.build(module["disc"], module["disc_q"], ("iwelbo", {"k": k}), {"x": X})
        est[k] = values(pr, params, seed=k)
        assert_mean(est[k], exact[k])
    elbo = values(Problem.build(module["disc"], module["disc_q"], "elbo", {"x": X}), params, seed=9)
    assert_mean(elbo, exact[1])

    def gap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        return float(b.mean() - a.mean()), math.sqrt(a.var() / len(a) + b.var() / len(b))

    for a, b in ((elbo, est[2]), (est[2], est[4])):  # never below, within the noise
        d, se = gap(a, b)
        assert d > -Z * se
    d, se = gap(elbo, est[4])
    assert d > Z * se  # and IWELBO(4) clearly above the ELBO
    # the continuous model: IWELBO(k) above the ELBO and below log p(x)
    nn = {"p": {}, "q": {"m": jnp.asarray(0.0), "s": jnp.asarray(0.0)}}
    log_px = float(stats.norm.logpdf(XN, 0.0, math.sqrt(2.0)))
    prev = values(Problem.build(module["nn"], module["nq"], "elbo", {"x": XN}), nn)
    for k in (5,):
        cur = values(Problem.build(module["nn"], module["nq"], ("iwelbo", {"k": k}), {"x": XN}), nn, seed=k)
        m, se = mean_se(cur)
        assert m - prev.mean() > Z * math.sqrt(se**2 + prev.var() / len(prev)) and m < log_px + Z * se
        prev = cur


def test_iwelbo_with_one_particle_is_the_elbo_in_distribution(module):
    params = disc_params(g=0.6)
    elbo = values(Problem.build(module["nn"], module["nq"], "elbo", {"x": XN}), {
        "p": {}, "q": {"m": jnp.asarray(0.2), "s": jnp.asarray(-0.2)}}, seed=1)
    iw1 = values(Problem.build(module["nn"], module["nq"], ("iwelbo", {"k": 1}), {"x": XN}), {
        "p": {}, "q": {"m": jnp.asarray(0.2), "s": jnp.asarray(-0.2)}}, seed=2)
    assert ks_2samp(elbo, iw1).pvalue > 1e-3
    disc1 = values(Problem.build(module["disc"], module["disc_q"], ("iwelbo", {"k": 1}), {"x": X}), params)
    # each value is one of the two log weights log p(x, z) - log q(z)
    np.testing.assert_allclose(np.unique(np.round(disc1, 4)), np.round(np.sort(np.asarray(_log_weights(params)[2],
                                                                                  np.float64)), 4))


def test_renyi_at_alpha_zero_is_the_iwelbo_and_matches_enumeration(module):
    params = disc_params(g=0.6)
    iw = Problem.build(module["disc"], module["disc_q"], ("iwelbo", {"k": 3}), {"x": X})
    r0 = Problem.build(module["disc"], module["disc_q"], ("renyi", {"k": 3, "alpha": 0.0}), {"x": X})
    np.testing.assert_allclose(values(r0, params, num=256), values(iw, params, num=256), rtol=1e-6)
    r = Problem.build(module["disc"], module["disc_q"], ("renyi", {"k": 3, "alpha": 0.5}), {"x": X})
    exact = exact_renyi(3, 0.5)
    assert_mean(values(r, params), float(exact(params)))
    assert float(exact_iwelbo(3)(params)) > float(exact(params)) > float(exact_iwelbo(1)(params))
    # its gradient (reinforce inside the objective's loop) is unbiased for the exact one
    check = compare(grads(r, params, seed=3), jax.grad(exact)(params), threshold=Z)
    assert check.ok, check.report()


# ---------------------------------------------------------------- reweighted wake-sleep and sleep


@pytest.mark.parametrize("objective", ["rws_wake_q", "rws_wake_p", "rws"])
def test_wake_gradients_match_the_self_normalized_expectations(module, objective):
    k = 3
    pr = Problem.build(module["disc"], module["disc_q"], (objective, {"k": k}), {"x": X})
    params = disc_params(pz=0.4, g=0.6)
    want = {"p": jax.grad(exact_wake(k, "p"))(params)["p"], "q": jax.grad(exact_wake(k, "q"))(params)["q"]}
    if objective == "rws_wake_q":
        want["p"] = {"pz": jnp.zeros(())}
    if objective == "rws_wake_p":
        want["q"] = {"g": jnp.zeros(())}
        # the wake-p gradient of the model is the IWELBO's
        np.testing.assert_allclose(want["p"]["pz"], jax.grad(exact_iwelbo(k))(params)["p"]["pz"], rtol=1e-5)
    check = compare(grads(pr, params, seed=4), want, threshold=Z)
    assert check.ok, check.report()


def test_wake_q_has_its_fixed_point_at_the_exact_posterior(module):
    pr = Problem.build(module["disc"], module["disc_q"], ("rws_wake_q", {"k": 3}), {"x": X})
    post = exact_posterior_g()
    at = grads(pr, disc_params(g=post), seed=5)["q"]["g"]
    m, se = mean_se(np.asarray(at, np.float64))
    assert abs(m) < Z * se  # every weight is 1/k: the mean score of q, zero in expectation
    for g in (0.2, 0.9):  # away from it the expected gradient points at it, beyond the noise
        m, se = mean_se(np.asarray(grads(pr, disc_params(g=g), seed=6)["q"]["g"], np.float64))
        assert np.sign(m) == np.sign(post - g) and abs(m) > Z * se, (g, m, se)


def test_sleep_gradient_is_the_expected_score_of_the_guide_at_model_draws(module):
    """E over z ~ p(z), x ~ p(x | z) of grad log q(z | x), by Gauss-Hermite over x; zero where q is
    the exact posterior for every x: logit q(z=1 | x) = logit(pz) + 2x - 2."""
    pr = Problem.build(module["disc"], module["disc_qx"], "sleep", {"x": X})
    gh_x, gh_w = np.polynomial.hermite.hermgauss(40)

    def expected(p):
        a, b = p["q"]["a"], p["q"]["b"]
        total = 0.0
        for z, pz in ((0.0, 0.7), (1.0, 0.3)):
            x = 2.0 * z + math.sqrt(2.0) * gh_x
            logit = a + b * x  # log q(z | x), stable where the sigmoid saturates
            lq = jax.nn.log_sigmoid(logit) if z else jax.nn.log_sigmoid(-logit)
            total = total + pz * jnp.sum(gh_w / math.sqrt(math.pi) * lq)
        return total

    for a, b in ((0.3, -0.5), (math.log(0.3 / 0.7) - 2.0, 2.0)):
        params = {"p": {"pz": jnp.asarray(math.log(0.3 / 0.7))}, "q": {"a": jnp.asarray(a), "b": jnp.asarray(b)}}
        want = jax.grad(expected)(params)
        want["p"] = {"pz": jnp.zeros(())}  # the model's draws are not differentiated
        check = compare(grads(pr, params, seed=7), want, threshold=Z)
        assert check.ok, check.report()
    assert np.allclose([want["q"]["a"], want["q"]["b"]], 0.0, atol=1e-5)  # the fixed point


# ---------------------------------------------------------------- hierarchical VI


def _hvi_closed(p: dict):
    """E_q[log p(x, z) + log r(a | z) - log q(a) - log q(z | a)] with a ~ N(m, s), z ~ N(a, t),
    r(a | z) = N(c z + d, u): z is N(m, s^2 + t^2) and a - c z - d is N((1 - c) m - d, (1 - c)^2 s^2 + c^2 t^2)."""
    m, s, t = p["q"]["m"], jnp.exp(p["q"]["s"]), jnp.exp(p["q"]["t"])
    c, d, u = p["r"].get("c", 0.0), p["r"]["d"], jnp.exp(p["r"]["u"])
    v = s**2 + t**2
    log_p = -LOG_2PI - 0.5 * (m**2 + v) - 0.5 * ((XN - m) ** 2 + v)
    resid = ((1 - c) * m - d) ** 2 + (1 - c) ** 2 * s**2 + c**2 * t**2
    log_r = -0.5 * jnp.log(2 * jnp.pi * u**2) - resid / (2 * u**2)
    entropy = 0.5 * jnp.log(2 * jnp.pi * jnp.e * s**2) + 0.5 * jnp.log(2 * jnp.pi * jnp.e * t**2)
    return log_p + log_r + entropy


def hvi_params(reverse: str) -> dict:
    r = {"c": 0.4, "d": 0.1, "u": math.log(0.5)} if reverse == "hr" else {"d": 0.2, "u": math.log(0.6)}
    values = {"p": {}, "q": {"m": 0.3, "s": math.log(0.6), "t": math.log(0.5)}, "r": r}
    return {role: {a: jnp.asarray(v) for a, v in sub.items()} for role, sub in values.items()}


def test_hvi_value_and_gradient_match_the_closed_form(module):
    pr = Problem.build(module["nn"], module["hq"], "hvi", {"x": XN}, programs={"r": module["hr0"]})
    params = hvi_params("hr0")
    assert set(pr.init_params(0)) == {"p", "q", "r"}
    assert_mean(values(pr, params), float(_hvi_closed(params)))
    check = compare(grads(pr, params, seed=8), jax.grad(_hvi_closed)(params), threshold=Z)
    assert check.ok, check.report()


def test_hvi_with_a_reverse_model_conditioned_on_z(module):
    pr = Problem.build(module["nn"], module["hq"], "hvi", {"x": XN}, programs={"r": module["hr"]})
    params = hvi_params("hr")
    check = compare(grads(pr, params, seed=8), jax.grad(_hvi_closed)(params), threshold=Z)
    assert check.ok, check.report()


def test_iwhvi_and_diwhvi_tighten_hvi(module):
    params = hvi_params("hr0")
    data, progs = {"x": XN}, {"r": module["hr0"]}
    hvi = values(Problem.build(module["nn"], module["hq"], "hvi", data, programs=progs), params)
    iw = values(Problem.build(module["nn"], module["hq"], ("iwhvi", {"k": 4}), data, programs=progs), params, seed=1)
    diw = values(Problem.build(module["nn"], module["hq"], ("diwhvi", {"k": 4, "m": 3}), data, programs=progs),
                 params, seed=2)
    log_px = float(stats.norm.logpdf(XN, 0.0, math.sqrt(2.0)))
    for v in (hvi, iw, diw):
        assert np.all(np.isfinite(v))
    for lo, hi in ((hvi, iw), (iw, diw)):
        diff = hi.mean() - lo.mean()
        assert diff > Z * math.sqrt(lo.var() / len(lo) + hi.var() / len(hi)), diff
    m, se = mean_se(diw)
    assert m < log_px + Z * se
    g = grads(Problem.build(module["nn"], module["hq"], ("iwhvi", {"k": 2}), data, programs=progs), params, 64)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(g))


def test_hvi_needs_the_reverse_model(module):
    with pytest.raises(pp.PplError) as info:
        Problem.build(module["nn"], module["hq"], "hvi", {"x": XN})
    assert "`r`" in info.value.diagnostics[0].message and "programs=" in info.value.diagnostics[0].hint


@pytest.mark.parametrize("objective,value,hint", [
    (("renyi", {"alpha": 1.0}), "alpha = 1", "use objective='elbo'"),
    (("iwelbo", {"k": 0}), "k = 0", "k counts draws"),
    (("diwhvi", {"k": 2, "m": 0}), "m = 0", "m counts draws"),
])
def test_standard_objectives_refuse_arguments_outside_their_domain(module, objective, value, hint):
    with pytest.raises(pp.PplError) as info:
        Problem.build(module["nn"], module["nq"], objective, {"x": XN})
    d = info.value.diagnostics[0]
    assert f"cannot take {value}" in d.message and hint in d.hint and d.span.line > 0


# ---------------------------------------------------------------- fitting

NN5 = """
model nn5(N: int):
    mu ~ normal(1.0, 2.0)
    for i in range(N):
        y[i] ~ normal(mu, 1.5)
"""
Y5 = [2.1, 3.4, 1.7, 2.9, 4.0]
PREC5 = 1 / 2.0**2 + len(Y5) / 1.5**2
POST5 = ((1.0 / 2.0**2 + sum(Y5) / 1.5**2) / PREC5, PREC5**-0.5)

USER_OBJECTIVE = """
# A tempered ELBO: beta = 1 is the ELBO; the same machinery as the standard objectives.
objective tempered(p, q, beta: real):
    z = simulate(q)
    return log_density(p, z) - beta * log_density(q, z)
"""


def _fit(model, objective, steps=1500):
    opt = optax.adam(optax.exponential_decay(0.05, steps, 0.02))
    return pp.fit(model, "mean_field", objective, {"N": len(Y5), "y": Y5}, optimizer=opt, steps=steps, particles=4,
                  progress=False, num_draws=4000, seed=1)


def test_fit_of_a_conjugate_model_reaches_the_exact_posterior():
    """Adam with a learning rate decaying 50x and 4 particles: the fitted normal is the exact
    posterior up to the remaining optimization noise (well under 0.05 here); the draws add their
    own standard error."""
    result = _fit(pp.loads(NN5)["nn5"], "elbo")
    assert result.info["status"] == "done" and np.all(np.isfinite(result.values))
    draws = result.draws["mu"]
    assert abs(draws.mean() - POST5[0]) < 0.05 + Z * POST5[1] / math.sqrt(len(draws))
    assert abs(draws.std() - POST5[1]) < 0.05
    tail = result.values[-200:]
    log_z = float(stats.multivariate_normal.logpdf(jnp.asarray(Y5), jnp.full(5, 1.0),
                                                   1.5**2 * jnp.eye(5) + 4.0 * jnp.ones((5, 5))))
    assert abs(tail.mean() - log_z) < 0.05  # at the exact posterior the ELBO is log p(y)


def test_a_users_objective_file_works_with_fit(tmp_path):
    path = tmp_path / "mine.ppl"
    path.write_text(USER_OBJECTIVE)
    objective = pp.load(str(path)).objective("tempered")
    result = _fit(pp.loads(NN5)["nn5"], (objective, {"beta": 1.0}))
    assert result.info["objective"] == "tempered"
    assert abs(result.draws["mu"].mean() - POST5[0]) < 0.05 + Z * POST5[1] / math.sqrt(4000)
    with pytest.raises(pp.PplError) as info:
        pp.fit(pp.loads(NN5)["nn5"], "mean_field", objective, {"N": len(Y5), "y": Y5}, steps=2, progress=False)
    assert "`beta`" in info.value.diagnostics[0].message and "mine.ppl" in info.value.render()


NAN_MODEL = """
model bad():
    param s: real = 0.3
    z ~ normal(0.0, 1.0)
    x ~ normal(z, sqrt(s))
"""


@pytest.mark.parametrize("on_nan", ["stop", "skip"])
def test_a_nan_during_a_fit_names_the_statement(on_nan):
    """s is an unconstrained real used under a square root: the fit drives it below zero, where the
    log density of x is NaN."""
    model = pp.loads(NAN_MODEL, file="bad.ppl")["bad"]
    result = pp.fit(model, "mean_field", "elbo", {"x": 0.0}, steps=100, learning_rate=0.2, progress=False,
                    on_nan=on_nan, chunk=20)
    message = result.info["message"]
    assert "a NaN first appeared at bad.ppl:5: x ~ normal(z, sqrt(s))" in message, message
    if on_nan == "stop":
        assert result.info["status"] == "nan" and f"stopped at step {len(result.values)}" in message
        assert np.all(np.isfinite(result.values))
    else:
        assert result.info["status"] == "done" and np.isnan(result.values).any()
    assert all(np.all(np.isfinite(v)) for p in result.params.values() for v in p.values())
