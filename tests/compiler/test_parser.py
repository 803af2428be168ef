"""Model-file front-end: representative programs, AST shapes, spans and located syntax errors."""

from __future__ import annotations

import dataclasses

import pytest
from pplang.compiler.diagnostics import PplError
from pplang.compiler.frontend.parser import parse_program, parse_type
from pplang.compiler.frontend.syntax import (
    Arg,
    Assign,
    Attribute,
    BinOp,
    Bool,
    BoolOp,
    Call,
    Compare,
    Factor,
    For,
    If,
    IfExp,
    Index,
    Keyword,
    Name,
    Num,
    Param,
    Program,
    Return,
    Sample,
    Slice,
    Span,
    TypeExpr,
    UnaryOp,
    VectorLit,
)

COIN = """\
# Coin flips with a beta prior
model coin(n: int, flips: int[n]):
    p ~ beta(1.0, 1.0)     # the bias
    for i in range(n):
        flips[i] ~ bernoulli(p)
    return p
"""

LINREG = """\
model linreg(N: int, K: int, X: matrix[N, K], y: vector[N]):
    alpha ~ normal(0.0, 10.0)
    beta ~ normal(0.0, 1.0, size=K)
    sigma ~ half_normal(1.0)
    mu = alpha + X @ beta
    y ~ normal(mu, sigma)
"""

EIGHT_SCHOOLS = """\
model eight_schools(J: int, y: vector[J], sigma: vector[J]):
    mu ~ normal(0.0, 5.0)
    tau ~ half_cauchy(5.0)

    for j in range(J):
        # non-centred parameterisation
        theta_raw[j] ~ normal(0.0, 1.0)
        theta = mu + tau * theta_raw[j]
        y[j] ~ normal(theta, sigma[j])
"""

MIXTURE = """\
model mixture(N: int, K: int, x: vector[N]):
    w ~ dirichlet(ones(K))
    mu ~ normal(zeros(K), 10.0)
    for n in range(N):
        z[n] ~ categorical(w) via enum
        x[n] ~ normal(mu[z[n]], 1.0)
"""

HMM = """\
model hmm(T: int, K: int, y: vector[T], A: matrix[K, K]):
    z[0] ~ categorical(ones(K) / K) via enum
    y[0] ~ normal(z[0], 1.0)
    for t in range(1, T):
        z[t] ~ categorical(A[z[t - 1], :]) via enum
        if z[t] == 0:
            y[t] ~ normal(0.0, 1.0)
        elif z[t] == 1:
            y[t] ~ normal(3.0, 1.0)
        else:
            y[t] ~ normal(-3.0, 2.0)
"""

GUIDE = """\
guide q(n: int):
    param a: positive = 1.0
    param b: positive = 1.0
    param loc = 0.0
    p ~ beta(a, b)
"""

OBJECTIVE = """\
objective elbo(p, q, k: int):
    factor(-0.5 * k ** 2)
    return k
"""

PROGRAMS = [COIN, LINREG, EIGHT_SCHOOLS, MIXTURE, HMM, GUIDE, OBJECTIVE]


def text_at(source: str, span: Span) -> str:
    """The source text a span covers."""
    rows = source.split("\n")
    if span.line == span.end_line:
        return rows[span.line - 1][span.col - 1: span.end_col - 1]
    parts = [rows[span.line - 1][span.col - 1:], *rows[span.line: span.end_line - 1],
             rows[span.end_line - 1][: span.end_col - 1]]
    return "\n".join(parts)


def strip(node: object) -> object:
    """The same tree with every span replaced by a placeholder, to compare structure only."""
    if isinstance(node, list):
        return [strip(n) for n in node]
    if dataclasses.is_dataclass(node) and not isinstance(node, (type, Span)):
        changes = {f.name: strip(getattr(node, f.name)) for f in dataclasses.fields(node)
                   if not isinstance(getattr(node, f.name), Span)}
        spans = {f.name: Span("", 0, 0, 0, 0) for f in dataclasses.fields(node)
                 if isinstance(getattr(node, f.name), Span)}
        return dataclasses.replace(node, **changes, **spans)
    return node


