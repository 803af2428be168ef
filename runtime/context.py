"""The run-time context generated code consults at each random choice and parameter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
from pplang.stdlib.constraints import CONSTRAINTS

from .ops import BlockKey, Score

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
    choices of branches not taken need no value.
    """

    def __init__(self, given: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None,
                 hosts: Mapping[str, Any] | None = None, unconstrained: frozenset = frozenset(),
                 complete: bool = False):
        self._complete = complete
        self._given = dict(given or {})
        self._params = dict(params or {})
        self._hosts = dict(hosts or {})
        self._unconstrained = unconstrained

    def given(self, address: str) -> Any | None:
        return self._given.get(address)

    def host(self, name: str) -> Any:
        return self._hosts[name]

    def site(self, address: str, dist: Any, key: Any, score: Score, given: Any | None) -> tuple[Any, Score]:
        if given is None:
            if self._complete:
                raise MissingValue(address)
            value = dist.sample_in_block(*key) if isinstance(key, BlockKey) else dist.sample(key)
            return value, Score(score.lp + jnp.sum(dist.log_prob(value)), score.lw)
        if address in self._unconstrained and not dist.support.is_discrete:
            value = dist.support.forward(given)
            lp = jnp.sum(dist.log_prob(value)) + jnp.sum(dist.support.log_abs_det_jacobian(given))
        else:
            value = given
            lp = jnp.sum(dist.log_prob(value))
        return value, Score(score.lp + lp, score.lw + lp)

    def param(self, address: str, init: Any, constraint: str, shape: tuple | None = None) -> Any:
        """The parameter's value: from `params` (unconstrained) when set, else its initial value,
        broadcast to the declared shape."""
        if address in self._params:
            return CONSTRAINTS[CONSTRAINT_ALIASES.get(constraint, constraint)].forward(self._params[address])
        value = jnp.asarray(init, float)
        return value if shape is None else jnp.broadcast_to(value, shape)
