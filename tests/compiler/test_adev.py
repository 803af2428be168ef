"""The gradient estimators of the adev transformation are unbiased: checked against exact gradients.

For each strategy and distribution it supports, a small model and guide are built, the generated
estimator is run for a few thousand independent keys (jit of a vmap over `Problem.value_and_grad`)
and the mean of its gradient estimates is compared with the exact gradient of the objective's
expectation, within 4.5 standard errors of that mean (`pplang.gradcheck.compare`). The exact
objective is written here independently of pplang, with jax.scipy densities: closed forms, sums
over the (truncated) support of discrete choices, and Gauss-Hermite / Gauss-Laguerre quadrature
for normal and exponential ones (exact for the polynomial integrands these models give); jax.grad
of it is the reference. Every discrete case also has a reparameterized continuous latent `mu`
alongside, so the strategies are checked together with `reparam`.

Also: `enum` alone has zero variance; baselines leave the mean unchanged and cut the variance;
pruning the score-function costs per iteration cuts the variance; IWELBO with `reinforce` inside
the objective's loop; an objective's own random choices; the located compile errors; and the
user-facing `pplang.gradcheck.check_gradient`, which passes on correct estimators and fails on
biased ones. Seeds are fixed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats
from jax.scipy.special import betaln, digamma, gammaln, logsumexp
from pplang.compiler.diagnostics import PplError

import pplang as pp
from pplang.gradcheck import GradCheck, check_gradient, compare, gradient_draws
from pplang.inference.variational import Problem

NUM = 3000  # independent gradient estimates per case
LOG_2PI = math.log(2 * math.pi)
GH_X, GH_W = np.polynomial.hermite.hermgauss(40)  # E over N(0, 1): sum(w * f(sqrt(2) x)) / sqrt(pi)
GL_X, GL_W = np.polynomial.laguerre.laggauss(40)  # E over Exp(1): sum(w * f(t))


def draws(pr: Problem, params: dict, num: int = NUM, seed: int = 0) -> dict:
    """`num` independent gradient estimates (a params-shaped tree with a leading axis)."""
    return gradient_draws(lambda p, k: pr.value_and_grad(p, k)[1], params, num, seed)


def surrogate_draws(pr: Problem, params: dict, state: dict, num: int = NUM, seed: int = 0) -> dict:
    """The same through `Problem.surrogate` with a given baseline state."""
    grad = jax.grad(pr.surrogate, has_aux=True)
    return gradient_draws(lambda p, k: grad(p, k, state, 1)[0], params, num, seed)


def exact_grad(fn, params: dict) -> dict:
    """The reference: jax.grad of an exact objective (jitted: one compile instead of many small ones)."""
    return jax.jit(jax.grad(fn))(params)


def assert_unbiased(estimates: dict, exact: dict, threshold: float = 4.5) -> GradCheck:
    check = compare(estimates, exact, threshold=threshold)
    assert check.ok, check.report()
    return check


def as_params(values: dict) -> dict:
    return {role: {a: jnp.asarray(v, jnp.float32) for a, v in sub.items()} for role, sub in values.items()}


# ---------------------------------------------------------------- strategies x distributions
#
# A model with a reparameterized mean `mu` and one discrete (or non-reparameterized) latent per
# family, drawn once at the top level (`a`) and once per iteration of a vectorized loop (`b[i]`),
# each observed through y = normal(mu + 1.5 * latent, 1). The guide is mean-field: mu ~ normal(m, s)
# and each latent from the family with its own parameters, by the strategy under test.
#
#   E_q[log p - log q] = E[log N(mu; 0, 2)] + H[N(m, s)]
#                        + sum over latents of E_q(z)[log prior(z) - log q(z) + E_mu log N(y; mu + 1.5 z, 1)]
#
# with E_mu log N(y; mu + c, 1) = -log(2 pi) / 2 - ((y - m - c)^2 + s^2) / 2.


@dataclass(frozen=True)
class Family:
    name: str
    prior: str  # the model's distribution of the latent (pplang)
    prior_logp: object  # z -> log prior(z) (jax)
    guide: str  # the guide's distribution, formatted with the parameter names
    params: tuple  # (name, constraint, extra dimensions: "" or ", 3") of each guide parameter
    top: tuple  # unconstrained values of the parameters for the top-level latent
    loop: tuple  # ... and for the three iterations of the loop
    nodes: object  # constrained params -> (points, probabilities) with E_q f = sum(prob * f(points))
    logq: object  # (constrained params, z) -> log q(z)
    strategies: tuple


FORWARD = {"real": lambda u: u, "positive": jnp.exp, "unit": jax.nn.sigmoid}


def support(values: list[int]):
    grid = jnp.asarray(values)

    def nodes(th: list, logq) -> tuple:
        return grid, jnp.exp(logq(th, grid))

    return nodes


def normal_nodes(th: list, logq) -> tuple:
    return th[0] + math.sqrt(2.0) * th[1] * GH_X, jnp.asarray(GH_W / math.sqrt(math.pi))


def exponential_nodes(th: list, logq) -> tuple:
    return GL_X / th[0], jnp.asarray(GL_W)


PRIOR_PROBS = jnp.array([0.2, 0.3, 0.5])
FAMILIES = {f.name: f for f in [
    Family("bernoulli", "bernoulli(0.3)", lambda z: stats.bernoulli.logpmf(z, 0.3), "bernoulli({})",
           (("g", "unit", ""),), (0.4,), ([-1.0, 0.3, 1.2],), support([0, 1]),
           lambda th, z: stats.bernoulli.logpmf(z, th[0]), ("reinforce", "mvd", "enum")),
    Family("bernoulli_logits", "bernoulli(0.3)", lambda z: stats.bernoulli.logpmf(z, 0.3), "bernoulli(logits={})",
           (("g", "real", ""),), (0.4,), ([-1.0, 0.3, 1.2],), support([0, 1]),
           lambda th, z: stats.bernoulli.logpmf(z, jax.nn.sigmoid(th[0])), ("mvd",)),
    Family("categorical", "categorical([0.2, 0.3, 0.5])", lambda z: jnp.log(PRIOR_PROBS)[z], "categorical(logits={})",
           (("g", "real", ", 3"),), ([0.3, -0.2, 0.5],), ([[0.3, -0.2, 0.5], [1.0, 0.0, -1.0], [-0.5, 0.7, 0.1]],),
           support([0, 1, 2]), lambda th, z: jax.nn.log_softmax(th[0])[z], ("reinforce", "mvd", "enum")),
    Family("categorical_probs", "categorical([0.2, 0.3, 0.5])", lambda z: jnp.log(PRIOR_PROBS)[z],
           "categorical(softmax({}))", (("g", "real", ", 3"),), ([0.3, -0.2, 0.5],),
           ([[0.3, -0.2, 0.5], [1.0, 0.0, -1.0], [-0.5, 0.7, 0.1]],), support([0, 1, 2]),
           lambda th, z: jax.nn.log_softmax(th[0])[z], ("mvd",)),
    Family("binomial", "binomial(4, 0.6)", lambda z: stats.binom.logpmf(z, 4, 0.6), "binomial(4, {})",
           (("g", "unit", ""),), (0.2,), ([-0.5, 0.3, 1.0],), support(list(range(5))),
           lambda th, z: stats.binom.logpmf(z, 4, th[0]), ("reinforce", "mvd", "enum")),
    Family("poisson", "poisson(2.0)", lambda z: stats.poisson.logpmf(z, 2.0), "poisson({})",
           (("g", "positive", ""),), (math.log(2.5),), (list(np.log([1.5, 2.5, 3.5])),), support(list(range(60))),
           lambda th, z: stats.poisson.logpmf(z, th[0]), ("reinforce", "mvd")),
    Family("geometric", "geometric(0.4)", lambda z: stats.geom.logpmf(z, 0.4, loc=-1), "geometric({})",
           (("g", "unit", ""),), (-0.2,), ([-0.8, 0.0, 0.8],), support(list(range(200))),
           lambda th, z: stats.geom.logpmf(z, th[0], loc=-1), ("reinforce", "mvd")),
    Family("normal", "normal(0.5, 1.0)", lambda z: stats.norm.logpdf(z, 0.5, 1.0), "normal({}, {})",
           (("a", "real", ""), ("b", "positive", "")), (0.4, math.log(0.7)),
           ([-0.5, 0.2, 1.0], list(np.log([0.5, 1.0, 1.5]))), normal_nodes,
           lambda th, z: stats.norm.logpdf(z, th[0], th[1]), ("reinforce", "mvd")),
    Family("exponential", "exponential(1.0)", lambda z: stats.expon.logpdf(z), "exponential({})",
           (("r", "positive", ""),), (math.log(1.3),), (list(np.log([0.6, 1.0, 2.0])),), exponential_nodes,
           lambda th, z: stats.expon.logpdf(z, scale=1.0 / th[0]), ("reinforce", "mvd", "reparam")),
]}
Y_TOP, Y_LOOP = 2.3, [0.1, 1.0, 2.6]


@dataclass(frozen=True)
class Latent:
    name: str
    family: Family
    strategy: str
    loop: bool

    def param(self, p: str) -> str:
        return f"{self.name}_{p}"


def source(latents: list[Latent]) -> str:
    """The model and guide above for the given latents."""
    model = ["model m(N: int):", "    mu ~ normal(0.0, 2.0)"]
    guide = ["guide q(N: int):", "    param m: real = 0.0", "    param s: positive = 1.0", "    mu ~ normal(m, s)"]
    for lat in latents:
        for p, c, extra in lat.family.params:
            dims = f"[N{extra}]" if lat.loop else (f"[{extra[2:]}]" if extra else "")
            guide.insert(1, f"    param {lat.param(p)}: {c}{dims} = 0.0")
    loop_m, loop_g = [], []
    for lat in latents:
        idx = "[i]" if lat.loop else ""
        args = [lat.param(p) + idx for p, _, _ in lat.family.params]
        draw_m = [f"{lat.name}{idx} ~ {lat.family.prior}",
                  f"y_{lat.name}{idx} ~ normal(mu + 1.5 * to_real({lat.name}{idx}), 1.0)"]
        draw_g = [f"{lat.name}{idx} ~ {lat.family.guide.format(*args)} via {lat.strategy}"]
        if lat.loop:
            loop_m += draw_m
            loop_g += draw_g
        else:
            model += ["    " + d for d in draw_m]
            guide += ["    " + d for d in draw_g]
    if loop_m:
        model += ["    for i in range(N):"] + ["        " + d for d in loop_m]
        guide += ["    for i in range(N):"] + ["        " + d for d in loop_g]
    return "\n".join(model + [""] + guide) + "\n"


def problem_for(latents: list[Latent], objective="elbo", y_loop=Y_LOOP, extra_source: str = "",
                values: dict | None = None) -> tuple[Problem, dict, dict]:
    module = pp.loads(source(latents) + extra_source)
    data = {"N": len(y_loop)} | {f"y_{lat.name}": y_loop if lat.loop else Y_TOP for lat in latents}
    obj = module.objective(objective) if extra_source else objective
    pr = Problem.build(module["m"], module["q"], obj, data)
    base = {"m": 0.3, "s": math.log(0.7)}
    for lat in latents:
        for (p, _, _), v in zip(lat.family.params, lat.family.loop if lat.loop else lat.family.top):
            base[lat.param(p)] = v
    params = as_params({"p": {}, "q": base | (values or {})})
    return pr, params, data


def exact_elbo(latents: list[Latent], data: dict):
    def per_latent(fam: Family, th: list, y, m, s):
        z, prob = fam.nodes(th, fam.logq)
        c = 1.5 * z
        inner = fam.prior_logp(z) - fam.logq(th, z) - 0.5 * LOG_2PI - 0.5 * ((y - m - c) ** 2 + s**2)
        return jnp.sum(prob * inner)

    def elbo(params: dict):
        q = params["q"]
        m, s = q["m"], jnp.exp(q["s"])
        total = stats.norm.logpdf(0.0, 0.0, 2.0) - (m**2 + s**2) / 8.0 + 0.5 * jnp.log(2 * jnp.pi * jnp.e * s**2)
        for lat in latents:
            fam = lat.family
            th = [FORWARD[c](q[lat.param(p)]) for p, c, _ in fam.params]
            y = jnp.asarray(data[f"y_{lat.name}"])
            if lat.loop:
                total = total + jnp.sum(jax.vmap(lambda *a, f=fam: per_latent(f, list(a[:-1]), a[-1], m, s))(*th, y))
            else:
                total = total + per_latent(fam, th, y, m, s)
        return total

    return elbo


CASES = [(f.name, s) for f in FAMILIES.values() for s in f.strategies]


@pytest.mark.parametrize("family,strategy", CASES, ids=[f"{f}-{s}" for f, s in CASES])
def test_strategy_is_unbiased_at_top_level_and_in_a_vectorized_loop(family, strategy):
    fam = FAMILIES[family]
    latents = [Latent("a", fam, strategy, False), Latent("b", fam, strategy, True)]
    pr, params, data = problem_for(latents)
    assert {(s.address, s.strategy, s.lead) for s in pr.plan.sites} == (
        set() if strategy == "reparam" else {("a", strategy, 0), ("b", strategy, 1)})
    exact = exact_grad(exact_elbo(latents, data), params)
    check = assert_unbiased(draws(pr, params), exact)
    assert np.all(check.se["q"]["b_" + fam.params[0][0]] > 0)


def test_mixed_strategies_in_one_guide_are_unbiased():
    """enum at the top level re-runs everything else (mvd at the top level, reinforce and enum in a loop)
    once per value."""
    F = FAMILIES
    latents = [Latent("a", F["bernoulli"], "enum", False), Latent("c", F["categorical"], "mvd", False),
               Latent("b", F["poisson"], "reinforce", True), Latent("k", F["binomial"], "enum", True)]
    pr, params, data = problem_for(latents)
    exact = exact_grad(exact_elbo(latents, data), params)
    assert_unbiased(draws(pr, params), exact)


def test_strategies_can_be_set_by_address_from_outside():
    fam = FAMILIES["bernoulli"]
    latents = [Latent("a", fam, "reinforce", False), Latent("b", fam, "reinforce", True)]
    module = pp.loads(source(latents).replace(" via reinforce", ""))
    data = {"N": 3, "y_a": Y_TOP, "y_b": Y_LOOP}
    pr = Problem.build(module["m"], module["q"], "elbo", data, strategies={"a": "mvd", "b": "enum"})
    assert {(s.address, s.strategy) for s in pr.plan.sites} == {("a", "mvd"), ("b", "enum")}
    _, params, _ = problem_for(latents)
    assert_unbiased(draws(pr, params), exact_grad(exact_elbo(latents, data), params))


# ---------------------------------------------------------------- reparam, incl. implicit reparameterization

REPARAM = """
model normal_normal():
    z ~ normal(0.0, 1.0)
    x ~ normal(z, 1.0)