def walk(node: object):
    """Every syntax node below (and including) `node`."""
    if isinstance(node, list):
        for n in node:
            yield from walk(n)
    elif dataclasses.is_dataclass(node) and not isinstance(node, Span):
        yield node
        for f in dataclasses.fields(node):
            yield from walk(getattr(node, f.name))


def body(source: str) -> list:
    return parse_program(source, "t.ppl").decls[0].body


# ---------------------------------------------------------------- representative programs


def test_coin_structure_and_spans() -> None:
    prog = parse_program(COIN, "coin.ppl")
    assert isinstance(prog, Program) and prog.file == "coin.ppl" and prog.source == COIN
    (decl,) = prog.decls
    assert (decl.kind, decl.name) == ("model", "coin")
    assert strip(decl.args) == strip([Arg("n", TypeExpr("int")), Arg("flips", TypeExpr("int", [Name("n")]))])
    p, loop, ret = decl.body
    assert strip(p) == strip(Sample(Name("p"), Call("beta", [Num(1.0), Num(1.0)])))
    assert isinstance(p.dist.args[0].value, float)
    assert isinstance(loop, For) and loop.var == "i"
    assert strip(loop.start) == strip(Num(0)) and strip(loop.stop) == strip(Name("n"))
    (flip,) = loop.body
    assert strip(flip) == strip(Sample(Index(Name("flips"), [Name("i")]), Call("bernoulli", [Name("p")])))
    assert strip(ret) == strip(Return(Name("p")))
    # spans point at the text, end-exclusive, comments excluded
    assert decl.span == Span("coin.ppl", 2, 1, 6, 13)
    assert text_at(COIN, decl.args[1].span) == "flips: int[n]"
    assert text_at(COIN, decl.args[1].type.span) == "int[n]"
    assert text_at(COIN, p.span) == "p ~ beta(1.0, 1.0)"
    assert text_at(COIN, p.dist.func_span) == "beta"
    assert text_at(COIN, loop.span) == "for i in range(n):\n        flips[i] ~ bernoulli(p)"
    assert text_at(COIN, loop.start.span) == "range(n)"  # the implicit start points at the range call
    assert text_at(COIN, flip.target.span) == "flips[i]"
    assert text_at(COIN, ret.span) == "return p"


def test_linear_regression() -> None:
    (decl,) = parse_program(LINREG).decls
    assert strip(decl.args[2].type) == strip(TypeExpr("matrix", [Name("N"), Name("K")]))
    assert strip(parse_type("matrix", "t.ppl", 1, 1)) == strip(TypeExpr("matrix"))  # sizes from data
    beta = decl.body[1]
    assert strip(beta.dist.kwargs) == strip([Keyword("size", Name("K"))])
    assert text_at(LINREG, beta.dist.kwargs[0].span) == "size=K"
    mu = decl.body[3]
    assert strip(mu) == strip(Assign(Name("mu"), BinOp("+", Name("alpha"), BinOp("@", Name("X"), Name("beta")))))


def test_eight_schools_blank_lines_and_comments() -> None:
    (decl,) = parse_program(EIGHT_SCHOOLS).decls
    assert [type(s).__name__ for s in decl.body] == ["Sample", "Sample", "For"]
    raw, theta, y = decl.body[2].body
    assert isinstance(raw, Sample) and isinstance(theta, Assign) and isinstance(y, Sample)
    assert strip(theta.value) == strip(BinOp("+", Name("mu"), BinOp("*", Name("tau"),
                                                                     Index(Name("theta_raw"), [Name("j")]))))


def test_mixture_via_and_nested_index() -> None:
    (decl,) = parse_program(MIXTURE).decls
    z, x = decl.body[2].body
    assert z.via == "enum" and text_at(MIXTURE, z.span) == "z[n] ~ categorical(w) via enum"
    assert x.via is None
    assert strip(x.dist.args[0]) == strip(Index(Name("mu"), [Index(Name("z"), [Name("n")])]))


