"""Summed-out discrete choices are recovered after inference over the others, as every result's
computed values: `p(z)` (posterior marginals; forward-backward for a chain), `z` (a joint draw;
backward sampling for a chain) and `map(z)` (the most probable assignment; Viterbi for a chain).
Each is checked, for fixed values of the continuous choices, against the exact posterior over every
assignment (brute force through the original model's log density) or a hand-written
forward-backward; joint draws by a chi-square test of their frequencies."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import special, stats

import pplang as pp

CHAIN = """
model hmm(T: int, K: int, A: matrix[K, K]):
    mu ~ normal(0.0, 3.0)
    z[0] ~ categorical(ones(K) / K)
    y[0] ~ normal(mu * z[0], 1.0)
    for t in range(1, T):
        z[t] ~ categorical(A[z[t - 1]])
        y[t] ~ normal(mu * z[t], 1.0)
"""

AUTOREGRESSIVE = """
model ar(T: int):
    q ~ beta(2.0, 2.0)
    z[0] ~ bernoulli(0.5)
    y[0] ~ normal(where(z[0], 1.0, -1.0), 1.0)
    for t in range(1, T):
        z[t] ~ bernoulli(where(z[t - 1], q, 1.0 - q) * (1.0 - 0.05 * t) + 0.025 * t)
        y[t] ~ normal(where(z[t], 1.0, -1.0) + 0.5 * y[t - 1], 1.0)
"""

MIXTURE = """
model mix(N: int, K: int):
    w ~ dirichlet(ones(K))
    mu ~ normal(zeros(K), 5.0)
    for i in range(N):
        z[i] ~ categorical(w)
        y[i] ~ normal(mu[z[i]], 1.0)
"""

SWITCH = """
model switch(N: int):
    a ~ normal(0.0, 1.0)
    c ~ bernoulli(0.3)
    for i in range(N):
        y[i] ~ normal(where(c, a + 3.0, a), 1.0)
