"""A non-finite value is reported where it first appeared (the Cholesky of a matrix that is not
positive definite), not at the observation below it that it spoiled."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import pplang as pp
from pplang.models import nan_origin

GP = """\
model gp(N: int, x: vector[N]):
    rho ~ lognormal(0.0, 1.0)
    alpha ~ lognormal(0.0, 1.0)
    K = square(alpha) * exp(-0.5 * square(outer(x, ones(N)) - outer(ones(N), x)) / square(rho))
    L = cholesky(K)
    y ~ multivariate_normal(zeros(N), scale_tril=L)
"""


def gp_data() -> dict:
    x = np.linspace(0.0, 10.0, 40)
    return {"N": 40, "x": x, "y": np.sin(x)}


def test_a_fit_names_the_cholesky() -> None:
    m = pp.loads(GP, file="gp.ppl")["gp"]
    res = pp.fit(m, "mean_field", "elbo", gp_data(), steps=100, progress=False)
    assert res.info["status"] == "nan"
    assert "a NaN first appeared at gp.ppl:5: L = cholesky(K)" in res.info["message"], res.info["message"]


def test_the_origin_of_a_nan_in_a_density() -> None:
    m = pp.loads(GP, file="gp.ppl")["gp"]
    f = m.log_density_fn(gp_data())
    bad = {"rho": jnp.array(3.0), "alpha": jnp.array(1.0)}  # K is singular to float32 precision
    assert not np.isfinite(float(f(bad)))
    assert nan_origin(lambda: f(bad)) == "gp.ppl:5: L = cholesky(K)"
    assert nan_origin(lambda: f({"rho": jnp.array(0.05), "alpha": jnp.array(1.0)})) is None
