"""Amortized posteriors: a guide driven by a network, trained once, answers for new data in one pass.

The conjugate model of examples/amortized_normal.ppl (mu ~ normal(0, 2), y[i] ~ normal(mu, 1),
N = 5) has the exact posterior normal(sum(y) / (N + 1/4), 1 / sqrt(N + 1/4)) for any data set, so
both training modes (a collection of data sets with the ELBO, simulations from the model with the
sleep objective) are checked on data sets the guide never saw. Their error is not Monte Carlo
error (the draws' standard error is below 0.01 sd here) but how well a trained network
approximates the map from data to posterior: the budget is 0.1 posterior sd on average and 0.3
at worst (over 200 data sets from the prior predictive) for the mean, 5% on average and 15% at
worst for the sd; a guide trained for a few steps misses it by far (checked).
The importance-sampling correction is checked within four standard errors of the exact mean, and
an amortized proposal for a particle filter against the Kalman filter's exact likelihood.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from pplang.compiler.diagnostics import PplError
from references import kalman_filter

import pplang as pp
from pplang.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
N, PRIOR_SD = 5, 2.0
PRECISION = 1.0 / PRIOR_SD**2 + N


def exact(y: np.ndarray) -> tuple[np.ndarray, float]:
    return np.asarray(y).sum(-1) / PRECISION, PRECISION**-0.5


def runs(n: int, seed: int) -> np.ndarray:
    """n data sets from the model's prior predictive."""
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, PRIOR_SD, (n, 1)) + rng.normal(size=(n, N))


def decaying(peak: float, steps: int) -> optax.GradientTransformation:
    return optax.adam(optax.linear_schedule(peak, peak / 20, steps))


@pytest.fixture(scope="module")
def normal():
    return pp.load(str(EXAMPLES / "amortized_normal.ppl"))


@pytest.fixture(scope="module")
def trained(normal):
    """The guide trained both ways."""
    model, guide = normal["repeated"], normal["repeated_q"]
    sim = pp.amortize(model, guide, simulate=20_000, shared={"N": N}, epochs=20, batch_size=64,
                      optimizer=decaying(1e-2, 20 * 312), progress=False)
    data = pp.amortize(model, guide, {"y": runs(8000, 3)}, shared={"N": N}, epochs=25, batch_size=64, particles=4,
                       optimizer=decaying(1e-2, 25 * 125), progress=False)
    return {"simulate": sim, "data": data}


