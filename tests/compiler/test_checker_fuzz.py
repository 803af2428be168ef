"""Property tests over the whole front-end, checker and code generation: mutants of valid programs
either compile or fail with a `PplError` located inside the file, and a compiled mutant either
simulates or fails with a `PplError`. No other exception may reach the user."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from pplang.compiler.diagnostics import PplError
from pplang.compiler.frontend import syntax as S

import pplang as pp

PROGRAMS = [
    """\
model coin(n: int):
    p ~ beta(1.0, 1.0)
    for i in range(n):
        flips[i] ~ bernoulli(p)
    return p
""",
    """\
model linreg(N: int, x: vector[N]):
    alpha ~ normal(0.0, 10.0)
    beta ~ normal(0.0, 10.0)
    sigma ~ half_normal(5.0)
    for i in range(N):
        mu[i] = alpha + beta * x[i]
        y[i] ~ normal(mu[i], sigma)
    return alpha
""",
    """\
model ar1(T: int):
    rho ~ uniform(-1.0, 1.0)
    x[0] ~ normal(0.0, 1.0)
    for t in range(1, T):
        x[t] ~ normal(rho * x[t - 1], 1.0)
""",
    """\
model mix(N: int):
    w ~ beta(2.0, 2.0)
    m1 ~ normal(-2.0, 1.0)
    m2 ~ normal(2.0, 1.0)
    for i in range(N):
        z[i] ~ bernoulli(w) via enum
        if z[i] == 1:
            y[i] ~ normal(m1, 1.0)
        else:
            y[i] ~ normal(m2, 1.0)
""",
    """\
model grid(R: int, C: int):
    m ~ normal(0.0, 1.0)
    for r in range(R):
        row[r] ~ normal(m, 1.0)
        for c in range(C):
            cell[r, c] ~ normal(row[r], 1.0)
""",
    """\
model sub(s: real):
    a ~ normal(0.0, s)
    return a * 2.0

model top():
    u ~ sub(3.0)
    v ~ normal(u, 1.0)
    factor(-0.5 * v * v)
""",
    """\
model pair(K: int):
    mu ~ normal(0.0, 1.0)
    theta ~ normal(mu, 1.0)
    return theta

guide q(K: int):
    param m: real = 0.0
    param s: positive = 1.0
    mu ~ normal(m, s)
    theta ~ normal(mu, s) via reparam
""",
    """\
model hmm(T: int, K: int, A: matrix[K, K], pi0: simplex[K], mus: vector[K]):
    z[0] ~ categorical(pi0)
    y[0] ~ normal(mus[z[0]], 1.0)
    for t in range(1, T):
        z[t] ~ categorical(A[z[t - 1]])
        y[t] ~ normal(mus[z[t]], 1.0)
""",
    """\
model misc(N: int, x: vector[N]):
    v = [1.0, 2.0, 3.0]
    s ~ half_cauchy(1.0)
    k ~ poisson(2.0)
    m = mean(x[1:N]) + size(x) + x.shape[0]
    if N > 2:
        c = exp(v[0]) * s
    elif N > 1:
        c = 1.0
    else:
        c = 2.0
    w ~ normal(c + m, sqrt(s + 1.0))
    return w
""",
    """\
model branch(n: int):
    a ~ normal(0.0, 1.0)
    c = 0.0
    if a > 0.0:
        c = 1.0
    d ~ normal(c, 1.0)
    for i in range(n):
        if a < 0.0:
            e[i] ~ normal(0.0, 1.0)
        else:
            e[i] ~ normal(1.0, 1.0)
