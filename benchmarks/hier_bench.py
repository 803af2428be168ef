"""Log density and gradient of a non-centred hierarchical model (`benchmarks/models/hier.ppl`) in
unconstrained coordinates, against hand-written JAX with the same bijections and log-Jacobians."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from harness import Case, assert_close
from jax.scipy.stats import norm
from pplang.stdlib import constraints, distributions

import pplang as pp

MODULE = pp.load(str(Path(__file__).parent / "models" / "hier.ppl"))
LOG2 = math.log(2.0)


def make_data(n: int, groups: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, size=n).astype(np.int32)
    effects = rng.normal(size=groups)
    y = (1.0 + 2.0 * effects[g] + 0.5 * rng.normal(size=n)).astype(np.float32)
    return {"N": n, "J": groups, "g": g, "y": y}


def baseline(data: dict) -> Callable:
    """value_and_grad of the log joint over unconstrained (mu, log tau, log sigma, eta): positive
    parameters are exp(u), whose log-Jacobian is u (as pplang's `positive` constraint)."""
    g, y = jnp.asarray(data["g"]), jnp.asarray(data["y"])

    def log_density(u: dict) -> jax.Array:
        mu, eta = u["mu"], u["eta"]
        tau, sigma = jnp.exp(u["tau"]), jnp.exp(u["sigma"])
        return (norm.logpdf(mu, 0.0, 5.0)
                + LOG2 + norm.logpdf(tau, 0.0, 5.0) + u["tau"]
                + LOG2 + norm.logpdf(sigma, 0.0, 5.0) + u["sigma"]
                + jnp.sum(norm.logpdf(eta))
                + jnp.sum(norm.logpdf(y, mu + tau * eta[g], sigma)))

    return jax.value_and_grad(log_density)


def pplang(data: dict) -> Callable:
    return jax.value_and_grad(MODULE["hier"].log_density_fn(data, unconstrained=True))


def point(groups: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"mu": jnp.float32(rng.normal()), "tau": jnp.float32(rng.normal(scale=0.5)),
            "sigma": jnp.float32(rng.normal(scale=0.5)), "eta": jnp.asarray(rng.normal(size=groups), jnp.float32)}


def check(groups: int) -> Callable[[Callable, Callable], float]:
    """Same value and gradient at a few random unconstrained points. The hand-written bijection
    must be the one pplang uses; a change in the stdlib shows up here rather than as a wrong timing."""
    u = jnp.linspace(-3.0, 3.0, 7)
    positive = constraints.positive
    assert distributions.HalfNormal.support is positive, "half_normal's support is no longer `positive`"
    assert np.allclose(positive.forward(u), jnp.exp(u)) and np.allclose(positive.log_abs_det_jacobian(u), u), \
        "pplang's `positive` bijection is no longer exp; update the hand-written one"

    def run(pp_fn: Callable, base_fn: Callable) -> float:
        err = 0.0
        for seed in range(3):
            u = point(groups, seed)
            (vp, gp), (vb, gb) = pp_fn(u), base_fn(u)
            err = max(err, assert_close(vp, vb, 1e-5, "log density"))
            for a in u:
                err = max(err, assert_close(gp[a], gb[a], 1e-5, f"gradient wrt {a}"))
        return err

    return run


def cases(n: int, groups: int, budget_s: float) -> dict:
    data = make_data(n, groups)
    return {"hier_grad": [Case(f"hier_grad J={groups} N={n}", "hier_grad", lambda: pplang(data),
                               lambda: baseline(data), (point(groups, 0),), check(groups), budget_s,
                               "value_and_grad, unconstrained (exp bijection + log-Jacobian)")]}
