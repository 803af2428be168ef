"""NUTS and HMC (pplang.inference.mcmc): posteriors against exact answers and posteriordb's reference, with
tolerances from ArviZ's Monte Carlo standard errors; reproducibility, checkpoint/resume, sharding
over devices, the errors, the divergence warnings and the command line (tests/docs runs docs/mcmc.md)."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from pplang.compiler.diagnostics import PplError

import pplang as pp
from pplang.cli.sample import cmd_sample, register
from pplang.inference import mcmc
from pplang.inference.mcmc import sample
from pplang.inference.mcmc_result import SampleResult

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
REFERENCE = json.loads((ROOT / "tests" / "data" / "eight_schools_noncentered_reference.json").read_text())

# Normal mean with known sd 1 and a normal(0, 2) prior: the posterior is normal with precision
# 1/4 + n and mean sum(y) / (1/4 + n).
NORMAL = """
model normal_mean(N: int):
    mu ~ normal(0.0, 2.0)
    for i in range(N):
        y[i] ~ normal(mu, 1.0)
"""
NORMAL_DATA = {"N": 10, "y": [0.8, 1.9, 1.1, 0.3, 1.6, 2.2, 0.4, 1.2, 1.5, 0.9]}
NORMAL_ARGS = {"chains": 4, "warmup": 300, "draws": 500, "seed": 0, "progress": False}

CENTERED = """
model eight_schools_centered(J: int, sigma: vector[J]):
    mu ~ normal(0.0, 5.0)
    tau ~ half_cauchy(5.0)
    for j in range(J):
        theta[j] ~ normal(mu, tau)
        y[j] ~ normal(theta[j], sigma[j])
