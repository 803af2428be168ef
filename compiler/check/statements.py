"""Statements: assignments, random choices (and inlined submodels), parameters, loops, branches."""

from __future__ import annotations

from pplang.compiler import ir
from pplang.compiler.check import shapes as sh
from pplang.compiler.check.scopes import PARAM_CONSTRAINTS, LoopCtx, Scope, expr_span, piece_target
from pplang.compiler.check.signatures import dist_flag
from pplang.compiler.diagnostics import did_you_mean
from pplang.compiler.frontend import syntax as S
from pplang.compiler.ir import INT, Ty
from pplang.stdlib import networks as nets
from pplang.stdlib import signatures as dists


class Statements:
    """Mixin of `DeclLowering`: one method per statement kind."""

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
        support, declared = sig.support, s.declared is not None
        if declared:
            dist = self.declared_support(s, dist, scope)
            support = dist.support
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
                support,
                dist_flag(sig, "reparameterized") and not declared,
                dist_flag(sig, "enumerable") and not declared,
                call.func,
                prev.span if prev else s.span,
                strategy,
            )
        return [ir.Sample(address, name, index, dist, strategy, s.span)]

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
