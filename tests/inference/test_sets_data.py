"""Amortized training on real data sets of different sizes: the sets are padded to the longest and
masked, the model's loops over the points leave the padded iterations out of its log density, and
the objective of a padded data set equals the objective at its own size."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pplang.compiler.diagnostics import PplError

import pplang as pp
from pplang.inference.variational import Problem

SRC = """
model mean(N: size):
    mu ~ normal(0.0, 1.0)
    for i in range(N):
        y[i] ~ normal(mu, 1.0)

network enc = deep_sets(out_size=2, width=32, phi=[32], rho=[32])

guide mean_q(N: size, y: vector[N]):
    h = enc(y)
    mu ~ normal(h[0], exp(h[1]))

model waits(N: size):
    rate ~ lognormal(0.0, 1.0)
    for i in range(N):
        t[i] ~ gamma(2.0, rate)

network wenc = deep_sets(out_size=2, width=8, phi=[8], rho=[8])

guide waits_q(N: size, t: vector[N]):
    h = wenc(log(t))
    rate ~ lognormal(h[0], exp(h[1]))

model mix(N: size):
    mu ~ normal(0.0, 3.0)
    for i in range(N):
        z[i] ~ bernoulli(0.3)
        y[i] ~ normal(mu * z[i], 1.0)

guide mix_q(N: size, y: vector[N]):
    h = wenc(y)
    mu ~ normal(h[0], exp(h[1]))
"""


@pytest.fixture(scope="module")
def module():
    return pp.loads(SRC, file="sets_data.ppl")


def objective(problem: Problem, params: dict, runner=None) -> tuple:
    """The problem's ELBO estimate (4 particles, a fixed key) and its gradient in the parameters."""
    def f(p):
        return problem.surrogate(p, jax.random.key(3), problem.init_state(), 4, runner=runner)[1][0]
    return jax.value_and_grad(f)(params)


@pytest.mark.parametrize("names", [("mean", "mean_q", "y"), ("waits", "waits_q", "t"), ("mix", "mix_q", "y")])
def test_a_padded_data_set_has_the_objective_of_its_own_size(module, names):
    """Also with positive observations (a zero pad would lie outside the support) and with a
    per-point discrete choice summed out (the mixture's per-point log-sum-exp is masked too)."""
    model, guide, obs = module[names[0]], module[names[1]], names[2]
    values = np.random.default_rng(1).gamma(2.0, 1.0, size=7)
    n, length = 7, 12
    pad = np.concatenate([values, np.repeat(values[-1:], length - n)])  # as the collection pads

    def build(data: dict) -> Problem:
        return Problem.build(model.summed_out(model.bind(data).observed, True, guide.sites), guide, "elbo", data)

    exact, padded = build({"N": n, obs: values}), build({"N": length, obs: pad})
    params = exact.init_params(0)
    v0, g0 = objective(exact, params)
    v1, g1 = objective(padded, params, padded.with_data({obs: pad}, {"N": jnp.arange(length) < n}))
    assert np.isfinite(float(v0)) and abs(float(v1) - float(v0)) <= 1e-5 * (1 + abs(float(v0)))
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5)
    v2, _ = objective(padded, params)  # without the mask the padded points count: the test can fail
    assert abs(float(v2) - float(v0)) > 0.1


def test_elbo_training_on_data_sets_of_different_sizes_meets_the_exact_posterior(module):
    """A normal mean with known noise (conjugate: posterior N(sum y / (n + 1), 1 / (n + 1))),
    trained by the ELBO on 1024 data sets of 2..40 points given as a ragged list. Budget: the
    posterior means within 0.35 exact sds on average, the sds within 25%, at sizes inside the
    trained range (an untrained guide is several sds off)."""
    rng = np.random.default_rng(0)
    ys = [rng.normal() + rng.normal(size=rng.integers(2, 41)) for _ in range(1024)]
    r = pp.amortize(module["mean"], module["mean_q"], data={"y": ys}, epochs=30, learning_rate=3e-3, progress=False)
    assert r.info["mode"] == "data" and r.info["sizes"] == [2, 40] and r.info["status"] == "done"
    test = np.random.default_rng(5)
    for n in (3, 10, 30):
        sets = [test.normal() + test.normal(size=n) for _ in range(40)]
        draws = r.posterior({"y": np.stack(sets)}, num_samples=4000, computed=False).draws["mu"]
        mean, sd = np.array([s.sum() / (n + 1) for s in sets]), (1 / (n + 1)) ** 0.5
        assert np.mean(np.abs(draws.mean(1) - mean)) / sd < 0.35, n
        assert abs(np.mean(draws.std(1)) / sd - 1) < 0.25, n