guide normal_q():
    param mu: real = 0.0
    param s: positive = 1.0
    z ~ normal(mu, s)

model gamma_poisson(N: int):
    lam ~ gamma(2.0, 1.5)
    for i in range(N):
        x[i] ~ poisson(lam)

guide gamma_q():
    param a: positive = 1.0
    param b: positive = 1.0
    lam ~ gamma(a, b)

model beta_bernoulli(N: int):
    p ~ beta(2.0, 3.0)
    for i in range(N):
        x[i] ~ bernoulli(p)

guide beta_q():
    param a: positive = 1.0
    param b: positive = 1.0
    p ~ beta(a, b)

model dirichlet_categorical(N: int):
    w ~ dirichlet([1.0, 2.0, 1.5])
    for i in range(N):
        x[i] ~ categorical(w)

guide dirichlet_q():
    param c: positive[3] = 1.0
    w ~ dirichlet(c)
"""
COUNTS = [3, 1, 4, 2]
FLIPS = [True, False, True, True, False]
CATS = [0, 2, 2, 1, 2]


def _normal_elbo(p):
    mu, s = p["q"]["mu"], jnp.exp(p["q"]["s"])
    x = 1.2
    return (-LOG_2PI - 0.5 * (mu**2 + s**2) - 0.5 * ((x - mu) ** 2 + s**2)
            + 0.5 * jnp.log(2 * jnp.pi * jnp.e * s**2))


def _gamma_elbo(p):
    a, b = jnp.exp(p["q"]["a"]), jnp.exp(p["q"]["b"])
    e_lam, e_log = a / b, digamma(a) - jnp.log(b)
    a0, b0 = 2.0, 1.5
    log_prior = a0 * jnp.log(b0) - gammaln(a0) + (a0 - 1) * e_log - b0 * e_lam
    lik = sum(k * e_log - e_lam - gammaln(k + 1.0) for k in COUNTS)
    log_q = a * jnp.log(b) - gammaln(a) + (a - 1) * e_log - b * e_lam
    return log_prior + lik - log_q


def _beta_elbo(p):
    a, b = jnp.exp(p["q"]["a"]), jnp.exp(p["q"]["b"])
    e_log, e_log1m = digamma(a) - digamma(a + b), digamma(b) - digamma(a + b)
    heads = sum(FLIPS)
    tails = len(FLIPS) - heads
    log_prior = -betaln(2.0, 3.0) + 1.0 * e_log + 2.0 * e_log1m
    lik = heads * e_log + tails * e_log1m
    log_q = -betaln(a, b) + (a - 1) * e_log + (b - 1) * e_log1m
    return log_prior + lik - log_q


def _dirichlet_elbo(p):
    c = jnp.exp(p["q"]["c"])
    e_log = digamma(c) - digamma(jnp.sum(c))
    c0 = jnp.array([1.0, 2.0, 1.5])

    def log_norm(alpha):
        return gammaln(jnp.sum(alpha)) - jnp.sum(gammaln(alpha))

    counts = jnp.array([CATS.count(k) for k in range(3)], jnp.float32)
    return (log_norm(c0) + jnp.sum((c0 - 1) * e_log) + jnp.sum(counts * e_log)
            - log_norm(c) - jnp.sum((c - 1) * e_log))


REPARAM_CASES = {
    "normal": ("normal_normal", "normal_q", {"x": 1.2}, {"mu": 0.3, "s": math.log(0.6)}, _normal_elbo),
    "gamma": ("gamma_poisson", "gamma_q", {"N": 4, "x": COUNTS}, {"a": math.log(3.0), "b": math.log(1.2)},
              _gamma_elbo),
    "beta": ("beta_bernoulli", "beta_q", {"N": 5, "x": FLIPS}, {"a": math.log(2.5), "b": math.log(1.5)}, _beta_elbo),
    "dirichlet": ("dirichlet_categorical", "dirichlet_q", {"N": 5, "x": CATS}, {"c": np.log([1.5, 2.0, 3.0])},
                  _dirichlet_elbo),
}


@pytest.mark.parametrize("case", list(REPARAM_CASES))
def test_reparam_is_unbiased_incl_implicit_reparameterization(case):
    model, guide, data, values, exact_fn = REPARAM_CASES[case]
    module = pp.loads(REPARAM)
    pr = Problem.build(module[model], module[guide], "elbo", data)
    assert pr.plan.sites == []  # nothing but reparam: no surrogate terms
    params = as_params({"p": {}, "q": values})
    # the value too: the mean estimate is the exact ELBO
    keys = jax.random.split(jax.random.key(1), NUM)
    v = np.asarray(jax.jit(jax.vmap(lambda k: pr.value_and_grad(params, k)[0]))(keys), np.float64)
    assert abs(v.mean() - float(jax.jit(exact_fn)(params))) < 4.5 * v.std() / math.sqrt(NUM)
    assert_unbiased(draws(pr, params), exact_grad(exact_fn, params))


# ---------------------------------------------------------------- enum alone: zero variance

ENUM_ONLY = """
model m(N: int):
    a ~ bernoulli(0.3)
    ya ~ normal(2.0 * to_real(a), 1.0)
    c ~ categorical([0.2, 0.3, 0.5])
    yc ~ normal(to_real(c), 0.5)
    for i in range(N):
        b[i] ~ bernoulli(0.6)
        yb[i] ~ normal(to_real(b[i]) - 0.5, 1.0)

