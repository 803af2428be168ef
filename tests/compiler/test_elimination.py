"""Discrete choices that interact are summed out by variable elimination: the marginal log density
equals brute-force enumeration (every assignment of the discrete choices scored by the model's own
log density, with the choices given as values) on random programs with choices drawn from one
another, read in loops, in branches and by per-iteration choices; on Bayesian networks it equals
the textbook answer and a hand-written forward pass; the tables stay within a size budget, and
what cannot be summed out is a located error with a hint."""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from pplang.compiler.transforms import marginalize as transform
from scipy import special

import pplang as pp


def brute_force(model: pp.Model, data: dict, supports: dict[str, list], values: dict | None = None) -> float:
    """log sum over every assignment of the choices in `supports` (address -> the values of each
    element, with the element count) of exp(the model's log density with them given)."""
    names = list(supports)
    rows = list(itertools.product(*(itertools.product(vals, repeat=n) for vals, n in supports.values())))
    batch = {}
    for k, a in enumerate(names):
        column = np.array([row[k] for row in rows])
        batch[a] = column[:, 0] if model.sites[a].shape == () else column
    density = model.log_density_fn(data)
    fixed = {a: jnp.asarray(v) for a, v in (values or {}).items()}
    lps = jax.vmap(lambda b: density({**fixed, **b}))({a: jnp.asarray(v) for a, v in batch.items()})
    return float(special.logsumexp(np.asarray(lps, np.float64)))


# ---------------------------------------------------------------- random programs


@st.composite
def programs(draw: st.DrawFn) -> tuple[str, dict, dict[str, list]]:
    """A model with 2 to 4 discrete choices at the top level, each maybe drawn from an earlier one,
    observations that read one or two of them (at the top level, in a loop, in the arms of an `if`
    on one), and maybe one choice per iteration drawn from one of them; its data; the supports."""
    n = draw(st.integers(2, 4))
    kinds = [draw(st.sampled_from(["bernoulli", "categorical", "binomial"])) for _ in range(n)]
    lines, supports = [], {}

    def cond(j: int) -> str:  # a condition on choice j
        return f"c{j}" if kinds[j] == "bernoulli" else f"c{j} == 1"

    def real(j: int) -> str:
        return f"to_real(c{j})"

    for i, kind in enumerate(kinds):
        parent = draw(st.sampled_from([None, *range(i)]))
        p, q = draw(st.floats(0.1, 0.9)), draw(st.floats(0.1, 0.9))
        prob = f"{p:.3f}" if parent is None else f"where({cond(parent)}, {p:.3f}, {q:.3f})"
        if kind == "bernoulli":
            lines.append(f"    c{i} ~ bernoulli({prob})")
            supports[f"c{i}"] = ([False, True], 1)
        elif kind == "binomial":
            lines.append(f"    c{i} ~ binomial(2, {prob})")
            supports[f"c{i}"] = ([0, 1, 2], 1)
        else:
            w = np.round(draw(st.lists(st.floats(0.1, 1.0), min_size=3, max_size=3)), 3).tolist()
            probs = f"{w}" if parent is None else f"where({cond(parent)}, {w}, {w[::-1]})"
            lines.append(f"    c{i} ~ categorical({probs})")
            supports[f"c{i}"] = ([0, 1, 2], 1)
    data: dict = {}
    pick = st.lists(st.integers(0, n - 1), min_size=1, max_size=2, unique=True)
    mean = " + ".join(f"{draw(st.floats(-2.0, 2.0)):.2f} * {real(j)}" for j in draw(pick))
    lines.append(f"    y ~ normal({mean}, 1.0)")
    data["y"] = draw(st.floats(-3.0, 3.0))
    size = draw(st.integers(1, 3))
    data["N"] = size
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    if draw(st.booleans()):
        mean = " + ".join(f"{real(j)}" for j in draw(pick))
        lines += ["    for i in range(N):", f"        x[i] ~ normal({mean} - 1.0, 1.0)"]
        data["x"] = rng.normal(0.0, 2.0, size)
    if draw(st.booleans()):
        j = draw(st.integers(0, n - 1))
        lines += ["    for i in range(N):", f"        z[i] ~ bernoulli(where({cond(j)}, 0.8, 0.3))",
                  f"        u[i] ~ normal(where(z[i], 1.5, -1.5) + 0.5 * {real(n - 1)}, 1.0)"]
        data["u"] = rng.normal(0.0, 2.0, size)
        supports["z"] = ([False, True], size)
    if draw(st.booleans()):
        j = draw(st.integers(0, n - 1))
        lines += [f"    if {cond(j)}:", f"        w ~ normal({real(0)}, 1.0)", "        m = 1.0", "    else:",
                  "        w ~ normal(-1.0, 2.0)", "        factor(-0.5)", f"        m = {real(n - 1)} - 1.0",
                  "    v ~ normal(m, 1.0)"]
        data["w"], data["v"] = draw(st.floats(-2.0, 2.0)), draw(st.floats(-2.0, 2.0))
    return "model m(N: int):\n" + "\n".join(lines) + "\n", data, supports


