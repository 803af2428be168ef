"""Lesson 10, in Python: amortized inference for repeated experiments (see amortized_normal.ppl).

    python examples/amortized_normal.py

The model and guide are decorated Python functions, and the guide's network is an equinox module
bound by name: `encoder` below is an ordinary equinox MLP, and because the guide calls it, its
weights become parameters of the guide that training moves. The script

1. trains the guide on 20,000 simulations from the model (no data needed), and again on the
   2,000 recorded runs of amortized_normal.collection.json (the ELBO averaged over them);
2. answers for 1,000 new runs in one call and compares with the exact posterior,
   normal(sum(y) / (N + 1/4), 1 / sqrt(N + 1/4));
3. corrects one answer by importance sampling with the trained guide as the proposal;
4. measures what amortization costs in quality and saves in time against a guide fitted to that
   one run alone.
"""

# ruff: noqa: F821, F841
# (The linter reads this file as plain Python. F821: `y[i] = ...` creates the array `y` inside the
# model. F841: `mu = pp.sample(...)` names a random choice; its name is its address.)

import json
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import optax

import pplang as pp

HERE = Path(__file__).resolve().parent
N, PRIOR_SD = 5, 2.0

encoder = eqx.nn.MLP(N, 2, 32, 1, activation=jax.nn.relu, key=jax.random.key(0))


@pp.model
def repeated(N: int):
    mu = pp.sample(pp.normal(0.0, 2.0))
    for i in range(N):
        y[i] = pp.sample(pp.normal(mu, 1.0))


@pp.guide
def repeated_q(N: int, y: "vector[N]"):
    h = encoder(y)
    mu = pp.sample(pp.normal(h[0], pp.exp(h[1])))


def exact(y: np.ndarray) -> tuple[np.ndarray, float]:
    precision = 1.0 / PRIOR_SD**2 + N
    return y.sum(-1) / precision, precision**-0.5


def report(label: str, result: "pp.AmortizedPosterior", y_new: np.ndarray) -> None:
    post = result.posterior({"y": y_new}, num_samples=4000)
    mean, sd = exact(y_new)
    error = (post.mean()["mu"] - mean) / sd
    print(f"{label}: trained in {result.info['wall_s']:.1f} s; on {len(y_new)} new runs the posterior mean is off "
          f"by {np.abs(error).mean():.3f} sd on average ({np.abs(error).max():.3f} at most), the sd by "
          f"{np.abs(post.sd()['mu'] / sd - 1).mean():.1%}")


def main() -> None:
    rng = np.random.default_rng(1)
    y_new = rng.normal(0.0, PRIOR_SD, (1000, 1)) + rng.normal(size=(1000, N))

    steps = 20 * (20_000 // 64)
    schedule = optax.linear_schedule(1e-2, 5e-4, steps)
    simulated = pp.amortize(repeated, repeated_q, simulate=20_000, shared={"N": N}, epochs=20, batch_size=64,
                            optimizer=optax.adam(schedule), progress=False)
    report("trained on simulations", simulated, y_new)

    runs = json.loads((HERE / "amortized_normal.collection.json").read_text())
    schedule = optax.linear_schedule(1e-2, 5e-4, 100 * (2000 // 64))
    recorded = pp.amortize(repeated, repeated_q, runs, shared={"N": N}, epochs=100, batch_size=64, particles=4,
                           optimizer=optax.adam(schedule), progress=False)
    report("trained on 2,000 recorded runs (ELBO)", recorded, y_new)

    query = json.loads((HERE / "amortized_normal.query.json").read_text())
    mean, sd = exact(np.asarray(query["y"]))
    print(f"\nquery run {query['y']}: exact posterior mean {float(mean):.3f}, sd {sd:.3f}")
    print(simulated.posterior(query).summary())
    corrected = simulated.importance_sampling(query, num_samples=4000)
    print(f"importance sampling with the guide as proposal: Pareto k {corrected.pareto_k:.2f}, "
          f"mean {corrected.mean('mu'):.3f}")
    print("\n" + simulated.compare(query, steps=2000).summary())


if __name__ == "__main__":
    main()
