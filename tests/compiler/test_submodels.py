"""Submodels called inside loops: `for j in range(J): theta[j] ~ group(mu, tau)`.

Each iteration runs the submodel; its choice `z` becomes one array-valued site `theta/z` indexed
by the loop variables, its arrays gain the loop axes in front (`u/y` of shape (J, K)), and
`theta[j]` is the iteration's return value. The log densities are checked against independent
hand computations with scipy, which catch a choice read from the wrong iteration, a wrong nested
address or a lost return value; simulate and log_density must agree with each other; and every
misuse is a located error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pplang.compiler import analysis, ir
from pplang.compiler.diagnostics import PplError
from scipy import stats

import pplang as pp

GROUP = """
model group(mu: real, tau: positive):
    z ~ normal(0.0, 1.0)
    return mu + tau * z
"""

HIER = GROUP + """
model hier(J: int, sigma: vector[J]):
    mu ~ normal(0.0, 5.0)
    tau ~ half_normal(5.0)
    for j in range(J):
        theta[j] ~ group(mu, tau)
        y[j] ~ normal(theta[j], sigma[j])
    return theta
"""

NESTED = """
model inner(m: real, K: int):
    for k in range(K):
        y[k] ~ normal(m, 1.0)
    return sum(y)

model outer(J: int, K: int):
    mu ~ normal(0.0, 1.0)
    for j in range(J):
        u[j] ~ inner(mu + j, K)
        t[j] ~ normal(u[j], 2.0)
"""

GRID = """
model cell(m: real):
    a ~ normal(m, 1.0)
    b ~ normal(a, 0.5)
    return a + b

model grid(R: int, C: int):
    for r in range(R):
        for c in range(C):
            z[r, c] ~ cell(1.0 * r + 0.1 * c)
    total ~ normal(sum(z), 1.0)
"""

CHAIN = """
model leaf(m: real):
    e ~ normal(m, 1.0)
    return 2.0 * e

model mid(m: real, K: int):
    c ~ leaf(m)
    for k in range(K):
        w[k] ~ leaf(c)
    return c + sum(w)

model top(J: int, K: int):
    for j in range(J):
        u[j] ~ mid(1.0 * j, K)
        obs[j] ~ normal(u[j], 1.0)
"""

WALKS = """
model walk(T: int, s: positive):
    x[0] ~ normal(0.0, 1.0)
    for t in range(1, T):
        x[t] ~ normal(x[t - 1], s)
    return x[T - 1]

model walks(N: int, T: int):
    s ~ half_normal(1.0)
    for n in range(N):
        w[n] ~ walk(T, s)
        end[n] ~ normal(w[n], 0.1)
"""

PICK = """
model pick(m: real):
    c ~ bernoulli(0.5)
    if c:
        b ~ normal(m, 1.0)
    else:
        b ~ normal(m, 3.0)
    return b

model picks(J: int):
    for j in range(J):
        u[j] ~ pick(1.0 * j)
        y[j] ~ normal(u[j], 0.5)
"""

SSM = """
model step(prev: real, s: positive):
    e ~ normal(0.0, s)
    return 0.9 * prev + e

model ssm(T: int):
    s ~ half_normal(1.0)
    x0 ~ normal(0.0, 1.0)
    x[0] = x0
    obs[0] ~ normal(x[0], 0.5)
    for t in range(1, T):
        x[t] ~ step(x[t - 1], s)
        obs[t] ~ normal(x[t], 0.5)
    return x
