"""Answers of an amortized guide for data sets of any size: each set of a data set is padded to its
size's bucket with a mask of its real points, and the data sets of one bucket (with several sets,
one tuple of buckets) are answered together in one jitted call, compiled once per bucket (and
number of draws), not once per size."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from pplang import data
from pplang import runtime as rt
from pplang.compiler.diagnostics import PplError, error
from pplang.inference import sets as S
from pplang.models import as_key

if TYPE_CHECKING:
    from pplang.inference.amortized_result import AmortizedPosterior

POINT = "#point"


def is_ragged(value: Any) -> bool:
    """Whether a value is a list of arrays of different lengths (data sets of different sizes)."""
    try:
        return np.asarray(value).dtype == object
    except ValueError:
        return True


def is_batch(value: Any, rank: int) -> bool:
    """Whether a set-valued input holds several data sets: a ragged list of sets, or an array of
    one more dimension than a set's."""
    return is_ragged(value) or np.ndim(value) == rank + 1


def set_inputs(result: AmortizedPosterior, size: str) -> list[str]:
    """The guide's arguments that hold the points of the set `size` (not the new point's inputs)."""
    return [a for a in S.set_names(result.guide.fn, size) if not a.endswith(S.NEW)]


def read_sets(result: AmortizedPosterior, data: Mapping[str, Any]) -> tuple[dict[str, S.Sets], bool]:
    """The data's sets by size, padded, and whether it was a batch of data sets; warns on sizes
    outside the trained range."""
    trained = S.trained_sets(result.info)
    names = {size: set_inputs(result, size) for size in trained}
    for size, ns in names.items():
        missing = [a for a in ns if a not in data]
        if missing:
            which = f"the set of `{size}` points " if len(names) > 1 else "the set "
            raise error(f"no value for `{missing[0]}`: the amortized guide `{result.guide.name}` reads {which}"
                        f"{', '.join(ns)}", result.guide.fn.span, result.guide.source,
                        hint=f"pass {', '.join(repr(a) for a in ns)} (one entry per point; `{size}` is their count)")
    ranks = dict((a, t.rank) for a, t in result.guide.fn.args)
    lead = next(iter(names.values()))[0]
    batched = is_batch(data[lead], ranks[lead] or 1)
    found = {size: S.ragged(data, ns, size, batched) for size, ns in names.items()}
    S.one_count(found, result.guide.fn.span, result.guide.source)
    for size, sets in found.items():
        S.warn_outside(sets.sizes, trained[size], size if len(found) > 1 else None)
    return found, batched


def count_of(found: Mapping[str, S.Sets]) -> int:
    return len(next(iter(found.values())).sizes)


def by_bucket(found: Mapping[str, S.Sets]) -> dict[tuple[int, ...], np.ndarray]:
    """Indices of the data sets answered at each tuple of padded lengths (one per set)."""
    keys = [tuple(S.bucket(int(sets.sizes[i])) for sets in found.values()) for i in range(count_of(found))]
    out: dict[tuple[int, ...], list[int]] = {}
    for i, k in enumerate(keys):
        out.setdefault(k, []).append(i)
    return {k: np.asarray(v) for k, v in sorted(out.items())}


@dataclass(frozen=True)
class Plan:
    """What answering at one padded length takes besides the points, found once by binding the
    first data set: the guide's static values (the size is the padded length), the NumPy dtype of
    each of its array arguments, and the arrays common to every data set (the shared values)."""

    static: dict[str, Any]
    dtypes: dict[str, np.dtype]
    common: dict[str, Any]


def plan(result: AmortizedPosterior, found: Mapping[str, S.Sets], lengths: tuple[int, ...],
         extra: Mapping[str, np.ndarray]) -> Plan:
    """The plan of the buckets `lengths` (one per set) for data sets whose values have these
    dtypes and point shapes, kept for later answers (binding checks names, shapes and sizes; the
    values of each answer are checked by `check_points`)."""
    rows = {a: v for sets in found.values() for a, v in sets.rows.items()}
    shapes = tuple((a, v.dtype.str, v.shape[2:]) for a, v in [*rows.items(), *extra.items()])
    key = (lengths, shapes)
    if key not in result._plans:
        first = {**result.shared, **{a: np.asarray(v)[0] for a, v in extra.items()}}
        for sets in found.values():
            n = int(sets.sizes[0])
            first |= {a: v[0, :n] for a, v in sets.rows.items()}
        first |= {size: int(sets.sizes[0]) for size, sets in found.items()}
        bound = result.guide.bind(first, strict=False, observations=False)
        per_set = {*rows, *extra}
        result._plans[key] = Plan({**bound.static, **dict(zip(found, lengths, strict=True))},
                                  {a: np.dtype(jnp.asarray(v).dtype) for a, v in bound.arrays.items()},
                                  {a: v for a, v in bound.arrays.items() if a not in per_set})
    return result._plans[key]