@given(programs())
@settings(max_examples=12, deadline=None)
def test_random_programs_sum_to_brute_force(program: tuple[str, dict, dict]) -> None:
    src, data, supports = program
    model = pp.loads(src, file="random.ppl")["m"]
    observed = [a for a in data if a != "N"]
    marginal = model.marginal(observed)
    assert set(marginal.marginalized) == set(supports), src
    got = float(marginal.log_density({}, data))
    assert got == pytest.approx(brute_force(model, data, supports), rel=1e-4, abs=1e-4), src


# ---------------------------------------------------------------- Bayesian networks


SPRINKLER = """
model sprinkler():
    prior ~ uniform(0.0, 1.0)
    rain ~ bernoulli(prior)
    sprinkler ~ bernoulli(where(rain, 0.01, 0.4))
    wet ~ bernoulli(where(sprinkler, where(rain, 0.99, 0.9), where(rain, 0.8, 0.0)))
"""


def test_the_sprinkler_network_gives_the_textbook_answer() -> None:
    """P(grass wet) = 0.44838 and P(rain | grass wet) = 0.35770 with P(rain) = 0.2 (the sprinkler
    network of Russell and Norvig's textbook; a uniform prior on P(rain) has density 1)."""
    model = pp.loads(SPRINKLER, file="sprinkler.ppl")["sprinkler"]
    marginal = model.marginal(["wet"])
    assert marginal.marginalized == {"rain": "elimination", "sprinkler": "elimination"}
    data = {"wet": True}
    assert float(marginal.log_density({"prior": 0.2}, data)) == pytest.approx(np.log(0.44838), abs=1e-5)
    (name,) = [n for n in marginal.computed_names if n.startswith("p(")]  # of the choice eliminated last
    assert {"rain", "sprinkler", "map(rain)", "map(sprinkler)"} <= set(marginal.computed_names)
    p = marginal.computed({"prior": np.array([0.2])}, data)[name]
    exact = {"p(rain)": 0.16038 / 0.44838, "p(sprinkler)": 0.28880 / 0.44838}[name]  # P(.. = true | wet)
    assert float(np.asarray(p).reshape(-1)[1]) == pytest.approx(exact, abs=1e-5)


STUDENT = """
model student(N: int):
    difficulty ~ bernoulli(0.4)
    intelligence ~ bernoulli(0.3)
    grade ~ categorical(where(intelligence, where(difficulty, [0.5, 0.3, 0.2], [0.9, 0.08, 0.02]),
                                            where(difficulty, [0.05, 0.25, 0.7], [0.3, 0.4, 0.3])))
    sat ~ bernoulli(where(intelligence, 0.8, 0.05))
    letter ~ bernoulli([0.9, 0.6, 0.01][grade])
    for i in range(N):
        score[i] ~ normal(where(intelligence, 1.0, 0.0) + 0.3 * to_real(grade), 1.0)
"""


def test_the_student_network_sums_to_brute_force() -> None:
    model = pp.loads(STUDENT, file="student.ppl")["student"]
    data = {"N": 2, "letter": False, "score": np.array([0.4, 1.3])}
    marginal = model.marginal(["letter", "score"])
    assert set(marginal.marginalized.values()) == {"elimination"} and len(marginal.marginalized) == 4
    supports = {"difficulty": ([False, True], 1), "intelligence": ([False, True], 1), "grade": ([0, 1, 2], 1),
                "sat": ([False, True], 1)}
    assert float(marginal.log_density({}, data)) == pytest.approx(brute_force(model, data, supports), rel=1e-5)


def long_chain(n: int) -> str:
    lines = ["model chain():", "    s0 ~ bernoulli(0.5)", "    y0 ~ normal(where(s0, 1.0, -1.0), 1.0)"]
    for i in range(1, n):
        lines += [f"    s{i} ~ bernoulli(where(s{i - 1}, 0.9, 0.2))",
                  f"    y{i} ~ normal(where(s{i}, 1.0, -1.0), 1.0)"]
    return "\n".join(lines) + "\n"


