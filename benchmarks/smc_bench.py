"""Particle filtering: pplang's `pp.smc` against a hand-written JAX particle filter and the `particles`
package (a NumPy SMC library), in one process, with each filter's log Z error against the exact value.

    python benchmarks/smc_bench.py [--quick | --smoke] [--out FILE] [--json FILE]

The model is `models/lgssm.ppl`, a linear-Gaussian state-space model (an AR(1) state observed in
noise), T = 100 steps, data simulated from it with a fixed seed. All three filters run the same
algorithm: the bootstrap filter (propagate with the model's transition, weight by the likelihood of
y[t]) with systematic resampling when the effective sample size falls below half the particles.
For N = 1e3, 1e4, 1e5 particles it reports

* pplang vs hand-written JAX, with the harness of run.py (compile times through the AOT API, warm
  calls interleaved round by round, medians and their ratio);
* pplang vs `particles`, warm calls interleaved the same way (`particles` has no compile step;
  its numba kernels are compiled in the untimed first calls);
* for each filter, the mean and sd of log Z_hat - log Z over independent runs, log Z from the
  Gaussian density of the stacked observations (the Kalman filter's answer).

A full run writes its section of `benchmarks/results.md` (the part under the heading
"Particle filtering"), keeping the rest of the file.
"""

from __future__ import annotations

import datetime
import importlib
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

import harness
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm
from scipy import linalg, stats

HERE = Path(__file__).resolve().parent
MODEL_PATH = HERE / "models" / "lgssm.ppl"
HEADING = "# Particle filtering: pp.smc vs hand-written JAX vs `particles`"
ESS_THRESHOLD = 0.5


# ---------------------------------------------------------------- the model and its exact answer


def make_data(T: int, seed: int = 0, a: float = 0.9, q: float = 1.0, r: float = 1.0) -> dict:
    """Data of `lgssm`, simulated from it: x[0] from the stationary distribution, sd s0."""
    rng = np.random.default_rng(seed)
    s0 = q / math.sqrt(1.0 - a * a)
    x = np.empty(T)
    x[0] = s0 * rng.standard_normal()
    for t in range(1, T):
        x[t] = a * x[t - 1] + q * rng.standard_normal()
    y = (x + r * rng.standard_normal(T)).astype(np.float32)
    return {"T": T, "a": a, "q": q, "r": r, "s0": s0, "y": y}


def stacked_covariances(data: dict) -> tuple[np.ndarray, np.ndarray]:
    """Cov(x) and Cov(y) of the stacked states and observations: x is stationary, so
    Cov(x[s], x[t]) = s0^2 a^|s - t|; y = x + noise of variance r^2; Cov(x, y) = Cov(x)."""
    T, a, r, s0 = data["T"], data["a"], data["r"], data["s0"]
    cov_x = s0**2 * linalg.toeplitz(a ** np.arange(T))
    return cov_x, cov_x + r**2 * np.eye(T)


def exact_log_z(data: dict) -> float:
    """log p(y), the Gaussian density of the stacked observations (what the Kalman filter computes)."""
    _, cov_y = stacked_covariances(data)
    return float(stats.multivariate_normal(np.zeros(len(cov_y)), cov_y).logpdf(np.asarray(data["y"], np.float64)))


def exact_filtering_means(data: dict) -> np.ndarray:
    """(T,) E[x[t] | y[0..t]], the Gaussian conditional (the Kalman filter's means)."""
    cov_x, cov_y = stacked_covariances(data)
    y = np.asarray(data["y"], np.float64)
    return np.array([cov_x[t, :t + 1] @ np.linalg.solve(cov_y[:t + 1, :t + 1], y[:t + 1]) for t in range(len(y))])


# ---------------------------------------------------------------- pplang


def smc_module() -> ModuleType:
    """The module that defines `pp.smc` and the engine it runs."""
    return importlib.import_module("pplang.inference.filtering")


