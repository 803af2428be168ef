"""Writes the course notebooks (NN_name.ipynb) from the lessons below, without outputs.

    .venv/bin/python examples/course/make_notebooks.py

Each lesson is a list of cells: markdown (a str starting with "md:") or code. Edit the lessons
here and run this again, so that every notebook keeps the same structure (title, the idea, the
model, inference, the check against an exact answer, a plot, the command line). The notebooks are
committed without outputs: tests/course/test_notebooks.py executes them, and clean diffs show what
changed in a lesson.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
import arviz as az
import matplotlib.pyplot as plt
import numpy as np

import pplang as pp


def mcse(x, method="mean"):
    \"\"\"Monte Carlo standard error of the mean (or, method="sd", of the sd) of one scalar's draws,
    shape (chains, draws): how far the estimate may be from the exact value by chance alone.\"\"\"
    return float(az.mcse(np.asarray(x, dtype=float), method=method))"""


def show_model(name: str) -> str:
    return f'print(open("{name}").read())'


COIN = [
    """md:# Lesson 1: a coin

Is a coin fair? We flip it ten times and see eight heads. Bayesian inference turns a *prior*
belief about the coin's bias `p` into a *posterior* belief given the flips.

- **Model**: `p ~ beta(1, 1)` (any bias alike), each flip `flips[i] ~ bernoulli(p)`.
- **Data**: `flips` is named in the data file, so it is *observed*; `p` is inferred.
- **Exact answer**: the beta prior is *conjugate* to the bernoulli likelihood, so the posterior
  is beta(1 + heads, 1 + tails) = beta(9, 3). We check NUTS and importance sampling against it.""",
    SETUP,
    show_model("01_coin.ppl"),
    """coin = pp.load("01_coin.ppl")["coin"]
data = pp.load_data("01_coin.data.json")
print(data)""",
    """md:## The prior, run forwards

A model is a simulator. Before looking at data, draw from it: a bias, then ten flips.""",
    """for seed in range(3):
    trace = coin.simulate({"n": 10}, seed=seed)
    print(f"p = {float(trace['p']):.3f}, flips = {np.asarray(trace['flips']).astype(int)}")""",
    """md:## The posterior by NUTS

`pp.sample` runs the No-U-Turn sampler (blackjax): several chains, a warmup that tunes the step
size, then draws. The summary gives mean, sd, quantiles, the Monte Carlo standard error (MCSE),
effective sample sizes and R-hat (near 1 when the chains agree).""",
    """post = pp.sample(coin, data, chains=2, warmup=500, draws=1000, seed=0, progress=False)
print(post.summary())""",
    """md:## Check against the exact posterior

beta(a, b) has mean a / (a + b). NUTS's mean must agree within a few Monte Carlo standard errors.""",
    """heads = int(np.sum(data["flips"]))
a, b = 1 + heads, 1 + data["n"] - heads
exact_mean = a / (a + b)
exact_sd = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
p = post.draws["p"]                       # shape (chains, draws)
print(f"exact: mean {exact_mean:.4f}, sd {exact_sd:.4f}")
print(f"NUTS:  mean {p.mean():.4f} (mcse {mcse(p):.4f}), sd {p.std():.4f}")
assert abs(p.mean() - exact_mean) < 4 * mcse(p)""",
    """md:## A second method: importance sampling

Draw `p` from the prior and weight each draw by the likelihood of the flips. The mean weight
estimates the *marginal likelihood* p(flips), which for this sequence is exactly B(9, 3) / B(1, 1).""",
    """from jax.scipy.special import betaln

is_post = pp.importance_sampling(coin, data, num_samples=20_000, seed=1)
print(is_post.summary())
exact_log_z = float(betaln(a, b) - betaln(1.0, 1.0))
print(f"log p(flips): exact {exact_log_z:.4f}, importance sampling {is_post.log_marginal_likelihood:.4f} "
      f"(se {is_post.log_marginal_likelihood_se:.4f})")
assert abs(is_post.log_marginal_likelihood - exact_log_z) < 4 * is_post.log_marginal_likelihood_se""",
    """md:## Plot

The histogram of the NUTS draws against the exact beta(9, 3) density, and the prior.""",
    """from jax.scipy.stats import beta as beta_dist

grid = np.linspace(0.001, 0.999, 300)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.hist(p.ravel(), bins=40, density=True, alpha=0.5, label="NUTS draws")
ax.plot(grid, beta_dist.pdf(grid, a, b), "k", label=f"exact beta({a}, {b})")
ax.plot(grid, np.ones_like(grid), "k:", label="prior beta(1, 1)")
ax.set_xlabel("p (probability of heads)")
ax.set_ylabel("density")
ax.legend()
plt.show()""",
    """md:## Try it

- Change the prior to `beta(20.0, 20.0)` (a coin that is probably fair): the posterior moves
  less. The exact answer is then beta(28, 22).
- From the repository root, the command line does the same:

```
.venv/bin/pplang sample examples/course/01_coin.ppl --data examples/course/01_coin.data.json
```""",
]

