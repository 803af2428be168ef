"""Sizes are checked before anything runs: a loop's trip count (nested loops multiplied) and the
number of values of a choice or array against documented budgets, a model file's length, and the
nesting depth of brackets, each a located error rather than minutes of silence or a crash."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings
from pplang.compiler.frontend import parser

import pplang as pp
from pplang import budget

NESTED = """\
model m(N: int, M: int):
    a ~ normal(0.0, 1.0)
    for i in range(N):
        for j in range(M):
            y[i, j] ~ normal(a, 1.0)
"""


@pytest.fixture(scope="module")
def nested() -> pp.Model:
    return pp.loads(NESTED, file="b.ppl")["m"]


@given(st.integers(1, 10**6), st.integers(1, 10**6))
@settings(max_examples=60, deadline=None)
def test_nested_loops_are_counted_before_running(n: int, m: int) -> None:
    model = pp.loads(NESTED, file="b.ppl")["m"]
    limit = 10_000
    old = budget.MAX_ITERATIONS, budget.MAX_ELEMENTS
    budget.MAX_ITERATIONS = budget.MAX_ELEMENTS = limit
    try:
        if n > limit or n * m > limit:
            with pytest.raises(pp.PplError, match="would run") as info:
                model.bind({"N": n, "M": m})
            line = 3 if n > limit else 4
            assert f"b.ppl:{line}:" in str(info.value) and "PPLANG_MAX_ITERATIONS" in str(info.value)
        else:
            assert model.bind({"N": n, "M": m}).static == {"N": n, "M": m}
    finally:
        budget.MAX_ITERATIONS, budget.MAX_ELEMENTS = old


def test_a_choice_too_large_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    m = pp.loads("model m(N: int):\n    z ~ normal(zeros(N), 1.0)\n", file="c.ppl")["m"]
    monkeypatch.setattr(budget, "MAX_ELEMENTS", 1000)
    with pytest.raises(pp.PplError, match="random choice `z` would hold 5,000 values") as info:
        m.simulate({"N": 5000})
    assert "c.ppl:2" in str(info.value) and "PPLANG_MAX_ELEMENTS" in str(info.value)
    assert m.simulate({"N": 10}, seed=0)["z"].shape == (10,)


def test_the_default_budget_stops_a_billion_iterations(nested: pp.Model) -> None:
    with pytest.raises(pp.PplError, match="1,000,000,000 iterations"):
        nested.simulate({"N": 10**5, "M": 10**4})


def test_a_file_too_long_is_refused_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parser, "MAX_SOURCE_CHARS", 10_000)
    text = "model m():\n    x ~ normal(0.0, 1.0)\n" + "    # a comment\n" * 1000
    with pytest.raises(pp.PplError, match="more than the 10,000 a model file may have"):
        pp.loads(text, file="long.ppl")


@given(st.integers(parser.MAX_NESTING + 1, 5000), st.integers(0, 3))
@settings(max_examples=25, deadline=None)
def test_deep_brackets_are_located_where_they_go_too_deep(depth: int, pad: int) -> None:
    src = "model m():\n    x ~ normal(0.0, 1.0)\n" + "\n" * pad + "    y = " + "(" * depth + "x" + ")" * depth + "\n"
    with pytest.raises(pp.PplError, match="nested more than") as info:
        pp.loads(src, file="deep.ppl")
    assert f"deep.ppl:{3 + pad}:{8 + parser.MAX_NESTING + 1}" in str(info.value)


def test_a_long_operator_chain_is_located_at_its_line() -> None:
    src = "model m():\n    x ~ normal(0.0, 1.0)\n    z = 1.0\n    y = " + "-" * 5000 + "x\n"
    with pytest.raises(pp.PplError, match="nested too deeply") as info:
        pp.loads(src, file="chain.ppl")
    assert "chain.ppl:4:" in str(info.value)
