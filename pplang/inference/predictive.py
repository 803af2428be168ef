"""What every result exports beside its draws: data replicated from the posterior, prior draws,
the observed data, and all of it gathered into an ArviZ InferenceData."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pplang.compiler.diagnostics import error
from pplang.data import Bound
from pplang.models import Model, as_key


def arviz(needed_for: str = "exporting to ArviZ needs") -> Any:
    """The arviz module (its import-time FutureWarning silenced), or a located error without it
    saying what `needed_for` it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # arviz announces its refactor on import
            import arviz as az
    except ImportError:
        raise error(f"{needed_for} arviz, which is not installed", hint="pip install 'arviz<1'") from None
    return az


def observed_data(model: Model, data: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """The observed choices of `data` under `model`, as numpy arrays."""
    return {a: np.asarray(v) for a, v in model.bind(data).observed.items()}


def replicate(model: Model, data: Mapping[str, Any] | None, draws: Mapping[str, Any],
              params: Mapping[str, Any] | None = None, seed: Any = 0) -> dict[str, np.ndarray]:
    """Replicated observations: each observed choice of `data` drawn anew given each draw of the
    latent choices (`draws[address]` with a leading draw axis); the same leading axis."""
    model, draws = model.generative(draws, data, params, seed)
    bound = model.bind(data)
    latents = {a: jnp.asarray(v) for a, v in draws.items() if a in model.sites and a not in bound.observed}
    if not latents or not bound.observed:
        return {}
    params = dict(params or {})
    run = model.runner(bound, frozenset(latents), param_addrs=frozenset(params))
    many = model.reuse(("replicate", id(run)), lambda: jax.jit(jax.vmap(run, in_axes=(0, 0, None, None))), keep=run)
    keys = jax.random.split(as_key(seed), next(iter(latents.values())).shape[0])
    _, values, _ = many(keys, latents, params, bound.arrays)
    return {a: np.asarray(values[a]) for a in bound.observed}


def prior(model: Model, bound: Bound, num_samples: int, params: Mapping[str, Any] | None = None,
          seed: Any = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(prior draws of the latent choices, prior predictive draws of the observed ones) under the
    data of `bound` (`model.bind(data)`), each with a leading draw axis. A marginal model's prior is
    its full model's (the summed-out choices drawn too)."""
    model = model.full or model
    params = dict(params or {})
    run = model.runner(bound, frozenset(), param_addrs=frozenset(params))
    many = model.reuse(("prior", id(run)), lambda: jax.jit(jax.vmap(run, in_axes=(0, None, None, None))), keep=run)
    try:
        _, values, _ = many(jax.random.split(as_key(seed), num_samples), {}, params, bound.arrays)
    except ValueError as e:  # a declared support its distribution cannot be drawn inside (`ordered`, ...)
        warnings.warn(f"no prior draws for {model.kind} `{model.name}`: {e}", stacklevel=2)
        return {}, {}
    values = {a: np.asarray(v) for a, v in values.items()}
    return ({a: v for a, v in values.items() if a not in bound.observed},
            {a: v for a, v in values.items() if a in bound.observed})


def inference_data(info: Mapping[str, Any], **groups: Mapping[str, np.ndarray] | None) -> Any:
    """An arviz.InferenceData of the non-empty `groups` (arrays with their chain and draw axes,
    except observed_data), with the JSON-able scalars of `info` as attributes."""
    az = arviz()
    attrs = {k: v for k, v in info.items() if isinstance(v, str | int | float | bool)}
    kept = {g: {a: np.asarray(v) for a, v in d.items()} for g, d in groups.items() if d}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.from_dict(**kept, attrs=attrs)


def one_chain(draws: Mapping[str, Any] | None) -> dict[str, np.ndarray] | None:
    """Draws with a leading draw axis, given the chain axis ArviZ expects (one chain)."""
    return None if draws is None else {a: np.asarray(v)[None] for a, v in draws.items()}