def errors(result: pp.AmortizedPosterior, y: np.ndarray, draws: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """(mean - exact mean) / exact sd and sd / exact sd for each data set of the batch `y`."""
    post = result.posterior({"y": y}, num_samples=draws, seed=11)
    mean, sd = exact(y)
    return (post.mean()["mu"] - mean) / sd, post.sd()["mu"] / sd


# ---------------------------------------------------------------- the conjugate model


@pytest.mark.parametrize("mode", ["simulate", "data"])
def test_amortized_posterior_matches_the_exact_posterior_for_new_data(trained, mode):
    result = trained[mode]
    assert result.info["status"] == "done" and result.info["mode"] == mode
    dm, sr = errors(result, runs(200, 7))
    assert np.abs(dm).mean() < 0.1 and np.abs(dm).max() < 0.3, (np.abs(dm).mean(), np.abs(dm).max())
    assert np.abs(sr - 1).mean() < 0.05 and np.abs(sr - 1).max() < 0.15, (sr.min(), sr.max())


@pytest.mark.parametrize("objective,sd_range", [(("iwelbo", {"k": 4}), (1.0, 1.4)), (("rws", {"k": 4}), (0.9, 1.1))])
def test_other_objectives_train_on_data_too(normal, objective, sd_range):
    """IWELBO and reweighted wake-sleep: the same location; the IWELBO's guide comes out wider (the
    tighter bound rewards proposals that cover the posterior), wake-sleep's matches the sd."""
    result = pp.amortize(normal["repeated"], normal["repeated_q"], {"y": runs(2000, 4)}, shared={"N": N},
                         objective=objective, epochs=30, learning_rate=3e-3, progress=False)
    assert result.info["objective"] == objective[0]
    dm, sr = errors(result, runs(50, 8))
    assert np.abs(dm).mean() < 0.2 and sd_range[0] < sr.mean() < sd_range[1], (np.abs(dm).mean(), sr.mean())


def test_an_undertrained_guide_misses_the_budget(normal):
    """The budget above is one a guide must earn: a few steps of training miss it by far."""
    short = pp.amortize(normal["repeated"], normal["repeated_q"], simulate=640, shared={"N": N}, epochs=1,
                        batch_size=64, progress=False)
    dm, sr = errors(short, runs(200, 7))
    assert np.abs(dm).mean() > 0.3 or np.abs(sr - 1).mean() > 0.1


def test_one_data_set_and_a_batch_give_the_same_answer(trained):
    result, y = trained["simulate"], runs(3, 5)
    batch = result.posterior({"y": y}, num_samples=20_000)
    assert batch.batched and batch.draws["mu"].shape == (3, 20_000)
    se = math.sqrt(2) * exact(y)[1] / math.sqrt(20_000)
    for i in range(3):
        one = result.posterior({"y": y[i]}, num_samples=20_000, seed=i)
        assert not one.batched and one.draws["mu"].shape == (20_000,)
        assert abs(one.mean()["mu"] - batch.mean()["mu"][i]) < 4.5 * se
    assert "mu" in batch.summary(2) and batch.quantile(0.5)["mu"].shape == (3,)


def test_importance_sampling_with_the_amortized_guide_corrects_it(trained):
    y = np.array([1.0, 2.0, 0.5, 1.5, 3.0])
    corrected = trained["data"].importance_sampling({"y": y}, num_samples=8000, seed=2)
    mean, sd = exact(y)
    assert corrected.pareto_k < 0.5
    assert abs(corrected.mean("mu") - mean) < 4 * sd / math.sqrt(corrected.ess)


def test_compare_with_a_per_data_set_fit(trained):
    """The per-data-set fit (full-rank normal, exact for this posterior) is as good as the
    amortized guide or better: a gap of at most a few hundredths of a nat, never far below zero."""
    c = trained["simulate"].compare({"y": [1.0, 2.0, 0.5, 1.5, 3.0]}, steps=3000, num_samples=20_000)
    assert -4 * math.hypot(c.elbo_amortized_se, c.elbo_fitted_se) < c.gap < 0.05, c.summary()
    assert c.seconds_amortized < c.seconds_fitted
    mean, sd = exact(np.array([1.0, 2.0, 0.5, 1.5, 3.0]))
    assert abs(float(c.mean_fitted["mu"]) - mean) < 0.25 * sd
    assert "gap" in c.summary() and "time to the posterior" in c.summary()


def test_save_and_load_give_the_same_answers(trained, tmp_path):
    result = trained["data"]
    result.save(tmp_path / "r", plots=True)
    assert (tmp_path / "r" / "objective.png").is_file()
    back = pp.AmortizedPosterior.load(tmp_path / "r")
    y = runs(4, 9)
    a = result.posterior({"y": y}, num_samples=100, seed=3).draws["mu"]
    b = back.posterior({"y": y}, num_samples=100, seed=3).draws["mu"]
    np.testing.assert_array_equal(a, b)
    assert back.info["mode"] == "data" and back.shared == {"N": N} and len(back.values) == len(result.values)
    with pytest.raises(PplError, match="does not exist"):
        pp.AmortizedPosterior.load(tmp_path / "missing")
    (tmp_path / "r" / "values.npy").unlink()
    with pytest.raises(PplError, match="incomplete: values.npy missing"):
        pp.AmortizedPosterior.load(tmp_path / "r")


def test_checkpoints_resume_exactly(normal, tmp_path):
    args = dict(simulate=640, shared={"N": N}, batch_size=64, progress=False, seed=4)
    m, q = normal["repeated"], normal["repeated_q"]
    pp.amortize(m, q, epochs=2, checkpoint=str(tmp_path), checkpoint_every=5, **args)
    resumed = pp.amortize(m, q, epochs=4, checkpoint=str(tmp_path), resume=True, **args)
    straight = pp.amortize(m, q, epochs=4, **args)
    assert resumed.info["steps"] == straight.info["steps"] == 40
    for a in straight.params["guide"]:
        np.testing.assert_array_equal(np.asarray(resumed.params["guide"][a]), np.asarray(straight.params["guide"][a]))


def test_a_diverging_training_stops_with_the_last_good_weights(normal):
    result = pp.amortize(normal["repeated"], normal["repeated_q"], {"y": runs(256, 1)}, shared={"N": N},
                         epochs=50, batch_size=32, optimizer=optax.sgd(1e4), progress=False)
    assert result.info["status"] == "nan" and "not finite" in result.info["message"]
    assert result.info["steps"] < 50 * 8
    assert all(np.all(np.isfinite(np.asarray(w))) for w in result.params["guide"].values())


def test_training_mode_summary_and_progress_in_epochs(normal, capsys):
    result = pp.amortize(normal["repeated"], normal["repeated_q"], simulate=640, shared={"N": N}, epochs=2,
                         batch_size=64)
    assert "2.0/2 epochs" in capsys.readouterr().err
    text = result.summary()
    assert "640 simulations" in text and "2 epochs of 10 batches of 64" in text


# ---------------------------------------------------------------- networks: declared, bound, in models

VAE_SMALL = """
network decoder = mlp(out_size=16, hidden=[32], activation=relu)
network encoder = mlp(out_size=2, hidden=[32])

model vae():
    z ~ normal(0.0, 1.0)
    logits = decoder([z])
    for k in range(16):
        x[k] ~ bernoulli(logits=logits[k])

guide vae_q(x: bool[16]):
    h = encoder(1.0 * x)
    z ~ normal(h[0], exp(h[1]))
"""


def test_a_variational_autoencoder_trains_the_model_and_the_guide_networks():
    """Binary images of 16 pixels, each a bar of 4 at a random place with 5% of pixels flipped:
    the ELBO per image climbs, both networks' weights are trained, and the reconstructions (each
    pixel's majority over 32 decodings of the encoded image) are closer to the images than the
    average image is, and to the clean bars closer still."""
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 12, 600)
    clean = (np.arange(16)[None, :] >= pos[:, None]) & (np.arange(16)[None, :] < pos[:, None] + 4)
    x = clean ^ (rng.random((600, 16)) < 0.05)
    m = pp.loads(VAE_SMALL)
    result = pp.amortize(m["vae"], m["vae_q"], {"x": x}, epochs=100, batch_size=50, learning_rate=1e-2,
                         progress=False)
    assert result.values[-100:].mean() > result.values[:12].mean() + 3.0
    assert {a.split(".")[0] for a in result.params["model"]} == {"decoder"}
    assert {a.split(".")[0] for a in result.params["guide"]} == {"encoder"}
    rec = result.predictive({"x": x[:200]}, num_samples=32)["x"].mean(1) > 0.5
    baseline = np.mean((x[:200].mean(0) > 0.5) != x[:200])
    assert np.mean(rec != x[:200]) < 0.5 * baseline and np.mean(rec != clean[:200]) < 0.1
    drawn = result.sample(4, seed=0)
    assert drawn["x"].shape == (4, 16) and drawn["z"].shape == (4,)
    grid = result.sample(given={"z": np.linspace(-2, 2, 5)})
    assert grid["x"].shape == (5, 16) and "z" not in grid


