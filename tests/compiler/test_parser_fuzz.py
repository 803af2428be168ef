"""Property tests for both front-ends: generated programs round-trip, mutated ones fail cleanly."""

from __future__ import annotations

import importlib.util
import itertools
import re
import tempfile
from functools import partial
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pplang.compiler.diagnostics import PplError
from pplang.compiler.frontend.parser import parse_program
from pplang.compiler.frontend.pyfront import parse_function
from pplang.compiler.frontend.syntax import (
    Arg,
    Assign,
    Attribute,
    BinOp,
    Bool,
    BoolOp,
    Call,
    Compare,
    Decl,
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
    TypeExpr,
    UnaryOp,
    VectorLit,
)
from test_parser import PROGRAMS, strip

NAMES = ["a", "b", "x", "mu", "sigma", "n", "theta_1", "ψ"]
FUNCS = ["f", "normal", "net.encoder"]

# ---------------------------------------------------------------- a grammar-based program generator

names = st.sampled_from(NAMES).map(Name)
leaves = st.one_of(
    names,
    st.integers(0, 10**6).map(Num),
    st.sampled_from([0.5, 1.0, 2.25, 1e-3, 3e20, 0.1]).map(Num),
    st.booleans().map(Bool),
)


def _zipped(node: type, unique_names: st.SearchStrategy, values: st.SearchStrategy) -> st.SearchStrategy:
    """Nodes `node(name, value)` with distinct names (without a filter, which hypothesis would retry)."""
    return st.builds(lambda ns, vs: [node(n, v) for n, v in zip(ns, vs, strict=False)], unique_names,
                     st.lists(values, min_size=3, max_size=3))


def _compound(inner: st.SearchStrategy) -> st.SearchStrategy:
    index = st.one_of(inner, st.builds(Slice, st.none() | inner, st.none() | inner))
    return st.one_of(
        st.builds(BinOp, st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "@"]), inner, inner),
        st.builds(UnaryOp, st.sampled_from(["-", "+", "not"]), inner),
        st.builds(Compare, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), inner, inner),
        st.builds(BoolOp, st.sampled_from(["and", "or"]), inner, inner),
        st.builds(IfExp, inner, inner, inner),
        st.builds(Call, st.sampled_from(FUNCS), st.lists(inner, max_size=3),
                  _zipped(Keyword, st.lists(st.sampled_from(["k", "size"]), unique=True), inner)),
        st.builds(Index, names, st.lists(index, min_size=1, max_size=3)),
        st.builds(VectorLit, st.lists(inner, min_size=1, max_size=3)),
        st.builds(Attribute, names, st.just("shape")),
    )


exprs = st.recursive(leaves, _compound, max_leaves=12)
calls = st.builds(Call, st.sampled_from(FUNCS), st.lists(exprs, max_size=2))
targets = names | st.builds(Index, names, st.lists(exprs, min_size=1, max_size=2))
types_ = st.one_of(
    st.sampled_from(["int", "real", "bool", "positive", "unit"]).map(TypeExpr),
    st.builds(TypeExpr, st.sampled_from(["vector", "simplex", "ordered"]), st.lists(names, min_size=1, max_size=1)),
    st.builds(TypeExpr, st.just("matrix"), st.lists(names, min_size=2, max_size=2)),
)
simple_stmts = st.one_of(
    st.builds(Assign, targets, exprs),
    st.builds(Sample, targets, calls, st.none() | st.just("enum")),
    st.builds(Param, st.sampled_from(NAMES), st.none() | types_, exprs),
    st.builds(Factor, exprs),
    st.builds(Return, st.none() | exprs),
)


def _blocks(inner: st.SearchStrategy) -> st.SearchStrategy:
    body = st.lists(inner, max_size=3)
    return st.one_of(
        st.builds(For, st.sampled_from(["i", "j"]), st.just(Num(0)) | exprs, exprs, body),
        st.builds(If, exprs, body, body),
    )


stmts = st.recursive(simple_stmts, _blocks, max_leaves=8)
args = _zipped(Arg, st.lists(st.sampled_from(NAMES), unique=True, max_size=3), st.none() | types_)
decls = st.builds(Decl, st.sampled_from(["model", "guide", "objective"]), st.sampled_from(["m", "guide_1"]),
                  args, st.lists(stmts, max_size=5))


