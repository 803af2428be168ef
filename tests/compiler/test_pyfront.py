"""Python front-end: decorated functions become the same AST as model files, located in the .py file."""

from __future__ import annotations

import importlib.util
import itertools
import math
import textwrap
import types
from pathlib import Path

import pytest
from pplang.compiler.diagnostics import PplError
from pplang.compiler.frontend.parser import parse_program
from pplang.compiler.frontend.pyfront import parse_function
from pplang.compiler.frontend.syntax import Assign, BinOp, Index, Name, Num, Param, Sample, Span, TypeExpr
from test_parser import strip, text_at

PRELUDE = """\
from __future__ import annotations
import math
import types
pp = types.SimpleNamespace(model=lambda f: f, guide=lambda f: f, objective=lambda f: f)
"""

_counter = itertools.count()


def load(tmp_path: Path, code: str) -> tuple[types.ModuleType, str]:
    """Write `code` (after a small prelude) to a fresh module file and import it."""
    source = PRELUDE + textwrap.dedent(code)
    name = f"pyfront_case_{next(_counter)}"
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, source


def position(source: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first `needle` in `source` after the prelude."""
    offset = source.index(needle, len(PRELUDE) if source.startswith(PRELUDE) else 0)
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


# ---------------------------------------------------------------- same programs, both front-ends

PAIRS = {
    "coin": ("""\
model coin(n: int, flips: int[n]):
    p ~ beta(1.0, 1.0)
    for i in range(n):
        flips[i] ~ bernoulli(p)
    return p
""", """\
@pp.model
def coin(n: int, flips: "int[n]"):
    p = pp.sample(pp.beta(1.0, 1.0))
    for i in range(n):
        flips[i] = sample(bernoulli(p))
    return p
"""),
    "linreg": ("""\
model linreg(N: int, K: int, X: matrix[N, K], y: vector[N]):
    alpha ~ normal(0.0, 10.0)
    beta ~ normal(0.0, 1.0, size=K)
    sigma ~ half_normal(1.0)
    mu = alpha + X @ beta
    y ~ normal(mu, sigma)
""", """\
@pp.model
def linreg(N: int, K: int, X: matrix[N, K], y: "vector[N]"):
    alpha = sample(dist.normal(0.0, 10.0))
    beta = sample(normal(0.0, 1.0, size=K))
    sigma = sample(half_normal(1.0))
    mu = alpha + X @ beta
    y = sample(normal(mu, sigma))
"""),
    "eight_schools": ("""\
model eight_schools(J: int, y: vector[J], sigma: vector[J]):
    mu ~ normal(0.0, 5.0)
    tau ~ half_cauchy(5.0)
    for j in range(J):
        theta_raw[j] ~ normal(0.0, 1.0)
        theta = mu + tau * theta_raw[j]
        y[j] ~ normal(theta, sigma[j])
""", """\
@pp.model
def eight_schools(J: int, y: "vector[J]", sigma: "vector[J]"):
    \"\"\"The classic hierarchical model (the docstring is ignored).\"\"\"
    mu = sample(normal(0.0, 5.0))
    tau = sample(half_cauchy(5.0))
    for j in range(J):
        # non-centred
        theta_raw[j] = sample(normal(0.0, 1.0))
        theta = mu + tau * theta_raw[j]
        y[j] = sample(normal(theta, sigma[j]))
"""),
    "mixture": ("""\
model mixture(N: int, K: int, x: vector[N]):
    w ~ dirichlet(ones(K))
    mu ~ normal(zeros(K), 10.0)
    for n in range(N):
        z[n] ~ categorical(w) via enum
        x[n] ~ normal(mu[z[n]], 1.0)
""", """\
@pp.model
def mixture(N: int, K: int, x: "vector[N]"):
    w = sample(dirichlet(np.ones(K)))
    mu = sample(normal(jnp.zeros(K), 10.0))
    for n in range(N):
        z[n] = sample(categorical(w), via="enum")
        x[n] = sample(normal(mu[z[n]], 1.0))
"""),
    "hmm": ("""\
model hmm(T: int, K: int, y: vector[T], A: matrix[K, K]):
    z[0] ~ categorical(ones(K) / K) via enum
    for t in range(1, T):
        z[t] ~ categorical(A[z[t - 1], :]) via enum
        if z[t] == 0 and true:
            y[t] ~ normal(0.0, 1.0)
        elif z[t] == 1 or not false:
            y[t] ~ normal(3.0 if t > 2 else 2.0, 1.0)
        else:
            y[t] ~ normal(-3.0, 2.0)
""", """\
@pp.model
def hmm(T: int, K: int, y: "vector[T]", A: "matrix[K, K]"):
    z[0] = sample(categorical(ones(K) / K), via="enum")
    for t in range(1, T):
        z[t] = sample(categorical(A[z[t - 1], :]), via="enum")
        if z[t] == 0 and True:
            y[t] = sample(normal(0.0, 1.0))
        elif z[t] == 1 or not False:
            y[t] = sample(normal(3.0 if t > 2 else 2.0, 1.0))
        else:
            y[t] = sample(normal(-3.0, 2.0))
"""),
    "guide": ("""\
guide q(n: int):
    param a: positive = 1.0
    param b: simplex[n] = x[1:n]
    param loc = 0.0
    p ~ beta(a, b)
    pass
""", """\
@pp.guide
def q(n: int):
    a = param(1.0, constraint="positive")
    b = pp.param(x[1:n], "simplex[n]")
    loc = param(0.0)
    p = sample(beta(a, b))
    pass
"""),
    "objective": ("""\
objective elbo(p, q, k: int):
    factor(-0.5 * k ** 2)
    v = [math.exp(k), net.encoder(k).shape]
    return v
""", """\
@pp.objective
def elbo(p, q, k: int):
    factor(-0.5 * k ** 2)
    v = [exp(k), net.encoder(k).shape]
    return v
"""),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_both_front_ends_agree(tmp_path: Path, name: str) -> None:
    ppl, py = PAIRS[name]
    (expected,) = parse_program(ppl).decls
    module, _ = load(tmp_path, py)
    decl, _, _, _ = parse_function(getattr(module, expected.name), expected.kind)
    if name == "objective":  # model files keep dotted names verbatim; Python drops known module prefixes
        expected.body[1].value.items[0].func = "exp"
    assert strip(decl) == strip(expected)


# ---------------------------------------------------------------- spans in the user's file


def test_spans_point_into_the_python_file(tmp_path: Path) -> None:
    module, source = load(tmp_path, """\
        class Holder:
            @staticmethod
            @pp.model
            def coin(n: int, x: "vector[n]"):
                p = pp.sample(pp.beta(1.0, 1.0))
                for i in range(n):
                    flips[i] = sample(bernoulli(p), via="enum")
                return p
    """)
    decl, file, text, _ = parse_function(module.Holder.coin, "model")
    assert file == module.__file__ and text == source
    assert (decl.span.line, decl.span.col) == position(source, "def coin")
    assert text_at(source, decl.args[1].span) == 'x: "vector[n]"'
    assert text_at(source, decl.args[1].type.span) == "vector[n]"  # inside the string
    assert text_at(source, decl.args[1].type.dims[0].span) == "n"
    p, loop, ret = decl.body
    assert text_at(source, p.span) == "p = pp.sample(pp.beta(1.0, 1.0))"
    assert text_at(source, p.dist.span) == "pp.beta(1.0, 1.0)"
    assert text_at(source, p.dist.func_span) == "pp.beta" and p.dist.func == "beta"
    assert text_at(source, loop.start.span) == "range(n)"
    assert text_at(source, loop.body[0].target.span) == "flips[i]"
    assert loop.body[0].via == "enum"
    assert text_at(source, ret.span) == "return p"


def test_non_ascii_columns_are_characters(tmp_path: Path) -> None:
    module, source = load(tmp_path, """\
        @pp.model
        def m(x):
            ψ = sample(normal(0.0, 1.0)); y = ψ + zé
    """)
    decl, _, _, _ = parse_function(module.m, "model")
    value = decl.body[1].value
    assert (value.right.span.line, value.right.span.col) == position(source, "zé")
    assert text_at(source, value.right.span) == "zé"


def _identity(f: object) -> object:
    return f


SIGMA = 0.5
scale = 1.0


def _make_closure() -> object:
    scale = 2.0

    @_identity
    def inner(x: float, flag: bool):
        y = pp.sample(pp.normal(math.exp(x) * scale + abs(x), SIGMA))
        z = y + unknown_name  # noqa: F821 - deliberately unresolvable
        return z

    return inner


pp = types.SimpleNamespace()


def test_env_closure_wins_and_spans_in_this_file() -> None:
    fn = _make_closure()
    decl, file, source, env = parse_function(fn, "model")
    assert file == __file__
    assert env == {"pp": pp, "math": math, "scale": 2.0, "SIGMA": SIGMA}  # no builtins, locals or unknowns
    assert strip(decl.args[0].type) == strip(TypeExpr("real"))
    assert strip(decl.args[1].type) == strip(TypeExpr("bool"))
    y = decl.body[0]
    assert isinstance(y, Sample) and y.dist.func == "normal"
    assert y.dist.args[0].left.left.func == "exp"
    assert (y.span.line, y.span.col) == position(source, "y = pp.sample(pp.normal(math.exp")
    assert text_at(source, decl.span).startswith("def inner(x: float, flag: bool):")


def test_augmented_assignment_desugars(tmp_path: Path) -> None:
    module, _ = load(tmp_path, """\
        @pp.model
        def m(x):
            mu = 0.0
            mu += x
            v[i] *= 2
    """)
    decl, _, _, _ = parse_function(module.m, "model")
    assert strip(decl.body[1]) == strip(Assign(Name("mu"), BinOp("+", Name("mu"), Name("x"))))
    target = Index(Name("v"), [Name("i")])
    assert strip(decl.body[2]) == strip(Assign(target, BinOp("*", target, Num(2))))


def test_param_forms(tmp_path: Path) -> None:
    module, _ = load(tmp_path, """\
        @pp.guide
        def g(K: int):
            a = param(1.0, constraint="positive")
            b = param(init=0.5)
            c = pplang.param(1.0, "unit")
    """)
    decl, _, _, _ = parse_function(module.g, "guide")
    assert strip(decl.body) == strip([Param("a", TypeExpr("positive"), Num(1.0)), Param("b", None, Num(0.5)),
                                      Param("c", TypeExpr("unit"), Num(1.0))])


# ---------------------------------------------------------------- errors

ERRORS = [
    # (body lines of `def m(x):`, needle where the error points, message, hint or None)
    ("while x:\n    pass", "while", "`while` loops are not supported", "for i in range(n)"),
    ("y = lambda t: t", "lambda", "lambdas are not supported", None),
    ("y = [t for t in x]", "[t for", "comprehensions are not supported", "for loop"),
    ("def h():\n    pass", "def h", "nested functions are not supported", "module level"),
    ("import os", "import", "imports are not supported", None),
    ("y = 1 + sample(normal(0, 1))", "sample(normal", "sample(...) can only be the whole right side", None),
    ("sample(normal(0, 1))", "sample(normal", "the result of sample(...) must be assigned", None),
    ("y = sample(d)", "sample(d)", "sample(...) takes one distribution call", None),
    ("y = x < 1 < 2", "x < 1", "chained comparisons are not supported", "and"),
    ("a, b = x", "a, b", "cannot assign to several names at once", None),
    ('y = "text"', '"text"', "strings cannot be used", None),
    ("y = f(*x)", "*x", "starred arguments are not supported", None),
    ("y = f(**x)", "**x", "`**` arguments are not supported", None),
    ("for i in x:\n    pass", "x:\n", "for loops must iterate over range", None),
    ("for i in range(0, 9, 2):\n    pass", "range(0, 9, 2)", "for loops must iterate over range", None),
    ("y = x is None", "x is None", "`in` and `is` comparisons are not supported", None),
    ("y = x & 1", "x & 1", "bitwise operators are not supported", None),
    ("y = x[::2]", "2]", "slices with a step are not supported", None),
    ("f(x)", "f(x)", "expression statements are not supported", "factor"),
    ("y = factor(x)", "factor(x)", "factor(...) is a statement", None),
    ("y.a = 1", "y.a", "cannot assign to an attribute", None),
    ("y = param(1.0, constraint='postive')", "postive", "unknown type 'postive'", "positive"),
    ("y[0] = param(1.0)", "y[0]", "a param(...) must be assigned to a plain name", None),
    ("with x:\n    pass", "with", "`with` blocks are not supported", None),
    ("y: float = 1.0", "y: float", "annotated assignments are not supported", "drop the annotation"),
    ("y = {1: 2}", "{1", "dictionaries are not supported", None),
    ("y = x.f(1)(2)", "x.f(1)(2)", "only named functions can be called", None),
]


@pytest.mark.parametrize(("body", "needle", "message", "hint"), ERRORS)
def test_unsupported_python_is_located(tmp_path: Path, body: str, needle: str, message: str,
                                       hint: str | None) -> None:
    module, source = load(tmp_path, "@pp.model\ndef m(x):\n" + textwrap.indent(body, "    ") + "\n")
    with pytest.raises(PplError) as err:
        parse_function(module.m, "model")
    (diag,) = err.value.diagnostics
    assert (diag.span.file, diag.span.line, diag.span.col) == (module.__file__, *position(source, needle)), \
        diag.render()
    assert diag.message.startswith(message), diag.render()
    if hint is not None:
        assert hint in (diag.hint or ""), diag.render()
    assert diag.source == source


@pytest.mark.parametrize(("header", "needle", "message"), [
    ("def m(n=3):", "3", "default argument values are not supported"),
    ("def m(*xs):", "xs", "only plain positional arguments"),
    ("def m(x: list):", "list", "unsupported type annotation"),
    ('def m(x: "vectr[N]"):', "vectr", "unknown type 'vectr'"),
    ('def m(x: "vector[N"):', '"):', "unexpected end of file"),
    ("def m(x: vectr[N]):", "vectr[N]", "unknown type 'vectr'"),
])
def test_bad_signatures(tmp_path: Path, header: str, needle: str, message: str) -> None:
    module, source = load(tmp_path, f"@pp.model\n{header}\n    pass\n")
    with pytest.raises(PplError) as err:
        parse_function(module.m, "model")
    span = err.value.span
    assert (span.line, span.col) == position(source, needle), err.value.render()
    assert err.value.diagnostics[0].message.startswith(message)


def test_not_a_def(tmp_path: Path) -> None:
    module, _ = load(tmp_path, "f = pp.model(lambda x: x)\n\n\nasync def g(x):\n    return x\n")
    for fn in (module.f, module.g):
        with pytest.raises(PplError, match="needs a function defined with `def`"):
            parse_function(fn, "model")
    with pytest.raises(PplError, match="needs a function defined with `def`"):
        parse_function(len, "model")
    with pytest.raises(ValueError, match="kind"):
        parse_function(_make_closure(), "program")


def test_span_type_is_real_file_position(tmp_path: Path) -> None:
    module, source = load(tmp_path, "@pp.model\ndef m(x):\n    y = sample(normal(x, 1.0))\n")
    decl, _, _, _ = parse_function(module.m, "model")
    line, col = position(source, "normal(x")
    assert decl.body[0].dist.span == Span(module.__file__, line, col, line, col + len("normal(x, 1.0)"))


def test_nested_function_with_outdented_string_and_annotation_names(tmp_path: Path) -> None:
    module, source = load(tmp_path, '''\
N = 4


def build():
    @pp.model
    def m(x: "vector[N]", k: int):
        """A docstring whose second line
starts in column 1."""
        y = sample(normal(x, 1.0))

    return m
''')
    decl, _, _, env = parse_function(module.build(), "model")
    assert env == {"N": 4}
    assert (decl.body[0].span.line, decl.body[0].span.col) == position(source, "y = sample")