guide q(N: int):
    param ga: unit = 0.5
    param gc: real[3] = 0.0
    param gb: unit[N] = 0.5
    a ~ bernoulli(ga) via enum
    c ~ categorical(logits=gc) via enum
    for i in range(N):
        b[i] ~ bernoulli(gb[i]) via enum
"""


def test_enum_alone_has_zero_variance_and_is_exact():
    module = pp.loads(ENUM_ONLY)
    data = {"N": 3, "ya": 1.1, "yc": 1.7, "yb": [0.2, -0.4, 0.9]}
    pr = Problem.build(module["m"], module["q"], "elbo", data)
    params = as_params({"p": {}, "q": {"ga": 0.3, "gc": [0.2, -0.5, 0.4], "gb": [-1.0, 0.5, 1.5]}})

    def exact(p):
        q = p["q"]
        ga, lc, gb = jax.nn.sigmoid(q["ga"]), jax.nn.log_softmax(q["gc"]), jax.nn.sigmoid(q["gb"])
        za, zc = jnp.array([0.0, 1.0]), jnp.arange(3.0)
        la = stats.bernoulli.logpmf(za, ga)
        ta = jnp.sum(jnp.exp(la) * (stats.bernoulli.logpmf(za, 0.3) + stats.norm.logpdf(1.1, 2.0 * za, 1.0) - la))
        tc = jnp.sum(jnp.exp(lc) * (jnp.log(PRIOR_PROBS) + stats.norm.logpdf(1.7, zc, 0.5) - lc))
        yb = jnp.array([0.2, -0.4, 0.9])
        lb = stats.bernoulli.logpmf(za[:, None], gb)
        tb = jnp.sum(jnp.exp(lb) * (stats.bernoulli.logpmf(za[:, None], 0.6)
                                    + stats.norm.logpdf(yb, za[:, None] - 0.5, 1.0) - lb))
        return ta + tc + tb

    est = draws(pr, params, num=64)
    ref = exact_grad(exact, params)
    for a, g in est["q"].items():
        g = np.asarray(g)
        spread = np.max(np.abs(g - g[0]))  # the same up to float rounding (XLA may order sums differently)
        assert spread <= 1e-6 * max(1.0, float(np.max(np.abs(g)))), f"{a}: the estimates vary across keys"
        np.testing.assert_allclose(g[0], np.asarray(ref["q"][a]), rtol=2e-5, atol=1e-6, err_msg=a)
    v = jax.jit(jax.vmap(lambda k: pr.value_and_grad(params, k)[0]))(jax.random.split(jax.random.key(0), 8))
    np.testing.assert_allclose(np.asarray(v), float(jax.jit(exact)(params)), rtol=1e-5)


# ---------------------------------------------------------------- baselines

BASELINE = """
model m():
    z ~ bernoulli(0.5)
    x ~ normal(3.0 * to_real(z), 1.0)

