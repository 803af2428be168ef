"""The marginalize transformation sums discrete choices out exactly: its log density equals the
log-sum-exp of the original model's log density over every assignment of the summed-out choices
(brute force), for mixtures, single choices and chains (hidden Markov models, with constant or
time-varying transitions); its forward algorithm equals a hand-written one; and what it cannot
sum out is a located error."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings
from scipy import special, stats

import pplang as pp

ROOT = Path(__file__).resolve().parents[2]

MIXTURE = """
model mix(N: int, K: int):
    w ~ dirichlet(ones(K))
    mu ~ normal(zeros(K), 5.0)
    s ~ half_normal(2.0)
    for i in range(N):
        z[i] ~ categorical(w)
        m = mu[z[i]]
        y[i] ~ normal(m, s)
        factor(-0.1 * square(y[i] - m))
"""

SWITCH = """
model switch(N: int):
    p ~ beta(2.0, 2.0)
    a ~ normal(0.0, 1.0)
    c ~ bernoulli(p)
    level = where(c, a + 3.0, a)
    for i in range(N):
        y[i] ~ normal(level, 1.0)
"""

CHAIN = """
model hmm(T: int, K: int):
    theta ~ dirichlet(ones(K))
    stay ~ beta(5.0, 2.0)
    mu ~ normal(zeros(K), 3.0)
    z[0] ~ categorical(theta)
    y[0] ~ normal(mu[z[0]], 1.0)
    for t in range(1, T):
        z[t] ~ categorical(stay * one_hot[z[t - 1]] + (1.0 - stay) * theta)
        y[t] ~ normal(mu[z[t]], 1.0)
"""

DRIFTING = """
model drift(T: int):
    q ~ beta(2.0, 2.0)
    z[0] ~ bernoulli(0.5)
    y[0] ~ normal(where(z[0], 1.0, -1.0), 1.0)
    for t in range(1, T):
        z[t] ~ bernoulli(where(z[t - 1], q, 1.0 - q) * (1.0 - 0.01 * t) + 0.005 * t)
        y[t] ~ normal(where(z[t], 1.0, -1.0), 1.0)
"""


def brute_force(model: pp.Model, values: dict, data: dict, address: str, shape: tuple, support: list) -> float:
    terms = []
    for assignment in itertools.product(support, repeat=int(np.prod(shape))):
        z = np.array(assignment).reshape(shape)
        terms.append(float(model.log_density({**values, address: z}, data)))
    return float(special.logsumexp(terms))


@given(n=st.integers(1, 4), k=st.integers(2, 3), seed=st.integers(0, 10_000))
@settings(max_examples=25, deadline=None)
def test_a_mixture_sums_to_brute_force(n: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = pp.loads(MIXTURE, file="mix.ppl")["mix"]
    data = {"N": n, "K": k, "y": rng.normal(0.0, 3.0, n)}
    values = {"w": rng.dirichlet(np.ones(k)), "mu": rng.normal(0.0, 3.0, k), "s": rng.uniform(0.5, 2.0)}
    marginal = m.marginal(["y"])
    assert marginal.marginalized == {"z": "mixture"} and "z" not in marginal.sites
    got = float(marginal.log_density(values, data))
    assert got == pytest.approx(brute_force(m, values, data, "z", (n,), list(range(k))), rel=1e-5, abs=1e-4)


CHANGE_POINT = """
model change(T: int):
    early ~ exponential(1.0)
    late ~ exponential(1.0)
    tau ~ categorical(ones(T) / T)
    for t in range(T):
        rate = where(t < tau, early, late)
        y[t] ~ poisson(rate)
