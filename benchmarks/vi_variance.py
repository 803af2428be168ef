"""Gradient estimators for discrete choices at equal wall time: reinforce, reinforce with baselines,
mvd and enum on the same guide, in one process.

    python benchmarks/vi_variance.py [--quick | --smoke] [--out FILE] [--json FILE]

The model is `models/mixture2.ppl`: a two-component Gaussian mixture with N = 20 points; its guide
draws each point's assignment z[i] ~ bernoulli(logits = logit_z[i]) and the two component means by
reparameterization. The same guide file is compiled once per strategy of z
(`Problem.build(..., strategies={"z": ...}, baseline=...)`), and for each strategy:

* the variance of one estimate of the ELBO gradient with respect to logit_z (the sum over the N
  entries of each entry's variance), from many independent estimates at one fixed point of the
  guide's parameters;
* the time per estimate: a jitted `Problem.step` averaging B particles (what `pp.fit(...,
  particles=B)` runs per step), timed interleaved round by round against reinforce's, divided by B;
* the variance of the average of as many estimates as fit in a fixed time budget T, which is
  variance per estimate * time per estimate / T: its ratio to reinforce's is the figure to compare;
* the mean of the estimates against the exact gradient (a closed form, see `exact_grad`), within 5
  standard errors per entry: every estimator has to be unbiased.

A full run writes its section of `benchmarks/results.md` (from its heading to the next top-level
heading), keeping the rest.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import jax
import jax.numpy as jnp
import numpy as np

HERE = Path(__file__).resolve().parent
MODEL_PATH = HERE / "models" / "mixture2.ppl"
HEADING = "# Variational inference: gradient variance of discrete choices at equal wall time"
WARMUP_STEPS = 200  # steps of the ema state / the learned baseline at the fixed point before measuring

# (label, strategy of z, baseline): "pilot" is a constant baseline, the mean cost from a pilot run
STRATEGIES = (
    ("reinforce", "reinforce", None),
    ("reinforce + constant baseline", "reinforce", "pilot"),
    ("reinforce + ema baseline", "reinforce", "ema"),
    ("reinforce + learned baseline", "reinforce", "learned"),
    ("mvd", "mvd", None),
    ("enum", "enum", None),
)


@dataclass
class Mode:
    n: int  # data points
    estimates: int  # independent estimates per strategy for the variance
    particles: int  # estimates per timed call
    budget_s: float  # seconds of interleaved timing per strategy (against reinforce)
    settings: harness.Settings


MODES = {
    "full": Mode(20, 20_000, 100, 10.0, harness.Settings(compile_reps=3, min_rounds=50)),
    "quick": Mode(20, 5_000, 100, 2.0, harness.Settings(compile_reps=1, min_rounds=20)),
    "smoke": Mode(6, 1_000, 10, 0.05, harness.Settings(compile_reps=0, min_rounds=5, warmup_calls=2)),
}


# ---------------------------------------------------------------- data, the point, the exact gradient


def make_data(n: int, seed: int = 0) -> dict:
    """Points from the two components at -2 and 2 (unit noise), each with probability 1/2."""
    rng = np.random.default_rng(seed)
    z = rng.random(n) < 0.5
    return {"N": n, "y": (np.where(z, 2.0, -2.0) + rng.normal(size=n)).astype(np.float32)}


def fixed_point(n: int, seed: int = 1) -> dict:
    """The guide's unconstrained parameters where the gradients are measured: means near the data's
    components, scales 0.5, and assignment logits drawn N(0, 1) (a guide part-way through fitting)."""
    rng = np.random.default_rng(seed)
    return {"m0": jnp.float32(-1.5), "m1": jnp.float32(1.5), "s0": jnp.float32(math.log(0.5)),
            "s1": jnp.float32(math.log(0.5)), "logit_z": jnp.asarray(rng.normal(size=n), jnp.float32)}


def exact_grad(point: dict, y: np.ndarray) -> np.ndarray:
    """d ELBO / d logit_z[i] in closed form. Only the terms of point i depend on logit_z[i]; with
    p = sigmoid(logit_z[i]), f(z) = E_mu[log N(y[i]; mu_z, 1)] + log 1/2 - log q(z) and
    E[log N(y; mu, 1)] = -(log 2 pi + (y - m)^2 + s^2) / 2 for mu ~ N(m, s), the gradient is
    p (1 - p) (f(1) - f(0)) (the expected score of q is zero), and f(1) - f(0) is
    ((y - m0)^2 + s0^2 - (y - m1)^2 - s1^2) / 2 - logit_z[i]."""
    logit, y = np.asarray(point["logit_z"], np.float64), np.asarray(y, np.float64)
    m0, m1 = float(point["m0"]), float(point["m1"])
    v0, v1 = math.exp(2.0 * float(point["s0"])), math.exp(2.0 * float(point["s1"]))
    p = 1.0 / (1.0 + np.exp(-logit))
    return p * (1.0 - p) * (0.5 * ((y - m0) ** 2 + v0 - (y - m1) ** 2 - v1) - logit)


# ---------------------------------------------------------------- the estimators


@dataclass
class Estimator:
    """One strategy, set up at the fixed point: its problem, parameters and state (baselines warmed up)."""

    label: str
    problem: Any
    params: dict
    state: dict
    baseline_value: float | None = None
    extra: dict = field(default_factory=dict)


def build(data: dict, strategy: str, baseline: Any) -> Any:
    import pplang as pp

    module = pp.load(str(MODEL_PATH))
    return pp.Problem.build(module["mixture2"], module["mixture2_q"], "elbo", data, strategies={"z": strategy},
                            baseline=baseline)


def mean_cost(data: dict, point: dict, estimates: int) -> float:
    """The mean score-function cost of z at the point, from a pilot run of plain reinforce."""
    pr = build(data, "reinforce", None)
    params = {**pr.init_params(0), "q": point}
    keys = jax.random.split(jax.random.key(7), estimates)
    costs = jax.jit(jax.vmap(lambda k: pr.surrogate(params, k, {}, 1)[1][1]))(keys)
    (cost,) = costs.values()
    return float(np.mean(cost))


def warm_up(pr: Any, params: dict, state: dict) -> tuple[dict, dict]:
    """Run the baseline's own updates for WARMUP_STEPS steps at the fixed point, the guide's parameters
    held: the ema state's moving average, or the learned baseline's regression (plain gradient steps
    of size 0.05 on the baseline only, which is the same moving average with weight 0.1)."""
    step = jax.jit(pr.step(1))
    for t in range(WARMUP_STEPS):
        _, grads, state = step(params, jax.random.fold_in(jax.random.key(11), t), state)
        if "_baselines" in params:
            params = {**params, "_baselines": jax.tree.map(lambda b, g: b + 0.05 * g, params["_baselines"],
                                                           grads["_baselines"])}
    return params, state


def estimators(data: dict, point: dict, pilot_estimates: int) -> list[Estimator]:
    out = []
    for label, strategy, baseline in STRATEGIES:
        value = mean_cost(data, point, pilot_estimates) if baseline == "pilot" else None
        pr = build(data, strategy, value if baseline == "pilot" else baseline)
        params = {**pr.init_params(0), "q": point}
        params, state = warm_up(pr, params, pr.init_state()) if baseline in ("ema", "learned") else \
            (params, pr.init_state())
        if baseline == "ema":
            value = float(next(iter(state["ema"].values())))
        elif baseline == "learned":
            value = float(next(iter(params["_baselines"].values())))
        out.append(Estimator(label, pr, params, state, value))
    return out


def gradients(e: Estimator, count: int, seed: int = 3) -> np.ndarray:
    """`count` independent one-particle estimates of d ELBO / d logit_z, shape (count, N)."""
    step = e.problem.step(1)
    keys = jax.random.split(jax.random.key(seed), count)
    grads = jax.jit(jax.vmap(lambda k: step(e.params, k, e.state)[1]["q"]["logit_z"]))(keys)
    return np.asarray(grads, np.float64)


def timed_step(e: Estimator, particles: int) -> tuple[Callable[[], Callable], tuple]:
    """What `pp.fit(..., particles=B)` runs per step (before the optimizer): a factory and its arguments."""
    return (lambda: e.problem.step(particles)), (e.params, jax.random.key(5), e.state)


# ---------------------------------------------------------------- measuring


@dataclass
class Row:
    label: str
    baseline_value: float | None
    variance: float  # sum over entries of the variance of one estimate
    variance_ratio: float  # ... relative to reinforce
    variance_blocks: tuple[float, float]  # lowest and highest ratio over 10 blocks of the estimates
    time_s: float  # median seconds per estimate
    time_ratio: float  # ... relative to reinforce, from interleaved rounds
    time_blocks: tuple[float, float]
    equal_time_ratio: float  # variance of the average over a fixed time budget, relative to reinforce
    max_z: float  # largest |mean - exact| / standard error over the entries
    compile_s: float


def check_unbiased(label: str, g: np.ndarray, exact: np.ndarray) -> float:
    """The largest distance of an entry's mean estimate from the exact gradient, in standard errors;
    AssertionError above 5."""
    se = np.std(g, axis=0, ddof=1) / math.sqrt(len(g))
    z = float(np.max(np.abs(g.mean(0) - exact) / np.maximum(se, 1e-12)))
    assert z < 5.0, f"{label}: the mean gradient is {z:.1f} standard errors from the exact one"
    return z


def bound(fn: Callable, args: tuple) -> Callable[[], Any]:
    return lambda: fn(*args)


def block_variances(g: np.ndarray, blocks: int = 10) -> np.ndarray:
    return np.array([np.sum(np.var(b, axis=0, ddof=1)) for b in np.array_split(g, blocks)])


def measure(mode: Mode, log: Callable[[str], None]) -> tuple[list[Row], dict]:
    data = make_data(mode.n)
    point = fixed_point(mode.n)
    exact = exact_grad(point, data["y"])
    log("setting up the estimators (pilot run, baseline warm-ups)")
    ests = estimators(data, point, mode.estimates)
    grads = {e.label: gradients(e, mode.estimates) for e in ests}
    ref = ests[0]
    ref_var, ref_blocks = np.sum(np.var(grads[ref.label], axis=0, ddof=1)), block_variances(grads[ref.label])
    rows = []
    ref_time = None
    make_ref, args_ref = timed_step(ref, mode.particles)
    ref_step = bound(jax.jit(make_ref()), args_ref)  # one compiled reinforce step, timed against every strategy
    for e in ests:
        g = grads[e.label]
        z = check_unbiased(e.label, g, exact)
        var = float(np.sum(np.var(g, axis=0, ddof=1)))
        vb = block_variances(g) / ref_blocks
        log(f"[{e.label}] timing against reinforce ~{mode.budget_s:.1f}s")
        make, args = timed_step(e, mode.particles)
        tf, tr = harness.measure_warm(bound(jax.jit(make()), args), ref_step, (), mode.budget_s, mode.settings)
        t_ratio = float(np.median(tf) / np.median(tr))
        tb = harness.block_ratios(tf, tr)
        ref_time = float(np.median(tr)) / mode.particles if ref_time is None else ref_time
        compiles = [harness.compile_once(make, args).total_s for _ in range(mode.settings.compile_reps)]
        rows.append(Row(e.label, e.baseline_value, var, var / ref_var, (float(vb.min()), float(vb.max())),
                        float(np.median(tf)) / mode.particles, t_ratio, (float(tb.min()), float(tb.max())),
                        var / ref_var * t_ratio, z, float(np.median(compiles)) if compiles else math.nan))
    info = {"exact_norm": float(np.linalg.norm(exact)), "reinforce_time_s": ref_time}
    return rows, info


# ---------------------------------------------------------------- report


def fmt_ratio(x: float) -> str:
    return f"{x:.3g}" if x < 10 else f"{x:.0f}"


def report(rows: list[Row], info: dict, mode_name: str, mode: Mode, elapsed_s: float,
           load: tuple[float, float]) -> str:
    dev = jax.devices()[0]
    head = ["strategy of z", "equal-time variance / reinforce", "variance per estimate / reinforce (10-block range)",
            "time per estimate / reinforce (10-block range)", "time per estimate", "baseline value",
            "max |z| vs exact", "compile"]
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.label, fmt_ratio(r.equal_time_ratio),
                 f"{fmt_ratio(r.variance_ratio)} ({fmt_ratio(r.variance_blocks[0])}–{fmt_ratio(r.variance_blocks[1])})",
                 f"{r.time_ratio:.2f} ({r.time_blocks[0]:.2f}–{r.time_blocks[1]:.2f})", harness.fmt_time(r.time_s),
                 "–" if r.baseline_value is None else f"{r.baseline_value:.2f}", f"{r.max_z:.1f}",
                 harness.fmt_time(r.compile_s)]
        table.append("| " + " | ".join(cells) + " |")
    ref = rows[0]
    lines = [
        HEADING,
        "",
        f"`.venv/bin/python benchmarks/vi_variance.py{'' if mode_name == 'full' else ' --' + mode_name}`, "
        f"mode `{mode_name}`, {datetime.date.today().isoformat()}; JAX {jax.__version__} "
        f"on {dev.platform} ({dev.device_kind}), {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
        f"run took {elapsed_s:.0f} s; 1-minute load average {load[0]:.1f} at the start, {load[1]:.1f} at the end.",
        "",
        f"Model `models/mixture2.ppl`, N = {mode.n} points (`make_data`, seed 0); the guide's parameters fixed at "
        "`fixed_point` (component means -1.5 and 1.5 with scales 0.5, assignment logits drawn N(0, 1)). "
        f"Figures are for the gradient with respect to the {mode.n} assignment logits: variance = the sum of the "
        f"entries' variances over {mode.estimates} independent one-particle estimates (reinforce: "
        f"{ref.variance:.4g}); time = median of jitted `Problem.step` calls averaging {mode.particles} particles, "
        "divided by the particles, each strategy interleaved round by round with reinforce (reinforce: "
        f"{harness.fmt_time(ref.time_s)} per estimate). Equal-time variance = the variance of the average of "
        "as many estimates as fit in a fixed time budget, relative to reinforce's = variance ratio × time ratio "
        "(below 1: better per second). The constant baseline is the mean cost from a pilot run of "
        f"reinforce; the ema state and the learned baseline come from {WARMUP_STEPS} of their own updates at "
        "the point. max |z|: the largest distance of an entry's mean from the exact gradient (`exact_grad`, a "
        "closed form), in standard errors; the run stops above 5. Compile: trace, lower and XLA compile of the "
        "timed step (persistent cache off).",
        "",
        *table,
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    run = harness.command_line(__doc__, argv, "fewer estimates, short timings")
    mode = MODES[run.mode]
    rows, info = measure(mode, lambda s: print(s, file=sys.stderr))
    text = report(rows, info, run.mode, mode, *run.elapsed())
    return run.finish(HEADING, text, {"info": info, "rows": [r.__dict__ for r in rows]})

if __name__ == "__main__":
    sys.exit(main())
