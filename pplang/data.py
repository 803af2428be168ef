"""Binding run-time data to a declaration: arguments and observations, checked before JAX runs.

Data is one mapping by name, as in Stan's JSON data format: entries named like an argument of the
declaration are its arguments, entries named like a random choice's address are observations.
Every problem (a missing argument, a wrong shape or type, a value outside its constraint, a name
the model does not have) is a located `PplError` that names the declaration and gives a hint.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pplang.budget import check_budget
from pplang.compiler import analysis, ir
from pplang.compiler.diagnostics import DataNote, PplError, did_you_mean, error
from pplang.compiler.dims import eval_dim, eval_shape
from pplang.compiler.frontend.syntax import Span
from pplang.compiler.names import address_var, py_name

# Membership tests by constraint name, for an argument's declared constraint and an observed
# choice's support alike: (test, what the values must be).
IN_SUPPORT = {
    "bool": (lambda a: np.all((a == 0) | (a == 1)), "0 or 1"),
    "nonnegative_int": (lambda a: np.all(a >= 0), "whole numbers >= 0"),
    "int_interval": (lambda a: np.all(a >= 0), "whole numbers >= 0"),
    "real": (lambda a: np.all(np.isfinite(a)), "finite"),
    "positive": (lambda a: np.all(a > 0), "positive"),
    "unit": (lambda a: np.all((a >= 0) & (a <= 1)), "in [0, 1]"),
    "simplex": (lambda a: np.all(a >= 0) and np.allclose(np.sum(a, axis=-1), 1.0, atol=1e-5), "a simplex"),
    "ordered": (lambda a: np.all(np.diff(a, axis=-1) > 0), "strictly increasing"),
    "positive_ordered": (lambda a: np.all(a > 0) and np.all(np.diff(a, axis=-1) > 0), "positive and increasing"),
    "cholesky_corr": (
        lambda a: a.ndim >= 2 and a.shape[-1] == a.shape[-2] and np.allclose(np.triu(a, 1), 0)
        and np.all(np.diagonal(a, axis1=-2, axis2=-1) > 0) and np.allclose(np.sum(a * a, axis=-1), 1.0, atol=1e-5),
        "the Cholesky factor of a correlation matrix (lower triangular, positive diagonal, rows of length 1)",
    ),
}


@dataclass
class Bound:
    """Arguments split into static ones (ints and bools that size arrays and drive loops) and
    array ones, plus the observations by address."""

    static: dict[str, Any]
    arrays: dict[str, Any]
    observed: dict[str, Any]

    def digest(self, *extra: Mapping[str, Any]) -> str:
        """A hash of the bound values (and of `extra` named values): equal data, equal digest. Keys
        caches of what was built for this data, and checkpoints to the run that wrote them."""
        h = hashlib.sha256(json.dumps(sorted(self.static.items()), default=str).encode())
        for group in (self.observed, self.arrays, *extra):
            for name in sorted(group):
                if group[name] is not None:
                    value = np.asarray(group[name])
                    h.update(f"{name}:{value.dtype}:{value.shape}".encode())
                    h.update(value.tobytes())
        return h.hexdigest()[:16]


def fingerprint(data: Mapping[str, Any]) -> tuple | None:
    """A key that is equal for equal data and cheap to compute, so repeated calls with the same data
    reuse its binding: NumPy arrays and lists by a hash of their bytes, numbers and strings by value,
    JAX arrays (immutable) by identity, which holds only while the caller keeps them alive (the
    caches keyed by it hold the arrays). None when a value is none of these: nothing is cached."""
    parts: list[Any] = [str(jnp.result_type(float))]  # float64 mode converts the same data differently
    for name, value in sorted(data.items(), key=lambda kv: str(kv[0])):
        if not isinstance(name, str):
            return None
        if isinstance(value, jax.core.Tracer):  # inside a transformation: a value of this trace only
            return None
        if isinstance(value, jax.Array):
            parts.append((name, "jax", id(value)))
        elif isinstance(value, (bool, int, float, str)) or value is None:
            parts.append((name, type(value).__name__, value))
        else:
            try:
                arr = np.ascontiguousarray(value)
            except (ValueError, TypeError):
                return None
            if arr.dtype == object:
                return None
            digest = hashlib.blake2b(arr.reshape(-1).view(np.uint8), digest_size=16)
            parts.append((name, arr.dtype.str, arr.shape, digest.hexdigest()))
    return tuple(parts)


def load_data(path: str) -> dict[str, Any]:
    """Read a data file: Stan-format JSON, or NumPy's .npz (named arrays, for large collections such
    as image data sets; read without pickles, so a file cannot run code)."""
    if not str(path).endswith(".npz"):
        return load_json(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    except (OSError, ValueError) as e:
        raise error(f"cannot read data file {path}: {e}", hint="an .npz file written by numpy.savez, holding "
                    "numeric arrays by name") from None


def load_json(path: str) -> dict[str, Any]:
    """Read a Stan-format JSON data file into a dict of numbers and nested lists."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise error(f"cannot read data file {path}: {e.strerror}", hint="check the path") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"data file is not valid JSON: {e.msg}", Span(path, e.lineno, e.colno, e.lineno, e.colno + 1),
                    text, hint="Stan's JSON data format: an object mapping names to numbers or arrays") from None
    if not isinstance(data, dict):
        raise error(f"data file {path} must hold a JSON object", hint='for example {"N": 3, "y": [1, 0, 1]}')
    return data


