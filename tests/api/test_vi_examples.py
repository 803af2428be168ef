"""The variational-inference examples (vi_mixture, vi_hierarchical) run, from the command line and
as a Python twin, and agree with exact answers.

vi_mixture's exact posterior is computed here independently of the example: by enumerating all
2^12 assignments of the readings, each with `mu` integrated out in closed form (normal prior,
normal likelihood). The best mean-field guide comes from coordinate ascent, whose updates are
exact for this model. vi_hierarchical's `line` model is a conjugate linear regression with a
closed-form posterior. Monte Carlo tolerances are four to five standard errors; optimization
results (a fit's exact ELBO) get fixed margins, since a seeded fit is deterministic.
"""

from __future__ import annotations

import itertools
import math
import re
import runpy
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy import special, stats
from tables import parse_rows

import pplang as pp
from pplang.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MIXTURE = str(EXAMPLES / "vi_mixture.ppl")
MIXTURE_DATA = str(EXAMPLES / "vi_mixture.data.json")
LINE = str(EXAMPLES / "vi_hierarchical.ppl")
LINE_DATA = str(EXAMPLES / "vi_hierarchical.data.json")
PRIOR_SD, SHARE = 5.0, 0.4  # vi_mixture's prior sd of mu and probability of signal


def mixture_exact() -> dict:
    """log p(y), posterior mean and sd of mu, P(z[i] | y): every assignment, mu integrated out."""
    y = np.asarray(pp.load_data(MIXTURE_DATA)["y"])
    z = np.array(list(itertools.product([0.0, 1.0], repeat=len(y))))  # (4096, 12)
    n, sy = z.sum(1), z @ y
    prec = 1 / PRIOR_SD**2 + n  # posterior precision of mu given the assignment
    # log N(y_S; 0, I + tau^2 11') for the signal readings S, and N(y_i; 0, 1) for the others
    quad = z @ y**2 - sy**2 / (PRIOR_SD**-2 + n)
    log_signal = -0.5 * (n * math.log(2 * math.pi) + np.log1p(n * PRIOR_SD**2) + quad)
    log_noise = (1 - z) @ stats.norm.logpdf(y, 0.0, 1.0)
    log_joint = n * math.log(SHARE) + (len(y) - n) * math.log(1 - SHARE) + log_signal + log_noise
    log_py = special.logsumexp(log_joint)
    w = np.exp(log_joint - log_py)
    m_z, v_z = sy / prec, 1 / prec
    mean = w @ m_z
    return {"log_py": log_py, "mean": mean, "sd": math.sqrt(w @ (v_z + m_z**2) - mean**2), "p_signal": w @ z,
            "y": y}


def best_mean_field(y: np.ndarray) -> tuple[float, float]:
    """(m, s) of the mean-field optimum, by coordinate ascent."""
    m, v = 0.0, 1.0
    for _ in range(500):
        r = special.expit(math.log(SHARE / (1 - SHARE)) + y * m - 0.5 * (m**2 + v))
        v = 1 / (PRIOR_SD**-2 + r.sum())
        m = v * (r @ y)
    return m, math.sqrt(v)


EXACT = mixture_exact()


