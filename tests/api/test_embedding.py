"""Models embedded in Python with `@pp.model`: they compute what the same model written as a file
computes, call Python callables (globals, closures, an equinox network) as host functions, call
each other as submodels, and report errors at the lines of this file."""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import pplang as pp

THIS_FILE = str(Path(__file__).resolve())


def line_of(marker: str) -> int:
    """1-based line of this file holding `marker` (written in a comment, so it is unique)."""
    rows = Path(__file__).read_text().splitlines()
    hits = [i for i, row in enumerate(rows, 1) if row.rstrip().endswith("# " + marker)]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


# ---------------------------------------------------------------- the same model, two front-ends

FILE_MODELS = """
model linreg(N: int, x: vector[N]):
    alpha ~ normal(0.0, 10.0)
    beta ~ normal(0.0, 10.0)
    sigma ~ half_normal(5.0)
    for i in range(N):
        mu[i] = alpha + beta * x[i]
        y[i] ~ normal(mu[i], sigma)
    return alpha

model ar1(T: int):
    rho ~ uniform(-1.0, 1.0)
    x[0] ~ normal(0.0, 1.0)
    for t in range(1, T):
        x[t] ~ normal(rho * x[t - 1], 1.0)
"""


@pp.model
def linreg(N: int, x: vector[N]):  # noqa: F821 - pplang types
    alpha = pp.sample(pp.normal(0.0, 10.0))
    beta = pp.sample(pp.normal(0.0, 10.0))
    sigma = pp.sample(pp.half_normal(5.0))
    for i in range(N):
        mu[i] = alpha + beta * x[i]  # noqa: F821 - an array built by the model
        y[i] = pp.sample(pp.normal(mu[i], sigma))  # noqa: F821
    return alpha


@pp.model
def ar1(T: int):
    rho = pp.sample(pp.uniform(-1.0, 1.0))
    x[0] = pp.sample(pp.normal(0.0, 1.0))  # noqa: F821
    for t in range(1, T):
        x[t] = pp.sample(pp.normal(rho * x[t - 1], 1.0))  # noqa: F821


LIN_DATA = {"N": 4, "x": [0.0, 1.0, 2.0, 3.0]}


@pytest.mark.parametrize("decorated,args", [(linreg, LIN_DATA), (ar1, {"T": 6})], ids=["linreg", "ar1"])
def test_decorated_model_equals_file_model(decorated: pp.Model, args: dict) -> None:
    from_file = pp.loads(FILE_MODELS)[decorated.name]
    assert isinstance(decorated, pp.Model)
    assert list(decorated.sites) == list(from_file.sites)
    for seed in (0, 1):
        a, b = decorated.simulate(args, seed=seed), from_file.simulate(args, seed=seed)
        for addr in a.values:
            np.testing.assert_allclose(np.asarray(a[addr]), np.asarray(b[addr]), rtol=1e-6)
        np.testing.assert_allclose(float(a.log_density), float(b.log_density), rtol=1e-6)
        np.testing.assert_allclose(float(decorated.log_density(b.values, args)),
                                   float(from_file.log_density(b.values, args)), rtol=1e-6)


def test_decorated_model_importance_and_inference() -> None:
    data = {**LIN_DATA, "y": [0.9, 3.1, 5.0, 7.2]}
    tr = linreg.importance(data, seed=0)
    v = {a: np.asarray(x, np.float64) for a, x in tr.values.items()}
    expected = stats.norm.logpdf(np.asarray(data["y"]), v["alpha"] + v["beta"] * np.asarray(data["x"]),
                                 v["sigma"]).sum()
    np.testing.assert_allclose(float(tr.log_weight), expected, rtol=1e-5)
    post = pp.importance_sampling(linreg, data, num_samples=5000, seed=0)
    assert post.observed == ["y"] and set(post.samples) == {"alpha", "beta", "sigma", "mu"}
    assert post.computed == ("mu",)  # computed by the model, kept beside the draws
    np.testing.assert_allclose(post.samples["mu"], post.samples["alpha"][:, None]
                               + post.samples["beta"][:, None] * np.asarray(data["x"]), rtol=1e-5, atol=1e-5)
    assert np.isfinite(post.log_marginal_likelihood)


# ---------------------------------------------------------------- host functions

NET = eqx.nn.MLP(in_size=2, out_size="scalar", width_size=8, depth=2, key=jax.random.key(42))


def shift(v: jax.Array) -> jax.Array:
    return v + 1.5


@pp.model
def regress(N: int, X: matrix[N, 2]):  # noqa: F821
    scale = pp.sample(pp.half_normal(1.0))
    for i in range(N):
        y[i] = pp.sample(pp.normal(shift(NET(X[i])), scale))  # noqa: F821