def test_networks_bound_from_python_are_trained():
    """An equinox module bound by name is a network: its weights are the guide's parameters, at
    addresses under its name, and they move in training."""
    src = """
model repeated(N: int):
    mu ~ normal(0.0, 2.0)
    for i in range(N):
        y[i] ~ normal(mu, 1.0)

guide repeated_q(N: int, y: vector[N]):
    h = enc(y)
    mu ~ normal(h[0], exp(h[1]))
"""
    enc = eqx.nn.MLP(N, 2, 16, 1, activation=jax.nn.relu, key=jax.random.key(1))
    m = pp.loads(src, hosts={"enc": enc})
    result = pp.amortize(m["repeated"], m["repeated_q"], simulate=4000, shared={"N": N}, epochs=10,
                         batch_size=64, learning_rate=5e-3, progress=False)
    weights = result.params["guide"]
    assert set(weights) == {"enc.layers[0].weight", "enc.layers[0].bias", "enc.layers[1].weight",
                            "enc.layers[1].bias"}
    assert not np.allclose(np.asarray(weights["enc.layers[0].weight"]), np.asarray(enc.layers[0].weight))
    dm, sr = errors(result, runs(100, 2))
    assert np.abs(dm).mean() < 0.3


def test_the_python_twins_train_and_answer(capsys):
    import runpy

    runpy.run_path(str(EXAMPLES / "amortized_normal.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "trained on simulations" in out and "importance sampling with the guide" in out


def test_fit_accepts_a_guide_with_a_network_and_fixed_parameters(normal):
    """pp.fit trains a network guide on one data set; `fixed` holds a program's parameters."""
    y = np.array([1.0, 2.0, 0.5, 1.5, 3.0])
    fitted = pp.fit(normal["repeated"], normal["repeated_q"], data={"N": N, "y": y}, steps=1500,
                    learning_rate=0.01, progress=False, num_draws=8000, particles=4)
    mean, sd = exact(y)
    assert abs(fitted.draws["mu"].mean() - mean) < 0.2 * sd
    start = fitted.problem.init_params(0)["q"]
    held = pp.fit(normal["repeated"], normal["repeated_q"], data={"N": N, "y": y}, steps=50, progress=False,
                  fixed={"repeated_q": {a: np.asarray(v) for a, v in start.items()}})
    for a, v in held.unconstrained["q"].items():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(start[a]))


# ---------------------------------------------------------------- an amortized proposal for SMC

SSM = """
model ssm(T: int):
    x[0] ~ normal(0.0, 1.0)
    y[0] ~ normal(x[0], 0.5)
    for t in range(1, T):
        x[t] ~ normal(0.9 * x[t - 1], 1.0)
        y[t] ~ normal(x[t], 0.5)

network step = mlp(out_size=2, hidden=[16], activation=tanh)

guide ssm_q(T: int, y: vector[T]):
    h0 = step([0.0, y[0]])
    x[0] ~ normal(h0[0], exp(h0[1]))
    for t in range(1, T):
        h = step([x[t - 1], y[t]])
        x[t] ~ normal(h[0], exp(h[1]))
"""


def test_an_amortized_proposal_for_a_particle_filter_is_unbiased_and_better_than_the_prior():
    T = 20
    m = pp.loads(SSM)
    result = pp.amortize(m["ssm"], m["ssm_q"], simulate=4000, shared={"T": T}, epochs=30, batch_size=64,
                         learning_rate=5e-3, progress=False)
    y = np.asarray(m["ssm"].simulate({"T": T}, seed=5).values["y"])
    log_z = kalman_filter(y, 0.9, 1.0, 1.0, 0.25, 0.0, 1.0).log_z
    amortized = np.array([result.smc({"y": y}, particles=100, seed=s).log_marginal_likelihood for s in range(40)])
    boot = np.array([pp.smc(m["ssm"], {"T": T, "y": y}, particles=100, seed=s).log_marginal_likelihood
                     for s in range(40)])
    ratio = np.exp(amortized - log_z)  # Z_hat / Z: mean 1 (unbiased)
    assert abs(ratio.mean() - 1) < 4 * ratio.std(ddof=1) / math.sqrt(len(ratio))
    assert amortized.var() < 0.5 * boot.var()


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs,message", [
    ({}, "either data"),
    ({"data": {"y": runs(10, 0)}, "simulate": 100}, "not both"),
    ({"data": {"y": 1.0}}, "one entry per data set"),
    ({"data": {"y": runs(10, 0), "w": np.zeros(9)}}, "neither model"),
    ({"data": {"y": runs(10, 0)}, "shared": {"N": N, "y": 1.0}}, "both in the data and in `shared`"),
    ({"data": {"y": runs(10, 0)}, "epochs": 0}, "epochs must be a positive int"),
    ({"simulate": -3}, "simulate must be a positive int"),
])
def test_bad_arguments_are_located_errors(normal, kwargs, message):
    kwargs = {"shared": {"N": N}, **kwargs}
    with pytest.raises(PplError, match=message):
        pp.amortize(normal["repeated"], normal["repeated_q"], progress=False, **kwargs)


