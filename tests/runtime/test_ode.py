"""ODE solutions inside models (`ode_rk45`, `ode_bdf` through diffrax): the solution against scipy,
gradients through the solver against finite differences, and located errors."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import pplang as pp

LV = """\
model dz_dt(t: real, z: vector[2], theta: vector[4]):
    du_dt = (theta[0] - theta[1] * z[1]) * z[0]
    dv_dt = (-theta[2] + theta[3] * z[0]) * z[1]
    return [du_dt, dv_dt]

model lv(N: int, ts: vector[N]):
    theta: positive[4] ~ normal([1.0, 0.05, 1.0, 0.05], [0.5, 0.05, 0.5, 0.05])
    z_init ~ lognormal(log(10.0) * ones(2), 1.0)
    sigma ~ lognormal(-1.0 * ones(2), 1.0)
    z = ode_rk45(dz_dt, z_init, 0.0, ts, theta)
    for n in range(N):
        for k in range(2):
            y[n, k] ~ lognormal(log(z[n, k]), sigma[k])
"""
# Robertson's chemical kinetics: the classic stiff system (rates 0.04, 3e7, 1e4).
STIFF = """\
model rober(t: real, y: vector[3], k: vector[3]):
    r1 = k[0] * y[0]
    r2 = k[1] * y[1] * y[1]
    r3 = k[2] * y[1] * y[2]
    return [-r1 + r3, r1 - r2 - r3, r2]

model kin(T: int, ts: vector[T]):
    s ~ half_normal(1.0)
    y = ode_bdf(rober, [1.0, 0.0, 0.0], 0.0, ts, [0.04, 3.0e7, 1.0e4])
    return y
