"""Kinds and symbolic shapes: declared argument types and sizes, broadcasting with the sizes it
assumes equal (checked when data is bound), and the result types of the math functions."""

from __future__ import annotations

from pplang.compiler import ir
from pplang.compiler.check import shapes as sh
from pplang.compiler.check.scopes import (
    ARRAY_TYPES,
    CONSTRAINT_OF,
    SCALAR_TYPES,
    VECTOR_TYPES,
    ArgSpec,
    Scope,
    expr_span,
    type_text,
)
from pplang.compiler.check.shapes import dim_code, literal
from pplang.compiler.diagnostics import did_you_mean
from pplang.compiler.frontend import syntax as S
from pplang.compiler.ir import Ty
from pplang.compiler.names import py_name


class Types:
    """Mixin of `DeclLowering`: the types of arguments, sizes and function calls."""

    def dim_of(self, e: S.Expr, scope: Scope) -> ir.Dim:
        """A declared size: an int literal or an expression over static int arguments."""
        v = self.expr(e, scope)
        if v.ty.kind != "int" or not v.ty.static or v.ty.shape != ():
            raise self.err(
                "a size must be a number or an `int` argument",
                expr_span(e),
                expected="a static int",
                found=str(v.ty),
                hint="declare the size as an int argument, e.g. `N: int`, and write vector[N]",
            )
        lit = literal(v)
        if lit is not None and lit < 0:
            raise self.err("a size cannot be negative", expr_span(e), found=str(int(lit)), hint="use a size >= 0")
        dim = dim_code(v)
        self.nonnegative(dim, expr_span(e), f"the size `{dim}` must not be negative")
        return dim

    def nonnegative(self, dim: ir.Dim, span: S.Span, message: str) -> None:
        """A size given by the data (`N`, `N - 1`) must not be negative: checked when data is bound."""
        if isinstance(dim, str):
            self.checks.append(ir.SizeCheck("size", dim, None, message, span))

    def arg_spec(self, a: S.Arg, scope: Scope) -> ArgSpec:
        t = a.type
        if t is None:
            return ArgSpec(a.name, Ty("unknown", None), None, None)
        dims = [self.dim_of(d, scope) for d in t.dims]
        base = t.base
        n = py_name(a.name)
        if base in SCALAR_TYPES and not dims:
            kind = SCALAR_TYPES[base]
            return ArgSpec(a.name, Ty(kind, (), kind in ("int", "bool")), CONSTRAINT_OF.get(base), t)
        if base in ("positive", "unit") and dims:  # an array whose every element is in the support
            return ArgSpec(a.name, Ty("real", tuple(dims)), CONSTRAINT_OF[base], t)
        if base in ARRAY_TYPES and dims:
            return ArgSpec(a.name, Ty(ARRAY_TYPES[base], tuple(dims)), None, t)
        if base in VECTOR_TYPES and len(dims) <= 1:
            d0 = dims[0] if dims else f"{n}.shape[0]"
            return ArgSpec(a.name, Ty("real", (d0,)), CONSTRAINT_OF.get(base), t)
        if base == "matrix" and len(dims) in (0, 2):
            ds = tuple(dims) if dims else (f"{n}.shape[0]", f"{n}.shape[1]")
            return ArgSpec(a.name, Ty("real", ds), None, t)
        if base == "cholesky_corr" and len(dims) <= 1:
            d0 = dims[0] if dims else f"{n}.shape[0]"
            return ArgSpec(a.name, Ty("real", (d0, d0)), "cholesky_corr", t)
        known = sorted(set(SCALAR_TYPES) | set(VECTOR_TYPES) | {"matrix", "cholesky_corr"})
        raise self.err(
            f"unknown type `{base}` with {len(dims)} size(s)",
            t.span,
            hint=did_you_mean(base, known) or "types: " + ", ".join(known),
        )

    def require_numeric(self, v: ir.Expr, e: S.Expr, what: str) -> None:
        if v.ty.kind not in ("int", "real", "bool", "unknown"):
            raise self.err(f"{what} must be a number", e.span, found=str(v.ty), hint="use an int, real or bool value")

    def assume_equal(self, shapes: tuple, span: S.Span, what: str) -> None:
        """Record pairs of different symbolic sizes that broadcasting assumed equal."""
        known = [s for s in shapes if s is not None]
        if len(known) < 2:
            return
        n = max(len(s) for s in known)
        padded = [(1,) * (n - len(s)) + tuple(s) for s in known]
        for k in range(n):
            dims = {d for d in (p[k] for p in padded) if isinstance(d, str)}
            first = sorted(dims)
            for other in first[1:]:
                self.checks.append(ir.SizeCheck("==", first[0], other, f"sizes in {what} must match", span))

    def bcast(self, e: S.Expr, *shapes: ir.Shape) -> ir.Shape:
        self.assume_equal(shapes, e.span, "this expression")
        try:
            return sh.broadcast(*shapes)
        except sh.ShapeError as err:
            raise self.err(
                f"shapes do not match: {err}",
                e.span,
                found=" and ".join(sh.show(s) for s in shapes),
                hint="index or reshape one side so both have the same shape",
            ) from None

    def call_type(self, e: S.Call, spec: object, args: tuple[ir.Expr, ...]) -> Ty:
        shapes = [a.ty.shape for a in args]
        kind = args[0].ty.kind if spec.kind == "arg" else spec.kind
        if kind == "bool" and spec.kind == "arg" and spec.rule in ("reduce",):
            kind = "int"
        static = all(a.ty.static for a in args)
        rule = spec.rule
        try:
            if rule == "elementwise":
                return Ty(kind, sh.broadcast(*shapes), static)
            if rule == "where":
                return Ty(args[1].ty.kind, sh.broadcast(*shapes))
            if rule == "reduce":
                return Ty(kind, ())
            if rule == "log_mix":
                if len(args) == 3:
                    return Ty("real", sh.broadcast(*shapes))
                both = sh.broadcast(*shapes)
                if both is not None and not both:
                    raise self.err("log_mix(w, lps) mixes along the last axis: w and lps must be vectors",
                                   e.span, found=" and ".join(sh.show(s) for s in shapes),
                                   hint="with two components write log_mix(theta, lp1, lp2)")
                return Ty("real", None if both is None else both[:-1])
            if rule == "same":
                return Ty(kind, shapes[0])
            if rule == "dot":
                return Ty("real", ())
            if rule == "matmul":
                return Ty("real", sh.matmul(shapes[0], shapes[1]))
            if rule == "outer":
                a, b = shapes
                return Ty("real", None if a is None or b is None else (a[0] if a else 1, b[0] if b else 1))
            if rule == "transpose":
                s0 = shapes[0]
                return Ty(kind, None if s0 is None else tuple(reversed(s0)))
            if rule in ("square", "solve"):
                return Ty("real", shapes[-1])
            if rule == "diag":
                s0 = shapes[0]
                return Ty("real", None if s0 is None else (s0[0], s0[0]))
            if rule in ("sized", "sized_square"):
                dims = []
                for a, src in zip(args, e.args):
                    if a.ty.kind != "int" or not a.ty.static or a.ty.shape != ():
                        raise self.err(
                            f"the sizes given to `{e.func}` must be ints known before running",
                            expr_span(src),
                            found=str(a.ty),
                            hint="use int arguments or numbers",
                        )
                    dims.append(dim_code(a))
                    self.nonnegative(dims[-1], expr_span(src), f"the size `{dims[-1]}` given to `{e.func}` must "
                                     "not be negative")
                if rule == "sized_square":
                    dims = dims * 2
                return Ty("real", tuple(dims))
            if rule == "concat":
                a, b = (s if s is None or s else (1,) for s in shapes)  # a number counts as one entry
                if a is None or b is None or len(a) != 1 or len(b) != 1:
                    return Ty(kind, None)
                if isinstance(a[0], int) and isinstance(b[0], int):
                    return Ty(kind, (a[0] + b[0],))
                return Ty(kind, (sh.dim_add(a[0], 0) if b[0] == 0 else f"({a[0]} + {b[0]})",))
            if rule == "size":
                return Ty("int", (), True)
        except sh.ShapeError as err:
            raise self.err(
                f"shapes do not fit `{e.func}`: {err}", e.span, hint="check the sizes of the arguments"
            ) from None
        raise AssertionError(f"unknown shape rule {rule}")

    def declared_support(self, s: S.Sample, dist: ir.Dist, scope: Scope) -> ir.Dist:
        """`x: positive ~ student_t(3.0, 0.0, 1.0)`, `mu: positive_ordered[K] ~ normal(0.0, 10.0)`:
        the distribution (broadcast to the declared shape) restricted to the declared support."""
        t = s.declared
        if not isinstance(s.target, S.Name):
            raise self.err("a support can be declared only for a whole choice", t.span,
                           hint="draw the whole vector at once: `mu: positive_ordered[K] ~ normal(0.0, 1.0)`")
        spec = self.arg_spec(S.Arg(s.target.id, t, t.span), scope)
        if spec.ty.kind != "real" or t.base in ("int", "bool"):
            raise self.err(f"`{t.base}` is not a support", t.span, expected="a real type such as positive, unit, "
                           "simplex[K], ordered[K], positive_ordered[K], cholesky_corr[K]",
                           hint="discrete choices take their support from their distribution")
        if dist.value_ty.kind != "real":
            raise self.err(f"`{s.dist.func}` draws {dist.value_ty.kind} values; only a continuous choice takes a "
                           "declared support", t.span, hint="remove the declaration")
        shape = spec.ty.shape if t.dims else dist.value_ty.shape
        want = len(spec.ty.shape or ())
        if shape is not None and len(shape) != want:
            raise self.err(f"`{t.base}` needs a value with {want} dimension(s)", t.span, found=str(dist.value_ty),
                           hint=f"give its size, e.g. {t.base}[K]" if want else "declare a vector type")
        if not self.fits_declared(dist.value_ty.shape, shape, s.span):
            raise self.err(f"`{s.dist.func}(...)` does not fit the declared `{type_text(t)}`", s.dist.span,
                           expected=sh.show(shape), found=sh.show(dist.value_ty.shape),
                           hint="the distribution's values must broadcast to the declared shape")
        return ir.Dist(dist.name, dist.args, dist.kwargs, Ty("real", shape), spec.constraint or "real")

    def fits_declared(self, value: ir.Shape, declared: ir.Shape, span: S.Span) -> bool:
        """Whether values of shape `value` broadcast to the declared shape: equal or 1 where both
        are numbers; a symbolic size against another size is assumed equal and checked with the data."""
        if value is None or declared is None:
            return True
        if len(value) > len(declared):
            return False
        for v, d in zip(value[::-1], declared[::-1]):
            if v == d or v == 1:
                continue
            if isinstance(v, int) and isinstance(d, int):
                return False
            if v is not None and d is not None:
                self.checks.append(ir.SizeCheck("==", v, d, "the declared support's size must match the values", span))
        return True
