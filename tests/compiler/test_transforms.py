"""The core transformations (simulate, log_density, importance, unconstrained log density) on models
of every shape the compiler handles: straight-line code, vectorized loops, nested loops, scan loops
with carried state, traced and static branches, submodels, factor and parameters.

Each model's log density is checked against an independent hand computation with scipy, which is
what catches wrong indexing, wrong carried state and wrong masking in branches; the others check
that the transformations agree with each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pplang.stdlib import constraints as C
from scipy import special, stats

import pplang as pp

Values = dict[str, np.ndarray]

# One model per text, so a model the compiler rejects fails only its own tests.
SUB = """
model sub(s: real):
    a ~ normal(0.0, s)
    h ~ half_normal(s)
    return a * h
"""

MODELS: dict[str, str] = {
    "scalars": """
model scalars():
    mu ~ normal(1.0, 2.0)
    sigma ~ gamma(2.0, 3.0)
    p ~ beta(2.0, 5.0)
    w ~ dirichlet([1.0, 2.0, 3.0])
    c ~ categorical(w)
    b ~ bernoulli(p)
    k ~ poisson(exp(mu / 4.0))
    u ~ uniform(mu - 1.0, mu + 2.0)
    y ~ normal(mu + w[c], sigma)
    t ~ cauchy(mu, sigma)
    factor(-0.5 * square(t - y))
    return mu + t
""",
    "linreg": """
model linreg(N: int, x: vector[N]):
    alpha ~ normal(0.0, 10.0)
    beta ~ normal(0.0, 10.0)
    sigma ~ half_normal(5.0)
    for i in range(N):
        mu[i] = alpha + beta * x[i]
        y[i] ~ normal(mu[i], sigma)
    q ~ normal(mean(mu), 1.0)
    return mu
""",
    "linreg_vec": """
model linreg_vec(N: int, x: vector[N]):
    alpha ~ normal(0.0, 10.0)
    beta ~ normal(0.0, 10.0)
    sigma ~ half_normal(5.0)
    y ~ normal(alpha + beta * x, sigma)
""",
    "hier": """
model hier(N: int, alpha: vector[3]):
    mu ~ normal(0.0, 1.0)
    for i in range(N):
        s[i] ~ half_normal(1.0)
        th[i] ~ dirichlet(alpha)
        c[i] ~ categorical(th[i])
        lo[i] ~ uniform(mu - 1.0, mu + s[i])
        y[i] ~ normal(mu + th[i, c[i]], s[i])
        k[i] ~ bernoulli(sigmoid(y[i]))
""",
    "grid": """
model grid(R: int, C: int):
    m ~ normal(0.0, 1.0)
    for r in range(R):
        row[r] ~ normal(m, 1.0)
        for c in range(C):
            cell[r, c] ~ normal(row[r] + 0.1 * c, 1.0 + r)
""",
    "ar1": """
model ar1(T: int):
    rho ~ uniform(-1.0, 1.0)
    x[0] ~ normal(0.0, 1.0)
    for t in range(1, T):
        x[t] ~ normal(rho * x[t - 1], 1.0)
""",
    "vol": """
model vol(T: int):
    v[0] ~ lognormal(0.0, 1.0)
    y[0] ~ normal(0.0, v[0])
    for t in range(1, T):
        v[t] ~ lognormal(log(v[t - 1]), 0.5)
        y[t] ~ normal(0.0, v[t])
""",
    "hmm": """
model hmm(T: int, K: int, A: matrix[K, K], pi0: simplex[K], mus: vector[K]):
    z[0] ~ categorical(pi0)
    y[0] ~ normal(mus[z[0]], 1.0)
    for t in range(1, T):
        z[t] ~ categorical(A[z[t - 1]])
        y[t] ~ normal(mus[z[t]], 1.0)
""",
    "rw": """
model rw(T: int):
    s = 0.0
    for t in range(T):
        e[t] ~ normal(0.0, 1.0)
        s = s + e[t]
    total ~ normal(s, 0.1)
""",
    "mix": """
model mix(N: int):
    w ~ beta(2.0, 2.0)
    m1 ~ normal(-2.0, 1.0)
    m2 ~ normal(2.0, 1.0)
    for i in range(N):
        z[i] ~ bernoulli(w)
        if z[i] == 1:
            y[i] ~ normal(m1, 1.0)
        else:
            y[i] ~ normal(m2, 0.5)
""",
    "branchy": """
model branchy(N: int):
    p ~ uniform(0.0, 1.0)
    for i in range(N):
        z[i] ~ bernoulli(p)
        m = 0.0
        if z[i]:
            m = 3.0
        y[i] ~ normal(m, 1.0)
