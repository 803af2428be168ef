"""Summed-out discrete choices recovered after inference over the others (the marginalize
transformation's recorded quantities). For a chain, everything follows from what the forward
algorithm computed, so the model's density is not evaluated again:

* `alphas[t, k]` = log p(z[t] = k, data up to t), the forward algorithm's filtered log probabilities;
* `log_trans[.., k, j]` = log p(z[t] = k | z[t - 1] = j), one matrix or one per step (row 0 unused).

Backward smoothing needs only these: p(z[t] = j | z[t + 1] = k, data up to t) is proportional to
alphas[t, j] + log_trans[t + 1, k, j]. The emissions of step t are alphas[t] minus the log-sum-exp of
the transition from alphas[t - 1], which is all Viterbi needs besides the transition.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import logsumexp

Array = jax.Array


def _steps(alphas: Array, log_trans: Array) -> Array:
    """The per-step log transition matrices (T, K, K), a constant matrix repeated."""
    log_trans = jnp.asarray(log_trans)
    if log_trans.ndim == 2:
        return jnp.broadcast_to(log_trans, (alphas.shape[0], *log_trans.shape))
    return log_trans


def _backward_conditional(alpha: Array, log_trans: Array) -> Array:
    """[k, j] = log p(z[t] = j | z[t + 1] = k, data up to t)."""
    joint = alpha[None, :] + log_trans
    return joint - logsumexp(joint, axis=1, keepdims=True)


def _as(values: Array, boolean: bool) -> Array:
    return values.astype(bool) if boolean else values


def chain_marginals(alphas: Array, log_trans: Array) -> Array:
    """p(z[t] = k | all data) for every t (forward-backward, in the smoothing form), shape (T, K)."""
    trans = _steps(alphas, log_trans)
    last = alphas[-1] - logsumexp(alphas[-1])

    def back(post_next: Array, xs: tuple[Array, Array]) -> tuple[Array, Array]:
        alpha, lt = xs
        post = logsumexp(post_next[:, None] + _backward_conditional(alpha, lt), axis=0)
        return post, post

    _, posts = lax.scan(back, last, (alphas[:-1], trans[1:]), reverse=True)
    return jnp.exp(jnp.concatenate([posts, last[None]]))


def chain_draw(key: Array, alphas: Array, log_trans: Array, boolean: bool = False) -> Array:
    """One path drawn from p(z | all data): forward filtering (done), backward sampling."""
    trans = _steps(alphas, log_trans)
    keys = jax.random.split(key, alphas.shape[0])
    last = jax.random.categorical(keys[-1], alphas[-1])

    def back(z_next: Array, xs: tuple[Array, Array, Array]) -> tuple[Array, Array]:
        alpha, lt, k = xs
        z = jax.random.categorical(k, alpha + lt[z_next])
        return z, z

    _, path = lax.scan(back, last, (alphas[:-1], trans[1:], keys[:-1]), reverse=True)
    return _as(jnp.concatenate([path, last[None]]), boolean)


def chain_most_probable(alphas: Array, log_trans: Array, boolean: bool = False) -> Array:
    """The most probable path given the data (Viterbi)."""
    trans = _steps(alphas, log_trans)
    predicted = logsumexp(trans[1:] + alphas[:-1, None, :], axis=2)  # log p(z[t] = k | data before t) + const
    emissions = jnp.where(jnp.isneginf(alphas[1:]), -jnp.inf, alphas[1:] - predicted)

    def forward(delta: Array, xs: tuple[Array, Array]) -> tuple[Array, Array]:
        lt, emit = xs
        scores = delta[None, :] + lt  # [k, j]
        return jnp.max(scores, axis=1) + emit, jnp.argmax(scores, axis=1)

    delta, pointers = lax.scan(forward, alphas[0], (trans[1:], emissions))
    last = jnp.argmax(delta)

    def back(z_next: Array, ptr: Array) -> tuple[Array, Array]:
        z = ptr[z_next]
        return z, z

    _, path = lax.scan(back, last, pointers, reverse=True)
    return _as(jnp.concatenate([path, last[None]]), boolean)


def draw(key: Array, probs: Array, boolean: bool = False) -> Array:
    """Independent draws from posterior probabilities over the last axis (mixture assignments, a
    single choice): given the other choices they are independent."""
    return _as(jax.random.categorical(key, jnp.log(probs)), boolean)


def most_probable(probs: Array, boolean: bool = False) -> Array:
    """The most probable value of each independent choice."""
    return _as(jnp.argmax(probs, axis=-1), boolean)