def test_data_sets_of_different_shapes_or_outside_the_support_are_refused():
    src = """
model counts(N: int):
    rate ~ gamma(2.0, 1.0)
    for i in range(N):
        k[i] ~ poisson(rate)

network enc = mlp(out_size=2)

guide counts_q(N: int, k: int[N]):
    h = enc(1.0 * k)
    rate ~ lognormal(h[0], exp(h[1]))
"""
    m = pp.loads(src)
    with pytest.raises(PplError, match="has 4 data sets but `k` has 3|data sets"):
        pp.amortize(m["counts"], m["counts_q"], {"k": np.ones((3, 2)), "N": np.full(4, 2)}, progress=False)
    with pytest.raises(PplError, match="whole numbers >= 0"):
        pp.amortize(m["counts"], m["counts_q"], {"k": -np.ones((3, 2), int)}, shared={"N": 2}, progress=False)
    with pytest.raises(PplError, match="whole numbers"):
        pp.amortize(m["counts"], m["counts_q"], {"k": np.full((3, 2), 0.5)}, shared={"N": 2}, progress=False)


def test_training_on_simulations_needs_a_guide_of_the_latents_and_a_model_without_parameters(normal):
    m = pp.loads(VAE_SMALL)
    with pytest.raises(PplError, match="parameters of its own"):
        pp.amortize(m["vae"], m["vae_q"], simulate=100, progress=False)
    blind = pp.loads(pp.load(str(EXAMPLES / "amortized_normal.ppl")).compiled.program.source + """
guide blind(N: int):
    mu ~ normal(0.0, 1.0)
""")
    with pytest.raises(PplError, match="takes none of model `repeated`'s random choices"):
        pp.amortize(blind["repeated"], blind["blind"], simulate=100, shared={"N": N}, progress=False)