REGRESSION = [
    """md:# Lesson 2: linear regression

How much more fuel does a heavier car use? 50 cars: mass `x` (tonnes) and consumption `y`
(litres per 100 km). The data were simulated for the examples (intercept 1.8, slope 3.2, noise
sd 0.7).

- **Model**: `y[i] ~ normal(alpha + beta * x[i], sigma)` with normal priors on `alpha`, `beta`.
- **Vectorized loops**: the loop over cars compiles to one `jax.vmap`; the line `mu[i]` is a
  *computed* value, kept beside the draws.
- **Exact answer**: with `sigma` known and normal priors, the posterior of (alpha, beta) is
  normal with covariance S = (X'X / sigma^2 + I / 100)^-1 and mean S X'y / sigma^2.""",
    SETUP,
    show_model("02_regression.ppl"),
    """module = pp.load("02_regression.ppl")
data = pp.load_data("02_regression.data.json")
x, y = np.asarray(data["x"]), np.asarray(data["y"])
post = pp.sample(module["regression"], data, chains=2, warmup=500, draws=1000, seed=0, progress=False)
print(post.summary(max_rows=6))""",
    """md:## The exact posterior

The design matrix X has a column of ones (the intercept) and the masses. Prior sd 10 on both.""",
    """X = np.column_stack([np.ones_like(x), x])
sigma = data["sigma"]
S = np.linalg.inv(X.T @ X / sigma**2 + np.eye(2) / 10.0**2)
m = S @ X.T @ y / sigma**2
for k, name in enumerate(["alpha", "beta"]):
    d = post.draws[name]
    print(f"{name}: exact {m[k]:.4f} +- {np.sqrt(S[k, k]):.4f};  NUTS {d.mean():.4f} +- {d.std():.4f} "
          f"(mcse {mcse(d):.4f})")
    assert abs(d.mean() - m[k]) < 4 * mcse(d)
    assert abs(d.std() - np.sqrt(S[k, k])) < 4 * mcse(d, "sd")
exact_corr = S[0, 1] / np.sqrt(S[0, 0] * S[1, 1])
nuts_corr = np.corrcoef(post.draws["alpha"].ravel(), post.draws["beta"].ravel())[0, 1]
print(f"correlation of alpha and beta: exact {exact_corr:.3f}, NUTS {nuts_corr:.3f}")""",
    """md:## Plot: the data, posterior lines, and a band for the line

`post.draws["mu"]` holds the line at every car for every draw (the computed `mu[i]`), so its
quantiles over the draws give a credible band without any extra code.""",
    """mu = post.draws["mu"].reshape(-1, data["N"])
order = np.argsort(x)
lo, hi = np.quantile(mu, [0.05, 0.95], axis=0)
fig, ax = plt.subplots(figsize=(6, 4))
ax.scatter(x, y, s=12, color="k", label="cars")
ax.fill_between(x[order], lo[order], hi[order], alpha=0.4, label="90% band of the line")
ax.plot(x[order], (X @ m)[order], "r", label="exact posterior mean")
ax.set_xlabel("mass (t)")
ax.set_ylabel("litres / 100 km")
ax.legend()
plt.show()""",
    """md:## The noise sd, unknown

In practice `sigma` is unknown too; `regression_sigma` infers it. The posterior is no longer
conjugate in closed form, but NUTS does not care.""",
    """post2 = pp.sample(module["regression_sigma"], data, chains=2, warmup=500, draws=1000, seed=1, progress=False)
print(post2.summary())""",
    """md:## Try it

```
.venv/bin/pplang sample examples/course/02_regression.ppl --model regression \\
    --data examples/course/02_regression.data.json
```""",
]

LOGISTIC = [
    """md:# Lesson 3: logistic regression

A yes/no outcome whose probability changes with a covariate: does a seed germinate (y = 1) after
soaking it for x hours? 80 seeds, simulated by `simulate_data.py` (intercept -2.0, slope 1.2).

- **Model**: `y[i] ~ bernoulli_logit(alpha + beta * x[i])`: the *log-odds* are linear in x, the
  probability is `inv_logit(alpha + beta * x)`.
- **No conjugacy**: there is no closed-form posterior. With only two parameters we can still
  compute it by brute force on a fine grid, and check NUTS against that.""",
    SETUP,
    show_model("03_logistic.ppl"),
    """logistic = pp.load("03_logistic.ppl")["logistic"]
data = pp.load_data("03_logistic.data.json")
x, y = np.asarray(data["x"]), np.asarray(data["y"])
post = pp.sample(logistic, data, chains=2, warmup=500, draws=1000, seed=0, progress=False)
print(post.summary())""",
    """md:## The posterior on a grid

log p(alpha, beta | y) = log prior + sum of log-likelihoods + constant, evaluated at 400 x 400
points; normalizing the exponentiated values gives posterior means to compare with.""",
    """from jax.nn import log_sigmoid
from jax.scipy.stats import norm

A, B = np.meshgrid(np.linspace(-5.0, 1.0, 400), np.linspace(-0.5, 3.5, 400), indexing="ij")
eta = A[..., None] + B[..., None] * x                        # (400, 400, N) log-odds
loglik = np.asarray(np.sum(y * log_sigmoid(eta) + (1 - y) * log_sigmoid(-eta), axis=-1))
logp = loglik + np.asarray(norm.logpdf(A, 0.0, 2.5) + norm.logpdf(B, 0.0, 2.5))
w = np.exp(logp - logp.max())
w /= w.sum()
for name, G in (("alpha", A), ("beta", B)):
    d = post.draws[name]
    print(f"{name}: grid {np.sum(w * G):.4f};  NUTS {d.mean():.4f} (mcse {mcse(d):.4f})")
    assert abs(d.mean() - np.sum(w * G)) < 4 * mcse(d) + 0.002   # + the grid's spacing error""",
    """md:## Plot: the fitted probability of germinating

Each posterior draw gives a curve; their quantiles make a band. The points are the seeds (jittered
vertically so they do not overlap).""",
    """grid = np.linspace(0, 4, 100)
curves = 1 / (1 + np.exp(-(post.draws["alpha"].reshape(-1, 1) + post.draws["beta"].reshape(-1, 1) * grid)))
lo, mid, hi = np.quantile(curves, [0.05, 0.5, 0.95], axis=0)
jitter = np.random.default_rng(0).uniform(-0.03, 0.03, len(y))
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.scatter(x, y + jitter, s=10, color="k", alpha=0.6, label="seeds")
ax.fill_between(grid, lo, hi, alpha=0.4, label="90% band")
ax.plot(grid, mid, label="posterior median")
ax.plot(grid, 1 / (1 + np.exp(-(-2.0 + 1.2 * grid))), "r:", label="the curve the data were drawn from")
ax.set_xlabel("hours of soaking")
ax.set_ylabel("P(germinates)")
ax.legend()
plt.show()""",
    """md:## Try it

```
.venv/bin/pplang sample examples/course/03_logistic.ppl --data examples/course/03_logistic.data.json
```""",
]

