"""Neural networks that programs call by name: equinox modules whose weights are parameters.

A network is either declared in a model file from a standard block (`network enc = mlp(...)`,
built here with equinox layers) or an equinox module the caller binds by name. Either way its
weights are ordinary parameters of the program that calls it, one per array leaf, at addresses
`name.path` (`enc.layers[0].weight`), so optimizers, checkpoints and saved results treat them
like any `param`. A network maps one example (an input of `input_rank` dimensions) to its output;
inputs with more leading dimensions are mapped over them (a batch, or an array of examples).
"""

from __future__ import annotations

import abc
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

Array = Any

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "identity": lambda x: x,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "softplus": jax.nn.softplus,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "leaky_relu": jax.nn.leaky_relu,
}


class Network(abc.ABC):
    """What a program needs of a network: its initial module for an input, and how to apply it."""

    input_rank: int | None = None  # dimensions of one example; None: the module takes inputs whole
    out_size: int | None = None  # size of the last output dimension, when known before running

    @abc.abstractmethod
    def initial(self, name: str, x: Array) -> eqx.Module:
        """The module before training, for input `x` (whose shape may size the first layer)."""

    def apply(self, module: eqx.Module, x: Array) -> Array:
        x = jnp.asarray(x)
        rank = self.input_rank
        if rank is None or x.ndim == rank:
            return module(x)
        if x.ndim < rank:
            raise ValueError(f"the network takes inputs of {rank} dimension(s), got shape {x.shape}")
        lead = x.shape[:x.ndim - rank]
        flat = x.reshape((-1,) + x.shape[x.ndim - rank:])
        out = jax.vmap(module)(flat)
        return out.reshape(lead + out.shape[1:])


@dataclass(frozen=True)
class MLP(Network):
    """A multilayer perceptron: equinox Linear layers of the given hidden widths with `activation`
    between them and `final` after the last. `in_size` None takes the size of the input's last
    dimension at the first call. Initial weights come from a key derived from the network's name
    (equinox's default initialization), so a program's initial state is reproducible."""

    out_size: int
    hidden: tuple[int, ...] = ()
    activation: str = "relu"
    final: str = "identity"
    in_size: int | None = None
    input_rank: int | None = 1
    _built: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def initial(self, name: str, x: Array) -> eqx.Module:
        in_size = self.in_size or jnp.shape(x)[-1]
        dtype = jnp.result_type(float)
        cache_key = (name, in_size, str(dtype))
        if cache_key not in self._built:
            final = None if self.final == "identity" else ACTIVATIONS[self.final]
            with jax.ensure_compile_time_eval():  # concrete initial weights even while tracing
                self._built[cache_key] = mlp_of(in_size, self.out_size, self.hidden, ACTIVATIONS[self.activation],
                                                jax.random.key(zlib.crc32(name.encode())), dtype, final)
        return self._built[cache_key]


@dataclass(frozen=True, eq=False)
class Bound(Network):
    """An equinox module bound by the caller; its own weights are the initial ones."""

    module: eqx.Module
    input_rank: int | None = None

    def initial(self, name: str, x: Array) -> eqx.Module:
        return self.module


def network(module: eqx.Module, input_rank: int | None = None) -> Bound:
    """Bind an equinox module as a network whose weights are trained. `input_rank` is the number
    of dimensions of one example (inputs with more are mapped over their leading dimensions); by
    default 1 for modules with an integer `in_size` (equinox's MLP and Linear), 0 for `in_size`
    "scalar", else the module is called on its input whole."""
    if input_rank is None:
        in_size = getattr(module, "in_size", None)
        input_rank = 0 if in_size == "scalar" else 1 if isinstance(in_size, int) else None
    return Bound(module, input_rank)


def as_network(value: Any) -> Any:
    """A caller-bound value as a network when it is an equinox module with weights; else unchanged."""
    if isinstance(value, eqx.Module) and not isinstance(value, Network) and jax.tree.leaves(trainable(value)):
        return network(value)
    return value


def trainable(module: eqx.Module) -> Any:
    return eqx.filter(module, eqx.is_inexact_array)


def weights(name: str, module: eqx.Module) -> dict[str, Array]:
    """The module's trainable arrays by parameter address (`name` + the leaf's path)."""
    leaves = jax.tree_util.tree_flatten_with_path(trainable(module))[0]
    return {name + jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def with_weights(name: str, module: eqx.Module, params: Mapping[str, Array]) -> eqx.Module:
    """The module with its trainable arrays replaced by `params[address]`."""
    arrays, static = eqx.partition(module, eqx.is_inexact_array)
    paths, treedef = jax.tree_util.tree_flatten_with_path(arrays)
    new = [params[name + jax.tree_util.keystr(path)] for path, _ in paths]
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, new), static)




# ------------------------------------------------------------------ set encoders

POOLS = ("mean", "sum", "max")


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


class SetNetwork(Network):
    """A permutation-invariant network: it maps a set of points (`points`), with a mask of the
    real ones among padded ones, to one output vector."""

    input_rank: int | None = 2

    def apply_set(self, module: eqx.Module, x: Array, mask: Array | None) -> Array:
        return module(x, mask)