guide q():
    param g: unit = 0.5
    z ~ bernoulli(g) via reinforce
"""
X_FAR = 12.0  # the cost log p(x | z) is about -60 for either z: a large offset, differences of about 30
OFFSET = -55.0


def _baseline_exact(p):
    g = jax.nn.sigmoid(p["q"]["g"])
    z = jnp.array([0.0, 1.0])
    lq = stats.bernoulli.logpmf(z, g)
    return jnp.sum(jnp.exp(lq) * (math.log(0.5) + stats.norm.logpdf(X_FAR, 3.0 * z, 1.0) - lq))


@pytest.mark.parametrize("baseline", [None, OFFSET, 40.0, "ema", "learned"])
def test_baselines_leave_the_mean_unchanged(baseline):
    module = pp.loads(BASELINE)
    pr = Problem.build(module["m"], module["q"], "elbo", {"x": X_FAR}, baseline=baseline)
    params = pr.init_params(0)
    params["q"] = {"g": jnp.asarray(0.3)}
    (key,) = pr.plan.baseline_keys()
    state = pr.init_state()
    if baseline == "ema":
        state = {"ema": {key: jnp.asarray(OFFSET)}}
    if baseline == "learned":
        params["_baselines"] = {key: jnp.asarray(OFFSET)}
    est = surrogate_draws(pr, params, state)
    exact = exact_grad(_baseline_exact, params | {"_baselines": {}})
    assert_unbiased({"q": est["q"]}, exact)


def test_baselines_reduce_the_variance_of_reinforce():
    """Same keys with and without a baseline near the mean cost. Without one, the estimate is
    (cost - 0) * d log q: its sd is dominated by the offset; with b ~ E[cost] the variance falls
    by a factor of about 40 here. The sample variance over 3000 keys is within a few % of the
    true one, so asserting a ratio below 0.25 has a wide margin."""
    module = pp.loads(BASELINE)
    out = {}
    for b in (None, OFFSET, "ema", "learned"):
        pr = Problem.build(module["m"], module["q"], "elbo", {"x": X_FAR}, baseline=b)
        params = pr.init_params(0)
        params["q"] = {"g": jnp.asarray(0.3)}
        (key,) = pr.plan.baseline_keys()
        state = {"ema": {key: jnp.asarray(OFFSET)}} if b == "ema" else pr.init_state()
        if b == "learned":
            params["_baselines"] = {key: jnp.asarray(OFFSET)}
        out[b] = np.asarray(surrogate_draws(pr, params, state, seed=7)["q"]["g"])
    var0 = out[None].var()
    for b in (OFFSET, "ema", "learned"):
        ratio = out[b].var() / var0
        assert ratio < 0.25, (b, ratio)
        np.testing.assert_allclose(out[b], out[OFFSET], rtol=1e-4, atol=1e-4)  # the same estimator


def test_ema_baseline_tracks_the_mean_cost_and_learned_baseline_regresses_on_it():
    module = pp.loads(BASELINE)
    pr = Problem.build(module["m"], module["q"], "elbo", {"x": X_FAR}, baseline="ema")
    params = pr.init_params(0)
    (key,) = pr.plan.baseline_keys()
    step = jax.jit(pr.step())
    state = pr.init_state()
    assert float(state["ema"][key]) == 0.0
    for k in jax.random.split(jax.random.key(3), 200):
        _, _, state = step(params, k, state)
    g = 0.5  # init: the mean cost is E_q[log p(z) + log p(x | z) - log q(z)]
    mean_cost = float(_baseline_exact({"q": {"g": jnp.asarray(math.log(g / (1 - g)))}}))
    # after 200 steps of decay 0.9 the EMA is an average of the last ~10 costs, which lie within
    # +-18 of the mean cost (log N(12; 0, 1) - log N(12; 3, 1) = 31.5 apart)
    assert abs(float(state["ema"][key]) - mean_cost) < 18.0
    learned = Problem.build(module["m"], module["q"], "elbo", {"x": X_FAR}, baseline="learned")
    lp = learned.init_params(0)
    est = surrogate_draws(learned, lp, {})
    # d/db of -(cost - b)^2 is 2 (cost - b): its mean at b = 0 is 2 E[cost]
    assert_unbiased({"_b": est["_baselines"]}, {"_b": {key: 2.0 * mean_cost}})


# ---------------------------------------------------------------- pruning

# The ELBO written so that its value is not recognized as a sum of log densities (exp(0.0) is not
# a constant to linear_form): the same value, but each z[i] is charged the whole objective.
UNPRUNED = """
objective elbo_unpruned(p, q):
    z = simulate(q)
    return log_density(p, z) - log_density(q, z) + 0.0 * exp(0.0)
"""
Y_PRUNE = [0.3, 2.1, -0.5, 1.7, 0.9, 2.8, -1.1, 1.4]


def test_pruned_per_iteration_costs_lower_the_variance_and_both_are_unbiased():
    latents = [Latent("b", FAMILIES["bernoulli"], "reinforce", True)]
    values = {"b_g": np.linspace(-1.0, 1.0, len(Y_PRUNE))}
    pruned, params, data = problem_for(latents, y_loop=Y_PRUNE, values=values)
    unpruned, _, _ = problem_for(latents, "elbo_unpruned", Y_PRUNE, UNPRUNED, values)
    assert pruned.plan.linear is not None and unpruned.plan.linear is None
    (site,) = pruned.plan.sites
    assert all(c.aligned for c in site.costs) and {c.node for c in site.costs} == {"b", "y_b"}
    assert "(same iteration)" in pruned.estimator_code and "the whole value" in unpruned.estimator_code
    exact = exact_grad(exact_elbo(latents, data), params)
    a, b = draws(pruned, params, seed=5), draws(unpruned, params, seed=5)
    assert_unbiased(a, exact)
    assert_unbiased(b, exact)
    # per coordinate, the pruned estimator drops the other 7 iterations' terms and mu's from the cost
    var_a, var_b = np.asarray(a["q"]["b_g"]).var(0), np.asarray(b["q"]["b_g"]).var(0)
    assert np.all(var_a < 0.5 * var_b), (var_a, var_b)
    np.testing.assert_allclose(np.asarray(a["q"]["m"]), np.asarray(b["q"]["m"]), rtol=1e-4, atol=1e-5)


TEMPERED = """
objective tempered(p, q, beta: real):
    z = simulate(q)
    return beta * log_density(p, z) - log_density(q, z) / 1.0