"""

SIGMA = [1.0, 0.5, 2.0, 1.5]
HIER_ARGS = {"J": 4, "sigma": SIGMA}
NUM = 4  # prior draws per model


def load(src: str, name: str) -> pp.Model:
    return pp.loads(src, file=f"<{name}>")[name]


def draws(m: pp.Model, args: dict) -> Iterator[tuple[dict[str, np.ndarray], Any, float]]:
    """Prior traces one by one: values (float64), return value and log density."""
    tr = m.simulate(args, seed=3, num_samples=NUM)
    for n in range(NUM):
        values = {a: np.asarray(v[n], np.float64) for a, v in tr.values.items()}
        yield values, np.asarray(tr.retval[n]) if tr.retval is not None else None, float(tr.log_density[n])


def norm(x: Any, m: Any, s: Any) -> float:
    return float(np.sum(stats.norm.logpdf(x, m, s)))


def assert_lp(actual: Any, expected: float) -> None:
    np.testing.assert_allclose(float(actual), expected, rtol=2e-5, atol=2e-4)


def check_agreement(m: pp.Model, args: dict, hand: Any) -> None:
    """simulate's log density, log_density of the same values and the hand density agree."""
    for values, retval, lp in draws(m, args):
        expected, ret = hand(values)
        assert_lp(lp, expected)
        assert_lp(m.log_density(values, args), expected)
        if ret is not None:
            np.testing.assert_allclose(retval, ret, rtol=1e-5, atol=1e-5)


def loop_modes(m: pp.Model) -> list[str]:
    return [s.mode for s in analysis.walk(m.fn.body) if isinstance(s, ir.Loop)]


# ---------------------------------------------------------------- (a) hierarchical model


def hand_hier(v: dict[str, np.ndarray]) -> tuple[float, np.ndarray]:
    mu, tau, z, y = v["mu"], v["tau"], v["theta/z"], v["y"]
    theta = mu + tau * z
    lp = norm(mu, 0.0, 5.0) + float(stats.halfnorm.logpdf(tau, scale=5.0)) + norm(z, 0.0, 1.0)
    return lp + norm(y, theta, np.asarray(SIGMA)), theta


def test_hierarchical_sites_have_the_loop_axis() -> None:
    m = load(HIER, "hier")
    assert list(m.sites) == ["mu", "tau", "theta/z", "y"]
    assert m.sites["theta/z"].shape == ("J",)
    assert loop_modes(m) == ["vector"]


def test_hierarchical_log_density_by_hand() -> None:
    check_agreement(load(HIER, "hier"), HIER_ARGS, hand_hier)


def test_hierarchical_iterations_draw_independently() -> None:
    values, _, _ = next(draws(load(HIER, "hier"), HIER_ARGS))
    assert len(set(np.round(values["theta/z"], 6))) == HIER_ARGS["J"]


