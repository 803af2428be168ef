"""The equinox modules of the set networks (pplang.stdlib.networks): permutation-invariant
encoders of a set of points with a mask of the real ones among padded ones, and the layer stack
`mlp` blocks are built from. Imported when a network is built, so checking a file needs neither
JAX nor equinox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

Array = Any


def points(x: Array, axis: int = 0) -> Array:
    """A set as a (points, features) array: a vector is a set of scalars, a matrix has its set
    axis moved first (`[x, y]` of two N-vectors is N points of 2 features)."""
    x = jnp.asarray(x)
    if x.ndim == 1:
        return x[:, None]
    if x.ndim != 2:
        raise ValueError(f"a set network takes a vector or a matrix, got shape {x.shape}")
    return jnp.moveaxis(x, axis, 0)


def pool(h: Array, mask: Array | None, how: str) -> Array:
    """Masked pooling over the points (axis 0), with log(count) appended: a posterior's width
    depends on how many points there are, which a mean or a max forgets. Padded points are
    replaced before the reduction, so they contribute exactly nothing."""
    keep = jnp.ones(h.shape[0], bool) if mask is None else mask
    count = jnp.sum(keep).astype(h.dtype)
    if how == "max":
        out = jnp.max(jnp.where(keep[:, None], h, -jnp.inf), axis=0)
    else:
        out = jnp.sum(jnp.where(keep[:, None], h, 0.0), axis=0)
        out = out / count if how == "mean" else out
    return jnp.concatenate([out, jnp.log(count)[None]])


class DeepSetsModule(eqx.Module):
    """rho(pool(phi(x_i))): a per-point MLP, masked pooling and an MLP of the pooled features."""

    phi: eqx.Module
    rho: eqx.Module
    how: str = eqx.field(static=True)

    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        return self.rho(pool(jax.vmap(self.phi)(x), mask, self.how))


class AttentionBlock(eqx.Module):
    """Self-attention over the points (a set attention block: attention, residual, layer norm,
    feed-forward, residual, layer norm); masked keys get no attention weight."""

    attention: eqx.nn.MultiheadAttention
    norm1: eqx.nn.LayerNorm
    ff: eqx.Module
    norm2: eqx.nn.LayerNorm

    def __call__(self, h: Array, mask: Array | None) -> Array:
        att = None if mask is None else jnp.broadcast_to(mask[None, :], (h.shape[0], h.shape[0]))
        h = jax.vmap(self.norm1)(h + self.attention(h, h, h, mask=att))
        return jax.vmap(self.norm2)(h + jax.vmap(self.ff)(h))


class SetTransformerModule(eqx.Module):
    """A set transformer (Lee et al. 2019): points embedded, `blocks` set attention blocks, then
    pooling by multi-head attention from a learned seed vector, and a linear map to the output."""

    embed: eqx.nn.Linear
    blocks: tuple[AttentionBlock, ...]
    seed: Array
    pooling: eqx.nn.MultiheadAttention
    out: eqx.Module

    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        h = jax.vmap(self.embed)(x)
        for block in self.blocks:
            h = block(h, mask)
        att = None if mask is None else mask[None, :]
        pooled = self.pooling(self.seed, h, h, mask=att)[0]
        count = h.shape[0] if mask is None else jnp.sum(mask)
        return self.out(jnp.concatenate([pooled, jnp.log(jnp.asarray(count, h.dtype))[None]]))


def mlp_of(d_in: int, d_out: int, hidden: tuple[int, ...], activation: Callable, key: Any, dtype: Any,
           final: Callable | None = None) -> eqx.nn.Sequential:
    """Linear layers of the given hidden widths with `activation` between them (and `final` after
    the last): eqx.nn.MLP takes one width for every hidden layer, so it is built from layers."""
    sizes = [d_in, *hidden, d_out]
    keys = jax.random.split(key, len(sizes) - 1)
    layers: list[eqx.Module] = []
    for k, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        layers.append(eqx.nn.Linear(a, b, key=keys[k], dtype=dtype))
        if k < len(sizes) - 2:
            layers.append(eqx.nn.Lambda(activation))
    if final is not None:
        layers.append(eqx.nn.Lambda(final))
    return eqx.nn.Sequential(layers)