"""


def load(source: str, name: str) -> pp.Model:
    return pp.loads(source)[name]


@pytest.fixture(scope="module")
def normal() -> pp.Model:
    return load(NORMAL, "normal_mean")


@pytest.fixture(scope="module")
def normal_result(normal: pp.Model) -> SampleResult:
    return sample(normal, NORMAL_DATA, **NORMAL_ARGS)


def check_posterior(res: SampleResult, name: str, mean: float, sd: float, sd_tol: float | None,
                    ref_se: float = 0.0) -> None:
    """The mean within 4 MCSE (and the reference's own error); the sd within `sd_tol` (relative), or
    within 4 of ArviZ's MCSE of the sd where `sd_tol` is None."""
    row = res.table().loc[name]
    tol = 4 * math.hypot(row["mcse_mean"], ref_se)
    assert abs(row["mean"] - mean) < tol, f"{name}: mean {row['mean']} vs {mean} (tolerance {tol:.4f})"
    sd_tolerance = 4 * row["mcse_sd"] if sd_tol is None else sd_tol * sd
    assert abs(row["sd"] - sd) < sd_tolerance, f"{name}: sd {row['sd']} vs {sd} (tolerance {sd_tolerance:.4f})"


# ---------------------------------------------------------------- posteriors


def test_normal_normal(normal_result: SampleResult) -> None:
    precision = 1 / 4 + NORMAL_DATA["N"]
    check_posterior(normal_result, "mu", sum(NORMAL_DATA["y"]) / precision, precision ** -0.5, 0.1)
    assert normal_result.draws["mu"].shape == (4, 500)
    assert set(normal_result.stats) == {"diverging", "tree_depth", "n_steps", "acceptance_rate", "energy", "lp"}
    d = normal_result.diagnostics()
    assert d["divergences"] == 0 and d["max_rhat"] < 1.01 and not d["warnings"], d


def test_beta_bernoulli_constrained() -> None:
    """p ~ beta(1, 1) on (0, 1) with 8 heads of 10: beta(9, 3). Draws come back constrained."""
    model = pp.load(str(EXAMPLES / "coin.ppl"))["coin"]
    res = sample(model, pp.load_data(str(EXAMPLES / "coin.data.json")), warmup=300, draws=500, seed=1,
                 progress=False)
    p = res.draws["p"]
    assert p.shape == (4, 500) and (0 < p).all() and (p < 1).all()
    check_posterior(res, "p", 9 / 12, math.sqrt(9 * 3 / (12**2 * 13)), 0.1)


def test_eight_schools_noncentered_against_posteriordb() -> None:
    model = pp.load(str(EXAMPLES / "eight_schools.ppl"))["eight_schools"]
    res = sample(model, pp.load_data(str(EXAMPLES / "eight_schools.data.json")), warmup=500, draws=500,
                 progress=False)
    ref = REFERENCE["posterior"]
    for name in ("mu", "tau"):
        # the reference's own error: sd / sqrt(10000 draws)
        check_posterior(res, name, ref[name]["mean"], ref[name]["sd"], 0.15, ref_se=ref[name]["sd"] / 100)
    assert res.diagnostics()["divergences"] <= 5


def test_hmc_normal(normal: pp.Model) -> None:
    res = sample(normal, NORMAL_DATA, method="hmc", num_integration_steps=8, chains=4, warmup=200, draws=400,
                 progress=False)
    precision = 1 / 4 + NORMAL_DATA["N"]
    check_posterior(res, "mu", sum(NORMAL_DATA["y"]) / precision, precision ** -0.5, None)
    assert "tree_depth" not in res.stats and (res.stats["n_steps"] == 8).all()


# ---------------------------------------------------------------- reproducibility, checkpoints, devices


def test_same_seed_same_draws(normal: pp.Model, normal_result: SampleResult) -> None:
    again = sample(normal, NORMAL_DATA, **NORMAL_ARGS)
    np.testing.assert_array_equal(again.draws["mu"], normal_result.draws["mu"])
    np.testing.assert_array_equal(again.stats["energy"], normal_result.stats["energy"])
    other = sample(normal, NORMAL_DATA, **{**NORMAL_ARGS, "seed": 1})
    assert not np.array_equal(other.draws["mu"], normal_result.draws["mu"])


def test_thin_keeps_every_nth_step(normal: pp.Model, normal_result: SampleResult) -> None:
    """Step t uses the key fold_in(key, t) whatever is kept: thin=2 over 250 draws runs the same 800
    steps as the reference run and keeps its odd ones."""
    thinned = sample(normal, NORMAL_DATA, **{**NORMAL_ARGS, "draws": 250, "thin": 2})
    np.testing.assert_array_equal(thinned.draws["mu"], normal_result.draws["mu"][:, 1::2])


def test_no_warmup_and_a_given_mass_matrix(normal: pp.Model) -> None:
    res = sample(normal, NORMAL_DATA, chains=2, warmup=0, draws=200, progress=False)
    np.testing.assert_array_equal(res.adapted["step_size"], [1.0, 1.0])
    np.testing.assert_array_equal(res.adapted["inverse_mass_matrix"], [[1.0], [1.0]])
    fixed = sample(normal, NORMAL_DATA, chains=2, warmup=100, draws=200, mass_matrix=np.array([0.1]), progress=False)
    np.testing.assert_allclose(fixed.adapted["inverse_mass_matrix"], [[0.1], [0.1]])
    assert abs(fixed.draws["mu"].mean() - sum(NORMAL_DATA["y"]) / 10.25) < 0.1


def test_checkpoint_resume_is_exact(normal: pp.Model, normal_result: SampleResult, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    saves = []
    real = mcmc.save_checkpoint

    def interrupted(*args: object) -> Path:
        saves.append(real(*args))
        if len(saves) in (2, 5):  # once in warmup, once while sampling
            raise KeyboardInterrupt
        return saves[-1]

    monkeypatch.setattr(mcmc, "save_checkpoint", interrupted)
    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            sample(normal, NORMAL_DATA, **NORMAL_ARGS, checkpoint=tmp_path)
    res = sample(normal, NORMAL_DATA, **NORMAL_ARGS, checkpoint=tmp_path)
    assert len(saves) == 8  # 800 steps in chunks of 100
    np.testing.assert_array_equal(res.draws["mu"], normal_result.draws["mu"])
    np.testing.assert_array_equal(res.stats["tree_depth"], normal_result.stats["tree_depth"])
    with pytest.raises(PplError, match="differs in: draws"):
        sample(normal, NORMAL_DATA, **{**NORMAL_ARGS, "draws": 400}, checkpoint=tmp_path)


SHARDED = f"""
import sys, jax, numpy as np, pplang as pp
from pplang.inference.mcmc import sample
assert len(jax.devices()) == 4
res = sample(pp.loads({NORMAL!r})["normal_mean"], {NORMAL_DATA!r}, **{NORMAL_ARGS!r})
np.save(sys.argv[1], res.draws["mu"])
"""


def test_sharded_chains_match_one_device(normal_result: SampleResult, tmp_path: Path) -> None:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu",
           "JAX_ENABLE_X64": str(jax.config.jax_enable_x64)}  # the precision this process runs in
    out = tmp_path / "mu.npy"
    done = subprocess.run([sys.executable, "-c", SHARDED, str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(out), normal_result.draws["mu"], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"chains": 0}, "chains must be a whole number of at least 1"),
    ({"draws": 0}, "draws must be a whole number of at least 1"),
    ({"warmup": -1}, "warmup must be a whole number of at least 0"),
    ({"method": "nutz"}, "unknown method 'nutz'"),
    ({"mass_matrix": np.ones(3)}, r"the mass matrix has shape \(3,\), but the model has 1 unconstrained"),
    ({"mass_matrix": "full"}, "unknown mass_matrix 'full'"),
    ({"init": {"sigma": 1.0}}, "init names `sigma`, which is not a latent choice"),
])
def test_argument_errors(normal: pp.Model, kwargs: dict, message: str) -> None:
    with pytest.raises(PplError, match=message) as info:
        sample(normal, NORMAL_DATA, progress=False, **kwargs)
    assert "hint:" in str(info.value)


