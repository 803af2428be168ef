"""Binding run-time data to a declaration: arguments and observations, checked before JAX runs.

Data is one mapping by name, as in Stan's JSON data format: entries named like an argument of the
declaration are its arguments, entries named like a random choice's address are observations.
Every problem (a missing argument, a wrong shape or type, a value outside its constraint, a name
the model does not have) is a located `PplError` that names the declaration and gives a hint.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pplang.budget import check_budget
from pplang.compiler import analysis, ir
from pplang.compiler.check.sizes import violation
from pplang.compiler.diagnostics import DataNote, PplError, did_you_mean, error
from pplang.compiler.dims import eval_shape
from pplang.compiler.frontend.syntax import Span
from pplang.compiler.names import address_var, py_name
from pplang.runtime.archives import load_npz

# Membership tests by constraint name, for an argument's declared constraint and an observed
# choice's support alike: (test, what the values must be).
# Membership tests by constraint name, for an argument's declared constraint and an observed
# choice's support alike: (test, what the values must be). A test gives a mask of the values'
# shape when it holds value by value (the first value outside is then named), one bool otherwise.
IN_SUPPORT = {
    "bool": (lambda a: (a == 0) | (a == 1), "0 or 1"),
    "nonnegative_int": (lambda a: a >= 0, "whole numbers >= 0"),
    "int_interval": (lambda a: a >= 0, "whole numbers >= 0"),
    "real": (lambda a: np.isfinite(a), "finite"),
    "positive": (lambda a: a > 0, "positive"),
    "unit": (lambda a: (a >= 0) & (a <= 1), "in [0, 1]"),
    "simplex": (lambda a: np.all(a >= 0) and np.allclose(np.sum(a, axis=-1), 1.0, atol=1e-5), "a simplex"),
    "ordered": (lambda a: np.all(np.diff(a, axis=-1) > 0), "strictly increasing"),
    "positive_ordered": (lambda a: np.all(a > 0) and np.all(np.diff(a, axis=-1) > 0), "positive and increasing"),
    "cholesky_corr": (
        lambda a: a.ndim >= 2 and a.shape[-1] == a.shape[-2] and np.allclose(np.triu(a, 1), 0)
        and np.all(np.diagonal(a, axis1=-2, axis2=-1) > 0) and np.allclose(np.sum(a * a, axis=-1), 1.0, atol=1e-5),
        "the Cholesky factor of a correlation matrix (lower triangular, positive diagonal, rows of length 1)",
    ),
}
INT32 = 2**31 - 1  # ints are 32-bit in models: larger data would wrap around
MISSING = "pplang has no missing values"


def outside(name: str, arr: np.ndarray, test: Any) -> str | None:
    """None when every value of `arr` passes `test`; otherwise what was found: the first value
    outside (`x[3] = -1`) for a value-by-value test, the range of values for another."""
    ok = np.asarray(test(arr))
    if ok.all():
        return None
    if ok.shape != arr.shape:
        return f"values from {arr.min():g} to {arr.max():g}"
    pos = tuple(int(p) for p in np.argwhere(~ok)[0])
    value = arr[pos]
    shown = f"{value:g}" if arr.dtype.kind == "f" else str(value)
    return f"{name}[{', '.join(map(str, pos))}] = {shown}" if pos else f"{name} = {shown}"


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


def merged(data: Any, extra: Mapping[str, Any]) -> Any:
    """`data` with the keyword entries `extra` added (data may be None); anything that is not a
    mapping is passed on as it is, for binding to reject with a located error."""
    if isinstance(data, Mapping):
        return {**data, **extra}
    return dict(extra) if data is None else data


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


# Limits on what a data file may hold; beyond them the file is refused with a located error rather
# than a traceback (or a silently wrapped value).
MAX_DEPTH = 64  # nesting of arrays and objects: NumPy arrays have at most 64 dimensions
INT_DIGITS = 19  # an int64 has at most 19 digits; longer integer literals are not converted at all
INT64 = (-(2**63), 2**63 - 1)
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive's first bytes (with entries, or empty)
JSON_HINT = "Stan's JSON data format: an object mapping names to numbers or arrays"


def load_data(path: str) -> dict[str, Any]:
    """Read a data file: Stan-format JSON, or NumPy's .npz (named arrays, for large collections such
    as image data sets; read without pickles, so a file cannot run code)."""
    if not str(path).endswith(".npz"):
        return load_json(path)
    hint = "an .npz file written by numpy.savez, holding numeric arrays by name"
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as e:
        raise error(f"cannot read data file {path}: {e.strerror}", hint="check the path") from None
    if not head.startswith(ZIP_MAGIC):
        single = head.startswith(b"\x93NUMPY")
        raise error(f"data file {path} is not an .npz archive (a zip file)",
                    found="a single .npy array" if single else f"a file starting with {head[:4]!r}",
                    hint="save named arrays with numpy.savez(path, x=...)" if single else hint)
    try:
        return load_npz(path)  # the entries' inflated size is checked before any is read
    except (OSError, ValueError, EOFError, MemoryError, NotImplementedError, RuntimeError, zipfile.BadZipFile,
            zlib.error) as e:
        raise error(f"cannot read data file {path}: {e}", hint=hint) from None


class _Refused(Exception):
    """Raised by the JSON reader's hooks (an integer outside 64 bits, a name given twice): the file
    is refused, and `refusal` finds where."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > INT_DIGITS:
        raise _Refused
    value = int(text)
    if not INT64[0] <= value <= INT64[1]:
        raise _Refused
    return value


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Refused
    return out