SCHOOLS = [
    """md:# Lesson 4: a hierarchical model (eight schools)

Eight schools ran a coaching programme; each reports an estimated effect `y[j]` with a known
standard error `sigma[j]` (Rubin 1981; data from posteriordb, BSD 3-Clause, see
`examples/LICENCE-posteriordb.md`).

- **Partial pooling**: each school's true effect `theta[j]` is drawn around a population mean `mu`
  with spread `tau`, both inferred. Schools with noisy estimates borrow strength from the others
  (*shrinkage*).
- **Non-centred form**: `theta[j] = mu + tau * theta_tilde[j]` with `theta_tilde[j] ~ normal(0, 1)`.
  Same model, better geometry for NUTS when `tau` is small: few or no *divergences* (transitions
  the sampler could not follow), where the centred form has many.
- **Check**: posteriordb's reference posterior (long Stan runs): mu 4.411 (sd 3.309, mcse 0.033),
  tau 3.602 (sd 3.198, mcse 0.032).""",
    SETUP,
    show_model("04_eight_schools.ppl"),
    """schools = pp.load("04_eight_schools.ppl")["eight_schools"]
data = pp.load_data("04_eight_schools.data.json")
post = pp.sample(schools, data, chains=4, warmup=500, draws=1000, seed=0, progress=False)
print(post.summary(max_rows=12))
print("divergences:", post.diagnostics()["divergences"])""",
    """reference = {"mu": (4.411, 0.033), "tau": (3.602, 0.032)}   # posteriordb: mean, mcse
for name, (ref, ref_se) in reference.items():
    d = post.draws[name]
    se = np.hypot(mcse(d), ref_se)
    print(f"{name}: reference {ref:.3f};  NUTS {d.mean():.3f} (mcse {mcse(d):.3f})")
    assert abs(d.mean() - ref) < 4 * se""",
    """md:## Plot: shrinkage

Each school's reported effect against the posterior mean of its true effect `theta[j]`
(a computed value, kept in `post.draws`). The estimates are pulled towards the population mean,
most strongly for the schools with the largest standard errors.""",
    """y, sigma = np.asarray(data["y"]), np.asarray(data["sigma"])
theta = post.draws["theta"].reshape(-1, data["J"])
fig, ax = plt.subplots(figsize=(6, 3.5))
for j in range(data["J"]):
    ax.plot([0, 1], [y[j], theta[:, j].mean()], "o-", color="C0", alpha=0.7)
    ax.annotate(f"sd {sigma[j]:.0f}", (0, y[j]), xytext=(-40, 0), textcoords="offset points", fontsize=8)
ax.axhline(post.draws["mu"].mean(), color="k", ls=":", label="posterior mean of mu")
ax.set_xticks([0, 1], ["reported y[j]", "posterior mean of theta[j]"])
ax.set_xlim(-0.3, 1.1)
ax.set_ylabel("effect")
ax.legend()
plt.show()""",
    """md:## Try it

- Write the centred form (`theta[j] ~ normal(mu, tau)`) and sample it: NUTS reports divergences
  and the summary warns, because the posterior has a funnel where `tau` is small.
- The command line:

```
.venv/bin/pplang sample examples/course/04_eight_schools.ppl --data examples/course/04_eight_schools.data.json
```""",
]

MIXTURE = [
    """md:# Lesson 5: a mixture

Old Faithful's eruptions are either short (about 2 minutes) or long (about 4.3), but nobody
labels them. 24 durations, simulated for the examples in that style.

- **A discrete latent per observation**: `z[i]` (long or short) selects the component.
- **Summed out**: NUTS moves only continuous choices, so pplang sums each `z[i]` out of the
  density (the *marginalize* transformation, `docs/marginalize.md`): p(y[i]) = w N(y[i] | long,
  sigma) + (1 - w) N(y[i] | short, sigma). Each draw keeps `p(z)`, the probability of each value
  of `z[i]` given that draw; their mean is the posterior probability that eruption i was long.
- **Check**: numerical integration over (w, short, long, sigma) gives posterior means w 0.643,
  short 2.159, long 4.232, sigma 0.347 (from `docs/examples.md`, the Gaussian mixture).""",
    SETUP,
    show_model("05_mixture.ppl"),
    """mixture = pp.load("05_mixture.ppl")["mixture"]
data = pp.load_data("05_mixture.data.json")
post = pp.sample(mixture, data, chains=2, warmup=500, draws=1000, seed=0, progress=False)
print(post.summary(max_rows=6))""",
    """reference = {"w": 0.643, "short": 2.159, "long": 4.232, "sigma": 0.347}
for name, ref in reference.items():
    d = post.draws[name]
    print(f"{name}: integration {ref:.3f};  NUTS {d.mean():.3f} (mcse {mcse(d):.3f})")
    assert abs(d.mean() - ref) < 4 * mcse(d) + 0.0005    # + the rounding of the reference""",
    """md:## Plot: which eruptions were long?

`post.draws["p(z)"]` has shape (chains, draws, N, 2): the probability of `z[i] = false, true`.""",
    """y = np.asarray(data["y"])
p_long = post.draws["p(z)"][..., 1].reshape(-1, data["N"]).mean(axis=0)
grid = np.linspace(1, 5.5, 300)
w, short, long_, sigma = (post.draws[k].ravel()[:, None] for k in ("w", "short", "long", "sigma"))
density = (w * np.exp(-0.5 * ((grid - long_) / sigma) ** 2) / sigma
           + (1 - w) * np.exp(-0.5 * ((grid - short) / sigma) ** 2) / sigma) / np.sqrt(2 * np.pi)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
ax1.hist(y, bins=15, density=True, alpha=0.4, color="gray", label="durations")
ax1.plot(grid, density.mean(axis=0), "k", label="posterior mean density")
ax1.set_xlabel("minutes")
ax1.legend()
ax2.scatter(y, p_long, c=p_long, cmap="coolwarm")
ax2.set_xlabel("duration (minutes)")
ax2.set_ylabel("P(long | data)")
plt.show()""",
    """md:## Try it

```
.venv/bin/pplang sample examples/course/05_mixture.ppl --data examples/course/05_mixture.data.json
.venv/bin/pplang compile examples/course/05_mixture.ppl --data examples/course/05_mixture.data.json --emit marginal
```

The second command prints the model with `z` summed out and the JAX it compiles to.""",
]

