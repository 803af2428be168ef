"""Amortized inference for sets of any size, against exact answers, as functions of the set size.

    python benchmarks/sets_validation.py [--quick] [--out FILE]

Two models with exact answers, trained on simulations of 2..64 points and evaluated on new data
sets of sizes inside and outside that range:

* Bayesian linear regression (examples/set_regression.ppl, conjugate): the posterior of (w, b)
  from `line_q` (neural posterior estimation, deep sets): mean absolute error of the posterior
  means in posterior-sd units and the ratio of sds; and the predictive of new points from
  `line_pred` (a prior-fitted network): the mean gap of its log predictive density to the exact
  one, in nats per point.
* Gaussian-process regression with fixed hyperparameters (examples/gp_regression.ppl): the
  predictive of new points from `gp_pred`, its log density gap to the exact GP predictive.

Each guide is trained as docs/amortized.md recommends, with a decaying learning rate. Each row:
the size, the number of data sets, and the averages over them. tests/inference/test_sets.py
holds shorter trainings of the same to a budget.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import norm

import pplang as pp
from pplang.inference.sets import SizeWarning

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SIZES = (2, 4, 8, 16, 32, 64, 128, 256)
TRAINED = (2, 64)


def blr_exact(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.stack([x, np.ones_like(x)], 1)
    cov = np.linalg.inv(np.eye(2) + X.T @ X / 0.25)
    return cov @ X.T @ y / 0.25, cov


def gp_exact(x: np.ndarray, y: np.ndarray, x_new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact GP predictive of y at x_new (kernel exp(-d^2 / (2 * 0.5^2)), noise variance 0.01)."""
    k = lambda a, b: np.exp(-0.5 * np.subtract.outer(a, b) ** 2 / 0.25)  # noqa: E731
    K = k(x, x) + 0.01 * np.eye(len(x))
    ks = k(x_new, x)
    mean = ks @ np.linalg.solve(K, y)
    var = 1.0 + 0.01 - np.einsum("ij,ji->i", ks, np.linalg.solve(K, ks.T))
    return mean, np.sqrt(var)


def blr_sets(rng: np.random.Generator, n: int, count: int) -> tuple[np.ndarray, ...]:
    w, b = rng.normal(size=(2, count))
    x = rng.normal(size=(count, n))
    return x, w[:, None] * x + b[:, None] + 0.5 * rng.normal(size=(count, n)), w, b


