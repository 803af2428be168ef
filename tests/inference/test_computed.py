"""Values a model computes (Stan's transformed parameters and generated quantities) are kept beside
the draws of every method, equal to the same computation done by hand on each draw."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import pplang as pp
from pplang.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SRC = """\
model m(n: int, x: vector[n]):
    a ~ normal(0.0, 1.0)
    s ~ half_normal(1.0)
    b = 2.0 * a
    for i in range(n):
        mu[i] = b + x[i]
        y[i] ~ normal(mu[i], s)
    lambda = exp(a)
    if a > 0.0:
        side = 1.0
    else:
        side = -1.0
    u ~ part(a)
    return b + s

model part(c: real):
    e ~ normal(c, 1.0)
    return e * 3.0

model plain():
    z ~ normal(0.0, 1.0)
    return z
"""
DATA = {"n": 3, "x": [0.0, 1.0, 2.0], "y": [0.5, 1.5, 3.0]}


@pytest.fixture(scope="module")
def module() -> pp.Module:
    return pp.loads(SRC, file="computed.ppl")


def by_hand(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    a, s = d["a"], d["s"]
    b = 2.0 * a
    return {"b": b, "mu": b[:, None] + np.array(DATA["x"]), "lambda": np.exp(a), "side": np.where(a > 0, 1.0, -1.0),
            "u": 3.0 * d["u/e"], "return": b + s}


def test_names_and_the_return_value(module: pp.Module) -> None:
    assert module["m"].computed_names == ["b", "mu", "lambda", "side", "u", "return"]
    assert module["plain"].computed_names == []  # `return z` returns a choice: nothing new to keep
    plain = module.compiled.source_code.split("def plain")[1]
    assert "_ctx.computed(" not in plain  # and its generated code is what it was without the feature
    assert "_ctx.computed('return', _ret)" in module.compiled.source_code.split("def part")[1]


def test_importance_sampling_keeps_them(module: pp.Module) -> None:
    post = pp.importance_sampling(module["m"], DATA, num_samples=2000, seed=1)
    expect = by_hand(post.samples)
    for name, value in expect.items():
        np.testing.assert_allclose(post.samples[name], value, rtol=1e-5, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(post.mean("mu"), post.weights @ expect["mu"], rtol=1e-4)
    table = post.summary()
    assert "\nmu (computed, shape 3)\n" in table and "\n  [2] " in table  # entries under their value
    assert "lambda" in table and "return" in table


def test_choosing_which(module: pp.Module) -> None:
    m = module["m"]
    none = pp.importance_sampling(m, DATA, num_samples=10, computed=False)
    assert set(none.samples) == {"a", "s", "u/e"}
    some = pp.importance_sampling(m, DATA, num_samples=10, computed=["mu"])
    assert set(some.samples) == {"a", "s", "u/e", "mu"}
    with pytest.raises(pp.PplError, match="computes no value named `mus`") as info:
        pp.importance_sampling(m, DATA, num_samples=10, computed=["mus"])
    assert "did you mean `mu`" in info.value.render()


def test_a_fit_keeps_them_for_its_draws(module: pp.Module) -> None:
    res = pp.fit(module["m"], "mean_field", "elbo", DATA, steps=50, num_draws=300, progress=False)
    expect = by_hand(res.draws)
    for name in ("b", "mu", "lambda", "return"):
        np.testing.assert_allclose(res.draws[name], expect[name], rtol=1e-5, atol=1e-5, err_msg=name)
    assert "\nmu (computed, shape" in res.summary()


def test_the_cli_shows_and_hides_them(capsys: pytest.CaptureFixture) -> None:
    args = ["infer", "--method", "is", str(EXAMPLES / "eight_schools.ppl"), "--data",
            str(EXAMPLES / "eight_schools.data.json"), "-n", "500"]
    assert main(args) == 0
    assert "\ntheta (computed, shape 8)\n" in capsys.readouterr().out
    assert main([*args, "--computed", "none"]) == 0
    assert "\ntheta (" not in capsys.readouterr().out


def test_the_cli_writes_them(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "draws.json"
    assert main(["infer", "--method", "is", str(EXAMPLES / "eight_schools.ppl"), "--data",
                 str(EXAMPLES / "eight_schools.data.json"), "-n", "200", "--output", str(out)]) == 0
    saved = json.loads(out.read_text())["samples"]
    theta = np.array(saved["mu"])[:, None] + np.array(saved["tau"])[:, None] * np.array(saved["theta_tilde"])
    np.testing.assert_allclose(np.array(saved["theta"]), theta, rtol=1e-5, atol=1e-5)


def test_an_amortized_posterior_keeps_them() -> None:
    src = ("model level(N: int):\n    mu ~ normal(0.0, 2.0)\n    shifted = mu + 10.0\n"
           "    for i in range(N):\n        y[i] ~ normal(mu, 1.0)\n\n"
           "network enc = mlp(out_size=2, hidden=[8])\n\n"
           "guide level_q(N: int, y: vector[N]):\n    h = enc(y)\n    mu ~ normal(h[0], exp(h[1]))\n")
    module = pp.loads(src, file="level.ppl")
    res = pp.amortize(module["level"], module["level_q"], simulate=512, shared={"N": 3}, epochs=1, batch_size=64,
                      progress=False)
    one = res.posterior({"y": [0.5, 1.0, 1.5]}, num_samples=200)
    np.testing.assert_allclose(one.draws["shifted"], one.draws["mu"] + 10.0, rtol=1e-6)
    batch = {"y": np.zeros((4, 3))}
    assert "shifted" not in res.posterior(batch, num_samples=50).draws  # a batch keeps them when asked
    asked = res.posterior(batch, num_samples=50, computed=["shifted"]).draws
    assert asked["shifted"].shape == (4, 50)
    np.testing.assert_allclose(asked["shifted"], asked["mu"] + 10.0, rtol=1e-6)


@pytest.mark.parametrize(("name", "words"), [("lambda_", "name it `lambda`"), ("a__b", "double underscore")])
def test_names_that_generated_code_uses_are_reserved(name: str, words: str) -> None:
    """`lambda` is `lambda_` in generated code and a submodel's `u/a` is `u__a`: a user's own
    `lambda_` or `a__b` would collide with them, so the checker refuses them."""
    with pytest.raises(pp.PplError, match="reserved for generated code") as info:
        pp.loads(f"model m():\n    mu ~ normal(0.0, 1.0)\n    {name} = mu + 1.0\n", file="r.ppl")["m"]
    assert words in info.value.render()


def test_a_constant_computed_value_raises_no_convergence_warning(tmp_path: Path) -> None:
    m = pp.loads("model c(N: int):\n    mu ~ normal(0.0, 1.0)\n    twice = 2 * N\n", file="c.ppl")["c"]
    res = pp.sample(m, {"N": 3}, chains=2, warmup=100, draws=100, progress=False)
    assert np.all(res.draws["twice"] == 6)
    d = res.diagnostics()
    assert "twice" not in d["high_rhat"] + d["low_ess_bulk"] + d["low_ess_tail"]
    # a checkpoint belongs to its program: the same call on an edited model is refused, not resumed
    other = pp.loads("model c(N: int):\n    mu ~ normal(100.0, 1.0)\n    twice = 2 * N\n", file="c.ppl")["c"]
    pp.sample(m, {"N": 3}, chains=2, warmup=50, draws=50, progress=False, checkpoint=str(tmp_path))
    with pytest.raises(pp.PplError, match="written by another run .*program"):
        pp.sample(other, {"N": 3}, chains=2, warmup=50, draws=50, progress=False, checkpoint=str(tmp_path))


WALK = """\
model walk(T: int):
    x[0] ~ normal(0.0, 1.0)
    y[0] ~ normal(x[0], 1.0)
    for t in range(1, T):
        x[t] ~ normal(0.9 * x[t - 1], 1.0)
        y[t] ~ normal(x[t], 1.0)
    level = 2.0 * x + 1.0
    return sum(x)
