"""posteriordb's posteriors written in pplang (`examples/posteriordb/`): each model's log density
against an independent one written here with numpy/scipy from the Stan program, at reference draws.

A model file is the right posterior when its log density equals the reference one up to a constant
(flat priors and truncations leave normalizing constants that may differ), so the test compares the
differences between draws: `lp[i] - lp[0]` from pplang (constrained space, `Model.log_density_fn`)
and from the function here, at 20 reference draws of `tests/data/posteriordb/<posterior>.reference.json`
(written by `examples/posteriordb/make_reference.py`). Float64, hence this folder.

The HMM files also hold the model that draws the hidden states (`z[t] ~ categorical(...) via enum`);
the test checks that it compiles with `z` enumerable (sampling it needs the `marginalize`
transformation, not there yet), and runs the density check on the `_forward` model.

The two ODE posteriors solve their equations with `ode_rk45` / `ode_bdf` (diffrax); their reference
densities solve them with scipy at tight tolerances, so the comparison also checks the solvers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as ss
from scipy.integrate import solve_ivp

import pplang as pp

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "posteriordb"
REFERENCES = ROOT / "tests" / "data" / "posteriordb"
DOCS = ROOT / "docs" / "posteriordb.md"
NUM_DRAWS = 20

Values = dict[str, np.ndarray]


# ---------------------------------------------------------------- reading examples and references


def load_data(posterior: str) -> dict:
    """posteriordb's data, unchanged (entries a model does not use are ignored with a note)."""
    return json.loads((EXAMPLES / f"{posterior}.data.json").read_text())


def reference(posterior: str) -> dict:
    return json.loads((REFERENCES / f"{posterior}.reference.json").read_text())


def reference_draws(posterior: str, n: int = NUM_DRAWS) -> list[Values]:
    """`n` reference draws spread over the chains, as pplang addresses with 0-based array values."""
    ref = reference(posterior)
    total = len(next(iter(ref["draws"].values())))
    rows = np.linspace(0, total - 1, n).round().astype(int)
    out = []
    for i in rows:
        values: dict[str, dict] = {}
        for p in ref["parameters"]:
            values.setdefault(p["address"], {})[tuple(p["index"])] = ref["draws"][p["name"]][i]
        draw = {}
        for address, pieces in values.items():
            if () in pieces:
                draw[address] = np.float64(pieces[()])
            else:
                shape = tuple(max(ix[d] for ix in pieces) + 1 for d in range(len(next(iter(pieces)))))
                arr = np.zeros(shape)
                for ix, v in pieces.items():
                    arr[ix] = v
                draw[address] = arr
        out.append(draw)
    return out


def pplang_log_densities(model: pp.Model, data: dict, draws: list[Values], latents: list[str]) -> np.ndarray:
    """pplang's log density at each draw (vmapped over the draws)."""
    fn = model.log_density_fn(data)
    batch = {a: jnp.asarray(np.stack([np.asarray(d[a]) for d in draws])) for a in latents}
    return np.asarray(jax.jit(jax.vmap(fn))(batch))


# ---------------------------------------------------------------- reference log densities (numpy / scipy)


def norm(x, loc, scale) -> float:
    return float(np.sum(ss.norm.logpdf(x, loc, scale)))


def hcauchy(x, scale) -> float:
    return float(ss.halfcauchy.logpdf(x, scale=scale))


def lp_eight_schools_noncentered(v: Values, d: dict) -> float:
    y, sigma = np.array(d["y"], float), np.array(d["sigma"], float)
    theta = v["mu"] + v["tau"] * v["theta_trans"]
    return (norm(v["theta_trans"], 0, 1) + norm(y, theta, sigma) + norm(v["mu"], 0, 5) + hcauchy(v["tau"], 5))


def lp_eight_schools_centered(v: Values, d: dict) -> float:
    y, sigma = np.array(d["y"], float), np.array(d["sigma"], float)
    return (hcauchy(v["tau"], 5) + norm(v["theta"], v["mu"], v["tau"]) + norm(y, v["theta"], sigma)
            + norm(v["mu"], 0, 5))


def lp_kidscore_momiq(v: Values, d: dict) -> float:
    b = v["beta"]
    return hcauchy(v["sigma"], 2.5) + norm(d["kid_score"], b[0] + b[1] * np.array(d["mom_iq"]), v["sigma"])


def lp_ark(v: Values, d: dict) -> float:
    K, T, y = d["K"], d["T"], np.array(d["y"], float)
    lp = norm(v["alpha"], 0, 10) + norm(v["beta"], 0, 10) + hcauchy(v["sigma"], 2.5)
    for t in range(K, T):  # Stan: t = K + 1 .. T, y[t - k] for k = 1 .. K
        mu = v["alpha"] + sum(v["beta"][k - 1] * y[t - k] for k in range(1, K + 1))
        lp += norm(y[t], mu, v["sigma"])
    return lp