"""


@pytest.mark.parametrize("strategy", ["reinforce", "enum", "mvd"])
def test_value_arguments_are_coefficients_of_the_linear_form(strategy):
    """beta * log p - log q: a sum of log densities whose coefficient is an argument, so costs are
    pruned per iteration (and enum and mvd apply in the loop), the generated code reading beta."""
    beta = 0.7
    latents = [Latent("b", FAMILIES["bernoulli"], strategy, True)]
    module = pp.loads(source(latents) + TEMPERED)
    data = {"N": 3, "y_b": Y_LOOP}
    pr = Problem.build(module["m"], module["q"], (module.objective("tempered"), {"beta": beta}), data)
    assert pr.plan.linear is not None
    assert sorted((c.value, c.factors) for c in pr.plan.linear.values()) == [(-1.0, ()), (1.0, (("beta", 1),))]
    (site,) = pr.plan.sites
    assert all(c.aligned for c in site.costs) and "_run.args[0]" in pr.estimator_code
    params = as_params({"p": {}, "q": {"m": 0.3, "s": math.log(0.7), "b_g": [-1.0, 0.3, 1.2]}})
    elbo = exact_elbo(latents, data)

    def log_q(p):  # E_q log q(mu, b)
        q = p["q"]
        g = jax.nn.sigmoid(q["b_g"])
        return -0.5 * jnp.log(2 * jnp.pi * jnp.e * jnp.exp(2 * q["s"])) + jnp.sum(g * jnp.log(g) + (1 - g) *
                                                                                   jnp.log1p(-g))

    exact = exact_grad(lambda p: beta * (elbo(p) + log_q(p)) - log_q(p), params)
    assert_unbiased(draws(pr, params), exact)


# ---------------------------------------------------------------- IWELBO: reinforce inside the objective's loop

IW = """
model disc():
    z ~ bernoulli(0.3)
    x ~ normal(2.0 * to_real(z), 1.0)

guide disc_q():
    param g: unit = 0.5
    z ~ bernoulli(g) via reinforce

model mixed():
    mu ~ normal(0.0, 1.0)
    z ~ bernoulli(0.3)
    x ~ normal(mu + 2.0 * to_real(z), 1.0)

guide mixed_q():
    param m: real = 0.0
    param s: positive = 1.0
    param g: unit = 0.5
    mu ~ normal(m, s)
    z ~ bernoulli(g) via reinforce
"""
X_IW = 1.4


def _iwelbo2_disc(p):
    """E over two iid draws z1, z2 ~ q of log((w1 + w2) / 2), w = p(x, z) / q(z): four combinations."""
    g = jax.nn.sigmoid(p["q"]["g"])
    z = jnp.array([0.0, 1.0])
    lq = stats.bernoulli.logpmf(z, g)
    lw = stats.bernoulli.logpmf(z, 0.3) + stats.norm.logpdf(X_IW, 2.0 * z, 1.0) - lq
    pairs = logsumexp(jnp.stack(jnp.broadcast_arrays(lw[:, None], lw[None, :])), axis=0) - math.log(2.0)
    return jnp.sum(jnp.exp(lq[:, None] + lq[None, :]) * pairs)


def _iwelbo2_mixed(p):
    """The same with mu ~ normal(m, s) per draw: 4 discrete combinations x a 2-D Gauss-Hermite grid."""
    q = p["q"]
    m, s, g = q["m"], jnp.exp(q["s"]), jax.nn.sigmoid(q["g"])
    x, w = np.polynomial.hermite.hermgauss(24)
    mu = m + math.sqrt(2.0) * s * x
    wmu = jnp.asarray(w / math.sqrt(math.pi))
    z = jnp.array([0.0, 1.0])
    lq = stats.bernoulli.logpmf(z, g)
    # log weight of one draw: [mu node, z]
    lw = (stats.norm.logpdf(mu[:, None], 0.0, 1.0) + stats.bernoulli.logpmf(z, 0.3)[None, :]
          + stats.norm.logpdf(X_IW, mu[:, None] + 2.0 * z[None, :], 1.0)
          - stats.norm.logpdf(mu[:, None], m, s) - lq[None, :])
    a = lw[:, :, None, None]
    b = lw[None, None, :, :]
    val = jnp.logaddexp(a, b) - math.log(2.0)
    prob = (wmu[:, None] * jnp.exp(lq)[None, :])
    return jnp.sum(prob[:, :, None, None] * prob[None, None, :, :] * val)


@pytest.mark.parametrize("case,baseline", [("disc", None), ("mixed", None), ("disc", -1.5)])
def test_iwelbo_with_reinforce_inside_the_objective_loop_is_unbiased(case, baseline):
    module = pp.loads(IW)
    pr = Problem.build(module[case], module[f"{case}_q"], ("iwelbo", {"k": 2}), {"x": X_IW}, baseline=baseline)
    assert pr.plan.loop_reinforce and pr.plan.sites == [] and pr.plan.baseline_keys() == ["loop"]
    values = {"g": -0.4} if case == "disc" else {"m": 0.5, "s": math.log(0.8), "g": -0.4}
    params = as_params({"p": {}, "q": values})
    exact_fn = _iwelbo2_disc if case == "disc" else _iwelbo2_mixed
    keys = jax.random.split(jax.random.key(2), NUM)
    v = np.asarray(jax.jit(jax.vmap(lambda k: pr.value_and_grad(params, k)[0]))(keys), np.float64)
    assert abs(v.mean() - float(jax.jit(exact_fn)(params))) < 4.5 * v.std() / math.sqrt(NUM)
    assert_unbiased(draws(pr, params, num=2 * NUM), exact_grad(exact_fn, params))


# ---------------------------------------------------------------- the objective's own random choices

OWN = """
model m():
    z ~ normal(0.0, 1.0)
    x ~ normal(z, 1.0)

guide q():
    param mu: real = 0.0
    param s: positive = 1.0
    z ~ normal(mu, s)

# E[-(e - 2)^2] = -((theta - 2)^2 + 1) with e ~ normal(theta, 1), and E[3 b] = 3 sigmoid(theta)
objective own_reparam(p, q):
    param theta: real = 0.5
    e ~ normal(theta, 1.0)
    z = simulate(q)
    return log_density(p, z) - log_density(q, z) - square(e - 2.0)

objective own_reinforce(p, q):
    param theta: real = 0.5
    e ~ normal(theta, 1.0) via reinforce
    b ~ bernoulli(sigmoid(theta)) via reinforce
    z = simulate(q)
    return log_density(p, z) - log_density(q, z) - square(e - 2.0) + 3.0 * to_real(b)
