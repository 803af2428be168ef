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
