"""Small helpers that generated code calls: scores, keys, array pieces and loops."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.special
from jax import lax

Array = Any


class Score(NamedTuple):
    """Running log density of the whole trace and log weight of the given (observed) choices.

    `terms` is None unless the context records cost terms (variational objectives need them to
    prune score-function costs): then it maps each choice's address (and `factor<k>` for the k-th
    factor statement) to its log density, one entry per iteration of the enclosing vectorized loops.
    """

    lp: Array
    lw: Array
    terms: dict | None = None


ZERO = Score(0.0, 0.0)
DTYPES = {"real": float, "int": jnp.int32, "bool": jnp.bool_}


class BlockKey(NamedTuple):
    """The key of one iteration of a vectorized loop: iteration `i` of `n` sharing `key`."""

    key: Array
    n: int
    i: Array


def block_key(k: Array, start: int, stop: int, i: Array) -> BlockKey:
    return BlockKey(k, stop - start, i - start)


def key(k: Array, i: Any) -> Array:
    """A key of its own for each choice and loop iteration, so no key is threaded through code."""
    return jax.random.fold_in(k, i)


def merge_terms(a: dict | None, b: dict | None) -> dict | None:
    """Terms of two scores together. Two pieces of one address (a choice drawn before a loop and
    in it) are summed; where their shapes differ, to one number, which keeps every cost but no
    longer tells the iterations apart."""
    if a is None or b is None:
        return a if b is None else b
    out = dict(a)
    for k, v in b.items():
        if k not in out:
            out[k] = v
        elif jnp.shape(out[k]) == jnp.shape(v):
            out[k] = out[k] + v
        else:
            out[k] = jnp.sum(out[k]) + jnp.sum(v)
    return out


def add(s: Score, t: Score) -> Score:
    return Score(s.lp + t.lp, s.lw + t.lw, merge_terms(s.terms, t.terms))


def total(s: Score) -> Score:
    """Sum the scores of the iterations of a vectorized loop (its terms keep one entry per iteration)."""
    return Score(jnp.sum(s.lp), jnp.sum(s.lw), s.terms)


def factor(s: Score, value: Array, name: str = "factor") -> Score:
    v = jnp.sum(value)
    return Score(s.lp + v, s.lw + v, None if s.terms is None else merge_terms(s.terms, {name: v}))


def carried(s: Score) -> Score:
    """The part of a score a `lax.scan` carries; the terms of each step leave the loop as outputs."""
    return Score(s.lp, s.lw, None if s.terms is None else {})


def after_scan(s: Score, step_terms: dict | None) -> Score:
    """The score a `lax.scan` leaves: the carried sums, with the terms of every step stacked."""
    return Score(s.lp, s.lw, step_terms)


def select_score(cond: Array, a: Score, b: Score) -> Score:
    """The score of the branch arm taken; a term only one arm has counts where that arm is taken."""
    terms = None
    if a.terms is not None or b.terms is not None:
        ta, tb = a.terms or {}, b.terms or {}
        terms = {}
        for k in ta.keys() | tb.keys():
            x, y = ta.get(k), tb.get(k)
            if x is not None and y is not None and jnp.shape(x) != jnp.shape(y):
                x, y = jnp.sum(x), jnp.sum(y)
            terms[k] = jnp.where(cond, 0.0 if x is None else x, 0.0 if y is None else y)
    return Score(jnp.where(cond, a.lp, b.lp), jnp.where(cond, a.lw, b.lw), terms)


def select(cond: Array, a: Any, b: Any) -> Any:
    """`a` where `cond` else `b`, leaf by leaf; a missing side (None) takes the other's zeros."""
    if a is None and b is None:
        return None
    if a is None:
        a = jax.tree.map(jnp.zeros_like, b)
    if b is None:
        b = jax.tree.map(jnp.zeros_like, a)
    return jax.tree.map(lambda x, y: jnp.where(cond, x, y), a, b)


