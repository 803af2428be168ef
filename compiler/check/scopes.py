"""Scopes and names: what a name refers to, which names may be (re)assigned, the declared type
names, and the small syntax helpers the other checker modules share."""

from __future__ import annotations

from dataclasses import dataclass, field

from pplang.compiler import ir
from pplang.compiler.diagnostics import did_you_mean
from pplang.compiler.frontend import syntax as S
from pplang.compiler.ir import Ty
from pplang.compiler.names import RESERVED, address_var, py_name
from pplang.stdlib import signatures as dists
from pplang.stdlib.mathfns import FUNCTIONS

# `size`: an int that counts the points of a set, and may differ from data set to data set
SCALAR_TYPES = {"int": "int", "real": "real", "bool": "bool", "positive": "real", "unit": "real", "size": "int"}
VECTOR_TYPES = {"vector": "real", "simplex": "real", "ordered": "real", "positive_ordered": "real"}
ARRAY_TYPES = {"int": "int", "real": "real", "bool": "bool"}
CONSTRAINT_OF = {
    "positive": "positive",
    "unit": "unit",
    "simplex": "simplex",
    "ordered": "ordered",
    "positive_ordered": "positive_ordered",
    "cholesky_corr": "cholesky_corr",
}
PARAM_CONSTRAINTS = (
    "vector", "matrix", "real", "positive", "unit", "simplex", "ordered", "positive_ordered", "cholesky_corr",
)


@dataclass
class ArgSpec:
    """A declared argument: its type and the constraint that data for it must satisfy."""

    name: str
    ty: Ty
    constraint: str | None
    declared: S.TypeExpr | None


@dataclass
class LoopCtx:
    var: str
    start: ir.Expr
    stop: ir.Expr
    span: S.Span
    user: str  # the loop variable as written, for messages


@dataclass
class Scope:
    vars: dict[str, Ty] = field(default_factory=dict)
    parent: Scope | None = None

    def lookup(self, name: str) -> Ty | None:
        s: Scope | None = self
        while s is not None:
            if name in s.vars:
                return s.vars[name]
            s = s.parent
        return None

    def names(self) -> set[str]:
        out: set[str] = set()
        s: Scope | None = self
        while s is not None:
            out |= set(s.vars)
            s = s.parent
        return out

    def assign(self, name: str, ty: Ty) -> None:
        """Rebind in the scope that owns the name, else define here."""
        s: Scope | None = self
        while s is not None:
            if name in s.vars:
                s.vars[name] = ty
                return
            s = s.parent
        self.vars[name] = ty


