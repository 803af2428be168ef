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