def lp_arma11(v: Values, d: dict) -> float:
    T, y = d["T"], np.array(d["y"], float)
    mu, phi, theta, sigma = v["mu"], v["phi"], v["theta"], v["sigma"]
    nu, err = np.zeros(T), np.zeros(T)
    nu[0] = mu + phi * mu
    err[0] = y[0] - nu[0]
    for t in range(1, T):
        nu[t] = mu + phi * y[t - 1] + theta * err[t - 1]
        err[t] = y[t] - nu[t]
    return (norm(mu, 0, 10) + norm(phi, 0, 2) + norm(theta, 0, 2) + hcauchy(sigma, 2.5) + norm(err, 0, sigma))


def lp_garch11(v: Values, d: dict) -> float:
    T, y = d["T"], np.array(d["y"], float)
    assert 0 < v["alpha0"] and 0 < v["alpha1"] < 1 and 0 < v["beta1"] < 1 - v["alpha1"]
    sigma = np.zeros(T)
    sigma[0] = d["sigma1"]
    for t in range(1, T):
        sigma[t] = np.sqrt(v["alpha0"] + v["alpha1"] * (y[t - 1] - v["mu"]) ** 2 + v["beta1"] * sigma[t - 1] ** 2)
    return norm(y, v["mu"], sigma)  # flat priors on the constrained supports


def lp_earn_height(v: Values, d: dict) -> float:
    b = v["beta"]
    return norm(d["earn"], b[0] + b[1] * np.array(d["height"], float), v["sigma"])


def lp_logearn_interaction_z(v: Values, d: dict) -> float:
    height, male = np.array(d["height"], float), np.array(d["male"], float)
    z = (height - height.mean()) / height.std(ddof=1)
    b = v["beta"]
    return norm(np.log(d["earn"]), b[0] + b[1] * z + b[2] * male + b[3] * z * male, v["sigma"])


def lp_kidscore_interaction_c(v: Values, d: dict) -> float:
    hs, iq = np.array(d["mom_hs"], float), np.array(d["mom_iq"], float)
    c_hs, c_iq = hs - hs.mean(), iq - iq.mean()
    b = v["beta"]
    return norm(d["kid_score"], b[0] + b[1] * c_hs + b[2] * c_iq + b[3] * c_hs * c_iq, v["sigma"])


def lp_kilpisjarvi(v: Values, d: dict) -> float:
    return (norm(v["alpha"], d["pmualpha"], d["psalpha"]) + norm(v["beta"], d["pmubeta"], d["psbeta"])
            + norm(d["y"], v["alpha"] + v["beta"] * np.array(d["x"], float), v["sigma"]))


def lp_logmesquite_logvas(v: Values, d: dict) -> float:
    a = {k: np.array(d[k], float) for k in ("diam1", "diam2", "canopy_height", "total_height", "density", "group")}
    cols = [np.ones(d["N"]), np.log(a["diam1"] * a["diam2"] * a["canopy_height"]), np.log(a["diam1"] * a["diam2"]),
            np.log(a["diam1"] / a["diam2"]), np.log(a["total_height"]), np.log(a["density"]), a["group"]]
    return norm(np.log(d["weight"]), np.column_stack(cols) @ v["beta"], v["sigma"])


def lp_nes(v: Values, d: dict) -> float:
    age = np.array(d["age_discrete"])
    cols = [np.ones(d["N"])] + [np.array(d[k], float) for k in ("real_ideo", "race_adj")]
    cols += [(age == level).astype(float) for level in (2, 3, 4)]
    cols += [np.array(d[k], float) for k in ("educ1", "gender", "income")]
    return norm(d["partyid7"], np.column_stack(cols) @ v["beta"], v["sigma"])


def forward(log_emission: np.ndarray, theta: np.ndarray) -> float:
    """Stan's forward algorithm: gamma[t, k] = log_sum_exp_j(gamma[t-1, j] + log theta[j, k]) + emission."""
    gamma = log_emission[0].copy()
    for t in range(1, len(log_emission)):
        gamma = np.array([sp.logsumexp(gamma + np.log(theta[:, k])) for k in range(theta.shape[1])]) \
            + log_emission[t]
    return float(sp.logsumexp(gamma))


def lp_hmm_example(v: Values, d: dict) -> float:
    mu, y = v["mu"], np.array(d["y"], float)
    assert 0 < mu[0] < mu[1]
    theta = np.stack([v["theta1"], v["theta2"]])
    emission = ss.norm.logpdf(y[:, None], mu[None, :], 1.0)
    return norm(mu[0], 3, 1) + norm(mu[1], 10, 1) + forward(emission, theta)  # flat on the simplexes