def load_json(path: str) -> dict[str, Any]:
    """Read a Stan-format JSON data file into a dict of numbers and nested lists. A file that is not
    UTF-8, gives an integer outside 64 bits or a name twice in one object, or nests too deeply for
    the reader (reported where it passes `MAX_DEPTH` levels) is refused with an error located in
    the file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise error(f"cannot read data file {path}: {e.strerror}", hint="check the path") from None
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark, as some editors write
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        shown = raw.decode("utf-8", errors="replace")
        line = raw.count(b"\n", 0, e.start) + 1
        col = len(raw[raw.rfind(b"\n", 0, e.start) + 1 : e.start].decode("utf-8", errors="replace")) + 1
        raise error(f"data file is not UTF-8 text: byte 0x{raw[e.start]:02x} at byte offset {e.start} ({e.reason})",
                    Span(str(path), line, col, line, col + 1), shown,
                    hint="save the file as UTF-8; JSON data files are UTF-8 text") from None
    try:
        data = json.loads(text, parse_int=_parse_int, object_pairs_hook=_unique)
    except json.JSONDecodeError as e:
        raise error(f"data file is not valid JSON: {e.msg}", Span(path, e.lineno, e.colno, e.lineno, e.colno + 1),
                    text, hint=JSON_HINT) from None
    except (_Refused, RecursionError):
        raise refusal(str(path), text) from None
    if not isinstance(data, dict):
        raise error(f"data file {path} must hold a JSON object", hint='for example {"N": 3, "y": [1, 0, 1]}')
    return data


_SPACE = re.compile(r"[ \t\r\n]*")
_TOKEN = re.compile(r"([\[\]{}:,])|(\")|(-?\d+)(\.\d+)?([eE][-+]?\d+)?|[A-Za-z]+|-Infinity")


def refusal(path: str, text: str) -> PplError:
    """The error for a JSON text the reader refused: the first integer outside 64 bits, name given
    twice in one object, or level of nesting past `MAX_DEPTH`, in the order of the text. The text is
    valid JSON up to there; it is walked token by token, which only this error path pays for."""
    stack: list[set[str] | None] = []  # per open array (None) or object (its names so far)
    key_next = False
    pos = 0
    while pos < len(text):
        at = _SPACE.match(text, pos).end()
        m = _TOKEN.match(text, at)
        if m is None:
            break
        punct, quote, digits, frac, exp = m.group(1, 2, 3, 4, 5)
        pos = m.end()
        where = _span(path, text, at)
        if punct in ("[", "{"):
            stack.append(set() if punct == "{" else None)
            key_next = punct == "{"
            if len(stack) > MAX_DEPTH + 1:  # levels inside the data file's object
                return error(f"data file nests arrays or objects more than {MAX_DEPTH} deep", where, text,
                             hint="arrays have at most 64 dimensions; Stan data nest a few levels")
        elif punct in ("]", "}"):
            if stack:
                stack.pop()
            key_next = False
        elif punct == ",":
            key_next = bool(stack) and stack[-1] is not None
        elif punct == ":":
            key_next = False
        elif quote:
            value, pos = json.decoder.scanstring(text, pos)
            if key_next and stack and stack[-1] is not None:
                names = stack[-1]
                if value in names:
                    return error(f"data file gives `{value}` twice", _span(path, text, at, pos), text,
                                 hint=f"each name may appear once in an object: remove one `{value}` (JSON readers "
                                 "disagree on which one wins)")
                names.add(value)
            key_next = False
        elif digits is not None and frac is None and exp is None:
            try:
                _parse_int(digits)
            except _Refused:
                n = len(digits.lstrip("-"))
                found = f"{digits[:12]}... ({n} digits)" if n > 24 else digits
                return error("data file has an integer outside the 64-bit range", _span(path, text, at, pos),
                             text, found=found, hint="write a real number such as 1e30 if it is not a count")
    return error(f"data file {path} could not be read: it nests too deeply or holds an unreadable value",
                 hint=JSON_HINT)


def _span(path: str, text: str, start: int, end: int | None = None) -> Span:
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    end_col = col + 1 if end is None or "\n" in text[start:end] else col + min(end - start, 40)
    return Span(path, line, col, line, end_col)


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
        if name not in data:
            raise error(f"missing data for argument `{name}` of {where}", fn.arg_spans.get(name, fn.span), source,
                        expected=f"{name}: {fn.arg_types.get(name, ty)}",
                        hint=f"add \"{name}\" to the data")
    # static arguments (sizes) first: a negative size is the mistake to report, not the shapes it gives
    for first in (True, False):
        for name, ty in fn.args:
            if ty.static != first:
                continue
            value = convert_arg(name, ty, data[name], fn, fn.arg_spans.get(name, fn.span), source)
            if ty.static or (ty.kind == "unknown" and isinstance(value, (int, bool))):
                static[name] = value
            else:
                arrays[name] = value
        if first:
            check_sizes(fn, {py_name(k): v for k, v in static.items()}, source, ("size",))
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
    if arr is not None and arr.dtype == object and any(type(v) is int for v in arr.reshape(-1)):
        raise error(f"data for `{name}` holds an integer outside the 64-bit range", span, source,
                    hint="ints in models are 32-bit; write a real number such as 1e30 if it is not a count")
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
    arr = check_arg_values(name, ty, arr, fn, span, source)
    if ty.static or (ty.kind == "unknown" and arr.ndim == 0 and arr.dtype.kind in "biu"):
        if ty.kind == "bool" or arr.dtype.kind == "b":
            return bool(arr)
        if abs(int(arr)) > INT32:
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


def check_arg_values(name: str, ty: ir.Ty, arr: np.ndarray, fn: ir.Function, span: Span, source: str) -> np.ndarray:
    """The value checks of an argument's data (finite, whole, in 32 bits, inside its constraint),
    entry by entry, so that they hold for any array of its entries (a stack of data sets' values
    too); the array with whole floats of an int or bool argument as ints."""
    declared = fn.arg_types.get(name, str(ty))
    if arr.dtype.kind == "f":
        bad = outside(name, arr, np.isfinite)
        if bad is not None:
            raise error(f"data for `{name}` must be finite numbers", span, source, expected=declared, found=bad,
                        hint=f"{MISSING}: replace NaN and infinite entries, or leave those rows out")
    if ty.kind == "int" and arr.dtype.kind == "b":
        raise error(f"data for `{name}` must be whole numbers, not true/false", span, source, expected=declared,
                    found=str(arr.tolist()), hint="write 0 or 1, or declare the argument as bool")
    if ty.kind in ("int", "bool") and arr.dtype.kind == "f":
        bad = outside(name, arr, lambda a: a == np.round(a))
        if bad is not None:
            raise error(f"data for `{name}` must be whole numbers", span, source, expected=declared, found=bad)
    if ty.kind == "int" and arr.size:
        bad = outside(name, arr, lambda a: np.abs(a) <= INT32)
        if bad is not None:
            raise error(f"data for `{name}` is too large for a 32-bit int", span, source, expected=declared,
                        found=bad, hint="sizes, counts and indices must fit in 32 bits")
    if ty.kind in ("int", "bool") and arr.dtype.kind == "f":
        arr = arr.astype(np.int64)
    constraint = fn.arg_constraints.get(name)
    if constraint in IN_SUPPORT and arr.size:
        test, text = IN_SUPPORT[constraint]
        bad = outside(name, arr, test)
        if bad is not None:
            raise error(f"data for `{name}` must be {text}", span, source, expected=declared, found=bad)
    return arr


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


def check_sizes(fn: ir.Function, env: dict[str, Any], source: str, ops: tuple[str, ...] | None = None) -> None:
    """Verify the size relations the checker recorded (`fn.checks`, those with an op in `ops`), now
    that the sizes are known: sizes must agree and not be negative, indices (static ones, loop
    ranges and int data used as indices) must stay inside the arrays they index."""
    for c in fn.checks:
        if ops is not None and c.op not in ops:
            continue
        failed = violation(c, env)
        if failed is None:
            continue
        found, hint = failed
        args = {py_name(a): a for a, _ in fn.args}
        if c.op == "size" and c.lhs in args:  # a size given by an argument: its data is what to fix
            arg = args[c.lhs]
            raise error(f"data for `{arg}` cannot be negative: `{arg}` is a size", fn.arg_spans.get(arg, fn.span),
                        source, found=f"{arg} = {env[c.lhs]}", hint=f"`{arg}` sizes an array at {c.span}")
        raise error(f"{c.message} (with this data)", c.span, source, found=found, hint=hint)


def convert_obs(addr: str, info: ir.SiteInfo, value: Any, env: dict[str, Any], source: str) -> Any:
    arr = as_array(addr, value, info.span, source)
    want = eval_shape(info.shape, env)
    if want is not None and (len(want) != arr.ndim or any(w is not None and w != h for w, h in zip(want, arr.shape))):
        raise error(f"observed `{addr}` has shape {arr.shape} but the model draws shape {show(want)}", info.span,
                    source, expected=show(want), found=str(arr.shape), hint=reshape_hint(arr.shape, len(want)))
    if arr.dtype.kind == "f":
        bad = outside(addr, arr, np.isfinite)
        if bad is not None:
            raise error(f"observed `{addr}` must be finite numbers", info.span, source, found=bad,
                        hint=f"{MISSING}: leave `{addr}` out of the data to draw it, or observe only the finite "
                        "entries as a choice of their own")
    if info.kind in ("int", "bool"):
        bad = outside(addr, arr, lambda a: a == np.round(a)) if arr.dtype.kind == "f" else None
        if bad is not None:
            raise error(f"observed `{addr}` must be whole numbers for `{info.dist}`", info.span, source,
                        found=bad, hint="observe counts or 0/1 outcomes as integers")
        bad = outside(addr, arr, lambda a: np.abs(a) <= INT32) if arr.size and arr.dtype.kind != "b" else None
        if bad is not None:
            raise error(f"observed `{addr}` is too large for a 32-bit int", info.span, source, found=bad,
                        hint="counts must fit in 32 bits")
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
    test, text = check
    bad = outside(addr, arr, test)
    if bad is not None:
        raise error(f"observed `{addr}` must be {text} for `{info.dist}`", info.span, source,
                    expected=f"values that are {text}", found=bad,
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
