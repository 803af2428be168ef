"""Neural networks that programs call by name: equinox modules whose weights are parameters.

A network is either declared in a model file from a standard block (`network enc = mlp(...)`,
built here with equinox layers) or an equinox module the caller binds by name. Either way its
weights are ordinary parameters of the program that calls it, one per array leaf, at addresses
`name.path` (`enc.layers[0].weight`), so optimizers, checkpoints and saved results treat them
like any `param`. A network maps one example (an input of `input_rank` dimensions) to its output;
inputs with more leading dimensions are mapped over them (a batch, or an array of examples).

JAX and equinox are imported where a network is built or run, not here: the type checker reads
`BLOCKS` and `ACTIVATIONS` and builds the `MLP` a declaration describes without them.
"""

from __future__ import annotations

import abc
import sys
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import equinox as eqx

Array = Any

# activation name -> the jax.nn function (`identity`: none)
ACTIVATIONS: dict[str, str] = {name: name for name in (
    "identity", "relu", "tanh", "sigmoid", "softplus", "elu", "gelu", "silu", "leaky_relu")}


def activation(name: str) -> Callable[[Array], Array]:
    """The function an activation name stands for."""
    import jax

    return (lambda x: x) if name == "identity" else getattr(jax.nn, ACTIVATIONS[name])


class Network(abc.ABC):
    """What a program needs of a network: its initial module for an input, and how to apply it."""

    input_rank: int | None = None  # dimensions of one example; None: the module takes inputs whole
    out_size: int | None = None  # size of the last output dimension, when known before running

    @abc.abstractmethod
    def initial(self, name: str, x: Array) -> eqx.Module:
        """The module before training, for input `x` (whose shape may size the first layer)."""

    def built(self, name: str, in_size: int, build: Callable[[Any, Any], eqx.Module]) -> eqx.Module:
        """The initial module of network `name` for inputs of `in_size` features, made once by
        `build(key, dtype)` with a key derived from the name (so a program's initial state is
        reproducible), and with concrete weights even while JAX traces the calling program."""
        import jax
        import jax.numpy as jnp

        dtype = jnp.result_type(float)
        cache_key = (name, in_size, str(dtype))
        cache: dict = self._built  # type: ignore[attr-defined]  # each built-in network's own field
        if cache_key not in cache:
            with jax.ensure_compile_time_eval():
                cache[cache_key] = build(jax.random.key(zlib.crc32(name.encode())), dtype)
        return cache[cache_key]

    def apply(self, module: eqx.Module, x: Array) -> Array:
        import jax
        import jax.numpy as jnp

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
        import jax.numpy as jnp
        from pplang.stdlib import set_modules as sm

        in_size = self.in_size or jnp.shape(x)[-1]
        final = None if self.final == "identity" else activation(self.final)
        return self.built(name, in_size, lambda key, dtype: sm.mlp_of(
            in_size, self.out_size, self.hidden, activation(self.activation), key, dtype, final))


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
    """A caller-bound value as a network when it is an equinox module with weights; else unchanged.
    (No value is an equinox module before equinox is imported, so checking a file does not import it.)"""
    if "equinox" not in sys.modules:
        return value
    import equinox as eqx
    import jax

    if isinstance(value, eqx.Module) and not isinstance(value, Network) and jax.tree.leaves(trainable(value)):
        return network(value)
    return value


def trainable(module: eqx.Module) -> Any:
    import equinox as eqx

    return eqx.filter(module, eqx.is_inexact_array)


def weights(name: str, module: eqx.Module) -> dict[str, Array]:
    """The module's trainable arrays by parameter address (`name` + the leaf's path)."""
    import jax

    leaves = jax.tree_util.tree_flatten_with_path(trainable(module))[0]
    return {name + jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def with_weights(name: str, module: eqx.Module, params: Mapping[str, Array]) -> eqx.Module:
    """The module with its trainable arrays replaced by `params[address]`."""
    import equinox as eqx
    import jax

    arrays, static = eqx.partition(module, eqx.is_inexact_array)
    paths, treedef = jax.tree_util.tree_flatten_with_path(arrays)
    new = [params[name + jax.tree_util.keystr(path)] for path, _ in paths]
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, new), static)




# ------------------------------------------------------------------ set encoders

POOLS = ("mean", "sum", "max")


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
        import jax
        import jax.numpy as jnp
        from pplang.stdlib import set_modules as sm

        act = activation(self.activation)
        d = jnp.shape(x)[-1]

        def build(key: Any, dtype: Any) -> eqx.Module:
            k1, k2 = jax.random.split(key)
            phi = sm.mlp_of(d, self.width, self.phi, act, k1, dtype)
            rho = sm.mlp_of(self.width + 1, self.out_size, self.rho, act, k2, dtype)
            return sm.DeepSetsModule(phi, rho, self.pool)

        return self.built(name, d, build)


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
        import equinox as eqx
        import jax
        import jax.numpy as jnp
        from pplang.stdlib import set_modules as sm

        act = activation(self.activation)
        d = jnp.shape(x)[-1]

        def build(key: Any, dtype: Any) -> eqx.Module:
            keys = jax.random.split(key, 3 * self.blocks + 4)
            embed = eqx.nn.Linear(d, self.dim, key=keys[0], dtype=dtype)
            blocks = tuple(sm.AttentionBlock(
                eqx.nn.MultiheadAttention(self.heads, self.dim, key=keys[1 + 3 * i], dtype=dtype),
                eqx.nn.LayerNorm(self.dim, dtype=dtype),
                sm.mlp_of(self.dim, self.dim, (self.dim,), act, keys[2 + 3 * i], dtype),
                eqx.nn.LayerNorm(self.dim, dtype=dtype)) for i in range(self.blocks))
            seed = jax.random.normal(keys[-3], (1, self.dim), dtype)
            pooling = eqx.nn.MultiheadAttention(self.heads, self.dim, key=keys[-2], dtype=dtype)
            out = sm.mlp_of(self.dim + 1, self.out_size, self.hidden, act, keys[-1], dtype)
            return sm.SetTransformerModule(embed, blocks, seed, pooling, out)

        return self.built(name, d, build)


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
