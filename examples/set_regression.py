"""The prior-fitted network of examples/set_regression.ppl written in Python: a model of sets of
(x, y) points of any size, a guide that predicts a new point's y from the set, trained on
simulations of 2 to 64 points and checked against the exact (conjugate) predictive."""

# ruff: noqa: F821, F841
# (decorated functions are pplang programs: `x[i] = ...` and string types name things ruff cannot see)

import numpy as np

import pplang as pp

pfn = pp.deep_sets(out_size=2, width=64, phi=[64], rho=[64])  # as `network pfn = deep_sets(...)`


@pp.model
def line(N: "size"):
    w = pp.sample(pp.normal(0.0, 1.0))
    b = pp.sample(pp.normal(0.0, 1.0))
    for i in range(N):
        x[i] = pp.sample(pp.normal(0.0, 1.0))
        y[i] = pp.sample(pp.normal(w * x[i] + b, 0.5))


@pp.guide
def line_pred(N: "size", x: "vector[N]", y: "vector[N]", x_new: float):
    h = pfn([x, y, x * y, x * x, x_new * pp.ones(N)])
    y_new = pp.sample(pp.normal(h[0], pp.exp(h[1])))


result = pp.amortize(line, line_pred, simulate=4096, sizes=(2, 64), epochs=4, learning_rate=3e-3, progress=False)

rng = np.random.default_rng(0)
x = rng.normal(size=20)
y = 1.5 * x - 0.5 + 0.5 * rng.normal(size=20)
x_new = np.array([-2.0, 0.0, 2.0])
draws = result.predictive({"x": x, "y": y}, {"x_new": x_new}, num_samples=4000)["y_new"]

X = np.stack([x, np.ones_like(x)], 1)
cov = np.linalg.inv(np.eye(2) + X.T @ X / 0.25)
mean = cov @ X.T @ y / 0.25
Xn = np.stack([x_new, np.ones_like(x_new)], 1)
exact_sd = np.sqrt(0.25 + np.einsum("ij,jk,ik->i", Xn, cov, Xn))
for j, v in enumerate(x_new):
    print(f"x_new = {v:+.1f}: predictive mean {draws[:, j].mean():+.3f} (exact {Xn[j] @ mean:+.3f}), "
          f"sd {draws[:, j].std():.3f} (exact {exact_sd[j]:.3f})")