def test_a_min_fill_order_keeps_the_tables_small() -> None:
    """Twenty binary choices in a row (2^20 assignments) with tables of two choices at most: the
    min-fill order eliminates from the ends, and the answer is the forward algorithm's."""
    n = 20
    model = pp.loads(long_chain(n), file="chain.ppl")["chain"]
    ys = np.random.default_rng(1).normal(0.0, 1.5, n)
    data = {f"y{i}": ys[i] for i in range(n)}
    marginal = transform.marginalize(model.fn, [f"s{i}" for i in range(n)], list(data), model.source,
                                       budget=4)
    assert set(marginal.patterns.values()) == {"elimination"}
    got = float(model.marginal(list(data)).log_density({}, data))
    emit = np.stack([-0.5 * (ys + 1.0) ** 2, -0.5 * (ys - 1.0) ** 2], axis=1) - 0.5 * np.log(2 * np.pi)
    log_a = np.log(np.array([[0.8, 0.2], [0.1, 0.9]]))  # [previous, next]
    alpha = np.log([0.5, 0.5]) + emit[0]
    for t in range(1, n):
        alpha = special.logsumexp(alpha[:, None] + log_a, axis=0) + emit[t]
    assert got == pytest.approx(float(special.logsumexp(alpha)), rel=1e-5)


def test_the_hub_of_a_star_is_summed_out_last() -> None:
    """Eight choices drawn from one hub: summed out leaf by leaf, every table has two choices at
    most; the hub first would make a table over all eight leaves (256 entries)."""
    lines = ["model star():", "    hub ~ categorical([0.3, 0.5, 0.2])"]
    for k in range(8):
        lines += [f"    leaf{k} ~ bernoulli([0.2, 0.5, 0.9][hub])",
                  f"    y{k} ~ normal(where(leaf{k}, 1.0, -1.0), 1.0)"]
    model = pp.loads("\n".join(lines) + "\n", file="star.ppl")["star"]
    data = {f"y{k}": v for k, v in enumerate(np.random.default_rng(2).normal(0.0, 1.5, 8))}
    choices = ["hub", *(f"leaf{k}" for k in range(8))]
    marginal = transform.marginalize(model.fn, choices, list(data), model.source, budget=6)
    assert set(marginal.patterns.values()) == {"elimination"}
    supports = {"hub": ([0, 1, 2], 1), **{f"leaf{k}": ([False, True], 1) for k in range(8)}}
    got = float(model.marginal(list(data)).log_density({}, data))
    assert got == pytest.approx(brute_force(model, data, supports), rel=1e-5)


# ---------------------------------------------------------------- nesting of patterns


NESTED = """
model nested(N: int):
    q ~ beta(2.0, 2.0)
    a ~ bernoulli(q)
    for i in range(N):
        z[i] ~ bernoulli(where(a, 0.9, 0.2))
        y[i] ~ normal(where(z[i], 2.0, -2.0), 1.0)
"""


def test_a_choice_read_by_a_mixture_is_summed_out_with_it() -> None:
    """Per-iteration choices drawn from a top-level one: each iteration's log-sum-exp given `a`,
    then the sum over `a` of their total."""
    model = pp.loads(NESTED, file="nested.ppl")["nested"]
    data = {"N": 3, "y": np.array([1.8, -2.5, 2.2])}
    marginal = model.marginal(["y"])
    assert marginal.marginalized == {"a": "single", "z": "mixture"}
    # what is recovered of `z` given `a` is not kept once `a` is summed out
    assert "p(a)" in marginal.computed_names and not [n for n in marginal.computed_names if "z" in n]
    supports = {"a": ([False, True], 1), "z": ([False, True], 3)}
    want = brute_force(model, data, supports, {"q": 0.3})
    assert float(marginal.log_density({"q": 0.3}, data)) == pytest.approx(want, rel=1e-5)


BRANCH = """
model branch(N: int):
    s ~ half_normal(1.0)
    k ~ categorical([0.2, 0.5, 0.3])
    if k == 2:
        w ~ normal(1.0, s)
        factor(-0.25)
        m = 2.0 * s
    else:
        w ~ normal(-1.0, 2.0)
        m = to_real(k)
    v ~ normal(m, 1.0)
    for i in range(N):
        if k == 0:
            y[i] ~ normal(2.0, 1.0)
        else:
            y[i] ~ normal(to_real(k), s)
"""