def test_init_outside_support_is_named() -> None:
    model = pp.load(str(EXAMPLES / "eight_schools.ppl"))["eight_schools"]
    with pytest.raises(PplError, match=r"initial value of `tau` lies outside its support"):
        sample(model, pp.load_data(str(EXAMPLES / "eight_schools.data.json")), init={"tau": -1.0}, progress=False)


def test_impossible_initial_point_names_the_choice() -> None:
    model = load("""
model shifted():
    x ~ normal(0.0, 1.0)
    y ~ uniform(x, x + 1.0)
""", "shifted")
    with pytest.raises(PplError, match=r"not finite at the initial point \(tried 100 initial points\): the density "
                       r"of `y`") as info:
        sample(model, {"y": 5.0}, progress=False)
    assert "init=" in str(info.value)


def test_discrete_choice_is_refused() -> None:
    model = load("""
model count():
    k ~ poisson(3.0)
    y ~ normal(k, 1.0)
""", "count")
    with pytest.raises(PplError, match=r"`k` \(poisson\) is discrete") as info:
        sample(model, {"y": 1.0}, progress=False, marginalize=False)
    assert "pplang smc" in str(info.value) and "--method is" in str(info.value)
    with pytest.raises(PplError, match=r"`k` \(poisson\) has no finite support") as info:
        sample(model, {"y": 1.0}, progress=False, marginalize=["k"])
    assert "pplang smc" in str(info.value)


def test_a_bernoulli_choice_is_summed_out_unless_asked_not_to() -> None:
    model = load("""
model coin_or_not(N: int):
    p ~ beta(2.0, 2.0)
    fair ~ bernoulli(0.5)
    for i in range(N):
        y[i] ~ bernoulli(where(fair, 0.5, p))
""", "coin_or_not")
    data = {"N": 20, "y": [1] * 17 + [0] * 3}
    res = sample(model, data, chains=2, warmup=300, draws=300, seed=0, progress=False)
    assert "fair" not in res.info["computed"] and res.draws["p(fair)"].shape == (2, 300, 2)
    assert res.draws["fair"].shape == (2, 300)  # recovered per draw, from p(fair)
    assert res.draws["p(fair)"][..., 1].mean() < 0.2  # 17 heads in 20: the coin is hardly fair
    with pytest.raises(PplError, match=r"`fair` \(bernoulli\) is discrete") as info:
        sample(model, data, progress=False, marginalize=False)
    assert "leave marginalize on" in str(info.value)