CHANGEPOINT = [
    """md:# Lesson 6: a change point

Counts of events per year over 40 years (simulated for the examples: rate 4 for the first 25
years, 1 after). When did the rate drop?

- **One discrete choice** `tau` with 40 values: the first year of the new rate. pplang sums it
  out (O(T^2) work, as the hand-written marginalization in Stan's manual) and keeps `p(tau)` per
  draw of the two rates.
- **Exact answer**: with gamma(1, 1) = exponential(1) priors on the rates, each segment's rate
  integrates out in closed form (gamma-Poisson): p(y | tau) = prod over the two segments of
  Gamma(1 + S) / (1 + n)^(1 + S) / prod y!, where S is the segment's total count and n its
  length. Normalizing over tau gives p(tau | y) exactly.""",
    SETUP,
    show_model("06_changepoint.ppl"),
    """md:## Letting pplang pick the method

`pp.infer` chooses a method from the model's structure and says why (`pp.choose_method` gives the
choice alone); its options go to the method it picks, here `pp.sample`.""",
    """changepoint = pp.load("06_changepoint.ppl")["changepoint"]
data = pp.load_data("06_changepoint.data.json")
print(pp.choose_method(changepoint, data))
post = pp.infer(changepoint, data, chains=2, warmup=500, draws=1000, seed=0, progress=False)
print(post.summary(max_rows=4))""",
    """md:## The exact posterior of tau and of the rates""",
    """from jax.scipy.special import gammaln

y = np.asarray(data["y"])
T = data["T"]


def log_segment(s, n):
    \"\"\"log of the integral over a rate with a gamma(1, 1) prior of its Poisson likelihood (without 1/y!).\"\"\"
    return gammaln(1.0 + s) - (1.0 + s) * np.log1p(n)


taus = np.arange(T)
before = np.array([y[:k].sum() for k in taus])
log_post = np.array([log_segment(before[k], k) + log_segment(y.sum() - before[k], T - k) for k in taus])
exact_tau = np.exp(log_post - log_post.max())
exact_tau /= exact_tau.sum()
exact_early = np.sum(exact_tau * (1 + before) / (1 + taus))
exact_late = np.sum(exact_tau * (1 + y.sum() - before) / (1 + T - taus))
for name, ref in (("early", exact_early), ("late", exact_late)):
    d = post.draws[name]
    print(f"{name}: exact {ref:.4f};  NUTS {d.mean():.4f} (mcse {mcse(d):.4f})")
    assert abs(d.mean() - ref) < 4 * mcse(d)

p_tau = post.draws["p(tau)"]                  # (chains, draws, T)
nuts_tau = p_tau.reshape(-1, T).mean(axis=0)
se_tau = np.array([mcse(p_tau[..., k]) for k in taus])
print("most probable year:", int(np.argmax(exact_tau)), f"P = {exact_tau.max():.3f} (NUTS {nuts_tau.max():.3f})")
assert np.all(np.abs(nuts_tau - exact_tau) < 4 * se_tau + 1e-3)""",
    """fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
ax1.bar(taus, y, color="gray")
ax1.set_xlabel("year")
ax1.set_ylabel("events")
ax2.bar(taus, exact_tau, alpha=0.5, label="exact")
ax2.plot(taus, nuts_tau, "k.", label="NUTS: mean of p(tau)")
ax2.set_xlabel("tau (first year of the new rate)")
ax2.set_ylabel("posterior probability")
ax2.legend()
plt.show()""",
    """md:## Try it

```
.venv/bin/pplang infer examples/course/06_changepoint.ppl --data examples/course/06_changepoint.data.json
```

names the method it picked, as `pp.infer` does, and prints the same summary.""",
]