"""
WALK_DATA = {"T": 6, "y": [0.3, -0.1, 0.8, 1.2, 0.4, -0.5]}


def test_a_particle_filter_keeps_them_for_particles_and_trajectories() -> None:
    m = pp.loads(WALK, file="walk.ppl")["walk"]
    res = pp.smc(m, WALK_DATA, particles=200, seed=0)
    parts = res.particles
    np.testing.assert_allclose(parts["level"], 2.0 * parts["x"] + 1.0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(parts["return"], parts["x"].sum(axis=1), rtol=1e-5, atol=1e-5)
    traj = res.trajectories(50, seed=1)
    np.testing.assert_allclose(traj["level"], 2.0 * traj["x"] + 1.0, rtol=1e-5, atol=1e-5)
    assert "values the model computes" in res.summary() and "\nlevel (shape 6)\n" in res.summary()
    w = np.exp(res.log_weights)
    np.testing.assert_allclose(res.to_json()["computed"]["level"]["mean"], w @ parts["level"], rtol=1e-4)
    only = pp.smc(m, WALK_DATA, particles=200, seed=0, computed=["return"])
    assert set(only.particles) == {"x", "return"}
    assert set(pp.smc(m, WALK_DATA, particles=200, seed=0, computed=False).particles) == {"x"}
    with pytest.raises(pp.PplError, match="computes no value named `levl`"):
        pp.smc(m, WALK_DATA, particles=200, computed=["levl"])
    longer = res.extend({"y": 0.2})  # past the data it was given: latents only
    assert set(longer.particles) == {"x"} and longer.particles["x"].shape == (200, 7)


def test_the_smc_cli_chooses_them(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "walk.ppl").write_text(WALK)
    (tmp_path / "walk.json").write_text(json.dumps(WALK_DATA))
    args = ["smc", str(tmp_path / "walk.ppl"), "--data", str(tmp_path / "walk.json"), "-n", "100", "--no-progress"]
    assert main([*args, "--output", str(tmp_path / "out.json")]) == 0
    assert "\nlevel (shape 6)\n" in capsys.readouterr().out
    assert set(json.loads((tmp_path / "out.json").read_text())["computed"]) == {"level", "return"}
    assert main([*args, "--computed", "none"]) == 0
    assert "values the model computes" not in capsys.readouterr().out
