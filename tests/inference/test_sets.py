"""Amortized inference for data sets of any size: set networks (deep sets, set transformer), padding
and masks, training on simulations of varying size (posterior and predictive), answers for sets
of any size, and the errors for bad sets."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pplang.compiler.diagnostics import PplError
from pplang.stdlib import networks as nets

import pplang as pp
from pplang.inference.sets import SizeWarning, bucket

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "set_regression.ppl"

SMALL = """
model line(N: size):
    w ~ normal(0.0, 1.0)
    b ~ normal(0.0, 1.0)
    for i in range(N):
        x[i] ~ normal(0.0, 1.0)
        y[i] ~ normal(w * x[i] + b, 0.5)

network ds = deep_sets(out_size=4, width=16, phi=[16], rho=[16])
network st = set_transformer(out_size=4, dim=8, heads=2, blocks=1, hidden=[16])

guide by_deep_sets(N: size, x: vector[N], y: vector[N]):
    h = ds([x, y])
    w ~ normal(h[0], exp(h[1]))
    b ~ normal(h[2], exp(h[3]))

guide by_attention(N: size, x: vector[N], y: vector[N]):
    h = st([x, y])
    w ~ normal(h[0], exp(h[1]))
    b ~ normal(h[2], exp(h[3]))
"""


def blr_posterior(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact posterior mean and covariance of (w, b) in `line` (conjugate normal)."""
    X = np.stack([x, np.ones_like(x)], 1)
    cov = np.linalg.inv(np.eye(2) + X.T @ X / 0.25)
    return cov @ X.T @ y / 0.25, cov


def blr_data(rng: np.random.Generator, sizes: list[int]) -> tuple[list, list]:
    xs, ys = [], []
    for n in sizes:
        w, b = rng.normal(size=2)
        x = rng.normal(size=n)
        xs.append(x)
        ys.append(w * x + b + 0.5 * rng.normal(size=n))
    return xs, ys


@pytest.fixture(scope="module")
def small():
    return pp.loads(SMALL, file="small.ppl")


@pytest.fixture(scope="module")
def trained(small):
    """Both guides after a short training on simulations of 2..20 points (answers need not be good)."""
    return {g: pp.amortize(small["line"], small[g], simulate=256, sizes=(2, 20), epochs=2, progress=False)
            for g in ("by_deep_sets", "by_attention")}


# ------------------------------------------------------------ set networks and masks


@pytest.mark.parametrize("block", [nets.DeepSets(out_size=3, width=8, phi=(8,), rho=(8,), pool="mean"),
                                   nets.DeepSets(out_size=3, width=8, phi=(8,), rho=(8,), pool="max"),
                                   nets.SetTransformer(out_size=3, dim=8, heads=2, blocks=2, hidden=(8,))])
def test_set_blocks_are_invariant_and_padding_contributes_nothing(block):
    x = jax.random.normal(jax.random.key(0), (7, 2))
    module = block.initial("enc", x)
    apply = eqx.filter_jit(block.apply_set)
    out = apply(module, x, None)
    perm = np.random.default_rng(0).permutation(7)
    np.testing.assert_allclose(apply(module, x[perm], None), out, rtol=1e-5, atol=1e-6)
    padded = jnp.concatenate([x, 1e3 * jnp.ones((9, 2))])  # padding of large values: masked, it cannot matter
    mask = jnp.arange(16) < 7
    np.testing.assert_allclose(apply(module, padded, mask), out, rtol=1e-5, atol=1e-6)
    assert not np.allclose(apply(module, padded, None), out, atol=1e-3)  # unmasked, it would


