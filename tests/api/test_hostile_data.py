"""Hostile or broken data is refused with a located `PplError`, never a traceback or a misleading
message: data files (huge integers, deep nesting, bytes that are not UTF-8, a name given twice,
an .npz that is not a zip archive) and data values (NaN or infinity in an argument or an
observation, negative sizes, ints that do not fit in 32 bits). Through the CLI each is exit code 1
with no traceback."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pplang.compiler.diagnostics import Diagnostic, PplError

import pplang as pp
from pplang.cli import main

SRC = """\
model m(N: int, x: vector[N], X: matrix[N, 2], s: positive, c: int[N]):
    mu ~ normal(0.0, 1.0)
    for i in range(N):
        y[i] ~ normal(mu + x[i], s)
    k ~ poisson(3.0)
"""
FILE = "m.ppl"
HEADER = SRC.splitlines()[0]
GOOD: dict[str, Any] = {"N": 3, "x": [1.0, 2.0, 3.0], "X": [[0.0, 1.0]] * 3, "s": 1.0, "c": [1, 2, 3]}


@pytest.fixture(scope="module")
def model() -> pp.Model:
    return pp.loads(SRC, file=FILE)["m"]


def with_(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def file_error(tmp_path: Path, content: bytes | str, name: str = "d.json") -> Diagnostic:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(PplError) as info:
        pp.load_data(str(path))
    return info.value.diagnostics[0]


def bind_error(model: pp.Model, data: dict[str, Any]) -> Diagnostic:
    with pytest.raises(PplError) as info:
        model.bind(data)
    return info.value.diagnostics[0]


def at_argument(d: Diagnostic, name: str) -> None:
    col = HEADER.index(f"{name}:") + 1
    assert (d.span.file, d.span.line, d.span.col) == (FILE, 1, col), d.render()
    assert f"`{name}`" in d.message


# ---------------------------------------------------------------- JSON data files


def test_a_5000_digit_integer(tmp_path: Path) -> None:
    d = file_error(tmp_path, '{"N": 3,\n "x": ' + "9" * 5000 + "}")
    assert (d.span.line, d.span.col) == (2, 7), d.render()
    assert "integer outside the 64-bit range" in d.message
    assert d.found == "999999999999... (5000 digits)"
    lines = d.render().splitlines()
    assert len(lines[1]) < 200  # the source line is shown clipped around the number
    assert lines[2].strip().startswith("^")


@pytest.mark.parametrize("number", ["9223372036854775808", "-9223372036854775809", "1" + "0" * 23])
def test_integers_just_outside_64_bits(tmp_path: Path, number: str) -> None:
    d = file_error(tmp_path, '{"a": [1, 2],\n "N": ' + number + "}")
    assert (d.span.line, d.span.col, d.found) == (2, 7, number), d.render()


def test_integers_at_the_64_bit_limits_are_read(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text('{"a": 9223372036854775807, "b": -9223372036854775808, "c": 1e400}')
    assert pp.load_data(str(path)) == {"a": 2**63 - 1, "b": -(2**63), "c": float("inf")}


def test_thousands_of_nested_lists(tmp_path: Path) -> None:
    d = file_error(tmp_path, '{"N":\n ' + "[" * 5000 + "]" * 5000 + "}")
    assert (d.span.line, d.span.col) == (2, 66), d.render()
    assert "more than 64 deep" in d.message and d.hint


def test_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    d = file_error(tmp_path, b'{"N": 3,\n "x": "\xe9t\xe9"}')
    assert (d.span.line, d.span.col) == (2, 8), d.render()
    assert "not UTF-8" in d.message and "0xe9" in d.message and "byte offset 16" in d.message
    assert d.hint and "UTF-8" in d.hint


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_bytes(b'\xef\xbb\xbf{"N": 3}')
    assert pp.load_data(str(path)) == {"N": 3}


def test_a_name_given_twice(tmp_path: Path) -> None:
    d = file_error(tmp_path, '{"N": 3,\n "x": [1.0],\n "N": 4}')
    assert (d.span.line, d.span.col, d.span.end_col) == (3, 2, 5), d.render()
    assert d.message == "data file gives `N` twice"
    assert d.hint and "once" in d.hint


def test_a_name_given_twice_in_a_nested_object(tmp_path: Path) -> None:
    d = file_error(tmp_path, '{"t": {"a": 1, "b": {"a": 2}, "a": 3}, "a": 0}')
    assert (d.span.line, d.span.col) == (1, 31), d.render()
    assert "`a`" in d.message


def test_npz_that_is_not_a_zip(tmp_path: Path) -> None:
    d = file_error(tmp_path, "not a zip", "d.npz")
    assert "not an .npz archive" in d.message and "d.npz" in d.message
    assert d.hint and "numpy.savez" in d.hint


def test_a_single_npy_array_named_npz(tmp_path: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.arange(3))
    d = file_error(tmp_path, buf.getvalue(), "d.npz")
    assert d.found == "a single .npy array" and d.hint and "savez" in d.hint


def test_a_broken_zip_and_a_pickled_entry(tmp_path: Path) -> None:
    d = file_error(tmp_path, b"PK\x03\x04" + b"\x00" * 40, "d.npz")
    assert "cannot read data file" in d.message
    path = tmp_path / "o.npz"
    np.savez(path, x=np.arange(3), o=np.array([1, "a", None], dtype=object))
    with pytest.raises(PplError) as info:
        pp.load_data(str(path))
    assert "entry `o`" in info.value.diagnostics[0].message


# ---------------------------------------------------------------- data values


def test_nan_in_an_argument_names_it_and_the_first_bad_index(model: pp.Model) -> None:
    d = bind_error(model, with_(x=[1.0, float("nan"), float("inf")]))
    at_argument(d, "x")
    assert d.message == "data for `x` must be finite numbers"
    assert d.found == "x[1] = nan"
    assert d.hint and "no missing values" in d.hint


def test_infinity_in_a_matrix_and_a_scalar(model: pp.Model) -> None:
    d = bind_error(model, with_(X=[[0.0, 1.0], [0.0, float("-inf")], [0.0, 1.0]]))
    at_argument(d, "X")
    assert d.found == "X[1, 1] = -inf"
    d = bind_error(model, with_(s=float("nan")))
    at_argument(d, "s")
    assert d.found == "s = nan"


def test_nan_for_an_int_argument_is_not_called_fractional(model: pp.Model) -> None:
    d = bind_error(model, with_(c=[1.0, float("nan"), 2.0]))
    at_argument(d, "c")
    assert "finite" in d.message and d.found == "c[1] = nan"


def test_nan_in_an_observation(model: pp.Model) -> None:
    d = bind_error(model, with_(y=[0.0, 1.0, float("nan")]))
    assert (d.span.line, "`y`" in d.message, d.found) == (4, True, "y[2] = nan"), d.render()
    assert d.hint and "no missing values" in d.hint
    d = bind_error(model, with_(k=float("inf")))
    assert (d.span.line, d.found) == (5, "k = inf"), d.render()


def test_nan_argument_is_not_reported_as_zero_weights(model: pp.Model) -> None:
    """Before binding checked it, NaN reached the model and importance sampling said every draw
    had zero weight."""
    with pytest.raises(PplError) as info:
        model.importance(with_(s=float("nan"), y=[0.0, 1.0, 2.0]), seed=0, num_samples=10)
    assert "zero weight" not in info.value.render() and "`s`" in info.value.render()


def test_outside_the_support_names_the_first_value(model: pp.Model) -> None:
    d = bind_error(model, with_(k=-2))
    assert d.found == "k = -2"
    d = bind_error(model, with_(s=-1.0))
    assert d.found == "s = -1"


def test_a_negative_size_is_located_at_the_argument(model: pp.Model) -> None:
    d = bind_error(model, with_(N=-5, x=[], X=np.zeros((0, 2)), c=[]))
    at_argument(d, "N")
    assert d.message == "data for `N` cannot be negative: `N` is a size"
    assert d.found == "N = -5"
    assert d.hint and f"{FILE}:1:" in d.hint and "(-5,)" not in d.render()


def test_a_negative_size_expression() -> None:
    src = "model m(N: int, x: vector[N - 3]):\n    y ~ normal(x, 1.0)\n"
    m = pp.loads(src, file=FILE)["m"]
    d = bind_error(m, {"N": 2, "x": []})
    assert (d.span.line, d.span.col) == (1, 27), d.render()
    assert d.found == "`(N - 3)` = -1"


def test_a_negative_size_of_an_array_a_loop_builds_or_a_function_makes() -> None:
    src = "model m(T: int):\n    for t in range(T):\n        z[t] ~ normal(0.0, 1.0)\n"
    d = bind_error(pp.loads(src, file=FILE)["m"], {"T": -2})
    assert (d.span.line, d.span.col, d.found) == (1, 9, "T = -2"), d.render()
    assert d.hint and f"{FILE}:3:9" in d.hint
    src = "model m(T: int):\n    w ~ normal(zeros(T - 3), 1.0)\n"
    d = bind_error(pp.loads(src, file=FILE)["m"], {"T": 2})
    assert (d.span.line, d.span.col, d.found) == (2, 22, "`(T - 3)` = -1"), d.render()
    assert "`zeros`" in d.message


def test_ints_that_do_not_fit_in_32_bits(model: pp.Model) -> None:
    d = bind_error(model, with_(c=[1, 2**40, 3]))
    at_argument(d, "c")
    assert d.found == f"c[1] = {2**40}"
    d = bind_error(model, with_(c=[1.0, 1e30, 3.0]))
    assert d.found == "c[1] = 1e+30"
    d = bind_error(model, with_(k=2**33))
    assert "32-bit" in d.message and d.span.line == 5
    d = bind_error(model, with_(N=10**30))
    at_argument(d, "N")
    assert "64-bit" in d.message


# ---------------------------------------------------------------- through the CLI


HOSTILE = {
    "huge-int": '{"N": ' + "7" * 5000 + "}",
    "deep": '{"N": ' + "[" * 3000 + "]" * 3000 + "}",
    "not-utf8": b'{"N": 3, "x": "\xff\xfe"}',
    "duplicate": '{"N": 3, "N": 4, "x": [1, 2, 3], "X": [[0, 1], [0, 1], [0, 1]], "s": 1, "c": [1, 2, 3]}',
    "nan-argument": '{"N": 3, "x": [1, NaN, 3], "X": [[0, 1], [0, 1], [0, 1]], "s": 1, "c": [1, 2, 3]}',
    "nan-observation": '{"N": 3, "x": [1, 2, 3], "X": [[0, 1], [0, 1], [0, 1]], "s": 1, "c": [1, 2, 3], '
                       '"y": [1, Infinity, 3]}',
    "negative-size": '{"N": -5, "x": [], "X": [], "s": 1, "c": []}',
    "not-a-zip.npz": "this is not a zip archive",
}
WHERE = {"huge-int": "d.json:1:7:", "deep": "d.json:1:71:", "not-utf8": "d.json:1:16:", "duplicate": "d.json:1:10:",
         "nan-argument": f"{FILE}:1:17:", "nan-observation": f"{FILE}:4:9:", "negative-size": f"{FILE}:1:9:",
         "not-a-zip.npz": None}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_cli_exit_code_1_and_no_traceback(tmp_path: Path, capsys: pytest.CaptureFixture, case: str) -> None:
    model_file = tmp_path / FILE
    model_file.write_text(SRC)
    data = tmp_path / ("d.npz" if case.endswith(".npz") else "d.json")
    content = HOSTILE[case]
    data.write_bytes(content if isinstance(content, bytes) else content.encode())
    code = main(["infer", "--method", "is", str(model_file), "--data", str(data), "-n", "10"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err and "internal error" not in err
    first = err.splitlines()[0]
    assert first.startswith(f"{tmp_path}/{WHERE[case]}" if WHERE[case] else f"error: data file {data}"), err
    assert max(len(line) for line in err.splitlines()) < 400


# ---------------------------------------------------------------- properties


def read(tmp_path: Path, content: bytes) -> dict | None:
    """load_data on `content`: the dict, or None for a PplError; any other exception fails."""
    path = tmp_path / "fuzz.json"
    path.write_bytes(content)
    try:
        return pp.load_data(str(path))
    except PplError as e:
        assert e.diagnostics[0].message and "Traceback" not in e.render()
        return None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values, depth=st.integers(0, 2000), dup=st.booleans())
def test_json_texts_give_data_or_a_located_error(tmp_path: Path, value: Any, depth: int, dup: bool) -> None:
    text = json.dumps({"v": value})
    if depth:
        text = '{"deep": ' + "[" * depth + "1" + "]" * depth + ', "v": ' + json.dumps(value) + "}"
    if dup:
        text = text[:-1] + ', "v": 0}'
    got = read(tmp_path, text.encode())
    big = any(isinstance(v, int) and not -(2**63) <= v < 2**63 for v in leaves(value))
    if got is not None:
        assert not dup and not big
        assert got["v"] == value
    elif not dup and not big and depth < 900:
        raise AssertionError(f"refused valid data: {text[:200]}")


def leaves(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [x for v in value for x in leaves(v)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in leaves(v)]
    return [value]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_bytes_give_data_or_a_located_error(tmp_path: Path, data: st.DataObject) -> None:
    good = json.dumps({"N": 3, "x": [1.5, -2, 3e10], "name": "é", "nested": {"a": [[1, 2], [3, 4]]}}).encode()
    at = data.draw(st.integers(0, len(good) - 1))
    junk = data.draw(st.binary(min_size=1, max_size=4))
    read(tmp_path, good[:at] + junk + good[at + 1 :])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=200), zipped=st.booleans())
def test_npz_bytes_give_data_or_an_error(tmp_path: Path, blob: bytes, zipped: bool) -> None:
    path = tmp_path / "fuzz.npz"
    if zipped:  # a zip archive whose entry is not a valid .npy
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("x.npy", blob)
        blob = buf.getvalue()
    path.write_bytes(blob)
    try:
        pp.load_data(str(path))
    except PplError:
        pass


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=3, max_size=3))
def test_non_finite_arguments_are_named_with_their_first_index(values: list[float]) -> None:
    model = pp.loads(SRC, file=FILE)["m"]
    bad = [i for i, v in enumerate(values) if not np.isfinite(v)]
    if not bad:
        model.bind(with_(x=values))
        return
    d = bind_error(model, with_(x=values))
    at_argument(d, "x")
    assert d.found == f"x[{bad[0]}] = {values[bad[0]]:g}"