def test_hmm_range_slices_and_elif_desugaring() -> None:
    (decl,) = parse_program(HMM).decls
    loop = decl.body[2]
    assert strip([loop.start, loop.stop]) == strip([Num(1), Name("T")])
    trans, branch = loop.body
    assert strip(trans.dist.args[0]) == strip(
        Index(Name("A"), [Index(Name("z"), [BinOp("-", Name("t"), Num(1))]), Slice(None, None)]))
    assert isinstance(branch, If) and len(branch.then) == 1
    (inner,) = branch.orelse  # elif becomes an If nested in orelse
    assert isinstance(inner, If)
    assert strip(inner.cond) == strip(Compare("==", Index(Name("z"), [Name("t")]), Num(1)))
    assert strip(inner.orelse[0].dist.args[0]) == strip(UnaryOp("-", Num(3.0)))
    assert text_at(HMM, inner.span).startswith("elif z[t] == 1:")
    assert inner.span.end_line == branch.span.end_line == 11 and branch.span.line == 6


def test_guide_params() -> None:
    (decl,) = parse_program(GUIDE).decls
    assert decl.kind == "guide"
    a, b, loc, p = decl.body
    assert strip(b) == strip(Param("b", TypeExpr("positive"), Num(1.0)))
    assert strip(a) == strip(Param("a", TypeExpr("positive"), Num(1.0)))
    assert strip(loc) == strip(Param("loc", None, Num(0.0)))
    assert text_at(GUIDE, a.span) == "param a: positive = 1.0"
    assert text_at(GUIDE, a.constraint.span) == "positive"
    assert isinstance(p, Sample)


def test_objective_untyped_args_and_factor() -> None:
    (decl,) = parse_program(OBJECTIVE).decls
    assert decl.kind == "objective"
    assert [(a.name, a.type) for a in decl.args[:2]] == [("p", None), ("q", None)]
    factor = decl.body[0]
    assert strip(factor) == strip(Factor(BinOp("*", UnaryOp("-", Num(0.5)), BinOp("**", Name("k"), Num(2)))))
    assert text_at(OBJECTIVE, factor.span) == "factor(-0.5 * k ** 2)"


def test_several_declarations_and_empty_files() -> None:
    prog = parse_program(COIN + "\n\n" + GUIDE + OBJECTIVE)
    assert [d.kind for d in prog.decls] == ["model", "guide", "objective"]
    assert parse_program("").decls == []
    assert parse_program("# only a comment\n\n   \n").decls == []


@pytest.mark.parametrize("source", PROGRAMS)
def test_every_span_names_its_text(source: str) -> None:
    prog = parse_program(source)
    for node in walk(prog.decls):
        span = node.span
        assert (span.line, span.col) <= (span.end_line, span.end_col)
        text = text_at(source, span)
        if isinstance(node, Name):
            assert text == node.id
        elif isinstance(node, Num):  # a loop's implicit start 0 points at its range(...) call
            assert text.startswith("range(") or float(text) == node.value
        elif isinstance(node, Call):
            assert text.startswith(node.func + "(") and text.endswith(")")
            assert text_at(source, node.func_span) == node.func


def test_no_trailing_newline_and_crlf() -> None:
    assert strip(body("model m():\n    x = 1")) == strip(body("model m():\n    x = 1\n"))
    crlf = parse_program("model m():\r\n    x = 1\r\n    y = x\r\n")
    assert [s.target.id for s in crlf.decls[0].body] == ["x", "y"]


def test_inline_suite_pass_and_line_joining() -> None:
    (if_stmt, x) = body("model m():\n    if a: return 1\n    x = f(1,\n          # inside\n          2)\n    pass\n")
    assert strip(if_stmt.then) == strip([Return(Num(1))])
    assert strip(x.value) == strip(Call("f", [Num(1), Num(2)]))
    assert body("model m():\n    pass\n") == []
    assert strip(body("model m():\n    return\n")) == strip([Return(None)])
    assert strip(body("model m():\n    x = a + \\\n        b\n")[0].value) == strip(BinOp("+", Name("a"), Name("b")))


