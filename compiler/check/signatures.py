"""Signatures: distribution calls matched against the standard library's signatures, gradient
strategies, math and host function calls, and networks (declared blocks and their calls)."""

from __future__ import annotations

from pplang.compiler import ir
from pplang.compiler.check import shapes as sh
from pplang.compiler.check.scopes import Scope, expr_span
from pplang.compiler.check.shapes import dim_code, literal
from pplang.compiler.diagnostics import did_you_mean
from pplang.compiler.frontend import syntax as S
from pplang.compiler.ir import UNKNOWN, Ty
from pplang.compiler.names import py_name
from pplang.stdlib import networks as nets
from pplang.stdlib import signatures as dists
from pplang.stdlib.mathfns import FUNCTIONS

SYNONYMS = {"len": "size", "length": "size", "num_elements": "size", "std": "sd", "var": "variance",
            "expit": "sigmoid", "lbeta": "lgamma",
            "gammaln": "lgamma", "power": "pow", "mat_mul": "matmul", "crossprod": "matmul",
            "concatenate": "concat", "append": "concat", "rep_vector": "ones", "eye": "identity",
            "diag": "diag_matrix", "inv": "inverse", "tcrossprod": "matmul", "square_root": "sqrt"}
STRATEGIES = ("reparam", "reinforce", "mvd", "enum")


