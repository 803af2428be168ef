"""The command-line conventions users bring from Stan, PyMC and NumPyro: --version, every option's help
with its default, summary rows in model order with array entries under their site, --quantiles and
--hdi, ESS and MCSE per row, probability tables for discrete choices, warnings before the table,
--strict and its exit code, --show-code that also runs, valid JSON outputs, --devices, and the
0-based indexing hint."""

from __future__ import annotations

import argparse
import json
import math
import re
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from pplang.cli import main, parser
from pplang.cli.common import EXIT_UNRELIABLE
from pplang.summary import format_table, site_rows

ROOT = Path(__file__).resolve().parents[2]
COIN = str(ROOT / "examples" / "coin.ppl")
COIN_DATA = str(ROOT / "examples" / "coin.data.json")
# A small state-space model for the particle filter.
WALK = """\
model walk(T: int):
    x[0] ~ normal(0.0, 1.0)
    y[0] ~ normal(x[0], 1.0)
    for t in range(1, T):
        x[t] ~ normal(0.9 * x[t - 1], 1.0)
        y[t] ~ normal(x[t], 1.0)
"""

# Declared out of alphabetical order, with a vector choice between two scalars and a discrete choice.
# Conjugate: given y, m is normal with variance 1 / (1/s0^2 + n/1) and the posterior of z is exact.
ORDERED = """\
model ordered(n: int):
    zeta ~ normal(0.0, 2.0)
    for i in range(n):
        y[i] ~ normal(zeta, 1.0)
    b ~ bernoulli(0.3)
    w ~ normal(2.0 * b, 1.0)
    alpha ~ normal(0.0, 1.0)
    return zeta
"""
Y = [0.5, 1.5, 1.0, 2.0]
W = 1.5


def exact_zeta() -> tuple[float, float]:
    var = 1.0 / (1.0 / 4.0 + len(Y))
    return var * sum(Y), math.sqrt(var)


def exact_b() -> float:
    """P(b = 1 | w): prior 0.3 times normal(w; 2, 1), against 0.7 times normal(w; 0, 1)."""
    one, zero = 0.3 * math.exp(-0.5 * (W - 2.0) ** 2), 0.7 * math.exp(-0.5 * W**2)
    return one / (one + zero)


@pytest.fixture
def ordered(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "ordered.ppl").write_text(ORDERED)
    (tmp_path / "ordered.json").write_text(json.dumps({"n": len(Y), "y": Y, "w": W}))
    return str(tmp_path / "ordered.ppl"), str(tmp_path / "ordered.json")


@pytest.fixture
def walk(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "walk.ppl").write_text(WALK)
    (tmp_path / "walk.json").write_text(json.dumps({"T": 6, "y": [0.3, -0.1, 0.8, 1.2, 0.4, -0.5]}))
    return str(tmp_path / "walk.ppl"), str(tmp_path / "walk.json")


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


# ---------------------------------------------------------------- --version and help


def test_version_is_the_installed_packages(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"pplang {version('pplang')}"


def test_every_option_of_every_subcommand_has_help_and_shows_its_default() -> None:
    for name, command in subcommands().items():
        formatter = command._get_formatter()
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (name, action.option_strings or action.dest)
            default = action.default
            shown = not (default is None or default is False or default is argparse.SUPPRESS or default == [])
            if shown and action.option_strings:
                text = formatter._expand_help(action)  # the option's help as --help prints it
                assert "default" in text, (name, action.option_strings, text)


# ---------------------------------------------------------------- the table


def test_rows_follow_the_model_with_array_entries_under_their_site(capsys: pytest.CaptureFixture,
                                                                   ordered: tuple[str, str]) -> None:
    code, out, _ = run(capsys, "infer", "--method", "is", ordered[0], "--data", ordered[1], "-n", "4000")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines() if re.match(r"^(zeta|b|alpha)\b", line)]
    assert names == ["zeta", "b", "alpha"]  # model order, not alphabetical; w and y are observed

    import pplang as pp

    model = pp.load(ordered[0])["ordered"]
    draws = pp.prior_predictive(model, {"n": 3}, num_samples=50)
    text = format_table(site_rows(draws, order=list(model.fn.sites)))
    lines = text.splitlines()
    at = lines.index("y (shape 3)")
    assert [line.split()[0] for line in lines[at + 1:at + 4]] == ["[0]", "[1]", "[2]"]
    assert [line.split()[0] for line in lines[1:at]] == ["zeta"]