def store(arr: Array | None, idx: tuple, value: Array, lead: Sequence[Any]) -> Array:
    """Write one element (or row) at constant `idx`, allocating the array on first write."""
    value = jnp.asarray(value)
    if arr is None:
        arr = jnp.zeros(tuple(lead) + value.shape, value.dtype)
    arr = arr.astype(jnp.result_type(arr, value))
    return arr.at[idx].set(value)


def place(arr: Array | None, block: Array | None, start: int, size: int) -> Array | None:
    """Put the stacked pieces of a loop at positions start, start+1, ... of `arr`."""
    if block is None:
        return arr
    if arr is None and start == 0 and block.shape[0] == size:
        return block
    if arr is None:
        arr = jnp.zeros((size,) + block.shape[1:], block.dtype)
    arr = arr.astype(jnp.result_type(arr, block))
    return lax.dynamic_update_slice_in_dim(arr, block, start, axis=0)


def rows(given: Array | None, lo: int, hi: int) -> Array | None:
    """The rows of an observed array that a loop's iterations see."""
    return None if given is None else given[lo:hi]


def sub(given: Array | None, idx: tuple) -> Array | None:
    return None if given is None else given[idx]


def buffer(have: Array | None, dims: tuple | None, kind: str) -> Array:
    """The array a sequential loop carries: the existing one, or zeros of the declared shape."""
    if have is not None:
        return have
    return jnp.zeros(dims, DTYPES[kind])


def put(buf: Array, i: Array, piece: Array | None) -> Array:
    if piece is None:
        return buf
    return buf.at[i].set(jnp.asarray(piece, buf.dtype))


def scan(body: Callable, init: Any, xs: Any) -> Any:
    """`lax.scan`, after promoting the initial carry to the dtypes and shapes the body produces
    (a running sum that starts as the int 0 becomes a float array)."""
    first = jax.tree.map(lambda x: jnp.zeros(x.shape[1:], x.dtype), xs)  # works for zero iterations too
    for _ in range(4):
        out, _ = jax.eval_shape(body, init, first)
        if jax.tree.map(lambda a, b: (jnp.shape(a), jnp.result_type(a)) == (b.shape, b.dtype), init, out) \
                == jax.tree.map(lambda _: True, init):
            break
        init = jax.tree.map(lambda a, b: jnp.broadcast_to(jnp.asarray(a, b.dtype), b.shape), init, out)
    return lax.scan(body, init, xs)


def zeros(*dims: int) -> Array:
    """`zeros(n)` or `zeros(n, m)` in the language: sizes as separate arguments."""
    return jnp.zeros(dims)


def ones(*dims: int) -> Array:
    return jnp.ones(dims)


def concat(a: Array, b: Array) -> Array:
    return jnp.concatenate([jnp.atleast_1d(a), jnp.atleast_1d(b)])


def size(x: Array) -> int:
    return jnp.shape(x)[0]


def to_real(x: Array) -> Array:
    return jnp.asarray(x, float)


def to_int(x: Array) -> Array:
    return jnp.asarray(x).astype(jnp.int32)


def log_mix(theta: Array, *lps: Array) -> Array:
    """log_mix(theta, lp1, lp2) = log(theta e^lp1 + (1 - theta) e^lp2), elementwise; log_mix(w, lps)
    = log sum_k w[k] e^lps[..., k] (mixture weights along the last axis). Stable for any lps."""
    if len(lps) == 2:
        return jnp.logaddexp(jnp.log(theta) + lps[0], jnp.log1p(-theta) + lps[1])
    return jax.scipy.special.logsumexp(jnp.log(theta) + lps[0], axis=-1)


def stop_gradient(x: Any) -> Any:
    """`stop_gradient` of the language: every leaf of a value (or of a trace) held fixed."""
    return jax.tree.map(lax.stop_gradient, x)


def merge(a: dict, b: dict) -> dict:
    """`merge(tr, other)` in an objective: the choices of both traces, `other`'s where both have one."""
    return {**a, **b}