class Signatures:
    """Mixin of `DeclLowering`: calls of distributions, functions, hosts and networks."""

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

    def network_call(self, e: S.Call, scope: Scope) -> ir.Expr:
        """`net(x)`: one input, mapped over its leading dimensions beyond one example's; a set
        network takes one set (see `set_call`)."""
        net = self.c.hosts[e.func]
        if len(e.args) != 1 or e.kwargs:
            raise self.err(f"network `{e.func}` takes one input", e.span, hint=f"`{e.func}(x)`")
        x = self.expr(e.args[0], scope)
        if x.ty.kind == "bool":
            raise self.err(f"network `{e.func}` takes a real input, not a bool", expr_span(e.args[0]),
                           hint="convert it: `1.0 * x`")
        self.networks.add(e.func)
        shape = x.ty.shape
        set_axis = self.set_axis(shape)
        if isinstance(net, nets.SetNetwork):
            return self.set_call(e, net, x, set_axis)
        if set_axis is not None:
            size = shape[set_axis]
            raise self.err(f"network `{e.func}` is not permutation-invariant, but its input is a set of `{size}` "
                           "points", expr_span(e.args[0]), found=str(x.ty),
                           hint=f"`{size}` is declared a `size`: its points are exchangeable and their number "
                           "varies, so encode them with a set block, e.g. `network enc = deep_sets(out_size=8)` "
                           "or `set_transformer(out_size=8)`")
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

    def set_axis(self, shape: ir.Shape) -> int | None:
        """The axis of an input sized by a `size` argument (a set's points), if any."""
        sizes = {py_name(a) for a, spec in self.args.items() if spec.declared is not None
                 and spec.declared.base == "size" and not spec.declared.dims}
        axes = [i for i, d in enumerate(shape or ()) if isinstance(d, str) and d in sizes]
        return axes[0] if axes else None

    def set_call(self, e: S.Call, net: nets.SetNetwork, x: ir.Expr, axis: int | None) -> ir.Expr:
        """`net(x)` of a set network: x is one set, a vector of points or a matrix with one axis of
        points (the one sized by a `size` argument, else the first), and the output one vector."""
        shape = x.ty.shape
        if shape is not None and len(shape) not in (1, 2):
            raise self.err(f"set network `{e.func}` takes one set: a vector of points, or a matrix of points and "
                           "their features", expr_span(e.args[0]), found=str(x.ty),
                           hint=f"stack per-point values as `{e.func}([x, y])`")
        size = shape[axis] if axis is not None and shape is not None else None
        ty = Ty("real", (net.out_size,)) if net.out_size is not None else UNKNOWN
        return ir.HostCall(e.func, (x,), (), ty, network=True, size=size, axis=axis or 0)

    def call(self, e: S.Call, scope: Scope) -> ir.Expr:
        fn = e.func
        head = fn.split(".")[0]
        hidden = next((part for part in fn.split(".") if part.startswith("_")), None)
        if hidden is not None:  # never reachable, so a host's internals (`__class__`, ...) stay out of reach
            raise self.err(f"`{fn}`: names beginning with `_` are not reachable from a model", e.span,
                           hint="call a host function or one of its public attributes (`net.encoder(x)`)")
        if isinstance(self.c.hosts.get(fn), nets.Network):
            return self.network_call(e, scope)
        if head in self.c.hosts:
            args = tuple(self.expr(a, scope) for a in e.args)
            kwargs = tuple((k.name, self.expr(k.value, scope)) for k in e.kwargs)
            return ir.HostCall(fn, args, kwargs, UNKNOWN)
        base, _, suffix = fn.rpartition("_")
        if fn not in FUNCTIONS and suffix in ("lpdf", "lpmf") and base in dists.SIGNATURES:
            return self.log_prob_call(e, base, suffix, scope)
        if fn in dists.SIGNATURES:
            raise self.err(
                f"`{fn}` is a distribution; it can only appear on the right of `~`",
                e.span,
                hint=f"draw it: `x ~ {fn}(...)`; for its log density write `{fn}_lpdf(x, ...)` (`_lpmf` if discrete)",
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
        if spec.rule == "ode":
            return self.ode_call(e, scope)
        if spec.rule == "reduce" and len(e.args) == 2:
            return self.reduce_along(e, scope)
        args = tuple(self.expr(a, scope) for a in e.args)
        return ir.Call(fn, args, self.call_type(e, spec, args))

    def reduce_along(self, e: S.Call, scope: Scope) -> ir.Expr:
        """`sum(x, 1)`, `logsumexp(lp, -1)`: a reduction along one axis, given as a whole number
        written in the call (the result's shape must be known before running)."""
        x = self.expr(e.args[0], scope)
        a = e.args[1]
        neg = isinstance(a, S.UnaryOp) and a.op == "-" and isinstance(a.operand, S.Num)
        num = a.operand if neg else a
        if not isinstance(num, S.Num) or not isinstance(num.value, int) or isinstance(num.value, bool):
            hint = f"for example {e.func}(x, 0) over rows, {e.func}(x, -1) over the last axis"
            if e.func in ("max", "min"):
                hint = f"the {'larger' if e.func == 'max' else 'smaller'} of two values is {e.func}imum(a, b); " + hint
            raise self.err(f"the axis of `{e.func}` must be a whole number written in the call", expr_span(a),
                           hint=hint)
        axis = -num.value if neg else num.value
        shape = x.ty.shape
        if shape is not None and not -len(shape) <= axis < len(shape):
            raise self.err(f"`{e.func}` along axis {axis} of a value with {len(shape)} axes", expr_span(a),
                           found=str(x.ty), hint=f"axes run from {-len(shape)} to {len(shape) - 1}"
                           if shape else "a number has no axis: leave the axis out")
        out = None if shape is None else shape[:axis % len(shape)] + shape[axis % len(shape) + 1:]
        kind = self.call_type(e, FUNCTIONS[e.func], (x,)).kind
        return ir.Call(e.func, (x, ir.Const(axis, Ty("int", (), True))), Ty(kind, out))

    def log_prob_call(self, e: S.Call, name: str, suffix: str, scope: Scope) -> ir.Expr:
        """`normal_lpdf(y, mu, sigma)`, `poisson_lpmf(k, rate)`: the distribution's log density of
        the first argument, summed over its elements (as Stan's functions of these names)."""
        if not e.args:
            raise self.err(f"`{e.func}` takes the value first, then the distribution's arguments", e.span,
                           hint=f"for example {e.func}(y, ...) for log {name}(...) at y")
        value = self.expr(e.args[0], scope)
        self.require_numeric(value, e.args[0], "the value")
        dist, _ = self.dist_call(S.Call(name, e.args[1:], e.kwargs, e.span, e.func_span), scope)
        discrete = dist.value_ty.kind in ("int", "bool")
        if discrete != (suffix == "lpmf"):
            right = f"{name}_{'lpmf' if discrete else 'lpdf'}"
            raise self.err(f"`{name}` is {'discrete' if discrete else 'continuous'}: its log "
                           f"{'mass' if discrete else 'density'} function is `{right}`", e.span,
                           hint=f"write {right}(...)")
        if value.ty.shape is not None and dist.value_ty.shape is not None:
            self.bcast(e, value.ty.shape, dist.value_ty.shape)
        return ir.DistLogProb(dist, value, Ty("real", ()))

    def ode_call(self, e: S.Call, scope: Scope) -> ir.Expr:
        """`ode_rk45(f, y0, t0, ts, ...)`: `f` names a model of this file that draws nothing and
        returns dy/dt given (t, y, ...); the value has one row per time of `ts`."""
        head = e.args[0]
        if not isinstance(head, S.Name) or self.c.decls.get(head.id, None) is None \
                or self.c.decls[head.id].kind != "model":
            raise self.err(f"the first argument of `{e.func}` must name the right-hand side, a model of this file",
                           expr_span(head), hint="declare `model f(t: real, y: vector[K], ...):` that returns dy/dt, "
                           f"and write `{e.func}(f, y0, t0, ts, ...)`")
        if head.id == self.decl.name or head.id in self.inlining:
            raise self.err(f"`{head.id}` cannot be its own right-hand side", expr_span(head),
                           hint="write the derivative in a model of its own")
        rhs = self.c.lower(head.id)
        if rhs.sites or rhs.params or rhs.networks:
            raise self.err(f"`{head.id}` draws random choices or has parameters; an ODE's right-hand side only "
                           "computes", expr_span(head), hint="draw the parameters in the calling model and pass them")
        extra = len(e.args) - 4
        if len(rhs.args) != 2 + extra or rhs.returns is None:
            raise self.err(f"`{head.id}` must take (t, y) and the {extra} value(s) passed after ts, and return dy/dt",
                           e.span, found=f"{head.id}({', '.join(a for a, _ in rhs.args)})"
                           + ("" if rhs.returns is not None else " with no return"),
                           hint=f"for example `model {head.id}(t: real, y: vector[K], theta: vector[P]):`")
        args = tuple(self.expr(a, scope) for a in e.args[1:])
        y0, t0, ts = args[:3]
        for v, src, rank, what in ((y0, e.args[1], 1, "y0"), (t0, e.args[2], 0, "t0"), (ts, e.args[3], 1, "ts")):
            self.require_numeric(v, src, what)
            if v.ty.shape is not None and len(v.ty.shape) != rank:
                raise self.err(f"`{what}` of `{e.func}` must be a {'vector' if rank else 'number'}", expr_span(src),
                               found=str(v.ty), hint=f"{e.func}(f, y0: vector[K], t0: real, ts: vector[T], ...)")
        y_ty = rhs.args[1][1]
        for what, got in (("y0", y0.ty.shape), (f"the value `{head.id}` returns", rhs.returns.shape)):
            if not same_shape(got, y_ty.shape):
                raise self.err(f"{what} does not fit the state `{rhs.args[1][0]}` of `{head.id}`", e.span,
                               expected=sh.show(y_ty.shape), found=sh.show(got),
                               hint=f"`{head.id}` returns dy/dt, of the shape of y; y0 has that shape too")
        shape = None if y0.ty.shape is None or ts.ty.shape is None else (ts.ty.shape[0], y0.ty.shape[0])
        return ir.Call(e.func, (ir.Var(py_name(head.id), Ty("function", ())), *args), Ty("real", shape))


def same_shape(a: ir.Shape, b: ir.Shape) -> bool:
    """False only where the shapes surely differ: other ranks, or two different numbers (symbolic
    sizes are checked with the data)."""
    if a is None or b is None:
        return True
    return len(a) == len(b) and all(not (isinstance(x, int) and isinstance(y, int) and x != y) for x, y in zip(a, b))


def dist_flag(sig: object, flag: str) -> bool:
    """A gradient-strategy flag (`reparameterized`, `enumerable`, `has_mvd`) of a signature."""
    return bool(getattr(sig, flag, False))


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
