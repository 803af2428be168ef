"""Exact reference algorithms that the particle-filter tests compare against.

Each is a few lines of NumPy/SciPy in float64, written independently of pplang, and itself checked
in tests/inference/test_references.py against a second method (scipy's multivariate normal of the stacked
observations; brute-force enumeration of every state path):

* `kalman_filter`: log marginal likelihood and filtering means/covariances of a linear-Gaussian
  state-space model (exact).
* `hmm_forward`: log marginal likelihood and filtering probabilities of a hidden Markov model with
  finitely many states (exact).
* `grid_filter`: the same for a model with one continuous state, by quadrature on a fine uniform
  grid (the forward algorithm with the grid points as states; exact up to the quadrature error,
  which tests/inference/test_references.py shows is negligible on a linear-Gaussian model).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import linalg
from scipy.special import logsumexp

LOG_2PI = float(np.log(2.0 * np.pi))


class KalmanResult(NamedTuple):
    """`log_z`: log p(y[0..T-1]); `log_z_increments[t]`: log p(y[t] | y[0..t-1]);
    `means[t]`, `covariances[t]`: mean and covariance of p(x[t] | y[0..t]).

    For a scalar state `means` and `covariances` have shape (T,) (covariances are then variances);
    otherwise (T, dx) and (T, dx, dx).
    """

    log_z: float
    log_z_increments: np.ndarray
    means: np.ndarray
    covariances: np.ndarray


def kalman_filter(y: np.ndarray, A: np.ndarray | float, Q: np.ndarray | float, H: np.ndarray | float,
                  R: np.ndarray | float, m0: np.ndarray | float, P0: np.ndarray | float) -> KalmanResult:
    """The Kalman filter for

        x[0] ~ N(m0, P0),   x[t] ~ N(A x[t-1], Q) for t >= 1,   y[t] ~ N(H x[t], R).

    `y` has shape (T,) for scalar observations or (T, dy). `A`, `Q` are (dx, dx), `H` is (dy, dx),
    `R` is (dy, dy), `m0` (dx,), `P0` (dx, dx); scalars stand for 1 x 1. Note that Q, R and P0 are
    covariances (variances), not standard deviations.
    """
    y = np.asarray(y, np.float64)
    scalar_state = np.ndim(m0) == 0
    obs = y.reshape(len(y), -1)
    m = np.atleast_1d(np.asarray(m0, np.float64))
    dx, dy = m.shape[0], obs.shape[1]
    A, Q, P = (np.asarray(v, np.float64).reshape(dx, dx) for v in (A, Q, P0))
    H = np.asarray(H, np.float64).reshape(dy, dx)
    R = np.asarray(R, np.float64).reshape(dy, dy)
    T = len(obs)
    increments, means, covs = np.empty(T), np.empty((T, dx)), np.empty((T, dx, dx))
    for t in range(T):
        if t > 0:  # predict
            m = A @ m
            P = A @ P @ A.T + Q
        S = H @ P @ H.T + R  # covariance of y[t] given y[0..t-1]
        resid = obs[t] - H @ m
        chol = linalg.cho_factor(S, lower=True)
        increments[t] = -0.5 * (dy * LOG_2PI + 2.0 * np.sum(np.log(np.diag(chol[0])))
                                + resid @ linalg.cho_solve(chol, resid))
        gain = linalg.cho_solve(chol, H @ P).T  # P H' S^-1 (S and P symmetric)
        m = m + gain @ resid
        P = P - gain @ S @ gain.T
        P = 0.5 * (P + P.T)
        means[t], covs[t] = m, P
    if scalar_state:
        return KalmanResult(float(increments.sum()), increments, means[:, 0], covs[:, 0, 0])
    return KalmanResult(float(increments.sum()), increments, means, covs)


class ForwardResult(NamedTuple):
    """`log_z`: log p(y[0..T-1]); `log_z_increments[t]`: log p(y[t] | y[0..t-1]);
    `filtering[t, k]`: p(z[t] = k | y[0..t])."""

    log_z: float
    log_z_increments: np.ndarray
    filtering: np.ndarray


def hmm_forward(init_probs: np.ndarray, transition: np.ndarray, emission_log_lik: np.ndarray) -> ForwardResult:
    """The forward algorithm for a hidden Markov model with K states:

        z[0] ~ categorical(init_probs),   z[t] ~ categorical(transition[z[t-1]]),
        log p(y[t] | z[t] = k) = emission_log_lik[t, k].

    `transition[i, j]` is p(z[t] = j | z[t-1] = i); rows need not sum to one (the grid filter
    passes quadrature weights), in which case the result is the corresponding sum over paths.
    Each step normalizes the filtering probabilities and keeps the normalizer on the log scale, so long
    sequences do not underflow.
    """
    trans = np.asarray(transition, np.float64)
    ll = np.asarray(emission_log_lik, np.float64)
    T, K = ll.shape
    increments, filtering = np.empty(T), np.empty((T, K))
    pred = np.asarray(init_probs, np.float64)  # p(z[t] = k | y[0..t-1]), normalized (up to quadrature)
    for t in range(T):
        with np.errstate(divide="ignore"):  # states the chain cannot be in have probability 0
            joint = np.log(pred) + ll[t]
        increments[t] = logsumexp(joint)
        filtering[t] = np.exp(joint - increments[t])
        pred = filtering[t] @ trans
    return ForwardResult(float(increments.sum()), increments, filtering)


class GridResult(NamedTuple):
    """`log_z`, `log_z_increments` as for the Kalman filter; `means[t]`, `variances[t]`: filtering
    mean and variance of the scalar state; `grid`, `filtering[t]`: the filtering density's mass at
    each grid point (each row sums to one)."""

    log_z: float
    log_z_increments: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    grid: np.ndarray
    filtering: np.ndarray


def grid_filter(grid: np.ndarray, log_init_density: np.ndarray, log_transition_density: np.ndarray,
                emission_log_lik: np.ndarray) -> GridResult:
    """Filtering for a model with one continuous state x by quadrature on a uniform grid.

    `log_init_density[i]` = log p(x[0] = grid[i]); `log_transition_density[i, j]` =
    log p(x[t] = grid[j] | x[t-1] = grid[i]); `emission_log_lik[t, i]` = log p(y[t] | x[t] = grid[i]).
    Each integral over x becomes a sum over grid points times the spacing h (the midpoint rule), so
    this is the forward algorithm with initial masses p0 * h and transition masses p * h. The
    grid must cover the filtering distributions' mass; for smooth densities the rule converges
    very fast as h shrinks.
    """
    grid = np.asarray(grid, np.float64)
    h = float(grid[1] - grid[0])
    if not np.allclose(np.diff(grid), h):
        raise ValueError("grid_filter needs a uniform grid")
    fwd = hmm_forward(np.exp(np.asarray(log_init_density, np.float64)) * h,
                      np.exp(np.asarray(log_transition_density, np.float64)) * h, emission_log_lik)
    filt = fwd.filtering
    means = filt @ grid
    variances = filt @ grid**2 - means**2
    return GridResult(fwd.log_z, fwd.log_z_increments, means, variances, grid, filt)
