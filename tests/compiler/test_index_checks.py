"""Indices stay inside the arrays they index, or the user is told where they do not: JAX clamps an
index past the end and wraps a negative one, so without these checks `x[5]` of a length-3 vector
reads `x[2]` and 1-based group indices read the wrong groups, silently.

* a static index (`x[5]`, `x[-4]`, `x[K]`) is checked against the axis size: when the checker
  knows both, at check time; otherwise when data is bound;
* int data used as an index (`mu[g[i]]`, `mu[g[i] - 1]`, `mu[g]`) is checked value by value when
  data is bound, the error naming the entry, the value and where it is, with a hint when the data
  look 1-based;
* reads past the end of an array a loop builds (`x[t + 1]` while writing `x[t]`, `x[T]` after the
  loop) are checked against the array's final size.

Each failure is a `PplError` located at the index in the model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pplang.compiler.diagnostics import Diagnostic, PplError

import pplang as pp

FILE = "ix.ppl"


def compile_error(src: str) -> Diagnostic:
    with pytest.raises(PplError) as info:
        pp.loads(src, file=FILE)
    return info.value.diagnostics[0]


def bind_error(src: str, name: str, data: dict[str, Any]) -> Diagnostic:
    m = pp.loads(src, file=FILE)[name]
    with pytest.raises(PplError) as info:
        m.bind(data)
    return info.value.diagnostics[0]


def at(d: Diagnostic, src: str, needle: str, line: int) -> None:
    """The diagnostic is located at the first `needle` on `line` (1-based) of `src`, caret under it."""
    text = src.splitlines()[line - 1]
    col = text.index(needle) + 1
    assert (d.span.file, d.span.line, d.span.col) == (FILE, line, col), d.render()
    rendered = d.render().splitlines()
    assert rendered[1] == "    " + text
    assert rendered[2] == "    " + " " * (col - 1) + "^" * len(needle), d.render()


# ---------------------------------------------------------------- static indices


CONST = """\
model m(x: vector[3], A: matrix[2, 3]):
    y ~ normal(x[{k}] + A[{r}, {c}], 1.0)
"""


def test_constant_index_past_the_end_is_a_check_time_error() -> None:
    src = CONST.format(k=5, r=0, c=0)
    d = compile_error(src)
    at(d, src, "5", 2)
    assert "index `5`" in d.message and "`x`" in d.message
    assert d.found == "index 5, but the axis has size 3"
    assert d.hint and "0 to 2" in d.hint


def test_negative_constant_index_counts_from_the_end_but_not_past_the_start() -> None:
    pp.loads(CONST.format(k=-3, r=-2, c=-1), file=FILE)  # the first element, the first row, the last column
    src = CONST.format(k=-4, r=0, c=0)
    d = compile_error(src)
    at(d, src, "-4", 2)
    assert "-3 to -1" in (d.hint or "")


def test_constant_index_on_the_second_axis_of_a_matrix() -> None:
    src = CONST.format(k=0, r=1, c=3)
    d = compile_error(src)
    at(d, src, "3", 2)
    assert "`A`" in d.message and d.found == "index 3, but the axis has size 3"


def test_constant_index_into_a_vector_literal() -> None:
    src = "model m():\n    y ~ normal([1.0, 2.0][2], 1.0)\n"
    d = compile_error(src)
    assert (d.span.line, d.span.col) == (2, 27), d.render()
    assert d.found == "index 2, but the axis has size 2"


SYMBOLIC = """\
model m(N: int, K: int, x: vector[N]):
    y ~ normal(x[5] + x[K], 1.0)