def cli(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> tuple[str, str]:
    got = main([*args])
    out, err = capsys.readouterr()
    assert got == code, err
    return out, err


def table(text: str) -> dict[str, tuple[float, float]]:
    """{row: (mean, sd)} of the first summary table in `text`."""
    return next((rows for block in text.split("\n\n") if (rows := parse_rows(block))), {})


def correction(text: str) -> tuple[float, float, float, dict[str, tuple[float, float]]]:
    """(ESS, log marginal likelihood, its se, table) of the importance-resampled part of a fit."""
    part = text[text.index("importance-resampled"):]
    m = re.search(r"effective sample size ([\d.]+), log marginal likelihood (-?[\d.]+) \(se ([\d.]+)\)", part)
    body = part[part.index("observed"):]
    return float(m.group(1)), float(m.group(2)), float(m.group(3)), table(body[body.index("\n") + 1:])


# ---------------------------------------------------------------- vi_mixture


def test_python_twin(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLES / "vi_mixture.py"), run_name="__main__")
    out = capsys.readouterr().out

    exact = re.search(r"exact: log p\(y\) (-?[\d.]+), mu ([\d.]+) \+- ([\d.]+)", out)
    assert float(exact.group(1)) == pytest.approx(EXACT["log_py"], abs=1e-3)
    assert float(exact.group(2)) == pytest.approx(EXACT["mean"], abs=1e-3)
    assert float(exact.group(3)) == pytest.approx(EXACT["sd"], abs=1e-3)
    m, s = best_mean_field(EXACT["y"])
    best = re.search(r"best mean-field guide: ELBO (-?[\d.]+), mu ([\d.]+) \+- ([\d.]+)", out)
    assert (float(best.group(2)), float(best.group(3))) == pytest.approx((m, s), abs=1e-3)
    best_elbo = float(best.group(1))
    assert best_elbo < EXACT["log_py"]

    # every strategy's fit reaches near the mean-field optimum and none passes it
    fits = dict(re.findall(r"^(enum|reinforce|reinforce \+ ema|mvd)\s+(-?[\d.]+)", out, re.M))
    assert set(fits) == {"enum", "reinforce", "reinforce + ema", "mvd"}
    for label, elbo in fits.items():
        assert best_elbo - 0.15 < float(elbo) <= best_elbo + 1e-3, (label, out)
    assert float(fits["enum"]) > best_elbo - 0.01

    # gradient estimates: unbiased (vs the closed-form gradient), and the variances in their known order
    rows = {r[0].strip(): [float(x) for x in r[1:]] for r in re.findall(
        r"^(z [a-z ,.\-\d]+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)}
    assert len(rows) == 6, out
    assert all(r[3] < 4.5 for r in rows.values()), out
    var = {k.split(",")[0] if "baseline" not in k else "baseline": v[0] for k, v in rows.items() if "mu" not in k}
    assert var["z enum"] < var["z mvd"] < var["baseline"] < var["z reinforce"], var
    assert rows["z enum, mu reinforce"][1] > 100 * rows["z enum"][1]

    # the fit corrected by importance resampling agrees with the exact posterior
    ess = float(re.search(r"effective sample size (\d+)", out).group(1))
    lml, lml_se = map(float, re.search(r"log p\(y\) (-?[\d.]+) \+- ([\d.]+)", out).groups())
    assert abs(lml - EXACT["log_py"]) < 5 * lml_se + 1e-3
    mean = float(re.search(r"  mu ([\d.]+) \+-", out).group(1))
    assert abs(mean - EXACT["mean"]) < 4 * EXACT["sd"] / math.sqrt(ess) + 1e-3
    for y, p, ref in re.findall(r"y = +(-?[\d.]+) +([\d.]+) +([\d.]+)", out):
        i = int(np.argmin(np.abs(EXACT["y"] - float(y))))
        truth = EXACT["p_signal"][i]
        assert float(ref) == pytest.approx(truth, abs=1e-3)
        assert abs(float(p) - truth) < 4 * math.sqrt(truth * (1 - truth) / ess) + 1e-3, (y, p, truth)


def test_cli_fit_with_mvd_and_correction(capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = cli(capsys, "fit", MIXTURE, "--model", "vi_mixture", "--guide", "vi_mixture_q", "--data", MIXTURE_DATA,
                 "--strategy", "z=mvd", "--lr", "0.02", "--steps", "3000", "--correct", "4000", "--no-progress")
    m, s = best_mean_field(EXACT["y"])
    fitted = table(out)
    assert fitted["mu"][0] == pytest.approx(m, abs=0.1)  # the guide's draws of mu: near the optimum's mean
    ess, lml, lml_se, corrected = correction(out)
    assert ess > 1000
    assert abs(lml - EXACT["log_py"]) < 5 * lml_se + 1e-3
    assert abs(corrected["mu"][0] - EXACT["mean"]) < 4 * EXACT["sd"] / math.sqrt(ess)
    assert corrected["mu"][1] == pytest.approx(EXACT["sd"], rel=0.1)  # the guide's own sd was too small
    for i, truth in enumerate(EXACT["p_signal"]):
        assert abs(corrected[f"z[{i}]"][0] - truth) < 4 * math.sqrt(truth * (1 - truth) / ess) + 1e-3


@pytest.mark.parametrize("strategy, lines", [
    ("enum", ["via enum: each iteration's costs summed over its values exactly", "adev.expect(_w, _rs[2]['y'])"]),
    ("reinforce", ["costs it can influence: +p/z (same iteration), +p/y (same iteration), -q/z (same iteration)",
                   "adev.reinforce(_r[1]['z'], _cost, _base['1:z'])"]),
    ("mvd", ["via mvd: measure-valued derivative", "adev.mvd(_p, _c, _vp, _vm, 1)"]),
])
def test_emitted_estimators(capsys: pytest.CaptureFixture[str], strategy: str, lines: list[str]) -> None:
    out, _ = cli(capsys, "compile", MIXTURE, "--emit", "adev", "--model", "vi_mixture", "--guide", "vi_mixture_q",
                 "--data", MIXTURE_DATA, "--strategy", f"z={strategy}")
    for line in lines:
        assert line in out, out
    compile(out[out.index("# The gradient estimator"):], "<estimator>", "exec")  # valid Python


def test_discrete_choice_needs_a_strategy(capsys: pytest.CaptureFixture[str]) -> None:
    _, err = cli(capsys, "fit", MIXTURE, "--model", "vi_mixture", "--guide", "vi_mixture_q", "--data", MIXTURE_DATA,
                 code=1)
    assert "`z` ~ bernoulli_logit in guide `vi_mixture_q` has no sound default gradient strategy" in err
    assert "`via enum`" in err and "`via reinforce`" in err and "`via mvd`" in err


def test_top_level_enum_is_exact() -> None:
    """The tutorial's coin_flip: enumerating the only discrete choice gives the exact ELBO and gradient."""
    module = pp.loads("""
model coin_flip():
    fair ~ bernoulli(0.5)
    y ~ normal(where(fair, 0.0, 2.0), 1.0)

guide coin_flip_q():
    param logit: real = 0.0
    fair ~ bernoulli_logit(logit) via enum
""")
    problem = pp.Problem.build(module["coin_flip"], module["coin_flip_q"], "elbo", {"y": 1.5})
    value_and_grad = jax.jit(problem.value_and_grad)

    def exact(logit: float) -> float:
        q = jax.nn.sigmoid(logit)
        fair = jax.scipy.stats.norm.logpdf(1.5, 0.0, 1.0) + jax.numpy.log(0.5) - jax.numpy.log(q)
        unfair = jax.scipy.stats.norm.logpdf(1.5, 2.0, 1.0) + jax.numpy.log(0.5) - jax.numpy.log1p(-q)
        return q * fair + (1 - q) * unfair

    for logit, seed in [(0.0, 0), (1.3, 1), (-2.0, 2)]:
        params = {"p": {}, "q": {"logit": jax.numpy.float32(logit)}}
        value, grads = value_and_grad(params, jax.random.key(seed))
        assert float(value) == pytest.approx(float(exact(logit)), abs=1e-5)
        assert float(grads["q"]["logit"]) == pytest.approx(float(jax.grad(exact)(logit)), abs=1e-5)


# ---------------------------------------------------------------- vi_hierarchical


def line_exact() -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and covariance of (a, b) in the line model (normal prior sd 2, noise sd 0.5)."""
    data = pp.load_data(LINE_DATA)
    x, y = np.asarray(data["x"]), np.asarray(data["y"])
    design = np.stack([np.ones_like(x), x], 1)
    cov = np.linalg.inv(np.eye(2) / 4 + design.T @ design / 0.25)
    return cov @ design.T @ y / 0.25, cov


def test_full_rank_guide_with_correction(capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = cli(capsys, "fit", LINE, "--model", "line", "--guide", "full_rank", "--data", LINE_DATA,
                 "--steps", "5000", "--correct", "4000", "--no-progress")
    mean, cov = line_exact()
    sd = np.sqrt(np.diag(cov))
    ess, _, _, corrected = correction(out)
    assert ess > 2000
    for k, name in enumerate("ab"):
        assert abs(corrected[name][0] - mean[k]) < 4 * sd[k] / math.sqrt(ess)
        assert corrected[name][1] == pytest.approx(sd[k], rel=0.1)


def test_importance_weighted_hvi_is_tighter_than_hvi() -> None:
    """At the initial parameters, IWHVI(8) >= HVI in expectation (paired on the same keys)."""
    module = pp.load(LINE)
    data = pp.load_data(LINE_DATA)
    keys = jax.random.split(jax.random.key(0), 2000)

    def estimates(objective: object) -> np.ndarray:
        problem = pp.Problem.build(module["line"], module["line_hq"], objective, data,
                                   programs={"r": module["line_reverse"]})
        params = problem.init_params(0)
        return np.asarray(jax.vmap(lambda k: problem.value_and_grad(params, k)[0])(keys))

    diff = estimates(("iwhvi", {"k": 8})) - estimates("hvi")
    assert diff.mean() > -4 * diff.std() / math.sqrt(len(diff))
