"""The exact references of tests/references.py agree with a second, independent computation.

Kalman filter: y[0..T-1] of a linear-Gaussian state-space model is one multivariate normal, whose
mean and covariance follow from the model directly; its log density (scipy) is log Z, and the
Gaussian conditional of x[t] given y[0..t] is the filtering distribution. Forward algorithm:
the sum over all K^T state paths. Grid filter: on a linear-Gaussian model it must reproduce the
Kalman filter.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from references import grid_filter, hmm_forward, kalman_filter
from scipy import stats
from scipy.special import logsumexp


def stacked_gaussian(A: np.ndarray, Q: np.ndarray, H: np.ndarray, R: np.ndarray, m0: np.ndarray, P0: np.ndarray,
                     T: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and covariance of the stacked states x[0..T-1] (T*dx) and observations y[0..T-1] (T*dy),
    and the cross-covariance Cov(x, y), straight from the model: E x[t] = A^t m0,
    Cov(x[s], x[t]) = A^(s-t) Var(x[t]) for s >= t, y[t] = H x[t] + noise."""
    dx = len(m0)
    mean_x = np.concatenate([np.linalg.matrix_power(A, t) @ m0 for t in range(T)])
    var = [P0]
    for _ in range(1, T):
        var.append(A @ var[-1] @ A.T + Q)
    cov_x = np.zeros((T * dx, T * dx))
    for s in range(T):
        for t in range(s + 1):
            block = np.linalg.matrix_power(A, s - t) @ var[t]
            cov_x[s * dx:(s + 1) * dx, t * dx:(t + 1) * dx] = block
            cov_x[t * dx:(t + 1) * dx, s * dx:(s + 1) * dx] = block.T
    big_h = np.kron(np.eye(T), H)
    cov_y = big_h @ cov_x @ big_h.T + np.kron(np.eye(T), R)
    return mean_x, cov_x, big_h @ mean_x, cov_y


def simulate_lgssm(rng: np.random.Generator, A: np.ndarray, Q: np.ndarray, H: np.ndarray, R: np.ndarray,
                   m0: np.ndarray, P0: np.ndarray, T: int) -> np.ndarray:
    x = rng.multivariate_normal(m0, P0)
    ys = []
    for t in range(T):
        if t > 0:
            x = rng.multivariate_normal(A @ x, Q)
        ys.append(rng.multivariate_normal(H @ x, R))
    return np.array(ys)


