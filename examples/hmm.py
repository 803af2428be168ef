"""Lesson 5, in Python: a hidden Markov model (see hmm.ppl).

    python examples/hmm.py

1. Simulate a state sequence and its measurements from `hmm`, which draws every hidden state.
2. Check the forward algorithm: on the first 8 measurements, summing the density of `hmm` over
   all 2^8 = 256 state paths (vectorized with jax.vmap over `log_density_fn`) must give the
   density of `hmm_forward`, which sums the states out step by step.
3. Infer the two emission means from all 100 measurements with `hmm_forward`.
"""

# ruff: noqa: F821
# (The linter reads this file as plain Python: it cannot know that `z[0] = ...` and `alpha[0] = ...`
# create arrays inside the models.)

import itertools
from pathlib import Path

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

import pplang as pp

HERE = Path(__file__).resolve().parent


@pp.model
def hmm(N: int, K: int, theta: "matrix[K, K]"):
    mu = pp.sample(pp.normal([3.0, 10.0], 1.0))
    z[0] = pp.sample(pp.categorical(pp.ones(K) / K))
    y[0] = pp.sample(pp.normal(mu[z[0]], 1.0))
    for t in range(1, N):
        z[t] = pp.sample(pp.categorical(theta[z[t - 1]]))
        y[t] = pp.sample(pp.normal(mu[z[t]], 1.0))


@pp.model
def hmm_forward(N: int, K: int, theta: "matrix[K, K]", y: "vector[N]"):
    mu = pp.sample(pp.normal([3.0, 10.0], 1.0))
    log_sqrt_2pi = 0.9189385332046727
    alpha[0] = -0.5 * pp.square(y[0] - mu) - log_sqrt_2pi - pp.log(K)
    for t in range(1, N):
        m = pp.max(alpha[t - 1])
        alpha[t] = m + pp.log(pp.exp(alpha[t - 1] - m) @ theta) - 0.5 * pp.square(y[t] - mu) - log_sqrt_2pi
    pp.factor(pp.logsumexp(alpha[N - 1]))


def main() -> None:
    data = pp.load_data(str(HERE / "hmm.data.json"))  # {"N": 100, "K": 2, "theta": [[...], [...]], "y": [...]}
    args = {"N": data["N"], "K": data["K"], "theta": data["theta"]}

    # 1. One simulated sequence (simulate ignores observations; we pass only the arguments).
    tr = hmm.simulate(args, seed=3)
    print(f"simulated: mu = [{tr['mu'][0]:.2f}, {tr['mu'][1]:.2f}]")
    print("  states      ", "".join(str(int(k)) for k in tr["z"][:40]))
    print("  measurements", " ".join(f"{v:.1f}" for v in tr["y"][:12]), "...")
    print(f"  log density of the whole trace: {float(tr.log_density):.2f}"
          f" (recomputed: {float(hmm.log_density(tr.values, args)):.2f})")

    # 2. Brute force against the forward algorithm on the first T = 8 measurements.
    T = 8
    short = {"N": T, "K": data["K"], "theta": data["theta"], "y": data["y"][:T]}
    mu = jnp.array([3.0, 8.8])
    paths = jnp.array(list(itertools.product(range(data["K"]), repeat=T)))   # (256, 8)
    joint = hmm.log_density_fn(short)                   # latent values {mu, z} -> log p(mu, z, y)
    per_path = jax.vmap(lambda z: joint({"mu": mu, "z": z}))(paths)
    brute = float(logsumexp(per_path))
    forward = float(hmm_forward.log_density({"mu": mu}, short))
    print(f"log p(mu, y[0:{T}]): sum over {len(paths)} paths {brute:.4f}, forward algorithm {forward:.4f}")

    # 3. The posterior of the emission means, states summed out.
    post = pp.importance_sampling(hmm_forward, data, num_samples=20_000, seed=0)
    print(post.summary())
    print("posteriordb reference posterior means: mu = [3.02, 8.83]")


if __name__ == "__main__":
    main()
