"""NUTS on models whose discrete choices marginalize sums out, against exact answers: the change
point of docs/marginalize.md and examples/changepoint.ppl (Poisson-gamma conjugacy gives the exact
posterior of every year and of the rates), a two-component mixture against the same model with its
assignments summed out by hand; and the models of docs/marginalize.md are marginalized (tests/docs runs
the page)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import special

import pplang as pp

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "marginalize.md").read_text()


def blocks() -> list[str]:
    parts = DOC.split("```")
    return [parts[i].lstrip("\n") for i in range(1, len(parts), 2)]


def exact_change_point(y: np.ndarray) -> tuple[np.ndarray, float, float]:
    """p(tau | y) and the posterior means of the rates, with exponential(1) = gamma(1, 1) priors:
    a rate with counts summing to S over n years integrates to Gamma(S + 1) / (n + 1)^(S + 1)."""
    t = len(y)
    log_post = np.empty(t)
    for tau in range(t):
        s1, n1, s2, n2 = y[:tau].sum(), tau, y[tau:].sum(), t - tau
        log_post[tau] = (special.gammaln(s1 + 1) - (s1 + 1) * np.log(n1 + 1)
                         + special.gammaln(s2 + 1) - (s2 + 1) * np.log(n2 + 1))
    p = np.exp(log_post - special.logsumexp(log_post))
    early = sum(p[k] * (y[:k].sum() + 1) / (k + 1) for k in range(t))
    late = sum(p[k] * (y[k:].sum() + 1) / (t - k + 1) for k in range(t))
    return p, float(early), float(late)


def test_the_change_point_posterior_is_exact() -> None:
    model = pp.load(str(ROOT / "examples" / "changepoint.ppl"))["changepoint"]
    data = json.loads((ROOT / "examples" / "changepoint.data.json").read_text())
    res = pp.sample(model, data, chains=4, warmup=500, draws=500, seed=2, progress=False)
    p, early, late = exact_change_point(np.asarray(data["y"]))
    table = res.table()
    for name, want in (("early", early), ("late", late)):
        row = table.loc[name]
        assert abs(row["mean"] - want) < 4 * row["mcse_mean"] + 1e-3, (name, row["mean"], want)
    got = res.draws["p(tau)"].reshape(-1, len(p)).mean(axis=0)
    for k in np.argsort(p)[-4:]:  # the likeliest years: mean probability within 4 of its MCSEs
        row = table.loc[f"p(tau)[{k}]"]
        assert abs(got[k] - p[k]) < 4 * row["mcse_mean"] + 1e-3, (k, got[k], p[k])
    assert int(np.argmax(got)) == int(np.argmax(p))
    # the change point itself, drawn from p(tau | rates, y) per draw: its mean is the exact E[tau | y]
    mean_tau = float(np.dot(np.arange(len(p)), p))
    assert abs(table.loc["tau", "mean"] - mean_tau) < 4 * table.loc["tau", "mcse_mean"] + 1e-3


def test_importance_sampling_sums_the_change_point_out() -> None:
    """With the change point summed out of the weights, importance sampling from the prior estimates
    the exact evidence and E[tau | y] (the draws of `tau` recovered per draw), with far more
    effective draws than when tau is proposed from the prior too."""
    model = pp.load(str(ROOT / "examples" / "changepoint.ppl"))["changepoint"]
    data = json.loads((ROOT / "examples" / "changepoint.data.json").read_text())
    y = np.asarray(data["y"])
    p, early, _ = exact_change_point(y)
    t = len(y)
    log_post = np.array([special.gammaln(y[:k].sum() + 1) - (y[:k].sum() + 1) * np.log(k + 1)
                         + special.gammaln(y[k:].sum() + 1) - (y[k:].sum() + 1) * np.log(t - k + 1) for k in range(t)])
    evidence = float(special.logsumexp(log_post) - np.log(t) - special.gammaln(y + 1).sum())
    res = pp.importance_sampling(model, data, num_samples=20_000, seed=0)
    plain = pp.importance_sampling(model, data, num_samples=20_000, seed=0, marginalize=False)
    assert res.ess > 10 * plain.ess
    assert abs(res.log_marginal_likelihood - evidence) < 4 * res.log_marginal_likelihood_se + 1e-3
    w = res.weights
    for name, want in (("tau", np.dot(np.arange(t), p)), ("early", early)):
        x = np.asarray(res.samples[name], float)
        got = np.dot(w, x)
        sd = np.sqrt(np.dot(w, (x - got) ** 2))
        assert abs(got - want) < 4 * sd / np.sqrt(res.ess), (name, got, want)


def test_a_mixture_samples_as_its_hand_summed_twin() -> None:
    text = next(b for b in blocks() if b.startswith("model mixture("))
    natural = pp.loads(text, file="marginalize.md")["mixture"]
    by_hand = pp.loads(text.replace("        z[i] ~ categorical(w)\n        y[i] ~ normal(mu[z[i]], sigma)\n",
                                    "        factor(log_mix(w, [normal_lpdf(y[i], mu[0], sigma), "
                                    "normal_lpdf(y[i], mu[1], sigma)]))\n").replace("model mixture(N: int, K: int)",
                                                                                    "model mixture(N: int, K: int, "
                                                                                    "y: vector[N])"),
                       file="hand.ppl")["mixture"]
    rng = np.random.default_rng(0)
    y = np.where(rng.random(60) < 0.3, rng.normal(-2.0, 1.0, 60), rng.normal(3.0, 1.0, 60))
    data = {"N": 60, "K": 2, "y": y}
    a = pp.sample(natural, data, chains=4, warmup=400, draws=400, seed=0, progress=False).table()
    b = pp.sample(by_hand, data, chains=4, warmup=400, draws=400, seed=1, progress=False).table()
    for name in ("w[0]", "mu[0]", "mu[1]", "sigma"):
        se = np.hypot(a.loc[name, "mcse_mean"], b.loc[name, "mcse_mean"])
        assert abs(a.loc[name, "mean"] - b.loc[name, "mean"]) < 5 * se + 1e-3, name


@pytest.mark.parametrize("index", range(3))
def test_the_documented_models_are_marginalized(index: int) -> None:
    """Each model of the page has its discrete choice summed out (tests/docs runs the page itself)."""
    block = [b for b in blocks() if b.startswith("model ")][index]
    module = pp.loads(block, file="marginalize.md")
    (name,) = list(module.compiled.functions)
    marginal = module[name].marginal(["y"])
    assert marginal.marginalized and all(p in ("mixture", "single", "chain", "elimination")
                                         for p in marginal.marginalized.values())