@pytest.mark.parametrize("guide", ["by_deep_sets", "by_attention"])
def test_permuting_the_points_leaves_the_answer_unchanged(trained, guide):
    r = trained[guide]
    xs, ys = blr_data(np.random.default_rng(1), [13])
    perm = np.random.default_rng(2).permutation(13)
    a = r.posterior({"x": xs[0], "y": ys[0]}, num_samples=64, seed=3).draws
    b = r.posterior({"x": xs[0][perm], "y": ys[0][perm]}, num_samples=64, seed=3).draws
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("guide", ["by_deep_sets", "by_attention"])
def test_padding_changes_no_answer(trained, guide):
    r = trained[guide]
    sizes = [3, 5, 12, 20]  # buckets 8, 8, 16, 32: three compiled calls for four sizes
    xs, ys = blr_data(np.random.default_rng(4), sizes)
    for i, n in enumerate(sizes):  # one set padded to its bucket = the same set at its own size, unpadded
        fixed = pp.AmortizedPosterior(r.model, r.guide, r.params, {"N": n}, r.values, {})
        want = fixed.posterior({"x": xs[i], "y": ys[i]}, num_samples=50, seed=1, computed=False).draws
        got = r.posterior({"x": xs[i], "y": ys[i]}, num_samples=50, seed=1).draws
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)
    batch = r.posterior({"x": xs, "y": ys}, num_samples=200, seed=0)
    assert batch.batched and batch.draws["w"].shape == (4, 200)
    # the padded .npz form (values padded to 20 with large numbers, `N` beside) answers identically
    padded = {"x": np.stack([np.pad(x, (0, 20 - len(x)), constant_values=70.0) for x in xs]),
              "y": np.stack([np.pad(y, (0, 20 - len(y)), constant_values=-70.0) for y in ys]), "N": sizes}
    again = r.posterior(padded, num_samples=200, seed=0)
    for k in batch.draws:
        np.testing.assert_allclose(again.draws[k], batch.draws[k], rtol=1e-5, atol=1e-5)
    assert bucket(3) == 8 and bucket(12) == 16 and bucket(20) == 32 and bucket(200) == 256


def test_answers_compile_once_per_bucket(trained):
    r = trained["by_deep_sets"]
    r._draw.clear()
    r._plans.clear()
    xs, ys = blr_data(np.random.default_rng(5), [9, 10, 11, 13, 16])
    for x, y in zip(xs, ys, strict=True):
        r.posterior({"x": x, "y": y}, num_samples=10)
    assert len(r._draw) == 1  # sizes 9..16 share the bucket 16
    assert len(r._plans) == 1  # and the guide's arguments bound once for it


# ------------------------------------------------------------ accuracy against exact answers


def test_posterior_of_bayesian_linear_regression_within_budget():
    """Neural posterior estimation on sets of 2..64 points, checked against the conjugate posterior on
    new data sets of sizes inside and outside the trained range. Budget (for this short training;
    benchmarks/sets_validation.py reports a longer one): mean error of the posterior mean at most
    1 posterior sd inside the range and 2 at 128 points (twice the largest trained); the sd within
    a factor 1.6. The prior's mean, an answer that ignores the data, is off by more than 3 times
    the budget (checked), and so is one that lets padding in or loses the count."""
    module = pp.load(str(EXAMPLE))
    r = pp.amortize(module["line"], module["line_q"], simulate=4096, sizes=(2, 64), epochs=4, learning_rate=3e-3,
                    progress=False)
    rng = np.random.default_rng(11)
    for n, budget in ((8, 1.0), (48, 1.0), (128, 2.0)):
        xs, ys = blr_data(rng, [n] * 40)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SizeWarning)
            post = r.posterior({"x": np.stack(xs), "y": np.stack(ys)}, num_samples=1000)
        errs, ratios, prior = [], [], []
        for i in range(40):
            mean, cov = blr_posterior(xs[i], ys[i])
            sd = np.sqrt(np.diag(cov))
            prior.append(np.abs(mean) / sd)
            got = np.array([post.mean()["w"][i], post.mean()["b"][i]])
            errs.append(np.abs(got - mean) / sd)
            ratios.append(np.array([post.sd()["w"][i], post.sd()["b"][i]]) / sd)
        assert np.mean(prior) > 3 * budget
        assert np.mean(errs) < budget, (n, np.mean(errs))
        assert 1 / 1.6 < np.exp(np.mean(np.log(ratios))) < 1.6, (n, np.exp(np.mean(np.log(ratios))))