""",
    "counter": """
model counter(T: int):
    p ~ uniform(0.1, 0.9)
    s = 0.0
    for t in range(T):
        z[t] ~ bernoulli(p)
        if z[t]:
            s = s + 1.0
        y[t] ~ normal(s, 1.0)
""",
    "states": """
model states(T: int, K: int):
    for k in range(K):
        x[k, 0] ~ normal(0.0, 1.0)
        for t in range(1, T):
            x[k, t] ~ normal(0.9 * x[k, t - 1] + 1.0, 0.5)
""",
    "dyn": """
model dyn(T: int, K: int):
    x[0] ~ normal(zeros(K), 1.0)
    for t in range(1, T):
        for k in range(K):
            x[t, k] ~ normal(0.5 * x[t - 1, k], 1.0)
""",
    "dyn2": """
model dyn2(T: int, K: int):
    prev = zeros(K)
    for t in range(T):
        for k in range(K):
            x[t, k] ~ normal(0.5 * prev[k] + k, 1.0)
        prev = x[t]
""",
    "misc": """
model misc(N: int, x: vector[N]):
    a ~ normal(0.0, 1.0)
    v ~ normal(zeros(3), 1.0)
    m = x[1:N]
    c = a if a > 0.0 else -a
    for i in range(N - 1):
        d[i] ~ normal(m[i] - x[i] + c, 1.0 + 0.5 * i)
    k ~ categorical([0.2, 0.3, 0.5])
    if k == 0:
        w = -1.0
    elif k == 1:
        w = 0.0
    else:
        w = 2.0
    e ~ normal(w + dot(v, [1.0, 2.0, 3.0]), 1.0)
    z ~ bernoulli(0.4) via enum
    f ~ normal(where(z, 1.0, -1.0) * sum(v) + x.shape[0], 1.0)
    return size(x)
""",
    "corr": """
model corr(N: int):
    L ~ lkj_cholesky(3, 2.0)
    s ~ half_normal(1.0)
    for i in range(N):
        y[i] ~ multivariate_normal(zeros(3), scale_tril=s * L)
""",
    "lkj": """
model lkj():
    L ~ lkj_cholesky(3, 2.0)
    w ~ dirichlet([2.0, 1.0, 1.0, 3.0])
""",
    "top": SUB + """
model top(N: int):
    g ~ half_normal(1.0)
    u ~ sub(g)
    v ~ sub(2.0)
    for i in range(N):
        y[i] ~ normal(u + v, 1.0)
    return u - v
