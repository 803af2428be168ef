"""The run-time context generated code consults at each random choice and parameter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
from pplang.stdlib import networks as nets
from pplang.stdlib.constraints import CONSTRAINTS

from .ops import BlockKey, Score, merge_terms

CONSTRAINT_ALIASES = {"vector": "real", "matrix": "real"}


class MissingValue(LookupError):
    """A choice the program reached has no given value where a complete trace was required."""

    def __init__(self, address: str):
        super().__init__(address)
        self.address = address


class Context:
    """Which choices are given and how.

    `given` maps addresses to values (observations, or a trace being scored); a choice that is not
    given is sampled from its distribution. Addresses in `unconstrained` are given in unconstrained
    coordinates: the value is mapped through the support's bijection and the log-Jacobian is added.
    `params` holds unconstrained values of `param` declarations; `hosts` the caller-bound functions.
    With `complete`, every choice the program reaches must be given (scoring a whole trace); the
    choices of branches not taken need no value. With `record`, scores carry the log density of
    each choice separately (`Score.terms`). Addresses in `fixed` are given values that stand for
    draws (a variational objective fixing a choice to each of its values): they count in the log
    density but not in the weight of the given choices. With `computed`, a dict, the named values
    the program computes are stored in it (`computed(name, value)`); otherwise they are not kept, and
    nothing of them remains in the compiled code. `masks` maps a `size` argument to a boolean
    vector marking the real points of a set padded to a longer length (set networks pool over
    those alone).
    """

    def __init__(self, given: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None,
                 hosts: Mapping[str, Any] | None = None, unconstrained: frozenset = frozenset(),
                 complete: bool = False, record: bool = False, fixed: frozenset = frozenset(),
                 collect: dict | None = None, computed: dict | None = None,
                 masks: Mapping[str, Any] | None = None):
        self._complete = complete
        self._given = dict(given or {})
        self._params = dict(params or {})
        self._hosts = dict(hosts or {})
        self._unconstrained = unconstrained
        self._record = record
        self._fixed = fixed
        self._collect = collect
        self._computed = computed
        self._masks = dict(masks or {})

    def zero(self) -> Score:
        """The score a function or loop body starts from."""
        return Score(0.0, 0.0, {} if self._record else None)

    def computed(self, name: str, value: Any) -> None:
        """A named value the program computed (or its return value, as `return`)."""
        if self._computed is not None:
            self._computed[name] = value

    def given(self, address: str) -> Any | None:
        return self._given.get(address)

    def host(self, name: str, *attributes: str) -> Any:
        """The host the caller bound as `name`, or its public attribute `name.a.b`. Names beginning
        with `_` are refused here too (the checker already rejects them), so generated code can
        never reach a host's internals (`__class__`, `__globals__`, ...)."""
        value = self._hosts[name]
        for a in attributes:
            if a.startswith("_"):
                raise AttributeError(f"`{a}` of host `{name}` is not reachable from a model")
            value = getattr(value, a)
        return value

    def site(self, address: str, dist: Any, key: Any, score: Score, given: Any | None) -> tuple[Any, Score]:
        if given is None:
            if self._complete:
                raise MissingValue(address)
            value = self.draw(address, dist, key)
            return value, self.scored(score, address, jnp.sum(dist.log_prob(value)), False, dist, key, value)
        if address in self._fixed:
            return given, self.scored(score, address, jnp.sum(dist.log_prob(given)), False, dist, key, given)
        if address in self._unconstrained and not dist.support.is_discrete:
            value = dist.support.forward(given)
            lp = jnp.sum(dist.log_prob(value)) + jnp.sum(dist.support.log_abs_det_jacobian(given))
        else:
            value = given
            lp = jnp.sum(dist.log_prob(value))
        return value, self.scored(score, address, lp, True, dist, key, value)

    def draw(self, address: str, dist: Any, key: Any) -> Any:
        """A fresh value of a choice that is not given."""
        return dist.sample_in_block(*key) if isinstance(key, BlockKey) else dist.sample(key)

    def scored(self, score: Score, address: str, lp: Any, weighted: bool, dist: Any, key: Any,
               value: Any) -> Score:
        terms = score.terms
        if terms is not None:
            terms = merge_terms(terms, self.site_terms(address, lp, dist, key, value))
        return Score(score.lp + lp, score.lw + lp if weighted else score.lw, terms)

    def site_terms(self, address: str, lp: Any, dist: Any, key: Any, value: Any) -> dict:
        """What a recording context keeps of one choice: its log density."""
        return {address: lp}

    def masked(self, score: Score, size: str, start: int, stop: int) -> Score:
        """The scores of the iterations `start..stop` of a vectorized loop over a set's points, with
        those of padded points set to zero (unchanged when the set is not padded). Padded points
        are copies of real ones, so their scores are finite and `where` passes no NaN gradient."""
        mask = self._masks.get(size)
        if mask is None:
            return score
        keep = mask[start:stop]

        def cut(v: Any) -> Any:
            v = jnp.asarray(v)
            return jnp.where(keep.reshape(keep.shape + (1,) * (v.ndim - 1)), v, 0.0)

        terms = None if score.terms is None else {
            a: cut(v) if jnp.ndim(v) and jnp.shape(v)[0] == keep.shape[0] and jnp.issubdtype(jnp.asarray(v).dtype,
                                                                                            jnp.floating) else v
            for a, v in score.terms.items()}
        return Score(cut(score.lp), cut(score.lw), terms)

    def network(self, name: str, x: Any, size: str | None = None, axis: int = 0) -> Any:
        """Apply network `name` to `x` with its weights from `params` (addresses `name.path`) when
        set, else its initial weights (recorded when the context collects parameters). A set
        network takes `x` as points along `axis`, counted by the `size` argument: when the data
        set was padded, `masks[size]` marks its real points."""
        net = self._hosts[name]
        if isinstance(net, nets.SetNetwork):
            from pplang.stdlib.set_modules import points

            x = points(x, axis)
        module = net.initial(name, x)
        initial = nets.weights(name, module)
        if any(a in self._params for a in initial):
            missing = [a for a in initial if a not in self._params]
            if missing:
                raise ValueError(f"network `{name}` is missing weights {', '.join(missing[:3])}"
                                 f"{' ...' if len(missing) > 3 else ''}: pass all of its parameters or none")
            module = nets.with_weights(name, module, self._params)
        elif self._collect is not None:
            self._collect.update(initial)
        if isinstance(net, nets.SetNetwork):
            return net.apply_set(module, x, self._masks.get(size) if size is not None else None)
        return net.apply(module, x)

    def param(self, address: str, init: Any, constraint: str, shape: tuple | None = None) -> Any:
        """The parameter's value: from `params` (unconstrained) when set, else its initial value,
        broadcast to the declared shape (recorded, unconstrained, when the context collects them)."""
        bijection = CONSTRAINTS[CONSTRAINT_ALIASES.get(constraint, constraint)]
        if address in self._params:
            return bijection.forward(self._params[address])
        value = jnp.asarray(init, float)
        value = value if shape is None else jnp.broadcast_to(value, shape)
        if self._collect is not None:  # a fit's first look at the parameters: their unconstrained initial values
            self._collect[address] = bijection.inverse(value)
        return value
