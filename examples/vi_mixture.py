"""Lesson 9, in Python: variational inference with a discrete choice per point (see vi_mixture.ppl).

    python examples/vi_mixture.py

The model is simple enough to solve exactly: with one continuous latent (the signal level mu) the
posterior is a one-dimensional integral, each z[i] summed out, and the best mean-field guide has a
closed form too (coordinate ascent). So every number the fits print can be checked:

1. the exact posterior and the best the mean-field guide can do;
2. the guide fitted with each gradient strategy for z (enum, reinforce with and without a
   moving-average baseline, mvd), compared with that best fit;
3. the variance of each strategy's gradient estimate at one point, with its mean against the
   exact gradient (unbiased: within a few standard errors);
4. the fitted guide corrected by importance resampling, against the exact posterior.
"""

# ruff: noqa: F821, F841
# (The linter reads this file as plain Python. F821: `z[i] = ...` creates the array `z` inside the
# model. F841: in the guide, `mu = pp.sample(...)` names a random choice; the name is its address,
# so it matters even though nothing reads it afterwards.)

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special, stats

import pplang as pp

HERE = Path(__file__).resolve().parent
PRIOR_SD, SHARE = 5.0, 0.4  # the model's prior sd of mu and prior probability of signal


@pp.model
def vi_mixture(N: int):
    mu = pp.sample(pp.normal(0.0, 5.0))
    for i in range(N):
        z[i] = pp.sample(pp.bernoulli(0.4))
        y[i] = pp.sample(pp.normal(pp.where(z[i], mu, 0.0), 1.0))
    return mu


@pp.guide
def vi_mixture_q(N: int):
    m = pp.param(0.0)
    s = pp.param(1.0, "positive")
    logit_r = pp.param(0.0, "real[N]")
    mu = pp.sample(pp.normal(m, s))
    for i in range(N):
        z[i] = pp.sample(pp.bernoulli_logit(logit_r[i]))


def exact_posterior(y: np.ndarray) -> dict:
    """log p(y), the posterior mean and sd of mu and P(z[i] | y), by quadrature over mu."""
    mu = np.linspace(-20.0, 20.0, 40_001)
    signal = np.log(SHARE) + stats.norm.logpdf(y[:, None], mu, 1.0)
    noise = np.log(1 - SHARE) + stats.norm.logpdf(y[:, None], 0.0, 1.0)
    per_point = np.logaddexp(signal, noise)  # log p(y[i] | mu), z[i] summed out
    log_joint = stats.norm.logpdf(mu, 0.0, PRIOR_SD) + per_point.sum(0)
    w = np.exp(log_joint - log_joint.max())
    w /= w.sum()
    mean = w @ mu
    return {"log_py": special.logsumexp(log_joint) + np.log(mu[1] - mu[0]), "mean": mean,
            "sd": np.sqrt(w @ (mu - mean) ** 2), "p_signal": np.exp(signal - per_point) @ w}


def exact_elbo(q: dict, y: jnp.ndarray) -> jnp.ndarray:
    """The ELBO of the guide in closed form, from unconstrained parameters (s = exp of its own)."""
    m, s, r = q["m"], jnp.exp(q["s"]), jax.nn.sigmoid(q["logit_r"])
    half_log_2pi = 0.5 * jnp.log(2 * jnp.pi)
    log_prior = -half_log_2pi - jnp.log(PRIOR_SD) - (m**2 + s**2) / (2 * PRIOR_SD**2)
    signal = jnp.log(SHARE) - half_log_2pi - 0.5 * ((y - m) ** 2 + s**2)  # E_q log p(z=1, y | mu)
    noise = jnp.log(1 - SHARE) - half_log_2pi - 0.5 * y**2
    entropy_z = -(jax.scipy.special.xlogy(r, r) + jax.scipy.special.xlogy(1 - r, 1 - r))
    entropy_mu = half_log_2pi + 0.5 + jnp.log(s)
    return log_prior + jnp.sum(r * signal + (1 - r) * noise + entropy_z) + entropy_mu


def best_mean_field(y: np.ndarray) -> dict:
    """The mean-field optimum by coordinate ascent (each factor's update is exact here)."""
    m, v = 0.0, 1.0
    for _ in range(200):
        r = special.expit(np.log(SHARE / (1 - SHARE)) + y * m - 0.5 * (m**2 + v))
        v = 1.0 / (1.0 / PRIOR_SD**2 + r.sum())
        m = v * (r @ y)
    logit_r = np.log(SHARE / (1 - SHARE)) + y * m - 0.5 * (m**2 + v)
    return {"m": jnp.float32(m), "s": jnp.float32(0.5 * np.log(v)), "logit_r": jnp.asarray(logit_r, jnp.float32)}