# ---------------------------------------------------------------- rendering (fully parenthesised)


def render(e: object, py: bool = False) -> str:
    """Source text for an expression; every compound sub-expression is parenthesised."""
    r = partial(render, py=py)
    if isinstance(e, Name):
        return e.id
    if isinstance(e, Num):
        return repr(e.value)
    if isinstance(e, Bool):
        return str(e.value) if py else str(e.value).lower()
    if isinstance(e, BinOp | Compare | BoolOp):
        return f"({r(e.left)} {e.op} {r(e.right)})"
    if isinstance(e, UnaryOp):
        return f"({e.op} {r(e.operand)})"
    if isinstance(e, IfExp):
        return f"({r(e.then)} if {r(e.cond)} else {r(e.orelse)})"
    if isinstance(e, Call):
        return f"{e.func}({', '.join([*map(r, e.args), *(f'{k.name}={r(k.value)}' for k in e.kwargs)])})"
    if isinstance(e, Index):
        return f"{r(e.value)}[{', '.join(map(r, e.indices))}]"
    if isinstance(e, Slice):
        return f"{'' if e.lo is None else r(e.lo)}:{'' if e.hi is None else r(e.hi)}"
    if isinstance(e, VectorLit):
        return f"[{', '.join(map(r, e.items))}]"
    assert isinstance(e, Attribute)
    return f"{r(e.value)}.{e.attr}"


def render_type(t: TypeExpr) -> str:
    return t.base + (f"[{', '.join(render(d) for d in t.dims)}]" if t.dims else "")


def render_stmt(s: object, depth: int, py: bool) -> list[str]:
    pad = "    " * depth
    r = partial(render, py=py)
    if isinstance(s, Assign):
        return [f"{pad}{r(s.target)} = {r(s.value)}"]
    if isinstance(s, Sample):
        via = "" if s.via is None else (f', via="{s.via}"' if py else f" via {s.via}")
        return [f"{pad}{r(s.target)} = sample({r(s.dist)}{via})" if py else f"{pad}{r(s.target)} ~ {r(s.dist)}{via}"]
    if isinstance(s, Param):
        if py:
            constraint = "" if s.constraint is None else f', "{render_type(s.constraint)}"'
            return [f"{pad}{s.name} = param({r(s.init)}{constraint})"]
        constraint = "" if s.constraint is None else f": {render_type(s.constraint)}"
        return [f"{pad}param {s.name}{constraint} = {r(s.init)}"]
    if isinstance(s, Factor):
        return [f"{pad}factor({r(s.value)})"]
    if isinstance(s, Return):
        return [f"{pad}return" + ("" if s.value is None else f" {r(s.value)}")]
    if isinstance(s, For):
        head = f"range({r(s.stop)})" if s.start == Num(0) else f"range({r(s.start)}, {r(s.stop)})"
        return [f"{pad}for {s.var} in {head}:", *render_body(s.body, depth + 1, py)]
    assert isinstance(s, If)
    lines = [f"{pad}if {r(s.cond)}:", *render_body(s.then, depth + 1, py)]
    orelse = s.orelse
    while len(orelse) == 1 and isinstance(orelse[0], If):  # an else holding only an if is written elif
        lines += [f"{pad}elif {r(orelse[0].cond)}:", *render_body(orelse[0].then, depth + 1, py)]
        orelse = orelse[0].orelse
    if orelse:
        lines += [f"{pad}else:", *render_body(orelse, depth + 1, py)]
    return lines


def render_body(body: list, depth: int, py: bool) -> list[str]:
    lines = [line for s in body for line in render_stmt(s, depth, py)]
    return lines or ["    " * depth + "pass"]


def render_decl(d: Decl, py: bool = False) -> str:
    if py:
        sig = ", ".join(a.name + ("" if a.type is None else f': "{render_type(a.type)}"') for a in d.args)
        return "\n".join([f"def {d.name}({sig}):", *render_body(d.body, 1, True)]) + "\n"
    sig = ", ".join(a.name + ("" if a.type is None else f": {render_type(a.type)}") for a in d.args)
    return "\n".join([f"{d.kind} {d.name}({sig}):", *render_body(d.body, 1, False)]) + "\n"