def test_branches_on_a_single_choice_sum_to_brute_force() -> None:
    """Both arms of an `if` on the choice count, each for the values that take it, and a value
    the arms compute is selected likewise; one choice alone keeps its pattern (`single`) and its
    probabilities."""
    model = pp.loads(BRANCH, file="branch.ppl")["branch"]
    data = {"N": 3, "w": 0.4, "v": 1.2, "y": np.array([1.1, 2.3, 0.2])}
    marginal = model.marginal(["w", "v", "y"])
    assert marginal.marginalized == {"k": "single"} and "p(k)" in marginal.computed_names
    want = brute_force(model, data, {"k": ([0, 1, 2], 1)}, {"s": 0.8})
    assert float(marginal.log_density({"s": 0.8}, data)) == pytest.approx(want, rel=1e-5)


MIXTURE_BRANCH = """
model m(N: int):
    s ~ half_normal(1.0)
    for i in range(N):
        z[i] ~ categorical([0.2, 0.5, 0.3])
        if z[i] == 1:
            y[i] ~ normal(1.0, s)
            m = 2.0
        else:
            y[i] ~ normal(-1.0, 2.0)
            m = to_real(z[i])
        x[i] ~ normal(m, 1.0)
"""

CHAIN_BRANCH = """
model m(T: int):
    s ~ half_normal(1.0)
    z[0] ~ bernoulli(0.5)
    y[0] ~ normal(where(z[0], 1.0, -1.0), 1.0)
    for t in range(1, T):
        z[t] ~ bernoulli(where(z[t - 1], 0.8, 0.3))
        if z[t]:
            y[t] ~ normal(1.0, s)
        else:
            y[t] ~ normal(-1.0, 0.5)
"""


@pytest.mark.parametrize(("src", "data", "support", "pattern"), [
    (MIXTURE_BRANCH, {"N": 3, "y": np.array([0.5, -1.0, 1.2]), "x": np.array([2.0, 0.1, 1.0])}, [0, 1, 2],
     "mixture"),
    (CHAIN_BRANCH, {"T": 4, "y": np.array([0.5, -1.0, 1.2, 0.3])}, [False, True], "chain"),
])
def test_branches_in_mixtures_and_chains_sum_to_brute_force(src: str, data: dict, support: list,
                                                            pattern: str) -> None:
    model = pp.loads(src, file="branch.ppl")["m"]
    marginal = model.marginal([a for a in data if a not in ("N", "T")])
    assert marginal.marginalized == {"z": pattern}
    n = len(data["y"])
    want = brute_force(model, data, {"z": (support, n)}, {"s": 0.7})
    assert float(marginal.log_density({"s": 0.7}, data)) == pytest.approx(want, rel=1e-5)


# ---------------------------------------------------------------- budget and bad input


ABC = """
model abc(K: int):
    a ~ categorical(ones(K) / K)
    b ~ categorical(ones(K) / K)
    c ~ categorical(ones(K) / K)
    y ~ normal(to_real(a * b + c), 1.0)
"""


def test_a_table_over_the_budget_is_a_located_error_when_the_data_gives_its_size() -> None:
    model = pp.loads(ABC, file="abc.ppl")["abc"]
    marginal = model.marginal(["y"])
    assert float(marginal.log_density({}, {"K": 3, "y": 2.0})) == pytest.approx(
        brute_force(model, {"K": 3, "y": 2.0}, {a: ([0, 1, 2], 1) for a in "abc"}), rel=1e-5)
    with pytest.raises(pp.PplError) as info:
        marginal.log_density({}, {"K": 120, "y": 2.0})
    text = str(info.value)
    assert "abc.ppl:5" in text and "a table over `a`, `b`, `c`" in text
    assert "1728000 entries, more than the budget of 1048576" in text and "marginalize=" in text


def test_the_budget_is_checked_when_the_model_is_compiled_where_sizes_are_numbers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    model = pp.loads(ABC.replace("(K: int)", "()").replace("ones(K) / K", "ones(4) / 4.0"), file="abc.ppl")["abc"]
    assert model.marginal(["y"]).marginalized  # 64 entries
    monkeypatch.setattr(transform, "MAX_FACTOR", 50)
    fresh = pp.loads(ABC.replace("(K: int)", "()").replace("ones(K) / K", "ones(4) / 4.0"), file="abc.ppl")["abc"]
    with pytest.raises(pp.PplError, match=r"needs a table over `a`, `b`, `c`: 64 entries, more than the budget "
                                          r"of 50") as info:
        fresh.marginal(["y"])
    assert "abc.ppl:5" in str(info.value) and "PPLANG_MAX_FACTOR_ENTRIES" in str(info.value)