HMM = [
    """md:# Lesson 7: hidden Markov models

A signal switches between two levels; 100 noisy measurements (posteriordb's `hmm_example`, BSD
3-Clause, see `examples/LICENCE-posteriordb.md`). The hidden state `z[t]` follows a Markov chain:
`z[t] ~ categorical(theta[z[t - 1]])`.

- **A chain of discrete choices**: pplang recognizes it and sums the states out with the
  *forward algorithm*, a `lax.scan` over time, O(T K^2); NUTS then samples the transition rows
  and the emission means.
- **Check**: posteriordb's reference posterior (long Stan runs).
- **Filtering**: with the parameters fixed, `pp.smc` runs a particle filter over the same chain.
  Its filtered state probabilities and its estimate of log p(y) are checked against the exact
  forward algorithm, written below in ten lines of numpy.
- **Recovery**: the states summed out for NUTS come back per draw: smoothed probabilities, paths
  drawn from the posterior and the most probable path.""",
    SETUP,
    show_model("07_hmm.ppl"),
    """module = pp.load("07_hmm.ppl")
data = pp.load_data("07_hmm.data.json")
post = pp.sample(module["hmm"], data, chains=2, warmup=500, draws=1000, seed=0, progress=False)
print(post.summary(max_rows=6))""",
    """reference = {("mu", 0): (3.0215, 0.0022), ("mu", 1): (8.8273, 0.0011),
             ("theta1", 0): (0.6666, 0.0010), ("theta2", 0): (0.0731, 0.0003)}   # posteriordb: mean, mcse
for (name, k), (ref, ref_se) in reference.items():
    d = post.draws[name][..., k]
    print(f"{name}[{k}]: reference {ref:.4f};  NUTS {d.mean():.4f} (mcse {mcse(d):.4f})")
    assert abs(d.mean() - ref) < 4 * np.hypot(mcse(d), ref_se)""",
    """md:## The hidden states, recovered

Summing the states out did not lose them. For every draw of the parameters pplang recovers the
states from what the forward algorithm computed: `p(z)`, the *smoothed* probabilities
p(z[t] = k | all of y) (forward-backward), `z`, a whole path drawn from the posterior (backward
sampling), and `map(z)`, the most probable path (Viterbi).""",
    """smoothed = post.draws["p(z)"].mean(axis=(0, 1))[:, 1]    # P(z[t] = 1 | y), parameters averaged over
paths = post.draws["z"].reshape(-1, len(data["y"]))          # one path per draw
viterbi = post.draws["map(z)"].reshape(-1, len(data["y"]))
print("switches in the most probable path of the first draw:", int(np.abs(np.diff(viterbi[0])).sum()))
# the drawn paths and the smoothed probabilities tell the same story
assert np.abs(paths.mean(0) - smoothed).max() < 0.05""",
    """md:## Filtering with known parameters

Fix the parameters at their posterior means and ask, at every time t, how probable each state
is given the measurements up to t. The particle filter answers with weighted particles; the
forward algorithm answers exactly.""",
    """theta = np.array([post.draws["theta1"].reshape(-1, 2).mean(0), post.draws["theta2"].reshape(-1, 2).mean(0)])
mu = post.draws["mu"].reshape(-1, 2).mean(0)
y = np.asarray(data["y"])
known = {**data, "theta": theta.tolist(), "mu": mu.tolist()}
pf = pp.smc(module["hmm_known"], known, particles=2000, seed=0)


def forward(y, theta, mu):
    \"\"\"Exact filtering probabilities p(z[t] | y[0..t]) and log p(y), states summed out step by step.\"\"\"
    like = np.exp(-0.5 * (y[:, None] - mu) ** 2) / np.sqrt(2 * np.pi)
    alpha, log_z, filtered = np.full(2, 0.5) * like[0], 0.0, []
    for t in range(len(y)):
        if t > 0:
            alpha = (alpha @ theta) * like[t]
        log_z += np.log(alpha.sum())
        alpha = alpha / alpha.sum()
        filtered.append(alpha)
    return np.array(filtered), log_z


exact_filtered, exact_log_z = forward(y, theta, mu)
p_high = pf.filtering_mean("z")          # mean of a 0/1 state = P(z[t] = 1 | y[0..t])
print("largest difference in P(high state):", np.abs(p_high - exact_filtered[:, 1]).max().round(4))
assert np.abs(p_high - exact_filtered[:, 1]).max() < 0.05

# The filter's estimate of p(y) is unbiased: over independent runs, exp(estimate - exact) averages 1.
runs = np.array([pp.smc(module["hmm_known"], known, particles=2000, seed=s, history=False).log_marginal_likelihood
                 for s in range(10)])
ratio = np.exp(runs - exact_log_z)
se = ratio.std(ddof=1) / np.sqrt(len(runs))
print(f"log p(y): forward algorithm {exact_log_z:.3f}; particle filter {pf.log_marginal_likelihood:.3f}, "
      f"over 10 runs {runs.mean():.3f} (sd {runs.std(ddof=1):.3f}); mean of p_hat / p {ratio.mean():.3f} (se {se:.3f})")
assert abs(ratio.mean() - 1) < 4 * se""",
    """fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
ax1.plot(y, "k.", ms=4)
for m in mu:
    ax1.axhline(m, color="C1", ls=":")
ax1.set_ylabel("y")
ax2.plot(exact_filtered[:, 1], label="exact (forward algorithm)")
ax2.plot(p_high, "--", label="particle filter")
ax2.plot(smoothed, ":", label="smoothed, all of y (NUTS, p(z))")
ax2.set_ylabel("P(high state)")
ax2.set_xlabel("t")
ax2.legend()
plt.show()""",
    """md:## Try it

```
.venv/bin/pplang sample examples/course/07_hmm.ppl --model hmm --data examples/course/07_hmm.data.json
.venv/bin/pplang compile examples/course/07_hmm.ppl --model hmm --data examples/course/07_hmm.data.json --emit marginal
```""",
]

