"""A support declared with a choice (`sigma: positive ~ student_t(3.0, 0.0, 1.0)`): the density is
the distribution's on that support (Stan's constrained declarations), unconstrained coordinates use
the declared support's bijection, and mistakes are located errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats
from pplang.stdlib import constraints as C

import pplang as pp

SRC = """\
model m(K: int):
    mu: positive_ordered[K] ~ normal(3.0, 5.0)
    sigma: positive ~ student_t(3.0, 0.0, 2.0)
    w: simplex ~ dirichlet(ones(K))
    y ~ normal(mu[0], sigma)
"""


@pytest.fixture(scope="module")
def m() -> pp.Model:
    return pp.loads(SRC, file="declared.ppl")["m"]


def test_sites_take_the_declared_support(m: pp.Model) -> None:
    assert m.sites["mu"].support == "positive_ordered" and m.sites["mu"].shape == ("K",)
    assert m.sites["sigma"].support == "positive"
    assert m.sites["w"].support == "simplex"
    assert not m.sites["sigma"].reparameterized  # it cannot be drawn by transforming noise


def test_density_is_the_distributions_on_the_support(m: pp.Model) -> None:
    mu, sigma, w = jnp.array([1.0, 2.5, 4.0]), 0.7, jnp.array([0.2, 0.3, 0.5])
    got = m.log_density({"mu": mu, "sigma": sigma, "w": w}, {"K": 3, "y": 1.2})
    want = (stats.norm.logpdf(mu, 3.0, 5.0).sum() + stats.t.logpdf(sigma, 3.0, 0.0, 2.0)
            + stats.dirichlet.logpdf(w, jnp.ones(3)) + stats.norm.logpdf(1.2, mu[0], sigma))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_unconstrained_coordinates_use_the_declared_bijection(m: pp.Model) -> None:
    u = {"mu": jnp.array([0.3, -0.2, 0.1]), "sigma": jnp.array(-0.4), "w": jnp.array([0.2, -0.1])}
    got = m.log_density(u, {"K": 3, "y": 1.2}, unconstrained=True)
    values, jac = {}, 0.0
    for a, support in (("mu", C.positive_ordered), ("sigma", C.positive), ("w", C.simplex)):
        values[a] = support.forward(u[a])
        jac += jnp.sum(support.log_abs_det_jacobian(u[a]))
    assert bool(jnp.all(jnp.diff(values["mu"]) > 0)) and float(values["mu"][0]) > 0
    np.testing.assert_allclose(got, m.log_density(values, {"K": 3, "y": 1.2}) + jac, rtol=1e-5)
    grad = jax.grad(lambda v: m.log_density_fn({"K": 3, "y": 1.2}, unconstrained=True)(v))(u)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grad.values())


def test_drawing_is_refused_only_where_the_distribution_leaves_the_support() -> None:
    inside = pp.loads("model a():\n    s: positive ~ half_normal(1.0)\n", file="a.ppl")["a"]
    assert float(inside.simulate(seed=0)["s"]) > 0
    outside = pp.loads("model b():\n    s: positive ~ normal(0.0, 1.0)\n", file="b.ppl")["b"]
    with pytest.raises(pp.PplError, match="declared positive cannot be drawn") as info:
        outside.simulate(seed=0)
    assert info.value.diagnostics[0].span.line == 2


def test_python_annotation_is_the_same_declaration() -> None:
    @pp.model
    def twin(K: int):
        mu: positive_ordered[K] = pp.sample(pp.normal(3.0, 5.0))  # noqa: F821
        sigma: positive = pp.sample(pp.student_t(3.0, 0.0, 2.0))  # noqa: F821
        y = pp.sample(pp.normal(mu[0], sigma))  # noqa: F841

    assert twin.sites["mu"].support == "positive_ordered" and twin.sites["sigma"].support == "positive"


@pytest.mark.parametrize(("line", "words"), [
    ("    x[0]: positive ~ normal(0.0, 1.0)", "only for a whole choice"),
    ("    x: int ~ normal(0.0, 1.0)", "`int` is not a support"),
    ("    x: positive ~ poisson(3.0)", "only a continuous choice"),
    ("    x: ordered[3] ~ normal(zeros(4), 1.0)", "does not fit the declared `ordered[3]`"),
    ("    x: ordered ~ normal(0.0, 1.0)", "needs a value with 1 dimension(s)"),
    ("    x: positve ~ normal(0.0, 1.0)", "unknown type"),
])
def test_mistakes_are_located(line: str, words: str) -> None:
    with pytest.raises(pp.PplError) as info:
        pp.loads(f"model e():\n{line}\n", file="e.ppl")["e"]
    text = info.value.render()
    assert words in text and text.startswith("e.ppl:2:"), text


def test_arrays_of_a_support_and_sizes_checked_with_the_data() -> None:
    src = ("model v(K: int, scale: positive[K]):\n"
           "    mu: positive_ordered[K] ~ normal([3.0, 10.0], 1.0)\n"
           "    r: positive[K] ~ normal(0.0, scale)\n")
    m = pp.loads(src, file="v.ppl")["v"]
    assert m.sites["r"].support == "positive" and m.sites["r"].shape == ("K",)
    got = m.log_density({"mu": jnp.array([1.0, 2.0]), "r": jnp.array([0.5, 1.5])}, {"K": 2, "scale": [1.0, 2.0]})
    want = stats.norm.logpdf(jnp.array([1.0, 2.0]), jnp.array([3.0, 10.0]), 1.0).sum() \
        + stats.norm.logpdf(jnp.array([0.5, 1.5]), 0.0, jnp.array([1.0, 2.0])).sum()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    with pytest.raises(pp.PplError, match="declared support's size must match"):
        m.bind({"K": 3, "scale": [1.0, 1.0, 1.0]})  # the literal [3.0, 10.0] has 2 entries
    with pytest.raises(pp.PplError, match="must be positive"):
        m.bind({"K": 2, "scale": [1.0, -1.0]})


def test_automatic_guides_start_inside_a_support_they_cannot_draw_from() -> None:
    """Stan's `real<lower=0> sigma;` with no prior: a fit starts at a point of the support."""
    src = ("model reg(N: int, x: vector[N]):\n"
           "    b ~ flat()\n"
           "    sigma: positive ~ flat()\n"
           "    y ~ normal(b * x, sigma)\n")
    m = pp.loads(src, file="reg.ppl")["reg"]
    x = np.linspace(-1.0, 1.0, 50)
    y = 2.0 * x + 0.3 * np.random.default_rng(0).normal(size=50)
    res = pp.fit(m, "mean_field", "elbo", {"N": 50, "x": x, "y": y}, steps=1500, progress=False)
    assert res.info["status"] == "done"
    b_hat = float(x @ y / (x @ x))
    assert abs(float(np.mean(res.draws["b"])) - b_hat) < 0.05
    assert float(np.min(res.draws["sigma"])) > 0


def test_nuts_moves_choices_it_cannot_draw_in_their_supports_coordinates() -> None:
    """Stan's `real<lower=0> sigma;` with no prior, sampled by NUTS: the posterior of a normal
    mean with a flat prior is normal(mean(y), sigma / sqrt(N))."""
    src = ("model loc(N: int):\n    m ~ flat()\n    sigma: positive ~ flat()\n"
           "    for i in range(N):\n        y[i] ~ normal(m, sigma)\n")
    model = pp.loads(src, file="loc.ppl")["loc"]
    y = np.random.default_rng(1).normal(3.0, 0.5, size=200)
    res = pp.sample(model, {"N": 200, "y": y}, warmup=300, draws=400, progress=False)
    table = res.table()
    assert float(np.min(res.draws["sigma"])) > 0
    assert abs(table.loc["m", "mean"] - y.mean()) < 4 * table.loc["m", "mcse_mean"] + 1e-3
    assert abs(table.loc["sigma", "mean"] - y.std()) < 0.1 * y.std()
