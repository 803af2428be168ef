"""Arrays written piece by piece: where a piece may be written (its loop variables plus constants),
the extent that makes each array's size static, and reads that must stay inside the array."""

from __future__ import annotations

from pplang.compiler import analysis, ir
from pplang.compiler.check import shapes as sh
from pplang.compiler.check.scopes import Scope, expr_span
from pplang.compiler.check.shapes import dim_code, loop_offset, show_expr
from pplang.compiler.frontend import syntax as S
from pplang.compiler.ir import Ty


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