def test_predictive_of_bayesian_linear_regression_within_budget():
    """The prior-fitted network's log predictive density of new points, against the exact
    predictive: within 0.3 nats per point on average inside the trained range, where the prior
    predictive is about 1 nat worse than the exact."""
    from scipy.stats import norm

    module = pp.load(str(EXAMPLE))
    r = pp.amortize(module["line"], module["line_pred"], simulate=2048, sizes=(2, 32), epochs=3, queries=4,
                    learning_rate=3e-3, progress=False)
    assert r.info["target"] == "predictive"
    rng = np.random.default_rng(12)
    xs, ys = blr_data(rng, [16] * 30)
    x_new = rng.normal(size=(30, 5))
    gaps, prior_gaps, y_new = [], [], np.zeros((30, 5))
    for i in range(30):
        mean, cov = blr_posterior(xs[i], ys[i])
        w, b = rng.multivariate_normal(mean, cov)  # a new point from the exact predictive
        y_new[i] = w * x_new[i] + b + 0.5 * rng.normal(size=5)
    lp = r.log_predictive({"x": np.stack(xs), "y": np.stack(ys)}, {"x_new": x_new, "y_new": y_new})
    for i in range(30):
        mean, cov = blr_posterior(xs[i], ys[i])
        X = np.stack([x_new[i], np.ones(5)], 1)
        exact = norm.logpdf(y_new[i], X @ mean, np.sqrt(0.25 + np.einsum("ij,jk,ik->i", X, cov, X)))
        gaps.append(exact - lp[i])
        prior_gaps.append(exact - norm.logpdf(y_new[i], 0.0, np.sqrt(1.25 + x_new[i] ** 2)))
    assert np.mean(prior_gaps) > 0.6
    assert np.mean(gaps) < 0.3, np.mean(gaps)
    draws = r.predictive({"x": xs[0], "y": ys[0]}, {"x_new": x_new[0]}, num_samples=2000)
    mean, cov = blr_posterior(xs[0], ys[0])
    X = np.stack([x_new[0], np.ones(5)], 1)
    sd = np.sqrt(0.25 + np.einsum("ij,jk,ik->i", X, cov, X))
    assert draws["y_new"].shape == (2000, 5)
    assert np.all(np.abs(draws["y_new"].mean(0) - X @ mean) < 1.0 * sd)


def test_posterior_guide_predicts_through_the_model(trained):
    r = trained["by_deep_sets"]
    xs, ys = blr_data(np.random.default_rng(6), [10])
    draws = r.predictive({"x": xs[0], "y": ys[0]}, {"x_new": [0.0, 1.0, 2.0]}, num_samples=500)
    assert draws["y_new"].shape == (500, 3)
    post = r.posterior({"x": xs[0], "y": ys[0]}, num_samples=500)
    # y_new at x = 0 is b plus noise of sd 0.5
    assert abs(draws["y_new"][:, 0].mean() - post.mean()["b"]) < 5 * np.sqrt(post.sd()["b"] ** 2 + 0.25) / np.sqrt(500)
    lp = r.log_predictive({"x": xs[0], "y": ys[0]}, {"x_new": [0.0], "y_new": [post.mean()["b"]]})
    assert lp.shape == (1,) and np.isfinite(lp).all()
    imp = r.importance_sampling({"x": xs[0], "y": ys[0]}, num_samples=200)  # the model at the set's own size
    assert np.isfinite(imp.log_marginal_likelihood)


# ------------------------------------------------------------ bad input


def test_a_non_invariant_network_on_a_set_is_a_located_error():
    src = SMALL + """
network flat = mlp(out_size=4)

guide flat_q(N: size, x: vector[N], y: vector[N]):
    h = flat(y)
    w ~ normal(h[0], exp(h[1]))
    b ~ normal(h[2], exp(h[3]))
"""
    with pytest.raises(PplError, match="not permutation-invariant") as e:
        pp.loads(src, file="flat.ppl")
    line = src.splitlines().index("    h = flat(y)") + 1
    assert f"flat.ppl:{line}:" in str(e.value) and "deep_sets" in str(e.value)


def test_set_block_options_are_checked():
    with pytest.raises(PplError, match="pool.*one of: mean, sum, max"):
        pp.loads("network e = deep_sets(out_size=2, pool=median)\nmodel m():\n    x ~ normal(0.0, 1.0)\n")
    with pytest.raises(PplError, match="multiple of heads"):
        pp.loads("network e = set_transformer(out_size=2, dim=10, heads=4)\nmodel m():\n    x ~ normal(0.0, 1.0)\n")