""",
}

_MODULES: dict[str, pp.Module] = {}


def model(name: str) -> pp.Model:
    if name not in _MODULES:
        _MODULES[name] = pp.loads(MODELS[name], file=f"<{name}>")
    return _MODULES[name][name]


def f64(values: dict[str, Any]) -> Values:
    return {a: np.asarray(v, np.float64) for a, v in values.items()}


def norm(x: Any, m: Any, s: Any) -> float:
    return float(np.sum(stats.norm.logpdf(x, m, s)))


def dirichlet(x: np.ndarray, a: np.ndarray) -> float:
    x = np.atleast_2d(x)
    return float(np.sum(special.gammaln(a.sum()) - special.gammaln(a).sum() + ((a - 1) * np.log(x)).sum(-1)))


# ---------------------------------------------------------------- hand densities, by address

HMM_ARGS = {"T": 6, "K": 3, "A": [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.25, 0.25, 0.5]],
            "pi0": [0.5, 0.3, 0.2], "mus": [-2.0, 0.0, 2.5]}
LIN_X = [-1.0, 0.0, 0.5, 2.0, 3.0]
HIER_ALPHA = [1.0, 2.0, 3.0]


def hand_scalars(v: Values, _: dict) -> dict[str, float]:
    mu, sigma, p, w, c, b, k = v["mu"], v["sigma"], v["p"], v["w"], int(v["c"]), v["b"], v["k"]
    return {
        "mu": norm(mu, 1.0, 2.0),
        "sigma": stats.gamma.logpdf(sigma, 2.0, scale=1 / 3.0),
        "p": stats.beta.logpdf(p, 2.0, 5.0),
        "w": dirichlet(w, np.array([1.0, 2.0, 3.0])),
        "c": np.log(w[c]),
        "b": stats.bernoulli.logpmf(b, p),
        "k": stats.poisson.logpmf(k, np.exp(mu / 4.0)),
        "u": stats.uniform.logpdf(v["u"], mu - 1.0, 3.0),
        "y": norm(v["y"], mu + w[c], sigma),
        "t": stats.cauchy.logpdf(v["t"], mu, sigma),
        "factor": -0.5 * (v["t"] - v["y"]) ** 2,
    }


def hand_linreg_vec(v: Values, args: dict) -> dict[str, float]:
    mu = v["alpha"] + v["beta"] * np.asarray(args["x"])
    return {"alpha": norm(v["alpha"], 0, 10), "beta": norm(v["beta"], 0, 10),
            "sigma": stats.halfnorm.logpdf(v["sigma"], scale=5.0), "y": norm(v["y"], mu, v["sigma"])}


def hand_linreg(v: Values, args: dict) -> dict[str, float]:
    mu = v["alpha"] + v["beta"] * np.asarray(args["x"])
    return {**hand_linreg_vec(v, args), "q": norm(v["q"], mu.mean(), 1.0)}


def hand_hier(v: Values, args: dict) -> dict[str, float]:
    mu, s, th, c = v["mu"], v["s"], v["th"], v["c"].astype(int)
    idx = np.arange(args["N"])
    return {"mu": norm(mu, 0, 1), "s": float(np.sum(stats.halfnorm.logpdf(v["s"]))),
            "th": dirichlet(th, np.asarray(args["alpha"])), "c": float(np.sum(np.log(th[idx, c]))),
            "lo": float(np.sum(stats.uniform.logpdf(v["lo"], mu - 1.0, 1.0 + s))),
            "y": norm(v["y"], mu + th[idx, c], s),
            "k": float(np.sum(stats.bernoulli.logpmf(v["k"], special.expit(v["y"]))))}


def hand_grid(v: Values, args: dict) -> dict[str, float]:
    r = np.arange(args["R"])[:, None]
    c = np.arange(args["C"])[None, :]
    return {"m": norm(v["m"], 0, 1), "row": norm(v["row"], v["m"], 1),
            "cell": norm(v["cell"], v["row"][:, None] + 0.1 * c, 1.0 + r)}


def hand_ar1(v: Values, _: dict) -> dict[str, float]:
    x = v["x"]
    return {"rho": np.log(0.5), "x": norm(x[0], 0, 1) + norm(x[1:], v["rho"] * x[:-1], 1)}


def hand_vol(v: Values, _: dict) -> dict[str, float]:
    vv = v["v"]
    lv = stats.lognorm.logpdf(vv[0], 1.0) + np.sum(stats.lognorm.logpdf(vv[1:], 0.5, scale=vv[:-1]))
    return {"v": float(lv), "y": norm(v["y"], 0.0, vv)}


def hand_hmm(v: Values, args: dict) -> dict[str, float]:
    z = v["z"].astype(int)
    A, pi0, mus = (np.asarray(args[k]) for k in ("A", "pi0", "mus"))
    return {"z": float(np.log(pi0[z[0]]) + np.sum(np.log(A[z[:-1], z[1:]]))), "y": norm(v["y"], mus[z], 1.0)}


def hand_rw(v: Values, _: dict) -> dict[str, float]:
    return {"e": norm(v["e"], 0, 1), "total": norm(v["total"], v["e"].sum(), 0.1)}


def hand_mix(v: Values, _: dict) -> dict[str, float]:
    z = v["z"].astype(bool)
    return {"w": stats.beta.logpdf(v["w"], 2, 2), "m1": norm(v["m1"], -2, 1), "m2": norm(v["m2"], 2, 1),
            "z": float(np.sum(stats.bernoulli.logpmf(z, v["w"]))),
            "y": norm(v["y"], np.where(z, v["m1"], v["m2"]), np.where(z, 1.0, 0.5))}


def hand_branchy(v: Values, _: dict) -> dict[str, float]:
    z = v["z"].astype(bool)
    return {"p": 0.0, "z": float(np.sum(stats.bernoulli.logpmf(z, v["p"]))), "y": norm(v["y"], 3.0 * z, 1.0)}


def hand_counter(v: Values, _: dict) -> dict[str, float]:
    z = v["z"].astype(float)
    return {"p": np.log(1 / 0.8), "z": float(np.sum(stats.bernoulli.logpmf(z, v["p"]))),
            "y": norm(v["y"], np.cumsum(z), 1.0)}


def hand_states(v: Values, _: dict) -> dict[str, float]:
    x = v["x"]
    return {"x": norm(x[:, 0], 0, 1) + norm(x[:, 1:], 0.9 * x[:, :-1] + 1.0, 0.5)}


def hand_dyn(v: Values, _: dict) -> dict[str, float]:
    x = v["x"]
    return {"x": norm(x[0], 0, 1) + norm(x[1:], 0.5 * x[:-1], 1.0)}


def hand_dyn2(v: Values, args: dict) -> dict[str, float]:
    x = v["x"]
    prev = np.vstack([np.zeros((1, args["K"])), x[:-1]])
    return {"x": norm(x, 0.5 * prev + np.arange(args["K"]), 1.0)}


MISC_X = [0.0, 1.0, 3.0, 2.5]


def hand_misc(v: Values, args: dict) -> dict[str, float]:
    x, k = np.asarray(args["x"]), int(v["k"])
    i = np.arange(args["N"] - 1)
    w = [-1.0, 0.0, 2.0][k]
    return {"a": norm(v["a"], 0, 1), "v": norm(v["v"], 0, 1),
            "d": norm(v["d"], x[1:] - x[:-1] + abs(v["a"]), 1.0 + 0.5 * i), "k": np.log([0.2, 0.3, 0.5][k]),
            "e": norm(v["e"], w + v["v"] @ [1.0, 2.0, 3.0], 1.0), "z": stats.bernoulli.logpmf(v["z"], 0.4),
            "f": norm(v["f"], (1.0 if v["z"] else -1.0) * v["v"].sum() + args["N"], 1.0)}


def hand_corr(v: Values, _: dict) -> dict[str, float]:
    """The LKJ term comes from the distribution itself (tested on its own); the rest is scipy."""
    from pplang.stdlib import distributions as D

    L, s = v["L"], v["s"]
    cov = s**2 * L @ L.T
    return {"L": float(D.lkj_cholesky(3, 2.0).log_prob(jnp.asarray(L))), "s": stats.halfnorm.logpdf(s),
            "y": float(np.sum(stats.multivariate_normal.logpdf(v["y"], np.zeros(3), cov)))}


def hand_lkj(v: Values, _: dict) -> dict[str, float]:
    return {"L": hand_corr({**v, "s": np.array(1.0), "y": np.zeros((0, 3))}, {})["L"],
            "w": dirichlet(v["w"], np.array([2.0, 1.0, 1.0, 3.0]))}


def hand_top(v: Values, _: dict) -> dict[str, float]:
    g = v["g"]
    u = v["u/a"] * v["u/h"]
    w = v["v/a"] * v["v/h"]
    return {"g": stats.halfnorm.logpdf(g), "u/a": norm(v["u/a"], 0, g),
            "u/h": stats.halfnorm.logpdf(v["u/h"], scale=g),
            "v/a": norm(v["v/a"], 0, 2.0), "v/h": stats.halfnorm.logpdf(v["v/h"], scale=2.0),
            "y": norm(v["y"], u + w, 1.0)}


# ---------------------------------------------------------------- supports, for the Jacobian test


def supports_scalars(v: Values) -> dict[str, C.Constraint]:
    return {"sigma": C.positive, "p": C.unit_interval, "w": C.simplex,
            "u": C.interval(v["mu"] - 1.0, v["mu"] + 2.0)}


def supports_hier(v: Values) -> dict[str, C.Constraint]:
    return {"s": C.positive, "th": C.simplex,
            "lo": C.interval(v["mu"] - 1.0, v["mu"] + v["s"])}


@dataclass
class Case:
    name: str
    args: dict
    hand: Callable[[Values, dict], dict[str, float]]
    shapes: dict[str, tuple]
    observed: tuple[str, ...]
    supports: Callable[[Values], dict[str, C.Constraint]] = lambda v: {}
    fixed: list[dict[str, Any]] = field(default_factory=list)  # hand-picked traces besides simulated ones

    def __str__(self) -> str:
        return self.name


CASES = [
    Case("scalars", {}, hand_scalars,
         {"mu": (), "sigma": (), "p": (), "w": (3,), "c": (), "b": (), "k": (), "u": (), "y": (), "t": ()},
         ("b", "k", "y"), supports_scalars,
         [{"mu": 0.3, "sigma": 0.7, "p": 0.2, "w": [0.2, 0.3, 0.5], "c": 2, "b": 1, "k": 4, "u": 1.1,
           "y": 0.4, "t": -0.5}]),
    Case("linreg", {"N": 5, "x": LIN_X}, hand_linreg,
         {"alpha": (), "beta": (), "sigma": (), "y": (5,), "q": ()}, ("y",),
         lambda v: {"sigma": C.positive}),
    Case("linreg_vec", {"N": 5, "x": LIN_X}, hand_linreg_vec,
         {"alpha": (), "beta": (), "sigma": (), "y": (5,)}, ("y",), lambda v: {"sigma": C.positive}),
    Case("hier", {"N": 4, "alpha": HIER_ALPHA}, hand_hier,
         {"mu": (), "s": (4,), "th": (4, 3), "c": (4,), "lo": (4,), "y": (4,), "k": (4,)},
         ("y", "k"), supports_hier),
    Case("grid", {"R": 2, "C": 3}, hand_grid, {"m": (), "row": (2,), "cell": (2, 3)}, ("cell",)),
    Case("ar1", {"T": 6}, hand_ar1, {"rho": (), "x": (6,)}, ("x",), lambda v: {"rho": C.interval(-1.0, 1.0)},
         [{"rho": 0.8, "x": [1.0, -0.5, 0.3, 2.0, 1.5, -1.0]}]),
    Case("vol", {"T": 5}, hand_vol, {"v": (5,), "y": (5,)}, ("y",), lambda v: {"v": C.positive}),
    Case("hmm", HMM_ARGS, hand_hmm, {"z": (6,), "y": (6,)}, ("y",), fixed=[
        {"z": [0, 1, 2, 2, 1, 0], "y": [-1.0, 0.5, 2.0, 3.0, -0.2, -2.5]},
        {"z": [2, 2, 0, 1, 1, 1], "y": [2.0, 2.1, -1.0, 0.0, 0.3, 0.1]}]),
    Case("rw", {"T": 5}, hand_rw, {"e": (5,), "total": ()}, ("total",),
         fixed=[{"e": [0.5, -1.0, 2.0, 0.25, 0.1], "total": 1.9}]),
    Case("mix", {"N": 6}, hand_mix, {"w": (), "m1": (), "m2": (), "z": (6,), "y": (6,)}, ("y",),
         lambda v: {"w": C.unit_interval},
         [{"w": 0.3, "m1": -1.5, "m2": 2.5, "z": [1, 0, 1, 1, 0, 0], "y": [-2.0, 2.0, 0.0, -1.0, 3.0, 1.0]}]),
    Case("branchy", {"N": 6}, hand_branchy, {"p": (), "z": (6,), "y": (6,)}, ("y",),
         lambda v: {"p": C.unit_interval},
         [{"p": 0.4, "z": [0, 1, 1, 0, 1, 0], "y": [0.1, 2.0, 3.5, -0.4, 3.0, 1.0]}]),
    Case("counter", {"T": 6}, hand_counter, {"p": (), "z": (6,), "y": (6,)}, ("y",),
         lambda v: {"p": C.interval(0.1, 0.9)},
         [{"p": 0.4, "z": [0, 1, 1, 0, 1, 0], "y": [0.1, 1.0, 2.5, 1.5, 3.0, 3.2]}]),
    Case("states", {"T": 4, "K": 3}, hand_states, {"x": (3, 4)}, ()),
    Case("dyn", {"T": 4, "K": 2}, hand_dyn, {"x": (4, 2)}, ()),
    Case("dyn2", {"T": 4, "K": 2}, hand_dyn2, {"x": (4, 2)}, ()),
    Case("misc", {"N": 4, "x": MISC_X}, hand_misc,
         {"a": (), "v": (3,), "d": (3,), "k": (), "e": (), "z": (), "f": ()}, ("d", "e", "f"), fixed=[
             {"a": -0.5, "v": [0.1, -0.2, 0.3], "d": [0.0, 1.0, -1.0], "k": 0, "e": 0.5, "z": 1, "f": 0.2},
             {"a": 0.7, "v": [1.1, 0.2, -0.3], "d": [2.0, 1.0, 0.0], "k": 1, "e": -0.5, "z": 0, "f": 4.2}]),
    Case("corr", {"N": 4}, hand_corr, {"L": (3, 3), "s": (), "y": (4, 3)}, ("y",),
         lambda v: {"L": C.corr_cholesky, "s": C.positive}),
    Case("lkj", {}, hand_lkj, {"L": (3, 3), "w": (4,)}, (), lambda v: {"L": C.corr_cholesky, "w": C.simplex}),
    Case("top", {"N": 3}, hand_top, {"g": (), "u/a": (), "u/h": (), "v/a": (), "v/h": (), "y": (3,)}, ("y",),
         lambda v: {"g": C.positive, "u/h": C.positive, "v/h": C.positive}),
]

NUM_TRACES = 3


def total(parts: dict[str, float]) -> float:
    return float(sum(parts.values()))


def assert_lp(actual: Any, expected: float) -> None:
    np.testing.assert_allclose(float(actual), expected, rtol=2e-5, atol=2e-4)


_DRAWS: dict[str, pp.Trace] = {}


def draws(case: Case) -> pp.Trace:
    """A batch of prior traces of the case's model (drawn once: each new configuration compiles)."""
    if case.name not in _DRAWS:
        _DRAWS[case.name] = model(case.name).simulate(case.args, seed=1, num_samples=NUM_TRACES)
    return _DRAWS[case.name]