""",
]
SIMULATED = [PROGRAMS[k] for k in (0, 2, 5, 6, 9)]  # the quicker ones to compile

FILE = "fuzz.ppl"
DISTS = ["normal", "beta", "bernoulli", "poisson", "half_normal", "categorical", "dirichlet", "gamma",
         "uniform", "normall", "bernouli", "multivariate_normal", "lkj_cholesky", "flat", "binomial"]
WORDS = ["i", "j", "t", "N", "x", "y", "mu", "sigma", "p", "z", "exp", "log", "sum", "range", "size", "sub",
         "top", "coin", "q", "None", "lambda", "jnp", "D", "rt", "_x", "model", "guide", "param", "for",
         "if", "else", "return", "via", "enum", "reparam", "true", "factor", "in", "and", "not"]
NUMBERS = ["0", "1", "2", "3", "-1", "0.5", "1.0", "2.5", "1e-3", "10"]
INDICES = ["0", "1", "i", "j", "t", "i + 1", "t - 1", "i, 0", "0, i", "1.5", "N", "i, j, 0", ":", "1:N", "z"]
TOKENS = ["(", ")", "[", "]", ":", ",", "~", "=", "+", "-", "*", "@", "**", "/", ".", "via", "for", "if",
          "else", "return", "param", "factor", "\n", "    ", "\t", "1", "x", "normal(0.0, 1.0)", "#", "'",
          "$", "==", "<", "not", "and", "[0]", "(1.0)"]
CHARS = list("()[]:,~=+-*/@.#'\"$ \t\nxi0159_\\;{}") + ["\u03c8", "\ufeff", "\x00"]

TOKEN_RE = re.compile(r"[^\W\d]\w*|\d+\.\d*(?:[eE][-+]?\d+)?|\d+|\*\*|//|[<>=!]=|\n|[ \t]+|.", re.S)


def tokens(text: str) -> list[str]:
    return TOKEN_RE.findall(text)


def is_name(tok: str) -> bool:
    return bool(re.fullmatch(r"[^\W\d]\w*", tok))


def is_number(tok: str) -> bool:
    return bool(re.fullmatch(r"\d+(\.\d*)?([eE][-+]?\d+)?", tok))


def near_miss(name: str, k: int) -> str:
    """A typo of `name`: a dropped, doubled or swapped character."""
    if len(name) < 2:
        return name + "x"
    pos = k % len(name)
    kind = (k // len(name)) % 3
    if kind == 0:
        return name[:pos] + name[pos + 1:] or "x"
    if kind == 1:
        return name[:pos] + name[pos] + name[pos:]
    pos = min(pos, len(name) - 2)
    return name[:pos] + name[pos + 1] + name[pos] + name[pos + 2:]


def pick(items: list[Any], k: int) -> Any:
    return items[k % len(items)]


def positions(toks: list[str], pred: Any) -> list[int]:
    return [i for i, t in enumerate(toks) if pred(i, t)]


def matching(toks: list[str], start: int) -> int | None:
    """Index of the bracket closing the one at `start`."""
    depth = 0
    for k in range(start, len(toks)):
        if toks[k] in "([":
            depth += 1
        elif toks[k] in ")]":
            depth -= 1
            if depth == 0:
                return k
    return None


def call_args(toks: list[str], open_at: int) -> list[tuple[int, int]]:
    """Token ranges [a, b) of the arguments of the call whose `(` is at `open_at`."""
    close = matching(toks, open_at)
    if close is None:
        return []
    out, depth, begin = [], 0, open_at + 1
    for k in range(open_at + 1, close):
        if toks[k] in "([":
            depth += 1
        elif toks[k] in ")]":
            depth -= 1
        elif toks[k] == "," and depth == 0:
            out.append((begin, k))
            begin = k + 1
    if begin < close:
        out.append((begin, close))
    return out


def mutate(text: str, kind: int, a: int, b: int) -> str:
    """One mutation of `text`, chosen by `kind`, with `a` and `b` picking where and what."""
    toks = tokens(text)
    lines = text.split("\n")
    kind %= 14
    if kind == 0:  # an identifier becomes another identifier of the program or a common word
        names = positions(toks, lambda i, t: is_name(t))
        pool = sorted({t for t in toks if is_name(t)}) + WORDS
        if names:
            toks[pick(names, a)] = pick(pool, b)
    elif kind == 1:  # an identifier gets a typo
        names = positions(toks, lambda i, t: is_name(t))
        if names:
            i = pick(names, a)
            toks[i] = near_miss(toks[i], b)
    elif kind == 2:  # a number becomes a name or another number
        nums = positions(toks, lambda i, t: is_number(t))
        if nums:
            toks[pick(nums, a)] = pick(WORDS + NUMBERS, b)
    elif kind == 3:  # a distribution or callee is swapped for another
        calls = positions(toks, lambda i, t: is_name(t) and i + 1 < len(toks) and toks[i + 1] == "(")
        if calls:
            toks[pick(calls, a)] = pick(DISTS + ["sub", "exp", "mean", "q", "coin", "hmm"], b)
    elif kind in (4, 5):  # an argument of a call is dropped or duplicated
        calls = positions(toks, lambda i, t: t == "(" and i > 0 and is_name(toks[i - 1]))
        if calls:
            open_at = pick(calls, a)
            args = call_args(toks, open_at)
            if args:
                lo, hi = pick(args, b)
                if kind == 4:
                    end = hi + 1 if hi < len(toks) and toks[hi] == "," else hi
                    del toks[lo:end]
                else:
                    toks[hi:hi] = [", "] + toks[lo:hi]
    elif kind == 6:  # the contents of an index change
        opens = positions(toks, lambda i, t: t == "[" and i > 0 and (is_name(toks[i - 1]) or toks[i - 1] == "]"))
        if opens:
            open_at = pick(opens, a)
            close = matching(toks, open_at)
            if close is not None:
                toks[open_at + 1:close] = [pick(INDICES, b)]
    elif kind == 7:  # a token is inserted
        toks.insert(a % (len(toks) + 1), pick(TOKENS, b))
    elif kind == 8:  # a token is deleted
        if toks:
            del toks[a % len(toks)]
    elif kind == 9:  # a character is inserted
        pos = a % (len(text) + 1)
        return text[:pos] + pick(CHARS, b) + text[pos:]
    elif kind == 10:  # a character is deleted
        if text:
            pos = a % len(text)
            return text[:pos] + text[pos + 1:]
    elif kind == 11:  # two lines are swapped
        i, j = a % len(lines), b % len(lines)
        lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines)
    elif kind == 12:  # a line is indented differently
        i = a % len(lines)
        body = lines[i].lstrip(" \t")
        lines[i] = pick(["", " ", "  ", "    ", "        ", "\t", "            ", "     "], b) + body
        return "\n".join(lines)
    else:  # a line is duplicated or deleted
        i = a % len(lines)
        if b % 2:
            lines.insert(i, lines[i])
        else:
            del lines[i]
        return "\n".join(lines)
    return "".join(toks)


ints = st.integers(0, 10_000)
mutation = st.tuples(st.integers(0, 13), ints, ints)
# mutations that keep the token structure, so that more mutants compile and reach simulation
STRUCTURAL = [0, 2, 3, 4, 5, 6, 11, 13]
structural_mutation = st.tuples(st.sampled_from(STRUCTURAL), ints, ints)


@st.composite
def mutants(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(PROGRAMS))
    for m in draw(st.lists(mutation, min_size=1, max_size=3)):
        text = mutate(text, *m)
    return text


def assert_located(err: PplError, text: str) -> None:
    """The first diagnostic is on a line of the file, and its rendering shows that line."""
    d = err.diagnostics[0]
    nlines = max(1, len(text.splitlines()))
    assert 1 <= d.span.line <= nlines, f"line {d.span.line} outside the file ({nlines} lines):\n{err.render()}"
    assert d.span.col >= 1, err.render()
    rendered = d.render()
    assert rendered.startswith(f"{d.span.file}:{d.span.line}:{d.span.col}: error: ")
    if text.splitlines():
        assert rendered.splitlines()[1] == "    " + text.splitlines()[d.span.line - 1]


def load_or_error(text: str) -> pp.Module | None:
    try:
        mod = pp.loads(text, file=FILE)
    except PplError as err:
        assert_located(err, text)
        event("rejected")
        return None
    except Exception as e:  # noqa: BLE001 - any other exception is the failure this test looks for
        pytest.fail(f"raw {type(e).__module__}.{type(e).__name__}: {e}\n--- program ---\n{text}")
    event("compiled")
    return mod


# ---------------------------------------------------------------- data for simulation

SMALL = 3


def size_of(e: S.Expr, ints_: dict[str, int]) -> int | None:
    if isinstance(e, S.Num) and isinstance(e.value, int):
        return e.value
    if isinstance(e, S.Name) and e.id in ints_:
        return ints_[e.id]
    return None


def value_for(t: S.TypeExpr | None, ints_: dict[str, int]) -> Any:
    """Small valid data for a declared type, or None when the mutant needs other data."""
    if t is None:
        return None
    dims = [size_of(d, ints_) for d in t.dims]
    if any(d is None or d < 0 or d > 10 for d in dims):
        return None
    scalars = {"int": SMALL, "bool": True, "real": 0.5, "positive": 1.0, "unit": 0.5}
    if not dims:
        if t.base in scalars:
            return scalars[t.base]
        return None
    shape = tuple(dims)
    last = max(1, shape[-1])
    if t.base in ("int", "bool"):
        return np.ones(shape, int).tolist()
    if t.base in ("ordered", "positive_ordered"):
        return (np.arange(last) + 1.0).tolist()
    if t.base == "cholesky_corr":
        return np.eye(last).tolist()
    if t.base in ("real", "vector", "simplex", "matrix", "positive", "unit"):
        return np.full(shape, 1.0 / last).tolist()
    return None


def data_for(decl: S.Decl) -> dict[str, Any] | None:
    ints_: dict[str, int] = {}
    data: dict[str, Any] = {}
    for a in decl.args:
        v = value_for(a.type, ints_)
        if v is None:
            return None
        if a.type is not None and a.type.base == "int" and not a.type.dims:
            ints_[a.name] = v
        data[a.name] = v
    return data


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("text", PROGRAMS, ids=[p.split("(")[0].split()[1] for p in PROGRAMS])
def test_seed_programs_are_valid(text: str) -> None:
    """The mutants start from valid programs; each compiles and (for models) has data to run."""
    mod = pp.loads(text, file=FILE)
    for d in mod.compiled.program.decls:
        assert data_for(d) is not None, d.name


def test_mutations_change_programs() -> None:
    """Each kind of mutation does something to some program (else the fuzzing is weaker than it reads)."""
    for kind in range(14):
        assert any(mutate(p, kind, a, 7) != p for p in PROGRAMS for a in range(20)), kind


@settings(deadline=None, derandomize=True, max_examples=1500,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(mutants())
def test_mutants_compile_or_fail_with_a_located_ppl_error(text: str) -> None:
    load_or_error(text)


@settings(deadline=None, derandomize=True, max_examples=40,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.sampled_from(SIMULATED), st.lists(structural_mutation, min_size=1, max_size=2))
def test_compiled_mutants_simulate_or_fail_with_a_ppl_error(text: str, muts: list) -> None:
    for m in muts:
        text = mutate(text, *m)
    mod = load_or_error(text)
    assume(mod is not None)  # spend the (slow) simulations on mutants that compile
    for decl in mod.compiled.program.decls:
        if decl.kind != "model":
            continue
        data = data_for(decl)
        if data is None:
            continue
        try:
            tr = mod[decl.name].simulate(data, seed=0)
        except PplError as err:
            assert_located(err, text)
            event("simulation rejected")
            continue
        except Exception as e:  # noqa: BLE001 - any other exception is the failure this test looks for
            pytest.fail(f"raw {type(e).__module__}.{type(e).__name__} simulating {decl.name}: "
                        f"{str(e)[:300]}\n--- program ---\n{text}")
        assert set(tr.values) == set(mod[decl.name].sites)
        event("simulated")
        break  # one model per mutant keeps the JAX compilation time bounded
