"""Compilation caching: a model is traced by JAX again only when the shapes (or the static
configuration) of a call change, and loading the same program twice reuses the generated code.

`Model.traces` counts how many times JAX traced the model's runner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pplang as pp

UNSIZED = """
model lr(x: vector):
    a ~ normal(0.0, 1.0)
    b ~ normal(0.0, 1.0)
    y ~ normal(a + b * x, 1.0)
"""

SIZED = """
model loop(N: int, x: vector[N]):
    a ~ normal(0.0, 1.0)
    for i in range(N):
        y[i] ~ normal(a * x[i], 1.0)
"""


@pytest.fixture
def lr() -> pp.Model:
    # a fresh Model each time (its own jit cache and trace count), sharing the generated code
    return pp.loads(UNSIZED)["lr"]


def test_same_shapes_trace_once(lr: pp.Model) -> None:
    assert lr.traces == 0
    a = lr.simulate({"x": [1.0, 2.0, 3.0]}, seed=0)
    b = lr.simulate({"x": np.array([4.0, 5.0, 6.0])}, seed=1)
    assert lr.traces == 1
    assert float(a["a"]) != float(b["a"])  # the cached function still takes the new key and data


def test_new_data_length_traces_again(lr: pp.Model) -> None:
    lr.simulate({"x": [1.0, 2.0, 3.0]}, seed=0)
    tr = lr.simulate({"x": [1.0, 2.0, 3.0, 4.0]}, seed=0)
    assert lr.traces == 2
    assert np.shape(tr["y"]) == (4,)
    lr.simulate({"x": [9.0, 8.0, 7.0]}, seed=2)  # back to the first shape: still cached
    assert lr.traces == 2


def test_log_density_traces_once_for_many_traces(lr: pp.Model) -> None:
    data = {"x": [1.0, 2.0, 3.0]}
    values = [lr.simulate(data, seed=s).values for s in range(4)]
    after_simulate = lr.traces
    lps = [float(lr.log_density(v, data)) for v in values]
    assert lr.traces == after_simulate + 1
    assert len(set(lps)) == 4


def test_importance_with_new_observations_of_the_same_shape_reuses_the_trace(lr: pp.Model) -> None:
    lr.importance({"x": [1.0, 2.0], "y": [0.5, 0.7]}, seed=0)
    lw = lr.importance({"x": [1.0, 2.0], "y": [3.0, -1.0]}, seed=0).log_weight
    assert lr.traces == 1
    lr.importance({"x": [1.0, 2.0, 3.0], "y": [3.0, -1.0, 0.0]}, seed=0)
    assert lr.traces == 2
    assert np.isfinite(float(lw))


def test_batch_size_is_a_shape(lr: pp.Model) -> None:
    data = {"x": [1.0, 2.0]}
    lr.simulate(data, seed=0, num_samples=10)
    lr.simulate(data, seed=1, num_samples=10)
    assert lr.traces == 1
    lr.simulate(data, seed=0, num_samples=20)
    assert lr.traces == 2


def test_static_size_argument_selects_a_new_trace() -> None:
    m = pp.loads(SIZED)["loop"]
    m.simulate({"N": 2, "x": [1.0, 2.0]}, seed=0)
    m.simulate({"N": 2, "x": [3.0, 4.0]}, seed=1)
    assert m.traces == 1
    tr = m.simulate({"N": 3, "x": [1.0, 2.0, 3.0]}, seed=0)
    assert m.traces == 2
    assert np.shape(tr["y"]) == (3,)


def test_log_density_fn_is_traced_once() -> None:
    m = pp.loads(SIZED)["loop"]
    f = m.log_density_fn({"N": 2, "x": [1.0, 2.0], "y": [0.0, 1.0]})
    lps = {float(f({"a": np.float32(a)})) for a in (0.0, 0.5, 1.0, 2.0)}
    assert m.traces == 1
    assert len(lps) == 4


def test_loading_the_same_program_twice_reuses_generated_functions(tmp_path: Path) -> None:
    first, second = pp.loads(SIZED)["loop"], pp.loads(SIZED)["loop"]
    assert first.impl is second.impl
    path = tmp_path / "same.ppl"
    path.write_text(SIZED)
    # the generated module records the file name, so a file is its own cache entry, reused on reload
    assert pp.load(str(path))["loop"].impl is pp.load(str(path))["loop"].impl
    changed = pp.loads(SIZED.replace("1.0)\n    for", "2.0)\n    for"))["loop"]
    assert changed.impl is not first.impl
    data = {"N": 2, "x": [1.0, 2.0]}
    values = {"a": 0.3, "y": [0.1, 0.2]}
    assert float(changed.log_density(values, data)) != float(first.log_density(values, data))


# ---------------------------------------------------------------- repeated API calls

REGRESSION = """
model reg(N: int, x: vector[N]):
    a ~ normal(0.0, 1.0)
    s ~ half_normal(1.0)
    for i in range(N):
        y[i] ~ normal(a * x[i], s)
