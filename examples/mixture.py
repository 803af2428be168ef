"""Lesson 4, in Python: a two-component mixture with one discrete choice per point (see mixture.ppl).

    python examples/mixture.py

First the prior as proposal with the assignments drawn too, to see it fail, and with them summed
out of the weights; then the data-driven guide `soft_assign`. The result
lists, for every eruption, the posterior probability that it was a long one.
"""

# ruff: noqa: F821, F841
# (The linter reads this file as plain Python. F821: `z[i] = ...` creates the array `z` inside the
# model. F841: in the guide, `w = pp.sample(...)` names a random choice; the name is its address,
# so it matters even though nothing reads it afterwards.)

from pathlib import Path

import numpy as np

import pplang as pp

HERE = Path(__file__).resolve().parent


@pp.model
def mixture(N: int):
    w = pp.sample(pp.beta(2.0, 2.0))
    short = pp.sample(pp.normal(2.0, 1.0))
    long = pp.sample(pp.normal(4.5, 1.0))
    sigma = pp.sample(pp.half_normal(1.0))
    for i in range(N):
        z[i] = pp.sample(pp.bernoulli(w))
        if z[i]:
            y[i] = pp.sample(pp.normal(long, sigma))
        else:
            y[i] = pp.sample(pp.normal(short, sigma))
    return w


@pp.guide
def soft_assign(N: int, y: "vector[N]"):
    mid = 0.5 * (pp.min(y) + pp.max(y))
    r = pp.sigmoid(6.0 * (y - mid))
    n_long = pp.sum(r)
    w = pp.sample(pp.beta(1.0 + n_long, 1.0 + N - n_long))
    long = pp.sample(pp.normal(pp.sum(r * y) / n_long, 0.3))
    short = pp.sample(pp.normal(pp.sum((1.0 - r) * y) / (N - n_long), 0.3))
    sigma = pp.sample(pp.lognormal(pp.log(0.4), 0.3))
    for i in range(N):
        z[i] = pp.sample(pp.bernoulli(r[i]))


def main() -> None:
    data = pp.load_data(str(HERE / "mixture.data.json"))  # {"N": 24, "y": [...]}

    # marginalize=False: the prior proposes the 24 assignments too (by default they are summed out)
    bad = pp.importance_sampling(mixture, data, num_samples=20_000, seed=0, marginalize=False)
    print(f"prior proposal: ESS {bad.ess:.0f}, log p(y) {bad.log_marginal_likelihood:.2f}, "
          f"sigma {float(bad.mean('sigma')):.2f}  <- the prior never guesses all 24 assignments")
    summed = pp.importance_sampling(mixture, data, num_samples=20_000, seed=0)
    print(f"prior proposal, assignments summed out: ESS {summed.ess:.0f}, "
          f"log p(y) {summed.log_marginal_likelihood:.2f}, sigma {float(summed.mean('sigma')):.2f}")

    post = pp.importance_sampling(mixture, data, num_samples=20_000, seed=0, proposal=soft_assign)
    print(f"guide proposal: ESS {post.ess:.0f}, log p(y) {post.log_marginal_likelihood:.2f} "
          f"+- {post.log_marginal_likelihood_se:.2f}")
    for name in ("w", "short", "long", "sigma"):
        mean = float(post.mean(name))
        sd = float(np.sqrt(post.weights @ (post.samples[name] - mean) ** 2))
        print(f"  {name:6} {mean:.3f} (posterior sd {sd:.3f})")

    p_long = post.mean("z")  # the weighted mean of a 0/1 choice is its posterior probability
    print("eruption  minutes  P(long)")
    for i in np.argsort(data["y"]):
        print(f"{i:8d} {data['y'][i]:8.2f} {p_long[i]:8.3f}")


if __name__ == "__main__":
    main()