def test_a_dense_mass_matrix_samples_a_correlated_gaussian() -> None:
    """Two choices with correlation 0.95 (x2 | x1 ~ normal(0.95 x1, sqrt(1 - 0.95^2))): the dense
    metric adapts to it; means, sds and the correlation agree with the exact ones within MCSEs."""
    model = load("""
model corr():
    x1 ~ normal(0.0, 1.0)
    x2 ~ normal(0.95 * x1, 0.31224989991991997)
""", "corr")
    res = sample(model, {}, chains=4, warmup=500, draws=1000, seed=3, mass_matrix="dense", progress=False)
    imm = res.adapted["inverse_mass_matrix"]
    assert imm.shape == (4, 2, 2) and np.all(imm[:, 0, 1] > 0.5)  # the adapted metric holds the correlation
    table = res.table()
    for name in ("x1", "x2"):
        assert abs(table.loc[name, "mean"]) < 4 * table.loc[name, "mcse_mean"]
        assert abs(table.loc[name, "sd"] - 1.0) < 0.1
    x1, x2 = res.draws["x1"].ravel(), res.draws["x2"].ravel()
    assert abs(np.corrcoef(x1, x2)[0, 1] - 0.95) < 0.02


# ---------------------------------------------------------------- divergences


def test_centered_eight_schools_divergences_are_warned() -> None:
    model = load(CENTERED, "eight_schools_centered")
    res = sample(model, pp.load_data(str(EXAMPLES / "eight_schools.data.json")), chains=2, warmup=150, draws=300,
                 target_accept=0.6, progress=False)
    d = res.diagnostics()
    assert d["divergences"] > 0
    assert d["divergent_parameters"][0]["parameter"] == "tau" and d["divergent_parameters"][0][
        "standardized_difference"] < 0  # the funnel's neck: small tau
    text = res.summary()
    warning = next(w for w in d["warnings"] if "diverged" in w)
    assert "target_accept" in warning and "non-centered" in warning and "`tau`" in warning
    assert text.index("diverged") < text.index("mcse_mean")  # warnings above the table


# ---------------------------------------------------------------- results, ArviZ, command line, docs


def test_arviz_export_and_saving(normal_result: SampleResult, tmp_path: Path) -> None:
    idata = normal_result.to_arviz()
    assert {"posterior", "sample_stats", "observed_data", "log_likelihood", "posterior_predictive"} <= set(
        idata.groups())
    assert idata.log_likelihood["y"].shape == (4, 500, 10)  # pointwise over the vectorized loop
    mu = normal_result.draws["mu"][0, 0]
    expected = -0.5 * (np.asarray(NORMAL_DATA["y"][0]) - mu) ** 2 - 0.5 * math.log(2 * math.pi)
    assert float(idata.log_likelihood["y"][0, 0, 0]) == pytest.approx(expected, rel=1e-4)
    assert idata.posterior_predictive["y"].shape == (4, 500, 10)
    assert abs(float(idata.posterior_predictive["y"].mean()) - float(normal_result.draws["mu"].mean())) < 0.1
    saved = SampleResult.load(normal_result.save(tmp_path / "run"))
    np.testing.assert_array_equal(saved.draws["mu"], normal_result.draws["mu"])
    assert saved.summary().splitlines()[-1] == normal_result.summary().splitlines()[-1]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["summary"]["mu"]["ess_bulk"] > 400


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pplang")
    register(p.add_subparsers(dest="command"))
    return p


def test_cli_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["sample", str(EXAMPLES / "coin.ppl"), "--data", str(EXAMPLES / "coin.data.json"),
                                "--chains", "2", "--warmup", "200", "--draws", "300", "--no-progress",
                                "--output", str(tmp_path / "out"), "--plots", str(tmp_path / "plots"),
                                "--init", '{"p": 0.5}'])
    args.func(args)
    out = capsys.readouterr().out
    row = re.search(r"^p\s+([\d.]+)\s+([\d.]+)", out, re.M)
    assert row and abs(float(row.group(1)) - 0.75) < 0.03, out
    assert (tmp_path / "out" / "draws.npz").is_file() and (tmp_path / "plots" / "trace.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "rank.png").is_file()
    bad = parser().parse_args(["sample", str(EXAMPLES / "coin.ppl"), "--data", str(EXAMPLES / "coin.data.json"),
                               "--init", '{"p": 2.0}', "--no-progress"])
    with pytest.raises(PplError, match="initial value of `p` lies outside its support"):
        cmd_sample(bad)