"""

CASES = {
    "chain": (CHAIN, "hmm", {"T": 5, "K": 3, "A": np.array([[.7, .2, .1], [.1, .8, .1], [.3, .3, .4]]),
                             "y": np.array([0.1, 1.4, 2.2, 0.5, 1.9])}, {"mu": 1.1}, "z", (5,), range(3)),
    "time-varying chain": (AUTOREGRESSIVE, "ar", {"T": 6, "y": np.array([0.9, 1.4, -0.3, -1.2, 0.2, 0.8])},
                           {"q": 0.8}, "z", (6,), [False, True]),
    "mixture": (MIXTURE, "mix", {"N": 4, "K": 3, "y": np.array([-2.0, 0.3, 0.6, 2.5])},
                {"w": np.array([0.5, 0.3, 0.2]), "mu": np.array([-2.0, 0.0, 2.0])}, "z", (4,), range(3)),
    "single": (SWITCH, "switch", {"N": 3, "y": np.array([2.5, 1.3, 2.9])}, {"a": 0.1}, "c", (), [False, True]),
}


def exact(model: pp.Model, values: dict, data: dict, address: str, shape: tuple, support) -> tuple[list, np.ndarray]:
    """Every assignment of the choice and its posterior probability given the other values."""
    paths = [np.array(a).reshape(shape) for a in itertools.product(support, repeat=int(np.prod(shape)))]
    lp = np.array([float(model.log_density({**values, address: z}, data)) for z in paths])
    return paths, np.exp(lp - special.logsumexp(lp))


@pytest.mark.parametrize("case", list(CASES))
def test_recovered_choices_match_the_exact_posterior(case: str) -> None:
    source, name, data, values, address, shape, support = CASES[case]
    model = pp.loads(source, file=f"{name}.ppl")[name]
    marginal = model.marginal([a for a in data if a in model.sites])
    assert {f"p({address})", address, f"map({address})"} <= set(marginal.computed_names)
    paths, w = exact(model, values, data, address, shape, support)
    n = 20_000
    got = marginal.computed({a: np.repeat(np.asarray(v)[None], n, 0) for a, v in values.items()}, data, seed=7)

    values_of = [int(v) for v in support]
    want = np.zeros((*shape, len(values_of)))
    for z, wi in zip(paths, w):
        onehot = np.eye(len(values_of))[z.astype(int)]
        want += wi * onehot
    np.testing.assert_allclose(got[f"p({address})"][0], want, atol=1e-5)

    best = paths[int(np.argmax(w))]
    np.testing.assert_array_equal(np.asarray(got[f"map({address})"][0]).astype(int), best.astype(int))

    draws = np.asarray(got[address]).astype(int).reshape(n, -1)
    index = {tuple(z.astype(int).ravel()): i for i, z in enumerate(paths)}
    counts = np.bincount([index[tuple(d)] for d in draws], minlength=len(paths))
    expected = w * n
    big = expected >= 5  # pooled below 5 expected counts, as the chi-square test needs
    observed_pooled = np.append(counts[big], counts[~big].sum())
    expected_pooled = np.append(expected[big], expected[~big].sum())
    keep = expected_pooled > 0
    assert stats.chisquare(observed_pooled[keep], expected_pooled[keep]).pvalue > 1e-3
    assert np.asarray(got[address]).dtype == (bool if isinstance(support, list) else np.int32)


def forward_backward(log_init: np.ndarray, log_a: np.ndarray, log_e: np.ndarray) -> np.ndarray:
    """Hand-written forward-backward: p(z[t] = k | y) for log_a[j, k] = log p(k | j), log_e[t, k]."""
    t_len, k = log_e.shape
    alpha, beta = np.zeros((t_len, k)), np.zeros((t_len, k))
    alpha[0] = log_init + log_e[0]
    for t in range(1, t_len):
        alpha[t] = special.logsumexp(alpha[t - 1][:, None] + log_a, axis=0) + log_e[t]
    for t in range(t_len - 2, -1, -1):
        beta[t] = special.logsumexp(log_a + (log_e[t + 1] + beta[t + 1])[None, :], axis=1)
    post = alpha + beta
    return np.exp(post - special.logsumexp(post, axis=1, keepdims=True))


def test_a_long_chain_s_marginals_match_a_hand_written_forward_backward() -> None:
    rng = np.random.default_rng(0)
    t_len, k = 200, 4
    a = rng.dirichlet(np.ones(k) * 0.5, size=k)
    y = rng.normal(0.0, 2.0, t_len)
    model = pp.loads(CHAIN, file="hmm.ppl")["hmm"]
    data = {"T": t_len, "K": k, "A": a, "y": y}
    got = model.marginal(["y"]).computed({"mu": np.array([0.7])}, data, names=["p(z)"])["p(z)"][0]
    log_e = stats.norm.logpdf(y[:, None], 0.7 * np.arange(k)[None, :], 1.0)
    want = forward_backward(np.full(k, -np.log(k)), np.log(a), log_e)
    # float32: the filtered log probabilities reach about -2T, where float32 resolves 2^-24 * 2T = 3e-5
    # in log space, so probabilities carry relative errors of some 1e-4; an error of the algorithm
    # shows as differences of order one
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert np.abs(got - want).mean() < 1e-4


OUTLIERS = """
model outliers(N: int):
    mu ~ normal(0.0, 2.0)
    for i in range(N):
        bad[i] ~ bernoulli(0.2)
        y[i] ~ normal(where(bad[i], mu + 4.0, mu), 1.0)

network encoder = mlp(out_size=2, hidden=[32], activation=relu)

guide outliers_q(N: int, y: vector[N]):
    h = encoder(y)
    mu ~ normal(h[0], exp(h[1]))
"""


def exact_outliers(y: np.ndarray) -> tuple[float, float]:
    """Posterior mean and sd of mu on a fine grid, each reading a two-component mixture."""
    grid = np.linspace(-10.0, 10.0, 20_001)
    lp = stats.norm.logpdf(grid, 0.0, 2.0) + sum(
        np.logaddexp(np.log(0.8) + stats.norm.logpdf(v, grid, 1.0), np.log(0.2) + stats.norm.logpdf(v, grid + 4.0, 1.0))
        for v in y)
    w = np.exp(lp - special.logsumexp(lp))
    mean = float(np.dot(w, grid))
    return mean, float(np.sqrt(np.dot(w, (grid - mean) ** 2)))


def test_an_amortized_guide_of_the_continuous_choices_alone_is_trained_and_corrected() -> None:
    """Training on simulations fits the guide's density of mu alone (the outlier flags, which it
    leaves out, are summed out); the importance correction with the guide as proposal sums them out of
    the weights, matches the exact posterior of mu and recovers each flag's probability."""
    module = pp.loads(OUTLIERS, file="outliers.ppl")
    post = pp.amortize(module["outliers"], module["outliers_q"], simulate=4000, shared={"N": 4}, epochs=8,
                       learning_rate=3e-3, progress=False, seed=0)
    y = np.array([0.8, 1.6, 5.9, 1.1])
    mean, sd = exact_outliers(y)
    corrected = post.importance_sampling({"N": 4, "y": y}, num_samples=4000, seed=1)
    assert corrected.pareto_k < 0.7
    w = corrected.weights
    got = float(np.dot(w, corrected.samples["mu"]))
    assert abs(got - mean) < 4 * sd / np.sqrt(corrected.ess)
    flags = np.dot(w, corrected.samples["p(bad)"][:, :, 1])  # P(reading i is an outlier | y)
    assert flags[2] > 0.9 and flags[[0, 1, 3]].max() < 0.3