"""


@pytest.mark.parametrize("name", ["own_reparam", "own_reinforce"])
def test_objective_own_random_choices_are_unbiased(name):
    module = pp.loads(OWN)
    pr = Problem.build(module["m"], module["q"], module.objective(name), {"x": 1.2})
    params = pr.init_params(0)
    params["q"] = {"mu": jnp.asarray(0.3), "s": jnp.asarray(math.log(0.6))}
    params["_objective"] = {"theta": jnp.asarray(0.5)}

    def exact(p):
        th = p["_objective"]["theta"]
        extra = -((th - 2.0) ** 2 + 1.0) + (3.0 * jax.nn.sigmoid(th) if name == "own_reinforce" else 0.0)
        return _normal_elbo(p) + extra

    assert pr.plan.loop_reinforce == (name == "own_reinforce")
    assert_unbiased(draws(pr, params), exact_grad(exact, params))


# ---------------------------------------------------------------- located compile errors

ERRORS = """
model m(N: int):
    mu ~ normal(0.0, 1.0)
    for i in range(N):
        z[i] ~ bernoulli(0.4)
        y[i] ~ normal(mu + to_real(z[i]), 1.0)

guide no_default(N: int):
    mu ~ normal(0.0, 1.0)
    for i in range(N):
        z[i] ~ bernoulli(0.5)

guide loop_enum(N: int):
    mu ~ normal(0.0, 1.0)
    for i in range(N):
        z[i] ~ bernoulli(0.5) via enum

guide loop_mvd(N: int):
    mu ~ normal(0.0, 1.0)
    for i in range(N):
        z[i] ~ bernoulli(0.5) via mvd

guide scan_enum(N: int):
    mu ~ normal(0.0, 1.0)
    z[0] ~ bernoulli(0.5) via enum
    for i in range(1, N):
        z[i] ~ bernoulli(where(z[i - 1], 0.8, 0.2)) via enum

guide scan_mvd(N: int):
    mu ~ normal(0.0, 1.0)
    z[0] ~ bernoulli(0.5) via mvd
    for i in range(1, N):
        z[i] ~ bernoulli(where(z[i - 1], 0.8, 0.2)) via mvd

model count():
    n ~ poisson(3.0)
    y ~ normal(to_real(n), 1.0)

guide count_q():
    param r: positive = 3.0
    n ~ poisson(r)

objective nonlinear(p, q):
    z = simulate(q)
    return square(log_density(p, z) - log_density(q, z))
"""
DATA_E = {"N": 3, "y": [0.1, 1.2, 0.8]}


def _error(guide: str, objective="elbo", model="m", data=DATA_E, **kw) -> PplError:
    module = pp.loads(ERRORS, file="errors.ppl")
    obj = module.objective(objective) if objective == "nonlinear" else objective
    with pytest.raises(PplError) as info:
        Problem.build(module[model], module[guide], obj, data, **kw)
    return info.value


def _site_line(guide: str) -> int:
    """The line of the loop's `z[i] ~ ...` in `guide`."""
    rows = ERRORS.splitlines()
    start = next(i for i, row in enumerate(rows) if row.startswith(f"guide {guide}("))
    return next(i for i, row in enumerate(rows[start:], start + 1) if row.startswith("        z[i] ~"))


def test_no_sound_default_names_the_choice_and_lists_the_options():
    e = _error("no_default")
    d = e.diagnostics[0]
    assert "`z`" in d.message and "no sound default" in d.message
    assert d.span.line == _site_line("no_default")
    for option in ("via enum", "via reinforce", "via mvd", "strategies="):
        assert option in d.hint, d.hint
    e = _error("count_q", model="count", data={"y": 2.0})
    assert "`n`" in e.diagnostics[0].message and "via mvd" in e.diagnostics[0].hint
    assert "via enum" not in e.diagnostics[0].hint  # poisson has no finite support
    assert "errors.ppl" in e.render()


@pytest.mark.parametrize("guide", ["scan_enum", "scan_mvd"])
def test_enum_and_mvd_in_a_scan_loop_of_the_guide_are_refused(guide):
    d = _error(guide).diagnostics[0]
    assert "sequential loop" in d.message and "`z`" in d.message
    assert "via reinforce" in d.hint
    assert d.span.line in (_site_line(guide) - 2, _site_line(guide))  # z's first draw, z[0], or the one in the scan


@pytest.mark.parametrize("guide", ["loop_enum", "loop_mvd"])
def test_enum_and_mvd_in_a_vectorized_loop_need_a_linear_objective(guide):
    d = _error(guide, ("iwelbo", {"k": 3})).diagnostics[0]  # drawn in the objective's own loop
    assert "inside a loop" in d.message and "via reinforce" in d.hint
    d = _error(guide, "nonlinear").diagnostics[0]  # drawn once, in the guide's loop, nonlinear objective
    assert "not a sum of log_density terms" in d.message and "via reinforce" in d.hint
    assert d.span.line == _site_line(guide)


def test_unknown_strategy_and_reparam_on_a_discrete_are_refused():
    d = _error("no_default", strategies={"z": "reinforced"}).diagnostics[0]
    assert "unknown gradient strategy `reinforced`" in d.message and "reinforce" in d.hint
    d = _error("no_default", strategies={"z": "reparam"}).diagnostics[0]
    assert "cannot be reparameterized" in d.message and "`z`" in d.message
    d = _error("no_default", strategies={"mu": "enum", "z": "reinforce"}).diagnostics[0]
    assert "no finite support" in d.message and "`mu`" in d.message
    d = _error("count_q", model="count", data={"y": 2.0}, strategies={"n": "enum"}).diagnostics[0]
    assert "no finite support" in d.message
    with pytest.raises(PplError) as info:  # in the source: the checker refuses it before adev runs
        pp.loads("guide g():\n    z ~ bernoulli(0.5) via reparam\n", file="g.ppl")
    assert "g.ppl:2" in info.value.render()
    with pytest.raises(PplError) as info:
        pp.loads("guide g():\n    z ~ bernoulli(0.5) via guess\n", file="g.ppl")
    assert "g.ppl:2" in info.value.render()


# ---------------------------------------------------------------- choices downstream of a loop enum

DOWNSTREAM = """
model m(N: int):
    for i in range(N):
        z[i] ~ bernoulli(0.4)
        w[i] ~ normal(to_real(z[i]), 1.0)
        y[i] ~ normal(w[i], 1.0)

guide q(N: int):
    param g: unit[N] = 0.5
    param h: real[N] = 0.0
    for i in range(N):
        z[i] ~ bernoulli(g[i]) via enum
        w[i] ~ normal(h[i], 1.0 + 2.0 * to_real(z[i]))
"""
Y_DOWN = [0.3, 1.9, -0.2]


def _downstream_exact(p):
    g, h = jax.nn.sigmoid(p["q"]["g"]), p["q"]["h"]
    z = jnp.array([0.0, 1.0])[:, None]
    sd = 1.0 + 2.0 * z  # w ~ normal(h, sd): E log N(w; z, 1) and E log N(y; w, 1) in closed form
    lq = stats.bernoulli.logpmf(z, g)
    inner = (stats.bernoulli.logpmf(z, 0.4) - lq - LOG_2PI - 0.5 * ((h - z) ** 2 + sd**2)
             - 0.5 * ((jnp.asarray(Y_DOWN) - h) ** 2 + sd**2) + 0.5 * jnp.log(2 * jnp.pi * jnp.e * sd**2))
    return jnp.sum(jnp.exp(lq) * inner)


DOWNSTREAM_PARAMS = {"p": {}, "q": {"g": [-0.5, 0.2, 0.9], "h": [0.1, -0.3, 0.4]}}
TUPLE_OR_SET = ("compiler/adev.py check_factorizes evaluates `(None, 'reparam') | {None}` (tuple | set: "
                "TypeError) for any choice drawn after a loop enum/mvd choice in the same program")


