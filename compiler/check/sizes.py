"""The size relations the checker records (`ir.SizeCheck`): sizes that must agree or not be
negative, indices that must stay inside the arrays they index. Decided here, by the checker when
their sizes are numbers and by data binding (`pplang.data`) once the data gives the others."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pplang.compiler.dims import eval_dim
from pplang.compiler.ir import Dim, SizeCheck
from pplang.compiler.names import py_name


def violation(c: SizeCheck, env: Mapping[str, Any]) -> tuple[str, str] | None:
    """`(found, hint)` when check `c` fails with the sizes (and, for `values`, the data) in `env`,
    keyed by Python name; None when it holds or cannot be decided (a size it needs is unknown).
    With `env` empty this decides the checks whose sizes are all numbers: the checker's verdict."""
    if c.loop is not None:
        start, stop = eval_dim(c.loop[0], env), eval_dim(c.loop[1], env)
        if start is None or stop is None or stop <= start:  # unknown, or the loop does not run
            return None
    if c.op == "values":
        return _values(c, env)
    lhs = eval_dim(c.lhs, env)
    if c.op == "size":
        if lhs is None or lhs >= 0:
            return None
        return f"{_named(c.lhs, lhs)}", "a size cannot be negative: check the sizes in the data"
    rhs = eval_dim(c.rhs, env)
    if lhs is None or rhs is None:
        return None
    if c.op == "==":
        if lhs == rhs:
            return None
        return f"{c.lhs} = {lhs} but {c.rhs} = {rhs}", "the data gives these two sizes different values"
    if c.op == "<=":
        if lhs <= rhs:
            return None
        return f"the loop reaches {lhs - 1} but the size is {rhs}", "check the loop's range against the array's size"
    if c.op == "entries":
        if lhs <= rhs:
            return None
        return f"{lhs} entries, more than the budget of {rhs}", BUDGET_HINT
    if c.op == "index":
        if -rhs <= lhs < rhs:
            return None
        return f"index {_named(c.lhs, lhs)}, but the axis has size {rhs}", _index_hint(rhs)
    raise ValueError(f"unknown size check {c.op!r}")


# what to do when summing discrete choices out needs a table over the budget (`entries`)
BUDGET_HINT = ("sum out fewer choices at once (marginalize=[...] / --marginalize NAME,... picks them), infer the "
               "others by sampling (`pplang smc`, `pplang infer --method is`), or allow more with "
               "PPLANG_MAX_FACTOR_ENTRIES")


def decided(c: SizeCheck) -> bool:
    """Whether `c` is decided without data: every size it compares is a number."""
    if c.op == "values":
        return False
    dims = [c.lhs] if c.op == "size" else [c.lhs, c.rhs]
    return all(isinstance(d, int) for d in dims + list(c.loop or ()))


def _named(dim: Dim, value: int) -> str:
    return str(value) if isinstance(dim, int) else f"`{dim}` = {value}"


def _index_hint(size: int) -> str:
    if size <= 0:
        return "the axis is empty: there is no element to index"
    return f"indices run from 0 to {size - 1} (or from -{size} to -1, counting from the end)"


def _values(c: SizeCheck, env: Mapping[str, Any]) -> tuple[str, str] | None:
    """The int data `c.data` index an axis of size `c.rhs`: the first value read out of range."""
    size = eval_dim(c.rhs, env)
    data = env.get(py_name(c.data)) if c.data else None
    if size is None or data is None or not isinstance(c.lhs, int):
        return None
    arr = np.asarray(data)
    if arr.dtype.kind not in "biu" or arr.size == 0:
        return None
    part, starts = [], []
    for k, n in enumerate(arr.shape):
        bounds = c.region[k] if k < len(c.region) else None
        lo = hi = None
        if bounds is not None:
            lo, hi = eval_dim(bounds[0], env), eval_dim(bounds[1], env)
        if lo is None or hi is None:
            lo, hi = 0, n
        lo, hi = min(max(lo, 0), n), min(max(hi, 0), n)
        part.append(slice(lo, hi))
        starts.append(lo)
    read = arr[tuple(part)].astype(np.int64)
    ix = read + c.lhs
    bad = (ix < 0) | (ix >= size)
    if not bad.any():
        return None
    first = tuple(int(p) for p in np.argwhere(bad)[0])
    where = ", ".join(str(p + s) for p, s in zip(first, starts))
    value = int(read[first])
    shift = f" (the index {value + c.lhs})" if c.lhs else ""
    found = f"{c.data}[{where}] = {value}{shift}, but the axis has size {size}"
    if size > 0 and np.all((ix >= 1) & (ix <= size)):
        hint = (f"the data look 1-based (every index is from 1 to {size}): subtract 1, since pplang "
                "indexes from 0")
    else:
        low, high = -c.lhs, size - 1 - c.lhs
        hint = (f"the values of `{c.data}` must be from {low} to {high}" if size > 0
                else "the axis is empty: there is no element to index")
    return found, hint