def main() -> None:
    data = pp.load_data(str(HERE / "vi_mixture.data.json"))  # {"N": 12, "y": [...]}
    y = np.asarray(data["y"])
    exact = exact_posterior(y)
    best = best_mean_field(y)
    best_elbo = float(exact_elbo(best, jnp.asarray(y)))
    print(f"exact: log p(y) {exact['log_py']:.3f}, mu {exact['mean']:.3f} +- {exact['sd']:.3f}")
    print(f"best mean-field guide: ELBO {best_elbo:.3f}, mu {float(best['m']):.3f} +- "
          f"{float(np.exp(best['s'])):.3f}")

    print("\nfitted (3000 steps of Adam, learning rate 0.02):")
    print("strategy              ELBO of the fit   m       s      max |P(z) - best|")
    fits = {}
    for label, strategy, baseline in [("enum", "enum", None), ("reinforce", "reinforce", None),
                                      ("reinforce + ema", "reinforce", "ema"), ("mvd", "mvd", None)]:
        fit = pp.fit(vi_mixture, vi_mixture_q, "elbo", data, strategies={"z": strategy}, baseline=baseline,
                     learning_rate=0.02, steps=3000, progress=False)
        q = {a: jnp.asarray(v) for a, v in fit.unconstrained["q"].items()}  # unconstrained: what the ELBO takes
        fitted = fit.params["vi_mixture_q"]  # constrained: s itself
        gap = np.abs(special.expit(fitted["logit_r"]) - special.expit(best["logit_r"])).max()
        print(f"{label:20} {float(exact_elbo(q, jnp.asarray(y))):9.3f} {fitted['m']:9.3f} {fitted['s']:6.3f} "
              f"{gap:10.3f}")
        fits[label] = fit

    print("\ngradient estimates at m = 2, s = 0.5, every P(z[i]) = 0.5 (10000 estimates each):")
    print("strategies                       variance of d/d logit_r  d/dm    d/ds   largest |mean - exact| / se")
    point = {"p": {}, "q": {"m": jnp.float32(2.0), "s": jnp.log(jnp.float32(0.5)), "logit_r": jnp.zeros(12)}}
    exact_grad = jax.grad(exact_elbo)(point["q"], jnp.asarray(y))
    keys = jax.random.split(jax.random.key(0), 10_000)
    # A constant baseline at the average cost per reading: what --baseline ema settles near.
    problem = pp.Problem.build(vi_mixture, vi_mixture_q, "elbo", data, strategies={"z": "reinforce"})
    _, (_, costs) = problem.surrogate(point, jax.random.key(2), {}, 1000)
    b = round(float(costs["1:z"]), 2)  # "1:z": the choice z of call 1, simulate(q)
    for label, strategies, baseline in [
        ("z enum", {"z": "enum"}, None),
        ("z reinforce", {"z": "reinforce"}, None),
        (f"z reinforce, baseline {b}", {"z": "reinforce"}, b),
        ("z mvd", {"z": "mvd"}, None),
        ("z enum, mu mvd", {"z": "enum", "mu": "mvd"}, None),
        ("z enum, mu reinforce", {"z": "enum", "mu": "reinforce"}, None),
    ]:
        problem = pp.Problem.build(vi_mixture, vi_mixture_q, "elbo", data, strategies=strategies, baseline=baseline)
        _, grads = jax.jit(jax.vmap(lambda k, problem=problem: problem.value_and_grad(point, k)))(keys)
        g = {a: np.asarray(v) for a, v in grads["q"].items()}
        z = max(np.max(np.abs(g[a].mean(0) - exact_grad[a]) / (g[a].std(0) / np.sqrt(len(keys)))) for a in g)
        print(f"{label:32} {g['logit_r'].var(0).sum():14.2f} {g['m'].var():9.2f} {g['s'].var():7.2f} {z:9.2f}")

    post = fits["enum"].importance_resample(num_samples=4000, seed=0)
    mean = float(post.mean("mu"))
    sd = float(np.sqrt(post.weights @ (post.samples["mu"] - mean) ** 2))
    print(f"\nthe enum fit corrected by importance resampling: 4000 draws, effective sample size {post.ess:.0f}, "
          f"Pareto k {post.pareto_k:.2f}")
    print(f"  log p(y) {post.log_marginal_likelihood:.3f} +- {post.log_marginal_likelihood_se:.3f} "
          f"(exact {exact['log_py']:.3f})")
    print(f"  mu {mean:.3f} +- {sd:.3f} (exact {exact['mean']:.3f} +- {exact['sd']:.3f})")
    print("  P(signal) per reading, corrected vs exact:")
    for i in np.argsort(y):
        print(f"    y = {y[i]:5.2f}  {float(post.mean('z')[i]):.3f}  {exact['p_signal'][i]:.3f}")


if __name__ == "__main__":
    main()