GP = [
    """md:# Lesson 8: Gaussian processes

30 noisy measurements of an unknown smooth function (simulated by `simulate_data.py`:
f(x) = sin(x) + x / 5, noise sd 0.3). A Gaussian process is a prior over functions: the values at
any set of points are jointly normal, with covariance given by a *kernel*; here the
exponentiated quadratic, amp^2 exp(-(x - x')^2 / (2 ls^2)).

- **Marginal likelihood**: integrating the function out, y ~ multivariate_normal(0, K + noise^2 I).
  NUTS infers the length scale, the amplitude and the noise from it. Predictions at new points
  follow from the standard GP formulas, averaged over the draws.
- **Latent function**: with the hyperparameters known, the function values at the data points
  are latent (non-centred: f = L eta). NUTS samples 30 of them; their exact posterior is normal,
  with mean K (K + noise^2 I)^-1 y, which we check.
- In float32 the Cholesky factor of a kernel matrix can fail for long length scales or many
  points; `pp.enable_x64()` (or `--x64`) switches to float64 (`docs/precision.md`).""",
    SETUP,
    show_model("08_gp.ppl"),
    """module = pp.load("08_gp.ppl")
data = pp.load_data("08_gp.data.json")
x, y = np.asarray(data["x"]), np.asarray(data["y"])
post = pp.sample(module["gp"], data, chains=2, warmup=400, draws=500, seed=0, progress=False, computed=False)
print(post.summary())""",
    """md:## Predictions

For each posterior draw of (ls, amp, noise), the function at new points x* is normal with mean
k(x*, x) (K + noise^2 I)^-1 y. Averaging over 200 draws gives the posterior mean of the function.""",
    """def kernel(a, b, ls, amp):
    return amp**2 * np.exp(-0.5 * ((a[:, None] - b[None, :]) / ls) ** 2)


grid = np.linspace(0, 10, 200)
draws = {k: post.draws[k].ravel() for k in ("ls", "amp", "noise")}
means = []
for i in np.random.default_rng(0).choice(len(draws["ls"]), 200, replace=False):
    ls, amp, noise = draws["ls"][i], draws["amp"][i], draws["noise"][i]
    K = kernel(x, x, ls, amp) + noise**2 * np.eye(len(x))
    means.append(kernel(grid, x, ls, amp) @ np.linalg.solve(K, y))
means = np.array(means)
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(x, y, "k.", label="data")
ax.plot(grid, means.mean(0), label="posterior mean of f")
ax.fill_between(grid, *np.quantile(means, [0.05, 0.95], axis=0), alpha=0.3,
                label="90% band of the mean (hyperparameter uncertainty)")
ax.plot(grid, np.sin(grid) + grid / 5, "r:", label="the function the data came from")
ax.legend(fontsize=8)
plt.show()""",
    """md:## The latent function, checked exactly

Fix ls = 1, amp = 1, noise = 0.3 and sample the function values. The model adds 1e-4 to the
kernel's diagonal (a *jitter* that keeps the Cholesky factor stable); the exact answer uses the
same prior covariance.""",
    """fixed = {**data, "ls": 1.0, "amp": 1.0, "noise": 0.3}
latent = pp.sample(module["gp_latent"], fixed, chains=2, warmup=400, draws=500, seed=1, progress=False)
K = kernel(x, x, 1.0, 1.0) + 1e-4 * np.eye(len(x))
exact_mean = K @ np.linalg.solve(K + 0.3**2 * np.eye(len(x)), y)
f = latent.draws["f"]                                   # (chains, draws, N), computed from eta
z = np.array([(f[..., i].mean() - exact_mean[i]) / mcse(f[..., i]) for i in range(len(x))])
print(f"largest |NUTS - exact| / mcse over the {len(x)} points: {np.abs(z).max():.2f}")
assert np.abs(z).max() < 4.5                            # 30 comparisons at once""",
    """md:## Try it

```
.venv/bin/pplang sample examples/course/08_gp.ppl --model gp --data examples/course/08_gp.data.json \\
    --computed none
```

`--computed none` keeps only the draws: by default the summary would also list every entry of the
matrices `d` and `K` the model computes (`computed=False` above does the same from Python).""",
]

TIME_SERIES = [
    """md:# Lesson 9: time series and particle filtering

A level that wanders day by day (a random walk with steps of sd q = 0.3), measured with noise of
sd r = 1 (100 days, simulated by `simulate_data.py`). We want the *filtering distribution*
p(x[t] | y[0..t]): where the level is now, given what we have seen so far.

- **A particle filter from the model**: the loop carries `x` from one step to the next, so
  `pp.smc` compiles a particle filter (sequential Monte Carlo) from it: particles are moved by
  the model's transition, weighted by the likelihood of each new measurement and resampled when
  the weights become uneven. Its product of average weights estimates p(y) without bias.
- **Exact answer**: the model is linear and Gaussian, so the *Kalman filter* gives the filtering
  means and variances and log p(y) exactly (a dozen lines of numpy below).""",
    SETUP,
    show_model("09_time_series.ppl"),
    """model = pp.load("09_time_series.ppl")["local_level"]
data = pp.load_data("09_time_series.data.json")
pf = pp.smc(model, data, particles=2000, seed=0)
print(pf.summary())""",
    """md:## The Kalman filter""",
    """def kalman(y, q, r, m0=0.0, v0=4.0):
    \"\"\"Filtering means and variances of the local-level model, and log p(y).\"\"\"
    means, variances, log_z = [], [], 0.0
    m, v = m0, v0
    for t, obs in enumerate(y):
        if t > 0:
            v = v + q**2                     # predict: the level moves
        s = v + r**2                         # the measurement's predictive variance
        log_z += -0.5 * (np.log(2 * np.pi * s) + (obs - m) ** 2 / s)
        gain = v / s                         # update: move towards the measurement
        m, v = m + gain * (obs - m), (1 - gain) * v
        means.append(m)
        variances.append(v)
    return np.array(means), np.array(variances), log_z


y = np.asarray(data["y"])
km, kv, exact_log_z = kalman(y, data["q"], data["r"])
pf_mean = pf.filtering_mean("x")
z = (pf_mean - km) / np.sqrt(kv / pf.ess)      # error in units of the filter's Monte Carlo error
print(f"log p(y): Kalman {exact_log_z:.3f}, particle filter {pf.log_marginal_likelihood:.3f}")
print(f"filtering means: largest |difference| {np.abs(pf_mean - km).max():.4f} "
      f"(largest Kalman sd {np.sqrt(kv).max():.3f}); largest z-score {np.abs(z).max():.2f}")
assert np.abs(z).max() < 5                      # 100 steps compared at once""",
    """md:## Is the estimate of p(y) unbiased?

One run of the filter is off by a few tenths of a nat. Averaged over independent runs, the estimate of
p(y) (not of its log) is exact in expectation: the mean of exp(estimate - exact) is 1 within its
standard error. Each run reuses the compiled filter, so 20 runs take a moment.""",
    """runs = np.array([pp.smc(model, data, particles=500, seed=s, history=False).log_marginal_likelihood
                 for s in range(20)])
ratio = np.exp(runs - exact_log_z)
print(f"20 runs of 500 particles: mean of p_hat / p = {ratio.mean():.3f} (se {ratio.std(ddof=1) / np.sqrt(20):.3f})")
assert abs(ratio.mean() - 1) < 4 * ratio.std(ddof=1) / np.sqrt(20)""",
    """q05, q95 = pf.filtering_quantiles("x", (0.05, 0.95))
t = np.arange(data["T"])
fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
ax1.plot(t, y, "k.", ms=4, label="measurements")
ax1.fill_between(t, q05, q95, alpha=0.3, label="particle filter 90% band")
ax1.plot(t, pf_mean, label="particle filter mean")
ax1.plot(t, km, "r--", label="Kalman mean")
ax1.legend(fontsize=8)
ax2.plot(t, pf.ess)
ax2.set_ylabel("ESS")
ax2.set_xlabel("day")
plt.show()""",
    """md:## Try it

```
.venv/bin/pplang smc examples/course/09_time_series.ppl --data examples/course/09_time_series.data.json --particles 2000
```

Nothing here needed linearity: make the measurement `y[t] ~ student_t(3.0, x[t], r)` and the
particle filter runs unchanged, while the Kalman filter no longer applies.""",
]