def test_loop_enum_with_a_reparameterized_choice_downstream_is_unbiased():
    module = pp.loads(DOWNSTREAM)
    pr = Problem.build(module["m"], module["q"], "elbo", {"N": 3, "y": Y_DOWN})
    params = as_params(DOWNSTREAM_PARAMS)
    assert_unbiased(draws(pr, params), exact_grad(_downstream_exact, params))


def test_loop_enum_with_reinforce_downstream_is_refused_or_unbiased():
    module = pp.loads(DOWNSTREAM)
    try:
        pr = Problem.build(module["m"], module["q"], "elbo", {"N": 3, "y": Y_DOWN}, strategies={"w": "reinforce"})
    except PplError as e:
        assert "`w`" in e.diagnostics[0].message and "reparameterized" in e.diagnostics[0].hint
        return
    params = as_params(DOWNSTREAM_PARAMS)
    assert_unbiased(draws(pr, params), exact_grad(_downstream_exact, params))


# ---------------------------------------------------------------- choices that select a branch, and factors


MIXTURE = """
model mix(N: int):
    long ~ normal(4.0, 1.0)
    short ~ normal(2.0, 1.0)
    for i in range(N):
        z[i] ~ bernoulli(0.5)
        if z[i]:
            y[i] ~ normal(long, 0.5)
        else:
            y[i] ~ normal(short, 0.5)

guide mix_q(N: int):
    param ml: real = 4.0
    param sl: positive = 1.0
    param ms: real = 2.0
    param ss: positive = 1.0
    param g: unit[N] = 0.5
    long ~ normal(ml, sl)
    short ~ normal(ms, ss)
    for i in range(N):
        z[i] ~ bernoulli(g[i])
"""
Y_MIX = [2.1, 4.3, 3.0, 1.7]
MIX_PARAMS = {"p": {}, "q": {"ml": 3.8, "sl": -0.5, "ms": 2.2, "ss": -0.7, "g": [-1.0, 0.3, 1.2, 0.0]}}


def _normal_loglik(y, m, s, sd):
    """E log N(y; M, sd) over M ~ normal(m, s)."""
    return -jnp.log(sd) - 0.5 * LOG_2PI - ((y - m) ** 2 + s**2) / (2 * sd**2)


def _mixture_exact(factor: bool):
    def elbo(p):
        q = p["q"]
        ml, sl, ms, ss, g = q["ml"], jnp.exp(q["sl"]), q["ms"], jnp.exp(q["ss"]), jax.nn.sigmoid(q["g"])
        entropy = 0.5 * jnp.log(2 * jnp.pi * jnp.e * sl**2) + 0.5 * jnp.log(2 * jnp.pi * jnp.e * ss**2)
        total = _normal_loglik(4.0, ml, sl, 1.0) + _normal_loglik(2.0, ms, ss, 1.0) + entropy
        z = jnp.array([0.0, 1.0])[:, None]
        y = jnp.asarray(Y_MIX)
        lq = stats.bernoulli.logpmf(z, g)
        lik = jnp.where(z > 0, _normal_loglik(y, ml, sl, 0.5), _normal_loglik(y, ms, ss, 0.5))
        lik = lik + (-0.3 * z * y if factor else 0.0)
        return total + jnp.sum(jnp.exp(lq) * (math.log(0.5) - lq + lik))

    return elbo


@pytest.mark.parametrize("strategy", ["reinforce", "mvd", "enum"])
def test_a_choice_that_selects_a_branch_is_charged_for_the_branch(strategy):
    module = pp.loads(MIXTURE)
    pr = Problem.build(module["mix"], module["mix_q"], "elbo", {"N": 4, "y": Y_MIX}, strategies={"z": strategy})
    params = as_params(MIX_PARAMS)
    assert_unbiased(draws(pr, params), exact_grad(_mixture_exact(False), params))


BRANCH_TOP = """
model m():
    z ~ bernoulli(0.5)
    if z:
        y ~ normal(3.0, 1.0)
    else:
        y ~ normal(0.0, 1.0)

guide q():
    param g: unit = 0.5
    z ~ bernoulli(g)
"""

@pytest.mark.parametrize("strategy", [
    "reinforce", "mvd", "enum"])
def test_a_top_level_choice_that_selects_a_branch(strategy):
    """mvd and enum at the top level re-run the whole objective, so they see the branch; reinforce
    relies on the pruned cost."""
    module = pp.loads(BRANCH_TOP)
    pr = Problem.build(module["m"], module["q"], "elbo", {"y": 1.0}, strategies={"z": strategy})
    params = as_params({"p": {}, "q": {"g": 0.3}})

    def exact(p):
        g = jax.nn.sigmoid(p["q"]["g"])
        z = jnp.array([0.0, 1.0])
        lq = stats.bernoulli.logpmf(z, g)
        return jnp.sum(jnp.exp(lq) * (math.log(0.5) + stats.norm.logpdf(1.0, 3.0 * z, 1.0) - lq))

    assert_unbiased(draws(pr, params), exact_grad(exact, params))


MIXTURE_FACTOR = MIXTURE.replace("""        if z[i]:
            y[i] ~ normal(long, 0.5)
        else:
            y[i] ~ normal(short, 0.5)
""", """        y[i] ~ normal(where(z[i], long, short), 0.5)
        factor(-0.3 * to_real(z[i]) * y[i])
""")


def test_a_per_iteration_factor_is_a_cost_of_reinforce():
    """The same mixture written with `where` (a data dependence) and a factor per iteration."""
    module = pp.loads(MIXTURE_FACTOR)
    pr = Problem.build(module["mix"], module["mix_q"], "elbo", {"N": 4, "y": Y_MIX}, strategies={"z": "reinforce"})
    (site,) = pr.plan.sites
    assert {c.node for c in site.costs} == {"z", "y", "factor0"}
    params = as_params(MIX_PARAMS)
    assert_unbiased(draws(pr, params), exact_grad(_mixture_exact(True), params))


@pytest.mark.parametrize("strategy", ["mvd", "enum"])
def test_a_per_iteration_factor_factorizes_for_enum_and_mvd(strategy):
    module = pp.loads(MIXTURE_FACTOR)
    pr = Problem.build(module["mix"], module["mix_q"], "elbo", {"N": 4, "y": Y_MIX}, strategies={"z": strategy})
    params = as_params(MIX_PARAMS)
    assert_unbiased(draws(pr, params), exact_grad(_mixture_exact(True), params))


NOT_PER_ITERATION = """
model m(N: int):
    for i in range(N):
        z[i] ~ bernoulli(0.4)
    n ~ poisson(1.0 + to_real(sum(z)))

guide q(N: int):
    param g: unit[N] = 0.5
    for i in range(N):
        z[i] ~ bernoulli(g[i])
"""