BATCHED_NET = jax.vmap(NET)


@pp.model
def regress_vec(X: matrix):  # noqa: F821
    scale = pp.sample(pp.half_normal(1.0))
    y = pp.sample(pp.normal(shift(BATCHED_NET(X)), scale))
    return y


X_DATA = np.array([[0.0, 1.0], [1.0, -1.0], [0.5, 0.5], [-2.0, 0.3], [1.2, 2.2]])


def test_equinox_network_as_a_host_function() -> None:
    assert "NET" in regress.hosts and "shift" in regress.hosts
    args = {"N": len(X_DATA), "X": X_DATA.tolist()}
    tr = regress.simulate(args, seed=0)
    means = np.asarray(jax.vmap(NET)(jnp.asarray(X_DATA, jnp.float32)), np.float64) + 1.5
    v = {a: np.asarray(x, np.float64) for a, x in tr.values.items()}
    expected = stats.halfnorm.logpdf(v["scale"]) + stats.norm.logpdf(v["y"], means, v["scale"]).sum()
    np.testing.assert_allclose(float(regress.log_density(tr.values, args)), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(tr.log_density), expected, rtol=1e-5, atol=1e-5)
    # the check can tell: without the network the density would differ
    without = stats.halfnorm.logpdf(v["scale"]) + stats.norm.logpdf(v["y"], 1.5, v["scale"]).sum()
    assert abs(without - expected) > 1e-2


def test_equinox_network_as_a_vectorized_host_function() -> None:
    args = {"X": X_DATA.tolist()}
    tr = regress_vec.simulate(args, seed=0)
    assert np.shape(tr["y"]) == (len(X_DATA),)
    means = np.asarray(BATCHED_NET(jnp.asarray(X_DATA, jnp.float32)), np.float64) + 1.5
    v = {a: np.asarray(x, np.float64) for a, x in tr.values.items()}
    expected = stats.halfnorm.logpdf(v["scale"]) + stats.norm.logpdf(v["y"], means, v["scale"]).sum()
    np.testing.assert_allclose(float(regress_vec.log_density(tr.values, args)), expected, rtol=1e-5, atol=1e-5)
    # at y = the network's means (and a small scale) the density peaks; with the means off by the
    # network's output (about 0.2) it would be far lower
    at_means = float(regress_vec.log_density({"scale": 0.05, "y": means}, args))
    np.testing.assert_allclose(at_means, stats.halfnorm.logpdf(0.05) + len(means) * stats.norm.logpdf(0, 0, 0.05),
                               rtol=1e-4)


def test_gradient_flows_through_the_host_network() -> None:
    f = regress_vec.log_density_fn({"X": X_DATA.tolist()})
    values = {"scale": jnp.asarray(0.7), "y": jnp.asarray([0.1, 0.2, 0.3, 0.4, 0.5])}
    g = jax.grad(lambda y: f({**values, "y": y}))(values["y"])
    means = BATCHED_NET(jnp.asarray(X_DATA, jnp.float32)) + 1.5
    np.testing.assert_allclose(np.asarray(g), np.asarray(-(values["y"] - means) / 0.49), rtol=1e-4, atol=1e-5)


def test_closure_variables_become_host_functions() -> None:
    offset = 4.0

    def local_shift(v: jax.Array) -> jax.Array:
        return v + offset

    @pp.model
    def closed():
        a = pp.sample(pp.normal(local_shift(0.0), 1.0))
        return a

    tr = closed.simulate({}, seed=0)
    np.testing.assert_allclose(float(closed.log_density({"a": 4.5})), stats.norm.logpdf(4.5, 4.0, 1.0), rtol=1e-6)
    assert abs(float(tr["a"]) - 4.0) < 5.0


def test_host_function_bound_by_loads() -> None:
    text = """
model hosted(n: int):
    a ~ normal(0.0, 1.0)
    for i in range(n):
        y[i] ~ normal(g(a, i), 1.0)
"""
    mod = pp.loads(text, hosts={"g": lambda a, i: a * i})
    m = mod["hosted"]
    values = {"a": 0.5, "y": [0.0, 0.4, 1.2]}
    expected = stats.norm.logpdf(0.5) + stats.norm.logpdf([0.0, 0.4, 1.2], 0.5 * np.arange(3), 1.0).sum()
    np.testing.assert_allclose(float(m.log_density(values, {"n": 3})), expected, rtol=1e-5)
    # a different binding of the same text gives a different density
    other = pp.loads(text, hosts={"g": lambda a, i: a + i})["hosted"]
    assert abs(float(other.log_density(values, {"n": 3})) - expected) > 0.1