def lp_hmm_drive_0(v: Values, d: dict) -> float:
    phi, lam = v["phi"], v["lambda"]
    assert 0 < phi[0] < phi[1] and 0 < lam[0] < lam[1]
    u, w, alpha = np.array(d["u"], float), np.array(d["v"], float), np.array(d["alpha"], float)
    theta = np.stack([v["theta1"], v["theta2"]])
    lp = sum(float(ss.dirichlet.logpdf(theta[k], alpha[k])) for k in range(2))
    lp += norm(phi[0], 0, 1) + norm(phi[1], 3, 1) + norm(lam[0], 0, 1) + norm(lam[1], 3, 1)
    emission = (ss.expon.logpdf(u[:, None], scale=1 / phi[None, :])
                + ss.expon.logpdf(w[:, None], scale=1 / lam[None, :]))
    return lp + forward(emission, theta)


def lp_diamonds(v: Values, d: dict) -> float:
    X, Y = np.array(d["X"], float), np.array(d["Y"], float)
    Xc = X[:, 1:] - X[:, 1:].mean(axis=0)
    assert v["sigma"] > 0
    return (norm(v["b"], 0, 1) + float(ss.t.logpdf(v["Intercept"], 3, 8, 10))
            + float(ss.t.logpdf(v["sigma"], 3, 0, 10) - ss.t.logsf(0, 3, 0, 10))
            + norm(Y, v["Intercept"] + Xc @ v["b"], v["sigma"]))


def lp_lotka_volterra(v: Values, d: dict) -> float:
    """The solution from scipy's solve_ivp at tight tolerances."""
    theta, z_init, sigma = v["theta"], v["z_init"], v["sigma"]
    assert np.all(theta > 0) and np.all(z_init > 0) and np.all(sigma > 0)

    def dz_dt(t: float, z: np.ndarray) -> list[float]:
        u, w = z
        return [(theta[0] - theta[1] * w) * u, (-theta[2] + theta[3] * u) * w]

    ts = np.array(d["ts"], float)
    z = solve_ivp(dz_dt, (0.0, ts[-1]), z_init, t_eval=ts, rtol=1e-10, atol=1e-10, method="DOP853").y.T
    y, y_init = np.array(d["y"], float), np.array(d["y_init"], float)
    lp = norm(theta[[0, 2]], 1, 0.5) + norm(theta[[1, 3]], 0.05, 0.05)  # truncations: constants
    lp += float(np.sum(ss.lognorm.logpdf(sigma, 1, scale=np.exp(-1))))
    lp += float(np.sum(ss.lognorm.logpdf(z_init, 1, scale=10)))
    lp += float(np.sum(ss.lognorm.logpdf(y_init, sigma, scale=z_init)))
    return lp + float(np.sum(ss.lognorm.logpdf(y, sigma[None, :], scale=z)))


def lp_one_comp_mm_elim_abs(v: Values, d: dict) -> float:
    """The solution from scipy's Radau at tight tolerances."""
    k_a, K_m, V_m, sigma = v["k_a"], v["K_m"], v["V_m"], v["sigma"]
    D, V = float(d["D"]), float(d["V"])

    def rhs(t: float, c: np.ndarray) -> list[float]:
        dose = np.exp(-k_a * t) * D * k_a / V if t > 0 else 0.0
        return [dose - (V_m / V) * c[0] / (K_m + c[0])]

    times = np.array(d["times"], float)
    c = solve_ivp(rhs, (float(d["t0"]), times[-1]), [0.0], t_eval=times, rtol=1e-10, atol=1e-12, method="Radau").y[0]
    lp = sum(hcauchy(x, 1) for x in (k_a, K_m, V_m, sigma))
    return lp + float(np.sum(ss.lognorm.logpdf(d["C_hat"], sigma, scale=c)))


def noncentered_values(draw: Values) -> Values:
    """The reference covers the computed theta; the model draws theta_trans = (theta - mu) / tau."""
    return {"mu": draw["mu"], "tau": draw["tau"], "theta_trans": (draw["theta"] - draw["mu"]) / draw["tau"]}


