"""Variational inference: pplang's generated ELBO gradient and optimizer step against hand-written JAX
and NumPyro SVI, in one process.

    python benchmarks/vi_bench.py [--quick | --smoke] [--out FILE] [--json FILE]

The model is `models/logreg.ppl`, Bayesian logistic regression with N = 5000 observations of D = 20
features (synthetic, seed 0), and a mean-field normal guide over the intercept and the weights:
`logreg_mf` written out in the same file, or pplang's automatic `mean_field` guide. Rows:

* `grad`: one ELBO estimate (one particle, reparameterized) and its gradient with respect to the
  guide's unconstrained parameters: `jax.jit(Problem.build(model, guide, "elbo", data).value_and_grad)`
  against the same estimator written by hand (`jax.value_and_grad`), with the Bernoulli
  log-likelihood `y * eta - log(1 + e^eta)` in the fastest exact form we know (the form pplang's
  stdlib uses), and once more against a baseline that uses `jax.nn.softplus` (`grad_softplus`);
* `step`: the gradient plus an optax Adam update, what `pp.fit` does per step, against the same by
  hand and against NumPyro's `jax.jit(svi.update)` (`Trace_ELBO`, a hand-written guide or `AutoNormal`);
* `loop`: `steps` optimizer steps in one compiled call: the chunk runner `pp.fit` compiles
  (a `lax.scan` and one finiteness test of its result) against a hand-written `lax.scan` and against the `lax.scan`
  over `svi.update` that NumPyro's `svi.run(..., progress_bar=False)` runs.

Each row uses the harness of run.py (compile through the AOT API with the persistent cache off,
warm calls interleaved round by round, medians, their ratio). A full run writes its section of
`benchmarks/results.md` (from its heading to the next top-level heading), keeping the rest.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.stats import norm

HERE = Path(__file__).resolve().parent
MODEL_PATH = HERE / "models" / "logreg.ppl"
HEADING = "# Variational inference: pplang vs hand-written JAX vs NumPyro"
LEARNING_RATE = 0.01
PRIOR_B_SCALE = 5.0  # b ~ normal(0, 5), w[d] ~ normal(0, 1) in logreg.ppl


@dataclass(frozen=True)
class Names:
    """The guide's parameter addresses: the written guide's, or the automatic guide's."""

    b_loc: str
    b_scale: str
    w_loc: str
    w_scale: str


WRITTEN = Names("b_loc", "b_scale", "w_loc", "w_scale")
AUTO = Names("b_auto_loc", "b_auto_scale", "w_auto_loc", "w_auto_scale")


# ---------------------------------------------------------------- data


