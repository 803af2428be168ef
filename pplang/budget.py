"""Size budgets, checked when data is bound and before anything is traced: a loop of 10^9
iterations or a choice of 10^12 values would otherwise run for minutes or exhaust memory with no
word. With the data known, every loop's trip count (times those of the loops around it) and every
random choice's and built array's number of values are computed and compared with the budgets;
the first one over is a located error that names the loop or value and the budget's variable."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from pplang.compiler import ir
from pplang.compiler.check.shapes import dim_code
from pplang.compiler.diagnostics import error
from pplang.compiler.dims import eval_dim, eval_shape

MAX_ITERATIONS = int(os.environ.get("PPLANG_MAX_ITERATIONS", 10**8))  # of one loop, nested loops multiplied
MAX_ELEMENTS = int(os.environ.get("PPLANG_MAX_ELEMENTS", 10**8))  # values of one choice or array


def check_budget(fn: ir.Function, env: Mapping[str, Any], source: str) -> None:
    """A located error for the first loop, random choice or array of `fn` that exceeds its budget
    with the data in `env` (sizes that cannot be known before running are not counted)."""
    check_loops(fn.body, 1, env, source)
    named = [(a, info.shape, info.span, "random choice") for a, info in fn.sites.items()]
    named += [(a.name, a.shape, fn.span, "array") for a in fn.arrays.values() if a.address is None]
    for name, shape, span, what in named:
        dims = eval_shape(shape, env)
        if dims is None or any(d is None for d in dims):
            continue
        count = math.prod(dims)
        if count > MAX_ELEMENTS:
            raise error(f"{what} `{name}` would hold {count:,} values with this data, more than the budget of "
                        f"{MAX_ELEMENTS:,}", span, source, found=f"shape {tuple(dims)}",
                        hint="check the sizes in the data; to allow more, set PPLANG_MAX_ELEMENTS")


def check_loops(body: list[ir.Stmt], outer: int, env: Mapping[str, Any], source: str) -> None:
    for s in body:
        if isinstance(s, ir.Loop):
            start, stop = (eval_dim(dim_code(e), env) if e.ty.static else None for e in (s.start, s.stop))
            trips = outer if start is None or stop is None else outer * max(stop - start, 0)
            if trips > MAX_ITERATIONS:
                inner = "" if trips == max(stop - start, 0) else " (counting the loops around it)"
                raise error(f"the loop over `{s.var}` would run {trips:,} iterations with this data{inner}, more "
                            f"than the budget of {MAX_ITERATIONS:,}", s.span, source,
                            hint="check the sizes in the data; to allow more, set PPLANG_MAX_ITERATIONS")
            check_loops(s.body, trips, env, source)
        elif isinstance(s, ir.Branch):
            check_loops(s.then, outer, env, source)
            check_loops(s.orelse, outer, env, source)
