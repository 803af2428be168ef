"""Run-time data is checked against the declaration before JAX runs: every mistake in it is a
located `PplError` that names the argument or random choice, through the Python API and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pplang.compiler.diagnostics import Diagnostic, PplError

import pplang as pp
from pplang.cli import main

SRC = """\
model lin(N: int, x: vector[N], s: positive, X: matrix[N, 2], w: unit, counts: int[N]):
    alpha ~ normal(0.0, 10.0)
    for i in range(N):
        mu[i] = alpha + x[i]
        y[i] ~ normal(mu[i], s)
    k ~ poisson(3.0)
    z ~ bernoulli(w)
    return alpha

model sub(s: real):
    a ~ normal(0.0, s)
    return a

model top():
    u ~ sub(3.0)
    v ~ normal(u, 1.0)
"""
FILE = "lin.ppl"
HEADER = SRC.splitlines()[0]
GOOD: dict[str, Any] = {"N": 3, "x": [1.0, 2.0, 3.0], "s": 1.0, "X": [[1.0, 2.0]] * 3, "w": 0.5,
                        "counts": [1, 0, 2]}


@pytest.fixture(scope="module")
def module() -> pp.Module:
    return pp.loads(SRC, file=FILE)


@pytest.fixture(scope="module")
def lin(module: pp.Module) -> pp.Model:
    return module["lin"]


def with_(**changes: Any) -> dict[str, Any]:
    out = {**GOOD, **changes}
    return {k: v for k, v in out.items() if v is not None}


def without(name: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != name}


def bind_error(model: pp.Model, data: dict[str, Any], how: str = "importance") -> Diagnostic:
    with pytest.raises(PplError) as info:
        if how == "importance":
            model.importance(data, seed=0)
        elif how == "simulate":
            model.simulate(data, seed=0)
        else:
            model.bind(data)
    return info.value.diagnostics[0]


def at_argument(d: Diagnostic, name: str) -> None:
    """The diagnostic points at the declaration of argument `name` and names it."""
    col = HEADER.index(f"{name}:") + 1
    assert (d.span.file, d.span.line, d.span.col) == (FILE, 1, col), d.render()
    lines = d.render().splitlines()
    assert lines[0].startswith(f"{FILE}:1:{col}: error: ")
    assert f"`{name}`" in lines[0]
    assert lines[1] == "    " + HEADER
    assert lines[2].startswith("    " + " " * (col - 1) + "^")


def at_choice(d: Diagnostic, name: str, line: int) -> None:
    """The diagnostic points at the `~` statement that draws `name` and names it."""
    text = SRC.splitlines()[line - 1]
    col = text.index(name) + 1
    assert (d.span.file, d.span.line, d.span.col) == (FILE, line, col), d.render()
    lines = d.render().splitlines()
    assert f"`{name}`" in lines[0]
    assert lines[1] == "    " + text
    assert lines[2].startswith("    " + " " * (col - 1) + "^")


def test_good_data_binds(lin: pp.Model) -> None:
    tr = lin.importance(with_(y=[0.0, 1.0, 2.0], k=2, z=1), seed=0)
    assert tr.values["y"].shape == (3,)
    assert int(tr.values["k"]) == 2


# ---------------------------------------------------------------- arguments


def test_missing_argument(lin: pp.Model) -> None:
    d = bind_error(lin, without("x"))
    at_argument(d, "x")
    assert "missing data for argument `x` of model `lin`" in d.message
    assert d.expected == "x: vector[N]"
    assert d.hint and '"x"' in d.hint


def test_missing_size_argument_when_simulating(lin: pp.Model) -> None:
    d = bind_error(lin, without("N"), "simulate")
    at_argument(d, "N")
    assert "missing data" in d.message


def test_vector_given_a_matrix(lin: pp.Model) -> None:
    d = bind_error(lin, with_(x=[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    at_argument(d, "x")
    assert "2 dimension(s)" in d.message and "x: vector[N]" in d.message
    assert d.expected == "vector[N]"
    assert d.found == "shape (2, 3)"


def test_column_given_where_vector_declared_hints_trailing_axis(lin: pp.Model) -> None:
    d = bind_error(lin, with_(x=[[1.0], [2.0], [3.0]]))
    at_argument(d, "x")
    assert d.found == "shape (3, 1)"
    assert d.hint and "trailing axis of size 1" in d.hint


def test_matrix_given_a_vector_hints_missing_axis(lin: pp.Model) -> None:
    d = bind_error(lin, with_(X=[1.0, 2.0, 3.0]))
    at_argument(d, "X")
    assert d.hint and "missing an axis" in d.hint


def test_declared_size_mismatch(lin: pp.Model) -> None:
    d = bind_error(lin, with_(x=[1.0, 2.0]))
    at_argument(d, "x")
    assert "(2,)" in d.message and "(3,)" in d.message
    assert d.found == "(2,)"
    assert d.expected is not None and "(3,)" in d.expected
    assert d.hint


def test_second_dimension_mismatch(lin: pp.Model) -> None:
    d = bind_error(lin, with_(X=[[1.0, 2.0, 3.0]] * 3))
    at_argument(d, "X")
    assert "(3, 2)" in d.message


def test_non_integer_for_int_argument(lin: pp.Model) -> None:
    d = bind_error(lin, with_(N=2.5))
    at_argument(d, "N")
    assert "whole numbers" in d.message
    assert d.expected == "int"


def test_whole_float_for_int_argument_is_accepted(lin: pp.Model) -> None:
    tr = lin.simulate(with_(N=3.0), seed=0)
    assert tr.values["y"].shape == (3,)


def test_non_integer_for_int_array(lin: pp.Model) -> None:
    d = bind_error(lin, with_(counts=[1.0, 0.5, 2.0]))
    at_argument(d, "counts")
    assert "whole numbers" in d.message


def test_string_for_number(lin: pp.Model) -> None:
    d = bind_error(lin, with_(s="one"))
    at_argument(d, "s")
    assert "not a number" in d.message


def test_ragged_array(lin: pp.Model) -> None:
    d = bind_error(lin, with_(x=[1.0, [2.0, 3.0], 3.0]))
    at_argument(d, "x")
    assert d.hint and "same length" in d.hint


def test_negative_for_positive(lin: pp.Model) -> None:
    d = bind_error(lin, with_(s=-1.0))
    at_argument(d, "s")
    assert "must be positive" in d.message
    assert d.expected == "positive"
    assert d.found is not None and "-1" in d.found


def test_zero_for_positive(lin: pp.Model) -> None:
    d = bind_error(lin, with_(s=0.0))
    at_argument(d, "s")


def test_out_of_range_for_unit(lin: pp.Model) -> None:
    d = bind_error(lin, with_(w=1.5))
    at_argument(d, "w")
    assert "[0, 1]" in d.message


def test_bad_simplex_and_ordered_arguments() -> None:
    mod = pp.loads("model m(K: int, p: simplex[K], c: ordered[K]):\n    z ~ categorical(p)\n"
                   "    y ~ normal(c, 1.0)\n", file="s.ppl")
    m = mod["m"]
    d = bind_error(m, {"K": 2, "p": [0.5, 0.6], "c": [1.0, 2.0]}, "simulate")
    assert d.span.line == 1 and "`p`" in d.message and "simplex" in d.message
    d = bind_error(m, {"K": 2, "p": [0.5, 0.5], "c": [2.0, 1.0]}, "simulate")
    assert d.span.line == 1 and "`c`" in d.message and "increasing" in d.message


# ---------------------------------------------------------------- observations


def test_observation_of_wrong_length(lin: pp.Model) -> None:
    d = bind_error(lin, with_(y=[1.0, 2.0]))
    at_choice(d, "y", 5)
    assert d.expected == "(3,)"
    assert d.found == "(2,)"


def test_observation_with_trailing_axis(lin: pp.Model) -> None:
    d = bind_error(lin, with_(y=[[1.0], [2.0], [3.0]]))
    at_choice(d, "y", 5)
    assert d.hint and "trailing axis of size 1" in d.hint


def test_scalar_choice_observed_as_array(lin: pp.Model) -> None:
    d = bind_error(lin, with_(alpha=[1.0, 2.0]))
    at_choice(d, "alpha", 2)
    assert d.expected == "()"


def test_non_integer_observation_for_discrete_choice(lin: pp.Model) -> None:
    d = bind_error(lin, with_(k=2.5))
    at_choice(d, "k", 6)
    assert "whole numbers" in d.message and "poisson" in d.message
    d = bind_error(lin, with_(z=0.3))
    at_choice(d, "z", 7)


@pytest.mark.parametrize(("name", "value", "line"), [
    ("z", 2, 7),            # bernoulli: 0 or 1
    ("k", -1, 6),           # poisson: a count
], ids=["bernoulli-2", "poisson-negative"])
def test_observation_outside_the_support(lin: pp.Model, name: str, value: Any, line: int) -> None:
    """A value the distribution cannot produce is a mistake in the data, not an impossible model:
    it must not silently give a log weight of -inf (and NaN summaries downstream)."""
    d = bind_error(lin, with_(**{name: value}))
    at_choice(d, name, line)


def test_string_observation(lin: pp.Model) -> None:
    d = bind_error(lin, with_(alpha="a"))
    at_choice(d, "alpha", 2)


def bind_note(model: pp.Model, data: dict[str, Any], how: str = "importance") -> str:
    """The one note binding `data` gives (an unused entry is not an error)."""
    from pplang.compiler.diagnostics import DataNote

    with pytest.warns(DataNote) as notes:
        model.simulate(data, seed=0) if how == "simulate" else model.importance(data, seed=0)
    assert len(notes) == 1
    return str(notes[0].message)


def test_unknown_data_entry_near_miss(lin: pp.Model) -> None:
    note = bind_note(lin, with_(alpah=1.0))
    assert "`alpah`" in note and "model `lin`" in note and "ignored" in note
    assert note.endswith("(did you mean `alpha`?)")


def test_unknown_data_entry_lists_names(lin: pp.Model) -> None:
    note = bind_note(lin, with_(qqqq=1.0))
    for name in ("N", "x", "s", "alpha", "y", "k", "z"):
        assert name in note.split("ignored")[1]


def test_unknown_data_entry_noted_when_simulating_too(lin: pp.Model) -> None:
    assert bind_note(lin, with_(alpah=1.0), "simulate").endswith("(did you mean `alpha`?)")


def test_observing_a_computed_variable(lin: pp.Model) -> None:
    d = bind_error(lin, with_(mu=[1.0, 2.0, 3.0]))
    assert "`mu` is computed by model `lin`" in d.message
    assert "cannot be observed" in d.message
    assert d.span.line >= 1 and d.hint


def test_observing_a_computed_scalar() -> None:
    m = pp.loads("model m():\n    a ~ normal(0.0, 1.0)\n    b = a * 2.0\n    c ~ normal(b, 1.0)\n",
                 file="c.ppl")["m"]
    d = bind_error(m, {"b": 1.0})
    assert "`b`" in d.message and "computed" in d.message


def test_observations_of_continuous_choices_outside_their_support() -> None:
    m = pp.loads("model m():\n    b ~ beta(1.0, 1.0)\n    s ~ half_normal(1.0)\n", file="c.ppl")["m"]
    d = bind_error(m, {"b": 1.5})
    assert (d.span.line, "`b`" in d.message) == (2, True), d.render()
    d = bind_error(m, {"s": -1.0})
    assert (d.span.line, "`s`" in d.message) == (3, True), d.render()


def test_submodel_choice_addresses(module: pp.Module) -> None:
    top = module["top"]
    tr = top.importance({"u/a": 0.5}, seed=0)
    assert float(tr.values["u/a"]) == 0.5
    assert "u/a" in bind_note(top, {"u/b": 0.5})


def test_errors_render_as_located_text(lin: pp.Model) -> None:
    with pytest.raises(PplError) as info:
        lin.importance(with_(x=[1.0, 2.0]), seed=0)
    text = info.value.render()
    assert text.startswith(f"{FILE}:1:")
    assert "Traceback" not in text


def test_log_density_and_pure_functions_check_data_too(lin: pp.Model) -> None:
    with pytest.raises(PplError):
        lin.log_density_fn(with_(x=[1.0, 2.0]))
    with pytest.raises(PplError):
        lin.simulate_fn(without("N"))
    with pytest.raises(PplError):
        lin.log_density({"alpha": 0.0}, GOOD)


def test_values_for_unknown_addresses_in_log_density(lin: pp.Model) -> None:
    tr = lin.simulate(GOOD, seed=0)
    values = {**tr.values, "alpah": np.float32(0.0)}
    with pytest.raises(PplError) as info:
        lin.log_density(values, GOOD)
    assert "alpha" in info.value.render()


# ---------------------------------------------------------------- data files


def test_malformed_json_is_located(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"N": 3,\n "x": [1.0, 2.0,, 3.0]}\n')
    with pytest.raises(PplError) as info:
        pp.load_data(str(path))
    d = info.value.diagnostics[0]
    assert (d.span.line, d.span.col) == (2, 17)
    lines = d.render().splitlines()
    assert lines[0].startswith(f"{path}:2:17: error: data file is not valid JSON")
    assert lines[1] == '     "x": [1.0, 2.0,, 3.0]}'
    assert lines[2] == "    " + " " * 16 + "^"
    assert d.hint


def test_missing_data_file(tmp_path: Path) -> None:
    path = tmp_path / "none.json"
    with pytest.raises(PplError) as info:
        pp.load_data(str(path))
    assert str(path) in info.value.render()
    assert info.value.diagnostics[0].hint


def test_json_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[1, 2, 3]")
    with pytest.raises(PplError) as info:
        pp.load_data(str(path))
    assert "JSON object" in info.value.render()


# ---------------------------------------------------------------- through the CLI


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / FILE
    path.write_text(SRC)
    return path


def cli_error(model_file: Path, data: dict[str, Any] | None, capsys: pytest.CaptureFixture,
              command: str = "infer", raw: str | None = None) -> str:
    """Run the CLI on `data`, require exit code 1 and no traceback; return stderr."""
    data_path = model_file.parent / "data.json"
    data_path.write_text(raw if raw is not None else json.dumps(data))
    code = main([command, str(model_file), "--model", "lin", "--data", str(data_path), "-n", "20"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(("data", "where", "words"), [
    (without("x"), "1:19", "missing data for argument `x`"),
    (with_(x=[[1.0], [2.0], [3.0]]), "1:19", "trailing axis"),
    (with_(x=[1.0, 2.0]), "1:19", "declaration needs (3,)"),
    (with_(N=2.5), "1:11", "whole numbers"),
    (with_(s=-2.0), "1:33", "must be positive"),
    (with_(y=[1.0, 2.0]), "5:9", "observed `y`"),
    (with_(k=0.5), "6:5", "observed `k` must be whole numbers"),
    (with_(mu=[0.0, 0.0, 0.0]), "1:1", "`mu` is computed"),
], ids=["missing", "trailing-axis", "size", "non-int", "negative", "obs-shape", "obs-non-int",
        "computed"])
def test_cli_data_errors(model_file: Path, capsys: pytest.CaptureFixture, data: dict, where: str,
                         words: str) -> None:
    err = cli_error(model_file, data, capsys)
    assert err.startswith(f"{model_file}:{where}: error: "), err
    assert words in err


def test_cli_data_errors_when_simulating(model_file: Path, capsys: pytest.CaptureFixture) -> None:
    err = cli_error(model_file, with_(x=[1.0, 2.0]), capsys, "simulate")
    assert err.startswith(f"{model_file}:1:19: error: ")


def test_cli_malformed_json(model_file: Path, capsys: pytest.CaptureFixture) -> None:
    err = cli_error(model_file, None, capsys, raw='{"N": 3,\n  "x": [1.0 2.0]}')
    assert ":2:13: error: data file is not valid JSON" in err
    assert "data.json" in err


def test_cli_missing_data_file(model_file: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["infer", "--method", "is", str(model_file), "--model", "lin", "--data",
                 str(model_file.parent / "nope.json")])
    err = capsys.readouterr().err
    assert code == 1
    assert "nope.json" in err and "Traceback" not in err


def test_cholesky_corr_argument_is_validated() -> None:
    src = "model m(L: cholesky_corr[2]):\n    y ~ multivariate_normal(zeros(2), scale_tril=L)\n"
    m = pp.loads(src)["m"]
    assert m.simulate({"L": [[1.0, 0.0], [0.6, 0.8]]}).values["y"].shape == (2,)
    with pytest.raises(pp.PplError) as info:
        m.simulate({"L": [[1.0, 0.5], [0.6, 0.8]]})
    assert "Cholesky factor of a correlation matrix" in info.value.render()


def test_unused_entries_are_ignored_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Data files carry extras (posteriordb's do): an entry the model does not use changes nothing,
    and a note names it (with a suggestion, since it may be a typo)."""
    from pplang.compiler.diagnostics import DataNote

    m = pp.loads(SRC, file=FILE)["lin"]
    with pytest.warns(DataNote, match=r"`sigmaa`.*neither takes.*ignored") as notes:
        bound = m.bind({**GOOD, "sigmaa": 2.0, "y": [0.5, 1.0, 1.5]})
    assert len(notes) == 1
    plain = m.bind({**GOOD, "y": [0.5, 1.0, 1.5]})
    assert bound.static == plain.static and set(bound.observed) == set(plain.observed) == {"y"}
    with pytest.warns(DataNote, match="did you mean `alpha`"):
        m.bind({**GOOD, "alpah": 1.0})
    with pytest.raises(PplError, match="computed by model `lin`"):  # observing a computed value is still wrong
        m.bind({**GOOD, "mu": [0.0, 0.0, 0.0]})

    path = tmp_path / "d.json"
    path.write_text(json.dumps({"n": 3, "flips": [1, 0, 1], "flip": 1}))
    coin = str(Path(__file__).resolve().parents[2] / "examples" / "coin.ppl")
    assert main(["infer", "--method", "is", coin, "--data", str(path), "-n", "100"]) == 0
    err = capsys.readouterr().err
    assert "note: the data has `flip`" in err and "did you mean `flips`?" in err and "Traceback" not in err
