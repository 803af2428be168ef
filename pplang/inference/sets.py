"""Data sets of varying size for amortized inference: each `size` argument of a model counts the
points of one of its sets (the arrays whose first dimension it sizes), and may differ from data
set to data set; a model with several (two groups of an A/B test) has several sets, each sized,
padded and masked on its own.

Data sets of different sizes are padded to one length and carry a mask of their real points; set
networks pool and attend over the real points alone (`stdlib/networks.py`), and a model's
vectorized loops over the points leave the padded iterations out of its log density
(`Context.masked`), so padding changes no result. Answers pad to a *bucket* (the next power of
two, at least MIN_BUCKET), so a guide is compiled once per bucket (per tuple of buckets, one per
set) rather than once per size. Training pads each set to its largest size.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pplang.compiler import analysis, ir
from pplang.compiler.diagnostics import did_you_mean, error
from pplang.compiler.names import py_name
from pplang.models import Model

MIN_BUCKET = 8
NEW = "_new"  # suffix of a predictive guide's new point: `x_new` (an input), `y_new ~ ...` (a prediction)


class SizeWarning(UserWarning):
    """A data set's size lies outside the sizes the guide was trained on (extrapolation)."""


def size_arguments(model: Model, guide: Model) -> list[str]:
    """The model's `size` arguments, one per set (each counts the points of the arrays it sizes);
    the guide must declare each a `size` too, so that its networks are checked to be set functions
    of the points it counts."""
    sizes = [a for a, t in model.fn.arg_types.items() if t == "size"]
    for n in sizes:
        declared = guide.fn.arg_types.get(n)
        if declared is not None and declared != "size":
            raise error(f"`{n}` counts the points of a set in model `{model.name}`, but guide `{guide.name}` "
                        f"declares it `{declared}`", guide.fn.arg_spans[n], guide.source,
                        hint=f"declare `{n}: size` in the guide too, so its networks are checked to be set functions")
    return sizes


def trained_sets(info: Mapping[str, Any]) -> dict[str, list[int] | None]:
    """The sets of an amortized result's `info`: each size's name and the range of sizes trained on
    (`sets`; a result saved before several sets were supported has `size` and `sizes`)."""
    if "sets" in info:
        return {n: (list(r) if r else None) for n, r in info["sets"].items()}
    return {info["size"]: info.get("sizes")} if info.get("size") else {}


