"""The supports of a model's latent choices, found by running it once: what automatic guides and
MCMC lay their unconstrained coordinates out by."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from pplang import runtime as rt
from pplang.stdlib.distributions import Flat, Restricted


class SupportRecorder(rt.Context):
    """A context that notes the support of each latent choice as the model draws it: those in
    `latents`, or else every choice not given. Choices that cannot be drawn (improper `flat()`, a
    declared support the distribution leaves) take the image of unconstrained zeros: a point of
    their support."""

    def __init__(self, given: Mapping[str, Any], hosts: Mapping[str, Any], latents: frozenset | None = None):
        super().__init__(given, None, hosts)
        self.latents = latents
        self.supports: dict[str, Any] = {}

    def site(self, address: str, dist: Any, key: Any, score: rt.Score, given: Any | None) -> tuple[Any, rt.Score]:
        if (given is None) if self.latents is None else (address in self.latents):
            self.supports[address] = dist.support
        if given is None and (isinstance(dist, Flat) or (isinstance(dist, Restricted) and not dist.inside)):
            given = dist.support.forward(jnp.zeros(dist.support.unconstrained_shape(dist.shape())))
        return super().site(address, dist, key, score, given)
