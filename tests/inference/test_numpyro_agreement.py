"""pplang's objective estimates agree with NumPyro's on the same model, guide and guide parameters.

Three small models are written twice, in pplang and in NumPyro: a normal mean with a normal prior
(conjugate), a positive scale with a half-normal prior and a log-normal guide, and a logistic
regression with a mean-field normal guide. With the guide's parameters set to the same values on
both sides, the expected ELBO and the expected Renyi bound (alpha = 0.5, k draws) of pplang's
estimator must equal those of NumPyro's `Trace_ELBO` and `RenyiELBO` (their negated losses). Both
are Monte Carlo estimates, so each side averages many independent ones and the two averages must
agree within 4.5 standard errors of their difference. For the first two models the ELBO is also
known exactly (in closed form; by quadrature over log sigma), and both sides must agree with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pplang.stdlib.constraints import CONSTRAINTS
from scipy import integrate, stats

import pplang as pp
from pplang.inference.variational import Problem

numpyro = pytest.importorskip("numpyro")
dist = pytest.importorskip("numpyro.distributions")
infer = pytest.importorskip("numpyro.infer")

ESTIMATES = 4000  # independent estimates averaged on each side
Z = 4.5
ALPHA, K = 0.5, 4  # the Renyi bound's alpha and number of draws

SOURCE = """
model normal_mean(N: int):
    mu ~ normal(0.0, 2.0)
    for i in range(N):
        y[i] ~ normal(mu, 1.0)

guide normal_mean_q():
    param m = 0.0
    param s: positive = 1.0
    mu ~ normal(m, s)

model scale(N: int):
    sigma ~ half_normal(2.0)
    for i in range(N):
        y[i] ~ normal(0.0, sigma)

guide scale_q():
    param m = 0.0
    param s: positive = 1.0
    sigma ~ lognormal(m, s)

model logistic(N: int, D: int, x: matrix[N, D]):
    w ~ normal(zeros(D), 1.0)
    b ~ normal(0.0, 2.0)
    for i in range(N):
        y[i] ~ bernoulli(logits=dot(x[i], w) + b)

guide logistic_q(D: int):
    param wm: real[D] = 0.0
    param ws: positive[D] = 1.0
    param bm = 0.0
    param bs: positive = 1.0
    w ~ normal(wm, ws)
    b ~ normal(bm, bs)
"""


# ---------------------------------------------------------------- the same models in NumPyro


def np_normal_mean(N: int, y: Any) -> None:
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    with numpyro.plate("i", N):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def np_normal_mean_q(N: int, y: Any) -> None:
    numpyro.sample("mu", dist.Normal(numpyro.param("m", 0.0), numpyro.param("s", 1.0)))


def np_scale(N: int, y: Any) -> None:
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    with numpyro.plate("i", N):
        numpyro.sample("y", dist.Normal(0.0, sigma), obs=y)


def np_scale_q(N: int, y: Any) -> None:
    numpyro.sample("sigma", dist.LogNormal(numpyro.param("m", 0.0), numpyro.param("s", 1.0)))


def np_logistic(N: int, D: int, x: Any, y: Any) -> None:
    w = numpyro.sample("w", dist.Normal(jnp.zeros(D), 1.0).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 2.0))
    with numpyro.plate("i", N):
        numpyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)


def np_logistic_q(N: int, D: int, x: Any, y: Any) -> None:
    numpyro.sample("w", dist.Normal(numpyro.param("wm", jnp.zeros(D)), numpyro.param("ws", jnp.ones(D))).to_event(1))
    numpyro.sample("b", dist.Normal(numpyro.param("bm", 0.0), numpyro.param("bs", 1.0)))


# ---------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """A model and guide in both languages, data, the NumPyro functions' arguments, and the guide's
    parameters (constrained) with their constraints."""

    model: str
    args: tuple[str, ...]
    np_model: Callable
    np_guide: Callable
    data: dict[str, Any]
    params: dict[str, Any]
    constraints: dict[str, str]

    def pplang_params(self) -> dict[str, dict[str, Any]]:
        """The guide's parameters as pplang takes them: by role, unconstrained."""
        return {"p": {}, "q": {a: CONSTRAINTS[self.constraints[a]].inverse(jnp.asarray(v, jnp.float32))
                               for a, v in self.params.items()}}