def gp_sets(rng: np.random.Generator, n: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(-2, 2, size=(count, n))
    y = np.stack([rng.multivariate_normal(np.zeros(n), np.exp(-0.5 * np.subtract.outer(xi, xi) ** 2 / 0.25)
                                          + 0.01 * np.eye(n)) for xi in x])
    return x, y


def train(file: str, model: str, guide: str, simulate: int, epochs: int) -> tuple[pp.AmortizedPosterior, float]:
    module = pp.load(str(EXAMPLES / file))
    t0 = time.perf_counter()
    r = pp.amortize(module[model], module[guide], simulate=simulate, sizes=TRAINED, epochs=epochs,
                    learning_rate=3e-3, lr_schedule="cosine", progress=False)
    return r, time.perf_counter() - t0


def blr_rows(simulate: int, epochs: int, count: int) -> list[str]:
    post, t_post = train("set_regression.ppl", "line", "line_q", simulate, epochs)
    pred, t_pred = train("set_regression.ppl", "line", "line_pred", simulate, epochs)
    rng = np.random.default_rng(2026)
    rows = [f"trained on {simulate} simulations x {epochs} epochs, learning rate 3e-3 decaying (cosine): "
            f"posterior guide {t_post:.0f} s, predictive {t_pred:.0f} s", "",
            "| size | data sets | posterior mean error (sd units) w, b | sd ratio w, b "
            "| predictive log density gap to exact (nats/point) | prior predictive gap |", "|---|---|---|---|---|---|"]
    for n in SIZES:
        x, y, w, b = blr_sets(rng, n, count)
        x_new = rng.normal(size=(count, 8))
        y_new = w[:, None] * x_new + b[:, None] + 0.5 * rng.normal(size=(count, 8))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SizeWarning)
            q = post.posterior({"x": x, "y": y}, num_samples=2000)
            lp = pred.log_predictive({"x": x, "y": y}, {"x_new": x_new, "y_new": y_new})
        errs, ratios, gaps, prior = [], [], [], []
        for i in range(count):
            mean, cov = blr_exact(x[i], y[i])
            sd = np.sqrt(np.diag(cov))
            errs.append(np.abs(np.array([q.mean()["w"][i], q.mean()["b"][i]]) - mean) / sd)
            ratios.append(np.array([q.sd()["w"][i], q.sd()["b"][i]]) / sd)
            X = np.stack([x_new[i], np.ones(8)], 1)
            exact = norm.logpdf(y_new[i], X @ mean, np.sqrt(0.25 + np.einsum("ij,jk,ik->i", X, cov, X)))
            gaps.append(np.mean(exact - lp[i]))
            prior.append(np.mean(exact - norm.logpdf(y_new[i], 0.0, np.sqrt(1.25 + x_new[i] ** 2))))
        e, r = np.mean(errs, 0), np.exp(np.mean(np.log(ratios), 0))
        flag = "" if TRAINED[0] <= n <= TRAINED[1] else " (outside)"
        rows.append(f"| {n}{flag} | {count} | {e[0]:.3f}, {e[1]:.3f} | {r[0]:.3f}, {r[1]:.3f} | {np.mean(gaps):.3f} "
                    f"| {np.mean(prior):.3f} |")
    return rows


def gp_rows(simulate: int, epochs: int, count: int) -> list[str]:
    pred, t_pred = train("gp_regression.ppl", "gp", "gp_pred", simulate, epochs)
    rng = np.random.default_rng(2027)
    rows = [f"trained on {simulate} simulations x {epochs} epochs, learning rate 3e-3 decaying (cosine), in "
            f"{t_pred:.0f} s", "",
            "| size | data sets | predictive log density gap to exact (nats/point) | prior predictive gap |",
            "|---|---|---|---|"]
    for n in SIZES:
        x, y = gp_sets(rng, n + 8, count)
        x, x_new, y, y_new = x[:, :n], x[:, n:], y[:, :n], y[:, n:]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SizeWarning)
            lp = pred.log_predictive({"x": x, "y": y}, {"x_new": x_new, "y_new": y_new})
        gaps, prior = [], []
        for i in range(count):
            mean, sd = gp_exact(x[i], y[i], x_new[i])
            exact = norm.logpdf(y_new[i], mean, sd)
            gaps.append(np.mean(exact - lp[i]))
            prior.append(np.mean(exact - norm.logpdf(y_new[i], 0.0, np.sqrt(1.01))))
        flag = "" if TRAINED[0] <= n <= TRAINED[1] else " (outside)"
        rows.append(f"| {n}{flag} | {count} | {np.mean(gaps):.3f} | {np.mean(prior):.3f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter training and fewer data sets")
    ap.add_argument("--out", help="write the report (markdown) here as well")
    args = ap.parse_args()
    simulate, epochs, count = (4096, 4, 30) if args.quick else (16384, 10, 100)
    text = ["# Sets of any size against exact answers", "",
            f"Sizes trained on: {TRAINED[0]}..{TRAINED[1]}; `python benchmarks/sets_validation.py"
            f"{' --quick' if args.quick else ''}`.", "", "## Bayesian linear regression", "",
            *blr_rows(simulate, epochs, count), "", "## Gaussian-process regression (predictive)", "",
            *gp_rows(simulate, epochs, count)]
    print("\n".join(text))
    if args.out:
        Path(args.out).write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
