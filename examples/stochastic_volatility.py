"""Lesson 7, in Python: stochastic volatility (see stochastic_volatility.ppl).

    python examples/stochastic_volatility.py

1. Filter 250 daily returns with 2000 particles.
2. Read the answer: the filtering mean and 90% band of the log-variance h[t] at every step,
   turned into the volatility (the sd of the day's return), exp(h / 2), next to the size of the
   returns around that day. Quantiles carry over through the monotone map exp(h / 2); means do not,
   so the table shows the median.
3. How hard the filter worked: the effective sample size per step, and how often it resampled.
"""

# ruff: noqa: F821
# (The linter reads this file as plain Python: it cannot know that `h[0] = ...` creates the array
# `h` inside the model.)

from pathlib import Path

import numpy as np

import pplang as pp

HERE = Path(__file__).resolve().parent


@pp.model
def stochastic_volatility(T: int, mu: float, phi: float, sigma: "positive"):
    h[0] = pp.sample(pp.normal(mu, sigma / pp.sqrt(1.0 - phi * phi)))
    y[0] = pp.sample(pp.normal(0.0, pp.exp(h[0] / 2.0)))
    for t in range(1, T):
        h[t] = pp.sample(pp.normal(mu + phi * (h[t - 1] - mu), sigma))
        y[t] = pp.sample(pp.normal(0.0, pp.exp(h[t] / 2.0)))


def main() -> dict:
    data = pp.load_data(str(HERE / "stochastic_volatility.data.json"))  # T, mu, phi, sigma, returns y
    result = pp.smc(stochastic_volatility, data, particles=2000, seed=0)
    print(result.summary())

    y = np.asarray(data["y"])
    lo, med, hi = np.exp(np.asarray(result.filtering_quantiles("h", [0.05, 0.5, 0.95])) / 2.0)
    print("volatility (sd of the day's return, %), filtered from the returns up to that day")
    print("   day   median   90% band          mean |return| over the 10 days before")
    for t in range(9, len(y), 20):
        print(f"  {t:4d}   {med[t]:6.3f}   {lo[t]:6.3f} to {hi[t]:6.3f}   {np.mean(np.abs(y[t - 9:t + 1])):6.3f}")

    ess = np.asarray(result.ess)
    print(f"log p(y): {result.log_marginal_likelihood:.3f}; effective sample size: smallest {ess.min():.0f}, "
          f"median {np.median(ess):.0f} of 2000; resampled at {int(np.sum(result.resampled))} of {len(y)} steps")
    return {"result": result, "data": data}


if __name__ == "__main__":
    main()