def trace(case: Case, j: int) -> dict[str, np.ndarray]:
    return {a: np.asarray(v[j]) for a, v in draws(case).values.items()}


def conform(values: dict[str, Any], like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Hand-picked values with the dtypes of simulated ones (so they reuse the compiled function)."""
    return {a: np.asarray(v, like[a].dtype) for a, v in values.items()}


@pytest.fixture(params=CASES, ids=str)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


# ---------------------------------------------------------------- (a) simulate and log_density agree


def test_log_density_of_simulated_trace_equals_its_score(case: Case) -> None:
    m = model(case.name)
    tr = draws(case)
    assert np.all(np.isfinite(np.asarray(tr.log_density)))
    for j in range(NUM_TRACES):
        assert_lp(m.log_density(trace(case, j), case.args), float(tr.log_density[j]))


def test_batched_draws_differ() -> None:
    tr = draws(CASES[0])
    assert all(not np.array_equal(np.asarray(v[0]), np.asarray(v[1])) for a, v in tr.values.items()
               if model(CASES[0].name).sites[a].kind == "real")


# ---------------------------------------------------------------- (b) against an independent hand computation


def test_log_density_equals_hand_computation(case: Case) -> None:
    m = model(case.name)
    like = trace(case, 0)
    traces = [trace(case, j) for j in range(NUM_TRACES)] + [conform(v, like) for v in case.fixed]
    for values in traces:
        assert_lp(m.log_density(values, case.args), total(case.hand(f64(values), case.args)))


def test_simulated_score_equals_hand_computation(case: Case) -> None:
    tr = draws(case)
    for j in range(NUM_TRACES):
        assert_lp(tr.log_density[j], total(case.hand(f64(trace(case, j)), case.args)))


# ---------------------------------------------------------------- (c) site shapes


def test_site_shapes(case: Case) -> None:
    assert {a: np.shape(v) for a, v in trace(case, 0).items()} == case.shapes
    batched = {a: np.shape(v) for a, v in draws(case).values.items()}
    assert batched == {a: (NUM_TRACES,) + s for a, s in case.shapes.items()}


def test_simulated_values_lie_in_their_supports(case: Case) -> None:
    values = trace(case, 1)
    for a, c in case.supports({k: jnp.asarray(v) for k, v in values.items()}).items():
        assert bool(jnp.all(c.check(values[a]))), f"{a} = {values[a]} is outside {c}"


# ---------------------------------------------------------------- (d) unconstrained coordinates


def _jacobian_logdet(c: C.Constraint, u: jax.Array) -> float:
    """log|det| of the map from the flattened unconstrained coordinates to the free constrained
    coordinates (what a simplex or a correlation Cholesky factor determines from the rest is left out)."""
    def f(flat: jax.Array) -> jax.Array:
        x = c.forward(flat.reshape(u.shape))
        if c.event_dim == 1:  # a simplex: its last element is one minus the others
            x = x[..., :-1]
        elif c.event_dim == 2:  # a Cholesky factor of a correlation matrix: its strictly lower entries
            rows, cols = np.tril_indices(x.shape[-1], -1)
            x = x[..., rows, cols]
        return x.reshape(-1)

    jac = jax.jacfwd(f)(u.reshape(-1))
    sign, logdet = jnp.linalg.slogdet(jac)
    assert float(sign) != 0.0
    return float(logdet)


def test_unconstrained_log_density_adds_log_jacobian(case: Case) -> None:
    m = model(case.name)
    values = {a: jnp.asarray(v) for a, v in trace(case, 2).items()}
    sup = case.supports(values)
    if not sup and all(s.kind == "real" for s in m.sites.values()):
        pytest.skip("every choice is unconstrained real: nothing to transform")
    unc = {a: sup[a].inverse(v) if a in sup else v for a, v in values.items()}
    back = {a: np.asarray(sup[a].forward(u)) if a in sup else np.asarray(u) for a, u in unc.items()}
    logdet = sum(_jacobian_logdet(c, unc[a]) for a, c in sup.items())
    expected = total(case.hand(f64(back), case.args)) + logdet
    assert_lp(m.log_density(unc, case.args, unconstrained=True), expected)
    # the pure function of the latent choices agrees (with nothing observed, all are latent)
    assert_lp(m.log_density_fn(case.args, unconstrained=True)(unc), expected)


@pytest.mark.parametrize("name", ["linreg", "hier", "vol", "grid"])
def test_log_density_fn_is_differentiable(name: str) -> None:
    case = next(c for c in CASES if c.name == name)
    m = model(name)
    values = {a: jnp.asarray(v) for a, v in trace(case, 0).items()}
    real = [a for a, s in m.sites.items() if s.kind == "real" and a not in case.supports(values)]
    f = m.log_density_fn(case.args)
    grads = jax.grad(lambda v: f({**values, **v}))({a: values[a] for a in real})
    eps = 1e-2
    for a in real:
        assert bool(jnp.all(jnp.isfinite(grads[a])))
        # central difference along the first coordinate of each site
        e = jnp.zeros_like(values[a]).reshape(-1).at[0].set(eps).reshape(values[a].shape)
        fd = (f({**values, a: values[a] + e}) - f({**values, a: values[a] - e})) / (2 * eps)
        np.testing.assert_allclose(float(grads[a].reshape(-1)[0]), float(fd), rtol=2e-2, atol=2e-2)


# ---------------------------------------------------------------- (e) importance weights


def test_importance_weight_is_density_of_observed_sites(case: Case) -> None:
    m = model(case.name)
    truth = trace(case, 0)
    data = {**case.args, **{a: truth[a] for a in case.observed}}
    tr = m.importance(data, seed=0, num_samples=2)
    for a in case.observed:
        np.testing.assert_allclose(np.asarray(tr.values[a][1]), truth[a], rtol=1e-6)
    for j in range(2):
        parts = case.hand(f64({a: v[j] for a, v in tr.values.items()}), case.args)
        weight = sum(parts[a] for a in (*case.observed, "factor") if a in parts)
        assert_lp(tr.log_weight[j], float(weight))
        assert_lp(tr.log_density[j], total(parts))
    latent = [a for a in tr.values if a not in case.observed]
    if latent:  # latents are drawn from the prior, differently in each draw
        assert any(not np.array_equal(np.asarray(tr.values[a][0]), np.asarray(tr.values[a][1])) for a in latent)


# ---------------------------------------------------------------- branches and parameters

STATIC = """
model static_branch(N: int, flag: int):
    a ~ normal(0.0, 1.0)
    if flag == 1:
        b ~ normal(a, 2.0)
    else:
        c ~ normal(-a, 3.0)
    for i in range(N):
        if flag > 0:
            y[i] ~ normal(a, 1.0)
        else:
            y[i] ~ laplace(a, 1.0)
"""


def hand_static(v: Values, flag: int) -> float:
    lp = norm(v["a"], 0, 1)
    if flag == 1:
        return lp + norm(v["b"], v["a"], 2.0) + norm(v["y"], v["a"], 1.0)
    return lp + norm(v["c"], -v["a"], 3.0) + float(np.sum(stats.laplace.logpdf(v["y"], v["a"], 1.0)))


@pytest.mark.parametrize("flag", [1, 0])
def test_static_branch_takes_one_arm(flag: int) -> None:
    m = pp.loads(STATIC)["static_branch"]
    args = {"N": 3, "flag": flag}
    tr = m.simulate(args, seed=0)
    assert set(tr.values) == ({"a", "b", "y"} if flag == 1 else {"a", "c", "y"})
    assert_lp(tr.log_density, hand_static(f64(tr.values), flag))
    assert_lp(m.log_density(tr.values, args), hand_static(f64(tr.values), flag))


def test_static_branch_on_int_argument_retraces_per_value() -> None:
    m = pp.loads(STATIC)["static_branch"]
    a = m.simulate({"N": 3, "flag": 1}, seed=0)
    b = m.simulate({"N": 3, "flag": 0}, seed=0)
    m.simulate({"N": 3, "flag": 1}, seed=1)
    assert "b" in a.values and "c" in b.values
    assert m.traces == 2  # one per value of the static condition, then cached


def test_static_branch_with_the_same_scalar_choice_in_both_arms() -> None:
    m = pp.loads(STATIC.replace("c ~ normal(-a, 3.0)", "b ~ normal(-a, 3.0)"))["static_branch"]
    for flag in (1, 0):
        args = {"N": 2, "flag": flag}
        values = {"a": 0.4, "b": 1.0, "y": [0.0, 1.0]}
        mean, sd = (0.4, 2.0) if flag == 1 else (-0.4, 3.0)
        y_lp = norm([0.0, 1.0], 0.4, 1.0) if flag == 1 else float(np.sum(stats.laplace.logpdf([0.0, 1.0], 0.4)))
        assert_lp(m.log_density(values, args), norm(0.4, 0, 1) + norm(1.0, mean, sd) + y_lp)


TRACED_SCALAR = """
model either():
    z ~ bernoulli(0.3)
    if z:
        b ~ normal(0.0, 1.0)
    else:
        b ~ normal(5.0, 2.0)
    y ~ normal(b, 1.0)
"""


def test_same_scalar_choice_in_both_arms_of_a_traced_branch() -> None:
    m = pp.loads(TRACED_SCALAR)["either"]
    for z, b, y in [(1, 0.5, 0.0), (0, 4.0, 3.0)]:
        expected = (np.log(0.3 if z else 0.7) + (norm(b, 0, 1) if z else norm(b, 5, 2)) + norm(y, b, 1))
        assert_lp(m.log_density({"z": z, "b": b, "y": y}), expected)


def test_traced_branch_only_scores_the_taken_arm() -> None:
    m = model("mix")
    values = {"w": 0.5, "m1": -2.0, "m2": 2.0, "z": [1, 1, 1, 1, 1, 1], "y": [-2.0] * 6}
    flipped = {**values, "z": [0] * 6}
    assert_lp(m.log_density(values, {"N": 6}), total(hand_mix(f64(values), {})))
    # the same y is very unlikely under the other arm: a select that mixes arms would not see this
    diff = float(m.log_density(values, {"N": 6})) - float(m.log_density(flipped, {"N": 6}))
    assert diff > 100


PARAMS = """
model withparam(N: int):
    param m: real = 0.5
    param s: positive = 2.0
    param w: simplex[3] = [0.2, 0.3, 0.5]
    x ~ normal(m, s)
    c ~ categorical(w)
    for i in range(N):
        y[i] ~ normal(x + c, s)
"""


def hand_params(v: Values, m: float, s: float, w: np.ndarray) -> float:
    return norm(v["x"], m, s) + float(np.log(w[int(v["c"])])) + norm(v["y"], v["x"] + v["c"], s)


def test_params_default_to_their_initial_values() -> None:
    mdl = pp.loads(PARAMS)["withparam"]
    tr = mdl.simulate({"N": 3}, seed=0)
    expected = hand_params(f64(tr.values), 0.5, 2.0, np.array([0.2, 0.3, 0.5]))
    assert_lp(tr.log_density, expected)
    assert_lp(mdl.log_density(tr.values, {"N": 3}), expected)


def test_params_are_given_in_unconstrained_coordinates() -> None:
    mdl = pp.loads(PARAMS)["withparam"]
    u_w = jnp.array([0.4, -0.3])
    params = {"m": jnp.asarray(-0.7), "s": jnp.log(1.5), "w": u_w}
    values = {"x": 0.2, "c": 1, "y": [0.5, 1.5, 2.0]}
    w = np.asarray(C.simplex.forward(u_w), np.float64)
    assert_lp(mdl.log_density(values, {"N": 3}, params=params), hand_params(f64(values), -0.7, 1.5, w))
    tr = mdl.simulate({"N": 3}, seed=0, params=params)
    assert_lp(tr.log_density, hand_params(f64(tr.values), -0.7, 1.5, w))
    assert set(mdl.params) == {"m", "s", "w"}


def test_submodel_return_value_and_addresses() -> None:
    m = model("top")
    tr = m.simulate({"N": 3}, seed=0)
    v = f64(tr.values)
    np.testing.assert_allclose(float(tr.retval), v["u/a"] * v["u/h"] - v["v/a"] * v["v/h"], rtol=1e-5)


def test_computed_array_is_returned() -> None:
    m = model("linreg")
    tr = m.simulate({"N": 5, "x": LIN_X}, seed=0)
    v = f64(tr.values)
    np.testing.assert_allclose(np.asarray(tr.retval), v["alpha"] + v["beta"] * np.asarray(LIN_X), rtol=1e-5)


def test_out_of_support_value_has_zero_density() -> None:
    m = model("scalars")
    values = dict(CASES[0].fixed[0])
    assert np.isfinite(float(m.log_density(values)))
    assert float(m.log_density({**values, "u": values["mu"] + 2.5})) == -np.inf
    assert float(m.log_density({**values, "k": -1})) == -np.inf
    # a scale outside its support also makes the densities that use it invalid (nan or -inf)
    assert not np.isfinite(float(m.log_density({**values, "sigma": -1.0})))


@pytest.mark.parametrize("name,args", [("ar1", {"T": 1}), ("rw", {"T": 0}), ("linreg_vec", {"N": 0, "x": []}),
                                       ("hmm", {**HMM_ARGS, "T": 1})])
def test_loops_with_no_iterations(name: str, args: dict) -> None:
    case = next(c for c in CASES if c.name == name)
    m = model(name)
    tr = m.simulate(args, seed=0)
    assert_lp(tr.log_density, total(case.hand(f64(tr.values), args)))
    assert_lp(m.log_density(tr.values, args), float(tr.log_density))
