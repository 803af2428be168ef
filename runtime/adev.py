"""The run-time half of the `adev` transformation: the contexts an objective runs under and the
small functions generated estimators call (see `pplang.compiler.transforms.adev`).

An objective's generated code calls `_ctx.simulate(role, ...)` and `_ctx.log_density(role, ...)`;
the `ObjectiveContext` runs the generated code of the program bound to that role. While a guide is
simulated, each choice is drawn by its strategy: `reparam` keeps the gradient path through the
draw, the others hold the draw fixed (`stop_gradient`) and record what their estimator needs in
the score's terms: the log density (for `reinforce`), the support (for `enum`), the weak-derivative
parameters and coupled draws (for `mvd`). Top-level calls keep their terms in `records`, by call
number, for the estimator; calls inside the objective's loops add the log densities of their
`reinforce` choices to the objective's score instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .context import Context
from .ops import BlockKey, Score

Array = Any
MVD_SALT = 0x6D7664  # folded into a choice's key for the auxiliary draws of its weak derivative


@dataclass
class Program:
    """A model or guide bound to an objective argument: its generated function, the values of its
    arguments, its observed choices and the strategy of each of its choices."""

    impl: Callable
    arg_names: list[str]
    data: dict[str, Any]
    observed: dict[str, Any]
    hosts: dict[str, Any]
    sites: frozenset[str]
    strategies: dict[str, str] = field(default_factory=dict)
    masks: dict[str, Any] = field(default_factory=dict)  # a padded set's real points, by `size` argument

    def arguments(self, trace: Mapping[str, Any] | None) -> list[Any]:
        """Argument values: from the trace where it has a choice of the argument's name, else the data."""
        if trace:
            return [trace[a] if a in trace else self.data[a] for a in self.arg_names]
        return [self.data[a] for a in self.arg_names]


class GuideContext(Context):
    """A program simulated by an objective: each choice drawn and recorded by its strategy."""

    def __init__(self, *args: Any, strategies: Mapping[str, str], stop: bool, **kw: Any):
        super().__init__(*args, record=True, **kw)
        self._strategies = strategies
        self._stop = stop

    def draw(self, address: str, dist: Any, key: Any) -> Any:
        value = super().draw(address, dist, key)
        if self._stop or self._strategies.get(address, "reparam") != "reparam":
            value = lax.stop_gradient(value)
        return value

    def site_terms(self, address: str, lp: Any, dist: Any, key: Any, value: Any) -> dict:
        out = {address: lp}
        strategy = None if self._stop else self._strategies.get(address)
        if strategy == "enum":
            out[f"enum:{address}"] = dist.enumerate_support()
        elif strategy == "mvd":
            k = (jax.random.fold_in(jax.random.fold_in(key.key, MVD_SALT), key.i) if isinstance(key, BlockKey)
                 else jax.random.fold_in(key, MVD_SALT))
            c, plus, minus = dist.mvd(k, lax.stop_gradient(value))
            out |= {f"mvd.p:{address}": dist.mvd_params(), f"mvd.c:{address}": lax.stop_gradient(c),
                    f"mvd.+:{address}": lax.stop_gradient(plus), f"mvd.-:{address}": lax.stop_gradient(minus)}
        return out