def make_data(n: int, d: int, seed: int = 0) -> dict:
    """Features N(0, 1), weights N(0, 1), intercept 0.5, y[i] ~ bernoulli(sigmoid(b + X[i] . w))."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d)
    y = rng.random(n) < 1.0 / (1.0 + np.exp(-(x @ w + 0.5)))
    return {"N": n, "D": d, "X": x, "y": y}


# ---------------------------------------------------------------- hand-written JAX


@dataclass
class Hand:
    """The hand-written side: the model's log joint, the guide's log density and the ELBO estimator."""

    log_joint: Callable[[Any, Any], Any]  # (b, w) -> log p(b, w, y)
    log_q: Callable[[dict, Any, Any], Any]  # (unconstrained params, named as in WRITTEN, b, w) -> log q(b, w)
    value_and_grad: Callable[[dict, Any], tuple]  # ({"p": {}, "q": params}, key) -> (elbo, grads)


def hand(data: dict, names: Names = WRITTEN, library_softplus: bool = False, b_scale: float = PRIOR_B_SCALE) -> Hand:
    """The ELBO of the mean-field normal guide, by hand: b = loc + exp(u) * eps (pplang's `positive`
    constraint is exp), one split key for the two draws, log q by `norm.logpdf` of the draw (as pplang
    and NumPyro score it, which keeps the score term of the scales' gradient). The Bernoulli
    log-likelihood is y * eta - log(1 + e^eta), the log term written max(eta, 0) + log1p(e^-|eta|)
    (the fastest exact form we know, as NumPyro writes it; its two selects give the gradient
    sigmoid(eta) at eta = 0 too), or with `library_softplus` as jax.nn.softplus(eta)."""
    x, d = jnp.asarray(data["X"]), data["D"]
    y = jnp.asarray(data["y"], jnp.float32)

    def log_lik(eta: Any) -> Any:
        if library_softplus:
            return jnp.sum(y * eta - jax.nn.softplus(eta))
        positive = eta >= 0
        return jnp.sum(y * eta - jnp.where(positive, eta, 0.0) - jnp.log1p(jnp.exp(jnp.where(positive, -eta, eta))))

    def log_joint(b: Any, w: Any) -> Any:
        return log_lik(x @ w + b) + norm.logpdf(b, 0.0, b_scale) + jnp.sum(norm.logpdf(w, 0.0, 1.0))

    def log_q(q: dict, b: Any, w: Any) -> Any:
        return (norm.logpdf(b, q["b_loc"], jnp.exp(q["b_scale"]))
                + jnp.sum(norm.logpdf(w, q["w_loc"], jnp.exp(q["w_scale"]))))

    def elbo(params: dict, key: Any) -> Any:
        q = {field: params["q"][getattr(names, field)] for field in ("b_loc", "b_scale", "w_loc", "w_scale")}
        kb, kw = jax.random.split(key)
        b = q["b_loc"] + jnp.exp(q["b_scale"]) * jax.random.normal(kb, ())
        w = q["w_loc"] + jnp.exp(q["w_scale"]) * jax.random.normal(kw, (d,))
        return log_joint(b, w) - log_q(q, b, w)

    return Hand(log_joint, log_q, jax.value_and_grad(elbo))


def adam_step(value_and_grad: Callable, optimizer: optax.GradientTransformation) -> Callable:
    """`(params, opt_state, key) -> (params, opt_state, value)`: one ascent step of the estimate."""

    def step(params: Any, opt_state: Any, key: Any) -> tuple:
        value, grads = value_and_grad(params, key)
        updates, opt_state = optimizer.update(jax.tree.map(jnp.negative, grads), opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def scan_steps(step: Callable, steps: int) -> Callable:
    """`steps` calls of an `adam_step` in one `lax.scan`, step t with the key fold_in(key, t) (as pp.fit)."""

    def run(params: Any, opt_state: Any, key: Any) -> tuple:
        def body(carry: tuple, t: Any) -> tuple:
            params, opt_state, value = step(carry[0], carry[1], jax.random.fold_in(key, t))
            return (params, opt_state), value

        (params, opt_state), values = jax.lax.scan(body, (params, opt_state), jnp.arange(steps, dtype=jnp.int32))
        return params, opt_state, values

    return run


# ---------------------------------------------------------------- pplang


def pplang_problem(data: dict, guide: str) -> Any:
    """`Problem.build(logreg, guide, "elbo", data)` from a fresh `pp.load`, so that no JAX trace is
    shared with earlier builds. guide: "written" (`logreg_mf`) or "auto" (pplang's `mean_field`)."""
    import pplang as pp
    from pplang.inference.autoguide import auto_guide

    module = pp.load(str(MODEL_PATH))
    model = module["logreg"]
    q = module["logreg_mf"] if guide == "written" else auto_guide(model, "mean_field", data)
    return pp.Problem.build(model, q, "elbo", data)


def pplang_step(problem: Any, optimizer: optax.GradientTransformation) -> Callable:
    """One step as `pp.fit` takes it: the gradient of `Problem.step` (the surrogate's), then Adam."""
    step, state = problem.step(1), problem.init_state()

    def value_and_grad(params: Any, key: Any) -> tuple:
        value, grads, _ = step(params, key, state)
        return value, grads

    return adam_step(value_and_grad, optimizer)


def pplang_loop(problem: Any, optimizer: optax.GradientTransformation, steps: int) -> Callable:
    """The function `pp.fit` compiles for a chunk of `steps` steps (runtime.optimize's chunk runner)."""
    from pplang.runtime.optimize import make_chunk_runner

    return make_chunk_runner(problem.step(1), optimizer, steps)


def loop_args(problem: Any, optimizer: optax.GradientTransformation, steps: int, key: Any) -> tuple:
    params = problem.init_params(0)
    return params, optimizer.init(params), problem.init_state(), key, jnp.int32(0)


# ---------------------------------------------------------------- NumPyro


def numpyro_available() -> str | None:
    """NumPyro's version, or None when it is not installed (its rows are then left out)."""
    try:
        import numpyro
    except ImportError:
        return None
    return numpyro.__version__


def numpyro_programs(data: dict, b_scale: float = PRIOR_B_SCALE) -> tuple[Callable, Callable]:
    """The model and the written mean-field guide in NumPyro, the data closed over (as on the other sides)."""
    import numpyro
    from numpyro import distributions as nd
    from numpyro.distributions import constraints

    x, y, d = jnp.asarray(data["X"]), jnp.asarray(data["y"], jnp.float32), data["D"]

    def model() -> None:
        b = numpyro.sample("b", nd.Normal(0.0, b_scale))
        w = numpyro.sample("w", nd.Normal(0.0, 1.0).expand([d]).to_event(1))
        numpyro.sample("y", nd.Bernoulli(logits=x @ w + b), obs=y)

    def guide() -> None:
        b_loc = numpyro.param("b_loc", 0.0)
        b_sd = numpyro.param("b_scale", 0.1, constraint=constraints.positive)
        w_loc = numpyro.param("w_loc", jnp.zeros(d))
        w_sd = numpyro.param("w_scale", jnp.full(d, 0.1), constraint=constraints.positive)
        numpyro.sample("b", nd.Normal(b_loc, b_sd))
        numpyro.sample("w", nd.Normal(w_loc, w_sd).to_event(1))

    return model, guide


def numpyro_svi(data: dict, guide: str) -> Any:
    """`SVI(model, guide, Adam, Trace_ELBO())`; guide "written" or "auto" (`AutoNormal`, its locations
    initialized as pplang's automatic guides are: the median of 15 prior draws)."""
    import numpyro
    from numpyro.infer import SVI, Trace_ELBO, init_to_median
    from numpyro.infer.autoguide import AutoNormal

    model, written = numpyro_programs(data)
    q = written if guide == "written" else AutoNormal(model, init_loc_fn=init_to_median(num_samples=15))
    return SVI(model, q, numpyro.optim.Adam(LEARNING_RATE), Trace_ELBO())


def numpyro_step(data: dict, guide: str) -> Callable:
    """`svi.update` of a fresh SVI (initialized: `init` sets up its parameter transforms)."""
    svi = numpyro_svi(data, guide)
    svi.init(jax.random.key(3))
    return lambda state: svi.update(state)


def numpyro_loop(data: dict, guide: str, steps: int) -> Callable:
    """The body of `svi.run(..., progress_bar=False)`: `lax.scan` over `svi.update`."""
    svi = numpyro_svi(data, guide)
    svi.init(jax.random.key(3))
    return lambda state: jax.lax.scan(lambda s, _: svi.update(s), state, None, length=steps)


# ---------------------------------------------------------------- agreement


def random_point(d: int, seed: int) -> tuple[Any, Any, dict]:
    """A latent value (b, w) and unconstrained guide parameters away from their initial values."""
    rng = np.random.default_rng(seed)
    b, w = jnp.float32(rng.normal()), jnp.asarray(rng.normal(size=d), jnp.float32)
    q = {"b_loc": jnp.float32(rng.normal()), "b_scale": jnp.float32(rng.uniform(-3.0, -1.0)),
         "w_loc": jnp.asarray(rng.normal(size=d), jnp.float32),
         "w_scale": jnp.asarray(rng.uniform(-3.0, -1.0, size=d), jnp.float32)}
    return b, w, q


def renamed(q: dict, names: Names) -> dict:
    return {names.b_loc: q["b_loc"], names.b_scale: q["b_scale"], names.w_loc: q["w_loc"],
            names.w_scale: q["w_scale"]}


def check_densities(log_joint: Callable, log_q: Callable, h: Hand, d: int, what: str) -> float:
    """A side's log joint and guide log density (values and gradients) against the hand-written ones
    at a few points: exact agreement up to float32 rounding."""

    def both(lj: Callable, lq: Callable) -> Callable:
        """Values and gradients of the log joint (wrt b, w) and of log q (wrt b, w and the parameters)."""
        return jax.jit(lambda q, b, w: (jax.value_and_grad(lj, (0, 1))(b, w),
                                        jax.value_and_grad(lq, (0, 1, 2))(q, b, w)))

    side, ref = both(log_joint, log_q), both(h.log_joint, h.log_q)
    err = 0.0
    for seed in range(3):
        b, w, q = random_point(d, seed)
        (lj_a, lq_a), (lj_b, lq_b) = side(q, b, w), ref(q, b, w)
        for (va, ga), (vb, gb), name in ((lj_a, lj_b, "log joint"), (lq_a, lq_b, "log q")):
            err = max(err, harness.assert_close(va, vb, 1e-5, f"{what}: {name}"),
                      harness.assert_close(ga, gb, 1e-5, f"{what}: gradient of {name}"))
    return err


def pplang_densities(problem: Any, names: Names, data: dict) -> tuple[Callable, Callable]:
    """The log joint of pplang's model and the log density of its guide, in the hand-written layout."""
    model, guide = problem.roles["p"], problem.roles["q"]
    guide_data = {a: data[a] for a, _ in guide.fn.args if a in data}

    def log_joint(b: Any, w: Any) -> Any:
        return model.log_density({"b": b, "w": w}, data)

    def log_q(q: dict, b: Any, w: Any) -> Any:
        return guide.log_density({"b": b, "w": w}, guide_data, params=renamed(q, names))

    return log_joint, log_q


def numpyro_densities(data: dict) -> tuple[Callable, Callable]:
    from numpyro.infer.util import log_density

    model, guide = numpyro_programs(data)

    def log_joint(b: Any, w: Any) -> Any:
        return log_density(model, (), {}, {"b": b, "w": w})[0]

    def log_q(q: dict, b: Any, w: Any) -> Any:
        params = {"b_loc": q["b_loc"], "b_scale": jnp.exp(q["b_scale"]), "w_loc": q["w_loc"],
                  "w_scale": jnp.exp(q["w_scale"])}
        return log_density(guide, (), {}, {**params, "b": b, "w": w})[0]

    return log_joint, log_q


def max_z(a: Any, b: Any) -> float:
    """Largest |difference of means| / its standard error over the entries of two pytrees of
    independent draws (leading axis)."""
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        se = np.sqrt(x.var(0) / len(x) + y.var(0) / len(y))
        worst = max(worst, float(np.max(np.abs(x.mean(0) - y.mean(0)) / np.maximum(se, 1e-12))))
    return worst


def check_estimators(pp_fn: Callable, base_fn: Callable, params: dict, keys: int) -> float:
    """Both estimators are unbiased for the same ELBO and gradient: their means over `keys` independent
    draws agree within 5 standard errors, entry by entry."""
    ks_a = jax.random.split(jax.random.key(101), keys)
    ks_b = jax.random.split(jax.random.key(202), keys)
    a = jax.jit(jax.vmap(pp_fn, (None, 0)))(params, ks_a)
    b = jax.jit(jax.vmap(base_fn, (None, 0)))(params, ks_b)
    z = max_z(a, b)
    assert z < 5.0, f"estimators differ: a mean is {z:.1f} standard errors apart"
    return z


def locs_scales(q: dict, names: Names, scale: Callable = jnp.exp) -> tuple[np.ndarray, np.ndarray]:
    """Constrained (locations, scales) of the guide, intercept first."""
    loc = np.r_[np.asarray(q[names.b_loc]).ravel(), np.asarray(q[names.w_loc])]
    sd = np.r_[np.asarray(scale(q[names.b_scale])).ravel(), np.asarray(scale(q[names.w_scale]))]
    return loc, sd


def compare_fits(a: tuple, b: tuple, what: str) -> float:
    """Two fits of the same guide by noisy SGD agree loosely: every location within 2 fitted posterior
    sds of the other side's, every scale within a factor 2. A sanity check of the optimizer settings
    and objective (a different learning rate, or a missing entropy term, fails it), not of precision."""
    (la, sa), (lb, sb) = a, b
    dist = float(np.max(np.abs(la - lb) / np.minimum(sa, sb)))
    ratio = sa / sb
    assert dist < 2.0, f"{what}: fitted locations differ by {dist:.2f} posterior sds"
    assert np.all((ratio > 0.5) & (ratio < 2.0)), f"{what}: fitted scales differ (ratios {ratio.min():.2f}" \
                                                  f"–{ratio.max():.2f})"
    return dist


# ---------------------------------------------------------------- fitting, for the checks of the step rows


def fit_steps(fn: Callable, args: tuple, steps: int, names: Names) -> tuple[np.ndarray, np.ndarray]:
    """`steps` calls of an `adam_step` (pplang's or the hand-written one), step t with fold_in(key, t)."""
    params, opt_state, key = args
    for t in range(steps):
        params, opt_state, _ = fn(params, opt_state, jax.random.fold_in(key, t))
    return locs_scales(params["q"], names)


def fit_scan(fn: Callable, args: tuple, steps: int, chunk: int, names: Names) -> tuple[np.ndarray, np.ndarray]:
    """`steps` steps of a hand-written `scan_steps`, `chunk` per call, each call with its own key."""
    params, opt_state, key = args
    for i in range(steps // chunk):
        params, opt_state, _ = fn(params, opt_state, jax.random.fold_in(key, i))
    return locs_scales(params["q"], names)


def fit_chunks(fn: Callable, args: tuple, steps: int, chunk: int, names: Names) -> tuple[np.ndarray, np.ndarray]:
    """`steps` steps of pp.fit's chunk runner, as `optimize` calls it."""
    params, opt_state, state, key, _ = args
    for i in range(steps // chunk):
        out = fn(params, opt_state, state, key, jnp.int32(i * chunk))
        params, opt_state, state = out.params, out.opt_state, out.state
    return locs_scales(params["q"], names)


def fit_numpyro(fn: Callable, svi: Any, state: Any, calls: int, names: Names) -> tuple[np.ndarray, np.ndarray]:
    """`calls` calls of `svi.update` (or of the scan over it); NumPyro's parameters come constrained."""
    for _ in range(calls):
        state, _ = fn(state)
    return locs_scales(svi.get_params(state), names, scale=lambda s: s)


# ---------------------------------------------------------------- one comparison


@dataclass
class Side:
    """One side of a comparison: a factory of fresh callables (jitted by the runner) and their arguments."""

    make: Callable[[], Callable]
    args: tuple


@dataclass
class Pair:
    """pplang against one other implementation. `check(pplang_fn, other_fn)` runs both (jitted), raises
    AssertionError when they disagree and returns the figure named by `check_what`."""

    name: str
    group: str
    pplang: Side
    other: Side
    check: Callable[[Callable, Callable], float]
    check_what: str
    budget_s: float
    notes: str


def run_pair(pair: Pair, settings: harness.Settings, log: Callable[[str], None]) -> harness.Result:
    """The harness's method (harness.run_case) for two sides that take different arguments."""
    log(f"[{pair.name}] checking agreement")
    f, g = jax.jit(pair.pplang.make()), jax.jit(pair.other.make())
    err = pair.check(f, g)
    log(f"[{pair.name}] compile x{settings.compile_reps}")
    runs: dict[str, list[harness.Compile]] = {"pplang": [], "other": []}
    sides = {"pplang": pair.pplang, "other": pair.other}
    for r in range(settings.compile_reps):
        for side in (("pplang", "other") if r % 2 == 0 else ("other", "pplang")):
            runs[side].append(harness.compile_once(sides[side].make, sides[side].args))

    def summarize(rows: list[harness.Compile]) -> harness.Compile:
        if not rows:  # compile_reps = 0 (smoke runs): not measured
            return harness.Compile(math.nan, math.nan, 0, 0)
        return harness.Compile(statistics.median(c.lower_s for c in rows), statistics.median(c.xla_s for c in rows),
                               rows[0].hlo_lines, rows[0].optimized_instructions)

    log(f"[{pair.name}] warm timing ~{pair.budget_s:.1f}s")
    a, b = pair.pplang.args, pair.other.args
    tf, tg = harness.measure_warm(lambda: f(*a), lambda: g(*b), (), pair.budget_s, settings)
    q25, q75 = np.quantile(tf / tg, [0.25, 0.75])
    blocks = harness.block_ratios(tf, tg)
    pm, bm = float(np.median(tf)), float(np.median(tg))
    p10 = float(np.quantile(tf, 0.1) / np.quantile(tg, 0.1))
    return harness.Result(pair.name, pair.group, pm, bm, pm / bm, p10, float(q25), float(q75), float(blocks.min()),
                          float(blocks.max()), len(tf), summarize(runs["pplang"]), summarize(runs["other"]), err,
                          pair.notes, {"check_what": pair.check_what})


# ---------------------------------------------------------------- the comparisons


@dataclass
class Mode:
    """Problem size and measuring effort of a run."""

    n: int
    d: int
    budget_s: float  # seconds of interleaved warm calls per row
    loop_steps: int  # optimizer steps per call in the loop rows
    check_keys: int  # independent estimates per side in the statistical check
    fit_steps: int  # optimizer steps of each side in the fit check
    settings: harness.Settings


MODES = {
    "full": Mode(5000, 20, 20.0, 100, 2000, 2000, harness.Settings(compile_reps=5, min_rounds=50)),
    "quick": Mode(5000, 20, 3.0, 100, 1000, 2000, harness.Settings(compile_reps=2, min_rounds=20)),
    "smoke": Mode(200, 3, 0.05, 10, 300, 1000, harness.Settings(compile_reps=0, min_rounds=5, warmup_calls=2)),
}


def grad_pair(data: dict, mode: Mode, guide: str, library_softplus: bool = False) -> Pair:
    names = WRITTEN if guide == "written" else AUTO
    h = hand(data, names, library_softplus)
    params = pplang_problem(data, guide).init_params(0)
    args = (params, jax.random.key(1))

    def check(pp_fn: Callable, base_fn: Callable) -> float:
        log_joint, log_q = pplang_densities(pplang_problem(data, guide), names, data)
        check_densities(log_joint, log_q, h, data["D"], f"pplang ({guide} guide)")
        point = {"p": {}, "q": renamed(random_point(data["D"], 7)[2], names)}
        return check_estimators(pp_fn, base_fn, point, mode.check_keys)

    label = {"written": "written guide", "auto": "automatic mean_field guide"}[guide]
    name = f"grad, {label}" + (", baseline with jax.nn.softplus" if library_softplus else "")
    notes = ("value_and_grad of one ELBO estimate; baseline log-likelihood y*eta - "
             + ("jax.nn.softplus(eta)" if library_softplus else "max(eta, 0) - log1p(exp(-|eta|))"))
    return Pair(f"{name} N={data['N']} D={data['D']}", "grad_softplus" if library_softplus else f"grad_{guide}",
                Side(lambda: pplang_problem(data, guide).value_and_grad, args),
                Side(lambda: hand(data, names, library_softplus).value_and_grad, args),
                check, "max |z| of mean value and gradient entries (exact densities checked first)",
                mode.budget_s, notes)


def step_pairs(data: dict, mode: Mode, with_numpyro: bool) -> list[Pair]:
    opt = optax.adam(LEARNING_RATE)
    d, key, k, fit = data["D"], jax.random.key(2), mode.loop_steps, mode.fit_steps
    params = pplang_problem(data, "written").init_params(0)
    step_args = (params, opt.init(params), key)
    pp_step = Side(lambda: pplang_step(pplang_problem(data, "written"), opt), step_args)
    size = f"N={data['N']} D={d}"
    pairs = [Pair(f"step vs JAX {size}", "step", pp_step,
                  Side(lambda: adam_step(hand(data).value_and_grad, opt), step_args),
                  lambda f, g: compare_fits(fit_steps(f, step_args, fit, WRITTEN),
                                            fit_steps(g, step_args, fit, WRITTEN), "step"),
                  "max |Δloc| / posterior sd after the fit", mode.budget_s,
                  "ELBO gradient + optax Adam update, written guide")]
    problem = pplang_problem(data, "written")
    chunk = Side(lambda: pplang_loop(pplang_problem(data, "written"), opt, k), loop_args(problem, opt, k, key))
    pairs.append(Pair(f"loop of {k} steps vs JAX {size}", "loop", chunk,
                      Side(lambda: scan_steps(adam_step(hand(data).value_and_grad, opt), k), step_args),
                      lambda f, g: compare_fits(fit_chunks(f, chunk.args, fit, k, WRITTEN),
                                                fit_scan(g, step_args, fit, k, WRITTEN), "loop"),
                      "max |Δloc| / posterior sd after the fit", mode.budget_s,
                      f"pp.fit's chunk runner (lax.scan, one finiteness test) vs a lax.scan of the step; "
                      f"{k} steps per call"))
    if not with_numpyro:
        return pairs
    auto = pplang_problem(data, "auto")
    auto_params = auto.init_params(0)
    auto_args = (auto_params, opt.init(auto_params), key)
    for guide, names, pp_side, pp_fit in (
            ("written", WRITTEN, pp_step, lambda f: fit_steps(f, step_args, fit, WRITTEN)),
            ("auto", AUTO, Side(lambda: pplang_step(pplang_problem(data, "auto"), opt), auto_args),
             lambda f: fit_steps(f, auto_args, fit, AUTO))):
        svi = numpyro_svi(data, guide)
        state = svi.init(jax.random.key(3))

        def check(f: Callable, g: Callable, svi: Any = svi, state: Any = state, names: Names = names,
                  pp_fit: Callable = pp_fit, guide: str = guide) -> float:
            if guide == "written":
                check_densities(*numpyro_densities(data), hand(data), d, "NumPyro")
            return compare_fits(pp_fit(f), fit_numpyro(g, svi, state, fit, names), f"step vs NumPyro ({guide})")

        label = "written guide vs hand-written NumPyro guide" if guide == "written" else \
            "pplang mean_field vs NumPyro AutoNormal"
        pairs.append(Pair(f"step vs NumPyro, {'written' if guide == 'written' else 'automatic'} guide {size}",
                          f"step_numpyro_{guide}", pp_side,
                          Side(lambda guide=guide: numpyro_step(data, guide), (state,)), check,
                          "max |Δloc| / posterior sd after the fit" + (" (exact densities checked first)"
                                                                       if guide == "written" else ""),
                          mode.budget_s, f"jax.jit(svi.update), Trace_ELBO, NumPyro Adam; {label}"))
    svi = numpyro_svi(data, "written")
    state = svi.init(jax.random.key(3))
    pairs.append(Pair(f"loop of {k} steps vs NumPyro {size}", "loop_numpyro", chunk,
                      Side(lambda: numpyro_loop(data, "written", k), (state,)),
                      lambda f, g: compare_fits(fit_chunks(f, chunk.args, fit, k, WRITTEN),
                                                fit_numpyro(g, svi, state, fit // k, WRITTEN), "loop vs NumPyro"),
                      "max |Δloc| / posterior sd after the fit", mode.budget_s,
                      f"pp.fit's chunk runner vs svi.run's lax.scan over svi.update; {k} steps per call"))
    return pairs


def build_pairs(mode: Mode, with_numpyro: bool) -> list[Pair]:
    data = make_data(mode.n, mode.d)
    return [grad_pair(data, mode, "written"), grad_pair(data, mode, "written", library_softplus=True),
            grad_pair(data, mode, "auto"), *step_pairs(data, mode, with_numpyro)]


# ---------------------------------------------------------------- report


def details(results: list[harness.Result]) -> str:
    head = ["benchmark", "rounds", "pplang trace+lower", "pplang XLA", "other trace+lower", "other XLA",
            "StableHLO lines (pplang / other)", "optimized HLO instructions (pplang / other)", "check", "check figure"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        p, b = r.pplang_compile, r.baseline_compile
        measured = math.isfinite(p.lower_s)
        cells = [r.name, str(r.rounds), harness.fmt_time(p.lower_s), harness.fmt_time(p.xla_s),
                 harness.fmt_time(b.lower_s), harness.fmt_time(b.xla_s),
                 f"{p.hlo_lines} / {b.hlo_lines}" if measured else "n/a",
                 f"{p.optimized_instructions} / {b.optimized_instructions}" if measured else "n/a",
                 f"{r.check_error:.2f}",
                 r.extra["check_what"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_step(results: list[harness.Result], steps: int) -> str:
    rows = [r for r in results if r.group.startswith("loop")]
    parts = [f"{r.name.split(' steps')[0]} vs {'NumPyro' if 'NumPyro' in r.name else 'JAX'}: pplang "
             f"{harness.fmt_time(r.pplang_warm_s / steps)}, other {harness.fmt_time(r.baseline_warm_s / steps)}"
             for r in rows]
    return "Per optimizer step inside the loops: " + "; ".join(parts) + "." if parts else ""


def goals(results: list[harness.Result]) -> str:
    """The headline ratios against the goals: within 1.05 of hand-written JAX, at least as fast as NumPyro."""
    by = {r.group: r for r in results}

    def fig(group: str) -> str:
        r = by.get(group)
        return "n/a" if r is None else f"{r.ratio:.3f} (10-block range {r.block_min:.3f}–{r.block_max:.3f})"

    text = (f"Against hand-written JAX (goal: ratio at most 1.05): gradient {fig('grad_written')}, one Adam step "
            f"{fig('step')}, the loop {fig('loop')}. Against hand-written JAX that writes the Bernoulli "
            f"log-likelihood with jax.nn.softplus: {fig('grad_softplus')} (below 1: what the form of log(1 + e^eta) "
            "in pplang's stdlib and in the baseline above saves).")
    if "step_numpyro_written" in by:
        text += (" Against NumPyro (goal: ratio at most 1): step with the written guide "
                 f"{fig('step_numpyro_written')}, with the automatic guide {fig('step_numpyro_auto')}, "
                 f"the loop {fig('loop_numpyro')}.")
    return text


def report(results: list[harness.Result], mode_name: str, mode: Mode, elapsed_s: float, load: tuple[float, float],
           numpyro_version: str | None) -> str:
    dev = jax.devices()[0]
    np_line = (f"NumPyro {numpyro_version}" if numpyro_version else
               "NumPyro not installed: its rows are left out")
    lines = [
        HEADING,
        "",
        f"`.venv/bin/python benchmarks/vi_bench.py{'' if mode_name == 'full' else ' --' + mode_name}`, "
        f"mode `{mode_name}`, {datetime.date.today().isoformat()}; JAX {jax.__version__} "
        f"on {dev.platform} ({dev.device_kind}), {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"{np_line}; run took {elapsed_s:.0f} s; 1-minute load average {load[0]:.1f} at the start, "
        f"{load[1]:.1f} at the end.",
        "",
        f"Model `models/logreg.ppl`: b ~ normal(0, 5), w[d] ~ normal(0, 1), y[i] ~ bernoulli(logits = X[i] . w + b), "
        f"N = {mode.n}, D = {mode.d}, data from `make_data` (seed 0). Guide: mean-field normal over (b, w), "
        "`logreg_mf` as written in the file (the same computation as the hand-written JAX and the NumPyro guide) "
        "or pplang's automatic `mean_field` (against NumPyro's `AutoNormal`, whose scales go through softplus "
        "where pplang's go through exp). One particle per estimate, learning rate "
        f"{LEARNING_RATE}. Every row compares pplang (first columns) with the other side named in the row; "
        "the columns are those of run.py's table (ratio = pplang median / other median over interleaved rounds; "
        "compile = trace + lower + XLA through the AOT API, persistent cache off).",
        "",
        harness.table(results),
        "",
    ]
    lines += [goals(results), ""]
    steps = per_step(results, mode.loop_steps)
    if steps:
        lines += [steps, ""]
    lines += [
        "Checks (before timing; the run stops if one fails): grad rows compare pplang's model and guide log "
        "densities and their gradients with the hand-written ones exactly (relative error 1e-5) and then the means "
        f"of {mode.check_keys} independent estimates of the ELBO and of every gradient entry on each side (both "
        "unbiased for the same quantity; |z| < 5). Step and loop rows fit the guide with both sides for "
        f"{mode.fit_steps} steps and require every fitted location within 2 fitted posterior sds of the other "
        "side's and every scale within a factor 2 (a sanity check of the objective and optimizer settings; "
        "NumPyro's model and guide densities are first checked exactly against the hand-written ones).",
        "",
        "Details (compile phases, median; program sizes; the check's figure):",
        "",
        details(results),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    run = harness.command_line(__doc__, argv)
    mode = MODES[run.mode]
    version = numpyro_available()
    results = [run_pair(p, mode.settings, lambda s: print(s, file=sys.stderr))
               for p in build_pairs(mode, version is not None)]
    text = report(results, run.mode, mode, *run.elapsed(), version)
    return run.finish(HEADING, text, {"numpyro": version, "results": [r.as_dict() for r in results]})

if __name__ == "__main__":
    sys.exit(main())