def test_a_padded_npz_with_its_sizes_trains_like_the_ragged_list(module, tmp_path):
    rng = np.random.default_rng(2)
    sizes = rng.integers(2, 9, size=64)
    ys = [rng.normal(size=k) for k in sizes]
    padded = np.zeros((64, 8))
    for i, y in enumerate(ys):
        padded[i, :len(y)] = y  # padded by hand with zeros: the sizes say which are real
    a = pp.amortize(module["mean"], module["mean_q"], data={"y": ys}, epochs=2, progress=False)
    b = pp.amortize(module["mean"], module["mean_q"], data={"y": padded, "N": sizes}, epochs=2, progress=False)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-5)


def test_cli_trains_on_a_json_collection_of_sets(tmp_path, capsys, monkeypatch):
    from pplang.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.ppl").write_text(SRC)
    rng = np.random.default_rng(3)
    (tmp_path / "sets.json").write_text(json.dumps({"y": [rng.normal(size=k).tolist() for k in (3, 5, 8, 2) * 8]}))
    (tmp_path / "one.json").write_text(json.dumps({"y": [0.5, 1.0, 1.5]}))
    code = main(["amortize", "m.ppl", "--model", "mean", "--guide", "mean_q", "--data", "sets.json", "--epochs", "2",
                 "--results", "res", "--no-progress"])
    assert code == 0 and "32 data sets" in capsys.readouterr().out
    assert main(["posterior", "res", "--data", "one.json"]) in (0, None)
    assert "mu" in capsys.readouterr().out


def test_models_that_cannot_be_padded_are_located_errors():
    src = SRC + """
model per_n(N: size):
    mu ~ normal(0.0, 1.0)
    s = 1.0 / N
    for i in range(N):
        y[i] ~ normal(mu, s)

model walk(N: size):
    mu ~ normal(0.0, 1.0)
    level = mu
    for i in range(N):
        level = level + 0.1
        y[i] ~ normal(level, 1.0)
"""
    module = pp.loads(src, file="bad.ppl")
    data = {"y": [[0.1, 0.2], [0.3, 0.4, 0.5]]}
    with pytest.raises(PplError, match="computes with the set size `N`") as e:
        pp.amortize(module["per_n"], module["mean_q"], data, progress=False)
    assert f"bad.ppl:{src.splitlines().index('    s = 1.0 / N') + 1}:" in str(e.value)
    with pytest.raises(PplError, match="carries state from point to point") as e:
        pp.amortize(module["walk"], module["mean_q"], data, progress=False)
    assert "exchangeable" in str(e.value)
    with pytest.raises(PplError, match="in data set 1, `y` has 1 point but `N` is 2"):
        pp.amortize(module["mean"], module["mean_q"], {"y": [[0.1, 0.2], [0.3]], "N": [2, 2]}, progress=False)


def test_bad_collections_of_sets_are_clear_errors(module):
    from pplang.inference.sets import ragged

    def refused(data: dict, match: str) -> None:
        with pytest.raises(PplError, match=match):
            pp.amortize(module["mean"], module["mean_q"], data, progress=False)

    refused({"y": [["a"], [0.3, 0.4, 0.5]]}, "`y` holds values that are not numbers in data set 0")
    refused({"z": [[1.0], [0.3, 0.4]]}, "the data has `z`, which neither model `mean` nor guide `mean_q` uses")
    refused({"y": [[], [0.3, 0.4]]}, "data set 0 has no points")
    refused({"y": [[0.1, np.nan], [0.3]]}, "observed `y` must be finite")
    refused({"y": [[0.1, 0.2], [0.3, 0.4]], "N": [1.5, 2]}, "`N` counts points: it takes whole numbers")
    sets = ragged({"y": [[1, 2], [0.5, 1.5, 2.5]]}, ["y"], "N", batched=True)  # ints with floats stay floats
    np.testing.assert_array_equal(sets.rows["y"], [[1.0, 2.0, 2.0], [0.5, 1.5, 2.5]])