def make_cases() -> dict[str, Case]:
    rng = np.random.default_rng(20240611)
    y_mean = rng.normal(1.5, 1.0, 6).round(3)
    y_scale = rng.normal(0.0, 0.7, 8).round(3)
    n, d = 20, 3
    x = rng.normal(0.0, 1.0, (n, d)).round(3)
    y_logistic = (rng.random(n) < 1 / (1 + np.exp(-(x @ np.array([1.0, -0.5, 0.3]) + 0.2)))).astype(np.int32)
    return {
        "normal_mean": Case("normal_mean", ("N", "y"), np_normal_mean, np_normal_mean_q, {"N": 6, "y": y_mean},
                            {"m": 0.8, "s": 0.6}, {"m": "real", "s": "positive"}),
        "scale": Case("scale", ("N", "y"), np_scale, np_scale_q, {"N": 8, "y": y_scale},
                      {"m": -0.2, "s": 0.4}, {"m": "real", "s": "positive"}),
        "logistic": Case("logistic", ("N", "D", "x", "y"), np_logistic, np_logistic_q,
                         {"N": n, "D": d, "x": x, "y": y_logistic},
                         {"wm": np.array([0.6, -0.3, 0.2]), "ws": np.array([0.5, 0.4, 0.6]), "bm": 0.1, "bs": 0.5},
                         {"wm": "real", "ws": "positive", "bm": "real", "bs": "positive"}),
    }


CASES = make_cases()
OBJECTIVES = {"elbo": ("elbo", lambda: infer.Trace_ELBO()),
              "renyi": (("renyi", {"k": K, "alpha": ALPHA}), lambda: infer.RenyiELBO(alpha=ALPHA, num_particles=K))}


@cache
def module() -> pp.Module:
    return pp.loads(SOURCE)


def pplang_estimates(case: Case, objective: Any, seed: int) -> np.ndarray:
    pr = Problem.build(module()[case.model], module()[f"{case.model}_q"], objective, case.data)
    params = case.pplang_params()
    keys = jax.random.split(jax.random.key(seed), ESTIMATES)
    return np.asarray(jax.jit(jax.vmap(lambda k: pr.value_and_grad(params, k)[0]))(keys), np.float64)


def numpyro_estimates(case: Case, loss: Any, seed: int) -> np.ndarray:
    params = {a: jnp.asarray(v, jnp.float32) for a, v in case.params.items()}
    args = [jnp.asarray(v) if isinstance(v, np.ndarray) else v for v in (case.data[a] for a in case.args)]
    keys = jax.random.split(jax.random.key(seed), ESTIMATES)

    def one(key: Any) -> Any:
        return -loss.loss(key, params, case.np_model, case.np_guide, *args)

    return np.asarray(jax.jit(jax.vmap(one))(keys), np.float64)


def mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size))


@pytest.mark.parametrize("objective", list(OBJECTIVES))
@pytest.mark.parametrize("case", list(CASES))
def test_objective_agrees_with_numpyro(case: str, objective: str) -> None:
    c = CASES[case]
    ours, theirs = OBJECTIVES[objective]
    a, a_se = mean_se(pplang_estimates(c, ours, seed=1))
    b, b_se = mean_se(numpyro_estimates(c, theirs(), seed=2))
    assert a_se > 0 and b_se > 0  # both are Monte Carlo estimates here, so a zero spread is a bug
    tol = Z * math.hypot(a_se, b_se)
    assert abs(a - b) < tol, f"pplang {a:.4f} (se {a_se:.4f}) vs NumPyro {b:.4f} (se {b_se:.4f})"


def exact_elbo(c: Case) -> float:
    """The ELBO of the normal-mean case in closed form; of the scale case by quadrature over log sigma."""
    m, s = c.params["m"], c.params["s"]
    y = np.asarray(c.data["y"], float)
    if c.model == "normal_mean":  # mu ~ normal(0, 2), y_i ~ normal(mu, 1), q = normal(m, s)
        e_prior = -0.5 * math.log(2 * math.pi * 4.0) - (m * m + s * s) / 8.0
        e_lik = float(np.sum(-0.5 * math.log(2 * math.pi) - 0.5 * ((y - m) ** 2 + s * s)))
        return e_prior + e_lik + 0.5 * math.log(2 * math.pi * math.e * s * s)

    def integrand(u: float) -> float:  # u = log sigma is normal(m, s) under q
        sigma = math.exp(u)
        log_p = stats.halfnorm.logpdf(sigma, scale=2.0) + stats.norm.logpdf(y, 0.0, sigma).sum()
        return stats.norm.pdf(u, m, s) * (log_p - stats.lognorm.logpdf(sigma, s, scale=math.exp(m)))

    return integrate.quad(integrand, m - 12 * s, m + 12 * s, limit=200)[0]


@pytest.mark.parametrize("case", ["normal_mean", "scale"])
def test_elbo_exact(case: str) -> None:
    """Both sides' ELBO estimates average to the exact value."""
    c = CASES[case]
    exact = exact_elbo(c)
    for est in (pplang_estimates(c, "elbo", seed=3), numpyro_estimates(c, infer.Trace_ELBO(), seed=4)):
        mean, se = mean_se(est)
        assert abs(mean - exact) < Z * se, f"{mean:.4f} (se {se:.4f}) vs exact {exact:.4f}"
