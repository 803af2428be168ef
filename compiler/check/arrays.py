"""Arrays written piece by piece: where a piece may be written (its loop variables plus constants),
the extent that makes each array's size static, and reads that must stay inside the array (checked
now where the sizes are numbers, else recorded as `SizeCheck`s verified when data is bound)."""

from __future__ import annotations

from pplang.compiler import analysis, ir
from pplang.compiler.check import shapes as sh
from pplang.compiler.check.scopes import Scope, expr_span
from pplang.compiler.check.shapes import dim_code, loop_offset, show_expr
from pplang.compiler.check.sizes import decided, violation
from pplang.compiler.frontend import syntax as S
from pplang.compiler.ir import Ty
from pplang.compiler.names import py_name


class Arrays:
    """Mixin of `DeclLowering`: indexed targets and the arrays they build."""

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
            self.array_spans[name] = target.span
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

    def check_index(self, v: ir.Expr, base: ir.Expr, axis: int, dim: ir.Dim, e: S.Index, ix: S.Expr) -> None:
        """Record what index `v`, on `axis` of `base`, needs to stay inside the array: `x[i + c]` in
        `for i in range(a, b)` reads up to `b - 1 + c`; a static index (`x[5]`, `x[K]`) one element;
        int data (`mu[g[i]]`, `mu[g[i] - 1]`) the values it holds. Each is a `SizeCheck`, decided
        now when its sizes are numbers and otherwise when data is bound. An array built piece by piece
        grows while it is written: its checks wait for its final size (`resolve_checks`)."""
        built = base.name if isinstance(base, ir.Var) and base.name in self.arrays else None
        if built is None and dim is None:
            return
        name = e.value.id if isinstance(e.value, S.Name) else "the value"
        span = expr_span(ix)
        what = show_expr(v)
        off = loop_offset(v, [lp.var for lp in self.loops])
        if off is not None:
            loop = next(lp for lp in reversed(self.loops) if lp.var == off[0])
            first = sh.dim_add(dim_code(loop.start), off[1])
            if isinstance(first, int) and first < 0:
                raise self.err(
                    f"index `{what}` starts at {first}, before the start of `{name}`",
                    span,
                    hint="start the loop later, e.g. range(1, T) for x[t - 1]",
                )
            last = sh.dim_add(dim_code(loop.stop), off[1])
            check = ir.SizeCheck("<=", last, dim, f"index `{what}` must stay within `{name}`", span,
                                 loop=(dim_code(loop.start), dim_code(loop.stop)))
        elif v.ty.static and v.ty.kind == "int" and v.ty.shape == ():
            lit = sh.literal(v)
            lhs = int(lit) if lit is not None else dim_code(v)
            check = ir.SizeCheck("index", lhs, dim, f"index `{what}` must address an element of `{name}`", span)
        else:
            data = self.index_data(v)
            if data is None:
                return
            arg, shift, region = data
            check = ir.SizeCheck("values", shift, dim, f"index data `{arg}` must stay within `{name}`", span,
                                 data=arg, region=region)
        if built is not None:
            self.pending.append((check, built, axis))
        else:
            self.require(check)

    def index_data(self, v: ir.Expr) -> tuple[str, int, tuple[tuple[ir.Dim, ir.Dim] | None, ...]] | None:
        """`(argument, c, region)` when index `v` is int data of the declaration plus a constant:
        `g[i]`, `g[i] - 1`, `g[k, j]`, or a whole array `g` (each of its values indexes). The region
        is the part of `g` read: per axis the range of a loop variable plus a constant, one element
        at a constant, or all of it."""
        shift = 0
        if isinstance(v, ir.Op) and v.op in ("+", "-") and len(v.args) == 2:
            a, b = v.args
            if isinstance(b, ir.Const) and type(b.value) is int:
                shift, v = (b.value if v.op == "+" else -b.value), a
            elif v.op == "+" and isinstance(a, ir.Const) and type(a.value) is int:
                shift, v = a.value, b
            else:
                return None
        if isinstance(v, ir.Index) and isinstance(v.base, ir.Var):
            var, indices = v.base, v.indices
        elif isinstance(v, ir.Var):
            var, indices = v, ()
        else:
            return None
        args = {py_name(a): a for a in self.args}
        if var.name not in args or var.name in self.callee_args or var.ty.kind != "int" or not var.ty.shape:
            return None
        loops = {lp.var: lp for lp in self.loops}
        region: list[tuple[ir.Dim, ir.Dim] | None] = []
        for ix in indices:
            off = None if isinstance(ix, ir.SliceIx) else loop_offset(ix, list(loops))
            lit = None if isinstance(ix, ir.SliceIx) else sh.literal(ix)
            if off is not None:
                lp = loops[off[0]]
                region.append((sh.dim_add(dim_code(lp.start), off[1]), sh.dim_add(dim_code(lp.stop), off[1])))
            elif lit is not None and lit >= 0:
                region.append((int(lit), int(lit) + 1))
            else:
                region.append(None)
        return args[var.name], shift, tuple(region)

    def require(self, check: ir.SizeCheck) -> None:
        """Keep `check` for when data is bound, or, when its sizes are numbers, decide it now."""
        if not decided(check):
            self.checks.append(check)
            return
        failed = violation(check, {})
        if failed is not None:
            found, hint = failed
            raise self.err(check.message, check.span, found=found, hint=hint)

    def resolve_checks(self) -> None:
        """Once every piece is written: the index checks on arrays built piece by piece get the
        array's final size; then the sizes of those arrays must not be negative."""
        for check, name, axis in self.pending:
            info = self.arrays[name]
            if axis < len(info.lead):
                dim = info.lead[axis]
            elif info.shape is not None and axis < len(info.shape):
                dim = info.shape[axis]
            else:
                dim = None
            if dim is not None:
                check.rhs = dim
                self.require(check)
        self.pending = []
        for name, info in self.arrays.items():
            user = name.split("__")[-1]
            for d in info.lead:
                if isinstance(d, str):
                    self.require(ir.SizeCheck("size", d, None, f"the size of `{user}` must not be negative",
                                              self.array_spans.get(name, self.decl.span)))
        seen, kept = set(), []
        for c in self.checks:
            key = (c.op, c.lhs, c.rhs, c.data, c.region, c.loop)
            if key not in seen:
                seen.add(key)
                kept.append(c)
        self.checks[:] = kept
