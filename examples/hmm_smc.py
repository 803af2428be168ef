"""Lesson 6, in Python: a particle filter on the hidden Markov model (see hmm_smc.ppl).

    python examples/hmm_smc.py

1. Filter the 100 measurements with 1000 particles: `pp.smc` returns the estimate of
   log p(y | theta, mu), the effective sample size at every step and when it resampled.
2. Compare with the exact value from lesson 5: `hmm_forward` (hmm.ppl) sums the states out with
   the forward algorithm; its log density at mu is log p(mu) + log p(y | mu), so subtracting the
   prior term log p(mu) leaves the exact log p(y | mu).
3. Run the filter with 100 seeds. The estimate of p(y) is unbiased, so exp(estimate - exact)
   averages to 1; on the log scale the estimates sit slightly below the exact value (Jensen).
4. The filtering probabilities p(z[t] = 1 | y[0..t]): the mean of the 0/1 state over particles.
5. Propose from the guide `look_ahead`, which looks at y[t] before drawing z[t]: the same 20 runs
   agree with the exact value to about 0.001, and the effective sample size stays near 1000.
"""

# ruff: noqa: F821
# (The linter reads this file as plain Python: it cannot know that `z[0] = ...` creates the array
# `z` inside the model.)

from pathlib import Path

import numpy as np
from scipy import stats

import pplang as pp

HERE = Path(__file__).resolve().parent


@pp.model
def hmm_smc(N: int, K: int, theta: "matrix[K, K]", mu: "vector[K]"):
    z[0] = pp.sample(pp.categorical(pp.ones(K) / K))
    y[0] = pp.sample(pp.normal(mu[z[0]], 1.0))
    for t in range(1, N):
        z[t] = pp.sample(pp.categorical(theta[z[t - 1]]))
        y[t] = pp.sample(pp.normal(mu[z[t]], 1.0))


@pp.guide
def look_ahead(N: int, K: int, theta: "matrix[K, K]", mu: "vector[K]", y: "vector[N]"):
    z[0] = pp.sample(pp.categorical(pp.softmax(-0.5 * pp.square(y[0] - mu))))
    for t in range(1, N):
        z[t] = pp.sample(pp.categorical(theta[z[t - 1]] * pp.exp(-0.5 * pp.square(y[t] - mu))))


def exact_log_likelihood(data: dict) -> float:
    """log p(y | theta, mu) by the forward algorithm of lesson 5 (hmm.ppl's `hmm_forward`)."""
    hmm_forward = pp.load(str(HERE / "hmm.ppl"))["hmm_forward"]
    mu = np.asarray(data["mu"])
    args = {k: data[k] for k in ("N", "K", "theta", "y")}
    log_prior = stats.norm.logpdf(mu, [3.0, 10.0], 1.0).sum()  # hmm_forward's prior on mu
    return float(hmm_forward.log_density({"mu": mu}, args)) - log_prior


def main() -> dict:
    data = pp.load_data(str(HERE / "hmm_smc.data.json"))  # N, K, theta, mu and the measurements y

    # 1. One run of the filter.
    result = pp.smc(hmm_smc, data, particles=1000, seed=0)
    print(result.summary())

    # 2. The exact answer.
    exact = exact_log_likelihood(data)
    print(f"log p(y | theta, mu): particle filter {result.log_marginal_likelihood:.3f}, "
          f"forward algorithm {exact:.3f}")

    # 3. A hundred independent runs (the filter is compiled once; each run takes milliseconds).
    runs = np.array([pp.smc(hmm_smc, data, particles=1000, seed=s).log_marginal_likelihood for s in range(100)])
    ratio = np.exp(runs - exact)
    print(f"100 runs: log estimate {runs.mean():.3f} (sd {runs.std(ddof=1):.3f}); "
          f"estimate / exact {ratio.mean():.3f} (se {ratio.std(ddof=1) / np.sqrt(len(runs)):.3f})")

    # 4. Which state the measurements so far point to, step by step (1 = the high state, mu = 8.8).
    p_high = np.asarray(result.filtering_mean("z"))
    print("p(z[t] = 1 | y[0..t]) for the first 30 steps:")
    print("  ", " ".join(f"{p:.2f}" for p in p_high[:30]))
    print("measurements:")
    print("  ", " ".join(f"{v:4.1f}" for v in data["y"][:30]))

    # 5. A proposal that looks at the data.
    guided = np.array([pp.smc(hmm_smc, data, particles=1000, seed=s, proposal=look_ahead).log_marginal_likelihood
                       for s in range(20)])
    one = pp.smc(hmm_smc, data, particles=1000, seed=0, proposal=look_ahead)
    print(f"proposal look_ahead, 20 runs: log estimate {guided.mean():.4f} (sd {guided.std(ddof=1):.4f}); "
          f"smallest effective sample size {one.ess.min():.0f}; resampled after {int(one.resampled.sum())} steps")
    return {"result": result, "exact": exact, "runs": runs, "guided": guided}


if __name__ == "__main__":
    main()