"""


def regression_data() -> dict:
    x = np.linspace(-1.0, 1.0, 8)
    return {"N": 8, "x": x, "y": 0.5 * x + 0.1 * np.sin(7 * x)}


def test_binding_the_same_data_again_reuses_it_and_changed_data_does_not() -> None:
    m = pp.loads(REGRESSION)["reg"]
    data = regression_data()
    first = m.bind(data)
    assert m.bind(dict(data)) is first  # equal data, another dict: the same binding
    data["y"][0] += 1.0  # changed in place: not the same data any more
    changed = m.bind(data)
    assert changed is not first
    assert float(changed.observed["y"][0]) == pytest.approx(float(first.observed["y"][0]) + 1.0)
    import jax.numpy as jnp

    x = jnp.asarray(data["x"])  # JAX arrays cannot change: kept by identity
    assert m.bind({**data, "x": x}) is m.bind({**data, "x": x})


def test_a_repeated_fit_compiles_nothing_and_gives_the_same_fit() -> None:
    m = pp.loads(REGRESSION)["reg"]
    data = regression_data()
    first = pp.fit(m, "mean_field", "elbo", data, steps=200, progress=False, seed=3)
    again = pp.fit(m, "mean_field", "elbo", regression_data(), steps=200, progress=False, seed=3)
    assert first.info["timings"].compile_s > 0
    assert again.info["timings"].compile_s == 0.0  # the compiled loop was reused
    assert again.problem is first.problem
    np.testing.assert_array_equal(first.values, again.values)
    np.testing.assert_array_equal(first.draws["a"], again.draws["a"])
    other_rate = pp.fit(m, "mean_field", "elbo", data, steps=200, progress=False, seed=3, learning_rate=0.05)
    assert other_rate.info["timings"].compile_s > 0  # another optimizer: another loop
    assert not np.array_equal(other_rate.values, first.values)
    moved = regression_data()
    moved["y"] = moved["y"] + 5.0
    shifted = pp.fit(m, "mean_field", "elbo", moved, steps=200, progress=False, seed=3)
    assert shifted.problem is not first.problem  # other data: fitted to that data, not the cached one
    assert np.mean(shifted.draws["s"]) > np.mean(first.draws["s"]) + 1.0


def test_a_repeated_particle_filter_binds_and_traces_nothing_again() -> None:
    m = pp.loads("""
model walk(T: int):
    x[0] ~ normal(0.0, 1.0)
    y[0] ~ normal(x[0], 1.0)
    for t in range(1, T):
        x[t] ~ normal(x[t - 1], 1.0)
        y[t] ~ normal(x[t], 1.0)
""")["walk"]
    data = {"T": 5, "y": np.array([0.1, -0.2, 0.3, 0.0, 0.5])}
    first = pp.smc(m, data, particles=64, seed=0)
    traces = first.engine.traces
    again = pp.smc(m, data, particles=64, seed=0)
    assert again.engine is first.engine and again.engine.traces == traces
    assert again.log_marginal_likelihood == first.log_marginal_likelihood
    data["y"][-1] = 50.0  # a far observation in place: the evidence must drop
    assert pp.smc(m, data, particles=64, seed=0).log_marginal_likelihood < first.log_marginal_likelihood - 100


def test_a_repeated_sample_gives_the_same_draws() -> None:
    m = pp.loads(REGRESSION)["reg"]
    data = regression_data()
    first = pp.sample(m, data, chains=2, warmup=50, draws=50, seed=1, progress=False)
    again = pp.sample(m, data, chains=2, warmup=50, draws=50, seed=1, progress=False)
    np.testing.assert_array_equal(first.draws["a"], again.draws["a"])


def test_data_bound_inside_a_jitted_function_is_not_kept() -> None:
    """A binding made while JAX traces holds that trace's values: it must not serve a later call."""
    import jax

    m = pp.loads(REGRESSION)["reg"]
    data = regression_data()
    inside = jax.jit(lambda a: m.log_density({"a": a, "s": 1.0}, data))(0.3)
    outside = m.log_density({"a": 0.3, "s": 1.0}, data)
    assert float(inside) == pytest.approx(float(outside), rel=1e-6)
    again = jax.jit(lambda a: m.log_density({"a": a, "s": 1.0}, data))(0.3)  # a new trace: no leaked tracer
    assert float(again) == pytest.approx(float(outside), rel=1e-6)