# posterior -> (model name, reference log density, draw -> pplang values (None: as they are))
EXPRESSIBLE: dict[str, tuple[str, Callable, Callable | None]] = {
    "eight_schools-eight_schools_noncentered": ("eight_schools_noncentered", lp_eight_schools_noncentered,
                                                noncentered_values),
    "eight_schools-eight_schools_centered": ("eight_schools_centered", lp_eight_schools_centered, None),
    "kidiq-kidscore_momiq": ("kidscore_momiq", lp_kidscore_momiq, None),
    "arK-arK": ("arK", lp_ark, None),
    "arma-arma11": ("arma11", lp_arma11, None),
    "garch-garch11": ("garch11", lp_garch11, None),
    "earnings-earn_height": ("earn_height", lp_earn_height, None),
    "earnings-logearn_interaction_z": ("logearn_interaction_z", lp_logearn_interaction_z, None),
    "kidiq_with_mom_work-kidscore_interaction_c": ("kidscore_interaction_c", lp_kidscore_interaction_c, None),
    "kilpisjarvi_mod-kilpisjarvi": ("kilpisjarvi", lp_kilpisjarvi, None),
    "mesquite-logmesquite_logvas": ("logmesquite_logvas", lp_logmesquite_logvas, None),
    "nes2000-nes": ("nes", lp_nes, None),
    "diamonds-diamonds": ("diamonds", lp_diamonds, None),
    "hmm_example-hmm_example": ("hmm_example_forward", lp_hmm_example, None),
    "bball_drive_event_0-hmm_drive_0": ("hmm_drive_0_forward", lp_hmm_drive_0, None),
    "hudson_lynx_hare-lotka_volterra": ("lotka_volterra", lp_lotka_volterra, None),
    "one_comp_mm_elim_abs-one_comp_mm_elim_abs": ("one_comp_mm_elim_abs", lp_one_comp_mm_elim_abs, None),
}

# HMM posteriors whose file also holds the model with enumerated hidden states: posterior -> model name
ENUMERATED: dict[str, str] = {
    "hmm_example-hmm_example": "hmm_example",
    "bball_drive_event_0-hmm_drive_0": "hmm_drive_0",
}

# Posteriors that solve an ODE: at Stan's solver tolerances (1e-6 relative and absolute per step) the
# solution is off by a relative delta of up to about 5e-5 (measured: the dosing model's right-hand
# side jumps at t = 0). A lognormal term moves by (log y - log z) / sigma^2 * delta, at most about
# 3 delta / sigma per observation, so 20 to 40 observations with sigma >= 0.1 allow 5e-3; a wrong
# model moves the differences by far more (they span several units).
ODE_TOLERANCE = {"hudson_lynx_hare-lotka_volterra": 5e-3, "one_comp_mm_elim_abs-one_comp_mm_elim_abs": 5e-3}


def assert_equal_up_to_constant(pplang_lp: np.ndarray, reference_lp: np.ndarray, atol: float = 0.0) -> None:
    """Differences between draws agree to 1e-6 relative (plus `atol`), and the draws do differ in density."""
    d_pp, d_ref = pplang_lp - pplang_lp[0], reference_lp - reference_lp[0]
    assert np.all(np.isfinite(pplang_lp)), pplang_lp
    assert np.ptp(d_ref) > 100 * atol + 1e-3, "the draws must have different densities for the test to mean anything"
    scale = max(1.0, float(np.max(np.abs(reference_lp))))
    np.testing.assert_allclose(d_pp, d_ref, rtol=1e-6, atol=1e-9 * scale + atol)


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("posterior", sorted(EXPRESSIBLE))
def test_log_density_matches_reference(posterior: str) -> None:
    name, reference_lp, to_values = EXPRESSIBLE[posterior]
    model = pp.load(str(EXAMPLES / f"{posterior}.ppl"))[name]
    data = load_data(posterior)
    draws = [to_values(d) if to_values else d for d in reference_draws(posterior)]
    latents = sorted(draws[0])
    assert sorted(model.latent_addresses(model.bind(data))) == latents
    lp = pplang_log_densities(model, data, draws, latents)
    assert_equal_up_to_constant(lp, np.array([reference_lp(d, data) for d in draws]), ODE_TOLERANCE.get(posterior, 0.0))


@pytest.mark.parametrize("posterior", sorted(ENUMERATED))
def test_enumerated_hmm_compiles_with_enumerable_states(posterior: str) -> None:
    """The model that draws the hidden states compiles, its `z` enumerable; NUTS on it awaits the
    `marginalize` transformation, so the density check uses the file's `_forward` model."""
    module = pp.load(str(EXAMPLES / f"{posterior}.ppl"))
    model = module[ENUMERATED[posterior]]
    assert model.sites["z"].enumerable
    assert EXPRESSIBLE[posterior][0] == f"{ENUMERATED[posterior]}_forward"
    assert "z" not in module[EXPRESSIBLE[posterior][0]].sites


def test_every_posterior_has_one_model_file_data_and_reference() -> None:
    assert len(EXPRESSIBLE) == 17
    for p in EXPRESSIBLE:
        assert (EXAMPLES / f"{p}.ppl").exists(), p
        assert (EXAMPLES / f"{p}.data.json").exists() and (REFERENCES / f"{p}.reference.json").exists(), p
    assert sorted(f.stem for f in EXAMPLES.glob("*.ppl")) == sorted(EXPRESSIBLE)
    assert not list(EXAMPLES.glob("*.pending"))