def check_points(result: AmortizedPosterior, found: Mapping[str, S.Sets], batched: bool) -> None:
    """The value checks binding makes (finite, whole, inside the constraint), on the real points of
    every data set: all at once, then data set by data set to say which one when they fail."""
    guide = result.guide
    types = dict(guide.fn.args)
    for sets in found.values():
        real = sets.masks()
        for a, v in sets.rows.items():
            span = guide.fn.arg_spans.get(a, guide.fn.span)
            try:
                data.check_arg_values(a, types[a], v[real], guide.fn, span, guide.source)
            except PplError:
                if not batched:
                    raise
                for i, n in enumerate(sets.sizes):
                    data.check_arg_values(f"{a}[{i}]", types[a], v[i, :n], guide.fn, span, guide.source)
                raise


def bucket_values(result: AmortizedPosterior, found: Mapping[str, S.Sets], index: np.ndarray,
                  lengths: tuple[int, ...], extra: Mapping[str, Any]
                  ) -> tuple[Plan, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """For the data sets `index` with their sets padded to `lengths`: the buckets' plan, the
    per-point arrays with a leading data-set axis (of the guide's dtypes), and each set's masks
    of its real points."""
    p = plan(result, found, lengths, extra)
    rows, masks = {}, {}
    for (size, sets), length in zip(found.items(), lengths, strict=True):
        part = S.padded(S.Sets({a: v[index] for a, v in sets.rows.items()}, sets.sizes[index], sets.length), length)
        rows |= {a: np.asarray(v, p.dtypes[a]) for a, v in part.rows.items()}
        masks[size] = part.masks()
    return p, rows, masks


def guide_fn(result: AmortizedPosterior, static: Mapping[str, Any], given: tuple[str, ...]) -> Callable:
    """`(params, arrays, masks, key, given values) -> (draws, log density)` of one data set (`masks`:
    each set's mask of its real points)."""
    guide = result.guide
    order = [a for a, _ in guide.fn.args]

    def one(params: Any, arrays: Mapping[str, Any], masks: Any, key: Any, values: Mapping[str, Any]) -> tuple:
        ctx = rt.Context(dict(values), params, guide.hosts, masks=dict(masks), complete=bool(given))
        env = {**static, **arrays}
        _, draws, score = guide.impl(ctx, key, *[env[a] for a in order])
        return draws, score.lp

    return one


def cached(result: AmortizedPosterior, kind: str, static: Mapping[str, Any], build: Callable, *extra: Any) -> Any:
    key = (kind, tuple(sorted((a, repr(v)) for a, v in static.items())), *extra)
    if key not in result._draw:
        result._draw[key] = build()
    return result._draw[key]


def set_keys(key: Any, index: np.ndarray, count: int | None) -> Any:
    """The keys of the data sets `index`: as a fixed-size guide's answer splits them (one data
    set: the key itself, made a batch of one inside the compiled answer), so padding is the only
    difference between the two."""
    if count is None:
        return key
    return jax.random.split(key, count)[jnp.asarray(index)]


def batch_of(common: Mapping[str, Any], rows: Mapping[str, Any], keys: Any) -> tuple[dict[str, Any], Any]:
    """Inside a compiled answer: the arrays of every data set (the common ones broadcast along the
    data-set axis of the per-point ones) and one key per data set."""
    count = jax.tree.leaves(rows)[0].shape[0]
    arrays = {**{a: jnp.broadcast_to(v, (count,) + jnp.shape(v)) for a, v in common.items()}, **rows}
    return arrays, (keys[None] if jnp.ndim(keys) == 0 else keys)


def posterior_fn(result: AmortizedPosterior, static: Mapping[str, Any], num_samples: int) -> Callable:
    """Jitted `(params, common arrays, per-point arrays, masks, keys) -> draws` for a batch of data
    sets of one bucket."""
    one = guide_fn(result, static, ())

    def many(params: Any, arrays: Any, mask: Any, k: Any) -> dict:
        return jax.vmap(lambda kk: one(params, arrays, mask, kk, {})[0])(jax.random.split(k, num_samples))

    def run(params: Any, common: Any, rows: Any, masks: Any, keys: Any) -> dict:
        arrays, keys = batch_of(common, rows, keys)
        return jax.vmap(many, in_axes=(None, 0, 0, 0))(params, arrays, masks, keys)

    return jax.jit(run)


def predictive_fn(result: AmortizedPosterior, static: Mapping[str, Any], targets: tuple[str, ...], num_samples: int,
                  m: int) -> Callable:
    """Jitted `(params, common arrays, per-point arrays, masks, keys, new inputs, new values) ->`
    draws of the `m` new points (data set, draw, point), or with `targets` given their log
    densities (data set, point)."""
    one = guide_fn(result, static, targets)

    def per_set(params: Any, arrays: Any, mask: Any, k: Any, row: Any, val: Any) -> Any:
        def at(point: Any, value: Any, kk: Any) -> Any:
            point = {a: v for a, v in point.items() if a != POINT}
            draws, lp = one(params, {**arrays, **point}, mask, kk, value)
            return lp if targets else draws

        keys = jax.random.split(k, (num_samples, m))
        if targets:
            return jax.vmap(at)(row, val, keys[0])
        return jax.vmap(lambda ks: jax.vmap(lambda p, kk: at(p, {}, kk))(row, ks))(keys)

    def run(params: Any, common: Any, rows: Any, masks: Any, keys: Any, points: Any, vals: Any) -> Any:
        arrays, keys = batch_of(common, rows, keys)
        return jax.vmap(per_set, in_axes=(None, 0, 0, 0, 0, 0))(params, arrays, masks, keys, points, vals)

    return jax.jit(run)


def gather(out: dict[str, np.ndarray], res: Mapping[str, Any], index: np.ndarray, count: int) -> None:
    """One bucket's answers put in their data sets' places."""
    for a, v in res.items():
        v = np.asarray(v)
        if count == len(index):
            out[a] = np.array(v)  # writable, as a caller may expect of draws
            continue
        if a not in out:
            out[a] = np.zeros((count,) + v.shape[1:], v.dtype)
        out[a][index] = v


def posterior_draws(result: AmortizedPosterior, data: Mapping[str, Any], num_samples: int,
                    seed: Any) -> tuple[dict[str, np.ndarray], bool]:
    """Draws from the guide for every data set (leading data-set axis, then draws)."""
    found, batched = read_sets(result, data)
    check_points(result, found, batched)
    count = count_of(found)
    out: dict[str, np.ndarray] = {}
    key = as_key(seed)
    for lengths, index in by_bucket(found).items():
        p, rows, masks = bucket_values(result, found, index, lengths, {})
        fn = cached(result, "posterior", p.static, partial(posterior_fn, result, p.static, num_samples), num_samples)
        keys = set_keys(key, index, count if batched else None)
        gather(out, fn(result.params["guide"], p.common, rows, masks, keys), index, count)
    return (out if batched else {a: v[0] for a, v in out.items()}), batched


def new_points(result: AmortizedPosterior, new: Mapping[str, Any], batched: bool, count: int,
               names: list[str]) -> tuple[dict[str, np.ndarray], int]:
    """The new points' values by name, with (data set, point) leading axes, and the number of points."""
    missing = [a for a in names if a not in new]
    if missing:
        raise error(f"no value for `{missing[0]}`, an input of each new point", result.guide.fn.span,
                    result.guide.source, hint=f"pass new_inputs={{{', '.join(repr(a) + ': [...]' for a in names)}}}")
    ranks = dict((a, t.rank or 0) for a, t in result.guide.fn.args)
    out, m = {}, None
    for a in names:
        v = np.asarray(new[a], float)
        v = v if batched else v[None]
        if v.ndim == ranks.get(a, 0) + 1:  # one point per data set
            v = v[:, None]
        if v.shape[0] != count:
            raise error(f"`{a}` has new points for {v.shape[0]} data sets, but there are {count}",
                        hint="give the new points of each data set of the batch along a leading axis")
        if m is not None and v.shape[1] != m:
            raise error(f"`{a}` has {v.shape[1]} new points but `{names[0]}` has {m}", hint="one value per new point")
        m = v.shape[1]
        out[a] = v
    return out, int(m or 0)


def predictive_draws(result: AmortizedPosterior, data: Mapping[str, Any], new: Mapping[str, Any],
                     num_samples: int, seed: Any, densities: Mapping[str, Any] | None = None
                     ) -> tuple[dict[str, np.ndarray], bool]:
    """A predictive guide's draws of each new point (data set, draw, point), or with `densities`
    (the new points' values) the log predictive density of each (data set, point)."""
    guide = result.guide
    inputs = [a for a, _ in guide.fn.args if a.endswith(S.NEW)]
    targets = [a for a in guide.fn.sites if a.endswith(S.NEW)]
    found, batched = read_sets(result, data)
    check_points(result, found, batched)
    count = count_of(found)
    points, m = new_points(result, new, batched, count, inputs)
    given = {}
    if densities is not None:
        given, m2 = new_points(result, densities, batched, count, targets)
        if inputs and m2 != m:
            raise error(f"{m2} new values for {m} new inputs", hint="one value per new point")
        m = m2
    key = as_key(seed)
    out: dict[str, np.ndarray] = {}
    for lengths, index in by_bucket(found).items():
        first = {a: v[:, 0] for a, v in points.items()}
        p, arrays, masks = bucket_values(result, found, index, lengths, first)
        rows = {a: np.asarray(v[index], p.dtypes[a]) for a, v in points.items()}
        rows[POINT] = np.broadcast_to(np.arange(m), (len(index), m))  # what the points are mapped over
        vals = {a: v[index] for a, v in given.items()}

        scored = densities is not None
        fn = cached(result, "predictive", p.static,
                    partial(predictive_fn, result, p.static, tuple(targets) if scored else (), num_samples, m),
                    num_samples, m, scored)
        keys = set_keys(key, index, count if batched else None)
        res = fn(result.params["guide"], p.common, arrays, masks, keys, rows, vals)
        gather(out, {"log_density": res} if scored else res, index, count)
    return (out if batched else {a: v[0] for a, v in out.items()}), batched