def pplang_filter(data: dict, n: int, threshold: float = ESS_THRESHOLD) -> Callable[[jax.Array], dict]:
    """What `pp.smc(lgssm, data, particles=n)` runs, as one function of the key: the engine's step 0
    and its `lax.scan` over the loop's steps (pp.smc calls them as two jitted functions), the data
    bound once, outside. The model is loaded afresh, so no trace is shared between calls of this
    factory. Returns the engine's records in `jax_filter`'s layout."""
    import pplang as pp

    smc_impl = smc_module()
    model = pp.load(str(MODEL_PATH))["lgssm"]
    opts = smc_impl.check_options(n, "systematic", threshold, None)
    eng, inputs, ps = smc_impl.prepare(model, data, {}, n, None, opts, None, None, None)
    xs, first = inputs.xs(0, inputs.steps), inputs.first()

    def run(key: jax.Array) -> dict:
        carry, rec0 = eng.start_impl(key, inputs.arrays, inputs.observed, ps, first)
        carry, rec = eng.chunk_impl(carry, key, xs, inputs.arrays, ps)
        x0 = rec0.values["x"]
        x0 = x0[:, 0] if x0.ndim == 2 else x0  # step 0's trace holds the whole (T,) array per particle
        return {"log_z": carry.log_z, "log_z_increments": jnp.concatenate([rec0.log_z_inc[None], rec.log_z_inc]),
                "ess": jnp.concatenate([rec0.ess[None], rec.ess]),
                "resampled": jnp.concatenate([rec0.resampled[None], rec.resampled]), "ancestors": rec.ancestors,
                "log_weights": jnp.concatenate([rec0.log_w[None], rec.log_w]),
                "values": jnp.concatenate([x0[None], rec.values["x"]]),
                "mean": jnp.concatenate([(jnp.exp(rec0.log_w) @ x0)[None], rec.means["x"]])}

    return run


# ---------------------------------------------------------------- hand-written JAX


def systematic_ancestors(key: jax.Array, log_w: jax.Array) -> jax.Array:
    """Systematic resampling of normalized log weights: one uniform U, and for each point (U + j) / n
    the particle whose interval of the cumulative weights holds it."""
    n = log_w.shape[0]
    cdf = jnp.cumsum(jnp.exp(log_w))
    u = (jax.random.uniform(key) + jnp.arange(n)) / n
    return jnp.minimum(jnp.searchsorted(cdf, u * cdf[-1], side="right"), n - 1).astype(jnp.int32)