def tracking_model(dt: float = 0.5, q: float = 0.3, r: float = 0.7) -> tuple:
    """A 2-D constant-velocity model (state: position, velocity), positions observed."""
    A = np.array([[1, 0, dt, 0], [0, 1, 0, dt], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    Q = q * np.array([[dt**3 / 3, 0, dt**2 / 2, 0], [0, dt**3 / 3, 0, dt**2 / 2],
                      [dt**2 / 2, 0, dt, 0], [0, dt**2 / 2, 0, dt]])
    H = np.array([[1, 0, 0, 0], [0, 1, 0, 0]], float)
    return A, Q, H, r**2 * np.eye(2), np.array([0.0, 0.0, 1.0, 0.5]), np.diag([1.0, 1.0, 0.25, 0.25])


def scalar_model() -> tuple:
    return (np.array([[0.9]]), np.array([[0.5]]), np.array([[1.0]]), np.array([[0.8]]), np.array([0.3]),
            np.array([[2.0]]))


@pytest.mark.parametrize("model", [scalar_model, tracking_model])
def test_kalman_log_z_is_the_stacked_gaussian_density(model) -> None:
    A, Q, H, R, m0, P0 = model()
    T = 7
    y = simulate_lgssm(np.random.default_rng(0), A, Q, H, R, m0, P0, T)
    _, _, mean_y, cov_y = stacked_gaussian(A, Q, H, R, m0, P0, T)
    exact = stats.multivariate_normal(mean_y, cov_y).logpdf(y.ravel())
    kf = kalman_filter(y, A, Q, H, R, m0, P0)
    assert kf.log_z == pytest.approx(exact, abs=1e-9)
    assert kf.log_z_increments.sum() == pytest.approx(kf.log_z, abs=1e-12)
    # each increment is a ratio of marginals: log p(y[0..t]) - log p(y[0..t-1])
    dy = H.shape[0]
    prefix = [stats.multivariate_normal(mean_y[:k * dy], cov_y[:k * dy, :k * dy]).logpdf(y[:k].ravel())
              for k in range(1, T + 1)]
    np.testing.assert_allclose(kf.log_z_increments, np.diff(prefix, prepend=0.0), atol=1e-9)
    # a wrong model gives a different answer (the comparison can fail)
    assert abs(kalman_filter(y, A, 1.1 * Q, H, R, m0, P0).log_z - exact) > 1e-3


@pytest.mark.parametrize("model", [scalar_model, tracking_model])
def test_kalman_filtering_is_the_gaussian_conditional(model) -> None:
    A, Q, H, R, m0, P0 = model()
    T = 6
    y = simulate_lgssm(np.random.default_rng(1), A, Q, H, R, m0, P0, T)
    mean_x, cov_x, mean_y, cov_y = stacked_gaussian(A, Q, H, R, m0, P0, T)
    dx, dy = len(m0), H.shape[0]
    cross = cov_x @ np.kron(np.eye(T), H).T  # Cov(x, y)
    kf = kalman_filter(y, A, Q, H, R, m0, P0)
    means = kf.means.reshape(T, dx)
    covs = kf.covariances.reshape(T, dx, dx)
    for t in range(T):
        xs, ys = slice(t * dx, (t + 1) * dx), slice(0, (t + 1) * dy)
        gain = np.linalg.solve(cov_y[ys, ys], cross[xs, ys].T).T
        np.testing.assert_allclose(means[t], mean_x[xs] + gain @ (y[:t + 1].ravel() - mean_y[ys]), atol=1e-9)
        np.testing.assert_allclose(covs[t], cov_x[xs, xs] - gain @ cross[xs, ys].T, atol=1e-9)


def test_kalman_scalar_shapes() -> None:
    y = np.array([0.1, -0.4, 0.9])
    kf = kalman_filter(y, 0.9, 0.5, 1.0, 0.8, 0.3, 2.0)
    assert kf.means.shape == (3,) and kf.covariances.shape == (3,)
    A, Q, H, R, m0, P0 = scalar_model()
    assert kf.log_z == pytest.approx(kalman_filter(y, A, Q, H, R, m0, P0).log_z, abs=1e-12)


def test_forward_algorithm_is_the_sum_over_all_paths() -> None:
    rng = np.random.default_rng(2)
    K, T = 3, 6
    init = rng.dirichlet(np.ones(K))
    trans = rng.dirichlet(np.ones(K), size=K)
    ll = rng.normal(size=(T, K)) * 2.0
    fwd = hmm_forward(init, trans, ll)

    def brute(steps: int) -> tuple[float, np.ndarray]:
        """log p(y[0..steps-1]) and p(z[steps-1] = k | y[0..steps-1]) by enumerating K^steps paths."""
        paths = np.array(list(itertools.product(range(K), repeat=steps)))
        lp = np.log(init[paths[:, 0]]) + ll[np.arange(steps), paths].sum(axis=1)
        lp += np.log(trans[paths[:, :-1], paths[:, 1:]]).sum(axis=1)
        log_z = logsumexp(lp)
        last = np.array([np.exp(logsumexp(lp[paths[:, -1] == k]) - log_z) for k in range(K)])
        return float(log_z), last

    assert fwd.log_z == pytest.approx(brute(T)[0], abs=1e-10)
    for t in range(T):
        log_z, last = brute(t + 1)
        assert fwd.log_z_increments[: t + 1].sum() == pytest.approx(log_z, abs=1e-10)
        np.testing.assert_allclose(fwd.filtering[t], last, atol=1e-12)
    # a transposed transition matrix is a different chain
    assert abs(hmm_forward(init, trans.T / trans.T.sum(1, keepdims=True), ll).log_z - fwd.log_z) > 1e-3


def test_grid_filter_reproduces_the_kalman_filter() -> None:
    a, q, r, m0, s0 = 0.9, 0.7, 0.8, 0.3, 1.5  # standard deviations
    rng = np.random.default_rng(3)
    A, Q, H, R, M0, P0 = (np.array([[v]]) for v in (a, q**2, 1.0, r**2, m0, s0**2))
    y = simulate_lgssm(rng, A, Q, H, R, M0.ravel(), P0, 30)[:, 0]
    kf = kalman_filter(y, a, q**2, 1.0, r**2, m0, s0**2)
    grid = np.linspace(-12.0, 12.0, 1201)
    log_init = stats.norm.logpdf(grid, m0, s0)
    log_trans = stats.norm.logpdf(grid[None, :], a * grid[:, None], q)
    gf = grid_filter(grid, log_init, log_trans, stats.norm.logpdf(y[:, None], grid[None, :], r))
    assert gf.log_z == pytest.approx(kf.log_z, abs=1e-8)
    np.testing.assert_allclose(gf.means, kf.means, atol=1e-8)
    np.testing.assert_allclose(gf.variances, kf.covariances, atol=1e-8)
    np.testing.assert_allclose(gf.filtering.sum(axis=1), 1.0, atol=1e-12)
