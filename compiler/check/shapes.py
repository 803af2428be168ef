"""Symbolic shape arithmetic for the checker: broadcasting, matmul and printing of sizes.

Dimensions are ints, Python expressions over declaration arguments (strings), or None (unknown).
Two different symbolic dimensions cannot be proved equal before data arrives; they are assumed
compatible here and checked against real shapes when data is bound.
"""

from __future__ import annotations

from pplang.compiler import ir
from pplang.compiler.ir import Dim, Shape


class ShapeError(Exception):
    """Raised with a readable explanation; the checker attaches the location."""


def show(shape: Shape) -> str:
    if shape is None:
        return "unknown shape"
    if not shape:
        return "scalar ()"
    inner = ", ".join("?" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def broadcast_dim(a: Dim, b: Dim) -> Dim:
    if a == b:
        return a
    if a == 1:
        return b
    if b == 1:
        return a
    if a is None or b is None:
        return a if b is None else b
    if isinstance(a, int) and isinstance(b, int):
        raise ShapeError(f"sizes {a} and {b} do not match")
    return a  # two symbols: assumed equal, verified against data


def broadcast(*shapes: Shape) -> Shape:
    """NumPy broadcasting; also rejects the silent (N, 1) x (N,) -> (N, N) blow-up."""
    if any(s is None for s in shapes):
        return None
    out: tuple[Dim, ...] = ()
    for s in shapes:
        assert s is not None
        if out and s and len(out) != len(s):
            longer, shorter = (out, s) if len(out) > len(s) else (s, out)
            if (len(longer) == len(shorter) + 1 and longer[-1] == 1 and shorter
                    and longer[-2] == shorter[-1] and shorter[-1] not in (1, None)):
                raise ShapeError(
                    f"combining {show(longer)} with {show(shorter)} would broadcast to "
                    f"{show(longer[:-1] + (shorter[-1],))}, almost always a mistake"
                )
        n = max(len(out), len(s))
        a = (1,) * (n - len(out)) + out
        b = (1,) * (n - len(s)) + s
        out = tuple(broadcast_dim(x, y) for x, y in zip(a, b))
    return out


def matmul(a: Shape, b: Shape) -> Shape:
    if a is None or b is None:
        return None
    if not a or not b:
        raise ShapeError("matrix product needs vectors or matrices, not scalars")
    inner_a = a[-1]
    inner_b = b[0] if len(b) == 1 else b[-2]
    if isinstance(inner_a, int) and isinstance(inner_b, int) and inner_a != inner_b:
        raise ShapeError(f"inner sizes {inner_a} and {inner_b} of the matrix product differ")
    if len(a) == 1 and len(b) == 1:
        return ()
    if len(a) == 1:
        return b[:-2] + b[-1:]
    if len(b) == 1:
        return a[:-1]
    return broadcast(a[:-2], b[:-2]) + (a[-2], b[-1])  # type: ignore[operator]


def dim_sub(hi: Dim, lo: Dim) -> Dim:
    if isinstance(hi, int) and isinstance(lo, int):
        return hi - lo
    if hi is None or lo is None:
        return None
    if lo == 0:
        return hi
    return f"({hi} - {lo})"


def dim_add(a: Dim, c: int) -> Dim:
    if c == 0 or a is None:
        return a
    if isinstance(a, int):
        return a + c
    return f"({a} + {c})" if c > 0 else f"({a} - {-c})"


def dim_max(a: Dim, b: Dim) -> Dim:
    if a == b:
        return a
    if a is None or b is None:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return max(a, b)
    return f"max({a}, {b})"


def literal(v: ir.Expr) -> float | None:
    """The value of a number literal, possibly negated; None for anything else."""
    if isinstance(v, ir.Const) and not isinstance(v.value, bool):
        return float(v.value)
    if isinstance(v, ir.Op) and v.op == "neg" and isinstance(v.args[0], ir.Const):
        return -float(v.args[0].value)
    return None


def loop_offset(v: ir.Expr, loop_vars: list[str]) -> tuple[str, int] | None:
    """`(var, c)` if `v` is `var + c`/`var - c`/`var` for one of the loop variables."""
    if isinstance(v, ir.Var) and v.name in loop_vars:
        return v.name, 0
    if isinstance(v, ir.Op) and v.op in ("+", "-") and len(v.args) == 2:
        a, b = v.args
        if isinstance(a, ir.Var) and a.name in loop_vars and isinstance(b, ir.Const) and isinstance(b.value, int):
            return a.name, b.value if v.op == "+" else -b.value
        if (
            v.op == "+"
            and isinstance(b, ir.Var)
            and b.name in loop_vars
            and isinstance(a, ir.Const)
            and isinstance(a.value, int)
        ):
            return b.name, a.value
    return None


def dim_code(v: ir.Expr) -> ir.Dim:
    """A static int expression as a dimension: an int or Python source over the arguments."""
    if isinstance(v, ir.Const):
        return int(v.value)
    return show_expr(v)


def show_expr(v: ir.Expr) -> str:
    """Python source of a simple expression (used for sizes and in messages)."""
    if isinstance(v, ir.Const):
        return repr(v.value)
    if isinstance(v, ir.Var):
        return v.name
    if isinstance(v, ir.Shape_):
        return f"{show_expr(v.value)}.shape[{v.axis}]"
    if isinstance(v, ir.Op) and len(v.args) == 2:
        return f"({show_expr(v.args[0])} {v.op} {show_expr(v.args[1])})"
    if isinstance(v, ir.Op) and v.op == "neg":
        return f"(-{show_expr(v.args[0])})"
    if isinstance(v, ir.Call) and v.fn == "size":
        return f"{show_expr(v.args[0])}.shape[0]"
    if isinstance(v, ir.Call):
        return f"{v.fn}({', '.join(show_expr(a) for a in v.args)})"
    if isinstance(v, ir.Index):
        parts = ", ".join(show_expr(i) if not isinstance(i, ir.SliceIx) else ":" for i in v.indices)
        return f"{show_expr(v.base)}[{parts}]"
    return "<expr>"
