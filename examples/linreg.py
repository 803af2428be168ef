"""Lesson 2, in Python: linear regression with a data-driven proposal (see linreg.ppl).

    python examples/linreg.py

The model and the guide are decorated Python functions. The guide is an ordinary pplang guide:
importance sampling draws from it and weights by model density / guide density. We compare
the posterior means with the least-squares fit, which they should be close to because the
priors are wide.
"""

# ruff: noqa: F821, F841
# (The linter reads this file as plain Python. F821: `mu[i] = ...` creates the array `mu` inside
# the model. F841: in the guide, `alpha = pp.sample(...)` names a random choice; the name is its
# address, so it matters even though nothing reads it afterwards.)

from pathlib import Path

import numpy as np

import pplang as pp

HERE = Path(__file__).resolve().parent


@pp.model
def linreg(N: int, x: "vector[N]"):
    alpha = pp.sample(pp.normal(0.0, 10.0))
    beta = pp.sample(pp.normal(0.0, 10.0))
    sigma = pp.sample(pp.half_normal(5.0))
    for i in range(N):
        mu[i] = alpha + beta * x[i]
        y[i] = pp.sample(pp.normal(mu[i], sigma))
    return beta


@pp.guide
def ols_proposal(N: int, x: "vector[N]", y: "vector[N]"):
    xbar = pp.mean(x)
    ybar = pp.mean(y)
    sxx = pp.sum(pp.square(x - xbar))
    b = pp.sum((x - xbar) * (y - ybar)) / sxx
    a = ybar - b * xbar
    s = pp.sqrt(pp.sum(pp.square(y - a - b * x)) / (N - 2))
    beta = pp.sample(pp.student_t(5.0, b, 1.5 * s / pp.sqrt(sxx)))
    alpha = pp.sample(pp.student_t(5.0, ybar - beta * xbar, 1.5 * s / pp.sqrt(1.0 * N)))
    sigma = pp.sample(pp.lognormal(pp.log(s), 1.5 / pp.sqrt(2.0 * N)))


def main() -> None:
    data = pp.load_data(str(HERE / "linreg.data.json"))  # {"N": 50, "x": [...], "y": [...]}

    prior = pp.importance_sampling(linreg, data, num_samples=10_000, seed=0)
    print(f"proposing from the prior: effective sample size {prior.ess:.1f} of 10000 (useless)")

    post = pp.importance_sampling(linreg, data, num_samples=10_000, seed=0, proposal=ols_proposal)
    print(post.summary())

    x, y = np.asarray(data["x"]), np.asarray(data["y"])
    slope, intercept = np.polyfit(x, y, 1)
    print(f"least squares: alpha = {intercept:.3f}, beta = {slope:.3f}")
    print(f"posterior means: alpha = {float(post.mean('alpha')):.3f}, beta = {float(post.mean('beta')):.3f}, "
          f"sigma = {float(post.mean('sigma')):.3f}")

    # Posterior predictive: for a 2-tonne car, fuel = alpha + beta * 2 + noise.
    draws = post.resample(4000, seed=1)
    rng = np.random.default_rng(0)
    fuel = draws["alpha"] + 2.0 * draws["beta"] + draws["sigma"] * rng.standard_normal(4000)
    lo, hi = np.quantile(fuel, [0.05, 0.95])
    print(f"a 2-tonne car: {np.mean(fuel):.2f} L/100 km, 90% interval {lo:.2f} to {hi:.2f}")


if __name__ == "__main__":
    main()
