"""Lesson 1, in Python: the coin model of coin.ppl written as a decorated Python function.

    python examples/coin.py

`@pp.model` never runs the function: it reads its source and compiles it exactly like a model
file, so `p = pp.sample(pp.beta(1.0, 1.0))` means `p ~ beta(1.0, 1.0)`. The posterior of the
coin's bias after 8 heads in 10 flips is known exactly (beta(9, 3)), so we can check the answer.
"""

# ruff: noqa: F821
# (The linter reads this file as plain Python: it cannot know that `flips[i] = ...` creates the
# array `flips` inside the model.)

import math
from pathlib import Path

import pplang as pp

HERE = Path(__file__).resolve().parent


@pp.model
def coin(n: int):
    p = pp.sample(pp.beta(1.0, 1.0))
    for i in range(n):
        flips[i] = pp.sample(pp.bernoulli(p))
    return p


def main() -> None:
    data = pp.load_data(str(HERE / "coin.data.json"))  # {"n": 10, "flips": [1, 1, 1, 0, ...]}
    heads = sum(data["flips"])
    tails = data["n"] - heads

    # One draw from the prior: every choice sampled, with the log density of the whole trace.
    trace = coin.simulate({"n": data["n"]}, seed=1)
    print(f"a simulated coin: p = {float(trace['p']):.3f}, flips = {trace['flips'].astype(int).tolist()}")

    # The posterior: draw p from the prior, weight each draw by the likelihood of the flips.
    post = pp.importance_sampling(coin, data, num_samples=10_000, seed=0)
    print(post.summary())

    # The exact answer, for comparison: beta(1 + heads, 1 + tails), and
    # p(data) = B(1 + heads, 1 + tails) / B(1, 1) for this particular sequence of flips.
    exact_mean = (1 + heads) / (2 + heads + tails)
    log_beta = math.lgamma(1 + heads) + math.lgamma(1 + tails) - math.lgamma(2 + heads + tails)
    print(f"posterior mean of p: {float(post.mean('p')):.3f} (exact {exact_mean:.3f})")
    print(f"log marginal likelihood: {post.log_marginal_likelihood:.3f} "
          f"+- {post.log_marginal_likelihood_se:.3f} (exact {log_beta:.3f})")


if __name__ == "__main__":
    main()
