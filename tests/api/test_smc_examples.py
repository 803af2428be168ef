"""The particle-filter examples run, as Python twins and from the command line, and give the right answers.

Each example's answer is checked against an exact one (tests/references.py):

* hmm_smc: the forward algorithm (log p(y) and the filtering probabilities of the state);
* tracking: the Kalman filter (the model is linear and Gaussian; 4-D state, 2-D observations);
* stochastic_volatility: a grid filter, the forward algorithm on 661 grid points of the scalar
  log-variance (halving the grid spacing changes log Z and the filtering means by less than 1e-9).

A filter's estimates are random; their standard errors come from the spread over R independent
runs (the twin's own run, seed 0, and R - 1 more with other seeds). Per-step filtering means must
agree with the exact ones within a t bound with a Bonferroni correction over all steps and
coordinates (a false alarm rate of 1e-3 for the whole test), and Z_hat / Z must average to 1 within
4.5 standard errors (the estimate of Z is unbiased).
"""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

import numpy as np
import pytest
from references import grid_filter, hmm_forward, kalman_filter
from scipy import stats

import pplang as pp
from pplang.cli import main as cli_main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = ["hmm_smc", "stochastic_volatility", "tracking"]
RUNS = 12


def run_twin(name: str) -> tuple[dict, dict]:
    """The twin's module namespace and what its main() returns."""
    ns = runpy.run_path(str(EXAMPLES / f"{name}.py"))
    return ns, ns["main"]()


def more_runs(model: pp.Model, data: dict, first, particles: int) -> list:
    """The twin's result and RUNS - 1 independent runs with other seeds."""
    return [first] + [pp.smc(model, data, particles=particles, seed=s) for s in range(1, RUNS)]


def assert_agrees(estimates: np.ndarray, exact: np.ndarray, what: str, atol: float = 0.0) -> None:
    """Means over runs (axis 0) equal `exact` everywhere, within a Bonferroni-corrected t bound (plus
    `atol` for rounding, where every run gives the same value and the standard error is 0)."""
    mean = estimates.mean(axis=0)
    se = estimates.std(axis=0, ddof=1) / np.sqrt(len(estimates))
    bound = stats.t.ppf(1 - 1e-3 / (2 * exact.size), len(estimates) - 1)
    off = np.maximum(np.abs(mean - exact) - atol, 0.0)
    z = np.divide(off, se, out=np.where(off > 0, np.inf, 0.0), where=se > 0)
    worst = np.unravel_index(np.argmax(z), z.shape)
    assert np.all(z <= bound), f"{what}: {z[worst]:.1f} standard errors off at {worst} (bound {bound:.1f})"


def assert_unbiased(log_z: np.ndarray, exact: float) -> None:
    ratio = np.exp(log_z - exact)
    se = ratio.std(ddof=1) / np.sqrt(len(ratio))
    assert abs(ratio.mean() - 1.0) < 4.5 * se, f"mean Z_hat / Z = {ratio.mean():.4f} (se {se:.4f})"


def test_hmm_smc_twin(capsys: pytest.CaptureFixture[str]) -> None:
    ns, out = run_twin("hmm_smc")
    text = capsys.readouterr().out
    data = pp.load_data(str(EXAMPLES / "hmm_smc.data.json"))
    y, mu = np.asarray(data["y"], float), np.asarray(data["mu"], float)
    exact = hmm_forward(np.full(data["K"], 0.5), np.asarray(data["theta"]), stats.norm.logpdf(y[:, None], mu, 1.0))
    # the twin's exact value, from lesson 5's forward algorithm in pplang (float32)
    assert out["exact"] == pytest.approx(exact.log_z, abs=1e-3)
    printed, = (float(v) for v in re.findall(r"forward algorithm (-[\d.]+)", text))
    assert printed == pytest.approx(exact.log_z, abs=2e-3)
    assert_unbiased(out["runs"], exact.log_z)
    assert re.search(r"\n100 runs: log estimate -[\d.]+ \(sd [\d.]+\); estimate / exact [\d.]+", text)
    # the guide proposes from p(z[t] | z[t - 1], y[t]): the estimate is almost exact
    guided = out["guided"]
    assert guided.std(ddof=1) < 0.01 and abs(guided.mean() - exact.log_z) < 4.5 * guided.std(ddof=1) + 1e-3
    p_high = np.array([np.asarray(r.filtering_mean("z"), float) for r in
                       more_runs(ns["hmm_smc"], data, out["result"], 1000)])
    assert_agrees(p_high, exact.filtering[:, 1], "p(z[t] = 1 | y[0..t])", atol=1e-4)