VARIATIONAL = [
    """md:# Lesson 10: variational objectives

Instead of drawing from the posterior, *fit* a distribution q (a *guide*) to it by maximizing an
objective. The standard one is the ELBO, E_q[log p(y, z) - log q(z)] = log p(y) - KL(q || p(z | y)):
it is at most log p(y), with equality when q is the posterior.

The model is a straight line through 10 points whose x all lie between 2 and 4, so intercept and
slope are strongly correlated (-0.97). With normal priors and known noise the exact posterior is
normal, and log p(y) is known: we can see exactly what each guide gets right and wrong.

- **mean_field**: independent normals, an automatic guide. It cannot lean along the ridge.
- **full_rank**: a correlated normal, automatic. It can represent the posterior exactly.
- **line_q**: a guide written in the model file, with its own `param`s.
- **iwelbo**: the importance-weighted bound with k samples, tighter than the ELBO; fitting the
  mean-field guide to it widens the guide.""",
    SETUP,
    show_model("10_variational.ppl"),
    """module = pp.load("10_variational.ppl")
line = module["line"]
data = pp.load_data("10_variational.data.json")
x, y = np.asarray(data["x"]), np.asarray(data["y"])

X = np.column_stack([np.ones_like(x), x])
S = np.linalg.inv(X.T @ X / 0.5**2 + np.eye(2) / 2.0**2)   # exact posterior covariance of (a, b)
m = S @ X.T @ y / 0.5**2                                   # and mean
C = 0.5**2 * np.eye(len(x)) + 2.0**2 * X @ X.T             # y ~ normal(0, C)
exact_log_z = -0.5 * (len(x) * np.log(2 * np.pi) + np.linalg.slogdet(C)[1] + y @ np.linalg.solve(C, y))
print("exact: mean", m.round(3), "sd", np.sqrt(np.diag(S)).round(3),
      f"correlation {S[0, 1] / np.sqrt(S[0, 0] * S[1, 1]):.3f}, log p(y) {exact_log_z:.3f}")""",
    """fits = {
    "mean_field (elbo)": pp.fit(line, "mean_field", data=data, steps=3000, learning_rate=0.05,
                        lr_schedule="cosine", num_draws=4000, seed=0, progress=False),
    "full_rank (elbo)": pp.fit(line, "full_rank", data=data, steps=3000, learning_rate=0.05,
                        lr_schedule="cosine", num_draws=4000, seed=0, progress=False),
    "line_q (elbo)": pp.fit(line, module["line_q"], data=data, steps=3000, learning_rate=0.05,
                        lr_schedule="cosine", num_draws=4000, seed=0, progress=False),
    "mean_field (iwelbo, k=16)": pp.fit(line, "mean_field", ("iwelbo", {"k": 16}), data=data, steps=3000,
                                        learning_rate=0.05, lr_schedule="cosine", num_draws=4000, seed=0,
                                        progress=False),
}
print(f"{'guide':28} {'mean a':>7} {'mean b':>7} {'sd a':>6} {'sd b':>6} {'corr':>6} {'objective':>9}")
for name, fit in fits.items():
    a, b = fit.draws["a"], fit.draws["b"]
    final = np.nanmean(fit.values[-300:])
    print(f"{name:28} {a.mean():7.3f} {b.mean():7.3f} {a.std():6.3f} {b.std():6.3f} "
          f"{np.corrcoef(a, b)[0, 1]:6.2f} {final:9.3f}")""",
    """md:## Checks

- Every ELBO is below log p(y); the gap of the mean-field fit is its KL divergence from the
  posterior.
- The full-rank and hand-written guides recover the exact mean, sds and correlation (up to the
  noise of 4000 draws and of the stochastic optimization: each step uses one random draw).
- The mean-field guide's sds are far too small: it matches the posterior's *conditional* sds,
  not its marginal ones.""",
    """n = 4000                                                 # draws kept from each fitted guide
sd = np.sqrt(np.diag(S))
for name in ("full_rank (elbo)", "line_q (elbo)"):
    fit = fits[name]
    for k, c in enumerate("ab"):
        # Monte Carlo error of n draws, plus 5% of an sd for the noise of a stochastic optimization
        assert abs(fit.draws[c].mean() - m[k]) < 5 * sd[k] / np.sqrt(n) + 0.05 * sd[k], (name, c)
        assert abs(fit.draws[c].std() / sd[k] - 1) < 0.1, (name, c)
for name in ("mean_field (elbo)", "full_rank (elbo)", "line_q (elbo)"):
    assert np.nanmean(fits[name].values[-300:]) < exact_log_z + 0.05
mf = fits["mean_field (elbo)"]
assert mf.draws["b"].std() < 0.5 * sd[1]
print("mean-field sd of b:", mf.draws["b"].std().round(3), "exact conditional sd:",
      (1 / np.sqrt(np.linalg.inv(S)[1, 1])).round(3), "exact marginal sd:", sd[1].round(3))""",
    """md:## Correcting a guide

Importance sampling with a fitted guide as the proposal corrects it, if it covers the posterior.
The Pareto k diagnostic says whether it does: below 0.7 the correction is reliable.""",
    """for name in ("mean_field (elbo)", "full_rank (elbo)"):
    corrected = fits[name].importance_resample(num_samples=4000, seed=0)
    print(f"{name}: Pareto k {corrected.pareto_k:.2f}, corrected mean of b {corrected.mean('b'):.3f} "
          f"(exact {m[1]:.3f}), log p(y) {corrected.log_marginal_likelihood:.3f} (exact {exact_log_z:.3f})")""",
    """from matplotlib.patches import Ellipse

vals, vecs = np.linalg.eigh(S)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
for name, fit in fits.items():
    ax1.plot(fit.draws["a"][:300], fit.draws["b"][:300], ".", ms=3, alpha=0.5, label=name)
for scale in (1, 2):
    ax1.add_patch(Ellipse(m, *(2 * scale * np.sqrt(vals[::-1])), angle=np.degrees(np.arctan2(*vecs[::-1, 1])),
                          fill=False, color="k"))
ax1.set_xlabel("a (intercept)")
ax1.set_ylabel("b (slope)")
ax1.legend(fontsize=7)
for name, fit in fits.items():
    ax2.plot(np.convolve(fit.values, np.ones(50) / 50, mode="valid"), label=name)
ax2.axhline(exact_log_z, color="k", ls=":", label="log p(y)")
ax2.set_ylim(exact_log_z - 6, exact_log_z + 1)
ax2.set_xlabel("step")
ax2.set_ylabel("objective (moving average)")
ax2.legend(fontsize=7)
plt.show()""",
    """md:## Try it

```
.venv/bin/pplang fit examples/course/10_variational.ppl --model line --guide mean_field \\
    --data examples/course/10_variational.data.json --correct 4000
.venv/bin/pplang fit examples/course/10_variational.ppl --model line --guide line_q \\
    --data examples/course/10_variational.data.json --steps 3000
```

`docs/objectives.md` lists the other objectives (`renyi`, `rws`, `hvi`, ...) and how to write
your own.""",
]