@pytest.mark.parametrize(("src", "addresses", "line", "message"), [
    # infinite support
    ("model m():\n    r ~ normal(0.0, 1.0)\n    k ~ poisson(exp(r))\n    y ~ normal(to_real(k), 1.0)\n", ["k"], 3,
     "`k` \\(poisson\\) has no finite support to sum over"),
    # too many values
    ("model m():\n    k ~ binomial(10000000, 0.5)\n    y ~ normal(to_real(k), 1.0)\n", ["k"], 2,
     "summing out `k` needs a table over its values: 10000001 entries"),
    # a discrete choice left out depends on the summed-out ones
    ("model m():\n    a ~ bernoulli(0.5)\n    b ~ bernoulli(where(a, 0.9, 0.1))\n    c ~ bernoulli(where(b, 0.9, 0.1))"
     "\n    y ~ normal(where(a, 1.0, 0.0) + where(c, 1.0, 0.0), 1.0)\n", ["a", "b"], 4,
     "the discrete choice `c` depends on them"),
    # a chain that reads another summed-out choice
    ("model m(T: int):\n    a ~ bernoulli(0.5)\n    z[0] ~ bernoulli(0.5)\n    for t in range(1, T):\n"
     "        z[t] ~ bernoulli(where(z[t - 1], where(a, 0.9, 0.6), 0.2))\n        y[t] ~ normal(to_real(z[t]), 1.0)\n",
     ["a", "z"], 4, "cannot sum out both `z` and `a`"),
    # a binomial whose number of values depends on another summed-out choice
    ("model m():\n    a ~ bernoulli(0.5)\n    b ~ bernoulli(0.5)\n    k ~ binomial(where(a, 3, 2), 0.5)\n"
     "    y ~ normal(to_real(k) + where(b, 1.0, 0.0), 1.0)\n"
     "    x ~ normal(where(a, 1.0, 0.0) + where(b, 1.0, 0.0), 1.0)\n",
     ["a", "b", "k"], 4, "the number of values of `k` depends on another summed-out choice"),
])
def test_what_cannot_be_summed_out_is_a_located_error(src: str, addresses: list, line: int, message: str) -> None:
    model = pp.loads(src, file="bad.ppl")["m"]
    with pytest.raises(pp.PplError, match=message) as info:
        model.marginal(["y"], addresses)
    assert f"bad.ppl:{line}" in str(info.value) and "hint:" in str(info.value)


def test_an_observed_choice_of_a_network_is_not_summed_out() -> None:
    model = pp.loads(SPRINKLER, file="sprinkler.ppl")["sprinkler"]
    assert model.marginal(["wet", "rain"]).marginalized == {"sprinkler": "single"}
    with pytest.raises(pp.PplError, match="`rain` is observed in the data") as info:
        model.marginal(["wet", "rain"], ["rain", "sprinkler"])
    assert "sprinkler.ppl:4" in str(info.value)


def test_the_emitted_code_sums_one_choice_at_a_time(capsys: pytest.CaptureFixture, tmp_path) -> None:
    from pplang.cli import main

    path = tmp_path / "sprinkler.ppl"
    path.write_text(SPRINKLER)
    data = tmp_path / "data.json"
    data.write_text('{"wet": true}')
    assert main(["compile", str(path), "--model", "sprinkler", "--data", str(data), "--emit", "marginal"]) == 0
    out = capsys.readouterr().out
    assert "`rain` (elimination), `sprinkler` (elimination) summed out" in out
    assert out.count("jax.scipy.special.logsumexp(") == 2  # one table left after the first, then the total
    assert "_m0_sum_" in out and "'marginal:rain+sprinkler'" in out


def test_the_command_line_reports_a_table_over_the_budget(capsys: pytest.CaptureFixture, tmp_path) -> None:
    from pplang.cli import main

    (tmp_path / "abc.ppl").write_text(ABC.replace("    y ~ normal(to_real(a * b + c), 1.0)",
                                                  "    s ~ half_normal(1.0)\n    y ~ normal(to_real(a * b + c), s)"))
    (tmp_path / "abc.json").write_text('{"K": 150, "y": 2.0}')
    code = main(["sample", str(tmp_path / "abc.ppl"), "--data", str(tmp_path / "abc.json"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "abc.ppl:5" in err and "3375000 entries, more than the budget" in err
    assert "Traceback" not in err and "hint:" in err
