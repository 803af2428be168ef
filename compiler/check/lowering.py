"""Lowering of one model or guide: the state of the walk and the entry point. The walk's methods
live in one mixin per concern (names, types, arrays, signatures, expressions, statements), all
sharing the state declared in `DeclLowering.__init__`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pplang.compiler import ir
from pplang.compiler.check.arrays import Arrays
from pplang.compiler.check.expressions import Expressions
from pplang.compiler.check.scopes import ArgSpec, LoopCtx, Names, Scope, type_text
from pplang.compiler.check.signatures import Signatures
from pplang.compiler.check.statements import Statements
from pplang.compiler.check.types import Types
from pplang.compiler.diagnostics import PplError
from pplang.compiler.frontend import syntax as S
from pplang.compiler.ir import Ty
from pplang.compiler.names import address_var, py_name, var_address

if TYPE_CHECKING:
    from pplang.compiler.check.checker import Checker


class DeclLowering(Statements, Expressions, Signatures, Arrays, Types, Names):
    """Lowers one model or guide (with its submodels inlined)."""

    def __init__(self, checker: Checker, decl: S.Decl):
        self.c = checker
        self.decl = decl
        self.sites: dict[str, ir.SiteInfo] = {}
        self.arrays: dict[str, ir.ArrayInfo] = {}
        self.params: dict[str, ir.ParamDef] = {}
        self.args: dict[str, ArgSpec] = {}
        self.loops: list[LoopCtx] = []
        self.returns: Ty | None = None
        self.site_vars: set[str] = set()
        self.arm: list[tuple[int, str]] = []  # the branch arms enclosing the current statement
        self.site_arms: dict[str, list[tuple]] = {}  # choice variable -> arm paths that bind it
        self.site_spans: dict[str, S.Span] = {}
        self.inlining: list[str] = []
        self.prefix = ""  # address prefix of the submodel being inlined
        # A submodel called inside loops (`theta[j] ~ group(...)`) writes every choice and array of
        # its body as pieces at the call's index: `lift` is that index (one entry per enclosing loop),
        # `lifted` maps each such array to the index of its piece, so a read of the callee's `a`
        # becomes `theta__a[j]`, this iteration's piece.
        self.lift: tuple[ir.Expr, ...] = ()
        self.lifted: dict[str, tuple[ir.Expr, ...]] = {}
        self.aliases: dict[str, ir.Expr] = {}  # callee argument -> the caller's static int it stands for
        self.callee_args: set[str] = set()  # inlined callees' arguments, which cannot be reassigned
        self.checks: list[ir.SizeCheck] = []
        # index checks on arrays built piece by piece, waiting for the array's final size: (check, array, axis)
        self.pending: list[tuple[ir.SizeCheck, str, int]] = []
        self.array_spans: dict[str, S.Span] = {}  # where each array built piece by piece is first written
        self.networks: set[str] = set()  # the networks this declaration calls

    def err(self, message: str, span: S.Span, **kw: str | None) -> PplError:
        return self.c.err(message, span, **kw)

    def run(self) -> ir.Function:
        scope = Scope()
        arg_list = []
        for a in self.decl.args:
            if py_name(a.name) in scope.vars:
                raise self.err(f"argument `{a.name}` is declared twice", a.span, hint="rename one of them")
            spec = self.arg_spec(a, scope)
            self.check_new_name(a.name, a.span)
            self.args[a.name] = spec
            scope.vars[py_name(a.name)] = spec.ty
            arg_list.append((a.name, spec.ty))
        body = self.block(self.decl.body, scope, prefix="", top=True)
        for info in self.arrays.values():
            info.shape = scope.lookup(info.name).shape if scope.lookup(info.name) else info.shape
        self.resolve_checks()
        fn = ir.Function(
            self.decl.kind,
            self.decl.name,
            arg_list,
            body,
            self.sites,
            self.arrays,
            self.params,
            self.returns,
            self.decl.span,
        )
        for a in self.decl.args:
            spec = self.args[a.name]
            fn.arg_constraints[a.name] = spec.constraint
            fn.arg_spans[a.name] = a.span
            fn.arg_types[a.name] = type_text(a.type) if a.type is not None else "any"
        fn.checks = self.checks
        fn.networks = sorted(self.networks)
        fn.values = self.computed_values(scope, body)
        return fn

    def computed_values(self, scope: Scope, body: list[ir.Stmt]) -> list[tuple[str, str]]:
        """The values the declaration names at its top level (or builds as arrays) that are neither
        arguments, random choices nor parameters, and its return value (`return`, unless it returns
        one of those names): what a result keeps beside the draws."""
        if self.decl.kind == "objective":
            return []
        skip = {py_name(a) for a in self.args} | {address_var(a) for a in self.sites} | set(self.params)
        out = [(var, var_address(var)) for var, ty in scope.vars.items()
               if var not in skip and not var.startswith("_") and ty.kind in ("int", "real", "bool", "unknown")]
        ret = next((s.value for s in body if isinstance(s, ir.Ret)), None)
        named = {address_var(a) for a in self.sites} | {v for v, _ in out}
        if ret is not None and not (isinstance(ret, ir.Var) and ret.name in named):
            out.append(("_ret", "return"))
        return out