class ObjectiveContext(Context):
    """The context of an objective's own generated code: runs the programs bound to its arguments."""

    def __init__(self, programs: Mapping[str, Program], params: Mapping[str, Any], hosts: Mapping[str, Any],
                 strategies: Mapping[str, str], fixed: Mapping[tuple[int, str], Any], collect: dict | None = None):
        super().__init__(params=params.get("_objective", {}), hosts=hosts, record=True, collect=collect)
        self._programs = programs
        self._all_params = params
        self._strategies = strategies
        self._fixed_calls = fixed
        self.records: dict[int, dict] = {}
        self._simulated: dict[int, tuple[Mapping, str, Score]] = {}  # id(trace) -> (trace, role, its score)

    # the objective's own choices: reinforce ones add their log density to the score
    def draw(self, address: str, dist: Any, key: Any) -> Any:
        value = super().draw(address, dist, key)
        return value if self._strategies.get(address, "reparam") == "reparam" else lax.stop_gradient(value)

    def scored(self, score: Score, address: str, lp: Any, weighted: bool, dist: Any, key: Any,
               value: Any) -> Score:
        s = super().scored(score, address, lp, weighted, dist, key, value)
        keep = self._strategies.get(address) == "reinforce"
        return Score(score.lp + lp if keep else score.lp, s.lw, s.terms)

    def simulate(self, role: str, key: Any, args_from: Mapping | None, stop: bool, cid: int | None,
                 score: Score) -> tuple[dict, Score]:
        prog = self._programs[role]
        fixed = {a: v for (c, a), v in self._fixed_calls.items() if c == cid}
        ctx = GuideContext(fixed, self._all_params.get(role, {}), prog.hosts,  # a model's observations are drawn too
                           fixed=frozenset(fixed), strategies=prog.strategies, stop=stop, masks=prog.masks)
        _, trace, s = prog.impl(ctx, key, *prog.arguments(args_from))
        if stop:
            return jax.tree.map(lax.stop_gradient, trace), score
        if args_from is None and not prog.observed:
            self._simulated[id(trace)] = (trace, role, s)
        if cid is not None:
            self.records[cid] = s.terms
            return trace, score
        lq = sum((jnp.sum(t) for a, t in s.terms.items() if prog.strategies.get(a) == "reinforce"), 0.0)
        return trace, Score(score.lp + lq, score.lw, score.terms)

    def log_density(self, role: str, trace: Mapping[str, Any], cid: int | None) -> Any:
        """The program's log density of the trace. A trace this run's `simulate` of the same program
        drew (the same object, with the data's arguments and no observations) already has its log
        density, with the same value and gradient paths (through the parameters, and through the
        reparameterized values): it is reused, so a guide's network runs, and is differentiated,
        once for `log_density(q, simulate(q))` rather than twice."""
        prog = self._programs[role]
        hit = self._simulated.get(id(trace))
        if hit is not None and hit[0] is trace and hit[1] == role:
            s = hit[2]
        else:
            given = {**{a: v for a, v in trace.items() if a in prog.sites}, **prog.observed}
            ctx = Context(given, self._all_params.get(role, {}), prog.hosts, complete=True, record=cid is not None,
                          masks=prog.masks)
            _, _, s = prog.impl(ctx, jax.random.key(0), *prog.arguments(trace))
        if cid is not None:
            self.records[cid] = s.terms
        return s.lp


@dataclass
class ObjectiveRunner:
    """`run(key, params, fixed) -> (value, score, records)`: one run of an objective."""

    impl: Callable
    args: tuple
    programs: dict[str, Program]
    hosts: dict[str, Any]
    strategies: dict[str, str]

    def __call__(self, key: Any, params: Mapping[str, Any], fixed: Mapping[tuple[int, str], Any]) -> tuple:
        ctx = ObjectiveContext(self.programs, params, self.hosts, self.strategies, fixed)
        value, _, score = self.impl(ctx, key, *self.args)
        return jnp.asarray(value, float), score, ctx.records


# ---------------------------------------------------------------- what generated estimators call


def reinforce(logq: Array, cost: Array, baseline: Array) -> Array:
    """Zero in value; its gradient is sum (cost - baseline) * grad log q: the score-function term."""
    cost = jnp.broadcast_to(lax.stop_gradient(cost - baseline), jnp.shape(logq))
    return jnp.sum((logq - lax.stop_gradient(logq)) * cost)


def mvd(params: Array, c: Array, v_plus: Array, v_minus: Array, lead: int) -> Array:
    """Zero in value; its gradient with respect to the distribution's parameters is
    c * (value at the positive draw - value at the negative draw), per parameter."""
    diff = jnp.moveaxis(v_plus - v_minus, 0, lead) if lead else v_plus - v_minus
    weight = lax.stop_gradient(c * diff)
    return jnp.sum((params - lax.stop_gradient(params)) * weight)


def take(values: Array, k: Array, axis: int) -> Array:
    """Entry k along `axis` (the support value or weak-derivative draw k of every iteration)."""
    return jnp.take(values, k, axis=axis)


def expect(w: Array, terms: Array) -> Array:
    """Sum over the enumerated values (leading axis) of probability times term, per iteration."""
    w = w.reshape(w.shape + (1,) * (terms.ndim - w.ndim))
    return jnp.sum(w * terms, axis=0)


def expect_tree(w: Array, tree: Any) -> Any:
    return jax.tree.map(lambda x: jnp.sum(lax.stop_gradient(w) * x), tree)


def per_iteration(term: Array, like: Array) -> Array:
    """A term's entries aligned with a choice's iterations; its total where the shapes disagree."""
    term = jnp.asarray(term)
    like_shape = jnp.shape(like)
    if term.shape[:len(like_shape)] == like_shape and like_shape:
        return jnp.sum(term.reshape(like_shape + (-1,)), axis=-1) if term.shape != like_shape else term
    return jnp.sum(term)


def whole(term: Array, like: Array) -> Array:
    return jnp.sum(term)