def test_bad_sets_are_refused(small, trained):
    r = trained["by_deep_sets"]
    with pytest.raises(PplError, match="no points"):
        r.posterior({"x": [], "y": []})
    with pytest.raises(PplError, match="different numbers of points"):
        r.posterior({"x": [0.1, 0.2, 0.3], "y": [0.1, 0.2]})
    with pytest.warns(SizeWarning, match="outside the trained range 2..20"):
        r.posterior({"x": np.zeros(40), "y": np.zeros(40)}, num_samples=10)
    # every answer's values are checked, not only the first data set's (answers reuse the bucket's binding)
    r.posterior({"x": [0.1, 0.2, 0.3], "y": [0.1, 0.2, 0.3]}, num_samples=10)
    with pytest.raises(PplError, match=r"data for `y` must be finite") as e:
        r.posterior({"x": [0.1, 0.2, 0.4], "y": [0.1, np.nan, 0.3]}, num_samples=10)
    assert "y[1] = nan" in str(e.value)
    with pytest.raises(PplError, match=r"data for `x\[1\]` must be finite") as e:
        r.posterior({"x": [[0.1, 0.2], [0.3, np.inf, 0.5]], "y": [[0.1, 0.2], [0.3, 0.4, 0.5]]}, num_samples=10)
    assert "small.ppl" in str(e.value)
    with pytest.raises(PplError, match="in data set 1, the per-point values have different numbers of points"):
        pp.amortize(small["line"], small["by_deep_sets"], {"x": [[0.1], [0.2, 0.3]], "y": [[0.1], [0.2, 0.3, 0.4]]},
                    progress=False)
    with pytest.raises(PplError, match="range of sizes"):
        pp.amortize(small["line"], small["by_deep_sets"], simulate=10, progress=False)


def test_mixed_sizes_where_the_model_needs_equal_ones():
    module = pp.load(str(ROOT / "examples" / "amortized_normal.ppl"))
    with pytest.raises(PplError, match="different sizes") as e:
        pp.amortize(module["repeated"], module["repeated_q"], {"y": [[1.0, 2.0], [1.0, 2.0, 3.0]]},
                    shared={"N": 2}, progress=False)
    assert "N: size" in str(e.value)


def test_a_guide_must_not_compute_with_the_padded_size(small):
    src = SMALL + """
guide counts(N: size, x: vector[N], y: vector[N]):
    h = ds([x, y])
    w ~ normal(h[0] / N, exp(h[1]))
    b ~ normal(h[2], exp(h[3]))

guide as_int(N: int, x: vector[N], y: vector[N]):
    h = ds([x, y])
    w ~ normal(h[0], exp(h[1]))
    b ~ normal(h[2], exp(h[3]))
"""
    module = pp.loads(src, file="bad.ppl")
    with pytest.raises(PplError, match="computes with the set size") as e:
        pp.amortize(module["line"], module["counts"], simulate=10, sizes=(2, 5), progress=False)
    assert f"bad.ppl:{src.splitlines().index('    w ~ normal(h[0] / N, exp(h[1]))') + 1}:" in str(e.value)
    with pytest.raises(PplError, match="declare `N: size` in the guide"):
        pp.amortize(module["line"], module["as_int"], simulate=10, sizes=(2, 5), progress=False)


# ------------------------------------------------------------ command line and saving


