"""The bundled examples run, from the command line and as Python twins, and give the known answers.

Each example's posterior means are compared with an answer computed another way: exactly (coin),
by numerical integration over a grid with the discrete choices summed out (linear regression,
mixture, hidden Markov model), or posteriordb's reference posterior (eight schools, long MCMC
runs). The tolerance is four Monte Carlo standard errors: the importance-sampling error
sd / sqrt(ESS), plus the reference's own error where it has one.
"""

from __future__ import annotations

import math
import re
import runpy
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from tables import parse_rows

import pplang as pp
from pplang.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = ["coin", "linreg", "eight_schools", "mixture", "hmm"]

# Known posterior means: name -> (mean, standard error of the reference itself).
COIN = {"p": (9 / 12, 0.0)}  # beta(1 + 8 heads, 1 + 2 tails)
# Exact by 1-D quadrature over sigma, with alpha and beta integrated out analytically.
LINREG = {"alpha": (2.4546, 0.0005), "beta": (2.8400, 0.0005), "sigma": (0.6461, 0.0005)}
# posteriordb eight_schools-eight_schools_noncentered: reference means and their MCSE.
EIGHT_SCHOOLS = {"mu": (4.4105, 0.0330), "tau": (3.6021, 0.0319)}
# Grid of 70^4 points over (w, short, long, sigma), each z[i] summed out.
MIXTURE = {"w": (0.6428, 0.001), "short": (2.1595, 0.001), "long": (4.2320, 0.001), "sigma": (0.3474, 0.001)}
# Grid of 201^2 points over mu, states summed out by the forward algorithm in numpy.
HMM = {"mu[0]": (3.0238, 0.0005), "mu[1]": (8.8261, 0.0005)}


def parse_summary(text: str) -> tuple[float, dict[str, tuple[float, float]]]:
    """Effective sample size and {row name: (mean, sd)} from a printed posterior summary."""
    return float(re.search(r"effective sample size ([\d.]+)", text).group(1)), parse_rows(text)