AMORTIZED = [
    """md:# Lesson 11: amortized inference

A lab repeats the same experiment many times; each run has an unknown level `mu` and gives five
readings. Fitting a guide per run (lesson 10) repeats an optimization for every run. Instead, train
one guide whose parameters come from a *neural network that reads the data*; once trained, it
answers for any new run in one forward pass.

- **Training on simulations**: `pp.amortize(..., simulate=N)` draws N runs (mu and readings) from
  the model and teaches the network to put high density on each run's true mu given its readings
  (neural posterior estimation). No data needed.
- **Exact answer**: prior normal(0, 2), unit noise: mu's posterior is normal with mean
  sum(y) / (N + 1/4) and sd 1 / sqrt(N + 1/4), for every run, so we can check the network on runs
  it has never seen.""",
    SETUP,
    show_model("11_amortized.ppl"),
    """module = pp.load("11_amortized.ppl")
N = 5
amortized = pp.amortize(module["repeated"], module["repeated_q"], simulate=10_000, shared={"N": N},
                        epochs=10, batch_size=64, learning_rate=0.003, seed=0, progress=False)
print(amortized.summary())""",
    """md:## New runs, answered in one pass

500 runs the network has never seen, each with its own mu; `posterior` takes all of them at once
(a leading axis of data sets).""",
    """rng = np.random.default_rng(1)
y_new = rng.normal(0.0, 2.0, (500, 1)) + rng.normal(size=(500, N))
post = amortized.posterior({"y": y_new}, num_samples=2000, seed=0)
exact_mean, exact_sd = y_new.sum(1) / (N + 0.25), 1 / np.sqrt(N + 0.25)
error = (post.mean()["mu"] - exact_mean) / exact_sd
print(f"posterior mean off by {np.abs(error).mean():.3f} exact sds on average ({np.abs(error).max():.3f} at most); "
      f"sd off by {np.abs(post.sd()['mu'] / exact_sd - 1).mean():.1%} on average")
assert np.abs(error).mean() < 0.15
assert np.abs(post.sd()["mu"] / exact_sd - 1).mean() < 0.15""",
    """md:## Correcting one answer

The trained guide is a good proposal for importance sampling on one run; the Pareto k says so,
and the corrected mean is exact up to Monte Carlo error.""",
    """query = pp.load_data("11_amortized.data.json")        # one run: N = 5 readings
corrected = amortized.importance_sampling(query, num_samples=4000, seed=0)
y_q = np.asarray(query["y"])
print(f"query run: exact mean {y_q.sum() / (N + 0.25):.3f}, corrected {corrected.mean('mu'):.3f}, "
      f"Pareto k {corrected.pareto_k:.2f}")""",
    """fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
ax1.plot(exact_mean, post.mean()["mu"], ".", ms=3)
ax1.plot(exact_mean, exact_mean, "k:", lw=1)
ax1.set_xlabel("exact posterior mean")
ax1.set_ylabel("amortized posterior mean")
ax2.hist(post.sd()["mu"], bins=30)
ax2.axvline(exact_sd, color="k", ls=":", label="exact sd (the same for every run)")
ax2.set_xlabel("amortized posterior sd")
ax2.legend(fontsize=8)
plt.show()""",
    """md:## Try it

```
.venv/bin/pplang amortize examples/course/11_amortized.ppl --model repeated --guide repeated_q \\
    --simulate 10000 --set N=5 --epochs 10 --lr 0.003 --results results/course_amortized
.venv/bin/pplang posterior results/course_amortized --data examples/course/11_amortized.data.json --correct 4000
```

`docs/amortized.md` shows training on a collection of recorded data sets instead, and a
variational autoencoder (`examples/vae.ppl`).""",
]

LESSONS = {
    "01_coin": COIN,
    "02_regression": REGRESSION,
    "03_logistic": LOGISTIC,
    "04_eight_schools": SCHOOLS,
    "05_mixture": MIXTURE,
    "06_changepoint": CHANGEPOINT,
    "07_hmm": HMM,
    "08_gp": GP,
    "09_time_series": TIME_SERIES,
    "10_variational": VARIATIONAL,
    "11_amortized": AMORTIZED,
}


def notebook(cells: list[str]) -> nbformat.NotebookNode:
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                                "language_info": {"name": "python"}})
    for i, text in enumerate(cells):
        cell = new_markdown_cell(text[3:]) if text.startswith("md:") else new_code_cell(text)
        cell["id"] = f"cell-{i:02d}"  # stable ids: regenerating changes nothing that did not change
        nb.cells.append(cell)
    return nb


def main() -> None:
    for name, cells in LESSONS.items():
        nbformat.write(notebook(cells), HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