def test_quantiles_hdi_ess_and_mcse_of_importance_sampling(capsys: pytest.CaptureFixture,
                                                           ordered: tuple[str, str]) -> None:
    import pplang as pp

    model = pp.load(ordered[0])["ordered"]
    post = pp.importance_sampling(model, {"n": len(Y), "y": Y, "w": W}, num_samples=20_000, seed=1)
    sites = {s.site: s for s in post.rows(quantiles=(0.025, 0.975), hdi_prob=0.9)}
    row = sites["zeta"].rows[0]
    mean, sd = exact_zeta()
    se = row.stats["sd"] / math.sqrt(post.ess)
    assert row.stats["ess"] == pytest.approx(post.ess)
    assert row.stats["mcse_mean"] == pytest.approx(se)
    assert abs(row.stats["mean"] - mean) < 5 * se
    for q, z in ((0.025, -1.959964), (0.975, 1.959964)):
        # a quantile's standard error: sqrt(q (1 - q) / ESS) / density at the quantile
        q_se = math.sqrt(q * (1 - q) / post.ess) / (math.exp(-0.5 * z * z) / (sd * math.sqrt(2 * math.pi)))
        assert abs(row.stats[f"{100 * q:g}%"] - (mean + z * sd)) < 5 * q_se
    # the normal posterior's 90% HDI is its 5%-95% interval
    low, high = row.stats["hdi_5%"], row.stats["hdi_95%"]
    assert abs(low - (mean - 1.644854 * sd)) < 0.1 * sd and abs(high - (mean + 1.644854 * sd)) < 0.1 * sd

    code, out, _ = run(capsys, "infer", "--method", "is", ordered[0], "--data", ordered[1], "-n", "2000",
                       "--quantiles", "0.025,0.975", "--hdi", "0.9")
    assert code == 0
    head = next(line.split() for line in out.splitlines() if line.split()[:2] == ["mean", "sd"])
    assert head == ["mean", "sd", "2.5%", "97.5%", "hdi_5%", "hdi_95%", "mcse_mean", "ess"]


def test_a_discrete_choice_is_a_probability_table(capsys: pytest.CaptureFixture, ordered: tuple[str, str]) -> None:
    import pplang as pp

    model = pp.load(ordered[0])["ordered"]
    post = pp.importance_sampling(model, {"n": len(Y), "y": Y, "w": W}, num_samples=20_000, seed=2)
    b = next(s for s in post.rows() if s.site == "b")
    assert b.discrete
    probs = b.rows[0].probabilities
    p = exact_b()
    assert set(probs) == {0, 1} and probs[0] + probs[1] == pytest.approx(1.0)
    assert abs(probs[1] - p) < 5 * math.sqrt(p * (1 - p) / post.ess)
    code, out, _ = run(capsys, "infer", "--method", "is", ordered[0], "--data", ordered[1], "-n", "2000")
    line = next(line for line in out.splitlines() if line.startswith("b "))
    assert re.fullmatch(r"b\s+P  0: 0\.\d{3}  1: 0\.\d{3}", line), line