def check_means(text: str, known: dict[str, tuple[float, float]], min_ess: float) -> None:
    ess, rows = parse_summary(text)
    assert ess >= min_ess, text
    for name, (ref, ref_se) in known.items():
        mean, sd = rows[name]
        tol = 4 * math.hypot(sd / math.sqrt(ess), ref_se)
        assert abs(mean - ref) < tol, f"{name}: {mean} vs {ref} (tolerance {tol:.4f})\n{text}"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main([*args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def run_file(name: str) -> tuple[str, list[str]]:
    """(the .ppl path, the `--data` arguments) of an example."""
    return str(EXAMPLES / f"{name}.ppl"), ["--data", str(EXAMPLES / f"{name}.data.json")]


# ---------------------------------------------------------------- the command line


def test_coin_cli(capsys: pytest.CaptureFixture[str]) -> None:
    path, data = run_file("coin")
    out = cli(capsys, "infer", "--method", "is", path, "--model", "coin", *data)
    assert "observed: flips" in out
    check_means(out, COIN, min_ess=2000)
    # The exact log marginal likelihood of this sequence of flips: log B(9, 3) - log B(1, 1).
    lml, se = map(float, re.search(r"log marginal likelihood (-?[\d.]+) \(se ([\d.]+)\)", out).groups())
    exact = math.lgamma(9) + math.lgamma(3) - math.lgamma(12)
    assert abs(lml - exact) < 4 * se + 1e-3


def test_coin_simulate_cli(capsys: pytest.CaptureFixture[str]) -> None:
    path, data = run_file("coin")
    out = cli(capsys, "simulate", path, "--model", "coin", *data, "-n", "2000")
    rows = parse_rows(out)
    assert set(rows) == {"p"} | {f"flips[{i}]" for i in range(10)}
    assert abs(rows["p"][0] - 0.5) < 4 * math.sqrt(1 / 12 / 2000)  # uniform prior: mean 1/2, var 1/12


def test_linreg_cli_prior_proposal_is_flagged(capsys: pytest.CaptureFixture[str]) -> None:
    path, data = run_file("linreg")
    assert main(["infer", "--method", "is", path, "--model", "linreg", *data]) == 0
    out, err = capsys.readouterr()
    assert parse_summary(out)[0] < 20
    warning = out.index("warning: effective sample size")
    assert "unreliable" in out[warning:] and warning < out.index("\nalpha ")  # before the table


def test_linreg_cli_guide_proposal(capsys: pytest.CaptureFixture[str]) -> None:
    path, data = run_file("linreg")
    out = cli(capsys, "infer", path, "--model", "linreg", *data, "--proposal", "ols_proposal", "--predictive")
    assert "proposal ols_proposal" in out and "posterior predictive" in out
    check_means(out.split("posterior predictive")[0], LINREG, min_ess=2000)


def test_eight_schools_cli(capsys: pytest.CaptureFixture[str]) -> None:
    path, data = run_file("eight_schools")
    out = cli(capsys, "infer", "--method", "is", path, "--model", "eight_schools", *data, "-n", "20000")
    assert "theta_tilde[7]" in parse_rows(out)
    check_means(out, EIGHT_SCHOOLS, min_ess=2000)


def test_mixture_cli(capsys: pytest.CaptureFixture[str]) -> None:
    path, data = run_file("mixture")
    out = cli(capsys, "infer", path, "--model", "mixture", *data, "--proposal", "soft_assign", "-n", "20000")
    check_means(out, MIXTURE, min_ess=500)
    rows = parse_rows(out)
    y = pp.load_data(str(EXAMPLES / "mixture.data.json"))["y"]
    for i in range(len(y)):
        if f"z[{i}]" in rows:  # the summary shows the first rows only
            assert rows[f"z[{i}]"][0] == pytest.approx(float(y[i] > 3.2), abs=0.01)


def test_hmm_cli(capsys: pytest.CaptureFixture[str]) -> None:
    path, data = run_file("hmm")
    out = cli(capsys, "simulate", path, "--model", "hmm", *data, "-n", "1000")
    rows = parse_rows(out)
    assert {"mu[0]", "mu[1]", "z[0]"} <= set(rows) and "more rows" in out  # 202 rows in model order, 40 shown
    assert abs(rows["mu[0]"][0] - 3.0) < 4 / math.sqrt(1000) and abs(rows["mu[1]"][0] - 10.0) < 4 / math.sqrt(1000)
    out = cli(capsys, "infer", "--method", "is", path, "--model", "hmm_forward", *data, "-n", "20000")
    check_means(out, HMM, min_ess=200)


def test_hmm_log_density_by_hand() -> None:
    """The log density of a simulated trace of `hmm` (a lax.scan over the states) against scipy."""
    model = pp.load(str(EXAMPLES / "hmm.ppl"))["hmm"]
    data = pp.load_data(str(EXAMPLES / "hmm.data.json"))
    args = {k: data[k] for k in ("N", "K", "theta")}
    tr = model.simulate(args, seed=5)
    mu, z, y = (np.asarray(tr[a], float) for a in ("mu", "z", "y"))
    z = z.astype(int)
    theta = np.asarray(data["theta"])
    expected = (stats.norm.logpdf(mu, [3.0, 10.0], 1.0).sum() + math.log(1 / data["K"])
                + np.log(theta[z[:-1], z[1:]]).sum() + stats.norm.logpdf(y, mu[z], 1.0).sum())
    assert float(tr.log_density) == pytest.approx(expected, rel=1e-5)
    assert float(model.log_density(tr.values, args)) == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- the Python twins


def run_twin(name: str, capsys: pytest.CaptureFixture[str]) -> str:
    runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
    return capsys.readouterr().out


def numbers(pattern: str, text: str) -> list[float]:
    match = re.search(pattern, text)
    assert match, f"no match for {pattern!r} in:\n{text}"
    return [float(g) for g in match.groups()]


def test_coin_twin(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_twin("coin", capsys)
    check_means(out, COIN, min_ess=2000)
    assert numbers(r"posterior mean of p: [\d.]+ \(exact ([\d.]+)\)", out) == [0.75]
    lml, se, exact = numbers(r"log marginal likelihood: (-[\d.]+) \+- ([\d.]+) \(exact (-[\d.]+)\)", out)
    assert abs(lml - exact) < 4 * se + 1e-3


def test_linreg_twin(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_twin("linreg", capsys)
    prior, guided = out.split("\n", 1)
    assert numbers(r"effective sample size ([\d.]+) of 10000 \(useless\)", prior)[0] < 20
    check_means(guided, LINREG, min_ess=2000)
    mean, lo, hi = numbers(r"a 2-tonne car: ([\d.]+) L/100 km, 90% interval ([\d.]+) to ([\d.]+)", out)
    assert lo < 2.4546 + 2 * 2.8400 < hi and lo < mean < hi


def test_eight_schools_twin(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_twin("eight_schools", capsys)
    ess, = numbers(r"effective sample size (\d+)", out)
    assert ess > 2000
    mu, ref = numbers(r"mu\s+(-?[\d.]+)\s+([\d.]+)", out)
    assert abs(mu - ref) < 4 * math.hypot(3.3 / math.sqrt(ess), 0.033)
    # theta[0], the school that reported 28, is shrunk most, toward the others.
    theta0, ref0 = numbers(r"theta\[0\]\s+(-?[\d.]+)\s+([\d.]+)", out)
    sd0 = math.sqrt(69.36 - 6.15**2)  # posteriordb's mean square and mean of theta[0]
    assert abs(theta0 - ref0) < 4 * math.hypot(sd0 / math.sqrt(ess), 0.056)
    assert "d/d mu" in out


def test_mixture_twin(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_twin("mixture", capsys)
    ess, = numbers(r"guide proposal: ESS (\d+)", out)
    assert ess > 500
    bad_ess, = numbers(r"prior proposal: ESS (\d+)", out)
    assert bad_ess < 100
    for name, (ref, ref_se) in MIXTURE.items():
        mean, sd = numbers(rf"\n  {name}\s+([\d.]+) \(posterior sd ([\d.]+)\)", out)
        assert abs(mean - ref) < 4 * math.hypot(sd / math.sqrt(ess), ref_se)
    # the eruption of 1.83 minutes was short, the one of 4.84 long
    assert numbers(r"\n\s+16\s+1\.83\s+([\d.]+)", out)[0] < 0.01
    assert numbers(r"\n\s+20\s+4\.84\s+([\d.]+)", out)[0] > 0.99


def test_hmm_twin(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_twin("hmm", capsys)
    brute, forward = numbers(r"sum over 256 paths (-[\d.]+), forward algorithm (-[\d.]+)", out)
    assert brute == pytest.approx(forward, abs=1e-3)
    density, recomputed = numbers(r"log density of the whole trace: (-[\d.]+) \(recomputed: (-[\d.]+)\)", out)
    assert density == recomputed
    check_means(out, HMM, min_ess=200)


@pytest.mark.parametrize("name", NAMES)
def test_every_example_has_its_files(name: str) -> None:
    for suffix in (".ppl", ".data.json", ".py"):
        assert (EXAMPLES / f"{name}{suffix}").is_file()