def test_replicated_data_come_from_the_full_model_with_recovered_choices() -> None:
    """Posterior predictive draws of a model whose assignments were summed out simulate the full
    model, each draw's assignments recovered from their posterior (drawn anew when the result kept
    no computed values): the replicated share of the left component matches the data's."""
    model = pp.loads(MIXTURE, file="mix.ppl")["mix"]
    rng = np.random.default_rng(0)
    y = np.where(rng.random(100) < 0.3, rng.normal(-4.0, 1.0, 100), rng.normal(4.0, 1.0, 100))
    data = {"N": 100, "K": 2, "y": y}
    share = float(np.mean(y < 0))
    for computed in (True, False):
        post = pp.sample(model, data, chains=2, warmup=200, draws=200, seed=0, progress=False, computed=computed)
        rep = post.posterior_predictive(seed=1)["y"].reshape(-1, 100)
        # the components lie far apart, so each replicate keeps nearly every reading's component; with
        # the assignments left at a placeholder value, every replicate would fall on one side
        left = np.mean(rep < 0, axis=1)
        assert abs(left.mean() - share) < 0.02, (computed, left.mean(), share)
    post = pp.importance_sampling(model, data, num_samples=4000, seed=0)
    left = np.mean(post.posterior_predictive(1000, seed=2)["y"] < 0, axis=1)
    assert abs(left.mean() - share) < 0.02


def test_choices_summed_out_together_are_drawn_jointly_and_their_best_assignment_found() -> None:
    """Variable elimination: the draws of the three interacting choices (backward sampling through
    the elimination's tables) follow their exact joint posterior, and the most probable assignment
    (max-product) is brute force's."""
    source = """
model group(N: int):
    mu ~ normal(0.0, 2.0)
    a ~ bernoulli(0.5)
    c ~ categorical([0.2, 0.3, 0.5])
    b ~ bernoulli(where(a, 0.8, 0.2))
    for i in range(N):
        y[i] ~ normal(mu + where(a, 1.0, 0.0) + where(b, 1.0, 0.0) * c, 1.0)
"""
    model = pp.loads(source, file="group.ppl")["group"]
    data = {"N": 3, "y": np.array([1.0, 2.0, 1.5])}
    marginal = model.marginal(["y"])
    assert set(marginal.marginalized.values()) == {"elimination"}
    n = 20_000
    got = marginal.computed({"mu": np.full(n, 0.3)}, data, seed=1)
    assignments = list(itertools.product([False, True], range(3), [False, True]))
    lp = np.array([float(model.log_density({"mu": 0.3, "a": a, "c": c, "b": b}, data)) for a, c, b in assignments])
    w = np.exp(lp - special.logsumexp(lp))
    best = assignments[int(np.argmax(w))]
    assert (bool(got["map(a)"][0]), int(got["map(c)"][0]), bool(got["map(b)"][0])) == best
    index = {k: i for i, k in enumerate(assignments)}
    counts = np.bincount([index[(bool(a), int(c), bool(b))] for a, c, b in zip(got["a"], got["c"], got["b"])],
                         minlength=len(assignments))
    assert stats.chisquare(counts, w * n).pvalue > 1e-3


def test_data_are_not_replicated_from_choices_that_are_not_recovered() -> None:
    """A mixture's assignments drawn from a choice that is summed out too are not recovered per draw:
    simulating data given the draws is a located error, and the ArviZ export leaves that group out."""
    source = """
model nested(N: int):
    mu ~ normal(0.0, 2.0)
    a ~ bernoulli(0.5)
    for i in range(N):
        z[i] ~ bernoulli(where(a, 0.9, 0.1))
        y[i] ~ normal(mu + where(z[i], 2.0, 0.0), 1.0)
"""
    model = pp.loads(source, file="nested.ppl")["nested"]
    post = pp.importance_sampling(model, {"N": 3, "y": np.array([1.0, 2.0, 1.5])}, num_samples=500, seed=0)
    assert set(post.model.marginalized) == {"a", "z"} and not post.model.replicable
    with pytest.raises(pp.PplError, match="not recovered"):
        post.posterior_predictive()
    assert "posterior_predictive" not in post.to_arviz().groups()