"""
THETA, Z0, TS = np.array([0.55, 0.028, 0.80, 0.024]), np.array([33.0, 6.2]), np.arange(1.0, 21.0)


def lotka_volterra(theta: np.ndarray, z0: np.ndarray) -> np.ndarray:
    a, b, c, d = theta
    sol = solve_ivp(lambda t, z: [(a - b * z[1]) * z[0], (-c + d * z[0]) * z[1]], (0.0, TS[-1]), z0, t_eval=TS,
                    rtol=1e-10, atol=1e-10)
    return sol.y.T


@pytest.fixture(scope="module")
def lv() -> pp.Model:
    return pp.loads(LV, file="lv.ppl")["lv"]


def data() -> dict:
    y = lotka_volterra(THETA, Z0) * np.exp(0.1 * np.random.default_rng(0).normal(size=(len(TS), 2)))
    return {"N": len(TS), "ts": TS, "y": y}


def test_the_solution_matches_scipy(lv: pp.Model) -> None:
    values = {"theta": THETA[None], "z_init": Z0[None], "sigma": np.array([[0.25, 0.25]])}
    z = lv.computed(values, data(), names=["z"])["z"][0]
    exact = lotka_volterra(THETA, Z0)
    assert z.shape == (len(TS), 2)
    np.testing.assert_allclose(z, exact, rtol=2e-5)


def test_gradients_flow_through_the_solver(lv: pp.Model) -> None:
    f = lv.log_density_fn(data())
    point = {"theta": jnp.asarray(THETA), "z_init": jnp.asarray(Z0), "sigma": jnp.array([0.25, 0.3])}
    grad = jax.grad(f)(point)["theta"]
    h = 1e-3 * THETA
    for i in range(4):  # central differences on the solution's parameters (float32: a loose relative bound)
        up, down = dict(point), dict(point)
        up["theta"] = point["theta"].at[i].add(h[i])
        down["theta"] = point["theta"].at[i].add(-h[i])
        fd = (float(f(up)) - float(f(down))) / (2 * h[i])
        assert abs(float(grad[i]) - fd) <= 0.02 * abs(fd) + 1.0, (i, float(grad[i]), fd)


def test_a_stiff_system_with_the_implicit_solver() -> None:
    kin = pp.loads(STIFF, file="kin.ppl")["kin"]
    ts = np.array([0.4, 4.0, 40.0, 400.0])
    y = kin.computed({"s": np.array([1.0])}, {"T": 4, "ts": ts}, names=["y"])["y"][0]
    k1, k2, k3 = 0.04, 3.0e7, 1.0e4
    exact = solve_ivp(lambda t, y: [-k1 * y[0] + k3 * y[1] * y[2], k1 * y[0] - k2 * y[1] ** 2 - k3 * y[1] * y[2],
                                    k2 * y[1] ** 2], (0.0, 400.0), [1.0, 0.0, 0.0], method="Radau", t_eval=ts,
                      rtol=1e-10, atol=1e-12).y.T
    np.testing.assert_allclose(y[:, [0, 2]], exact[:, [0, 2]], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-4)  # mass is conserved


@pytest.mark.parametrize(("call", "words"), [
    ("ode_rk45(rhs_x, [1.0], 0.0, ts)", "must name the right-hand side"),
    ("ode_rk45(noisy, [1.0], 0.0, ts)", "draws random choices or has parameters"),
    ("ode_rk45(rhs, [1.0], 0.0, ts, 2.0, 3.0)", "must take (t, y) and the 2 value(s)"),
    ("ode_rk45(rhs, 1.0, 0.0, ts)", "`y0` of `ode_rk45` must be a vector"),
])
def test_mistakes_are_located(call: str, words: str) -> None:
    src = ("model rhs(t: real, y: vector[1]):\n    return -y\n\n"
           "model noisy(t: real, y: vector[1]):\n    e ~ normal(0.0, 1.0)\n    return -y + e\n\n"
           f"model m(T: int, ts: vector[T]):\n    a = {call}\n")
    with pytest.raises(pp.PplError) as info:
        pp.loads(src, file="e.ppl")["m"]
    text = info.value.render()
    assert words in text and text.startswith("e.ppl:9:"), text


def test_a_compiled_module_of_one_model_holds_its_right_hand_side(tmp_path) -> None:
    from pplang.cli import main

    src, out = tmp_path / "lv.ppl", tmp_path / "lv_module.py"
    src.write_text(LV)
    assert main(["compile", str(src), "--model", "lv", "-o", str(out)]) == 0
    code = out.read_text()
    assert "def dz_dt(" in code and "def lv(" in code and "import pplang.compiler" not in code


@pytest.mark.parametrize(("ret", "y0", "words"), [
    ("-k * y[0]", "[1.0, 2.0]", "the value `decay` returns does not fit the state `y`"),
    ("-k * y", "[1.0, 2.0, 3.0]", "y0 does not fit the state `y` of `decay`"),
])
def test_the_state_and_the_derivative_must_fit(ret: str, y0: str, words: str) -> None:
    src = (f"model decay(t: real, y: vector[2], k: real):\n    return {ret}\n\n"
           f"model m(T: int, ts: vector[T]):\n    k ~ lognormal(0.0, 1.0)\n    z = ode_rk45(decay, {y0}, 0.0, ts, k)\n")
    with pytest.raises(pp.PplError, match=re.escape(words)):
        pp.loads(src, file="o.ppl")["m"]


def test_a_particle_filter_runs_a_model_that_solves_an_ode() -> None:
    src = ("model m(T: int):\n    k ~ lognormal(0.0, 0.5)\n    x[0] ~ normal(1.0, 0.1)\n    for t in range(1, T):\n"
           "        z = ode_rk45(decay, [x[t - 1]], 0.0, [1.0], k)\n        x[t] ~ normal(z[0, 0], 0.1)\n"
           "        y[t] ~ normal(x[t], 0.2)\n\nmodel decay(t: real, y: vector[1], k: real):\n    return -k * y\n")
    res = pp.smc(pp.loads(src, file="f.ppl")["m"], {"T": 4, "y": [0.0, 0.4, 0.2, 0.1]}, particles=200)
    assert np.isfinite(res.log_marginal_likelihood)