def set_info(ranges: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """What `info` records of the sets: `sets` (each size's trained range), and for one set its
    name and range as `size` and `sizes`."""
    out: dict[str, Any] = {"sets": {n: [int(lo), int(hi)] for n, (lo, hi) in ranges.items()}}
    if len(ranges) == 1:
        (n, r), = out["sets"].items()
        out |= {"size": n, "sizes": r}
    return out


def set_names(fn: ir.Function, size: str) -> list[str]:
    """The arguments and choices of `fn` whose first dimension is the size: the set's per-point values."""
    dim = py_name(size)
    out = [a for a, ty in fn.args if ty.shape and ty.shape[0] == dim]
    out += [a for a, s in fn.sites.items() if s.shape and s.shape[0] == dim and a not in out]
    return out


SHAPING = ("zeros", "ones")  # calls whose size argument only shapes an array (padded like the set)


def over_points(s: ir.Stmt, dim: str) -> bool:
    """Whether `s` is a loop over a set's points: `for i in range(N)` or `range(c, N)`."""
    return isinstance(s, ir.Loop) and isinstance(s.stop, ir.Var) and s.stop.name == dim


def size_uses(fn: ir.Function, size: str, loops: bool = False) -> list[Any]:
    """Where `fn` computes with the size itself (beyond typing arrays and `zeros(N)`, `ones(N)`):
    spans of its statements. With `loops`, vectorized loops over the points are no use either:
    their padded iterations are masked out of the log density (`Context.masked`)."""
    dim = py_name(size)
    spans = []
    for s in analysis.walk(fn.body):
        roots = analysis.stmt_exprs(s)
        if loops and over_points(s, dim) and s.mode == "vector":
            roots = [s.start]
        for root in roots:
            exprs = list(analysis.sub_exprs(root))
            shaping = {id(a) for e in exprs if isinstance(e, ir.Call) and e.fn in SHAPING for a in e.args}
            if any(isinstance(e, ir.Var) and e.name == dim and id(e) not in shaping for e in exprs):
                spans.append(s.span)
                break
    return spans


def check_guide(model: Model, guide: Model, size: str) -> None:
    """A guide answering for padded sets must not see the padded size: it may use the size only to
    type its set arguments, and its choices (the latents) must not be sized by it."""
    uses = size_uses(guide.fn, size)
    if uses:
        raise error(f"guide `{guide.name}` computes with the set size `{size}`; it answers for sets padded to a "
                    f"longer length, where `{size}` is the padded length", uses[0], guide.source,
                    hint="read the set only through a set network (deep_sets, set_transformer), which sees the "
                    "real points and their count")
    local = [a for a in guide.fn.sites if a in set_names(model.fn, size) and not a.endswith(NEW)]
    local += [a for a, s in guide.fn.sites.items() if s.shape and s.shape[0] == py_name(size) and a not in local]
    if local:
        info = guide.fn.sites[local[0]]
        raise error(f"guide `{guide.name}` draws `{local[0]}`, one value per point of the set", info.span,
                    guide.source, hint="amortized guides draw latents of fixed size; per-point latents are not "
                    "supported")


def check_model(model: Model, size: str) -> None:
    """A model scored on sets padded to a longer length (trained on data sets of different sizes)
    may use its size only to bound vectorized loops over the points and to shape arrays: the
    padded iterations of those loops are left out of its log density, and anything else would see
    the padded length."""
    dim = py_name(size)
    again = f"give data sets of one size (shared={{'{size}': n}}), or train on simulations (simulate=N, sizes=...)"
    for s in analysis.walk(model.fn.body):
        if over_points(s, dim) and s.mode == "scan":
            raise error(f"model `{model.name}` carries state from point to point of its set ({s.reason}); data sets of "
                        f"different sizes are padded to the longest, and padded points would pass through it",
                        s.span, model.source,
                        hint=f"a set's points are exchangeable: draw them independently; or {again}")
    uses = size_uses(model.fn, size, loops=True)
    if uses:
        raise error(f"model `{model.name}` computes with the set size `{size}`; data sets of different sizes are "
                    f"padded to the longest, where `{size}` is the padded length", uses[0], model.source,
                    hint=f"use `{size}` only as the bound of a loop over the points (`for i in range({size})`) and to "
                    f"shape arrays; or {again}")


def bucket(n: int) -> int:
    """The padded length a set of n points is answered at."""
    return max(MIN_BUCKET, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


def size_range(sizes: Any) -> tuple[int, int]:
    """`sizes`: one int, or (low, high) inclusive."""
    try:
        lo, hi = (sizes, sizes) if isinstance(sizes, int) and not isinstance(sizes, bool) else tuple(sizes)
    except (TypeError, ValueError):
        raise error(f"set sizes must be (low, high), got {sizes!r}", hint="for example sizes=(5, 200)") from None
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise error(f"set sizes must be positive ints, got {sizes!r}", hint="for example sizes=(5, 200)")
    if lo > hi:
        raise error(f"the smallest set size {lo} is above the largest {hi}", hint="sizes=(low, high)")
    return int(lo), int(hi)


def size_ranges(model: Model, names: Sequence[str], sizes: Any,
                shared: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """The range of each size argument to simulate: `sizes` one range for every set, or a mapping
    from each size's name to its range; a size given in `shared` (and not in `sizes`) is fixed."""
    several = ", ".join(f"{repr(n)}: (2, 64)" for n in names)
    if isinstance(sizes, Mapping):
        unknown = [k for k in sizes if k not in names]
        if unknown:
            raise error(f"sizes names `{unknown[0]}`, which is not a size argument of model `{model.name}`",
                        model.fn.span, model.source,
                        hint=did_you_mean(str(unknown[0]), names) or f"its size arguments: {', '.join(names)}")
    out = {}
    for n in names:
        given = sizes.get(n) if isinstance(sizes, Mapping) else sizes
        if given is None:
            given = shared.get(n)
        if given is None:
            what = "give the range of sizes to simulate" if sizes is None else "sizes has no range for it"
            raise error(f"model `{model.name}` draws sets of `{n}` points: {what}", model.fn.arg_spans[n],
                        model.source, hint="sizes=(5, 200), or --sizes 5:200" if len(names) == 1 else
                        f"one range for every set, sizes=(2, 64), or one per set, sizes={{{several}}} "
                        "(--sizes 2:64, or --sizes " + ",".join(f"{m}=2:64" for m in names) + ")")
        out[n] = size_range(given)
    return out


@dataclass
class Sets:
    """Data sets whose per-point values are padded to `length` along their first axis (`rows`: name
    -> (data sets, length, ...)), with each data set's number of points (`sizes`)."""

    rows: dict[str, np.ndarray]
    sizes: np.ndarray
    length: int

    def masks(self) -> np.ndarray:
        return np.arange(self.length)[None, :] < self.sizes[:, None]


def ragged(data: Mapping[str, Any], names: Sequence[str], size: str, batched: bool) -> Sets:
    """The per-point values of one data set or of a collection (`batched`), padded to the longest
    with copies of each set's last point (values a model can score: masked out, they contribute
    zero with a finite gradient, where a zero might lie outside a choice's support). Each data
    set's size is its `size` entry when given (a padded `.npz`: arrays of the longest length with
    the sizes beside them), else the length of its values, which must agree."""
    present = [a for a in names if a in data]
    values = {a: ([np.asarray(v) for v in data[a]] if batched else [np.asarray(data[a])]) for a in present}
    for a, vs in values.items():
        bad = [i for i, v in enumerate(vs) if v.size and v.dtype.kind not in "biuf"]
        if bad:
            what = "nested lists of uneven lengths" if vs[bad[0]].dtype.kind == "O" else "values that are not numbers"
            raise error(f"`{a}` holds {what}{f' in data set {bad[0]}' if batched else ''}", found=str(vs[bad[0]].dtype),
                        hint=f"each point of `{a}` is a number (or a list of numbers of one length)")
    count = len(values[present[0]])
    lengths = {a: [len(v) if v.ndim else 0 for v in vs] for a, vs in values.items()}
    given = data.get(size)
    if given is not None:
        sizes = np.asarray(given).reshape(-1)
        if sizes.dtype.kind not in "iuf" or not np.all(sizes == np.round(sizes)):
            raise error(f"`{size}` counts points: it takes whole numbers", found=str(sizes.dtype),
                        hint=f"{size}=[5, 12, ...], one per data set")
        sizes = sizes.astype(int)
        if sizes.shape[0] != count:
            raise error(f"`{size}` has {sizes.shape[0]} entries but `{present[0]}` has {count} data sets",
                        hint=f"give one `{size}` per data set")
    else:
        sizes = np.asarray(lengths[present[0]], int)
    for i, n in enumerate(sizes):
        where = f"data set {i}" if batched else "the data set"
        if n < 1:
            raise error(f"{where} has no points (`{size}` = {n})", hint="an empty set has no posterior to "
                        "amortize; drop it, or answer with the prior")
        have = {a: ls[i] for a, ls in lengths.items()}
        if given is None and len(set(have.values())) > 1:
            raise error(f"in {where}, the per-point values have different numbers of points: "
                        + ", ".join(f"`{a}` {m}" for a, m in have.items()),
                        hint=f"{', '.join(f'`{a}`' for a in present)} have one entry per point of the set")
        short = [a for a, m in have.items() if m < n]
        if short:
            raise error(f"in {where}, `{short[0]}` has {have[short[0]]} point{'' if have[short[0]] == 1 else 's'} but "
                        f"`{size}` is {n}",
                        hint=f"a padded array holds at least `{size}` points")
    length = int(sizes.max())
    rows = {}
    for a in present:
        first = values[a][0]
        kind = np.result_type(*[v.dtype for v in values[a] if v.size] or [float])  # ints with floats: floats
        out = np.zeros((count, length) + first.shape[1:], kind)
        for i, v in enumerate(values[a]):
            if v.shape[1:] != first.shape[1:]:
                raise error(f"`{a}` has points of shape {v.shape[1:]} in data set {i} but {first.shape[1:]} in the "
                            "first", hint="every point of a set has one shape")
            out[i, :sizes[i]] = v[:sizes[i]]
            out[i, sizes[i]:] = v[sizes[i] - 1]
        rows[a] = out
    return Sets(rows, sizes, length)


def one_count(found: Mapping[str, Sets], span: Any, source: str) -> int:
    """The number of data sets, which every set (one per `size` argument) must come from."""
    counts = {n: len(v.sizes) for n, v in found.items()}
    first, m = next(iter(counts.items()))
    other = next(((n, k) for n, k in counts.items() if k != m), None)
    if other is not None:
        raise error(f"the sets of `{first}` points come from {m} data sets but those of `{other[0]}` from {other[1]}",
                    span, source, hint="give each data set every one of its sets")
    return m


def padded(sets: Sets, length: int) -> Sets:
    """The same data sets padded (with copies of their last column, as `ragged` pads) or cut to
    `length` (at least their longest size)."""
    rows = {a: np.concatenate([v[:, :length], np.repeat(v[:, -1:], max(0, length - v.shape[1]), axis=1)], axis=1)
            for a, v in sets.rows.items()}
    return Sets(rows, sets.sizes, length)


def warn_outside(sizes: np.ndarray, trained: Sequence[int] | None, name: str | None = None) -> None:
    """Warn when a data set is larger or smaller than any the guide was trained on (`name`: which
    set, when there are several)."""
    if not trained:
        return
    lo, hi = trained
    out = sorted({int(n) for n in sizes if n < lo or n > hi})
    if out:
        which = f" (`{name}`)" if name else ""
        warnings.warn(f"set size{'s' if len(out) > 1 else ''}{which} {', '.join(map(str, out[:5]))} outside the "
                      f"trained range {lo}..{hi}: the answer extrapolates; check it with importance sampling "
                      "(--correct)", SizeWarning, stacklevel=5)