"""


def test_constant_index_against_a_data_size_is_checked_at_binding() -> None:
    m = pp.loads(SYMBOLIC, file=FILE)["m"]
    m.bind({"N": 6, "K": 0, "x": np.zeros(6)})
    d = bind_error(SYMBOLIC, "m", {"N": 3, "K": 0, "x": np.zeros(3)})
    at(d, SYMBOLIC, "5", 2)
    assert d.message.endswith("(with this data)")
    assert d.found == "index 5, but the axis has size 3"


def test_static_int_argument_as_index_is_checked_at_binding() -> None:
    d = bind_error(SYMBOLIC, "m", {"N": 6, "K": 6, "x": np.zeros(6)})
    at(d, SYMBOLIC, "K", 2)
    assert d.found == "index `K` = 6, but the axis has size 6"
    pp.loads(SYMBOLIC, file=FILE)["m"].bind({"N": 6, "K": -6, "x": np.zeros(6)})


# ---------------------------------------------------------------- int data as indices


GROUPS = """\
model groups(N: int, J: int, g: int[N], x: vector[N]):
    for j in range(J):
        mu[j] ~ normal(0.0, 1.0)
    for i in range(N):
        y[i] ~ normal(mu[g[i]] + x[i], 1.0)
"""


def groups_data(g: list[int], J: int = 3) -> dict[str, Any]:
    return {"N": len(g), "J": J, "g": g, "x": np.zeros(len(g))}


def test_zero_based_group_indices_bind() -> None:
    m = pp.loads(GROUPS, file=FILE)["groups"]
    tr = m.simulate(groups_data([0, 1, 2, 2]), seed=0)
    assert tr.values["y"].shape == (4,)


def test_one_based_group_indices_are_refused_with_a_hint() -> None:
    d = bind_error(GROUPS, "groups", groups_data([1, 2, 3, 3]))
    at(d, GROUPS, "g[i]", 5)
    assert "index data `g`" in d.message and "`mu`" in d.message and d.message.endswith("(with this data)")
    assert d.found == "g[2] = 3, but the axis has size 3"
    assert d.hint and "1-based" in d.hint and "subtract 1" in d.hint


def test_negative_index_data_is_refused_without_the_one_based_hint() -> None:
    d = bind_error(GROUPS, "groups", groups_data([0, -1, 2]))
    assert d.found == "g[1] = -1, but the axis has size 3"
    assert d.hint and "1-based" not in d.hint and "from 0 to 2" in d.hint


def test_index_data_with_an_offset_in_the_model() -> None:
    src = GROUPS.replace("mu[g[i]]", "mu[g[i] - 1]")
    m = pp.loads(src, file=FILE)["groups"]
    m.bind(groups_data([1, 2, 3, 3]))  # 1-based data, converted in the model
    d = bind_error(src, "groups", groups_data([0, 1, 2]))
    assert d.found == "g[0] = 0 (the index -1), but the axis has size 3"
    assert d.hint and "from 1 to 3" in d.hint


def test_only_the_part_of_the_index_data_that_is_read_is_checked() -> None:
    src = GROUPS.replace("for i in range(N):", "for i in range(1, N):")
    m = pp.loads(src, file=FILE)["groups"]
    m.bind(groups_data([99, 0, 1, 2]))  # g[0] is never read
    d = bind_error(src, "groups", groups_data([99, 0, 7, 2]))
    assert d.found == "g[2] = 7, but the axis has size 3"


def test_index_data_into_an_argument_and_as_a_whole_array() -> None:
    src = """\
model m(N: int, K: int, g: int[N], theta: vector[K]):
    a ~ normal(theta[g], 1.0)
    for i in range(N):
        b[i] ~ normal(theta[g[i]], 1.0)
"""
    m = pp.loads(src, file=FILE)["m"]
    m.bind({"N": 2, "K": 2, "g": [0, 1], "theta": [0.0, 1.0]})
    d = bind_error(src, "m", {"N": 2, "K": 2, "g": [1, 2], "theta": [0.0, 1.0]})
    at(d, src, "g", 2)
    assert d.found == "g[1] = 2, but the axis has size 2" and "1-based" in (d.hint or "")


def test_index_data_in_a_matrix_names_both_positions() -> None:
    src = """\
