"""Dependency analyses over the IR, built on networkx.

* `classify_loops` decides, for every loop, whether its iterations are independent (lowered to
  `jax.vmap`: one vectorized computation whose compile time does not grow with the loop length) or
  carry state from one iteration to the next (lowered to `lax.scan`).
* `dependency_graph` is the graph of arguments, parameters, random choices and values that
  `pplang graph` prints and that later transformations use to find which costs a choice can
  influence.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pplang.compiler import ir
from pplang.compiler.names import address_var, py_name

if TYPE_CHECKING:  # networkx is imported where a graph is built, so that checking a file does not load it
    import networkx as nx

IndexKey = tuple | None  # structural form of an index tuple; None for a whole-array read


# ---------------------------------------------------------------- walking


def sub_exprs(e: object) -> Iterator[ir.Expr]:
    """The expression itself and everything inside it."""
    if e is None:
        return
    yield e  # type: ignore[misc]
    if isinstance(e, (ir.Op, ir.Call, ir.Vec)):
        for a in (e.args if not isinstance(e, ir.Vec) else e.items):
            yield from sub_exprs(a)
    elif isinstance(e, ir.HostCall):
        for a in e.args:
            yield from sub_exprs(a)
        for _, a in e.kwargs:
            yield from sub_exprs(a)
    elif isinstance(e, ir.Index):
        yield from sub_exprs(e.base)
        for i in e.indices:
            if isinstance(i, ir.SliceIx):
                yield from sub_exprs(i.lo)
                yield from sub_exprs(i.hi)
            else:
                yield from sub_exprs(i)
    elif isinstance(e, ir.Select):
        for a in (e.cond, e.then, e.orelse):
            yield from sub_exprs(a)
    elif isinstance(e, ir.Shape_):
        yield from sub_exprs(e.value)
    elif isinstance(e, ir.Simulate):
        yield from sub_exprs(e.args)
    elif isinstance(e, ir.LogDensity):
        yield from sub_exprs(e.trace)
    elif isinstance(e, ir.DistLogProb):
        yield from sub_exprs(e.dist)
        yield from sub_exprs(e.value)
    elif isinstance(e, ir.Enumerate):
        yield from sub_exprs(e.support)
        yield from sub_exprs(e.body)
    elif isinstance(e, ir.Recover):
        for a in e.args:
            yield from sub_exprs(a)
    elif isinstance(e, ir.Dist):
        for a in e.args:
            yield from sub_exprs(a)
        for _, a in e.kwargs:
            yield from sub_exprs(a)


def stmt_exprs(s: ir.Stmt) -> list[object]:
    """Expressions a statement reads directly (not those of nested blocks)."""
    if isinstance(s, ir.Let):
        return [s.value]
    if isinstance(s, ir.Store):
        return [s.value, *s.index]
    if isinstance(s, ir.Sample):
        return [s.dist, *(s.index or ())]
    if isinstance(s, (ir.Factor, ir.Ret)):
        return [s.value]
    if isinstance(s, ir.ParamDef):
        return [s.init]
    if isinstance(s, ir.Loop):
        return [s.start, s.stop]
    if isinstance(s, ir.Branch):
        return [s.cond]
    return []


def walk(stmts: list[ir.Stmt]) -> Iterator[ir.Stmt]:
    for s in stmts:
        yield s
        if isinstance(s, ir.Loop):
            yield from walk(s.body)
        elif isinstance(s, ir.Branch):
            yield from walk(s.then)
            yield from walk(s.orelse)


def called_declarations(fn: ir.Function) -> list[str]:
    """Variables of the declarations `fn` calls as functions (the right-hand sides of its ODEs), which
    a module holding `fn` must hold too."""
    found: list[str] = []
    for s in walk(fn.body):
        for e in stmt_exprs(s):
            for x in sub_exprs(e):
                if isinstance(x, ir.Var) and x.ty.kind == "function" and x.name not in found:
                    found.append(x.name)
    return found


def walk_with_conditions(stmts: list[ir.Stmt], conds: tuple = ()) -> Iterator[tuple[ir.Stmt, tuple]]:
    """Like `walk`, with the conditions of the branches enclosing each statement."""
    for s in stmts:
        yield s, conds
        if isinstance(s, ir.Loop):
            yield from walk_with_conditions(s.body, conds)
        elif isinstance(s, ir.Branch):
            yield from walk_with_conditions(s.then, conds + (s.cond,))
            yield from walk_with_conditions(s.orelse, conds + (s.cond,))


def reads(stmts: list[ir.Stmt]) -> Iterator[tuple[str, IndexKey]]:
    """Every variable read, with the index it is read at (for arrays)."""
    for s in walk(stmts):
        for root in stmt_exprs(s):
            indexed: set[int] = set()
            for e in sub_exprs(root):
                if isinstance(e, ir.Index) and isinstance(e.base, ir.Var):
                    indexed.add(id(e.base))
                    yield e.base.name, index_key(e.indices)
                elif isinstance(e, ir.Var) and id(e) not in indexed:
                    yield e.name, None


def index_key(indices: tuple) -> tuple:
    return tuple(("slice",) if isinstance(i, ir.SliceIx) else expr_key(i) for i in indices)


def expr_key(e: object) -> object:
    """A hashable structural key of an expression (types ignored)."""
    if isinstance(e, ir.Const):
        return ("c", e.value)
    if isinstance(e, ir.Var):
        return ("v", e.name)
    if isinstance(e, ir.Op):
        return ("op", e.op, *(expr_key(a) for a in e.args))
    if isinstance(e, ir.Call):
        return ("call", e.fn, *(expr_key(a) for a in e.args))
    return ("other", id(e))


def writes(stmts: list[ir.Stmt]) -> Iterator[tuple[str, IndexKey]]:
    """Every variable written, with its index for array pieces."""
    for s in walk(stmts):
        if isinstance(s, ir.Let):
            yield s.name, None
        elif isinstance(s, ir.Store):
            yield s.name, index_key(s.index)
        elif isinstance(s, ir.Sample):
            yield s.name, index_key(s.index) if s.index is not None else None
        elif isinstance(s, ir.ParamDef):
            yield s.name, None


# ---------------------------------------------------------------- loops


def classify_loops(fn: ir.Function) -> None:
    """Set `mode`, `carried` and `reason` on every loop of `fn`."""
    _classify(fn.body, set(fn_args(fn)), depth=0)


def fn_args(fn: ir.Function) -> list[str]:
    return [py_name(a) for a, _ in fn.args]


def _classify(stmts: list[ir.Stmt], defined: set[str], depth: int) -> None:
    for s in stmts:
        if isinstance(s, ir.Loop):
            decide(s, defined, depth)
            _classify(s.body, set(defined) | {s.var}, depth + 1)
        elif isinstance(s, ir.Branch):
            _classify(s.then, set(defined), depth)
            _classify(s.orelse, set(defined), depth)
        for name, _ in writes([s]):
            defined.add(name)


def decide(loop: ir.Loop, defined: set[str], depth: int) -> None:
    """A loop carries state when an iteration reads a variable that another iteration writes:
    a variable defined before the loop and reassigned in it, or an array piece read at an index
    that differs, at this loop's position, from the index it is written at."""
    scalars = sorted({n for n, key in writes(loop.body) if key is None and n in defined})
    array_writes: dict[str, set] = {}
    for n, key in writes(loop.body):
        if key is not None:
            array_writes.setdefault(n, set()).add(key)
    buffers = set()
    for n, rkey in reads(loop.body):
        if n not in array_writes:
            continue
        for wkey in array_writes[n]:
            if crosses_iterations(rkey, wkey, depth):
                buffers.add(n)
    loop.carried = scalars + sorted(buffers)
    loop.mode = "scan" if loop.carried else "vector"
    if loop.mode == "scan":
        what = ", ".join(f"`{c}`" for c in loop.carried)
        loop.reason = f"iterations carry {what} from one to the next"
    else:
        loop.reason = "iterations are independent"


