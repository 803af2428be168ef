"""Lesson 3, in Python: eight schools, non-centred (see eight_schools.ppl).

    python examples/eight_schools.py

Importance sampling from the prior; the school effects theta[j] = mu + tau * theta_tilde[j], which
the model computes, are kept beside the draws and compared with posteriordb's reference posterior
means. Last,
the model's log density as a plain JAX function, which later inference methods differentiate.
"""

# ruff: noqa: F821
# (The linter reads this file as plain Python: it cannot know that `theta_tilde[j] = ...` creates
# an array inside the model.)

from pathlib import Path

import jax
import numpy as np

import pplang as pp

HERE = Path(__file__).resolve().parent

# posteriordb, eight_schools-eight_schools_noncentered: reference posterior means (MCMC).
REFERENCE = {"mu": 4.41, "tau": 3.60, "theta": [6.15, 4.94, 3.91, 4.80, 3.61, 4.05, 6.32, 4.88]}


@pp.model
def eight_schools(J: int, sigma: "vector[J]"):
    mu = pp.sample(pp.normal(0.0, 5.0))
    tau = pp.sample(pp.half_cauchy(5.0))
    for j in range(J):
        theta_tilde[j] = pp.sample(pp.normal(0.0, 1.0))
        theta[j] = mu + tau * theta_tilde[j]
        y[j] = pp.sample(pp.normal(theta[j], sigma[j]))
    return mu


def main() -> None:
    data = pp.load_data(str(HERE / "eight_schools.data.json"))  # {"J": 8, "y": [...], "sigma": [...]}
    post = pp.importance_sampling(eight_schools, data, num_samples=20_000, seed=0)
    print(f"{post.num_samples} draws from the prior, effective sample size {post.ess:.0f} "
          f"({100 * post.ess / post.num_samples:.0f}%): the data are weak, so the prior is a usable proposal")

    theta_mean = post.mean("theta")  # theta is computed by the model and kept with each draw
    print(f"{'':8} {'pplang':>8} {'posteriordb':>12}")
    print(f"{'mu':8} {float(post.mean('mu')):8.2f} {REFERENCE['mu']:12.2f}")
    print(f"{'tau':8} {float(post.mean('tau')):8.2f} {REFERENCE['tau']:12.2f}")
    for j in range(data["J"]):
        print(f"theta[{j}] {theta_mean[j]:8.2f} {REFERENCE['theta'][j]:12.2f}   (reported y = {data['y'][j]})")
    # Shrinkage: school 0 reported 28 but its estimated effect is pulled toward the population mean.

    # The log joint density with the data bound, as a pure JAX function of the latent choices.
    log_p = eight_schools.log_density_fn(data)
    point = {"mu": np.float32(4.4), "tau": np.float32(3.6), "theta_tilde": np.zeros(8, np.float32)}
    grads = jax.grad(log_p)(point)
    print(f"log p(mu=4.4, tau=3.6, theta_tilde=0, y) = {float(log_p(point)):.3f}; "
          f"d/d mu = {float(grads['mu']):.3f}, d/d tau = {float(grads['tau']):.3f}")


if __name__ == "__main__":
    main()