def test_posterior_needs_the_guides_inputs(trained):
    with pytest.raises(PplError, match="no value for `y`"):
        trained["simulate"].posterior({"z": [1.0]})
    with pytest.raises(PplError, match="num_samples must be a positive int"):
        trained["simulate"].posterior({"y": np.zeros(N)}, num_samples=0)


NETWORK_ERRORS = [
    ("network enc = mpl(out_size=2)", "must be built from a standard block", "did you mean `mlp`"),
    ("network enc = mlp(2)", "takes its options by name", "out_size=2"),
    ("network enc = mlp(out_size=2, widths=[3])", "has no option `widths`", "options:"),
    ("network enc = mlp(hidden=[3])", "needs `out_size`", "out_size=2"),
    ("network enc = mlp(out_size=2, hidden=[3.5])", "must be a positive int literal", "fixed when the file"),
    ("network enc = mlp(out_size=2, hidden=3)", "`hidden` is a list", "hidden=[64, 64]"),
    ("network enc = mlp(out_size=2, activation=tahn)", "must name an activation", "did you mean `tanh`"),
    ("network enc = mlp(out_size=2, in_size=4)", "takes inputs of size 4", "in_size"),
]


@pytest.mark.parametrize("decl,message,hint", NETWORK_ERRORS, ids=[e[1][:24] for e in NETWORK_ERRORS])
def test_network_declarations_are_checked(decl, message, hint):
    src = f"""{decl}

guide q(y: vector[5]):
    h = enc(y)
    mu ~ normal(h[0], exp(h[1]))
"""
    with pytest.raises(PplError) as info:
        pp.loads(src)
    d = info.value.diagnostics[0]
    assert message in d.message and hint in (d.hint or "") and d.span.line in (1, 4)


def test_network_calls_and_names_are_checked():
    base = "network enc = mlp(out_size=2)\n\n"
    cases = [
        ("guide q(y: vector[5]):\n    h = enc(y, y)\n    mu ~ normal(h[0], 1.0)\n", "takes one input"),
        ("guide q(y: bool[5]):\n    h = enc(y)\n    mu ~ normal(h[0], 1.0)\n", "takes a real input, not a bool"),
        ("guide q(y: real):\n    h = enc(y)\n    mu ~ normal(h[0], 1.0)\n", "at least 1 dimension"),
        ("guide q(y: vector[5]):\n    param enc: real = 0.0\n    mu ~ normal(enc, 1.0)\n", "is a network"),
        ("guide enc(y: vector[5]):\n    mu ~ normal(0.0, 1.0)\n", "declared twice"),
    ]
    for body, message in cases:
        with pytest.raises(PplError, match=message):
            pp.loads(base + body)