def test_cli_trains_on_sets_and_answers_new_points(tmp_path, capsys, monkeypatch):
    from pplang.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "set.json").write_text(json.dumps({"x": [0.1, -0.5, 1.2], "y": [0.3, -0.2, 1.5]}))
    (tmp_path / "new.json").write_text(json.dumps({"x_new": [-1.0, 0.0, 1.0]}))
    code = main(["amortize", str(EXAMPLE), "--model", "line", "--guide", "line_pred", "--simulate", "256",
                 "--sizes", "2:10", "--queries", "2", "--epochs", "1", "--results", "res", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "log q(held-out point | the others)" in out
    assert main(["posterior", "res", "--data", "set.json", "--new", "new.json"]) in (0, None)
    assert "y_new[2]" in capsys.readouterr().out
    loaded = pp.AmortizedPosterior.load(tmp_path / "res")
    assert loaded.info["sizes"] == [2, 10] and loaded.info["target"] == "predictive"
    assert main(["amortize", str(EXAMPLE), "--model", "line", "--guide", "line_q", "--simulate", "64",
                 "--sizes", "0:10"]) != 0
    assert "LOW <= HIGH" in capsys.readouterr().err


def test_predictive_of_gaussian_process_regression_within_budget():
    """A prior-fitted network for GP regression with fixed hyperparameters
    (examples/gp_regression.ppl), against the exact GP predictive on new sets of 12 points and of
    48 (outside the trained 2..24): mean log density gap at most 0.9 nats per point inside and
    1.2 outside, where the prior predictive is about 1.5 nats worse than the exact."""
    from scipy.stats import norm

    module = pp.load(str(ROOT / "examples" / "gp_regression.ppl"))
    r = pp.amortize(module["gp"], module["gp_pred"], simulate=4096, sizes=(2, 24), epochs=3, queries=4,
                    learning_rate=3e-3, progress=False)
    rng = np.random.default_rng(13)

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * np.subtract.outer(a, b) ** 2 / 0.25)

    for n, budget in ((12, 0.9), (48, 1.2)):
        x = rng.uniform(-2, 2, size=(20, n + 4))
        y = np.stack([rng.multivariate_normal(np.zeros(n + 4), kernel(xi, xi) + 0.01 * np.eye(n + 4)) for xi in x])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SizeWarning)
            lp = r.log_predictive({"x": x[:, :n], "y": y[:, :n]}, {"x_new": x[:, n:], "y_new": y[:, n:]})
        gaps, prior = [], []
        for i in range(20):
            K = kernel(x[i, :n], x[i, :n]) + 0.01 * np.eye(n)
            ks = kernel(x[i, n:], x[i, :n])
            mean = ks @ np.linalg.solve(K, y[i, :n])
            sd = np.sqrt(1.01 - np.einsum("ij,ji->i", ks, np.linalg.solve(K, ks.T)))
            exact = norm.logpdf(y[i, n:], mean, sd)
            gaps.append(np.mean(exact - lp[i]))
            prior.append(np.mean(exact - norm.logpdf(y[i, n:], 0.0, np.sqrt(1.01))))
        assert np.mean(prior) > budget + 0.3
        assert np.mean(gaps) < budget, (n, np.mean(gaps), np.mean(prior))


class MaskedMean(eqx.Module):
    """A hand-written set network: masked mean of the points, then a linear map."""

    linear: eqx.nn.Linear

    def __call__(self, points, mask):
        keep = jnp.ones(points.shape[0], bool) if mask is None else mask
        mean = jnp.sum(jnp.where(keep[:, None], points, 0.0), axis=0) / jnp.sum(keep)
        return self.linear(mean)


def test_a_bound_equinox_module_as_a_set_network():
    enc = pp.set_network(MaskedMean(eqx.nn.Linear(2, 2, key=jax.random.key(0))), out_size=2)

    @pp.model
    def level(N: size):  # noqa: F821
        mu = pp.sample(pp.normal(0.0, 1.0))  # noqa: F841
        for i in range(N):
            x[i] = pp.sample(pp.normal(0.0, 1.0))  # noqa: F821
            y[i] = pp.sample(pp.normal(mu, 1.0))  # noqa: F821

    @pp.guide
    def level_q(N: size, x: vector[N], y: vector[N]):  # noqa: F821
        h = enc([x, y])
        mu = pp.sample(pp.normal(h[0], pp.exp(h[1])))  # noqa: F841

    r = pp.amortize(level, level_q, simulate=256, sizes=(2, 10), epochs=2, progress=False)
    assert any(a.startswith("enc.") for a in r.params["guide"])
    xs, ys = blr_data(np.random.default_rng(8), [6])
    fixed = pp.AmortizedPosterior(r.model, r.guide, r.params, {"N": 6}, r.values, {})
    want = fixed.posterior({"x": xs[0], "y": ys[0]}, num_samples=20, computed=False).draws["mu"]
    got = r.posterior({"x": xs[0][::-1], "y": ys[0][::-1]}, num_samples=20).draws["mu"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_training_on_sets_resumes_exactly(small, tmp_path):
    args = dict(simulate=256, sizes=(2, 12), batch_size=64, progress=False, seed=5)
    m, q = small["line"], small["by_deep_sets"]
    pp.amortize(m, q, epochs=1, checkpoint=str(tmp_path), checkpoint_every=2, **args)
    resumed = pp.amortize(m, q, epochs=2, checkpoint=str(tmp_path), resume=True, **args)
    straight = pp.amortize(m, q, epochs=2, **args)
    assert resumed.info["steps"] == straight.info["steps"] == 8
    for a in straight.params["guide"]:
        np.testing.assert_array_equal(np.asarray(resumed.params["guide"][a]), np.asarray(straight.params["guide"][a]))
