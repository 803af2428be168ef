"""Python front-end: a decorated Python function -> the same surface AST as a model file.

The function is never run: its source is read back with `inspect`, parsed with `ast` and translated
node by node, and every span points at the user's own Python file.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import linecache
from collections.abc import Callable
from typing import NoReturn

from pplang.compiler.diagnostics import PplError, error
from pplang.compiler.frontend.parser import TYPE_BASES, check_target, parse_type, validate_type
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
    Expr,
    Factor,
    For,
    If,
    IfExp,
    Index,
    Keyword,
    Name,
    Num,
    Param,
    Return,
    Sample,
    Slice,
    Span,
    Stmt,
    TypeExpr,
    UnaryOp,
    VectorLit,
)

KINDS = ("model", "guide", "objective")

# Module prefixes dropped from calls, so `jnp.exp(x)` and `pp.normal(0, 1)` name `exp` and `normal`.
DROPPED_PREFIXES = frozenset({"jnp", "np", "numpy", "math", "pp", "pplang", "dist", "jax.numpy", "jax.nn", "nn"})
# Where the statement forms `sample`, `param` and `factor` may be imported from.
_SYNTAX_PREFIXES = frozenset({"pp", "pplang"})

_BINOPS: dict[type, str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
                            ast.Mod: "%", ast.Pow: "**", ast.MatMult: "@"}
_COMPARES: dict[type, str] = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==",
                              ast.NotEq: "!="}
_UNARY: dict[type, str] = {ast.USub: "-", ast.UAdd: "+", ast.Not: "not"}
_ANNOTATION_BASES = {"int": "int", "float": "real", "bool": "bool"}

_STMT_HINTS: dict[type, str] = {
    ast.While: "pplang has no `while`; loop with `for i in range(n):`",
    ast.With: "pplang models have no `with` blocks",
    ast.Try: "pplang models cannot catch exceptions",
    ast.Raise: "pplang models cannot raise exceptions",
    ast.Assert: "express constraints through types or factor(...)",
    ast.Import: "import at module level; the model sees module-level names",
    ast.ImportFrom: "import at module level; the model sees module-level names",
    ast.Global: "models cannot rebind module-level names",
    ast.Nonlocal: "models cannot rebind enclosing names",
    ast.Delete: "pplang has no `del`",
    ast.FunctionDef: "define helper functions at module level, outside the model",
    ast.AsyncFunctionDef: "define helper functions at module level, outside the model",
    ast.ClassDef: "define classes at module level, outside the model",
    ast.Break: "pplang loops always run over their whole range",
    ast.Continue: "use `if` inside the loop instead of `continue`",
    ast.AsyncFor: "use a plain `for i in range(n):`",
    ast.AsyncWith: "pplang models have no `with` blocks",
    ast.Match: "use if/elif/else",
    ast.AnnAssign: "only a random choice takes an annotation (its support): `x: \"positive\" = sample(...)`; "
                   "drop the annotation of a computed value",
}
_EXPR_HINTS: dict[type, str] = {
    ast.Lambda: "define the function at module level and call it by name",
    ast.ListComp: "build arrays with a for loop over range(n)",
    ast.SetComp: "build arrays with a for loop over range(n)",
    ast.DictComp: "build arrays with a for loop over range(n)",
    ast.GeneratorExp: "build arrays with a for loop over range(n)",
    ast.Dict: "pplang has no dictionaries",
    ast.Set: "write vectors as [a, b, c]",
    ast.Tuple: "write vectors as [a, b, c]",
    ast.JoinedStr: "pplang expressions have no strings",
    ast.NamedExpr: "assign in a separate statement",
    ast.Starred: "pass arguments one by one",
    ast.Await: "pplang models are not async",
    ast.Yield: "return a value with `return`",
    ast.YieldFrom: "return a value with `return`",
}
_NODE_NAMES: dict[type, str] = {
    ast.While: "`while` loops", ast.With: "`with` blocks", ast.Try: "`try` blocks", ast.Raise: "`raise`",
    ast.Assert: "`assert`", ast.Import: "imports", ast.ImportFrom: "imports", ast.Global: "`global`",
    ast.Nonlocal: "`nonlocal`", ast.Delete: "`del`", ast.FunctionDef: "nested functions",
    ast.AsyncFunctionDef: "nested functions", ast.ClassDef: "classes", ast.Break: "`break`",
    ast.Continue: "`continue`", ast.AsyncFor: "`async for`", ast.AsyncWith: "`async with`",
    ast.Match: "`match`", ast.AnnAssign: "annotated assignments", ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions", ast.SetComp: "comprehensions", ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions", ast.Dict: "dictionaries", ast.Set: "sets",
    ast.Tuple: "tuples", ast.JoinedStr: "f-strings", ast.NamedExpr: "`:=`", ast.Starred: "starred arguments",
    ast.Await: "`await`", ast.Yield: "`yield`", ast.YieldFrom: "`yield from`",
}


def parse_function(fn: Callable[..., object], kind: str) -> tuple[Decl, str, str, dict[str, object]]:
    """Translate a Python function into a `Decl` of the given kind (`model`, `guide` or `objective`).

    Returns (decl, file, text of that whole file, env), where env maps the free names the body uses
    to the objects they refer to now (closure first, then the function's globals; builtins left out).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    code = getattr(fn, "__code__", None)
    if code is None or not inspect.isfunction(fn):
        raise error(f"@{kind} needs a function defined with `def`, got {type(fn).__name__}",
                    hint=f"write `@pp.{kind}` directly above a `def`")
    file = inspect.getsourcefile(fn) or code.co_filename
    try:
        lines, first = inspect.getsourcelines(fn)
    except (OSError, TypeError):
        raise error(f"cannot read the source of '{fn.__name__}'", Span(file, code.co_firstlineno, 1,
                    code.co_firstlineno, 1), hint=f"define @pp.{kind} functions in a .py file") from None
    source = "".join(linecache.getlines(file, fn.__globals__))
    # Dedent by the `def` block's own indentation (textwrap.dedent would give up when a string inside
    # the function has lines further left); code lines always carry this prefix.
    prefix = lines[0][: len(lines[0]) - len(lines[0].lstrip(" \t"))]
    dedented = "".join(line.removeprefix(prefix) for line in lines)
    front = _Front(file, source, dedented, first - 1, len(prefix))
    not_def = error(f"@{kind} needs a function defined with `def`", front.point(1, 1), source,
                    hint="lambdas and async functions cannot be models, guides or objectives")
    if code.co_name == "<lambda>":
        raise not_def
    try:
        module = ast.parse(dedented)
    except SyntaxError as e:
        raise error(f"invalid Python: {e.msg}", front.point(e.lineno or 1, e.offset or 1), source) from None
    if not module.body or not isinstance(module.body[0], ast.FunctionDef):
        raise not_def
    node = module.body[0]
    try:
        decl = front.decl(node, kind)
    except RecursionError:
        raise front.fail("expression is nested too deeply", node) from None
    return decl, file, source, _environment(fn, front.free_names(node))


def _environment(fn: Callable[..., object], names: set[str]) -> dict[str, object]:
    """What each free name refers to: a closure cell wins over a global; missing names are left out."""
    env: dict[str, object] = {}
    code = fn.__code__
    cells = dict(zip(code.co_freevars, fn.__closure__ or (), strict=False))
    for name in sorted(names):
        if name in cells:
            try:
                env[name] = cells[name].cell_contents
            except ValueError:  # a closure variable not assigned yet
                continue
        elif name in fn.__globals__:
            env[name] = fn.__globals__[name]
    return env


def _names_in(node: object) -> set[str]:
    """Names (and first components of called names) read anywhere inside a syntax tree."""
    if isinstance(node, list):
        return set().union(*map(_names_in, node))
    if isinstance(node, Name):
        return {node.id}
    found = {node.func.split(".", 1)[0]} if isinstance(node, Call) else set()
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            found |= _names_in(getattr(node, f.name))
    return found


def _syntax_call(node: ast.expr, name: str) -> bool:
    """Whether `node` calls one of the statement forms (`sample`, `param`, `factor`)."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Name):
        return func.id == name
    return (isinstance(func, ast.Attribute) and func.attr == name and isinstance(func.value, ast.Name)
            and func.value.id in _SYNTAX_PREFIXES)


def _ast_dotted(node: ast.expr) -> str | None:
    """`a.b.c` for a chain of plain names, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _ast_dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


class _Front:
    """Translation state: where the dedented function text sits in the real file, and names used."""

    def __init__(self, file: str, source: str, dedented: str, line_offset: int, indent: int):
        self.file, self.source = file, source
        self.rows = dedented.split("\n")
        self.line_offset, self.indent = line_offset, indent
        self.used: set[str] = set()

    # -- positions

    def _col(self, line: int, offset: int) -> int:
        """1-based column in the real file of a UTF-8 byte offset into a dedented line."""
        row = self.rows[line - 1] if 1 <= line <= len(self.rows) else ""
        return self.indent + len(row.encode()[:offset].decode(errors="ignore")) + 1

    def point(self, line: int, col: int) -> Span:
        real = line + self.line_offset
        return Span(self.file, real, col + self.indent, real, col + self.indent + 1)

    def span(self, node: ast.AST) -> Span:
        line, end_line = node.lineno, node.end_lineno or node.lineno
        end_offset = node.end_col_offset if node.end_col_offset is not None else node.col_offset + 1
        return Span(self.file, line + self.line_offset, self._col(line, node.col_offset),
                    end_line + self.line_offset, self._col(end_line, end_offset))

    def fail(self, message: str, node: ast.AST, **details: str | None) -> PplError:
        return error(message, self.span(node), self.source, **details)

    def unsupported(self, node: ast.AST, hints: dict[type, str]) -> NoReturn:
        what = _NODE_NAMES.get(type(node), f"`{type(node).__name__}`")
        raise self.fail(f"{what} are not supported in pplang", node, hint=hints.get(type(node)))

    # -- declarations

    def decl(self, node: ast.FunctionDef, kind: str) -> Decl:
        spec = node.args
        for extra in (spec.vararg, spec.kwarg, *spec.kwonlyargs):
            if extra is not None:
                raise self.fail("only plain positional arguments are supported", extra,
                                hint="drop *args, **kwargs and keyword-only arguments")
        if spec.defaults:
            raise self.fail("default argument values are not supported", spec.defaults[0],
                            hint="pass every argument explicitly")
        args = [Arg(a.arg, self.annotation(a.annotation), self.span(a)) for a in (*spec.posonlyargs, *spec.args)]
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]  # the docstring
        return Decl(kind, node.name, args, self.block(body), self.span(node))

    def annotation(self, node: ast.expr | None) -> TypeExpr | None:
        """`int`, `float` (-> real), `bool`, a pplang type name, `vector[N]`, or a string holding one."""
        if node is None:
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return self.type_string(node)
        if isinstance(node, ast.Name) and (node.id in _ANNOTATION_BASES or node.id in TYPE_BASES):
            return validate_type(TypeExpr(_ANNOTATION_BASES.get(node.id, node.id), [], self.span(node)),
                                 self.source)
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            dims = [self.expr(d) for d in items]
            return validate_type(TypeExpr(_ANNOTATION_BASES.get(node.value.id, node.value.id), dims,
                                          self.span(node)), self.source)
        raise self.fail("unsupported type annotation", node,
                        hint='use int, float, bool or a pplang type as a string, e.g. "vector[N]"')

    def type_string(self, node: ast.Constant) -> TypeExpr:
        """A type written as a string, parsed in place; names in its sizes count as used."""
        line, col = self.string_start(node)
        t = parse_type(node.value, self.file, line, col, self.source)
        self.used.update(_names_in(t.dims))
        return t

    def string_start(self, node: ast.Constant) -> tuple[int, int]:
        """Real line and column where a string literal's text (after prefix and quotes) begins."""
        row = self.rows[node.lineno - 1] if 1 <= node.lineno <= len(self.rows) else ""
        col = self._col(node.lineno, node.col_offset) - self.indent - 1
        rest = row[col:]
        prefix = len(rest) - len(rest.lstrip("rRbBuUfF"))
        quote = 3 if rest[prefix:prefix + 3] in ('"""', "'''") else 1
        return node.lineno + self.line_offset, col + prefix + quote + self.indent + 1

    def free_names(self, node: ast.FunctionDef) -> set[str]:
        """Names the translated body reads that are not arguments or bound inside the function."""
        bound = {a.arg for a in (*node.args.posonlyargs, *node.args.args)}
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                bound.add(sub.id)
            elif isinstance(sub, ast.Subscript) and isinstance(sub.ctx, ast.Store) \
                    and isinstance(sub.value, ast.Name):
                bound.add(sub.value.id)
        return self.used - bound

    # -- statements

    def block(self, body: list[ast.stmt]) -> list[Stmt]:
        out: list[Stmt] = []
        for node in body:
            stmt = self.stmt(node)
            if stmt is not None:
                out.append(stmt)
        return out

    def stmt(self, node: ast.stmt) -> Stmt | None:
        if isinstance(node, ast.Assign):
            return self.assign(node)
        if isinstance(node, ast.AnnAssign) and node.value is not None and _syntax_call(node.value, "sample"):
            dist, via = self.sample_args(node.value)
            return Sample(self.target(node.target), dist, via, self.span(node), self.annotation(node.annotation))
        if isinstance(node, ast.AugAssign):
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise self.fail("bitwise operators are not supported", node)
            span = self.span(node)
            target = self.target(node.target)
            value = BinOp(op, self.expr(node.target), self.expr(node.value), span)
            return Assign(target, value, span)
        if isinstance(node, ast.Expr):
            return self.expr_stmt(node)
        if isinstance(node, ast.For):
            return self.for_loop(node)
        if isinstance(node, ast.If):
            return If(self.expr(node.test), self.block(node.body), self.block(node.orelse), self.span(node))
        if isinstance(node, ast.Return):
            return Return(None if node.value is None else self.expr(node.value), self.span(node))
        if isinstance(node, ast.Pass):
            return None
        self.unsupported(node, _STMT_HINTS)

    def assign(self, node: ast.Assign) -> Stmt:
        if len(node.targets) != 1:
            raise self.fail("chained assignment is not supported", node, hint="assign one name per line")
        span, value = self.span(node), node.value
        if _syntax_call(value, "sample"):
            dist, via = self.sample_args(value)
            return Sample(self.target(node.targets[0]), dist, via, span)
        if _syntax_call(value, "param"):
            target = node.targets[0]
            if not isinstance(target, ast.Name):
                raise self.fail("a param(...) must be assigned to a plain name", target,
                                hint="write `a = param(init)`")
            init, constraint = self.param_args(value)
            return Param(target.id, constraint, init, span)
        return Assign(self.target(node.targets[0]), self.expr(value), span)

    def target(self, node: ast.expr) -> Name | Index:
        if isinstance(node, (ast.Tuple, ast.List)):
            raise self.fail("cannot assign to several names at once", node, hint="assign one name per line")
        return check_target(self.expr(node), self.source)

    def sample_args(self, node: ast.Call) -> tuple[Call, str | None]:
        """`sample(dist(...))` or `sample(dist(...), via="enum")`."""
        if len(node.args) != 1 or not isinstance(node.args[0], ast.Call):
            raise self.fail("sample(...) takes one distribution call", node,
                            hint="write e.g. `x = sample(normal(0.0, 1.0))`")
        via = None
        for kw in node.keywords:
            if kw.arg != "via":
                raise self.fail("sample(...) only takes the keyword `via`", kw,
                                hint='write e.g. `sample(bernoulli(p), via="enum")`')
            if not (isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)):
                raise self.fail("`via` must be a string naming a strategy", kw.value, hint='e.g. via="enum"')
            via = kw.value.value
        return self.call(node.args[0]), via

    def param_args(self, node: ast.Call) -> tuple[Expr, TypeExpr | None]:
        """`param(init)`, `param(init, "positive")` or `param(init, constraint="positive")`."""
        given: dict[str, ast.expr] = dict(zip(("init", "constraint"), node.args, strict=False))
        if len(node.args) > 2:
            raise self.fail("param(...) takes an initial value and an optional constraint", node.args[2])
        for kw in node.keywords:
            if kw.arg not in ("init", "constraint") or kw.arg in given:
                raise self.fail(f"unexpected keyword `{kw.arg}` in param(...)", kw,
                                hint='write `param(init, constraint="positive")`')
            given[kw.arg] = kw.value
        if "init" not in given:
            raise self.fail("param(...) needs an initial value", node, hint="write e.g. `param(1.0)`")
        constraint = given.get("constraint")
        if constraint is None:
            return self.expr(given["init"]), None
        if not (isinstance(constraint, ast.Constant) and isinstance(constraint.value, str)):
            raise self.fail("a param constraint must be a string naming a type", constraint,
                            hint='e.g. constraint="positive" or "simplex[K]"')
        return self.expr(given["init"]), self.type_string(constraint)

    def expr_stmt(self, node: ast.Expr) -> Stmt:
        value = node.value
        if _syntax_call(value, "factor"):
            if len(value.args) != 1 or value.keywords:
                raise self.fail("factor(...) takes exactly one expression", value)
            return Factor(self.expr(value.args[0]), self.span(node))
        if _syntax_call(value, "sample"):
            raise self.fail("the result of sample(...) must be assigned", value,
                            hint="write `x = sample(...)`: the name is the address of the random choice")
        raise self.fail("expression statements are not supported", node,
                        hint="assign the value to a name, or add a log-density term with factor(...)")

    def for_loop(self, node: ast.For) -> For:
        if node.orelse:
            raise self.fail("`for ... else` is not supported", node.orelse[0])
        if not isinstance(node.target, ast.Name):
            raise self.fail("a for loop must bind a single name", node.target, hint="write `for i in range(n):`")
        it = node.iter
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
                and 1 <= len(it.args) <= 2 and not it.keywords):
            raise self.fail("for loops must iterate over range(stop) or range(start, stop)", it,
                            hint="write `for i in range(n):`")
        args = [self.expr(a) for a in it.args]
        start, stop = (Num(0, self.span(it)), args[0]) if len(args) == 1 else args
        return For(node.target.id, start, stop, self.block(node.body), self.span(node))

    # -- expressions

    def expr(self, node: ast.expr) -> Expr:
        span = self.span(node)
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            self.used.add(node.id)
            return Name(node.id, span)
        if isinstance(node, ast.BinOp):
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise self.fail("bitwise operators are not supported", node,
                                hint="use `and`, `or`, `not` on booleans and `**` for powers")
            return BinOp(op, self.expr(node.left), self.expr(node.right), span)
        if isinstance(node, ast.UnaryOp):
            if type(node.op) not in _UNARY:
                raise self.fail("`~` is not supported", node, hint="use `not` to negate a boolean")
            return UnaryOp(_UNARY[type(node.op)], self.expr(node.operand), span)
        if isinstance(node, ast.BoolOp):
            op = "and" if isinstance(node.op, ast.And) else "or"
            result = self.expr(node.values[0])
            for value in node.values[1:]:
                right = self.expr(value)
                result = BoolOp(op, result, right, Span(self.file, result.span.line, result.span.col,
                                                        right.span.end_line, right.span.end_col))
            return result
        if isinstance(node, ast.Compare):
            if len(node.ops) > 1:
                raise self.fail("chained comparisons are not supported", node,
                                hint="split the chain with `and`, e.g. `a < b and b < c`")
            op = _COMPARES.get(type(node.ops[0]))
            if op is None:
                raise self.fail("`in` and `is` comparisons are not supported", node,
                                hint="compare values with < <= > >= == !=")
            return Compare(op, self.expr(node.left), self.expr(node.comparators[0]), span)
        if isinstance(node, ast.IfExp):
            return IfExp(self.expr(node.test), self.expr(node.body), self.expr(node.orelse), span)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Subscript):
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            return Index(self.expr(node.value), [self.index(i) for i in items], span)
        if isinstance(node, ast.Attribute):
            return Attribute(self.expr(node.value), node.attr, span)
        if isinstance(node, ast.List):
            return VectorLit([self.expr(e) for e in node.elts], span)
        self.unsupported(node, _EXPR_HINTS)

    def constant(self, node: ast.Constant) -> Expr:
        value = node.value
        if isinstance(value, bool):
            return Bool(value, self.span(node))
        if isinstance(value, (int, float)):
            return Num(value, self.span(node))
        what = {str: "strings", type(None): "None", bytes: "bytes", complex: "complex numbers"}.get(
            type(value), "this constant")
        raise self.fail(f"{what} cannot be used in a pplang expression", node,
                        hint="pplang expressions hold numbers, booleans, names and calls")

    def index(self, node: ast.expr) -> Expr | Slice:
        if not isinstance(node, ast.Slice):
            return self.expr(node)
        if node.step is not None:
            raise self.fail("slices with a step are not supported", node.step, hint="write x[a:b]")
        lo = None if node.lower is None else self.expr(node.lower)
        hi = None if node.upper is None else self.expr(node.upper)
        return Slice(lo, hi, self.span(node))

    def call(self, node: ast.Call) -> Call:
        for form in ("sample", "param"):
            if _syntax_call(node, form):
                raise self.fail(f"{form}(...) can only be the whole right side of an assignment", node,
                                hint=f"write `x = {form}(...)` on its own line")
        if _syntax_call(node, "factor"):
            raise self.fail("factor(...) is a statement, not a value", node,
                            hint="write `factor(expr)` on its own line")
        name = _ast_dotted(node.func)
        if name is None:
            raise self.fail("only named functions can be called", node.func,
                            hint="call a function, distribution or model by its name")
        self.used.add(name.split(".", 1)[0])
        prefix, _, last = name.rpartition(".")
        if prefix in DROPPED_PREFIXES:
            name = last
        args: list[Expr] = []
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.unsupported(arg, _EXPR_HINTS)
            args.append(self.expr(arg))
        kwargs: list[Keyword] = []
        for kw in node.keywords:
            if kw.arg is None:
                raise self.fail("`**` arguments are not supported", kw, hint="pass keyword arguments one by one")
            kwargs.append(Keyword(kw.arg, self.expr(kw.value), self.span(kw)))
        return Call(name, args, kwargs, self.span(node), self.span(node.func))