def jax_filter(data: dict, n: int, threshold: float = ESS_THRESHOLD) -> Callable[[jax.Array], dict]:
    """The bootstrap filter written by hand: one lax.scan over time, particles as a vector.

    Step t >= 1 resamples (systematic) when the effective sample size of the previous weights is below
    `threshold * n`, moves every particle with the transition, and reweights by the likelihood of y[t].
    It keeps what pp.smc keeps, so that both do the same work: per step the log Z increment, the ESS,
    whether it resampled, the filtering mean, the ancestors, the normalized log weights and the
    particles' values."""
    y = jnp.asarray(data["y"])
    a, q, r, s0 = (jnp.float32(data[k]) for k in ("a", "q", "r", "s0"))
    log_n = jnp.log(jnp.float32(n))
    ident = jnp.arange(n, dtype=jnp.int32)

    def weigh(log_w: jax.Array, x: jax.Array, y_t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Normalized new log weights and log p(y[t] | y[..t-1]) (log_w normalized)."""
        lw = log_w + norm.logpdf(y_t, x, r)
        inc = logsumexp(lw)
        return lw - inc, inc

    def ess(log_w: jax.Array) -> jax.Array:
        return 1.0 / jnp.sum(jnp.exp(2.0 * log_w))

    def run(key: jax.Array) -> dict:
        k0, k_steps = jax.random.split(key)
        x = s0 * jax.random.normal(k0, (n,))
        log_w, inc0 = weigh(jnp.full((n,), -log_n), x, y[0])

        def step(carry: tuple, inputs: tuple) -> tuple:
            x, log_w = carry
            y_t, k = inputs
            k_resample, k_move = jax.random.split(k)
            resample = ess(log_w) < threshold * n
            def resampled() -> tuple:
                anc = systematic_ancestors(k_resample, log_w)
                return anc, x[anc], jnp.full((n,), -log_n)

            anc, x, log_w = jax.lax.cond(resample, resampled, lambda: (ident, x, log_w))
            x = a * x + q * jax.random.normal(k_move, (n,))
            log_w, inc = weigh(log_w, x, y_t)
            return (x, log_w), (inc, ess(log_w), resample, anc, log_w, x, jnp.exp(log_w) @ x)

        keys = jax.random.split(k_steps, y.shape[0] - 1)
        _, (incs, ess_, flags, ancestors, log_ws, xs, means) = jax.lax.scan(step, (x, log_w), (y[1:], keys))
        return {"log_z": inc0 + jnp.sum(incs), "log_z_increments": jnp.concatenate([inc0[None], incs]),
                "ess": jnp.concatenate([ess(log_w)[None], ess_]),
                "resampled": jnp.concatenate([jnp.zeros((1,), bool), flags]), "ancestors": ancestors,
                "log_weights": jnp.concatenate([log_w[None], log_ws]), "values": jnp.concatenate([x[None], xs]),
                "mean": jnp.concatenate([(jnp.exp(log_w) @ x)[None], means])}

    return run


# ---------------------------------------------------------------- the `particles` package (NumPy)


def particles_filter(data: dict, n: int, threshold: float = ESS_THRESHOLD) -> Callable[[int], float] | None:
    """The same bootstrap filter in `particles` (systematic resampling when ESS < threshold * N, the
    filtering mean collected at every step); None when the package is not installed. Returns
    seed -> log Z estimate."""
    try:
        import particles
        from particles import collectors, distributions, state_space_models
    except ImportError:
        return None

    class LGSSM(state_space_models.StateSpaceModel):
        def PX0(self) -> distributions.ProbDist:
            return distributions.Normal(loc=0.0, scale=self.s0)

        def PX(self, t: int, xp: np.ndarray) -> distributions.ProbDist:
            return distributions.Normal(loc=self.a * xp, scale=self.q)

        def PY(self, t: int, xp: np.ndarray, x: np.ndarray) -> distributions.ProbDist:
            return distributions.Normal(loc=x, scale=self.r)

    model = LGSSM(a=data["a"], q=data["q"], r=data["r"], s0=data["s0"])
    y = np.asarray(data["y"], np.float64)

    def run(seed: int) -> float:
        np.random.seed(seed)  # particles draws from NumPy's global generator
        alg = particles.SMC(fk=state_space_models.Bootstrap(ssm=model, data=y), N=n, resampling="systematic",
                            ESSrmin=threshold, collect=[collectors.Moments()])
        alg.run()
        return float(alg.logLt)

    return run


# ---------------------------------------------------------------- agreement and log Z error


def independent_runs(fn: Callable[[jax.Array], dict], runs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """log Z estimates (runs,) and filtering means (runs, T) of `runs` calls (keys split from `seed`)."""
    outs = [fn(k) for k in jax.random.split(jax.random.key(seed), runs)]
    return np.array([float(o["log_z"]) for o in outs]), np.array([np.asarray(o["mean"], np.float64) for o in outs])


def unbiased_z(log_z: np.ndarray, exact: float) -> float:
    """|mean(Z_hat / Z) - 1| in standard errors: Z_hat is unbiased for Z, whatever the number of particles."""
    ratio = np.exp(log_z - exact)
    se = ratio.std(ddof=1) / math.sqrt(len(ratio))
    return abs(ratio.mean() - 1.0) / se if se > 0 else (0.0 if ratio.mean() == 1.0 else math.inf)


def check_filters(data: dict, n: int, runs: int, store: dict) -> Callable[[Callable, Callable], float]:
    """Both filters return the same outputs with the same shapes; over `runs` independent calls each
    side's Z_hat / Z averages to 1 and the two sides' mean log Z agree (within 5 standard errors), and
    each side's filtering means average to the Kalman means at every step (within a t bound corrected
    for the T steps: a false alarm rate of 1e-3). Returns the largest deviation of the log Z tests in
    standard errors; keeps the log Z draws in `store`."""
    exact, exact_means = exact_log_z(data), exact_filtering_means(data)
    bound = stats.t.ppf(1 - 1e-3 / (2 * data["T"]), runs - 1)

    def check(pp_fn: Callable, base_fn: Callable) -> float:
        key = jax.random.key(0)
        out_p, out_b = pp_fn(key), base_fn(key)
        assert sorted(out_p) == sorted(out_b), f"outputs {sorted(out_p)} vs {sorted(out_b)}"
        for name in out_p:
            assert (out_p[name].shape, out_p[name].dtype) == (out_b[name].shape, out_b[name].dtype), \
                f"{name}: {out_p[name].shape} {out_p[name].dtype} vs {out_b[name].shape} {out_b[name].dtype}"
        worst = 0.0
        for side, fn in (("pplang", pp_fn), ("baseline", base_fn)):
            store[side], means = independent_runs(fn, runs, 1 if side == "pplang" else 2)
            z = unbiased_z(store[side], exact)
            assert z < 5.0, f"{side}: mean Z_hat / Z is {z:.1f} standard errors from 1; the filters differ"
            worst = max(worst, z)
            t = np.abs(means.mean(axis=0) - exact_means) / (means.std(axis=0, ddof=1) / math.sqrt(runs))
            assert t.max() < bound, (f"{side}: filtering mean at step {t.argmax()} is {t.max():.1f} standard errors "
                                     f"from the Kalman mean (bound {bound:.1f}); the filters differ")
        a, b = store["pplang"], store["baseline"]
        se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        z = abs(a.mean() - b.mean()) / se
        assert z < 5.0, (f"mean log Z: pplang {a.mean():.3f}, baseline {b.mean():.3f} ({z:.1f} se apart); "
                         "the filters differ")
        return max(worst, z)

    return check


# ---------------------------------------------------------------- the runs


@dataclass
class Mode:
    """Problem sizes and measuring effort."""

    sizes: tuple[int, ...]
    T: int
    jax_budget_s: float  # seconds of interleaved warm calls, pplang vs hand-written JAX, per size
    particles_budget_s: float  # ... pplang vs `particles`
    runs: int  # independent runs for the log Z error (and the agreement check)
    settings: harness.Settings


MODES = {
    "full": Mode((1000, 10_000, 100_000), 100, 20.0, 10.0, 20, harness.Settings(compile_reps=5, min_rounds=20)),
    "quick": Mode((1000, 10_000, 100_000), 100, 3.0, 2.0, 10, harness.Settings(compile_reps=2, min_rounds=5)),
    "smoke": Mode((100,), 20, 0.05, 0.05, 30, harness.Settings(compile_reps=1, min_rounds=3, warmup_calls=2)),
}


@dataclass
class SmcRow:
    """One number of particles: the harness result against JAX, the timings against `particles`, and
    the log Z errors (estimate - exact) of every filter."""

    n: int
    jax: harness.Result
    pp_smc_call_s: float  # one whole pp.smc(...) call, warm (binding the data, running, building the result)
    particles_warm_s: float | None
    pplang_vs_particles_warm_s: float | None  # pplang's median in the interleaved run against `particles`
    particles_rounds: int
    log_z_error: dict[str, tuple[float, float]]  # filter -> (mean, sd) of log Z_hat - log Z
    runs: int


def time_pp_smc(data: dict, n: int, calls: int = 5) -> float:
    """Median seconds of a whole warm `pp.smc` call (data binding, the compiled filter, the result object)."""
    import pplang as pp

    smc = smc_module().smc
    model = pp.load(str(MODEL_PATH))["lgssm"]
    smc(model, data, particles=n, seed=0)
    times = []
    for s in range(calls):
        t0 = time.perf_counter()
        result = smc(model, data, particles=n, seed=s + 1)
        jax.block_until_ready(result.log_weights)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run_size(n: int, mode: Mode, log: Callable[[str], None]) -> SmcRow:
    data = make_data(mode.T)
    exact = exact_log_z(data)
    store: dict[str, np.ndarray] = {}
    case = harness.Case(f"smc N={n}", "smc", lambda: pplang_filter(data, n), lambda: jax_filter(data, n),
                        (jax.random.key(0),), check_filters(data, n, mode.runs, store), mode.jax_budget_s,
                        f"bootstrap filter, T={mode.T}, systematic resampling at ESS < {ESS_THRESHOLD} N")
    result = harness.run_case(case, mode.settings, log=log)
    errors = {"pplang": store["pplang"] - exact, "hand-written JAX": store["baseline"] - exact}
    pf = particles_filter(data, n)
    particles_s = pplang_s = None
    rounds = 0
    if pf is not None:
        log(f"[smc N={n}] pplang vs particles ~{mode.particles_budget_s:.1f}s")
        seeds = iter(range(10**9))
        tf, tg = harness.measure_warm(jax.jit(pplang_filter(data, n)), lambda key: pf(next(seeds)),
                                      (jax.random.key(0),), mode.particles_budget_s,
                                      harness.Settings(0, min_rounds=3, warmup_calls=1))
        pplang_s, particles_s, rounds = float(np.median(tf)), float(np.median(tg)), len(tf)
        log(f"[smc N={n}] particles: {mode.runs} runs for the log Z error")
        errors["particles"] = np.array([pf(10_000 + s) for s in range(mode.runs)]) - exact
    log(f"[smc N={n}] whole pp.smc calls")
    call_s = time_pp_smc(data, n)
    stats_ = {k: (float(v.mean()), float(v.std(ddof=1))) for k, v in errors.items()}
    return SmcRow(n, result, call_s, particles_s, pplang_s, rounds, stats_, mode.runs)


# ---------------------------------------------------------------- report


def fmt_error(mean_sd: tuple[float, float] | None) -> str:
    return "n/a" if mean_sd is None else f"{mean_sd[0]:+.3f} ± {mean_sd[1]:.3f}"


def report(rows: list[SmcRow], mode_name: str, mode: Mode, elapsed_s: float, load: tuple[float, float]) -> str:
    dev = jax.devices()[0]
    data = make_data(mode.T)
    lines = [
        HEADING,
        "",
        f"`benchmarks/smc_bench.py`, mode `{mode_name}`, {datetime.date.today().isoformat()}; JAX {jax.__version__} "
        f"on {dev.platform} ({dev.device_kind}), {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
        f"run took {elapsed_s:.0f} s; 1-minute load average {load[0]:.1f} at the start, {load[1]:.1f} at the end.",
        "",
        f"Model `models/lgssm.ppl`: x[0] ~ N(0, s0), x[t] ~ N({data['a']} x[t-1], {data['q']}), "
        f"y[t] ~ N(x[t], {data['r']}), T = {mode.T}, data simulated with seed 0 (`make_data`), exact "
        f"log Z = {exact_log_z(data):.3f} (Gaussian density of the stacked y, the Kalman filter's value). "
        f"All filters: bootstrap proposal, systematic resampling when ESS < {ESS_THRESHOLD} N, filtering "
        "means kept. pplang: the jitted filter of `pp.smc` (no tracing or data binding in the timed call); "
        "hand-written JAX: `jax_filter` (one `lax.scan`, particles as vectors, the same outputs); "
        "`particles`: its `SMC` with a `Bootstrap` Feynman-Kac model and a `Moments` collector.",
        "",
        "Warm: medians of interleaved calls (order alternating per round), as in `benchmarks/run.py`. "
        "Ratio: pplang / hand-written JAX. Compile: trace+lower+XLA through the AOT API, persistent cache off.",
        "",
        "| N | pplang warm | hand-written JAX warm | ratio | ratio p10 | 10-block range | pplang compile "
        "| JAX compile | whole `pp.smc` call |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r = row.jax
        lines.append(f"| {row.n} | {harness.fmt_time(r.pplang_warm_s)} | {harness.fmt_time(r.baseline_warm_s)} | "
                     f"{r.ratio:.3f} | {r.ratio_p10:.3f} | {r.block_min:.3f}–{r.block_max:.3f} | "
                     f"{harness.fmt_time(r.pplang_compile.total_s)} | {harness.fmt_time(r.baseline_compile.total_s)} | "
                     f"{harness.fmt_time(row.pp_smc_call_s)} |")
    lines += [
        "",
        "Against `particles` (NumPy; interleaved with pplang's jitted filter, fewer rounds since a call takes up "
        "to seconds) and log Z error, log Z_hat - log Z, mean ± sd over independent runs:",
        "",
        "| N | pplang warm | `particles` warm | `particles` / pplang | rounds | log Z error pplang "
        "| hand-written JAX | `particles` | runs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        speed = ("n/a" if row.particles_warm_s is None
                 else f"{row.particles_warm_s / row.pplang_vs_particles_warm_s:.2f}")
        lines.append(f"| {row.n} | {harness.fmt_time(row.pplang_vs_particles_warm_s or math.nan)} | "
                     f"{harness.fmt_time(row.particles_warm_s or math.nan)} | {speed} | {row.particles_rounds} | "
                     f"{fmt_error(row.log_z_error['pplang'])} | {fmt_error(row.log_z_error['hand-written JAX'])} | "
                     f"{fmt_error(row.log_z_error.get('particles'))} | {row.runs} |")
    lines += ["", "Details (compile phases, median):", "", harness.details_table([row.jax for row in rows]),
              "", "(check: the agreement checks' largest deviation, in standard errors, not a relative error.)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    run = harness.command_line(__doc__, argv)
    mode = MODES[run.mode]
    rows = [run_size(n, mode, log=lambda s: print(s, file=sys.stderr)) for n in mode.sizes]
    text = report(rows, run.mode, mode, *run.elapsed())
    return run.finish(HEADING, text, {"results": [{**asdict(row), "jax": row.jax.as_dict()} for row in rows]})

if __name__ == "__main__":
    sys.exit(main())