@dataclass(frozen=True)
class DeepSets(SetNetwork):
    """Deep sets (Zaheer et al. 2017): `phi` (hidden widths, then `width` outputs) on every point,
    `pool` (mean, sum or max) over the points, then `rho` (hidden widths) to `out_size`."""

    out_size: int
    width: int = 64
    phi: tuple[int, ...] = (64,)
    rho: tuple[int, ...] = (64,)
    pool: str = "mean"
    activation: str = "relu"
    _built: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def initial(self, name: str, x: Array) -> eqx.Module:
        d = jnp.shape(x)[-1]
        dtype = jnp.result_type(float)
        cache_key = (name, d, str(dtype))
        if cache_key not in self._built:
            act = ACTIVATIONS[self.activation]
            with jax.ensure_compile_time_eval():
                k1, k2 = jax.random.split(jax.random.key(zlib.crc32(name.encode())))
                phi = mlp_of(d, self.width, self.phi, act, k1, dtype)
                rho = mlp_of(self.width + 1, self.out_size, self.rho, act, k2, dtype)
            self._built[cache_key] = DeepSetsModule(phi, rho, self.pool)
        return self._built[cache_key]


@dataclass(frozen=True)
class SetTransformer(SetNetwork):
    """A set transformer: points embedded to `dim`, `blocks` blocks of `heads`-head self-attention
    (equinox's MultiheadAttention, with the padding mask), pooling by attention, `hidden` widths
    of the output MLP."""

    out_size: int
    dim: int = 32
    heads: int = 4
    blocks: int = 2
    hidden: tuple[int, ...] = (64,)
    activation: str = "relu"
    _built: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must be a multiple of heads={self.heads} (each head gets dim / heads)")

    def initial(self, name: str, x: Array) -> eqx.Module:
        d = jnp.shape(x)[-1]
        dtype = jnp.result_type(float)
        cache_key = (name, d, str(dtype))
        if cache_key not in self._built:
            act = ACTIVATIONS[self.activation]
            with jax.ensure_compile_time_eval():
                keys = jax.random.split(jax.random.key(zlib.crc32(name.encode())), 3 * self.blocks + 4)
                embed = eqx.nn.Linear(d, self.dim, key=keys[0], dtype=dtype)
                blocks = tuple(AttentionBlock(
                    eqx.nn.MultiheadAttention(self.heads, self.dim, key=keys[1 + 3 * i], dtype=dtype),
                    eqx.nn.LayerNorm(self.dim, dtype=dtype),
                    mlp_of(self.dim, self.dim, (self.dim,), act, keys[2 + 3 * i], dtype),
                    eqx.nn.LayerNorm(self.dim, dtype=dtype)) for i in range(self.blocks))
                seed = jax.random.normal(keys[-3], (1, self.dim), dtype)
                pooling = eqx.nn.MultiheadAttention(self.heads, self.dim, key=keys[-2], dtype=dtype)
                out = mlp_of(self.dim + 1, self.out_size, self.hidden, act, keys[-1], dtype)
            self._built[cache_key] = SetTransformerModule(embed, blocks, seed, pooling, out)
        return self._built[cache_key]


@dataclass(frozen=True, eq=False)
class BoundSet(SetNetwork):
    """An equinox module bound by the caller as a set network: called as `module(points, mask)`
    with points (n, features) and mask (n,) of the real ones (None: all). The caller vouches that
    it is permutation-invariant and gives padded points no weight."""

    module: eqx.Module
    out_size: int | None = None

    def initial(self, name: str, x: Array) -> eqx.Module:
        return self.module


def set_network(module: eqx.Module, out_size: int | None = None) -> BoundSet:
    """Bind an equinox module `module(points, mask)` as a set network (its weights are trained);
    `out_size`, when given, lets the checker type its output."""
    return BoundSet(module, out_size)


def deep_sets(out_size: int, **options: Any) -> DeepSets:
    """The `deep_sets(...)` block of model files, for Python programs (lists of widths as lists)."""
    return DeepSets(out_size, **{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})


def set_transformer(out_size: int, **options: Any) -> SetTransformer:
    """The `set_transformer(...)` block of model files, for Python programs."""
    return SetTransformer(out_size, **{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})


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


# the standard blocks a model file's `network` declaration can build, with their options
BLOCKS: dict[str, tuple[type[Network], tuple[str, ...]]] = {
    "mlp": (MLP, ("out_size", "hidden", "activation", "final", "in_size")),
    "deep_sets": (DeepSets, ("out_size", "width", "phi", "rho", "pool", "activation")),
    "set_transformer": (SetTransformer, ("out_size", "dim", "heads", "blocks", "hidden", "activation")),
}
# options that name something (the rest are positive ints, or lists of them)
NAMED_OPTIONS: dict[str, tuple[str, ...]] = {"activation": tuple(ACTIVATIONS), "final": tuple(ACTIVATIONS),
                                             "pool": POOLS}
LIST_OPTIONS = ("hidden", "phi", "rho")