def bind(fn: ir.Function, data: Mapping[str, Any], source: str, *, observations: bool = True,
         strict: bool = True) -> Bound:
    """Check `data` against `fn` and convert it. `observations=False` ignores entries that name
    random choices (prior simulation). Entries the declaration lacks are ignored (data files often
    carry extras, as posteriordb's do) with a `DataNote` warning, unless `strict=False`."""
    static: dict[str, Any] = {}
    arrays: dict[str, Any] = {}
    observed: dict[str, Any] = {}
    where = f"{fn.kind} `{fn.name}`"
    if not isinstance(data, Mapping):
        raise error(f"data for {where} must be a mapping from names to values, not {type(data).__name__}",
                    fn.span, source, hint='for example {"N": 3, "y": [1.0, 2.0, 3.0]}')
    for name in data:
        if not isinstance(name, str):
            raise error(f"data names must be strings, got {name!r}", fn.span, source,
                        hint="name each entry after an argument or a random choice")
    known = [a for a, _ in fn.args] + list(fn.sites)
    for name in data:
        if name in dict(fn.args) or name in fn.sites:
            continue
        if not strict:
            continue
        if address_var(name) in computed(fn) or name in fn.params:
            raise error(f"`{name}` is computed by {where}, not a random choice; it cannot be observed",
                        fn.span, source, hint="observe the random choice it is computed from instead")
        hint = did_you_mean(name, known) or (f"arguments: {', '.join(a for a, _ in fn.args) or 'none'}; "
                                             f"random choices: {', '.join(fn.sites) or 'none'}")
        warnings.warn(f"the data has `{name}`, which {where} neither takes as an argument nor draws; ignored ({hint})",
                      DataNote, stacklevel=2)
    for name, ty in fn.args:
        span = fn.arg_spans.get(name, fn.span)
        if name not in data:
            raise error(f"missing data for argument `{name}` of {where}", span, source,
                        expected=f"{name}: {fn.arg_types.get(name, ty)}",
                        hint=f"add \"{name}\" to the data")
        value = convert_arg(name, ty, data[name], fn, span, source)
        if ty.static or (ty.kind == "unknown" and isinstance(value, (int, bool))):
            static[name] = value
        else:
            arrays[name] = value
    env = {py_name(k): v for k, v in {**static, **arrays}.items()}
    check_declared_shapes(fn, env, source)
    check_sizes(fn, env, source)
    check_budget(fn, env, source)
    if observations:
        for addr, info in fn.sites.items():
            if addr in data:
                observed[addr] = convert_obs(addr, info, data[addr], env, source)
    return Bound(static, arrays, observed)