# ---------------------------------------------------------------- the command line


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_trains_on_simulations_saves_and_answers(capsys, tmp_path):
    query = str(EXAMPLES / "amortized_normal.query.json")
    code, out, err = run(capsys, "amortize", str(EXAMPLES / "amortized_normal.ppl"), "--model", "repeated",
                         "--guide", "repeated_q", "--simulate", "20000", "--set", "N=5", "--epochs", "20",
                         "--lr", "0.01", "--lr-schedule", "cosine", "--results", str(tmp_path / "r"), "--query", query,
                         "--no-progress")
    assert code == 0, err
    assert "20000 simulations" in out and "saved to" in out
    code, out, err = run(capsys, "posterior", str(tmp_path / "r"), "--data", query, "--correct", "4000",
                         "--compare", "500", "--output", str(tmp_path / "draws.json"))
    assert code == 0, err
    mean, sd = exact(np.array(json.loads(Path(query).read_text())["y"]))
    rows = [line.split() for line in out.splitlines() if line.startswith("mu ")]
    assert len(rows) == 2 and all(abs(float(r[1]) - mean) < 0.3 * sd for r in rows)
    assert "Pareto k" in out and "gap" in out and len(json.loads((tmp_path / "draws.json").read_text())["mu"]) == 1000


def test_cli_trains_a_vae_from_a_model_file_and_a_guide_file_on_npz_data(capsys, tmp_path):
    code, out, err = run(capsys, "amortize", str(EXAMPLES / "vae.ppl"), "--model", "vae", "--guide",
                         f"{EXAMPLES / 'vae_guide.ppl'}:vae_q", "--data", str(EXAMPLES / "digits.npz"),
                         "--epochs", "2", "--results", str(tmp_path / "vae"), "--no-progress")
    assert code == 0, err
    assert "1797 data sets" in out
    back = pp.AmortizedPosterior.load(tmp_path / "vae")
    assert back.guide.name == "vae_q" and back.model.name == "vae" and back.params["model"]
    np.savez(tmp_path / "three.npz", x=pp.load_data(str(EXAMPLES / "digits.npz"))["x"][:3])
    code, out, err = run(capsys, "posterior", str(tmp_path / "vae"), "--data", str(tmp_path / "three.npz"))
    assert code == 0, err and out.count("data set") == 3


@pytest.mark.parametrize("argv,message", [
    (["--data", "{collection}", "--set", "N=5", "--guide", "nope"], "no model, guide or objective|nope"),
    (["--data", "{bad}", "--set", "N=5", "--guide", "repeated_q"], "one entry per data set"),
    (["--simulate", "100", "--guide", "repeated_q"], "missing data for argument `N`|N"),
])
def test_cli_bad_input_is_a_located_error(capsys, tmp_path, argv, message):
    (tmp_path / "bad.json").write_text('{"y": 3.0}')
    argv = [a.format(collection=EXAMPLES / "amortized_normal.collection.json", bad=tmp_path / "bad.json")
            for a in argv]
    code, out, err = run(capsys, "amortize", str(EXAMPLES / "amortized_normal.ppl"), "--model", "repeated", *argv,
                         "--epochs", "1", "--no-progress")
    assert code == 1 and "Traceback" not in err
    import re

    assert re.search(message, err), err
    code, out, err = run(capsys, "posterior", str(tmp_path / "nothing"), "--data", str(tmp_path / "bad.json"))
    assert code == 1 and "does not exist" in err


def test_jax_numpy_is_what_networks_see():
    """A network applied to a batch maps over its leading axes: the same as applying it per example."""
    from pplang.stdlib.networks import MLP

    net = MLP(out_size=3, hidden=(4,))
    module = net.initial("enc", jnp.zeros(5))
    x = jax.random.normal(jax.random.key(0), (2, 6, 5))
    np.testing.assert_allclose(np.asarray(net.apply(module, x)),
                               np.asarray(jax.vmap(jax.vmap(module))(x)), rtol=1e-6)


def test_resuming_with_more_epochs_under_a_decaying_rate_warns(normal, tmp_path):
    """A decaying rate spans the whole training: more epochs change the rate of those already run,
    so the resumed training differs from a straight one, and says so (pp.fit's resume too)."""
    from pplang.runtime.optimize import ScheduleWarning

    args = dict(simulate=640, shared={"N": N}, batch_size=64, progress=False, seed=4, lr_schedule="cosine")
    m, q = normal["repeated"], normal["repeated_q"]
    pp.amortize(m, q, epochs=2, checkpoint=str(tmp_path), checkpoint_every=5, **args)
    with pytest.warns(ScheduleWarning, match="cosine from 0.001 to 1e-06 over 20 steps; this run's is cosine from "
                                             "0.001 to 1e-06 over 40 steps"):
        pp.amortize(m, q, epochs=4, checkpoint=str(tmp_path), resume=True, **args)
