"""Name resolution, types and shapes; lowers the checked surface syntax to the IR.

Checking and lowering are one walk so that every IR node is built from a node whose type is
known. All user errors raise `PplError` with the location of the offending source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pplang import syntax as S
from pplang.compiler import analysis, ir
from pplang.compiler import shapes as sh
from pplang.compiler.ir import INT, UNKNOWN, Ty
from pplang.compiler.names import address_var, py_name
from pplang.diagnostics import PplError, did_you_mean, error
from pplang.stdlib import distributions as dists
from pplang.stdlib import networks as nets
from pplang.stdlib.mathfns import FUNCTIONS

# Names other languages use for pplang's functions, for the hint of an unknown function.
SYNONYMS = {"len": "size", "length": "size", "num_elements": "size", "std": "sd", "var": "variance",
            "log_sum_exp": "logsumexp", "expit": "sigmoid", "lbeta": "lgamma",
            "gammaln": "lgamma", "power": "pow", "mat_mul": "matmul", "crossprod": "matmul",
            "concatenate": "concat", "append": "concat", "rep_vector": "ones", "eye": "identity",
            "diag": "diag_matrix", "inv": "inverse", "tcrossprod": "matmul", "square_root": "sqrt"}
STRATEGIES = ("reparam", "reinforce", "mvd", "enum")
SCALAR_TYPES = {"int": "int", "real": "real", "bool": "bool", "positive": "real", "unit": "real"}
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


class Checker:
    """Checks one program; `lower(name)` returns the IR of one declaration."""

    def __init__(self, program: S.Program, hosts: dict[str, object] | None = None):
        self.program = program
        self.src = program.source
        self.hosts = {name: nets.as_network(v) for name, v in (hosts or {}).items()}
        self.decls: dict[str, S.Decl] = {}
        for d in program.decls:
            if d.name in self.decls:
                raise self.err(
                    f"`{d.name}` is declared twice", d.span, hint=f"first declared at {self.decls[d.name].span}"
                )
            self.decls[d.name] = d
        for n in program.networks:
            if n.name in self.decls or n.name in self.hosts:
                where = self.decls[n.name].span if n.name in self.decls else "by the caller (hosts)"
                raise self.err(f"`{n.name}` is declared twice", n.span, hint=f"first declared {where}")
            self.hosts[n.name] = self.network(n)

    def network(self, n: S.NetworkDecl) -> nets.Network:
        """The network a `network name = block(options)` declaration builds; options are int
        literals, lists of them, or activation names."""
        e = n.value
        blocks = ", ".join(f"{b}(...)" for b in nets.BLOCKS)
        if not isinstance(e, S.Call) or e.func not in nets.BLOCKS:
            raise self.err(f"network `{n.name}` must be built from a standard block", expr_span(e),
                           hint=did_you_mean(e.func, nets.BLOCKS) if isinstance(e, S.Call) else None
                           or f"blocks: {blocks}; or bind an equinox module by name from Python")
        cls, names = nets.BLOCKS[e.func]
        if e.args:
            raise self.err(f"`{e.func}` takes its options by name", expr_span(e.args[0]),
                           hint=f"for example {e.func}(out_size=2, hidden=[64, 64], activation=relu); "
                           f"options: {', '.join(names)}")
        options: dict[str, object] = {}
        for k in e.kwargs:
            if k.name not in names:
                raise self.err(f"`{e.func}` has no option `{k.name}`", k.span,
                               hint=did_you_mean(k.name, names) or f"options: {', '.join(names)}")
            options[k.name] = self.network_option(e.func, k)
        if "out_size" not in options:
            raise self.err(f"`{e.func}` needs `out_size`", e.span, hint=f"for example {e.func}(out_size=2, ...)")
        return cls(**options)

    def network_option(self, block: str, k: S.Keyword) -> object:
        v = k.value
        if k.name in ("activation", "final"):
            if not isinstance(v, S.Name) or v.id not in nets.ACTIVATIONS:
                raise self.err(f"`{k.name}` must name an activation", expr_span(v),
                               hint=(did_you_mean(v.id, nets.ACTIVATIONS) if isinstance(v, S.Name) else None)
                               or f"activations: {', '.join(nets.ACTIVATIONS)}")
            return v.id
        items = v.items if k.name == "hidden" and isinstance(v, S.VectorLit) else [v]
        if k.name == "hidden" and not isinstance(v, S.VectorLit):
            raise self.err("`hidden` is a list of layer widths", expr_span(v), hint="for example hidden=[64, 64]")
        for x in items:
            if not (isinstance(x, S.Num) and isinstance(x.value, int) and x.value > 0):
                raise self.err(f"`{k.name}` of `{block}` must be a positive int literal", expr_span(x),
                               hint="network sizes are fixed when the file is compiled")
        return tuple(x.value for x in items) if k.name == "hidden" else items[0].value

    # ------------------------------------------------------------ helpers

    def err(self, message: str, span: S.Span, **kw: str | None) -> PplError:
        return error(message, span, self.src, **kw)

    def check_all(self) -> dict[str, ir.Function]:
        """Check and lower every declaration."""
        return {d.name: self.lower_objective(d.name) if d.kind == "objective" else self.lower(d.name)
                for d in self.program.decls}

    def lower_objective(self, name: str) -> ir.Function:
        return ObjectiveLowering(self, self.decls[name]).run()

    def lower(self, name: str) -> ir.Function:
        if name not in self.decls:
            raise error(
                f"no model or guide named `{name}` in {self.program.file}",
                hint=did_you_mean(name, self.decls) or f"declared here: {', '.join(self.decls) or 'nothing'}",
            )
        decl = self.decls[name]
        if decl.kind == "objective":
            raise self.err(
                f"`{name}` is an objective, not a model or guide",
                decl.span,
                hint="objectives are used when fitting; name a model or guide here",
            )
        return DeclLowering(self, decl).run()


def expr_span(e: S.Expr | S.Slice) -> S.Span:
    return getattr(e, "span", S.NO_SPAN)


class DeclLowering:
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
        return fn

    def check_new_name(self, name: str, span: S.Span) -> None:
        if name.startswith("_"):
            raise self.err(
                f"names starting with `_` are reserved: `{name}`", span, hint="rename it without the leading underscore"
            )

    # ------------------------------------------------------------ types

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
        return dim_code(v)

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

    # ------------------------------------------------------------ statements

    def block(self, stmts: list[S.Stmt], scope: Scope, prefix: str, top: bool = False) -> list[ir.Stmt]:
        out: list[ir.Stmt] = []
        for k, s in enumerate(stmts):
            if isinstance(s, S.Return):
                if not top or k != len(stmts) - 1:
                    raise self.err(
                        "`return` must be the last statement of the declaration",
                        s.span,
                        hint="compute the value into a variable and return it at the end",
                    )
            out.extend(self.stmt(s, scope, prefix))
        return out

    def stmt(self, s: S.Stmt, scope: Scope, prefix: str) -> list[ir.Stmt]:
        if isinstance(s, S.Assign):
            return [self.assign(s, scope, prefix)]
        if isinstance(s, S.Sample):
            return self.sample(s, scope, prefix)
        if isinstance(s, S.Param):
            return [self.param(s, scope, prefix)]
        if isinstance(s, S.Factor):
            v = self.expr(s.value, scope)
            self.require_numeric(v, s.value, "factor")
            return [ir.Factor(v, s.span)]
        if isinstance(s, S.For):
            return [self.loop(s, scope, prefix)]
        if isinstance(s, S.If):
            return [self.branch(s, scope, prefix)]
        if isinstance(s, S.Return):
            v = self.expr(s.value, scope) if s.value is not None else None
            if not self.inlining:
                self.returns = v.ty if v is not None else None
            return [ir.Ret(v, s.span)]
        raise self.err(
            f"unsupported statement {type(s).__name__}",
            getattr(s, "span", S.NO_SPAN),
            hint="see docs/language.md for the statements pplang supports",
        )

    def var_name(self, name: str, prefix: str) -> str:
        return address_var(prefix + name)

    def assign(self, s: S.Assign, scope: Scope, prefix: str) -> ir.Stmt:
        value = self.expr(s.value, scope)
        if value.ty.kind in ("dist",):
            raise self.err(
                "a distribution can only be used on the right of `~`",
                s.value.span,
                hint="draw from it: `x ~ dist(...)`",
            )
        if isinstance(s.target, S.Name):
            name = self.var_name(s.target.id, prefix)
            self.check_assignable(s.target.id, name, s.target.span, scope)
            scope.assign(name, value.ty)
            return ir.Let(name, value, s.span)
        name, index = self.indexed_target(s.target, scope, prefix)
        self.note_array(name, index, value.ty, s.target, scope, None)
        return ir.Store(name, index, value, s.span)

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

    def indexed_target(self, t: S.Index, scope: Scope, prefix: str) -> tuple[str, tuple[ir.Expr, ...]]:
        """The array and the index a piece is written at; in a submodel called inside loops the
        index starts with the call's (`y[k]` in `theta[j] ~ sub()` is written at `[j, k]`)."""
        if not isinstance(t.value, S.Name):
            raise self.err("cannot assign to this expression", t.span, hint="assign to `name` or `name[i]`")
        user = t.value.id
        name = self.var_name(user, prefix)
        self.check_new_name(user, t.value.span)
        if self.is_arg(name):
            raise self.err(f"`{user}` is an argument and cannot be assigned", t.span, hint="assign to a new array name")
        index = []
        for ix in t.indices:
            if isinstance(ix, S.Slice):
                raise self.err("slices cannot be assigned to", ix.span, hint="assign element by element in a loop")
            v = self.expr(ix, scope)
            if v.ty.kind != "int" or v.ty.shape != ():
                raise self.err(
                    "an index must be an int",
                    expr_span(ix),
                    expected="int",
                    found=str(v.ty),
                    hint="convert with to_int(...)",
                )
            index.append(v)
        index = list(self.lift) + index
        self.check_write_index(index, t)
        return name, tuple(index)

    def check_write_index(self, index: list[ir.Expr], t: S.Index) -> None:
        """Inside loops, piece k is written at `loop variable k + constant` (outermost loop first);
        outside loops at constants. So sizes are static and loops can be vectorized. The positions
        of a submodel call's index (`self.lift`) were checked at the call."""
        skip = len(self.lift)
        index, loops = index[skip:], self.loops[skip:]
        if not loops:
            for v, ix in zip(index, t.indices):
                if not v.ty.static:
                    raise self.err(
                        "outside a loop, an array piece must be written at a constant index",
                        expr_span(ix),
                        found=show_expr(v),
                        hint="write it inside a loop over that index, or at a number such as x[0]",
                    )
            return
        want = ", ".join(lp.user for lp in loops)
        hint = f"write `{t.value.id}[{want}]` (each loop variable in order, plus a constant if needed)"
        if len(index) < len(loops):
            raise self.err(
                f"inside {len(loops)} nested loop(s), `{t.value.id}` needs at least "
                f"{len(loops)} index(es), one per loop",
                t.span,
                found=f"{len(index)} index(es)",
                hint=hint,
            )
        for v, ix, lp in zip(index, t.indices, loops):
            if loop_offset(v, [lp.var]) is None:
                raise self.err(
                    "an array piece must be written at its loop variable plus a constant",
                    expr_span(ix),
                    expected=f"{lp.user} or {lp.user} + c",
                    found=show_expr(v),
                    hint=hint,
                )
        for v, ix in zip(index[len(loops) :], t.indices[len(loops) :]):
            if not v.ty.static:
                raise self.err(
                    "indices after the loop variables must be constants", expr_span(ix), found=show_expr(v), hint=hint
                )

    def write_extent(self, index: tuple[ir.Expr, ...]) -> tuple[ir.Dim, ...]:
        """The size each index position needs: `stop + c` of its loop, or `constant + 1`."""
        out = []
        loops = {lp.var: lp for lp in self.loops}
        for v in index:
            off = loop_offset(v, list(loops))
            if off is not None:
                var, c = off
                out.append(sh.dim_add(dim_code(loops[var].stop), c))
            elif isinstance(v, ir.Const):
                out.append(int(v.value) + 1)
            else:
                out.append(sh.dim_add(dim_code(v), 1))
        return tuple(out)

    def note_array(
        self, name: str, index: tuple[ir.Expr, ...], elem: Ty, target: S.Index, scope: Scope, address: str | None
    ) -> None:
        extent = self.write_extent(index)
        cur = scope.lookup(name)
        info = self.arrays.get(name)
        if info is None:
            if cur is not None:
                raise self.err(
                    f"`{target.value.id}` already holds a value and cannot be written piece by piece",
                    target.span,
                    hint="use a new name for the array",
                )
            shape = extent + (elem.shape if elem.shape is not None else ())
            if elem.shape is None:
                shape = None
            self.arrays[name] = ir.ArrayInfo(name, shape, elem.kind, address, extent)
            if self.lift:
                self.lifted[name] = self.lift
            # arrays live in the outermost scope: pieces written in loops are visible after them
            root = scope
            while root.parent is not None:
                root = root.parent
            root.vars[name] = Ty(elem.kind, shape)
            return
        if (info.address is None) != (address is None):
            raise self.err(
                f"`{target.value.id}` mixes random choices and assignments",
                target.span,
                hint="use one array for the choices and another for computed values",
            )
        n = max(len(info.lead), len(extent))
        info.lead = tuple(
            sh.dim_max(a, b) if a is not None and b is not None else (a if b is None else b)
            for a, b in zip(info.lead + (None,) * (n - len(info.lead)), extent + (None,) * (n - len(extent)))
        )
        old = cur.shape if cur is not None else None
        if old is not None and len(old) < len(extent):
            raise self.err(
                f"`{target.value.id}` is written with {len(extent)} indices here but has {len(old)} dimensions",
                target.span,
                hint="write every piece with the same number of indices",
            )
        if old is not None:
            lead = tuple(sh.dim_max(a, b) for a, b in zip(old[: len(extent)], extent))
            rest = old[len(extent) :]
            if elem.shape is not None and len(rest) != len(elem.shape):
                raise self.err(
                    f"pieces of `{target.value.id}` have different shapes",
                    target.span,
                    expected=sh.show(rest),
                    found=sh.show(elem.shape),
                    hint="every piece of an array must have the same shape",
                )
            new = lead + rest
            info.shape = new
            root = scope
            while root.parent is not None:
                root = root.parent
            root.vars[name] = Ty(info.kind, new)

    def sample(self, s: S.Sample, scope: Scope, prefix: str) -> list[ir.Stmt]:
        call = s.dist
        if call.func in self.c.decls:
            return self.submodel(s, scope, prefix)
        if call.func not in dists.SIGNATURES:
            names = list(dists.SIGNATURES) + [d for d, x in self.c.decls.items() if x.kind == "model"]
            hint = did_you_mean(call.func, names)
            close = [n for n in dists.SIGNATURES if hint and f"`{n}`" in hint]
            if close:
                hint += "\n        " + "\n        ".join(dists.describe(n) for n in close)
            hint = hint or "distributions: " + ", ".join(sorted(dists.SIGNATURES))
            raise self.err(f"unknown distribution `{call.func}`", call.func_span or call.span, hint=hint)
        dist, sig = self.dist_call(call, scope)
        user = s.target.id if isinstance(s.target, S.Name) else s.target.value.id  # type: ignore[union-attr]
        address = prefix + user
        strategy = self.strategy(s, sig)
        if isinstance(s.target, S.Name):
            if len(self.loops) > len(self.lift):
                raise self.err(
                    f"random choice `{user}` inside a loop needs an index",
                    s.target.span,
                    hint=f"write `{user}[{self.loops[-1].user}] ~ ...` so each iteration has its own address",
                )
            name = self.var_name(user, prefix)
            self.check_assignable(user, name, s.target.span, scope)
            redrawn = name in self.lifted and self.exclusive(name)  # in the other arm of a branch
            if scope.lookup(name) is not None and not redrawn:
                raise self.err(f"`{user}` already holds a value", s.target.span, hint="use a new name")
            if self.lift:  # a choice of a submodel called inside loops: this iteration's piece
                index = self.lift
                self.note_array(name, index, dist.value_ty, piece_target(s.target), scope, address)
                shape = self.arrays[name].shape
            else:
                index = None
                shape = dist.value_ty.shape
                scope.assign(name, dist.value_ty)
        else:
            name, index = self.indexed_target(s.target, scope, prefix)
            if name in self.site_vars and name not in self.arrays:
                raise self.err(
                    f"`{user}` is a random choice and cannot be reassigned",
                    s.target.span,
                    hint="use a new name for the new values",
                )
            self.note_array(name, index, dist.value_ty, s.target, scope, address)
            shape = self.arrays[name].shape
        exclusive = self.exclusive(name)
        self.site_vars.add(name)
        self.site_arms.setdefault(name, []).append(tuple(self.arm))
        self.site_spans.setdefault(name, s.span)
        prev = self.sites.get(address)
        if prev is not None and index is None and not exclusive:
            raise self.err(f"address `{address}` is used twice", s.span, hint=f"first used at {prev.span}")
        if prev is None or index is not None:
            self.sites[address] = ir.SiteInfo(
                address,
                shape,
                sig.value_kind,
                sig.support,
                dist_flag(sig, "reparameterized"),
                dist_flag(sig, "enumerable"),
                call.func,
                prev.span if prev else s.span,
                strategy,
            )
        return [ir.Sample(address, name, index, dist, strategy, s.span)]

    def strategy(self, s: S.Sample, sig: object) -> str | None:
        if s.via is None:
            return None
        if s.via not in STRATEGIES:
            raise self.err(
                f"unknown gradient strategy `{s.via}`",
                s.span,
                hint=did_you_mean(s.via, STRATEGIES) or "strategies: " + ", ".join(STRATEGIES),
            )
        if s.via == "reparam" and not dist_flag(sig, "reparameterized"):
            raise self.err(
                f"`{s.dist.func}` cannot be reparameterized",
                s.span,
                hint="use `via reinforce`, `via mvd` or (for finite supports) `via enum`",
            )
        if s.via == "enum" and not dist_flag(sig, "enumerable"):
            raise self.err(
                f"`{s.dist.func}` has no finite support to enumerate", s.span, hint="use `via reinforce` or `via mvd`"
            )
        return s.via

    def dist_call(self, call: S.Call, scope: Scope) -> tuple[ir.Dist, object]:
        args = [self.expr(a, scope) for a in call.args]
        kwargs = {k.name: self.expr(k.value, scope) for k in call.kwargs}
        sig = self.match_signature(call, args, kwargs)
        bound = bind_signature(sig, args, kwargs)
        batch: list[ir.Shape] = []
        event: ir.Shape = ()
        for spec in sig.params:
            v = bound.get(spec.name)
            if v is None:
                continue
            self.check_param_kind(call, spec, v)
            if v.ty.shape is None:
                batch.append(None)
                continue
            if len(v.ty.shape) < spec.event_rank:
                raise self.err(
                    f"argument `{spec.name}` of `{call.func}` must have at least {spec.event_rank} dimension(s)",
                    call.span,
                    expected=spec.kind,
                    found=str(v.ty),
                    hint=f"signatures: {dists.describe(call.func)}",
                )
            cut = len(v.ty.shape) - spec.event_rank
            batch.append(v.ty.shape[:cut])
            if sig.event_rank and spec.event_rank:
                event = v.ty.shape[cut : cut + sig.event_rank] if spec.event_rank >= sig.event_rank else event
        self.assume_equal(tuple(batch), call.span, f"the arguments of `{call.func}`")
        try:
            bshape = sh.broadcast(*batch) if batch else ()
        except sh.ShapeError as e:
            raise self.err(
                f"the arguments of `{call.func}` have shapes that do not fit together: {e}",
                call.span,
                hint=f"signatures: {dists.describe(call.func)}",
            ) from None
        if sig.event_rank and not event:
            event = self.event_from_size(sig, bound)
        vshape = None if bshape is None or event is None else bshape + event
        value_ty = Ty(sig.value_kind, vshape)
        dist = ir.Dist(call.func, tuple(args), tuple(kwargs.items()), value_ty)
        return dist, sig

    def event_from_size(self, sig: object, bound: dict) -> ir.Shape:
        """A value whose shape no argument's shape gives (`lkj_cholesky(3, ...)` is 3 x 3) takes its
        event size from the static int argument; unknown otherwise."""
        for spec in sig.params:
            v = bound.get(spec.name)
            if spec.kind == "int" and v is not None and v.ty.static and v.ty.shape == ():
                return (dim_code(v),) * sig.event_rank
        return None

    def match_signature(self, call: S.Call, args: list, kwargs: dict) -> object:
        sigs = dists.SIGNATURES[call.func]
        for sig in sigs:
            if bind_signature(sig, args, kwargs) is not None:
                return sig
        found = ", ".join([str(a.ty) for a in args] + [f"{k}={v.ty}" for k, v in kwargs.items()])
        names = sorted({p.name for sig in sigs for p in sig.params})
        unknown = [k for k in kwargs if k not in names]
        hint = "check the number and names of the arguments"
        if unknown:
            near = did_you_mean(unknown[0], names)
            hint = f"`{call.func}` has no parameter `{unknown[0]}`; its parameters are {', '.join(names)}"
            hint += f" ({near})" if near else ""
        raise self.err(
            f"no form of `{call.func}` takes these arguments",
            call.span,
            expected=dists.describe(call.func),
            found=f"{call.func}({found})",
            hint=hint,
        )

    def check_param_kind(self, call: S.Call, spec: object, v: ir.Expr) -> None:
        if v.ty.kind in ("unknown",):
            return
        if v.ty.kind not in ("int", "real", "bool"):
            raise self.err(
                f"argument `{spec.name}` of `{call.func}` must be a number",
                call.span,
                found=str(v.ty),
                hint=f"signatures: {dists.describe(call.func)}",
            )
        if isinstance(v, (ir.Const, ir.Op)) and literal(v) is not None:
            x = literal(v)
            bad = (spec.kind == "positive" and x <= 0) or (spec.kind == "unit" and not 0 <= x <= 1)
            if bad:
                want = "> 0" if spec.kind == "positive" else "between 0 and 1"
                raise self.err(
                    f"argument `{spec.name}` of `{call.func}` must be {want}",
                    call.span,
                    expected=f"{spec.name}: {spec.kind}",
                    found=repr(x),
                    hint=f"signatures: {dists.describe(call.func)}",
                )
        if spec.kind == "int" and v.ty.kind == "real":
            raise self.err(
                f"argument `{spec.name}` of `{call.func}` must be an int",
                call.span,
                expected="int",
                found=str(v.ty),
                hint="use an int value or to_int(...)",
            )

    def submodel(self, s: S.Sample, scope: Scope, prefix: str) -> list[ir.Stmt]:
        """Inline a model's body with its addresses prefixed by the target (`u/a`). Inside loops
        (`theta[j] ~ group(...)`) every choice and array of the body is written as this
        iteration's piece (`theta/a` gets shape `(J,) + shape of a`) and the return value is the
        piece `theta[j]`."""
        call = s.dist
        callee = self.c.decls[call.func]
        if callee.kind != "model":
            raise self.err(
                f"`{call.func}` is a {callee.kind}; only models can be called with `~`",
                call.span,
                hint="a submodel must be declared with `model`",
            )
        if s.via is not None:
            raise self.err(
                f"`via {s.via}` cannot apply to a submodel call",
                s.span,
                hint=f"put the strategy on the random choices inside `{call.func}`",
            )
        if call.func in self.inlining or call.func == self.decl.name:
            raise self.err(
                f"`{call.func}` calls itself; recursive models are not supported",
                call.span,
                hint="write the repetition as a loop",
            )
        if call.kwargs or len(call.args) != len(callee.args):
            raise self.err(
                f"`{call.func}` takes {len(callee.args)} argument(s)",
                call.span,
                expected=f"{call.func}({', '.join(a.name for a in callee.args)})",
                found=f"{len(call.args) + len(call.kwargs)} argument(s)",
                hint=f"pass one value for each argument of `{call.func}`, by position",
            )
        user, name, index = self.call_target(s, scope, prefix)
        inner = prefix + user + "/"
        sub_scope = Scope(parent=None)
        out: list[ir.Stmt] = []
        # callee sizes may refer to its arguments: bind them first, in order
        for a, actual in zip(callee.args, call.args):
            v = self.expr(actual, scope)
            nm = self.var_name(a.name, inner)
            sub_scope.vars[nm] = v.ty
            self.callee_args.add(nm)
            if v.ty.kind == "int" and v.ty.static and v.ty.shape == ():
                self.aliases[nm] = v  # sizes inside the callee are then the caller's (`N`, not `u__N`)
            else:
                out.append(ir.Let(nm, v, actual.span))
        self.inlining.append(call.func)
        saved = self.args, self.prefix, self.lift
        self.args, self.prefix, self.lift = {}, inner, index
        body = self.block(callee.body, sub_scope, inner, top=True)
        self.args, self.prefix, self.lift = saved
        self.inlining.pop()
        ret = None
        for st in body:
            if isinstance(st, ir.Ret):
                ret = st.value
            else:
                out.append(st)
        if ret is not None and index:
            self.note_array(name, index, ret.ty, piece_target(s.target), scope, None)
            out.append(ir.Store(name, index, ret, s.span))
        elif ret is not None:
            out.append(ir.Let(name, ret, s.span))
            scope.assign(name, ret.ty)
            self.site_vars.add(name)
        # the callee's arrays are visible in its own (inlined) scope only
        return out

    def call_target(self, s: S.Sample, scope: Scope, prefix: str) -> tuple[str, str, tuple[ir.Expr, ...]]:
        """The name a submodel call binds, its variable, and the index of its piece: none at the
        top level; inside loops one index per enclosing loop (`theta[j]`, `z[i, j]`), so that
        the callee's own loops and constant indices can follow it."""
        own = self.loops[len(self.lift) :]  # loops of the declaration being inlined or lowered
        if isinstance(s.target, S.Name):
            user = s.target.id
            if own:
                want = ", ".join(lp.user for lp in own)
                raise self.err(
                    "a submodel call inside a loop needs an index",
                    s.target.span,
                    hint=f"write `{user}[{want}] ~ {s.dist.func}(...)` so each iteration has its own addresses",
                )
            name = self.var_name(user, prefix)
            self.check_assignable(user, name, s.target.span, scope)
            return user, name, self.lift
        name, index = self.indexed_target(s.target, scope, prefix)
        user = s.target.value.id  # type: ignore[union-attr]
        found = len(index) - len(self.lift)
        if found != len(own):
            if own:
                want = ", ".join(lp.user for lp in own)
                message = f"inside {len(own)} loop(s), a submodel call's target takes exactly {len(own)} index(es)"
                hint = f"write `{user}[{want}] ~ {s.dist.func}(...)`: one loop variable per loop, nothing after"
            else:
                message = "outside loops, a submodel call's target must be a plain name"
                hint = f"write `{user} ~ {s.dist.func}(...)`"
            raise self.err(message, s.target.span, expected=f"{len(own)} index(es)", found=f"{found}", hint=hint)
        return user, name, index

    def param(self, s: S.Param, scope: Scope, prefix: str) -> ir.Stmt:
        if self.lift:
            raise self.err(
                "a submodel called inside a loop cannot declare a `param`",
                s.span,
                hint="declare the parameter in the calling model and pass it to the submodel as an argument",
            )
        if self.loops:
            raise self.err("`param` cannot appear inside a loop", s.span, hint="declare parameters at the top level")
        if isinstance(self.c.hosts.get(s.name), nets.Network):
            raise self.err(f"`{s.name}` is a network; its weights are already parameters", s.span,
                           hint="give the parameter another name")
        init = self.expr(s.init, scope)
        constraint = "real"
        if s.constraint is not None:
            constraint = s.constraint.base
            if constraint not in PARAM_CONSTRAINTS:
                raise self.err(
                    f"unknown parameter constraint `{constraint}`",
                    s.constraint.span,
                    hint=did_you_mean(constraint, PARAM_CONSTRAINTS) or "constraints: " + ", ".join(PARAM_CONSTRAINTS),
                )
        self.require_numeric(init, s.init, "a parameter's initial value")
        name = self.var_name(s.name, prefix)
        self.check_assignable(s.name, name, s.span, scope)
        shape = init.ty.shape
        dims: tuple[ir.Dim, ...] | None = None
        if s.constraint is not None and s.constraint.dims:
            dims = tuple(self.dim_of(d, scope) for d in s.constraint.dims)
            if constraint == "cholesky_corr" and len(dims) == 1:
                dims = (dims[0], dims[0])
            try:
                if sh.broadcast(init.ty.shape, dims) != dims:
                    raise sh.ShapeError("the initial value is larger than the declared shape")
            except sh.ShapeError as err:
                raise self.err(
                    f"the initial value of `{s.name}` does not fit its declared shape: {err}",
                    s.init.span,
                    expected=sh.show(dims),
                    found=sh.show(init.ty.shape),
                    hint="give a scalar (used for every element) or a value of the declared shape",
                ) from None
            shape = dims
        p = ir.ParamDef(name, prefix + s.name, init, constraint, s.span, dims)
        self.params[name] = p
        scope.assign(name, Ty("real", shape))
        return p

    def loop(self, s: S.For, scope: Scope, prefix: str) -> ir.Stmt:
        start = self.expr(s.start, scope)
        stop = self.expr(s.stop, scope)
        for e, v in ((s.start, start), (s.stop, stop)):
            if v.ty.kind != "int" or v.ty.shape != () or not v.ty.static:
                raise self.err(
                    "loop bounds must be ints known before the model runs",
                    expr_span(e),
                    expected="an int argument, a number or a size such as size(x)",
                    found=str(v.ty),
                    hint="declare the bound as an `int` argument",
                )
        self.check_new_name(s.var, s.span)
        self.demote(s.body, scope, prefix)
        var = self.var_name(s.var, prefix)
        if scope.lookup(var) is not None:
            what = "an enclosing loop's variable" if any(lp.var == var for lp in self.loops) else "already a name"
            raise self.err(
                f"loop variable `{s.var}` is {what}",
                s.span,
                hint="give the loop variable a name of its own, e.g. j",
            )
        inner = Scope(parent=scope)
        inner.vars[var] = INT
        self.loops.append(LoopCtx(var, start, stop, s.span, s.var))
        body = self.block(s.body, inner, prefix)
        self.loops.pop()
        self.demote(s.body, scope, prefix)
        self.check_whole_reads(body, s.var)
        return ir.Loop(var, start, stop, body, s.span)

    def check_whole_reads(self, body: list[ir.Stmt], var: str) -> None:
        """Reading a whole array inside the loop that is still building it would see unwritten
        elements; only pieces (`mu[i]`, `x[t - 1]`) can be read there. A read that stops before
        this loop's position (`y[j]` inside `for k` building `y[j, k]`) is whole along it too."""
        pos = len(self.loops)  # this loop's position in the index of the pieces it writes
        want = ", ".join([lp.user for lp in self.loops[len(self.lift) :]] + [var])
        building = {n for n, key in analysis.writes(body) if key is not None}
        for st in analysis.walk(body):
            if isinstance(st, (ir.Loop, ir.Branch)):
                continue
            for n, key in analysis.reads([st]):
                if (key is None or len(key) <= pos) and n in building:
                    user = n.split("__")[-1]
                    raise self.err(
                        f"`{user}` is read as a whole inside the loop that is still building it",
                        st.span,
                        hint=f"read single elements such as {user}[{want}], or move this after the loop",
                    )

    def branch(self, s: S.If, scope: Scope, prefix: str) -> ir.Stmt:
        cond = self.expr(s.cond, scope)
        if cond.ty.kind not in ("bool", "int", "unknown") or cond.ty.shape not in ((), None):
            raise self.err(
                "an `if` condition must be a single bool",
                s.cond.span,
                expected="bool",
                found=str(cond.ty),
                hint="for elementwise choices use where(cond, a, b)",
            )
        if not cond.ty.static:  # values assigned under a traced condition are selected when running
            self.demote(s.then + s.orelse, scope, prefix)
        a, b = Scope(parent=scope), Scope(parent=scope)
        bid = id(s)
        self.arm.append((bid, "then"))
        then = self.block(s.then, a, prefix)
        self.arm[-1] = (bid, "else")
        orelse = self.block(s.orelse, b, prefix)
        self.arm.pop()
        if not cond.ty.static:
            self.demote(s.then + s.orelse, scope, prefix)
        for nm in set(a.vars) & set(b.vars):
            ta, tb = a.vars[nm], b.vars[nm]
            static = ta.static and tb.static and cond.ty.static
            scope.vars[nm] = Ty(ta.kind if ta.kind == tb.kind else "real", ta.shape, static)
        return ir.Branch(cond, then, orelse, cond.ty.static, s.span)

    def demote(self, body: list[S.Stmt], scope: Scope, prefix: str) -> None:
        """Variables defined before `body` and reassigned in it are no longer known while tracing
        (a loop carries them, a traced branch selects them): mark them so before checking it."""
        for name in assigned_names(body):
            var = self.var_name(name, prefix)
            ty = scope.lookup(var)
            if ty is not None and ty.static:
                scope.assign(var, Ty(ty.kind, ty.shape, False))

    # ------------------------------------------------------------ expressions

    def require_numeric(self, v: ir.Expr, e: S.Expr, what: str) -> None:
        if v.ty.kind not in ("int", "real", "bool", "unknown"):
            raise self.err(f"{what} must be a number", e.span, found=str(v.ty), hint="use an int, real or bool value")

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

    def network_call(self, e: S.Call, scope: Scope) -> ir.Expr:
        """`net(x)`: one input, mapped over its leading dimensions beyond one example's."""
        net = self.c.hosts[e.func]
        if len(e.args) != 1 or e.kwargs:
            raise self.err(f"network `{e.func}` takes one input", e.span, hint=f"`{e.func}(x)`")
        x = self.expr(e.args[0], scope)
        if x.ty.kind == "bool":
            raise self.err(f"network `{e.func}` takes a real input, not a bool", expr_span(e.args[0]),
                           hint="convert it: `1.0 * x`")
        self.networks.add(e.func)
        shape = x.ty.shape
        rank = net.input_rank
        if shape is None or rank is None or net.out_size is None:
            return ir.HostCall(e.func, (x,), (), UNKNOWN, network=True)
        if len(shape) < rank:
            raise self.err(f"network `{e.func}` takes inputs with at least {rank} dimension(s)",
                           expr_span(e.args[0]), found=str(x.ty), hint="pass a vector (one example) or a batch")
        in_size = getattr(net, "in_size", None)
        if rank and in_size is not None and isinstance(shape[-1], int) and shape[-1] != in_size:
            raise self.err(f"network `{e.func}` takes inputs of size {in_size}", expr_span(e.args[0]),
                           found=str(x.ty), expected=f"real[..., {in_size}]",
                           hint="change the network's in_size, or leave it out to take the input's size")
        out = shape[:len(shape) - rank] + (net.out_size,)
        return ir.HostCall(e.func, (x,), (), Ty("real", out), network=True)

    def call(self, e: S.Call, scope: Scope) -> ir.Expr:
        fn = e.func
        head = fn.split(".")[0]
        if isinstance(self.c.hosts.get(fn), nets.Network):
            return self.network_call(e, scope)
        if head in self.c.hosts:
            args = tuple(self.expr(a, scope) for a in e.args)
            kwargs = tuple((k.name, self.expr(k.value, scope)) for k in e.kwargs)
            return ir.HostCall(fn, args, kwargs, UNKNOWN)
        if fn in dists.SIGNATURES:
            raise self.err(
                f"`{fn}` is a distribution; it can only appear on the right of `~`",
                e.span,
                hint=f"draw it: `x ~ {fn}(...)`; for its density use factor(...) with a math function",
            )
        if fn in self.c.decls:
            raise self.err(
                f"`{fn}` is a {self.c.decls[fn].kind}; call it as a random choice", e.span, hint=f"`x ~ {fn}(...)`"
            )
        if fn == "factor":
            raise self.err("`factor` is a statement, not a value", e.span, hint="write `factor(expr)` on its own line")
        if fn not in FUNCTIONS:
            known = list(FUNCTIONS) + list(self.c.hosts) + list(dists.SIGNATURES)
            synonym = SYNONYMS.get(fn)
            raise self.err(
                f"unknown function `{fn}`",
                e.func_span if e.func_span.line else e.span,
                hint=(f"pplang calls this `{synonym}`: {synonym}(...)" if synonym else None)
                or did_you_mean(fn, known)
                or "host functions must be bound by the caller: pp.load(file, hosts={...}), "
                "or declared with --host NAME on the command line",
            )
        spec = FUNCTIONS[fn]
        if e.kwargs:
            raise self.err(
                f"`{fn}` takes no keyword arguments", e.kwargs[0].span, hint="pass the arguments by position"
            )
        lo, hi = spec.arity
        if not lo <= len(e.args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise self.err(
                f"`{fn}` takes {want} argument(s)",
                e.span,
                expected=f"{want} argument(s)",
                found=f"{len(e.args)} argument(s)",
                hint=f"{fn}: {spec.doc}",
            )
        args = tuple(self.expr(a, scope) for a in e.args)
        return ir.Call(fn, args, self.call_type(e, spec, args))

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
            if not (isinstance(base, ir.Var) and base.name in self.arrays):  # built piecewise: size grows
                self.check_loop_index(v, dim, e.value, ix)
            if v.ty.shape:
                out_dims.extend(v.ty.shape)
            elif v.ty.shape is None:
                return ir.Index(base, tuple(idx) + (v,), Ty(base_ty.kind, None))
            static = static and v.ty.static
            idx.append(v)
        rest = shape[len(e.indices) :] if shape is not None else None
        out = None if rest is None else tuple(out_dims) + rest
        return ir.Index(base, tuple(idx), Ty(base_ty.kind, out, static and out == ()))

    def check_loop_index(self, v: ir.Expr, dim: ir.Dim, base: S.Expr, ix: S.Expr) -> None:
        """`x[i + c]` in `for i in range(a, b)` reads up to `b - 1 + c`: record that it must fit."""
        off = loop_offset(v, [lp.var for lp in self.loops])
        if off is None or dim is None:
            return
        loop = next(lp for lp in reversed(self.loops) if lp.var == off[0])
        last = sh.dim_add(dim_code(loop.stop), off[1])
        first = sh.dim_add(dim_code(loop.start), off[1])
        what = show_expr(v)
        if isinstance(last, int) and isinstance(dim, int):
            if last > dim:
                raise self.err(
                    f"index `{what}` runs past the end of an axis of size {dim}",
                    expr_span(ix),
                    expected=f"at most {dim - 1}",
                    found=f"up to {last - 1}",
                    hint="check the loop's range against the array's size",
                )
        else:
            self.checks.append(
                ir.SizeCheck("<=", last, dim, f"index `{what}` must stay within the array", expr_span(ix))
            )
        if isinstance(first, int) and first < 0:
            raise self.err(
                f"index `{what}` starts at {first}, before the start of the array",
                expr_span(ix),
                hint="start the loop later, e.g. range(1, T) for x[t - 1]",
            )

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


# ---------------------------------------------------------------- small helpers


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


def dist_flag(sig: object, flag: str) -> bool:
    return bool(getattr(sig.constructor, flag, getattr(sig, flag, False)))


def bind_signature(sig: object, args: list, kwargs: dict) -> dict | None:
    """Bind call arguments to a signature's parameters, or None if they do not fit."""
    params = sig.params
    positional = [p for p in params if not getattr(p, "keyword_only", False)]
    if len(args) > len(positional):
        return None
    bound = {p.name: a for p, a in zip(positional, args)}
    for k, v in kwargs.items():
        if k in bound or k not in {p.name for p in params}:
            return None
        bound[k] = v
    for p in params:
        if p.name not in bound and p.default is None:
            return None
    return bound


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