def test_info_and_graph_show_the_sites(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pplang.cli import main

    path = tmp_path / "hier.ppl"
    path.write_text(HIER)
    assert main(["info", str(path)]) == 0
    assert "choice theta/z: normal, shape (J)" in capsys.readouterr().out
    assert main(["graph", str(path), "--model", "hier"]) == 0
    dot = capsys.readouterr().out
    assert '"theta/z" -> "theta"' in dot and '"theta" -> "y"' in dot


# ---------------------------------------------------------------- (b) callees with loops and calls


def hand_nested(v: dict[str, np.ndarray]) -> tuple[float, None]:
    mu, y, t = v["mu"], v["u/y"], v["t"]
    means = mu + np.arange(3)[:, None]
    return norm(mu, 0.0, 1.0) + norm(y, means, 1.0) + norm(t, y.sum(axis=1), 2.0), None


def test_callee_loop_inside_an_outer_loop() -> None:
    m = load(NESTED, "outer")
    assert m.sites["u/y"].shape == ("J", "K")
    check_agreement(m, {"J": 3, "K": 2}, hand_nested)


def hand_grid(v: dict[str, np.ndarray]) -> tuple[float, None]:
    a, b = v["z/a"], v["z/b"]
    r, c = np.meshgrid(np.arange(2), np.arange(3), indexing="ij")
    lp = norm(a, 1.0 * r + 0.1 * c, 1.0) + norm(b, a, 0.5)
    return lp + norm(v["total"], (a + b).sum(), 1.0), None


def test_call_in_nested_loops() -> None:
    m = load(GRID, "grid")
    assert m.sites["z/a"].shape == ("R", "C")
    check_agreement(m, {"R": 2, "C": 3}, hand_grid)


def hand_chain(v: dict[str, np.ndarray]) -> tuple[float, None]:
    c_e, w_e = v["u/c/e"], v["u/w/e"]
    c = 2.0 * c_e
    u = c + (2.0 * w_e).sum(axis=1)
    lp = norm(c_e, np.arange(3.0), 1.0) + norm(w_e, c[:, None], 1.0)
    return lp + norm(v["obs"], u, 1.0), None


def test_submodels_calling_submodels_inside_a_loop() -> None:
    m = load(CHAIN, "top")
    assert (m.sites["u/c/e"].shape, m.sites["u/w/e"].shape) == (("J",), ("J", "K"))
    check_agreement(m, {"J": 3, "K": 2}, hand_chain)


def hand_walks(v: dict[str, np.ndarray]) -> tuple[float, None]:
    s, x = v["s"], v["w/x"]
    lp = float(stats.halfnorm.logpdf(s)) + norm(x[:, 0], 0.0, 1.0) + norm(x[:, 1:], x[:, :-1], s)
    return lp + norm(v["end"], x[:, -1], 0.1), None


def test_callee_with_carried_state_in_a_vectorized_loop() -> None:
    m = load(WALKS, "walks")
    assert m.sites["w/x"].shape == ("N", "max(1, T)")  # x[0] and x[t] for t in range(1, T)
    assert loop_modes(m) == ["vector", "scan"]
    check_agreement(m, {"N": 3, "T": 4}, hand_walks)


def hand_pick(v: dict[str, np.ndarray]) -> tuple[float, None]:
    c, b = v["u/c"], v["u/b"]
    lp = len(c) * np.log(0.5) + norm(b, np.arange(3.0), np.where(c == 1, 1.0, 3.0))
    return lp + norm(v["y"], b, 0.5), None


def test_callee_drawing_one_choice_in_either_arm_of_a_traced_branch() -> None:
    m = load(PICK, "picks")
    assert list(m.sites) == ["u/c", "u/b", "y"]
    check_agreement(m, {"J": 3}, hand_pick)


# ---------------------------------------------------------------- (c) observing a callee's choice


def test_observed_callee_choice() -> None:
    m = load(HIER, "hier")
    z = [0.3, -1.2, 0.8, 0.0]
    y = [1.0, -0.5, 2.0, 0.4]
    tr = m.importance({**HIER_ARGS, "theta/z": z, "y": y}, seed=0)
    np.testing.assert_allclose(np.asarray(tr.values["theta/z"]), z)
    mu, tau = float(tr.values["mu"]), float(tr.values["tau"])
    theta = mu + tau * np.asarray(z)
    np.testing.assert_allclose(np.asarray(tr.retval), theta, rtol=1e-5)
    assert_lp(tr.log_weight, norm(z, 0.0, 1.0) + norm(y, theta, np.asarray(SIGMA)))


def test_observation_of_a_callee_choice_is_shape_checked() -> None:
    m = load(HIER, "hier")
    with pytest.raises(PplError) as info:
        m.importance({**HIER_ARGS, "theta/z": [0.1, 0.2]}, seed=0)
    d = info.value.diagnostics[0]
    assert "`theta/z`" in d.message and "(4,)" in d.message and d.span.line == 3, d.render()
    nested = load(NESTED, "outer")
    with pytest.raises(PplError) as info:
        nested.importance({"J": 3, "K": 2, "u/y": np.zeros((3, 3))}, seed=0)
    assert "(3, 2)" in info.value.diagnostics[0].message


# ---------------------------------------------------------------- (d) state-space model


def hand_ssm(v: dict[str, np.ndarray]) -> tuple[float, np.ndarray]:
    s, e, obs = v["s"], v["x/e"], v["obs"]
    x = [v["x0"]]
    for t in range(1, len(obs)):
        x.append(0.9 * x[-1] + e[t])
    x = np.asarray(x)
    lp = float(stats.halfnorm.logpdf(s)) + norm(v["x0"], 0.0, 1.0) + norm(e[1:], 0.0, s)
    return lp + norm(obs, x, 0.5), x


def test_state_space_submodel_in_a_scan() -> None:
    m = load(SSM, "ssm")
    assert m.sites["x/e"].shape == ("T",)
    assert loop_modes(m) == ["scan"]
    check_agreement(m, {"T": 5}, hand_ssm)


def test_state_space_with_observations() -> None:
    m = load(SSM, "ssm")
    obs = [0.1, 0.4, -0.2, 0.3, 0.9]
    tr = m.importance({"T": 5, "obs": obs}, seed=1)
    v = {a: np.asarray(x, np.float64) for a, x in tr.values.items()}
    lp, x = hand_ssm(v)
    np.testing.assert_allclose(np.asarray(tr.retval), x, rtol=1e-5, atol=1e-6)
    assert_lp(tr.log_density, lp)
    assert_lp(tr.log_weight, norm(obs, x, 0.5))


# ---------------------------------------------------------------- (e) located errors


def raise_diag(src: str) -> PplError:
    with pytest.raises(PplError) as info:
        pp.loads(src, file="t.ppl")
    return info.value


@pytest.mark.parametrize("body,line,col,message", [
    ("    for j in range(J):\n        theta[0] ~ group(0.0, 1.0)\n", 6, 15,
     "an array piece must be written at its loop variable plus a constant"),
    ("    for j in range(J):\n        theta ~ group(0.0, 1.0)\n", 6, 9, "a submodel call inside a loop needs an index"),
    ("    for j in range(J):\n        theta[j] ~ group(0.0, 1.0) via reparam\n", 6, 9,
     "`via reparam` cannot apply to a submodel call"),
    ("    for j in range(J):\n        theta[j, 0] ~ group(0.0, 1.0)\n", 6, 9,
     "a submodel call's target takes exactly 1 index(es)"),
    ("    theta[0] ~ group(0.0, 1.0)\n", 5, 5, "outside loops, a submodel call's target must be a plain name"),
    ("    x[0] ~ normal(0.0, 1.0)\n    for t in range(1, J):\n        x[t] ~ group(x[t - 1], 1.0)\n", 7, 9,
     "`x` mixes random choices and assignments"),
], ids=["not-the-loop-variable", "plain-name", "via", "trailing-constant", "indexed-outside-loops", "mixed"])
def test_located_errors(body: str, line: int, col: int, message: str) -> None:
    err = raise_diag(GROUP.lstrip() + "model m(J: int):\n" + body)
    d = err.diagnostics[0]
    assert (d.span.line, d.span.col) == (line, col), d.render()
    assert message in d.message and d.hint, d.render()


def test_param_in_a_submodel_called_in_a_loop() -> None:
    src = "model g():\n    param m: real = 0.0\n    z ~ normal(m, 1.0)\nmodel h(J: int):\n    for j in range(J):\n" \
          "        a[j] ~ g()\n"
    d = raise_diag(src).diagnostics[0]
    assert d.span.line == 2 and "cannot declare a `param`" in d.message, d.render()


def test_row_read_inside_the_loop_building_it() -> None:
    """`y[i]` inside `for k` that writes `y[i, k]` would read an unfinished row."""
    src = "model m(I: int, K: int):\n    for i in range(I):\n        for k in range(K):\n" \
          "            y[i, k] ~ normal(0.0, 1.0)\n            q[i, k] = sum(y[i])\n"
    d = raise_diag(src).diagnostics[0]
    assert d.span.line == 5 and "read as a whole" in d.message and "y[i, k]" in d.hint, d.render()


# ---------------------------------------------------------------- the documented examples


def doc_snippets() -> list[str]:
    """The code blocks of the section "Submodels inside loops" of docs/language.md."""
    text = (Path(__file__).parents[2] / "docs" / "language.md").read_text()
    section = text.split("### Submodels inside loops", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```\n(.*?)```", section, re.S)


def test_documented_examples() -> None:
    hier_src, ssm_src = doc_snippets()
    hier = load(hier_src, "hier")
    assert hier.sites["theta/z"].shape == ("J",)
    check_agreement(hier, HIER_ARGS, hand_hier)
    ssm = load(ssm_src, "ssm")
    assert loop_modes(ssm) == ["scan"]
    check_agreement(ssm, {"T": 5}, hand_ssm)