# ---------------------------------------------------------------- expressions


def expr(text: str) -> object:
    return strip(body(f"model m():\n    r = {text}\n")[0].value)


@pytest.mark.parametrize(("text", "tree"), [
    ("-x ** 2", UnaryOp("-", BinOp("**", Name("x"), Num(2)))),
    ("a ** b ** c", BinOp("**", Name("a"), BinOp("**", Name("b"), Name("c")))),
    ("2 ** -1", BinOp("**", Num(2), UnaryOp("-", Num(1)))),
    ("a - b - c", BinOp("-", BinOp("-", Name("a"), Name("b")), Name("c"))),
    ("a + b * c // d % e", BinOp("+", Name("a"), BinOp("%", BinOp("//", BinOp("*", Name("b"), Name("c")),
                                                                  Name("d")), Name("e")))),
    ("(a + b) * c", BinOp("*", BinOp("+", Name("a"), Name("b")), Name("c"))),
    ("+a / b", BinOp("/", UnaryOp("+", Name("a")), Name("b"))),
    ("not a == b", UnaryOp("not", Compare("==", Name("a"), Name("b")))),
    ("a or b and not c", BoolOp("or", Name("a"), BoolOp("and", Name("b"), UnaryOp("not", Name("c"))))),
    ("a or b or c", BoolOp("or", BoolOp("or", Name("a"), Name("b")), Name("c"))),
    ("a if c else b if d else e", IfExp(Name("c"), Name("a"), IfExp(Name("d"), Name("b"), Name("e")))),
    ("x <= 1 + y", Compare("<=", Name("x"), BinOp("+", Num(1), Name("y")))),
    ("x != y", Compare("!=", Name("x"), Name("y"))),
    ("1e-3", Num(1e-3)), (".5", Num(0.5)), ("2.", Num(2.0)), ("7", Num(7)), ("3E2", Num(300.0)),
    ("true", Bool(True)), ("False", Bool(False)),
    ("[a, 1, [b]]", VectorLit([Name("a"), Num(1), VectorLit([Name("b")])])),
    ("x.shape[0]", Index(Attribute(Name("x"), "shape"), [Num(0)])),
    ("jnp.exp(x)", Call("jnp.exp", [Name("x")])),
    ("f(a, b, k=v)", Call("f", [Name("a"), Name("b")], [Keyword("k", Name("v"))])),
    ("f()", Call("f", [])),
    ("x[i, j]", Index(Name("x"), [Name("i"), Name("j")])),
    ("x[1:n]", Index(Name("x"), [Slice(Num(1), Name("n"))])),
    ("x[:k]", Index(Name("x"), [Slice(None, Name("k"))])),
    ("x[i, :]", Index(Name("x"), [Name("i"), Slice(None, None)])),
    ("x[2:]", Index(Name("x"), [Slice(Num(2), None)])),
])
def test_expressions(text: str, tree: object) -> None:
    assert expr(text) == strip(tree)


def test_num_keeps_int_and_float_apart() -> None:
    assert type(expr("3").value) is int
    assert type(expr("3.0").value) is float


def test_parse_type_is_relocated() -> None:
    t = parse_type("matrix[N, K]", "m.py", 10, 21)
    assert strip(t) == strip(TypeExpr("matrix", [Name("N"), Name("K")]))
    assert t.span == Span("m.py", 10, 21, 10, 33)
    assert t.dims[1].span == Span("m.py", 10, 31, 10, 32)
    with pytest.raises(PplError) as err:
        parse_type("vector[", "m.py", 4, 9)
    assert err.value.span.file == "m.py" and err.value.span.line == 4 and err.value.span.col >= 9


# ---------------------------------------------------------------- errors