model m(R: int, C: int, K: int, g: int[R, C]):
    for k in range(K):
        mu[k] ~ normal(0.0, 1.0)
    for r in range(R):
        for c in range(C):
            y[r, c] ~ normal(mu[g[r, c]], 1.0)
"""
    d = bind_error(src, "m", {"R": 2, "C": 2, "K": 2, "g": [[0, 1], [5, 0]]})
    assert d.found == "g[1, 0] = 5, but the axis has size 2"


# ---------------------------------------------------------------- arrays built by a sequential loop


def test_read_past_the_end_of_an_array_a_loop_builds_is_a_check_time_error() -> None:
    src = """\
model m():
    x[0] ~ normal(0.0, 1.0)
    for t in range(1, 5):
        x[t] ~ normal(x[t - 1], 1.0)
    for t in range(5):
        z[t] ~ normal(x[t + 1], 1.0)
"""
    d = compile_error(src)
    at(d, src, "t + 1", 6)
    assert "`x`" in d.message
    assert d.found == "the loop reaches 5 but the size is 5"


def test_read_past_the_end_of_an_array_a_loop_builds_with_data_sizes() -> None:
    src = """\
model m(T: int):
    x[0] ~ normal(0.0, 1.0)
    for t in range(1, T):
        x[t] ~ normal(x[t - 1], 1.0)
    z ~ normal(x[T], 1.0)
"""
    d = bind_error(src, "m", {"T": 4})
    at(d, src, "T", 5)
    assert d.found == "index `T` = 4, but the axis has size 4"
    ok = src.replace("x[T]", "x[T - 1]")
    assert pp.loads(ok, file=FILE)["m"].simulate({"T": 4}, seed=0).values["z"].shape == ()


def test_read_before_the_start_of_an_array_a_loop_builds() -> None:
    src = """\
model m(T: int):
    x[0] ~ normal(0.0, 1.0)
    for t in range(T):
        x[t + 1] ~ normal(x[t - 1], 1.0)
"""
    d = compile_error(src)
    at(d, src, "t - 1", 4)
    assert "before the start of `x`" in d.message


def test_a_loop_that_does_not_run_reads_nothing() -> None:
    src = """\
model m(T: int, x: vector[T]):
    for t in range(1, T):
        y[t] ~ normal(x[t + 1], 1.0)
"""
    m = pp.loads(src, file=FILE)["m"]
    m.bind({"T": 0, "x": []})
    m.bind({"T": 1, "x": [0.0]})
    d = bind_error(src, "m", {"T": 3, "x": [0.0, 1.0, 2.0]})
    assert d.found == "the loop reaches 3 but the size is 3"


# ---------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None)
@given(size=st.integers(0, 6), k=st.integers(-12, 12))
def test_constant_indices_compile_exactly_when_inside(size: int, k: int) -> None:
    src = f"model m(x: vector[{size}]):\n    y ~ normal(x[{k}], 1.0)\n"
    inside = -size <= k < size
    if inside:
        pp.loads(src, file=FILE)
        return
    d = compile_error(src)
    at(d, src, str(k), 2)
    assert f"has size {size}" in (d.found or "")


@settings(max_examples=25, deadline=None)
@given(values=st.lists(st.integers(-3, 8), min_size=1, max_size=6), groups=st.integers(1, 5))
def test_index_data_bind_exactly_when_inside(values: list[int], groups: int) -> None:
    m = pp.loads(GROUPS, file=FILE)["groups"]
    data = groups_data(values, groups)
    bad = [i for i, v in enumerate(values) if not 0 <= v < groups]
    if not bad:
        m.bind(data)
        return
    with pytest.raises(PplError) as info:
        m.bind(data)
    d = info.value.diagnostics[0]
    at(d, GROUPS, "g[i]", 5)
    assert d.found == f"g[{bad[0]}] = {values[bad[0]]}, but the axis has size {groups}"
    assert ("1-based" in (d.hint or "")) == all(1 <= v <= groups for v in values)
