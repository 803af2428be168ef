"""The stdlib's density and reduction functions against scipy: `<dist>_lpdf` / `<dist>_lpmf` (the
summed log density, as Stan's), `log_mix` in both forms, and reductions along an axis; and the
located errors for their misuse."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

import pplang as pp

SRC = """
model m(N: int, y: vector[N], k: int[N]):
    theta ~ uniform(0.0, 1.0)
    mu ~ normal(0.0, 1.0)
    s ~ half_normal(1.0)
    for i in range(N):
        factor(log_mix(theta, normal_lpdf(y[i], mu, s), student_t_lpdf(y[i], 3.0, -mu, s)))
    a = normal_lpdf(y, mu, s)
    b = poisson_lpmf(k, exp(mu))
    c = bernoulli_lpmf(k > 1, logits=mu)
    lps = [normal_lpdf(y, mu, s), normal_lpdf(y, -mu, s)]
    w = [theta, 1.0 - theta]
    d = log_mix(w, lps)
    e = log_mix(theta, normal_lpdf(y, mu, s), normal_lpdf(y, -mu, s))
    M = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    rows = sum(M, 1)
    cols = logsumexp(M, 0)
    last = log_sum_exp(M, -1)
    big = max(M, 0)
    spread = sd(M, 1)
"""
Y = np.array([-0.4, 1.3, 0.2, 2.1])
K = np.array([0, 3, 1, 2])
DATA = {"N": 4, "y": Y, "k": K}
V = {"theta": 0.35, "mu": 0.6, "s": 1.4}


@pytest.fixture(scope="module")
def model() -> pp.Model:
    return pp.loads(SRC, file="dens.ppl")["m"]


def test_log_density_with_mixture_factors(model: pp.Model) -> None:
    th, mu, s = V["theta"], V["mu"], V["s"]
    mix = np.log(th * stats.norm.pdf(Y, mu, s) + (1 - th) * stats.t.pdf(Y, 3.0, -mu, s)).sum()
    want = stats.uniform.logpdf(th) + stats.norm.logpdf(mu) + stats.halfnorm.logpdf(s) + mix
    assert float(model.log_density(V, DATA)) == pytest.approx(want, rel=1e-5)


def test_functions_against_scipy(model: pp.Model) -> None:
    th, mu, s = V["theta"], V["mu"], V["s"]
    got = {k: np.asarray(v)[0] for k, v in model.computed({a: np.array([x]) for a, x in V.items()}, DATA).items()}
    m = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    lp1, lp2 = stats.norm.logpdf(Y, mu, s).sum(), stats.norm.logpdf(Y, -mu, s).sum()
    want = {
        "a": lp1,
        "b": stats.poisson.logpmf(K, np.exp(mu)).sum(),
        "c": stats.bernoulli.logpmf(K > 1, special.expit(mu)).sum(),
        "d": np.logaddexp(np.log(th) + lp1, np.log(1 - th) + lp2),
        "e": np.logaddexp(np.log(th) + lp1, np.log(1 - th) + lp2),
        "rows": m.sum(1), "cols": special.logsumexp(m, 0), "last": special.logsumexp(m, -1), "big": m.max(0),
        "spread": m.std(1),
    }
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, err_msg=name)
        assert np.shape(got[name]) == np.shape(value), name


def test_log_mix_gradient_is_finite_far_in_the_tails() -> None:
    """log_mix works on log scale: components at -1e4 do not underflow to log(0)."""
    import jax

    m = pp.loads("model t():\n    a ~ normal(0.0, 1.0)\n    factor(log_mix(0.5, -1.0e4 + a, -1.0e4 - a))\n",
                 file="t.ppl")["t"]
    g = jax.grad(lambda a: m.log_density({"a": a}, {}))(0.3)
    assert np.isfinite(float(g))


@pytest.mark.parametrize(("line", "message"), [
    ("x = poisson_lpdf(2, 1.0)", "`poisson` is discrete: its log mass function is `poisson_lpmf`"),
    ("x = normal_lpmf(0.5, 0.0, 1.0)", "`normal` is continuous: its log density function is `normal_lpdf`"),
    ("x = normal_lpdf()", "takes the value first"),
    ("x = normal_lpdf(0.5, 0.0)", "no form of `normal`"),
    ("x = sum([1.0, 2.0], 1)", "axis 1 of a value with 1 axes"),
    ("x = sum([1.0, 2.0], N)", "the axis of `sum` must be a whole number"),
    ("x = max(1.0, 2.0)", "maximum(a, b)"),
    ("x = log_mix(0.3, 1.0)", "must be vectors"),
    ("x = normal(0.0, 1.0)", "normal_lpdf"),
])
def test_misuse_is_a_located_error(line: str, message: str) -> None:
    with pytest.raises(pp.PplError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        pp.loads(f"model t(N: int):\n    z ~ normal(0.0, 1.0)\n    {line}\n", file="t.ppl")
    assert "t.ppl:3" in str(info.value)


def test_the_documented_mixture() -> None:
    """The code block of "Log densities and mixtures" in docs/language.md compiles, and its density
    is the two-component mixture's."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "language.md").read_text()
    block = text.split("**Log densities and mixtures.**")[1].split("```\n")[1]
    m = pp.loads(block, file="language.md")["mixture"]
    y = np.array([-1.0, 0.5, 3.0])
    v = {"theta": 0.4, "mu": np.array([-1.0, 2.0]), "sigma": 0.8}
    lp = float(m.log_density(v, {"N": 3, "y": y}))
    mix = np.log(0.4 * stats.norm.pdf(y, -1.0, 0.8) + 0.6 * stats.norm.pdf(y, 2.0, 0.8)).sum()
    # a declared support restricts the density without renormalizing it (as Stan's does)
    prior = stats.uniform.logpdf(0.4) + stats.norm.logpdf([-1.0, 2.0], 0.0, 5.0).sum() \
        + stats.halfnorm.logpdf(0.8, scale=2.0)
    assert lp == pytest.approx(mix + prior, rel=1e-5)
