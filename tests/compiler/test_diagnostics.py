"""Every class of user error in a model file is one located `PplError`: `file:line:col`, the source
line with a caret under the offending text, expected/found where they help, and a hint. No user
mistake may surface as a raw Python, lark or JAX exception."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pplang.compiler.diagnostics import PplError
from pplang.stdlib import distributions as dists

import pplang as pp

FILE = "t.ppl"


@dataclass(frozen=True)
class Case:
    """A malformed program and what its first diagnostic must say.

    `at` is the text that must start at `line:col`; `covers` is text the caret must span (when
    the span is wider than one token); `hint` is a substring of the hint (None: any hint)."""

    id: str
    src: str
    line: int
    col: int
    at: str
    message: str
    expected: str | None = None
    found: str | None = None
    hint: str | None = None
    covers: str | None = None


CASES = [
    Case("unknown-name-near-miss",
         "model m(N: int):\n    sigma ~ half_normal(1.0)\n    y ~ normal(0.0, sigam)\n",
         3, 21, "sigam", "unknown name `sigam`", hint="did you mean `sigma`?"),
    Case("unknown-name-no-candidate",
         "model m():\n    y ~ normal(0.0, qqqq)\n",
         2, 21, "qqqq", "unknown name `qqqq`", hint="define it before use"),
    Case("unknown-distribution-near-miss",
         "model m():\n    y ~ normall(0.0, 1.0)\n",
         2, 9, "normall", "unknown distribution `normall`", hint="did you mean `normal`"),
    Case("unknown-distribution-lists-all",
         "model m():\n    y ~ zzqqxx(0.0, 1.0)\n",
         2, 9, "zzqqxx", "unknown distribution `zzqqxx`", hint="half_cauchy"),
    Case("unknown-function-near-miss",
         "model m():\n    a = expp(1.0)\n    y ~ normal(a, 1.0)\n",
         2, 9, "expp", "unknown function `expp`", hint="did you mean `exp`"),
    Case("distribution-arity",
         "model m():\n    y ~ normal(0.0)\n",
         2, 9, "normal(0.0)", "no form of `normal` takes these arguments",
         expected="normal(loc: real, scale: positive)", found="normal(real)"),
    Case("distribution-too-many-args",
         "model m():\n    y ~ beta(1.0, 1.0, 1.0)\n",
         2, 9, "beta(", "no form of `beta` takes these arguments",
         expected="beta(a: positive, b: positive)", found="beta(real, real, real)"),
    Case("distribution-wrong-keyword",
         "model m():\n    y ~ normal(0.0, scal=1.0)\n",
         2, 9, "normal(", "no form of `normal` takes these arguments",
         expected="scale: positive", found="scal=real"),
    Case("strategy-unknown",
         "model m():\n    y ~ normal(0.0, 1.0) via foo\n",
         2, 5, "y ~", "unknown gradient strategy `foo`", hint="reparam, reinforce, mvd, enum", covers="foo"),
    Case("strategy-near-miss",
         "model m():\n    y ~ normal(0.0, 1.0) via reparm\n",
         2, 5, "y ~", "unknown gradient strategy `reparm`", hint="did you mean `reparam`", covers="reparm"),
    Case("strategy-reparam-on-discrete",
         "model m():\n    y ~ bernoulli(0.5) via reparam\n",
         2, 5, "y ~", "`bernoulli` cannot be reparameterized", hint="via enum", covers="via reparam"),
    Case("strategy-enum-on-continuous",
         "model m():\n    y ~ normal(0.0, 1.0) via enum\n",
         2, 5, "y ~", "`normal` has no finite support to enumerate", hint="via reinforce", covers="via enum"),
    Case("likelihood-literal-size-mismatch",
         "model m():\n    y ~ normal([1.0, 2.0, 3.0], [1.0, 2.0])\n",
         2, 9, "normal(", "sizes 3 and 2 do not match", hint="normal(loc: real, scale: positive)"),
    Case("likelihood-silent-column-broadcast",
         "model m(N: int, x: matrix[N, 1], s: vector[N]):\n    y ~ normal(x, s)\n",
         2, 9, "normal(x, s)", "combining (N, 1) with (N,) would broadcast to (N, N)"),
    Case("arithmetic-silent-column-broadcast",
         "model m(N: int, x: matrix[N, 1], z: vector[N]):\n    w = x + z\n    y ~ normal(w, 1.0)\n",
         2, 9, "x + z", "would broadcast to (N, N)", found="(N, 1) and (N,)", hint="index or reshape"),
    Case("matmul-inner-size",
         "model m(A: matrix[3, 4], v: vector[5]):\n    w = A @ v\n    y ~ normal(w, 1.0)\n",
         2, 9, "A @ v", "inner sizes 4 and 5 of the matrix product differ", found="(3, 4) @ (5,)"),
    Case("matmul-matrices",
         "model m(A: matrix[2, 3], B: matrix[2, 3]):\n    C = A @ B\n",
         2, 9, "A @ B", "inner sizes 3 and 2", found="(2, 3) @ (2, 3)"),
    Case("index-a-scalar",
         "model m():\n    a ~ normal(0.0, 1.0)\n    b ~ normal(a[0], 1.0)\n",
         3, 16, "a[0]", "too many indices: the value has 0 dimension(s)", expected="at most 0", found="1",
         hint="a scalar cannot be indexed"),
    Case("too-many-indices",
         "model m(x: vector[3]):\n    b ~ normal(x[0, 1], 1.0)\n",
         2, 16, "x[0, 1]", "too many indices", expected="at most 1 index", found="2"),
    Case("real-index",
         "model m(x: vector[3]):\n    b ~ normal(x[1.5], 1.0)\n",
         2, 18, "1.5", "an index must be an int", expected="int", found="real", hint="to_int"),
    Case("loop-bound-real",
         "model m(s: real):\n    for i in range(s):\n        y[i] ~ normal(0.0, 1.0)\n",
         2, 20, "s)", "loop bounds must be ints known before the model runs", found="real",
         hint="`int` argument"),
    Case("loop-bound-random",
         "model m():\n    n ~ poisson(3.0)\n    for i in range(n):\n        y[i] ~ normal(0.0, 1.0)\n",
         3, 20, "n)", "loop bounds must be ints known before the model runs", expected="an int argument"),
    Case("choice-in-loop-without-index",
         "model m(N: int):\n    for i in range(N):\n        y ~ normal(0.0, 1.0)\n",
         3, 9, "y ~", "random choice `y` inside a loop needs an index", hint="y[i] ~"),
    Case("write-at-constant-in-loop",
         "model m(N: int):\n    for i in range(N):\n        y[0] ~ normal(0.0, 1.0)\n",
         3, 11, "0]", "written at its loop variable plus a constant", expected="i or i + c", found="0",
         hint="y[i]"),
    Case("write-at-scaled-loop-variable",
         "model m(N: int):\n    for i in range(N):\n        mu[2 * i] = 1.0\n",
         3, 12, "2 * i", "written at its loop variable plus a constant", found="(2 * i)", hint="mu[i]"),
    Case("write-with-swapped-loop-variables",
         "model m(N: int, M: int):\n    for i in range(N):\n        for j in range(M):\n"
         "            a[j, i] = 1.0\n",
         4, 15, "j, i", "written at its loop variable plus a constant", hint="a[i, j]"),
    Case("write-with-too-few-indices",
         "model m(N: int, M: int):\n    for i in range(N):\n        for j in range(M):\n            a[i] = 1.0\n",
         4, 13, "a[i]", "needs at least 2 index(es)", found="1 index", hint="a[i, j]"),
    Case("reassign-argument",
         "model m(x: real):\n    x = 2.0\n    y ~ normal(x, 1.0)\n",
         2, 5, "x = 2.0", "`x` is an argument and cannot be reassigned", hint="new name"),
    Case("reassign-random-choice",
         "model m():\n    a ~ normal(0.0, 1.0)\n    a = 2.0\n",
         3, 5, "a = 2.0", "`a` is a random choice and cannot be reassigned", hint="new name"),
    Case("return-not-last",
         "model m():\n    a ~ normal(0.0, 1.0)\n    return a\n    b ~ normal(0.0, 1.0)\n",
         3, 5, "return a", "`return` must be the last statement", hint="at the end"),
    Case("return-inside-loop",
         "model m(N: int):\n    for i in range(N):\n        return 1.0\n",
         3, 9, "return", "`return` must be the last statement"),
    Case("duplicate-declaration",
         "model m():\n    a ~ normal(0.0, 1.0)\nmodel m():\n    b ~ normal(0.0, 1.0)\n",
         3, 1, "model m", "`m` is declared twice", hint="first declared at t.ppl:1:1"),
    Case("duplicate-model-and-guide",
         "model m():\n    a ~ normal(0.0, 1.0)\nguide m():\n    a ~ normal(0.0, 1.0)\n",
         3, 1, "guide m", "`m` is declared twice", hint="t.ppl:1:1"),
    Case("duplicate-random-choice",
         "model m():\n    a ~ normal(0.0, 1.0)\n    a ~ normal(1.0, 1.0)\n",
         3, 5, "a ~", "`a`", hint="t.ppl:2:5"),
    Case("duplicate-param",
         "guide g():\n    param a: real = 0.0\n    param a: real = 1.0\n",
         3, 5, "param a", "`a`"),
    Case("duplicate-argument",
         "model m(x: real, x: real):\n    a ~ normal(x, 1.0)\n",
         1, 18, "x: real)", "`x`"),
    Case("unknown-type",
         "model m(x: vectr[3]):\n    a ~ normal(0.0, 1.0)\n",
         1, 12, "vectr", "unknown type", hint="did you mean `vector`?"),
    Case("size-not-an-int",
         "model m(s: real, x: vector[s]):\n    a ~ normal(x, 1.0)\n",
         1, 28, "s]", "a size must be a number or an `int` argument", expected="a static int", found="real"),
    Case("size-is-a-float",
         "model m(x: vector[2.5]):\n    a ~ normal(x, 1.0)\n",
         1, 19, "2.5", "a size must be a number or an `int` argument", found="real"),
    Case("size-given-to-zeros-is-real",
         "model m(r: real):\n    a = zeros(r)\n",
         2, 15, "r)", "the sizes given to `zeros` must be ints", found="real"),
    Case("distribution-called-as-function",
         "model m():\n    a = normal(0.0, 1.0)\n",
         2, 9, "normal(0.0, 1.0)", "`normal` is a distribution", hint="x ~ normal(...)"),
    Case("distribution-used-as-value",
         "model m():\n    a ~ normal(normal, 1.0)\n",
         2, 16, "normal, 1.0", "`normal` is a distribution", hint="normal(loc: real, scale: positive)"),
    Case("model-used-as-value",
         "model sub():\n    a ~ normal(0.0, 1.0)\nmodel m():\n    b ~ normal(sub, 1.0)\n",
         4, 16, "sub", "`sub` is a model"),
    Case("model-called-as-function",
         "model sub():\n    a ~ normal(0.0, 1.0)\nmodel m():\n    b = sub()\n",
         4, 9, "sub()", "`sub` is a model", hint="`x ~ sub(...)`"),
    Case("submodel-arity",
         "model sub(s: real):\n    a ~ normal(0.0, s)\nmodel m():\n    b ~ sub(1.0, 2.0)\n",
         4, 9, "sub(1.0, 2.0)", "`sub` takes 1 argument(s)", expected="sub(s)", found="2 argument(s)"),
    Case("guide-called-as-submodel",
         "guide g():\n    a ~ normal(0.0, 1.0)\nmodel m():\n    b ~ g()\n",
         4, 9, "g()", "only models can be called with `~`"),
    Case("submodel-in-loop-without-index",
         "model s():\n    a ~ normal(0.0, 1.0)\nmodel m(N: int):\n    for i in range(N):\n        b ~ s()\n",
         5, 9, "b", "a submodel call inside a loop needs an index", hint="b[i] ~ s(...)"),
    Case("direct-recursion",
         "model m():\n    a ~ normal(0.0, 1.0)\n    b ~ m()\n",
         3, 9, "m()", "`m` calls itself; recursive models are not supported"),
    Case("mutual-recursion",
         "model p():\n    a ~ q()\nmodel q():\n    b ~ p()\n",
         4, 9, "p()", "recursive models are not supported"),
    Case("param-in-loop",
         "guide g(N: int):\n    for i in range(N):\n        param m: real = 0.0\n",
         3, 9, "param m", "`param` cannot appear inside a loop", hint="top level"),
    Case("unknown-param-constraint-near-miss",
         "guide g():\n    param s: postive = 1.0\n    a ~ normal(0.0, s)\n",
         2, 14, "postive", "postive", hint="did you mean `positive`"),
    Case("param-constraint-not-a-constraint",
         "guide g():\n    param a: int = 0.0\n",
         2, 14, "int", "unknown parameter constraint `int`", hint="positive"),
    Case("if-on-a-vector",
         "model m(x: vector[3]):\n    if x > 0.0:\n        a ~ normal(0.0, 1.0)\n",
         2, 8, "x > 0.0", "an `if` condition must be a single bool", expected="bool", found="bool[3]",
         hint="where(cond, a, b)"),
    Case("if-on-a-distribution",
         "model m():\n    if normal:\n        a = 1.0\n",
         2, 8, "normal", "`normal` is a distribution"),
    Case("reserved-underscore-name",
         "model m():\n    _a ~ normal(0.0, 1.0)\n",
         2, 5, "_a", "names starting with `_` are reserved", hint="without the leading underscore"),
    Case("function-arity",
         "model m():\n    a = exp(1.0, 2.0)\n",
         2, 9, "exp(1.0, 2.0)", "`exp` takes 1 argument(s)", found="2 argument(s)"),
    Case("discrete-argument-given-real",
         "model m():\n    a ~ binomial(2.5, 0.5)\n",
         2, 9, "binomial(", "argument `total_count` of `binomial` must be an int", expected="int", found="real",
         hint="to_int"),
    Case("vector-argument-given-scalar",
         "model m():\n    a ~ dirichlet(1.0)\n",
         2, 9, "dirichlet(", "argument `concentration` of `dirichlet` must have at least 1 dimension",
         hint="dirichlet(concentration: positive vector)"),
    Case("array-mixes-choices-and-assignments",
         "model m():\n    a[0] = 2.0\n    a[1] ~ normal(0.0, 1.0)\n",
         3, 5, "a[1]", "`a` mixes random choices and assignments", hint="another"),
    Case("write-index-not-constant-outside-loop",
         "model m():\n    k ~ poisson(1.0)\n    a[k] = 1.0\n",
         3, 7, "k]", "outside a loop, an array piece must be written at a constant index"),
    Case("empty-vector",
         "model m():\n    a = []\n",
         2, 9, "[]", "an empty vector has no type", hint="zeros(0)"),
    Case("unclosed-bracket",
         "model m():\n    a ~ normal(0.0, 1.0\n    b = 1\n",
         3, 5, "b", "unexpected name 'b'", expected="')'", hint="opened on line 2, column 15 is never closed"),
    Case("chained-comparison",
         "model m():\n    a = 1 < 2 < 3\n",
         2, 9, "1 < 2 < 3", "chained comparisons are not supported"),
]
IDS = [c.id for c in CASES]


def raise_diag(src: str) -> PplError:
    """The PplError loading `src` raises (pytest.raises lets any other exception escape: a failure)."""
    with pytest.raises(PplError) as info:
        pp.loads(src, file=FILE)
    return info.value


def rendered_lines(err: PplError) -> list[str]:
    return err.diagnostics[0].render().splitlines()


def caret(lines: list[str]) -> tuple[int, int]:
    """Column (1-based) and width of the caret row of a rendered diagnostic."""
    row = lines[2]
    assert set(row.strip()) == {"^"}, f"third line is not a caret row: {row!r}"
    start = row.index("^")
    return start - 4 + 1, len(row.strip())


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_location_source_line_and_caret(case: Case) -> None:
    err = raise_diag(case.src)
    d = err.diagnostics[0]
    lines = rendered_lines(err)
    assert lines[0].startswith(f"{FILE}:{case.line}:{case.col}: error: "), lines[0]
    assert case.message in lines[0]
    text = case.src.splitlines()[case.line - 1]
    assert text[case.col - 1:].startswith(case.at), "test data: `at` must start at the reported column"
    assert lines[1] == "    " + text
    col, width = caret(lines)
    assert col == case.col
    assert (d.span.file, d.span.line, d.span.col) == (FILE, case.line, case.col)
    if case.covers is not None:
        start = text.index(case.covers) + 1
        assert col <= start and start + len(case.covers) <= col + width, \
            f"caret {col}+{width} does not cover {case.covers!r}"


@pytest.mark.parametrize("case", [c for c in CASES if c.expected or c.found],
                         ids=[c.id for c in CASES if c.expected or c.found])
def test_expected_and_found(case: Case) -> None:
    d = raise_diag(case.src).diagnostics[0]
    if case.expected is not None:
        assert d.expected is not None and case.expected in d.expected
        assert "  expected: " in d.render()
    if case.found is not None:
        assert d.found is not None and case.found in d.found
        assert "  found:    " in d.render()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_user_error_has_a_hint(case: Case) -> None:
    d = raise_diag(case.src).diagnostics[0]
    assert d.hint, f"no hint for: {d.render()}"
    assert f"  hint: {d.hint}" in d.render()
    if case.hint is not None:
        assert case.hint in d.hint


def test_wrong_arity_lists_every_signature() -> None:
    """A call that fits no form of a distribution shows `describe(name)`: all of its forms."""
    for src, name in [("model m():\n    y ~ normal(0.0)\n", "normal"),
                      ("model m():\n    y ~ bernoulli(0.5, 0.5)\n", "bernoulli"),
                      ("model m():\n    y ~ categorical(probs=[0.5, 0.5], logits=[0.0, 0.0])\n", "categorical")]:
        d = raise_diag(src).diagnostics[0]
        assert d.expected == dists.describe(name)
        text = d.render()
        for sig in dists.describe(name).splitlines():
            assert sig in text


def test_unknown_distribution_far_from_any_lists_all_distributions() -> None:
    hint = raise_diag("model m():\n    y ~ zzqqxx(0.0, 1.0)\n").diagnostics[0].hint or ""
    for name in dists.SIGNATURES:
        assert name in hint


def test_unknown_distribution_near_miss_shows_signature_of_suggestion() -> None:
    """Besides `did you mean normal?`, the signature of the suggestion, so the fix is complete."""
    text = raise_diag("model m():\n    y ~ normall(0.0, 1.0)\n").render()
    assert "did you mean `normal`" in text
    assert dists.describe("normal") in text


@pytest.mark.parametrize("src", [
    "model m():\n\ty ~ normal(0.0, sigam)\n",
    "model m():\r\n    y ~ normal(0.0, sigam)\r\n",
    "model m(\u03c8\u03c8: real):\n    y ~ normal(\u03c8\u03c8, sigam)\n",
], ids=["tab-indent", "crlf", "unicode-name"])
def test_caret_lines_up_with_the_source_as_displayed(src: str) -> None:
    """With tabs in the source line the caret row must use the same tabs, or it points elsewhere."""
    lines = rendered_lines(raise_diag(src))
    assert lines[2].expandtabs().index("^") == lines[1].expandtabs().index("sigam"), "\n".join(lines[:3])


def test_diagnostic_for_a_loaded_file_names_the_file(tmp_path) -> None:
    path = tmp_path / "bad.ppl"
    path.write_text("model m():\n    y ~ normal(0.0, sigam)\n")
    with pytest.raises(PplError) as info:
        pp.load(str(path))
    assert info.value.render().startswith(f"{path}:2:21: error: unknown name `sigam`")


def test_several_models_report_the_first_error_in_file_order() -> None:
    err = raise_diag("model a():\n    x ~ normal(0.0, 1.0)\nmodel b():\n    y ~ normal(0.0, qq)\n"
                     "model c():\n    z ~ normal(0.0, rr)\n")
    assert err.span.line == 4


# Programs the checker must reject (today some are accepted and run with a surprising meaning),
# with the line the diagnostic must point at.
MUST_REJECT = {
    "reassign-loop-variable": ("model m(N: int):\n    for i in range(N):\n        i = 2\n"
                               "        y[i] ~ normal(100.0 * i, 1.0)\n", 3),
    "nested-loops-reuse-variable": ("model m(N: int):\n    for i in range(N):\n        for i in range(N):\n"
                                    "            y[i, i] ~ normal(0.0, 1.0)\n", 3),
    "loop-variable-shadows-argument": ("model m(N: int, i: real):\n    for i in range(N):\n"
                                       "        y[i] ~ normal(0.0, 1.0)\n    z ~ normal(i, 1.0)\n", 2),
    "strategy-on-submodel": ("model s():\n    a ~ bernoulli(0.5)\n    return a\nmodel m():\n"
                             "    b ~ s() via reparam\n", 5),
}


@pytest.mark.parametrize("name", list(MUST_REJECT))
def test_ambiguous_programs_are_rejected(name: str) -> None:
    src, line = MUST_REJECT[name]
    err = raise_diag(src)
    assert err.span.line == line, err.render()
    assert err.diagnostics[0].hint, err.render()


# ---------------------------------------------------------------- never a raw exception

# Programs at the edges of the language: each must load, or fail with a PplError.
EDGE_PROGRAMS = {
    "duplicate-argument": "model m(x: real, x: real):\n    a ~ normal(x, 1.0)\n",
    "model-named-None": "model None():\n    a ~ normal(0.0, 1.0)\n",
    "model-named-class": "model class():\n    a ~ normal(0.0, 1.0)\n",
    "model-named-lambda": "model lambda():\n    a ~ normal(0.0, 1.0)\n",
    "model-named-is": "model is():\n    a ~ normal(0.0, 1.0)\n",
    "model-named-normal": "model normal():\n    a ~ normal(0.0, 1.0)\n",
    "argument-named-jnp": "model m(jnp: real):\n    a ~ normal(jnp, 1.0)\n",
    "argument-named-lambda": "model m(lambda: real):\n    a ~ normal(lambda, 1.0)\n",
    "loop-variable-named-range": "model m():\n    for range in range(2):\n        a[range] ~ normal(0.0, 1.0)\n",
    "huge-write-index": "model m():\n    y[99999999999999999999] ~ normal(0.0, 1.0)\n",
    "negative-size": "model m(x: vector[-3]):\n    a ~ normal(0.0, 1.0)\n",
    "objective-unknown-name": "objective e(q):\n    x = simulat(q)\n",
    "attribute": "model m(x: vector[3]):\n    a = x.size\n",
    "shape-axis": "model m(x: vector[3]):\n    a = x.shape[5]\n",
    "shape-axis-not-number": "model m(x: vector[3], k: int):\n    a = x.shape[k]\n",
    "slice-bound-random": "model m(x: vector[3]):\n    k ~ poisson(1.0)\n    a = x[0:k]\n",
    "vector-items-differ": "model m():\n    a = [[1.0, 2.0], [3.0]]\n",
    "unexpected-character": "model m():\n    a = 1 $ 2\n",
    "string": "model m():\n    a = 'x'\n",
    "tab-space-mix": "model m():\n\ta = 1\n        b = 2\n",
    "byte-order-mark": "\ufeffmodel m():\n    a ~ normal(0.0, 1.0)\n",
}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_user_errors_are_ppl_errors(case: Case) -> None:
    try:
        pp.loads(case.src, file=FILE)
    except PplError:
        return
    except Exception as e:  # noqa: BLE001 - the point of the test
        pytest.fail(f"raw {type(e).__module__}.{type(e).__name__}: {e}")
    pytest.fail("no error")


@pytest.mark.parametrize("name", list(EDGE_PROGRAMS))
def test_edge_programs_load_or_fail_cleanly(name: str) -> None:
    src = EDGE_PROGRAMS[name]
    try:
        pp.loads(src, file=FILE)
    except PplError as e:
        line = e.span.line
        assert 1 <= line <= len(src.splitlines()), e.render()
    except Exception as e:  # noqa: BLE001 - the point of the test
        pytest.fail(f"raw {type(e).__module__}.{type(e).__name__}: {e}")


@pytest.mark.parametrize("name", ["argument-named-jnp", "argument-named-lambda", "loop-variable-named-range"])
def test_names_the_generated_code_uses_are_usable_or_rejected_where_declared(name: str) -> None:
    """A name the generated Python renames must either work or be rejected at its declaration,
    not reported as `unknown name` where it is used."""
    src = EDGE_PROGRAMS[name]
    try:
        pp.loads(src, file=FILE)
    except PplError as e:
        assert "unknown name" not in e.render(), e.render()


# Programs that check but go wrong when run: the error must still be a PplError.
RUN_PROGRAMS = {
    "choice-in-one-arm-of-traced-if": ("model m():\n    a ~ normal(0.0, 1.0)\n    if a > 0.0:\n"
                                       "        b ~ normal(1.0, 1.0)\n", {}),
    "huge-write-index": ("model m():\n    y[99999999999999999999] ~ normal(0.0, 1.0)\n", {}),
    "assigned-in-one-arm-then-drawn": ("model m():\n    a ~ normal(0.0, 1.0)\n    if a > 0.0:\n        d = 1.0\n"
                                       "    d ~ normal(0.0, 1.0)\n", {}),
    "whole-array-read-while-built-in-loop": ("model m(N: int):\n    for i in range(N):\n        mu[i] = 1.0\n"
                                             "        y[i] ~ normal(sum(mu), 1.0)\n", {"N": 3}),
    "whole-choice-array-read-while-drawn": ("model m(N: int):\n    for i in range(N):\n"
                                            "        y[i] ~ normal(0.0, 1.0)\n        z[i] ~ normal(sum(y), 1.0)\n",
                                            {"N": 3}),
    "modulo-by-zero-size": ("model m(N: int):\n    for i in range(N % 0):\n        a[i] ~ normal(0.0, 1.0)\n",
                            {"N": 3}),
    "negative-range": ("model m():\n    for i in range(-3):\n        a[i] ~ normal(0.0, 1.0)\n", {}),
    "dot-size-mismatch": ("model m():\n    a = dot([1.0, 2.0], [1.0, 2.0, 3.0])\n    b ~ normal(a, 1.0)\n", {}),
    "model-named-D-next-to-another": ("model D():\n    a ~ normal(0.0, 1.0)\nmodel m():\n"
                                      "    a ~ normal(0.0, 1.0)\n", {}),
    "model-named-rt-next-to-another": ("model rt():\n    a ~ normal(0.0, 1.0)\nmodel m():\n"
                                       "    a ~ normal(0.0, 1.0)\n", {}),
}


@pytest.mark.parametrize("name", list(RUN_PROGRAMS))
def test_run_time_errors_are_ppl_errors(name: str) -> None:
    src, data = RUN_PROGRAMS[name]
    try:
        mod = pp.loads(src, file=FILE)
        mod[mod.names[-1]].simulate(data, seed=0)
    except PplError as e:
        assert 1 <= e.span.line <= len(src.splitlines()), e.render()
    except Exception as e:  # noqa: BLE001 - the point of the test
        pytest.fail(f"raw {type(e).__module__}.{type(e).__name__}: {str(e)[:200]}")


def test_param_sizes_shape_the_parameter() -> None:
    """`param a: real[3] = 0.0` is a vector of three parameters, each starting at 0."""
    g = pp.loads("guide g():\n    param a: real[3] = 0.0\n    b ~ normal(a, 1.0)\n")["g"]
    assert g.simulate({}).values["b"].shape == (3,)


def test_param_initial_value_must_fit_its_declared_shape() -> None:
    err = raise_diag("guide g():\n    param a: real[3] = [1.0, 2.0]\n    b ~ normal(a, 1.0)\n")
    assert err.span.line == 2 and "does not fit its declared shape" in err.render()


def test_function_names_from_other_languages_point_to_pplangs() -> None:
    err = raise_diag("model m(x: vector[3]):\n    n = len(x)\n    y ~ normal(0.0, 1.0)\n")
    assert "pplang calls this `size`" in err.render()


def test_unknown_keyword_of_a_distribution_names_its_parameters() -> None:
    text = raise_diag("model m():\n    y ~ normal(0.0, scal=1.0)\n").render()
    assert "`normal` has no parameter `scal`; its parameters are loc, scale" in text
    assert "did you mean `scale`?" in text