"""


@given(seed=st.integers(0, 10_000))
@settings(max_examples=10, deadline=None)
def test_a_change_point_sums_to_brute_force(seed: int) -> None:
    """A single choice read in a loop after it: each iteration keeps its terms for every value."""
    rng = np.random.default_rng(seed)
    m = pp.loads(CHANGE_POINT, file="change.ppl")["change"]
    data = {"T": 6, "y": rng.poisson(3.0, 6)}
    values = {"early": rng.uniform(0.5, 5.0), "late": rng.uniform(0.5, 5.0)}
    marginal = m.marginal(["y"])
    assert marginal.marginalized == {"tau": "single"}
    got = float(marginal.log_density(values, data))
    want = float(special.logsumexp([float(m.log_density({**values, "tau": k}, data)) for k in range(6)]))
    assert got == pytest.approx(want, rel=1e-5)


def test_a_single_bool_choice_sums_to_brute_force() -> None:
    m = pp.loads(SWITCH, file="switch.ppl")["switch"]
    data = {"N": 3, "y": np.array([2.5, 3.3, 2.9])}
    values = {"p": 0.3, "a": 0.1}
    marginal = m.marginal(["y"])
    assert marginal.marginalized == {"c": "single"}
    got = float(marginal.log_density(values, data))
    want = brute_force(m, values, data, "c", (), [False, True])
    assert got == pytest.approx(want, rel=1e-5)
    assert "level" not in marginal.computed_names  # computed from the summed-out choice: not kept


@given(t=st.integers(1, 5), k=st.integers(2, 3), seed=st.integers(0, 10_000))
@settings(max_examples=20, deadline=None)
def test_a_chain_sums_to_brute_force(t: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = pp.loads(CHAIN.replace("one_hot[z[t - 1]]", "identity(K)[z[t - 1]]"), file="hmm.ppl")["hmm"]
    data = {"T": t, "K": k, "y": rng.normal(0.0, 2.0, t)}
    values = {"theta": rng.dirichlet(np.ones(k)), "stay": rng.uniform(0.3, 0.9), "mu": rng.normal(0.0, 2.0, k)}
    marginal = m.marginal(["y"])
    assert marginal.marginalized == {"z": "chain"}
    got = float(marginal.log_density(values, data))
    assert got == pytest.approx(brute_force(m, values, data, "z", (t,), list(range(k))), rel=1e-5, abs=1e-4)


def test_a_time_varying_chain_of_bools_sums_to_brute_force() -> None:
    m = pp.loads(DRIFTING, file="drift.ppl")["drift"]
    data = {"T": 5, "y": np.array([0.9, 1.4, -0.3, -1.2, 0.2])}
    marginal = m.marginal(["y"])
    code = marginal.impl.__globals__["__pplang_code__"]
    assert "_m0_log_transitions" in code  # the transition depends on t: one matrix per step, in the loop
    got = float(marginal.log_density({"q": 0.8}, data))
    assert got == pytest.approx(brute_force(m, {"q": 0.8}, data, "z", (5,), [False, True]), rel=1e-5)


def forward(log_init: np.ndarray, log_a: np.ndarray, log_e: np.ndarray) -> float:
    """The forward algorithm by hand: log p(y) from log initial probabilities, the log transition
    matrix [j, k] and log emissions [t, k]."""
    alpha = log_init + log_e[0]
    for t in range(1, len(log_e)):
        alpha = special.logsumexp(alpha[:, None] + log_a, axis=0) + log_e[t]
    return float(special.logsumexp(alpha))


def test_the_posteriordb_hmm_equals_a_hand_written_forward_algorithm() -> None:
    module = pp.load(str(ROOT / "examples" / "posteriordb" / "hmm_example-hmm_example.ppl"))
    data = json.loads((ROOT / "examples" / "posteriordb" / "hmm_example-hmm_example.data.json").read_text())
    marginal = module["hmm_example"].marginal(["y"])
    theta = np.array([[0.7, 0.3], [0.2, 0.8]])
    mu = np.array([3.0, 9.0])
    values = {"theta1": theta[0], "theta2": theta[1], "mu": mu}
    y = np.asarray(data["y"])
    log_e = stats.norm.logpdf(y[:, None], mu[None], 1.0)
    prior = stats.dirichlet.logpdf(theta[0], [1, 1]) + stats.dirichlet.logpdf(theta[1], [1, 1]) \
        + stats.norm.logpdf(mu, [3.0, 10.0], 1.0).sum()
    want = prior + forward(np.log([0.5, 0.5]), np.log(theta), log_e)
    assert float(marginal.log_density(values, data)) == pytest.approx(want, rel=1e-5)
    code = marginal.impl.__globals__["__pplang_code__"]
    assert "log_transition" in code and code.count("rt.scan(") == 1  # hoisted matrix, one scan


@pytest.mark.parametrize(("src", "line", "message"), [
    ("model m(N: int):\n    r ~ normal(0.0, 1.0)\n    k ~ poisson(exp(r))\n    y ~ normal(k, 1.0)\n", 3,
     "no finite support"),
    ("model m(N: int):\n    w ~ beta(1.0, 1.0)\n    for i in range(N):\n        z[i] ~ bernoulli(w)\n"
     "    s = to_real(z[0])\n", 5, "it is read outside the loop that draws it"),
    ("model m(N: int):\n    w ~ beta(1.0, 1.0)\n    for i in range(N):\n        z[i] ~ bernoulli(w)\n"
     "        u[i] = to_real(z[i])\n", 5, "an array piece is computed from it"),
    ("model m(N: int):\n    z ~ bernoulli(0.5)\n    for i in range(N):\n        for j in range(N):\n"
     "            y[i, j] ~ normal(to_real(z), 1.0)\n", 4, "a loop is computed from it"),
])
def test_what_cannot_be_summed_out_is_a_located_error(src: str, line: int, message: str) -> None:
    m = pp.loads(src, file="bad.ppl")["m"]
    with pytest.raises(pp.PplError, match=message) as info:
        m.marginal([], [a for a in ("k", "z") if a in m.sites])
    assert f"bad.ppl:{line}" in str(info.value)


def test_an_observed_choice_is_not_summed_out() -> None:
    m = pp.loads(SWITCH, file="switch.ppl")["switch"]
    assert m.marginal(["y", "c"]) is m  # nothing latent to sum out
    with pytest.raises(pp.PplError, match="`c` is observed in the data"):
        m.marginal(["y", "c"], ["c"])


def test_the_posterior_probabilities_of_a_summed_out_choice_are_kept() -> None:
    """`p(z)` per draw: the probabilities of each value given the other choices and the data, as
    brute force computes them from the original model."""
    m = pp.loads(MIXTURE, file="mix.ppl")["mix"]
    rng = np.random.default_rng(3)
    data = {"N": 3, "K": 3, "y": rng.normal(0.0, 3.0, 3)}
    values = {"w": np.array([0.2, 0.5, 0.3]), "mu": np.array([-2.0, 0.0, 2.5]), "s": 1.2}
    marginal = m.marginal(["y"])
    assert marginal.computed_names == ["p(z)", "z", "map(z)"]
    got = marginal.computed({a: np.asarray(v)[None] for a, v in values.items()}, data)["p(z)"][0]
    joint = {}
    for z in itertools.product(range(3), repeat=3):
        joint[z] = float(m.log_density({**values, "z": np.array(z)}, data))
    lz = special.logsumexp(list(joint.values()))
    for i in range(3):
        for k in range(3):
            want = float(np.exp(special.logsumexp([v for z, v in joint.items() if z[i] == k]) - lz))
            assert got[i, k] == pytest.approx(want, rel=1e-4, abs=1e-6)
    switch = pp.loads(SWITCH, file="switch.ppl")["switch"].marginal(["y"])
    p = switch.computed({"p": np.array([0.3]), "a": np.array([0.1])}, {"N": 3, "y": np.array([2.5, 3.3, 2.9])})
    assert p["p(c)"].shape == (1, 2) and p["p(c)"][0, 1] > 0.99  # observations near a + 3: c is true
