"""Pareto-k diagnostic of importance weights (Vehtari, Simpson, Gelman, Yao and Gabry, "Pareto
smoothed importance sampling", 2024).

The largest weights are fitted with a generalized Pareto distribution; its shape k says how heavy
the weights' tail is. Read as Vehtari et al. do: k <= 0.5 good; 0.5 < k <= 0.7 the means are
usable but estimates of sds and tails may be off (they converge slowly); k > 0.7 the importance
sampling estimate is unreliable however many draws are made, even when the effective sample size
looks fine. `verdict` and `warning` are the one wording of this that summaries and commands use.
The fit is Zhang and Stephens' (2009) empirical Bayes estimator with the weakly informative prior
used by PSIS.
"""

from __future__ import annotations

import numpy as np

GOOD = 0.5
BAD = 0.7


def tail_size(n: int) -> int:
    """The number of largest weights fitted (PSIS's rule)."""
    return int(min(n / 5, 3 * np.sqrt(n)))


def gpd_fit(x: np.ndarray) -> tuple[float, float]:
    """Shape k and scale sigma of a generalized Pareto fitted to positive exceedances `x`."""
    x = np.sort(x)
    n = x.size
    m = 30 + int(np.sqrt(n))
    b = 1 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))
    b = b / (3 * x[int(n / 4 + 0.5) - 1]) + 1 / x[-1]
    k = np.mean(np.log1p(-b[:, None] * x), axis=1)
    log_lik = n * (np.log(-b / k) - k - 1)
    with np.errstate(over="ignore"):  # a huge term only makes that candidate's weight zero
        w = 1 / np.sum(np.exp(log_lik[None, :] - log_lik[:, None]), axis=1)
    keep = w >= 10 * np.finfo(float).eps
    w, b = w[keep] / np.sum(w[keep]), b[keep]
    b_post = np.sum(b * w)
    k_post = np.mean(np.log1p(-b_post * x))
    sigma = -k_post / b_post
    k_post = (n * k_post + 10 * 0.5) / (n + 10)  # shrink towards 0.5 (PSIS's weak prior)
    return float(k_post), float(sigma)


def pareto_k(log_weights: np.ndarray) -> float:
    """k-hat of the upper tail of the weights; nan when there are too few distinct draws to fit."""
    lw = np.asarray(log_weights, float)
    lw = lw[np.isfinite(lw)]
    n = lw.size
    m = tail_size(n)
    if m < 5:
        return float("nan")
    lw = np.sort(lw - lw.max())
    tail, cutoff = lw[-m:], lw[-m - 1]
    exceed = np.exp(tail) - np.exp(cutoff)
    if np.all(exceed <= 0) or np.unique(exceed).size < 5:
        return float("nan")
    k, _ = gpd_fit(exceed[exceed > 0] if np.any(exceed <= 0) else exceed)
    return k


def verdict(k: float) -> str:
    """A plain-words reading of k-hat for summaries."""
    if np.isnan(k):
        return "too few distinct weights to judge"
    if k <= GOOD:
        return "good"
    if k <= BAD:
        return "means usable; sds and tails may be off"
    return "unreliable: the proposal misses where the posterior is"


def warning(k: float, remedy: str, sample: str | None = None) -> str | None:
    """The warning a command prints for k-hat, or None when k <= 0.5 (or cannot be judged).
    `remedy` says how to get a better proposal (above 0.7); `sample` is the command that samples
    the posterior with NUTS instead, suggested when only the sds and tails are in doubt."""
    if np.isnan(k) or k <= GOOD:
        return None
    if k > BAD:
        return (f"warning: Pareto k {k:.2f} > {BAD}: the weights have so heavy a tail that these estimates are "
                f"unreliable however many draws are made; {remedy}")
    instead = f"`{sample}`" if sample else "`pplang sample`"
    return (f"warning: Pareto k {k:.2f} is between {GOOD} and {BAD}: the means are usable, but the estimates of "
            f"sds and tails may be off; for those, sample the posterior with NUTS ({instead})")


def sample_command(file: str, model: str, data: str | None) -> str:
    """The `pplang sample` command line for a model of a file (NUTS, when importance sampling is not enough)."""
    return f"pplang sample {file} --model {model}" + (f" --data {data}" if data else "")
