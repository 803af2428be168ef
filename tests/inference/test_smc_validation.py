"""Particle filters against exact answers, on a real data set: posteriordb's hmm_example.

The hidden Markov model of examples/hmm_smc.ppl at fixed parameters (the transition matrix of
examples/hmm.data.json, the emission means at posteriordb's reference posterior means), filtered
by `pp.smc` with the hidden states drawn by the particles. The forward algorithm
(tests/references.py) gives log p(y) and p(z[t] | y[0..t]) exactly.

What is asserted, over R independent runs (seeds 0..R-1):

* Z_hat = exp(log Z_hat) is unbiased for Z = p(y): the mean of Z_hat / Z is 1 within 4.5 of its
  standard errors. On the log scale the estimate is biased low by about Var(log Z_hat) / 2 (for a
  nearly normal log Z_hat); the mean of log Z_hat plus that correction is log Z within 4.5 standard
  errors.
* the standard deviation of log Z_hat falls like 1 / sqrt(N): 16 times the particles give a sd at
  least 2 times smaller (4 expected).
* the filtering probabilities p(z[t] = 1 | y[0..t]) averaged over runs match the forward algorithm at
  every step within a Bonferroni-corrected t bound (the runs' own spread gives the standard error).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from references import hmm_forward
from scipy import stats

import pplang as pp

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MU = [3.022, 8.827]  # posteriordb's reference posterior means of hmm_example-hmm_example: 3.0215, 8.8273
RUNS = 32


@pytest.fixture(scope="module")
def hmm() -> tuple[pp.Model, dict, object]:
    model = pp.load(str(EXAMPLES / "hmm_smc.ppl"))["hmm_smc"]
    data = pp.load_data(str(EXAMPLES / "hmm.data.json"))
    y, theta, K = np.asarray(data["y"], float), np.asarray(data["theta"], float), data["K"]
    exact = hmm_forward(np.full(K, 1.0 / K), theta, stats.norm.logpdf(y[:, None], np.asarray(MU)[None, :], 1.0))
    return model, data, exact


def runs(model: pp.Model, data: dict, particles: int) -> list:
    return [pp.smc(model, data, particles=particles, seed=s, mu=MU) for s in range(RUNS)]


def test_example_data_is_hmm_data_with_mu() -> None:
    """hmm_smc.data.json (the example's data) is hmm.data.json plus these emission means."""
    base = json.loads((EXAMPLES / "hmm.data.json").read_text())
    assert json.loads((EXAMPLES / "hmm_smc.data.json").read_text()) == {**base, "mu": MU}


def test_hmm_marginal_likelihood_is_unbiased(hmm) -> None:
    model, data, exact = hmm
    log_z = np.array([r.log_marginal_likelihood for r in runs(model, data, 2000)])
    ratio = np.exp(log_z - exact.log_z)
    se = ratio.std(ddof=1) / np.sqrt(RUNS)
    assert abs(ratio.mean() - 1.0) < 4.5 * se, (ratio.mean(), se)
    var = log_z.var(ddof=1)
    assert abs(log_z.mean() + var / 2 - exact.log_z) < 4.5 * np.sqrt(var / RUNS), (log_z.mean(), var, exact.log_z)
    # the test has power: an estimate off by 0.5 nats would fail it
    assert 0.5 > 4.5 * np.sqrt(var / RUNS) + var / 2


def test_hmm_log_z_sd_falls_with_particles(hmm) -> None:
    model, data, _ = hmm
    few = np.array([r.log_marginal_likelihood for r in runs(model, data, 100)])
    many = np.array([r.log_marginal_likelihood for r in runs(model, data, 1600)])
    assert many.std(ddof=1) < few.std(ddof=1) / 2, (few.std(ddof=1), many.std(ddof=1))


def test_hmm_filtering_probabilities(hmm) -> None:
    model, data, exact = hmm
    results = runs(model, data, 500)
    p_high = np.array([np.asarray(r.filtering_mean("z"), float) for r in results])  # (RUNS, N)
    assert p_high.shape == (RUNS, data["N"])
    mean, se = p_high.mean(axis=0), p_high.std(axis=0, ddof=1) / np.sqrt(RUNS)
    T = data["N"]
    bound = stats.t.ppf(1 - 1e-3 / (2 * T), RUNS - 1)  # all T steps together: false alarm rate 1e-3
    # steps where every run agrees exactly (probabilities at 0 or 1 to float precision) have se 0
    err = np.abs(mean - exact.filtering[:, 1])
    assert np.all(err <= bound * se + 1e-4), (np.max(err / (se + 1e-12)), bound)
    for r in results:
        ess = np.asarray(r.ess)
        assert ess.shape == (T,) and np.all(ess >= 1.0 - 1e-4) and np.all(ess <= 500 * (1 + 1e-4))