def test_costs_that_do_not_factorize_per_iteration():
    """n depends on every z[i]: reinforce charges each z[i] the whole n term (exact: the 8 assignments
    summed); enum and mvd refuse, naming the term."""
    module = pp.loads(NOT_PER_ITERATION, file="sum.ppl")
    data = {"N": 3, "n": 3}

    def exact(p):
        g = jax.nn.sigmoid(p["q"]["g"])
        z = jnp.array(list(itertools.product([0.0, 1.0], repeat=3)))
        lq = jnp.sum(stats.bernoulli.logpmf(z, g), axis=1)
        lp = jnp.sum(stats.bernoulli.logpmf(z, 0.4), axis=1) + stats.poisson.logpmf(3, 1.0 + jnp.sum(z, axis=1))
        return jnp.sum(jnp.exp(lq) * (lp - lq))

    pr = Problem.build(module["m"], module["q"], "elbo", data, strategies={"z": "reinforce"})
    (site,) = pr.plan.sites
    assert {(c.node, c.aligned) for c in site.costs} == {("z", True), ("n", False)}
    params = as_params({"p": {}, "q": {"g": [-0.5, 0.4, 1.1]}})
    assert_unbiased(draws(pr, params), exact_grad(exact, params))
    for strategy in ("enum", "mvd"):
        with pytest.raises(PplError) as info:
            Problem.build(module["m"], module["q"], "elbo", data, strategies={"z": strategy})
        d = info.value.diagnostics[0]
        assert "factorize per iteration" in d.message and "`n`" in d.message and d.span.line == 10


# ---------------------------------------------------------------- the user-facing check

COIN = """
model coin(N: int):
    z ~ bernoulli(0.3)
    mu ~ normal(0.0, 1.0)
    for i in range(N):
        y[i] ~ normal(mu + 2.0 * to_real(z), 1.0)

guide coin_q():
    param g: unit = 0.5
    param m: real = 0.0
    param s: positive = 1.0
    z ~ bernoulli(g) via reinforce
    mu ~ normal(m, s)
"""
COIN_DATA = {"N": 3, "y": [1.5, 2.2, 0.9]}


def _coin_exact(p):
    q = p["q"]
    g, m, s = jax.nn.sigmoid(q["g"]), q["m"], jnp.exp(q["s"])
    z = jnp.array([0.0, 1.0])
    lq = stats.bernoulli.logpmf(z, g)
    y = jnp.asarray(COIN_DATA["y"])
    lik = jnp.sum(-0.5 * LOG_2PI - 0.5 * ((y[None, :] - m - 2.0 * z[:, None]) ** 2 + s**2), axis=1)
    return (jnp.sum(jnp.exp(lq) * (stats.bernoulli.logpmf(z, 0.3) + lik - lq))
            - 0.5 * LOG_2PI - 0.5 * (m**2 + s**2) + 0.5 * jnp.log(2 * jnp.pi * jnp.e * s**2))


@pytest.fixture(scope="module")
def coin():
    module = pp.loads(COIN, file="coin.ppl")
    return module["coin"], module["coin_q"]


def test_check_gradient_passes_against_an_exact_gradient(coin):
    model, guide = coin
    check = check_gradient(model, guide, "elbo", COIN_DATA, exact=jax.jit(jax.grad(_coin_exact)), num_estimates=NUM)
    assert check.ok, check.report()
    assert check.reference_kind == "the exact gradient" and check.num_estimates == NUM
    assert check.strategies["q/z"] == "reinforce" and check.strategies["q/mu"] == "reparam"
    assert set(check.z["q"]) == {"g", "m", "s"} and check.max_abs_z < 4.5
    assert np.all(check.se["q"]["g"] > 0)
    report = check.report()
    assert "q/g" in report and report.splitlines()[-1].startswith("OK")


@pytest.mark.parametrize("strategy", ["enum", "mvd"])
def test_a_top_level_choice_observed_in_a_loop(coin, strategy):
    """z is drawn once and read by every iteration of the model's loop (reinforce: the test above)."""
    model, guide = coin
    check = check_gradient(model, guide, "elbo", COIN_DATA, exact=jax.jit(jax.grad(_coin_exact)),
                           strategies={"z": strategy}, num_estimates=NUM, seed=4)
    assert check.ok, check.report()
    assert check.strategies["q/z"] == strategy


def test_check_gradient_builds_an_enum_reference_and_fails_a_biased_estimator(coin):
    model, guide = coin
    check = check_gradient(model, guide, "elbo", COIN_DATA, num_estimates=2000, seed=1)
    assert check.ok, check.report()
    assert check.reference_strategies["q/z"] == "enum" and check.strategies["q/z"] == "reinforce"
    assert np.all(check.reference_se["q"]["m"] > 0)

    # a hand-made estimator that forgets the score-function term of z (the gradient of one run's
    # value, z held fixed): biased in g
    pr = Problem.build(model, guide, "elbo", COIN_DATA)

    def biased(p, k):
        return jax.grad(lambda p: pr.runner(k, p, {})[0])(p)

    bad = check_gradient(model, guide, "elbo", COIN_DATA, estimate=biased, num_estimates=2000, seed=1)
    assert not bad.ok
    assert abs(bad.z["q"]["g"]) > 4.5 and "biased?" in bad.report() and bad.report().splitlines()[-1].startswith(
        "FAILED")


def test_check_gradient_fails_against_a_shifted_exact_gradient(coin):
    model, guide = coin

    def shifted(p):
        g = jax.jit(jax.grad(_coin_exact))(p)
        g["q"]["g"] = g["q"]["g"] + 1.0  # about 10 standard errors at 2000 estimates
        return g

    check = check_gradient(model, guide, "elbo", COIN_DATA, exact=shifted, num_estimates=2000)
    assert not check.ok
    worst = max(check.entries, key=lambda e: e.max_abs_z)
    assert (worst.role, worst.address) == ("q", "g")
    assert abs(check.z["q"]["m"]) < 4.5 and abs(check.z["q"]["s"]) < 4.5


def test_check_gradient_with_automatic_guide_and_reparam_reference():
    module = pp.loads(REPARAM)
    check = check_gradient(module["normal_normal"], "mean_field", "elbo", {"x": 1.2}, reference="reparam",
                           num_estimates=500, seed=3)
    assert check.ok, check.report()
    assert "same strategies" in check.reference_kind  # nothing to change: only Monte Carlo consistency
    with pytest.raises(PplError):
        check_gradient(module["normal_normal"], "mean_field", "elbo", {"x": 1.2}, reference="exact")


def test_log_density_of_a_simulated_trace_reuses_the_simulation():
    """log_density(q, z) of z = simulate(q) takes the density the simulation computed: the guide
    runs once per estimate (a network in it is applied and differentiated once), and the estimate
    is unchanged (checked against the exact gradient)."""
    calls = []

    def tap(x):
        calls.append(1)
        return x

    src = """
model m():
    mu ~ normal(0.0, 2.0)
    y ~ normal(mu, 1.0)

guide q():
    param a: real = 0.3
    param s: positive = 0.7
    mu ~ normal(tap(a), s)
"""
    module = pp.loads(src, hosts={"tap": tap})
    pr = Problem.build(module["m"], module["q"], "elbo", {"y": 1.2})
    params = as_params({"p": {}, "q": {"a": 0.3, "s": math.log(0.7)}})
    jax.jit(lambda p, k: pr.value_and_grad(p, k)).lower(params, jax.random.key(0))
    assert len(calls) == 1

    def exact(p):  # E_q[log N(mu; 0, 2) + log N(1.2; mu, 1)] + H[q]
        a, s = p["q"]["a"], jnp.exp(p["q"]["s"])
        return (stats.norm.logpdf(0.0, 0.0, 2.0) - (a**2 + s**2) / 8 - 0.5 * LOG_2PI - ((1.2 - a) ** 2 + s**2) / 2
                + 0.5 * jnp.log(2 * jnp.pi * jnp.e * s**2))

    assert_unbiased(draws(pr, params), exact_grad(exact, params))