def crosses_iterations(rkey: IndexKey, wkey: tuple, depth: int) -> bool:
    """Whether a read may see a value written by another iteration of the loop at `depth`."""
    if rkey is None or len(rkey) <= depth:
        return True
    if rkey[:depth] != wkey[:depth]:
        return False  # another iteration of an enclosing loop: complete before this one runs
    return rkey[depth] != wkey[depth]


# ---------------------------------------------------------------- dependency graph


def dependency_graph(fn: ir.Function) -> nx.DiGraph:
    """Nodes: arguments, parameters, random choices (by address), values and factors; an edge
    a -> b when computing b reads a."""
    import networkx as nx

    g = nx.DiGraph()
    for a, ty in fn.args:
        g.add_node(a, kind="arg", label=f"{a}: {ty}")
    loop_vars: set[str] = set()
    site_of = {address_var(a): a for a in fn.sites}
    factors = 0
    for s, conds in walk_with_conditions(fn.body):
        if isinstance(s, ir.Loop):
            loop_vars.add(s.var)
            continue
        target = _target(s, factors)
        if target is None:
            continue
        if isinstance(s, ir.Factor):
            factors += 1
        node, attrs = target
        g.add_node(node, **attrs)
        for root in [*stmt_exprs(s), *conds]:  # what a branch condition reads decides what its arms do
            for e in sub_exprs(root):
                if isinstance(e, ir.Var) and e.name not in loop_vars and e.name != node:
                    src = site_of.get(e.name, e.name)
                    if src not in g:
                        g.add_node(src, kind="value", label=src)
                    g.add_edge(src, node)
    return g


def _target(s: ir.Stmt, factors: int) -> tuple[str, dict] | None:
    if isinstance(s, ir.Sample):
        return s.address, {"kind": "sample", "label": f"{s.address} ~ {s.dist.name}"}
    if isinstance(s, (ir.Let, ir.Store)):
        return s.name, {"kind": "value", "label": s.name}
    if isinstance(s, ir.ParamDef):
        return s.name, {"kind": "param", "label": f"param {s.address}"}
    if isinstance(s, ir.Factor):
        return f"factor{factors}", {"kind": "factor", "label": f"factor (line {s.span.line})"}
    if isinstance(s, ir.Ret):
        return "return", {"kind": "return", "label": "return"}
    return None


SHAPES = {"arg": "box", "sample": "ellipse", "value": "plaintext", "param": "diamond", "factor": "octagon",
          "return": "doublecircle"}


def to_dot(g: nx.DiGraph, name: str, observed: set[str] | frozenset[str] = frozenset()) -> str:
    """Graphviz DOT text; observed choices are shaded."""
    lines = [f'digraph "{name}" {{', "  rankdir=TB;"]
    for n, attrs in g.nodes(data=True):
        style = ', style=filled, fillcolor="gray80"' if n in observed else ""
        label = attrs.get("label", n).replace('"', '\\"')
        lines.append(f'  "{n}" [label="{label}", shape={SHAPES.get(attrs.get("kind"), "ellipse")}{style}];')
    for a, b in g.edges():
        lines.append(f'  "{a}" -> "{b}";')
    lines.append("}")
    return "\n".join(lines)
