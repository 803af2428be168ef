"""Values known while tracing (static) drive Python-level control flow; a value that a loop carries or
a traced branch selects is not static, and a condition on it must be evaluated when running."""

import numpy as np
from scipy import stats

import pplang as pp

SRC = """
model m(N: int):
    s = 0
    for i in range(N):
        z[i] ~ bernoulli(0.5)
        level = 0.0
        if z[i]:
            level = 3.0
        if level > 1.0:
            y[i] ~ normal(0.0, 1.0)
        else:
            y[i] ~ normal(5.0, 1.0)
    for t in range(N):
        s = s + 1
        if s > 2:
            w[t] ~ normal(0.0, 1.0)
        else:
            w[t] ~ normal(10.0, 1.0)
"""


def test_conditions_on_selected_and_carried_values_are_evaluated_when_running() -> None:
    m = pp.loads(SRC)["m"]
    n = 5
    tr = m.simulate({"N": n}, seed=1)
    z = np.asarray(tr["z"]).astype(bool)
    y, w = np.asarray(tr["y"], float), np.asarray(tr["w"], float)
    s = np.arange(1, n + 1)
    hand = (n * np.log(0.5) + np.sum(stats.norm.logpdf(y, np.where(z, 0.0, 5.0), 1.0))
            + np.sum(stats.norm.logpdf(w, np.where(s > 2, 0.0, 10.0), 1.0)))
    np.testing.assert_allclose(float(tr.log_density), hand, rtol=1e-5)
    np.testing.assert_allclose(float(m.log_density(tr.values, {"N": n})), hand, rtol=1e-5)


def test_keyword_named_choice_in_both_arms_records_the_selected_value() -> None:
    """A choice named like a Python keyword is renamed in generated code (`is` -> `is_`); the trace
    must still hold the value of the arm taken, not the last arm emitted."""
    m = pp.loads("model m():\n    z ~ bernoulli(0.5)\n    if z:\n        is ~ normal(0.0, 0.01)\n"
                 "    else:\n        is ~ normal(5.0, 0.01)\n")["m"]
    tr = m.simulate({}, seed=0, num_samples=64)
    z = np.asarray(tr["z"]).astype(bool)
    assert 0 < z.sum() < 64
    np.testing.assert_allclose(np.asarray(tr["is"]), np.where(z, 0.0, 5.0), atol=0.1)