ERRORS = [
    # (source, line, col, message, expected or None, hint or None)
    ("model m()\n    x = 1\n", 1, 10, "unexpected end of line", "':'", "add ':' at the end of the `model` header"),
    ("model m():\n    for i in range(n)\n        x = 1\n", 2, 22, "unexpected end of line", "':'",
     "`for` header"),
    ("model m():\n    if x > 1\n        y = 1\n", 2, 13, "unexpected end of line", "':'", "`if` header"),
    ("model m():\n    if x = 1:\n        y = 2\n", 2, 10, "unexpected '='", "':'", "use '=='"),
    ("model m():\nx = 1\n", 2, 1, "expected an indented block", "an indented block", "`model` on line 1"),
    ("x = 1\n", 1, 1, "statements must be inside a model, guide or objective", "'model'", None),
    ("model m():\n    x = 1\ny ~ normal(0, 1)\n", 3, 1, "statements must be inside a model", None, None),
    ("model m():\n    x = 1\n        y = 2\n", 3, 9, "unexpected indentation", None, "same amount"),
    ("model m():\n    if a:\n        x = 1\n      y = 2\n", 4, 7,
     "unindent does not match any outer indentation level", None, None),
    ("model m():\n    if a:\n\tx = 1\n", 3, 2, "inconsistent use of tabs and spaces", None, "spaces only"),
    ("model m():\n    x = a < b < c\n", 2, 9, "chained comparisons are not supported", None, "and"),
    ("model m():\n    f(x) = 3\n", 2, 5, "cannot assign to a function call", None, "indexed name"),
    ("model m():\n    x[1:2] = 3\n", 2, 7, "cannot assign to a slice", None, None),
    ("model m():\n    a + b ~ normal(0, 1)\n", 2, 5, "cannot assign to an operator expression", None, None),
    ("model m():\n    x ~ y\n", 2, 9, "the right side of `~` must be a distribution call", None, None),
    ("model m():\n    x = f(a,\n    y = 2\n", 3, 10, "unexpected end of file", "')'", "never closed"),
    ("model m():\n    x = f(a))\n", 2, 13, "unexpected ')'", "end of line", "no matching '('"),
    ("model m():\n    x = 'a'\n", 2, 9, "unexpected character \"'\"", "an expression", "no strings"),
    ("model m():\n    model = 3\n", 2, 5, "unexpected keyword 'model'", "a statement", "reserved word"),
    ("model m():\n    x = 1 2\n", 2, 11, "unexpected number 2", "end of line", None),
    ("model m():\n    x = \n", 2, 8, "unexpected end of line", "an expression", None),
    ("model m():\n    for i in xs:\n        pass\n", 2, 14, "for loops must iterate over range", None, None),
    ("model m(x: vectr[N]):\n    pass\n", 1, 12, "unknown type 'vectr'", None, "did you mean `vector`?"),
    ("model m(x: int[N]]):\n    pass\n", 1, 18, "unexpected ']'", "')' or ','", "no matching '['"),
    ("model m():\n    while x:\n        pass\n", 2, 11, "unexpected name 'x'", None, "no `while`"),
    ("  model m():\n    pass\n", 1, 3, "unexpected indentation", None, None),
    ("model m():\n    x = f(k=1, 2)\n", 2, 16, "positional argument follows keyword argument", None, None),
    ("model m():\n    x = (a + b)(1)\n", 2, 10, "only named functions can be called", None, None),
    ("model m():\n", 1, 11, "expected an indented block", None, None),
    ("model m():\n    x = 1 ; y = 2\n", 2, 11, "unexpected character ';'", None, "own line"),
]


@pytest.mark.parametrize(("source", "line", "col", "message", "expected", "hint"), ERRORS)
def test_syntax_errors_are_located(source: str, line: int, col: int, message: str, expected: str | None,
                                   hint: str | None) -> None:
    with pytest.raises(PplError) as err:
        parse_program(source, "bad.ppl")
    (diag,) = err.value.diagnostics
    assert (diag.span.file, diag.span.line, diag.span.col) == ("bad.ppl", line, col), diag.render()
    assert diag.message.startswith(message), diag.render()
    if expected is not None:
        assert expected in (diag.expected or ""), diag.render()
    if hint is not None:
        assert hint in (diag.hint or ""), diag.render()
    assert diag.source == source
    assert err.value.render().startswith(f"bad.ppl:{line}:{col}: error: ")