def as_array(name: str, value: Any, span: Span, source: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        arr = None
    if arr is None or arr.dtype == object or arr.dtype.kind not in "biuf":
        raise error(f"data for `{name}` is not a number or a rectangular array of numbers", span, source,
                    found=type(value).__name__, hint="nested lists must all have the same length")
    return arr


def convert_arg(name: str, ty: ir.Ty, value: Any, fn: ir.Function, span: Span, source: str) -> Any:
    arr = as_array(name, value, span, source)
    declared = fn.arg_types.get(name, str(ty))
    if ty.shape is not None and arr.ndim != len(ty.shape):
        raise error(f"data for `{name}` has {arr.ndim} dimension(s) but `{name}: {declared}` has {len(ty.shape)}",
                    span, source, expected=declared, found=f"shape {arr.shape}",
                    hint=reshape_hint(arr.shape, len(ty.shape)))
    if ty.kind == "int" and arr.dtype.kind == "b":
        raise error(f"data for `{name}` must be whole numbers, not true/false", span, source, expected=declared,
                    found=str(value), hint="write 0 or 1, or declare the argument as bool")
    if ty.kind in ("int", "bool") and arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise error(f"data for `{name}` must be whole numbers", span, source, expected=declared,
                        found="non-integer values")
        arr = arr.astype(np.int64)
    constraint = fn.arg_constraints.get(name)
    if constraint in IN_SUPPORT and arr.size:
        ok, text = IN_SUPPORT[constraint]
        if not ok(arr):
            raise error(f"data for `{name}` must be {text}", span, source, expected=declared,
                        found=f"values from {arr.min():g} to {arr.max():g}")
    if ty.static or (ty.kind == "unknown" and arr.ndim == 0 and arr.dtype.kind in "biu"):
        if ty.kind == "bool" or arr.dtype.kind == "b":
            return bool(arr)
        if abs(int(arr)) > 2**31 - 1:
            raise error(f"data for `{name}` is too large: {int(arr)}", span, source, expected="a 32-bit int",
                        hint="sizes and counts must fit in 32 bits")
        return int(arr)
    if ty.kind == "int":
        return jnp.asarray(arr, jnp.int32)
    if ty.kind == "bool":
        return jnp.asarray(arr, bool)
    if ty.kind == "real":
        return jnp.asarray(arr, float)
    return jnp.asarray(arr)


def check_declared_shapes(fn: ir.Function, env: dict[str, Any], source: str) -> None:
    """Sizes in declarations (`vector[N]`) must agree with the data given for them."""
    for name, ty in fn.args:
        if ty.shape is None or not ty.shape:
            continue
        want = eval_shape(ty.shape, env)
        have = np.shape(env[py_name(name)])
        if want is not None and any(w is not None and w != h for w, h in zip(want, have)):
            span = fn.arg_spans.get(name, fn.span)
            raise error(f"data for `{name}` has shape {have} but its declaration needs {show(want)}", span, source,
                        expected=f"{name}: {fn.arg_types.get(name)} = {show(want)}", found=str(have),
                        hint="check the sizes given in the data against this array")


def check_sizes(fn: ir.Function, env: dict[str, Any], source: str) -> None:
    """Verify the size relations the checker recorded, now that the sizes are known."""
    for c in fn.checks:
        lhs, rhs = eval_dim(c.lhs, env), eval_dim(c.rhs, env)
        if lhs is None or rhs is None:
            continue
        ok = lhs == rhs if c.op == "==" else lhs <= rhs
        if not ok:
            if c.op == "==":
                found = f"{c.lhs} = {lhs} but {c.rhs} = {rhs}"
                hint = "the data gives these two sizes different values"
            else:
                found = f"the loop reaches {lhs - 1} but the size is {rhs}"
                hint = "check the loop's range against the array's size in the data"
            raise error(f"{c.message} (with this data)", c.span, source, found=found, hint=hint)


def convert_obs(addr: str, info: ir.SiteInfo, value: Any, env: dict[str, Any], source: str) -> Any:
    arr = as_array(addr, value, info.span, source)
    want = eval_shape(info.shape, env)
    if want is not None and (len(want) != arr.ndim or any(w is not None and w != h for w, h in zip(want, arr.shape))):
        raise error(f"observed `{addr}` has shape {arr.shape} but the model draws shape {show(want)}", info.span,
                    source, expected=show(want), found=str(arr.shape), hint=reshape_hint(arr.shape, len(want)))
    if info.kind in ("int", "bool"):
        if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
            raise error(f"observed `{addr}` must be whole numbers for `{info.dist}`", info.span, source,
                        found="non-integer values", hint="observe counts or 0/1 outcomes as integers")
    check_support(addr, info, arr, source)
    if info.kind == "bool":  # checked to be 0 or 1: bool, as the choice's own draws are
        return jnp.asarray(arr, bool)
    if info.kind == "int":
        return jnp.asarray(arr, jnp.int32)
    return jnp.asarray(arr, float)


def check_support(addr: str, info: ir.SiteInfo, arr: np.ndarray, source: str) -> None:
    """Observed values outside the choice's support would make the density zero (or NaN)."""
    check = IN_SUPPORT.get(info.support)
    if check is None or arr.size == 0:
        return
    ok, text = check
    if not ok(arr):
        raise error(f"observed `{addr}` must be {text} for `{info.dist}`", info.span, source,
                    expected=f"values that are {text}", found=f"values from {arr.min():g} to {arr.max():g}",
                    hint=f"`{info.dist}` gives zero probability to values outside its support")


def computed(fn: ir.Function) -> set[str]:
    """Variables the declaration computes (not arguments, not random choices)."""
    choices = {address_var(a) for a in fn.sites}
    return {n for n, _ in analysis.writes(fn.body)} - choices


def reshape_hint(shape: tuple, rank: int) -> str | None:
    if len(shape) == rank + 1 and shape[-1] == 1:
        return "the data has a trailing axis of size 1: flatten it, e.g. a list of numbers rather than of 1-lists"
    if len(shape) + 1 == rank:
        return "the data is missing an axis: give a nested list"
    return None


def show(shape: tuple | None) -> str:
    if shape is None:
        return "(?)"
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


__all__ = ["Bound", "PplError", "bind", "load_data", "load_json"]
