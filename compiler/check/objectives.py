"""Objectives: declarations whose program arguments are models and guides, traced with
`simulate` and scored with `log_density`."""

from __future__ import annotations

from pplang.compiler import ir
from pplang.compiler.check.lowering import DeclLowering
from pplang.compiler.check.scopes import ArgSpec, Scope, expr_span, type_text
from pplang.compiler.frontend import syntax as S
from pplang.compiler.ir import Ty

PROGRAM = Ty("program", ())
TRACE = Ty("trace", ())
OBJECTIVE_CALLS = ("simulate", "log_density")  # their first argument names a program


class ObjectiveLowering(DeclLowering):
    """Lowers an objective: a program whose expected return value is maximized. Arguments used as
    the first argument of `simulate` or `log_density` are programs (the model, the guide, ...),
    bound when fitting; the others are values and need a type."""

    def run(self) -> ir.Function:
        self.programs = program_args(self.decl.body)
        for a in self.decl.args:
            if a.name in self.programs and a.type is not None:
                raise self.err(f"`{a.name}` is a program (a model or guide) and takes no type", a.span,
                               hint=f"write `{a.name}` without `: {type_text(a.type)}`")
            if a.name not in self.programs and a.type is None:
                raise self.err(f"objective argument `{a.name}` needs a type", a.span,
                               hint=f"e.g. `{a.name}: int`; arguments passed to simulate(...) or "
                                    "log_density(...) are programs and need none")
        known = {a.name for a in self.decl.args}
        for name, span in self.programs.items():
            if name not in known:
                raise self.err(f"`{name}` is not an argument of objective `{self.decl.name}`", span,
                               hint=f"add it: `objective {self.decl.name}({', '.join([*known, name])})`")
        fn = super().run()
        fn.args = [(n, ty) for n, ty in fn.args if ty != PROGRAM]
        fn.programs = [a.name for a in self.decl.args if a.name in self.programs]
        if fn.returns is None or fn.returns.kind not in ("real", "int", "bool") or fn.returns.shape not in ((), None):
            raise self.err(f"objective `{self.decl.name}` must return a number", self.decl.span,
                           found=str(fn.returns) if fn.returns else "no return",
                           hint="end with `return <estimate>`, e.g. `return log_density(p, z) - log_density(q, z)`")
        return fn

    def arg_spec(self, a: S.Arg, scope: Scope) -> ArgSpec:
        if a.name in self.programs:
            return ArgSpec(a.name, PROGRAM, None, None)
        return super().arg_spec(a, scope)

    def assign(self, s: S.Assign, scope: Scope, prefix: str) -> ir.Stmt:
        call, stop = s.value, False
        if isinstance(call, S.Call) and call.func == "stop_gradient" and len(call.args) == 1 \
                and isinstance(call.args[0], S.Call) and call.args[0].func == "simulate":
            call, stop = call.args[0], True
        if not (isinstance(call, S.Call) and call.func == "simulate"):
            return super().assign(s, scope, prefix)
        if not isinstance(s.target, S.Name):
            raise self.err("a trace cannot be stored in an array", s.target.span,
                           hint="assign it to a plain name inside the loop: `z = simulate(q)`")
        prog = self.program_ref(call, 1, 2)
        given = None
        if len(call.args) == 2:
            given = self.expr(call.args[1], scope)
            self.require_trace(given, call.args[1])
        name = self.var_name(s.target.id, prefix)
        self.check_assignable(s.target.id, name, s.target.span, scope)
        scope.assign(name, TRACE)
        return ir.Let(name, ir.Simulate(prog, given, stop, self.next_call(), TRACE), s.span)

    def call(self, e: S.Call, scope: Scope) -> ir.Expr:
        if e.func == "simulate":
            raise self.err("`simulate(...)` must be the whole right side of an assignment", e.span,
                           hint="write `z = simulate(q)` (or `z = stop_gradient(simulate(q))`) on its own line")
        if e.func == "log_density":
            prog = self.program_ref(e, 2, 2)
            tr = self.expr(e.args[1], scope)
            self.require_trace(tr, e.args[1])
            return ir.LogDensity(prog, tr, self.next_call(), Ty("real", ()))
        if e.func == "merge":
            if len(e.args) != 2 or e.kwargs:
                raise self.err("`merge` takes two traces", e.span, hint="merge(tr, other): other's values win")
            a, b = self.expr(e.args[0], scope), self.expr(e.args[1], scope)
            self.require_trace(a, e.args[0])
            self.require_trace(b, e.args[1])
            return ir.Call("merge", (a, b), TRACE)
        if e.func == "stop_gradient" and len(e.args) == 1:
            v = self.expr(e.args[0], scope)
            return ir.Call("stop_gradient", (v,), Ty(v.ty.kind, v.ty.shape, v.ty.static))
        return super().call(e, scope)

    def sample(self, s: S.Sample, scope: Scope, prefix: str) -> list[ir.Stmt]:
        if s.dist.func in self.programs:
            raise self.err(f"`{s.dist.func}` is a program argument of the objective", s.dist.span,
                           hint=f"draw a trace of it with `tr = simulate({s.dist.func})`")
        return super().sample(s, scope, prefix)

    def index(self, e: S.Index, scope: Scope) -> ir.Expr:
        v = super().index(e, scope)
        if isinstance(v, ir.Index) and v.base.ty in (TRACE, PROGRAM):
            raise self.err("traces and programs cannot be indexed", e.span,
                           hint="score a trace with log_density(p, tr)")
        return v

    def next_call(self) -> int:
        self.calls = getattr(self, "calls", 0) + 1
        return self.calls

    def program_ref(self, call: S.Call, lo: int, hi: int) -> str:
        if not lo <= len(call.args) <= hi or call.kwargs:
            want = {("simulate", 1): "simulate(q) or simulate(q, tr)", ("log_density", 2): "log_density(p, tr)"}
            raise self.err(f"wrong arguments for `{call.func}`", call.span,
                           hint=want.get((call.func, lo), f"{call.func}(...)"))
        head = call.args[0]
        if not isinstance(head, S.Name):
            raise self.err(f"the first argument of `{call.func}` must name a program argument",
                           expr_span(head), hint="e.g. simulate(q) where q is an argument of the objective")
        return head.id

    def require_trace(self, v: ir.Expr, e: S.Expr) -> None:
        if v.ty != TRACE:
            raise self.err("expected a trace", expr_span(e), found=str(v.ty),
                           hint="a trace comes from `tr = simulate(q)`")


def program_args(body: list[S.Stmt]) -> dict[str, S.Span]:
    """Names used as the program of `simulate(...)` / `log_density(...)` in an objective's body."""
    out: dict[str, S.Span] = {}

    def visit(node: object) -> None:
        if isinstance(node, S.Call) and node.func in OBJECTIVE_CALLS and node.args \
                and isinstance(node.args[0], S.Name):
            out.setdefault(node.args[0].id, node.args[0].span)
        if isinstance(node, list):
            for x in node:
                visit(x)
        elif hasattr(node, "__dataclass_fields__"):
            for f in node.__dataclass_fields__:
                if f != "span":
                    visit(getattr(node, f))

    visit(body)
    return out