def test_rows_of_mcmc_carry_arviz_diagnostics_and_strict_refuses_too_few_draws(
        capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    argv = ["sample", COIN, "--data", COIN_DATA, "--chains", "2", "--warmup", "100", "--draws", "50",
            "--no-progress", "--quantiles", "0.1,0.9", "--hdi", "0.8"]
    code, out, err = run(capsys, *argv, "--output", str(tmp_path / "out"))
    assert code == 0
    head = next(line.split() for line in out.splitlines() if line.split()[:2] == ["mean", "sd"])
    assert head == ["mean", "sd", "10%", "90%", "hdi_10%", "hdi_90%", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"]
    assert out.index("warning: bulk ESS below 200") < out.index("\np ")  # 100 draws cannot make 200 effective
    json.loads((tmp_path / "out" / "summary.json").read_text(), parse_constant=reject)
    code, out, err = run(capsys, *argv, "--strict")
    assert code == EXIT_UNRELIABLE and "--strict" in err and "ESS" in err


def test_strict_exits_4_when_importance_sampling_is_unreliable(capsys: pytest.CaptureFixture) -> None:
    code, out, err = run(capsys, "infer", "--method", "is", COIN, "--data", COIN_DATA, "-n", "30", "--strict")
    assert code == EXIT_UNRELIABLE and "effective sample size" in err
    assert "warning: effective sample size" in out  # the table and its warnings are printed all the same
    code, _, _ = run(capsys, "infer", "--method", "is", COIN, "--data", COIN_DATA, "-n", "3000", "--strict")
    assert code == 0


# ---------------------------------------------------------------- outputs


def reject(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON")


def test_json_output_has_null_for_non_finite_numbers(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    path = tmp_path / "post.json"
    # 20 draws are too few to fit a Pareto tail: k is NaN, which JSON spells null
    code, _, _ = run(capsys, "infer", "--method", "is", COIN, "--data", COIN_DATA, "-n", "20", "--output", str(path))
    assert code == 0
    post = json.loads(path.read_text(), parse_constant=reject)
    assert post["pareto_k"] is None and len(post["log_weights"]) == 20


def test_smc_show_code_prints_the_filter_and_runs_it(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                     walk: tuple[str, str]) -> None:
    path = tmp_path / "smc.json"
    code, out, _ = run(capsys, "smc", walk[0], "--data", walk[1], "--particles", "200", "--show-code", "--no-progress",
                       "--output", str(path), "--devices", "1")
    assert code == 0
    assert "def " in out and out.index("def ") < out.index("log marginal likelihood")
    result = json.loads(path.read_text(), parse_constant=reject)
    assert np.isfinite(result["log_marginal_likelihood"])


@pytest.mark.parametrize("verb", [["smc", "--no-progress"], ["infer", "--method", "smc"]])
def test_devices_reach_the_particle_filter(capsys: pytest.CaptureFixture, walk: tuple[str, str],
                                           verb: list[str]) -> None:
    """More devices than JAX sees is refused by pp.smc itself (sharding over devices that exist, and
    its answer against one device's, is tested in tests/inference/test_smc.py)."""
    import jax

    code, _, err = run(capsys, verb[0], walk[0], "--data", walk[1], "-n", "100", *verb[1:], "--devices",
                       str(jax.device_count() + 1))
    assert code == 1 and f"devices={jax.device_count() + 1} but" in err


def test_one_based_index_data_get_a_hint(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    (tmp_path / "groups.ppl").write_text(
        "model groups(n: int, k: int, g: int[n]):\n"
        "    for j in range(k):\n"
        "        mu[j] ~ normal(0.0, 1.0)\n"
        "    for i in range(n):\n"
        "        y[i] ~ normal(mu[g[i]], 1.0)\n")
    (tmp_path / "groups.json").write_text(json.dumps({"n": 4, "k": 2, "g": [1, 2, 1, 2], "y": [0.1, 0.2, 0.3, 0.4]}))
    code, _, err = run(capsys, "infer", "--method", "is", str(tmp_path / "groups.ppl"), "--data",
                       str(tmp_path / "groups.json"), "-n", "100")
    assert code == 1 and "1-based" in err and "indexes from 0" in err


def test_every_exit_code_is_documented() -> None:
    import pplang.cli

    docs = (ROOT / "docs" / "getting-started.md").read_text()
    for code in ("0", "1", "2", "3", "4", "130"):
        assert re.search(rf"\b{code}\b", pplang.cli.__doc__.split("Exit codes:")[1]), code
        assert re.search(rf"`{code}`", docs.split("Exit codes")[1]), code


def test_strict_fit_judges_the_importance_resampled_fit(capsys: pytest.CaptureFixture) -> None:
    argv = ["fit", COIN, "--data", COIN_DATA, "--steps", "300", "--no-progress", "--strict"]
    code, _, err = run(capsys, *argv)
    assert code == 1 and "--correct" in err  # nothing to judge a fit by without the correction
    code, out, err = run(capsys, *argv, "--correct", "2000")
    corrected = out.split("importance-resampled with the fitted guide")[1]
    k = float(re.search(r"Pareto k (\S+) ", corrected).group(1))
    assert code == (EXIT_UNRELIABLE if k > 0.7 else 0), (k, err)
    assert (code == EXIT_UNRELIABLE) == ("Pareto k" in err)


def test_pplangs_own_warnings_print_as_warning_lines(capsys):
    """On the command line a pplang warning is one `warning: ...` line, without the line of pplang
    that raised it; other libraries' warnings keep Python's form."""
    from pplang.compiler.diagnostics import show_notes

    from pplang.inference.sets import SizeWarning

    seen = []
    show = show_notes(lambda *args: seen.append(args))
    show(SizeWarning("set size 300 outside the trained range 2..64"), SizeWarning, "sets.py", 1)
    show(DeprecationWarning("old"), DeprecationWarning, "x.py", 2)
    assert capsys.readouterr().err == "warning: set size 300 outside the trained range 2..64\n"
    assert len(seen) == 1 and seen[0][1] is DeprecationWarning