# ---------------------------------------------------------------- (a) well-formed programs parse


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(decls, min_size=1, max_size=2))
def test_generated_programs_round_trip(program: list[Decl]) -> None:
    source = "\n".join(render_decl(d) for d in program)
    parsed = parse_program(source, "gen.ppl")
    assert strip(parsed.decls) == strip(program), source


_modules = itertools.count()
_tmp = Path(tempfile.mkdtemp(prefix="pplang_fuzz_"))


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(decls)
def test_generated_python_matches_model_file(decl: Decl) -> None:
    name = f"fuzz_case_{next(_modules)}"
    path = _tmp / f"{name}.py"
    path.write_text(render_decl(decl, py=True))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parsed, file, _, _ = parse_function(getattr(module, decl.name), decl.kind)
    assert file == str(path)
    assert strip(parsed) == strip(decl), path.read_text()


# ---------------------------------------------------------------- (b) mutated programs fail cleanly

SNIPPETS = ["(", ")", "[", "]", ":", ",", "=", "==", "~", "\n", "    ", "\t", "#", "'", '"', "via", "if",
            "else", "elif", " model ", "1.5e", ".", "**", "\r", "\f", "x", "é", "\\", "\\\n", "pass", "@",
            ";", "<", "< 3 <", "for", "in", "return", "param", "factor(", "\n  ", "\n\t", "0" * 5000, "\x00"]
TOKEN = re.compile(r"\w+|\S")


def mutate(source: str, data: st.DataObject) -> str:
    """Apply one random edit: characters, tokens, lines or indentation."""
    kind = data.draw(st.sampled_from(["delete", "insert", "replace", "token", "swap", "dup", "indent", "dedent"]))
    n = len(source)
    if kind in ("delete", "insert", "replace"):
        i = data.draw(st.integers(0, n))
        text = data.draw(st.sampled_from(SNIPPETS) | st.text(max_size=3))
        if kind == "delete":
            return source[:i] + source[i + data.draw(st.integers(1, 12)):]
        if kind == "insert":
            return source[:i] + text + source[i:]
        return source[:i] + text + source[i + 1:]
    if kind == "token":
        tokens = list(TOKEN.finditer(source))
        if not tokens:
            return source
        m = tokens[data.draw(st.integers(0, len(tokens) - 1))]
        other = data.draw(st.sampled_from(tokens)).group() if data.draw(st.booleans()) else ""
        return source[: m.start()] + other + source[m.end():]
    lines = source.split("\n")
    i = data.draw(st.integers(0, len(lines) - 1))
    j = data.draw(st.integers(0, len(lines) - 1))
    if kind == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "dup":
        lines.insert(i, lines[j])
    elif kind == "indent":
        lines[i] = data.draw(st.sampled_from([" ", "  ", "    ", "\t", "        "])) + lines[i]
    else:
        lines[i] = lines[i][data.draw(st.integers(1, 4)):] if lines[i].startswith(" ") else lines[i].lstrip()
    return "\n".join(lines)


def check_parses_or_fails_cleanly(source: str) -> None:
    try:
        program = parse_program(source, "fuzz.ppl")
    except PplError as e:
        span = e.span
        assert span.file == "fuzz.ppl"
        assert 1 <= span.line <= source.count("\n") + 1, (span, source)
        assert span.col >= 1 and (span.end_line, span.end_col) >= (span.line, span.col)
        assert e.render()
    else:
        assert isinstance(program, Program)


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(st.sampled_from(PROGRAMS), st.data())
def test_mutated_programs_never_crash(source: str, data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(1, 3))):
        source = mutate(source, data)
    check_parses_or_fails_cleanly(source)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(decls, st.data())
def test_mutated_generated_programs_never_crash(decl: Decl, data: st.DataObject) -> None:
    check_parses_or_fails_cleanly(mutate(render_decl(decl), data))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from([*SNIPPETS[:-2], "model m():", "a", "1", " "]), max_size=40).map("".join))
def test_arbitrary_token_soup_never_crashes(source: str) -> None:
    check_parses_or_fails_cleanly(source)
