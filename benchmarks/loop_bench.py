"""Linear regression with a long independent loop (`benchmarks/models/loop.ppl`): simulation and log
density against hand-written `jax.random` / `jax.scipy.stats` code, and compile time against length."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from harness import Case, assert_close
from jax.scipy.stats import norm

import pplang as pp

MODULE = pp.load(str(Path(__file__).parent / "models" / "loop.ppl"))
LOG2 = math.log(2.0)
LATENTS = ("mu", "beta", "sigma")


def make_data(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n).astype(np.float32)
    y = (1.0 + 0.5 * x + 0.8 * rng.normal(size=n)).astype(np.float32)
    return {"N": n, "x": x, "y": y}


# ---------------------------------------------------------------- hand-written JAX


def log_joint(mu: jax.Array, beta: jax.Array, sigma: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    return (norm.logpdf(mu, 0.0, 10.0) + norm.logpdf(beta, 0.0, 10.0) + LOG2 + norm.logpdf(sigma, 0.0, 5.0)
            + jnp.sum(norm.logpdf(y, mu + beta * x, sigma)))


def baseline_simulate(x: np.ndarray) -> Callable:
    x = jnp.asarray(x)

    def simulate(key: jax.Array) -> tuple[dict, jax.Array]:
        k_mu, k_beta, k_sigma, k_y = jax.random.split(key, 4)
        mu = 10.0 * jax.random.normal(k_mu)
        beta = 10.0 * jax.random.normal(k_beta)
        sigma = 5.0 * jnp.abs(jax.random.normal(k_sigma))
        y = mu + beta * x + sigma * jax.random.normal(k_y, x.shape)
        return {"beta": beta, "mu": mu, "sigma": sigma, "y": y}, log_joint(mu, beta, sigma, x, y)

    return simulate


def baseline_log_density(x: np.ndarray, y: np.ndarray) -> Callable:
    x, y = jnp.asarray(x), jnp.asarray(y)

    def log_density(v: dict) -> jax.Array:
        return log_joint(v["mu"], v["beta"], v["sigma"], x, y)

    return log_density


# ---------------------------------------------------------------- agreement


def check_simulate(data: dict, num_keys: int) -> Callable[[Callable, Callable], float]:
    """Both samplers return the same sites with the same shapes and dtypes; each one's log density is
    the other side's density of its draw; and over `num_keys` draws both match the prior's moments
    (standardized latents and residuals; tolerance 5 standard errors)."""
    x = data["x"]

    def check(pp_fn: Callable, base_fn: Callable) -> float:
        key = jax.random.key(1)
        (vp, lpp), (vb, lpb) = pp_fn(key), base_fn(key)
        assert sorted(vp) == sorted(vb), f"sites {sorted(vp)} vs {sorted(vb)}"
        for a in vp:
            assert (vp[a].shape, vp[a].dtype) == (vb[a].shape, vb[a].dtype), a
        err = assert_close(lpp, log_joint(vp["mu"], vp["beta"], vp["sigma"], x, vp["y"]), 1e-5,
                           "log density of pplang's draw")
        pp_ld = MODULE["loopreg"].log_density_fn({**data, "y": vb["y"]})
        err = max(err, assert_close(pp_ld({a: vb[a] for a in LATENTS}), lpb, 1e-5, "log density of baseline's draw"))
        keys = jax.random.split(jax.random.key(2), num_keys)
        for side, fn in (("pplang", pp_fn), ("baseline", base_fn)):
            v, _ = jax.jit(jax.vmap(fn))(keys)
            z = (v["y"] - v["mu"][:, None] - v["beta"][:, None] * x) / v["sigma"][:, None]
            for what, s, mean, var in (("mu", v["mu"] / 10.0, 0.0, 1.0), ("beta", v["beta"] / 10.0, 0.0, 1.0),
                                       ("sigma", v["sigma"] / 5.0, math.sqrt(2 / math.pi), 1 - 2 / math.pi),
                                       ("y residual", z.ravel(), 0.0, 1.0)):
                s = np.asarray(s, np.float64)
                se = math.sqrt(var / s.size)
                assert abs(s.mean() - mean) < 5 * se, f"{side} {what}: mean {s.mean():.4f}, expected {mean:.4f}"
                se_var = math.sqrt(max(np.mean((s - s.mean()) ** 4) - s.var() ** 2, 0.0) / s.size)
                assert abs(s.var() - var) < 5 * se_var, f"{side} {what}: variance {s.var():.4f}, expected {var:.4f}"
        return err

    return check


def check_log_density(data: dict) -> Callable[[Callable, Callable], float]:
    def check(pp_fn: Callable, base_fn: Callable) -> float:
        rng = np.random.default_rng(3)
        err = 0.0
        for _ in range(3):
            v = {"mu": jnp.float32(rng.normal()), "beta": jnp.float32(rng.normal()),
                 "sigma": jnp.float32(rng.uniform(0.3, 2.0))}
            err = max(err, assert_close(pp_fn(v), base_fn(v), 1e-5, "log density"))
        return err

    return check


# ---------------------------------------------------------------- cases


def latent_point() -> dict:
    return {"mu": jnp.float32(0.9), "beta": jnp.float32(0.4), "sigma": jnp.float32(0.7)}


def simulate_case(n: int, budget_s: float, num_keys: int) -> Case:
    data = make_data(n)
    args = {"N": n, "x": data["x"]}
    return Case(f"loop_simulate N={n}", "loop_simulate", lambda: MODULE["loopreg"].simulate_fn(args),
                lambda: baseline_simulate(data["x"]), (jax.random.key(0),), check_simulate(data, num_keys),
                budget_s, "values and log density of a prior draw; baseline draws y with one batched call")


def log_density_case(n: int, budget_s: float, name: str, group: str, notes: str = "") -> Case:
    data = make_data(n)
    return Case(name, group, lambda: MODULE["loopreg"].log_density_fn(data),
                lambda: baseline_log_density(data["x"], data["y"]), (latent_point(),), check_log_density(data),
                budget_s, notes)


def cases(n: int, lengths: tuple[int, ...], budget_s: float, length_budget_s: float, num_keys: int) -> dict:
    """The loop benchmarks by group name."""
    return {
        "loop_simulate": [simulate_case(n, budget_s, num_keys)],
        "loop_log_density": [log_density_case(n, budget_s, f"loop_log_density N={n}", "loop_log_density",
                                              "constrained space, y observed")],
        "compile_vs_length": [log_density_case(k, length_budget_s, f"compile_vs_length N={k}", "compile_vs_length",
                                               "log density as above") for k in lengths],
    }
