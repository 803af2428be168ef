"""Expressions: each surface expression checked and lowered to a typed IR expression."""

from __future__ import annotations

from pplang.compiler import ir
from pplang.compiler.check import shapes as sh
from pplang.compiler.check.scopes import Scope, expr_span
from pplang.compiler.check.shapes import dim_code
from pplang.compiler.frontend import syntax as S
from pplang.compiler.ir import Ty


class Expressions:
    """Mixin of `DeclLowering`: literals, operators, indexing and vectors."""

    def expr(self, e: S.Expr, scope: Scope) -> ir.Expr:
        if isinstance(e, S.Num):
            if isinstance(e.value, int) and abs(e.value) > 2**31 - 1:
                raise self.err(
                    "integer literal is too large",
                    e.span,
                    expected="at most 2147483647 in size",
                    found=str(e.value),
                    hint="integers are 32-bit; write a real number such as 1e12",
                )
            return ir.Const(e.value, Ty("int" if isinstance(e.value, int) else "real", (), True))
        if isinstance(e, S.Bool):
            return ir.Const(e.value, Ty("bool", (), True))
        if isinstance(e, S.Name):
            return self.name(e, scope)
        if isinstance(e, S.BinOp):
            return self.binop(e, scope)
        if isinstance(e, S.UnaryOp):
            v = self.expr(e.operand, scope)
            if e.op == "not":
                return ir.Op("not", (v,), Ty("bool", v.ty.shape, v.ty.static))
            self.require_numeric(v, e.operand, f"the operand of unary `{e.op}`")
            kind = "int" if v.ty.kind == "bool" else v.ty.kind
            return ir.Op("neg" if e.op == "-" else "pos", (v,), Ty(kind, v.ty.shape, v.ty.static))
        if isinstance(e, (S.Compare, S.BoolOp)):
            a, b = self.expr(e.left, scope), self.expr(e.right, scope)
            shape = self.bcast(e, a.ty.shape, b.ty.shape)
            return ir.Op(e.op, (a, b), Ty("bool", shape, a.ty.static and b.ty.static))
        if isinstance(e, S.IfExp):
            c, a, b = self.expr(e.cond, scope), self.expr(e.then, scope), self.expr(e.orelse, scope)
            shape = self.bcast(e, c.ty.shape, a.ty.shape, b.ty.shape)
            kind = a.ty.kind if a.ty.kind == b.ty.kind else "real"
            return ir.Select(c, a, b, Ty(kind, shape, c.ty.static and a.ty.static and b.ty.static))
        if isinstance(e, S.Call):
            return self.call(e, scope)
        if isinstance(e, S.Index):
            return self.index(e, scope)
        if isinstance(e, S.VectorLit):
            return self.vector(e, scope)
        if isinstance(e, S.Attribute):
            raise self.err(
                f"attribute `.{e.attr}` is not supported",
                e.span,
                hint="use size(x) or x.shape[k] for sizes" if e.attr != "shape" else "index it: x.shape[0]",
            )
        raise self.err(
            f"unsupported expression {type(e).__name__}",
            expr_span(e),
            hint="see docs/language.md for the expressions pplang supports",
        )

    def binop(self, e: S.BinOp, scope: Scope) -> ir.Expr:
        a, b = self.expr(e.left, scope), self.expr(e.right, scope)
        for v, side in ((a, e.left), (b, e.right)):
            self.require_numeric(v, side, f"an operand of `{e.op}`")
        static = a.ty.static and b.ty.static
        if e.op == "@":
            try:
                shape = sh.matmul(a.ty.shape, b.ty.shape)
            except sh.ShapeError as err:
                raise self.err(
                    f"cannot multiply these: {err}",
                    e.span,
                    found=f"{sh.show(a.ty.shape)} @ {sh.show(b.ty.shape)}",
                    hint="the last size on the left must equal the first (vector) "
                    "or second-to-last (matrix) size on the right",
                ) from None
            return ir.Op("@", (a, b), Ty("real", shape))
        shape = self.bcast(e, a.ty.shape, b.ty.shape)
        kinds = {a.ty.kind, b.ty.kind}
        if e.op == "/" or "real" in kinds or "unknown" in kinds:
            kind = "real" if "unknown" not in kinds else "unknown"
        else:
            kind = "int"
        return ir.Op(e.op, (a, b), Ty(kind, shape, static))

    def index(self, e: S.Index, scope: Scope) -> ir.Expr:
        if isinstance(e.value, S.Attribute) and e.value.attr == "shape":
            base = self.expr(e.value.value, scope)
            if len(e.indices) != 1 or not isinstance(e.indices[0], S.Num):
                raise self.err("use x.shape[k] with a number k", e.span, hint="for example x.shape[0]")
            k = int(e.indices[0].value)
            if base.ty.shape is not None and not 0 <= k < len(base.ty.shape):
                raise self.err(
                    f"axis {k} is out of range for a value of shape {sh.show(base.ty.shape)}",
                    e.span,
                    hint="axes are numbered from 0",
                )
            return ir.Shape_(base, k)
        base = self.expr(e.value, scope)
        base_ty, pre = base.ty, ()
        if isinstance(e.value, S.Name) and isinstance(base, ir.Index):  # a lifted piece: index it in place
            base, pre = base.base, base.indices
        shape = base_ty.shape
        if shape is not None and len(e.indices) > len(shape):
            raise self.err(
                f"too many indices: the value has {len(shape)} dimension(s)",
                e.span,
                expected=f"at most {len(shape)} index(es)",
                found=f"{len(e.indices)}",
                hint="a scalar cannot be indexed"
                if not shape
                else f"index each of its {len(shape)} dimension(s) at most once, e.g. x[i, j]",
            )
        out_dims: list[ir.Dim] = []
        idx: list[ir.Expr | ir.SliceIx] = list(pre)
        static = base_ty.static
        for k, ix in enumerate(e.indices):
            dim = shape[k] if shape is not None else None
            if isinstance(ix, S.Slice):
                lo = self.index_expr(ix.lo, scope) if ix.lo is not None else None
                hi = self.index_expr(ix.hi, scope) if ix.hi is not None else None
                for part, src in ((lo, ix.lo), (hi, ix.hi)):
                    if part is not None and not part.ty.static:
                        raise self.err(
                            "slice bounds must be ints known before running",
                            expr_span(src),
                            hint="use an int argument or a number",
                        )
                hi_d = dim_code(hi) if hi is not None else dim
                lo_d = dim_code(lo) if lo is not None else 0
                out_dims.append(sh.dim_sub(hi_d, lo_d))
                idx.append(ir.SliceIx(lo, hi))
                continue
            v = self.index_expr(ix, scope)
            self.check_index(v, base, len(pre) + k, dim, e, ix)
            if v.ty.shape:
                out_dims.extend(v.ty.shape)
            elif v.ty.shape is None:
                return ir.Index(base, tuple(idx) + (v,), Ty(base_ty.kind, None))
            static = static and v.ty.static
            idx.append(v)
        rest = shape[len(e.indices) :] if shape is not None else None
        out = None if rest is None else tuple(out_dims) + rest
        return ir.Index(base, tuple(idx), Ty(base_ty.kind, out, static and out == ()))

    def index_expr(self, ix: S.Expr, scope: Scope) -> ir.Expr:
        v = self.expr(ix, scope)
        if v.ty.kind not in ("int", "unknown"):
            raise self.err(
                "an index must be an int",
                expr_span(ix),
                expected="int",
                found=str(v.ty),
                hint="convert with to_int(...)" if v.ty.kind == "real" else None,
            )
        return v

    def vector(self, e: S.VectorLit, scope: Scope) -> ir.Expr:
        if not e.items:
            raise self.err("an empty vector has no type", e.span, hint="use zeros(0)")
        items = tuple(self.expr(x, scope) for x in e.items)
        shapes = {x.ty.shape for x in items}
        if len(shapes) > 1:
            raise self.err(
                "the items of a vector must all have the same shape",
                e.span,
                found=", ".join(sh.show(s) for s in shapes),
                hint="give every item the same shape",
            )
        inner = items[0].ty.shape
        kinds = {x.ty.kind for x in items}
        kind = "real" if "real" in kinds or len(kinds) > 1 else kinds.pop()
        return ir.Vec(
            items, Ty(kind, None if inner is None else (len(items),) + inner, all(x.ty.static for x in items))
        )
