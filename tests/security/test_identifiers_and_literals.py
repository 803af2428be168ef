"""Names and numbers reach generated code as what they are in the file: identifiers are normalized
(NFKC) as Python will normalize them, so two spellings Python would merge are one name to the
checker too and a user name never shadows the generated code's own; a number is a value, never a
name (`1e999` is not the name `inf`), and an integer fits in 32 bits."""

from __future__ import annotations

import unicodedata

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import assume, given, settings

import pplang as pp

PAIRS = [("ﬁ", "fi"), ("ｘ", "x"), ("𝐱", "x"), ("µ", "μ"), ("ℌ", "H"), ("ｙ2", "y2")]


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_spellings_python_merges_are_one_name(a: str, b: str) -> None:
    with pytest.raises(pp.PplError, match="cannot be reassigned") as info:
        pp.loads(f"model m():\n    {a} ~ normal(0.0, 1.0)\n    {b} ~ normal(0.0, 1.0)\n", file="u.ppl")
    assert "u.ppl:3" in str(info.value)


@pytest.mark.parametrize("name", ["ｊａｘ", "ｊｎｐ", "ｒｔ", "Ｄ", "ｌａｘ", "ｍａｘ"])
def test_a_name_that_normalizes_to_the_generated_codes_own_does_not_shadow_it(name: str) -> None:
    m = pp.loads(f"model m():\n    {name} = 100.0\n    x ~ normal({name}, 1.0)\n", file="u.ppl")["m"]
    x = np.asarray(m.simulate({}, seed=0, num_samples=200)["x"])
    assert abs(x.mean() - 100.0) < 0.5


def test_a_name_that_stops_being_one_is_a_located_error() -> None:
    with pytest.raises(pp.PplError, match="not a valid name") as info:
        pp.loads("model m():\n    x½ ~ normal(0.0, 1.0)\n", file="u.ppl")
    assert "u.ppl:2:5" in str(info.value)


LETTERS = st.characters(categories=("Lu", "Ll", "Lt", "Lm", "Lo", "Nl"))


@given(st.text(LETTERS, min_size=1, max_size=4))
@settings(max_examples=150, deadline=None)
def test_any_letters_give_a_working_model_or_a_located_error(name: str) -> None:
    assume(name.isidentifier())
    src = f"model m():\n    {name} ~ normal(0.0, 1.0)\n    y ~ normal({name}, 1.0)\n"
    try:
        m = pp.loads(src, file="u.ppl")["m"]
    except pp.PplError as e:
        assert "u.ppl:" in str(e)
        return
    normal = unicodedata.normalize("NFKC", name)
    assert set(m.sites) == {normal, "y"}
    tr = m.simulate({}, seed=0)
    assert np.isfinite(float(tr[normal]))


@given(st.integers(min_value=309, max_value=5000), st.sampled_from(["1e", "9.5e", "1.0E+"]))
@settings(max_examples=40, deadline=None)
def test_a_real_literal_too_large_is_an_error_not_a_name(exponent: int, head: str) -> None:
    with pytest.raises(pp.PplError, match="too large for a real") as info:
        pp.loads(f"model m():\n    inf = 2.0\n    x ~ normal({head}{exponent}, 1.0)\n", file="u.ppl")
    assert "u.ppl:3" in str(info.value)


@given(st.integers(min_value=2**31, max_value=10**30))
@settings(max_examples=30, deadline=None)
def test_an_integer_literal_beyond_32_bits_is_an_error(value: int) -> None:
    with pytest.raises(pp.PplError, match="does not fit in 32 bits"):
        pp.loads(f"model m():\n    x ~ normal(0.0, 1.0)\n    y = {value} * x\n", file="u.ppl")


def test_non_finite_constants_are_written_as_values() -> None:
    from pplang.compiler.codegen import literal

    assert literal(float("inf")) == "float('inf')" and literal(float("-inf")) == "float('-inf')"
    assert literal(float("nan")) == "float('nan')" and literal(1.5) == "1.5" and literal(3) == "3"
    assert eval(literal(float("-inf"))) == float("-inf")  # noqa: S307 - our own output