def test_unbound_host_name_in_a_file_is_a_located_error() -> None:
    text = "model m(n: int):\n    a ~ normal(0.0, 1.0)\n    b ~ normal(helper(a), 1.0)\n"
    with pytest.raises(pp.PplError) as info:
        pp.loads(text, file="unbound.ppl")
    err = info.value
    assert (err.span.file, err.span.line, err.span.col) == ("unbound.ppl", 3, 16)
    rendered = err.render()
    assert rendered.startswith("unbound.ppl:3:16: error:") and "helper" in rendered
    assert "hosts" in rendered  # the hint says how to bind it


# ---------------------------------------------------------------- submodels between decorated models


@pp.model
def inner(s: float):
    a = pp.sample(pp.normal(0.0, s))
    h = pp.sample(pp.half_normal(s))
    return a * h


@pp.model
def outer(N: int):
    u = pp.sample(inner(3.0))
    for i in range(N):
        y[i] = pp.sample(pp.normal(u, 1.0))  # noqa: F821
    return u


def test_submodel_call_between_decorated_models() -> None:
    assert set(outer.sites) == {"u/a", "u/h", "y"}
    tr = outer.simulate({"N": 3}, seed=0)
    v = {a: np.asarray(x, np.float64) for a, x in tr.values.items()}
    u = v["u/a"] * v["u/h"]
    np.testing.assert_allclose(float(tr.retval), u, rtol=1e-5)
    expected = (stats.norm.logpdf(v["u/a"], 0, 3) + stats.halfnorm.logpdf(v["u/h"], scale=3.0)
                + stats.norm.logpdf(v["y"], u, 1.0).sum())
    np.testing.assert_allclose(float(outer.log_density(tr.values, {"N": 3})), expected, rtol=1e-5)
    # the submodel is still a model of its own
    np.testing.assert_allclose(float(inner.log_density({"a": 0.5, "h": 1.0}, {"s": 2.0})),
                               stats.norm.logpdf(0.5, 0, 2) + stats.halfnorm.logpdf(1.0, scale=2.0), rtol=1e-5)


# ---------------------------------------------------------------- diagnostics in this file


def test_unknown_distribution_points_at_this_line() -> None:
    with pytest.raises(pp.PplError) as info:

        @pp.model
        def typo():
            p = pp.sample(pp.beta(1.0, 1.0))
            q = pp.sample(pp.nromal(p, 1.0))  # MARK-typo  # noqa: F841

    err = info.value
    assert err.span.file == THIS_FILE or Path(err.span.file).resolve() == Path(THIS_FILE)
    assert err.span.line == line_of("MARK-typo  # noqa: F841")
    rendered = err.render()
    assert f":{err.span.line}:" in rendered and "nromal" in rendered and "normal" in rendered
    assert "pp.nromal(p, 1.0)" in rendered  # the source line of this file is shown


def test_unbound_name_in_a_decorated_model_points_at_this_line() -> None:
    with pytest.raises(pp.PplError) as info:

        @pp.model
        def unbound(n: int):
            a = pp.sample(pp.normal(0.0, 1.0))
            b = pp.sample(pp.normal(not_defined_anywhere(a), 1.0))  # MARK-unbound  # noqa: F821, F841

    err = info.value
    assert Path(err.span.file).resolve() == Path(THIS_FILE)
    assert err.span.line == line_of("MARK-unbound  # noqa: F821, F841")
    assert "not_defined_anywhere" in err.render()


def test_type_error_in_a_decorated_model_points_at_this_line() -> None:
    with pytest.raises(pp.PplError) as info:

        @pp.model
        def shapes(N: int, x: vector[N]):  # noqa: F821
            a = pp.sample(pp.normal(0.0, 1.0))
            for i in range(N):
                y[i] = pp.sample(pp.normal(a * x[i, 0], 1.0))  # MARK-shape  # noqa: F821

    err = info.value
    assert Path(err.span.file).resolve() == Path(THIS_FILE)
    assert err.span.line == line_of("MARK-shape  # noqa: F821")


def test_data_error_points_at_the_argument_in_this_file() -> None:
    with pytest.raises(pp.PplError) as info:
        linreg.simulate({"N": 4, "x": [1.0, 2.0]}, seed=0)
    err = info.value
    assert Path(err.span.file).resolve() == Path(THIS_FILE)
    assert err.span.line == line_of("noqa: F821 - pplang types")
    assert "x" in err.render()


def test_observing_an_unknown_address_is_noted() -> None:
    from pplang.compiler.diagnostics import DataNote

    with pytest.warns(DataNote, match="`u/b`.*ignored.*did you mean"):
        outer.importance({"N": 2, "u/b": 1.0}, seed=0)