class Names:
    """Mixin of `DeclLowering`: name lookup and the rules for binding names."""

    def check_new_name(self, name: str, span: S.Span) -> None:
        if name.startswith("_"):
            raise self.err(
                f"names starting with `_` are reserved: `{name}`", span, hint="rename it without the leading underscore"
            )
        if "__" in name or (name.endswith("_") and name[:-1] in RESERVED):
            # generated code writes submodel addresses `u/a` as `u__a` and a name such as `lambda` as `lambda_`
            raise self.err(f"`{name}` is reserved for generated code", span,
                           hint="rename it without the double underscore" if "__" in name
                           else f"name it `{name[:-1]}` (pplang renames it in generated code) or otherwise")

    def var_name(self, name: str, prefix: str) -> str:
        return address_var(prefix + name)

    def exclusive(self, name: str) -> bool:
        """Whether every earlier binding of choice `name` is in another arm of a branch enclosing
        this one (`if c: b ~ ... else: b ~ ...` binds `b` once, whichever arm runs)."""
        here = dict(self.arm)
        return all(any(bid in here and here[bid] != arm for bid, arm in path) for path in self.site_arms.get(name, []))

    def check_assignable(self, user: str, name: str, span: S.Span, scope: Scope) -> None:
        self.check_new_name(user, span)
        if any(lp.var == name for lp in self.loops):
            raise self.err(
                f"`{user}` is the loop variable and cannot be assigned", span, hint="use a new name for the value"
            )
        if self.is_arg(name):
            raise self.err(
                f"`{user}` is an argument and cannot be reassigned", span, hint="assign the new value to a new name"
            )
        if name in self.site_vars and not self.exclusive(name):
            first = self.site_spans.get(name)
            where = f"`{user}` is first drawn at {first}; " if first is not None else ""
            raise self.err(
                f"`{user}` is a random choice and cannot be reassigned",
                span,
                hint=where + "give the new value a new name",
            )
        if name in self.params:
            raise self.err(
                f"`{user}` is a parameter and cannot be reassigned", span, hint="assign the new value to a new name"
            )

    def is_arg(self, name: str) -> bool:
        return name in {py_name(a) for a in self.args} or name in self.callee_args

    def demote(self, body: list[S.Stmt], scope: Scope, prefix: str) -> None:
        """Variables defined before `body` and reassigned in it are no longer known while tracing
        (a loop carries them, a traced branch selects them): mark them so before checking it."""
        for name in assigned_names(body):
            var = self.var_name(name, prefix)
            ty = scope.lookup(var)
            if ty is not None and ty.static:
                scope.assign(var, Ty(ty.kind, ty.shape, False))

    def name(self, e: S.Name, scope: Scope) -> ir.Expr:
        cand = self.var_name(e.id, self.prefix)
        if cand in self.aliases:
            return self.aliases[cand]
        ty = scope.lookup(cand)
        if ty is not None and cand in self.lifted:  # this iteration's piece: `theta__a[j]`
            lift = self.lifted[cand]
            return ir.Index(ir.Var(cand, ty), lift, Ty(ty.kind, None if ty.shape is None else ty.shape[len(lift) :]))
        if ty is not None:
            return ir.Var(cand, ty)
        if e.id in FUNCTIONS:
            raise self.err(f"`{e.id}` is a function; call it", e.span, hint=f"{e.id}(...)")
        if e.id in dists.SIGNATURES:
            raise self.err(
                f"`{e.id}` is a distribution; use it on the right of `~`",
                e.span,
                hint=f"x ~ {dists.describe(e.id).splitlines()[0]}",
            )
        if e.id in self.c.decls:
            raise self.err(
                f"`{e.id}` is a {self.c.decls[e.id].kind}; call it with `~`", e.span, hint=f"`x ~ {e.id}(...)`"
            )
        if e.id in self.c.hosts:
            raise self.err(f"`{e.id}` is a host function; call it", e.span, hint=f"`{e.id}(...)`")
        hint = did_you_mean(
            e.id, [n.split("__")[-1] for n in scope.names() if n.startswith(self.prefix.replace("/", "__"))]
        )
        raise self.err(
            f"unknown name `{e.id}`",
            e.span,
            hint=hint or "define it before use, or pass it as an argument of the declaration",
        )


def expr_span(e: S.Expr | S.Slice) -> S.Span:
    return getattr(e, "span", S.NO_SPAN)


def piece_target(t: S.Target) -> S.Index:
    """A target as an indexed one, for the messages about the array whose piece it writes."""
    return t if isinstance(t, S.Index) else S.Index(t, [], t.span)


def assigned_names(body: list[S.Stmt]) -> set[str]:
    """Names that plain assignments in `body` (and the blocks inside it) write."""
    out: set[str] = set()
    for st in body:
        if isinstance(st, S.Assign) and isinstance(st.target, S.Name):
            out.add(st.target.id)
        elif isinstance(st, S.For):
            out |= assigned_names(st.body)
        elif isinstance(st, S.If):
            out |= assigned_names(st.then) | assigned_names(st.orelse)
    return out


def type_text(t: S.TypeExpr) -> str:
    if not t.dims:
        return t.base
    return f"{t.base}[{', '.join(show_dim(d) for d in t.dims)}]"


def show_dim(d: S.Expr) -> str:
    if isinstance(d, S.Num):
        return str(d.value)
    if isinstance(d, S.Name):
        return d.id
    return "..."