def test_stochastic_volatility_twin(capsys: pytest.CaptureFixture[str]) -> None:
    ns, out = run_twin("stochastic_volatility")
    text = capsys.readouterr().out
    assert "volatility" in text and "resampled at" in text
    data = out["data"]
    y = np.asarray(data["y"], float)
    mu, phi, sigma = data["mu"], data["phi"], data["sigma"]
    grid = np.linspace(-7.0, 6.2, 661)  # mu +- 8 stationary sd of h
    exact = grid_filter(grid, stats.norm.logpdf(grid, mu, sigma / np.sqrt(1 - phi**2)),
                        stats.norm.logpdf(grid[None, :], mu + phi * (grid[:, None] - mu), sigma),
                        stats.norm.logpdf(y[:, None], 0.0, np.exp(grid[None, :] / 2)))
    results = more_runs(ns["stochastic_volatility"], data, out["result"], 2000)
    assert_unbiased(np.array([r.log_marginal_likelihood for r in results]), exact.log_z)
    assert_agrees(np.array([np.asarray(r.filtering_mean("h"), float) for r in results]), exact.means,
                  "filtering mean of h")
    # the printed median matches the grid filter's median of exp(h / 2) at the printed steps
    cdf = np.cumsum(exact.filtering, axis=1)
    for t, med in re.findall(r"\n\s+(\d+)\s+([\d.]+)\s+[\d.]+ to", text):
        exact_med = np.exp(grid[np.searchsorted(cdf[int(t)], 0.5)] / 2)
        assert float(med) == pytest.approx(exact_med, rel=0.05), t


def test_tracking_twin(capsys: pytest.CaptureFixture[str]) -> None:
    ns, out = run_twin("tracking")
    text = capsys.readouterr().out
    data = out["data"]
    dt, q, r = data["dt"], data["q"], data["r"]
    A = np.array([[1, 0, dt, 0], [0, 1, 0, dt], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    Q = q * np.array([[dt**3 / 3, 0, dt**2 / 2, 0], [0, dt**3 / 3, 0, dt**2 / 2],
                      [dt**2 / 2, 0, dt, 0], [0, dt**2 / 2, 0, dt]])
    H = np.eye(2, 4)
    exact = kalman_filter(np.asarray(data["y"], float), A, Q, H, r**2 * np.eye(2), np.zeros(4),
                          np.diag([100.0, 100.0, 25.0, 25.0]))
    results = more_runs(ns["tracking"], data, out["result"], 5000)
    assert_unbiased(np.array([res.log_marginal_likelihood for res in results]), exact.log_z)
    assert_agrees(np.array([np.asarray(res.filtering_mean("x"), float) for res in results]), exact.means,
                  "filtering mean of x")
    # the printed uncertainty is the Kalman filter's 90% half-width, within Monte Carlo error
    half, = (float(v) for v in re.findall(r"90% half-width ([\d.]+) m on average", text))
    exact_half = 1.645 * np.mean(np.sqrt(np.diagonal(exact.covariances, axis1=1, axis2=2)[10:, :2]))
    assert half == pytest.approx(exact_half, rel=0.05)
    assert exact_half < 1.645 * r  # the filter beats a single fix
    assert len(re.findall(r"a whole track \d", text)) == 3
    distinct, = (int(v) for v in re.findall(r"descend from (\d+) of the 5000 starting points", text))
    assert 1 <= distinct < 5000


@pytest.mark.parametrize("name", NAMES)
def test_smc_cli(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command in each example's header runs; --output holds per-step results for every latent."""
    out_json, plots = tmp_path / "out.json", tmp_path / "plots"
    data = pp.load_data(str(EXAMPLES / f"{name}.data.json"))
    code = cli_main(["smc", str(EXAMPLES / f"{name}.ppl"), "--model", name, "--data",
                     str(EXAMPLES / f"{name}.data.json"), "--particles", "500", "--output", str(out_json),
                     "--plots", str(plots), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "log marginal likelihood" in captured.out
    saved = json.loads(out_json.read_text())
    steps = len(data["y"])
    assert len(saved["ess"]) == len(saved["log_evidence_increments"]) == steps
    assert saved["log_marginal_likelihood"] == pytest.approx(sum(saved["log_evidence_increments"]), abs=1e-2)
    latent = {"hmm_smc": "z", "stochastic_volatility": "h", "tracking": "x"}[name]
    assert len(saved["filtering"][latent]["mean"]) == steps
    assert sorted(p.name for p in plots.iterdir()) == ["ess.png", "filtering.png", "ppc.png"]


def test_smc_cli_with_the_guide(capsys: pytest.CaptureFixture[str]) -> None:
    """hmm_smc.ppl's second command: with the look-ahead guide, 500 particles give log p(y) to within
    0.02 (the spread of the estimate is about 0.002)."""
    data = pp.load_data(str(EXAMPLES / "hmm_smc.data.json"))
    y, mu = np.asarray(data["y"], float), np.asarray(data["mu"], float)
    exact = hmm_forward(np.full(data["K"], 0.5), np.asarray(data["theta"]), stats.norm.logpdf(y[:, None], mu, 1.0))
    code = cli_main(["smc", str(EXAMPLES / "hmm_smc.ppl"), "--model", "hmm_smc", "--data",
                     str(EXAMPLES / "hmm_smc.data.json"), "--particles", "500", "--proposal", "look_ahead",
                     "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "proposal look_ahead" in out
    log_z, = (float(v) for v in re.findall(r"log marginal likelihood (-[\d.]+)", out))
    assert log_z == pytest.approx(exact.log_z, abs=0.02)


@pytest.mark.parametrize("name", NAMES)
def test_every_smc_example_has_its_files(name: str) -> None:
    text = (EXAMPLES / f"{name}.ppl").read_text()
    assert text.startswith("# Lesson ")
    assert f"pplang smc examples/{name}.ppl --model {name}" in text and f"--data examples/{name}.data.json" in text
    for suffix in (".ppl", ".data.json", ".py"):
        assert (EXAMPLES / f"{name}{suffix}").is_file()
