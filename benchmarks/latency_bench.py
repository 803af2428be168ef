"""Repeated calls: the whole of a user's call of `pp.fit`, `pp.smc` and `pp.sample`, cold and warm,
against hand-written JAX doing the same computation, in one process.

    python benchmarks/latency_bench.py [--quick | --smoke] [--out FILE] [--json FILE]

What a user waits for is the whole call: binding and checking the data, building the estimator or
filter, compiling, running, and turning the outcome into numpy arrays. The other benchmarks time the
compiled computations; this one times the calls. Rows:

* `fit`: `pp.fit(logreg, logreg_mf, "elbo", data, steps=S, num_draws=1000)` (models/logreg.ppl,
  the written mean-field guide, Adam at 0.01, chunks of 100 steps, `computed=False` so that both
  sides do the same work; by default pp.fit also keeps the N-vector `eta` per draw) against one
  jitted hand-written function: the same S Adam steps in a `lax.scan` (vi_bench's estimator), then
  1000 draws from the fitted guide, all outputs moved to numpy. Twice: at pp.fit's default of
  2000 steps on N = 5000, D = 20, and a short fit (200 steps, N = 500, D = 5) where pplang's fixed
  per-call work shows most;
* `smc`: `pp.smc(lgssm, data, particles=N)` against smc_bench's hand-written bootstrap filter (one
  jitted `lax.scan`, the same outputs), the log evidence read as a float;
* `sample`: `pp.sample(eight_schools, data, chains=C, warmup=W, draws=W)` against blackjax's NUTS and
  window adaptation on mcmc_bench's hand-written log density, vmapped over chains in one jitted call;
* `vi step`: one jitted call of `Problem.value_and_grad` plus an Adam update on a small problem
  (N = 50, D = 3), where per-call work, not arithmetic, sets the time, against the same step by hand.

Cold: what a new Python process waits for, from `pp.load` of the file (its front end included) to
the end of the first call, against building and calling the hand-written jitted function; each
measured in a process of its own (imports done before the clock starts) with JAX's persistent
compilation cache off; median of a few repetitions, alternating which side goes first. Warm: calls
with a new seed each time, interleaved round by round as in the harness of run.py; medians and their
ratio (pplang / hand-written). Each pair is checked before it is timed: the mean objective of the
fits, the filters' log evidence, the samplers' posterior mean and the steps' estimates (as vi_bench
checks them) must agree within 5 standard errors; the report gives the z.
"""

from __future__ import annotations

import datetime
import itertools
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import jax
import jax.numpy as jnp
import mcmc_bench
import numpy as np
import optax
import smc_bench
import vi_bench

HERE = Path(__file__).resolve().parent

HEADING = "# Repeated calls: whole API calls vs hand-written JAX, cold and warm"
LEARNING_RATE = 0.01
CHUNK = 100  # pp.fit's default chunk; the fit's steps are a multiple of it


@dataclass(frozen=True)
class Mode:
    fits: tuple[tuple[int, int, int], ...]  # (N, D, steps) of each fit row
    fit_draws: int
    particles: int
    T: int  # time steps of the state-space model
    chains: int
    mcmc_steps: int  # warmup and draws each
    cold_reps: int
    budget_s: float  # warm timing per row


FITS = ((5000, 20, 2000), (500, 5, 200))
MODES = {"full": Mode(FITS, 1000, 1000, 100, 4, 200, 3, 20.0),
         "quick": Mode(FITS, 1000, 1000, 100, 4, 200, 2, 5.0),
         "smoke": Mode(((50, 2, 100),), 50, 100, 10, 2, 30, 1, 0.3)}


@dataclass
class Pair:
    """One API call two ways. `make_*` build a side afresh (its first call compiles) and return
    `run(seed)`, which does the whole call and returns what the check reads."""

    name: str
    notes: str
    make_pplang: Callable[[], Callable[[int], Any]]
    make_hand: Callable[[], Callable[[int], Any]]
    check: Callable[[Callable, Callable], float]


@dataclass
class Row:
    name: str
    notes: str
    cold_pplang: float
    cold_hand: float
    warm_pplang: float
    warm_hand: float
    ratio: float
    p10: float
    block_lo: float
    block_hi: float
    rounds: int
    check: float


def z_of(a: np.ndarray, b: np.ndarray) -> float:
    """|mean a - mean b| in standard errors of the difference (independent samples)."""
    se = math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
    return float(abs(np.mean(a) - np.mean(b)) / se) if se > 0 else 0.0


# ---------------------------------------------------------------- fit


def fit_pair(mode: Mode, which: int) -> Pair:
    import pplang as pp

    n, d, steps = mode.fits[which]
    data = vi_bench.make_data(n, d)
    m = mode.fit_draws

    def make_pplang() -> Callable[[int], Any]:
        module = pp.load(str(vi_bench.MODEL_PATH))
        model, guide = module["logreg"], module["logreg_mf"]
        rate = LEARNING_RATE

        def run(seed: int) -> Any:
            return pp.fit(model, guide, "elbo", data, steps=steps, chunk=CHUNK, num_draws=m, seed=seed,
                          learning_rate=rate, progress=False, computed=False)

        return run

    def make_hand() -> Callable[[int], Any]:
        h = vi_bench.hand(data)
        opt = optax.adam(LEARNING_RATE)
        loop = vi_bench.scan_steps(vi_bench.adam_step(h.value_and_grad, opt), steps)

        def whole(key: jax.Array) -> tuple:
            q = {"b_loc": jnp.float32(0.0), "b_scale": jnp.log(jnp.float32(0.1)), "w_loc": jnp.zeros(d),
                 "w_scale": jnp.full(d, jnp.log(0.1))}  # logreg_mf's initial values, unconstrained
            params = {"p": {}, "q": q}
            params, _, values = loop(params, opt.init(params), key)
            q = params["q"]
            kb, kw = jax.random.split(jax.random.fold_in(key, steps))
            draws = {"b": q["b_loc"] + jnp.exp(q["b_scale"]) * jax.random.normal(kb, (m,)),
                     "w": q["w_loc"] + jnp.exp(q["w_scale"]) * jax.random.normal(kw, (m, d))}
            return params, values, draws

        fn = jax.jit(whole)

        def run(seed: int) -> Any:
            return jax.tree.map(np.asarray, fn(jax.random.key(seed)))

        return run

    def check(f: Callable, g: Callable) -> float:
        """The same objective, optimizer and start: over 20 seeds a side, the mean objective of the
        last half of the steps agrees within 5 standard errors (a learning rate or an objective
        of its own moves it by many); and the draws have the same shapes."""
        a = np.array([np.mean(f(s).values[steps // 2:]) for s in range(20)])
        b = np.array([np.mean(g(s)[1][steps // 2:]) for s in range(20)])
        z = z_of(a, b)
        assert z < 5, f"fit: mean objectives differ by {z:.1f} standard errors"
        assert f(0).draws["w"].shape == g(0)[2]["w"].shape
        return z

    return Pair(f"fit N={n} D={d}, {steps} steps", f"{steps} Adam steps, {m} guide draws", make_pplang, make_hand,
                check)


# ---------------------------------------------------------------- smc


def smc_pair(mode: Mode, which: int = 0) -> Pair:
    import pplang as pp

    data = smc_bench.make_data(mode.T)
    n = mode.particles

    def make_pplang() -> Callable[[int], Any]:
        model = pp.load(str(smc_bench.MODEL_PATH))["lgssm"]
        return lambda seed: pp.smc(model, data, particles=n, seed=seed).log_marginal_likelihood

    def make_hand() -> Callable[[int], Any]:
        fn = jax.jit(smc_bench.jax_filter(data, n))
        return lambda seed: float(fn(jax.random.key(seed))["log_z"])

    def check(f: Callable, g: Callable) -> float:
        """Both estimate the same log evidence: means over 20 runs within 5 standard errors."""
        a, b = np.array([f(s) for s in range(20)]), np.array([g(s) for s in range(20)])
        z = z_of(a, b)
        assert z < 5, f"smc: log evidence differs by {z:.1f} standard errors"
        return z

    return Pair(f"smc N={n} T={mode.T}", "bootstrap filter, systematic resampling at ESS < N/2", make_pplang,
                make_hand, check)


# ---------------------------------------------------------------- sample


def sample_pair(mode: Mode, which: int = 0) -> Pair:
    bench = mcmc_bench.BENCHES["eight_schools"]
    mm = mcmc_bench.Mode(mode.chains, mode.mcmc_steps, mode.mcmc_steps, 1, 0, 0)
    data = bench.data(mm)

    def check(f: Callable, g: Callable) -> float:
        """The same posterior: the mean of mu within 5 standard errors (bulk ESS of each side)."""
        (a, _), (b, _) = f(0), g(0)
        ma, mb = np.asarray(a["mu"]), np.asarray(b["mu"])
        se = math.sqrt(np.var(ma) / mcmc_bench.min_ess({"mu": ma}) + np.var(mb) / mcmc_bench.min_ess({"mu": mb}))
        z = float(abs(ma.mean() - mb.mean()) / se)
        assert z < 5, f"sample: posterior means of mu differ by {z:.1f} standard errors"
        return z

    return Pair(f"sample eight schools, {mode.chains} chains", f"NUTS, {mode.mcmc_steps} warmup + "
                f"{mode.mcmc_steps} draws per chain", lambda: mcmc_bench.make_pplang(bench, data, mm),
                lambda: mcmc_bench.make_blackjax(bench, data, mm), check)


# ---------------------------------------------------------------- one jitted VI step


def step_pair(mode: Mode, which: int = 0) -> Pair:
    data = vi_bench.make_data(50, 3)
    opt = optax.adam(LEARNING_RATE)

    def start(problem: Any) -> tuple:
        params = problem.init_params(0)
        return params, opt.init(params)

    def make_pplang() -> Callable[[int], Any]:
        problem = vi_bench.pplang_problem(data, "written")
        step = jax.jit(vi_bench.adam_step(problem.value_and_grad, opt))
        params, opt_state = start(problem)
        return lambda seed: step(params, opt_state, jax.random.key(seed))

    def make_hand() -> Callable[[int], Any]:
        step = jax.jit(vi_bench.adam_step(vi_bench.hand(data).value_and_grad, opt))
        params, opt_state = start(vi_bench.pplang_problem(data, "written"))  # the same parameter tree
        return lambda seed: step(params, opt_state, jax.random.key(seed))

    def check(f: Callable, g: Callable) -> float:
        problem = vi_bench.pplang_problem(data, "written")
        return vi_bench.check_estimators(problem.value_and_grad, vi_bench.hand(data).value_and_grad,
                                         problem.init_params(0), 2000)

    return Pair("vi step N=50 D=3", "jitted Problem.value_and_grad + Adam update, called from Python",
                make_pplang, make_hand, check)


# ---------------------------------------------------------------- timing


PAIRS: dict[str, Callable[..., Pair]] = {"fit": fit_pair, "smc": smc_pair, "sample": sample_pair,
                                         "step": step_pair}


def cold_child(kind: str, which: int, mode_name: str, side: str) -> float:
    """In this (fresh) process: seconds from building the side to the end of its first call."""
    jax.config.update("jax_enable_compilation_cache", False)
    pair = PAIRS[kind](MODES[mode_name], which)
    make = pair.make_pplang if side == "pplang" else pair.make_hand
    t0 = time.perf_counter()
    jax.block_until_ready(make()(0))
    return time.perf_counter() - t0


def cold(kind: str, which: int, mode_name: str, side: str) -> float:
    """A cold call, measured in a new process (nothing compiled or cached in this one counts)."""
    out = subprocess.run([sys.executable, __file__, "--cold", kind, str(which), mode_name, side], check=True,
                         capture_output=True, text=True, cwd=HERE)
    return float(out.stdout.strip().splitlines()[-1])


def run_pair(kind: str, which: int, mode_name: str, log: Callable[[str], None]) -> Row:
    mode = MODES[mode_name]
    pair = PAIRS[kind](mode, which)
    log(f"[{pair.name}] cold x{mode.cold_reps}, one process each")
    tp, th = [], []
    for r in range(mode.cold_reps):
        sides = [("pplang", tp), ("hand", th)]
        for side, out in sides if r % 2 == 0 else sides[::-1]:
            out.append(cold(kind, which, mode_name, side))
    f, g = pair.make_pplang(), pair.make_hand()
    log(f"[{pair.name}] checking agreement")
    err = pair.check(f, g)
    log(f"[{pair.name}] warm ~{mode.budget_s:.0f}s")
    seeds = itertools.count(1)
    settings = harness.Settings(compile_reps=0, min_rounds=5, warmup_calls=3)
    tf, tg = harness.measure_warm(lambda: f(next(seeds)), lambda: g(next(seeds)), (), mode.budget_s, settings)
    blocks = harness.block_ratios(tf, tg)
    pm, hm = float(np.median(tf)), float(np.median(tg))
    return Row(pair.name, pair.notes, float(np.median(tp)), float(np.median(th)), pm, hm, pm / hm,
               float(np.quantile(tf, 0.1) / np.quantile(tg, 0.1)), float(blocks.min()), float(blocks.max()),
               len(tf), err)


def report(rows: list[Row], mode_name: str, elapsed: float, load: tuple[float, float]) -> str:
    t = harness.fmt_time
    lines = [HEADING, "",
             f"`.venv/bin/python benchmarks/latency_bench.py`, mode `{mode_name}`, {datetime.date.today()}; "
             f"JAX {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} CPU cores, Python "
             f"{platform.python_version()}; run took {elapsed:.0f} s; 1-minute load average {load[0]:.1f} at the "
             f"start, {load[1]:.1f} at the end.", "",
             "The whole call as a user makes it (binding and checking the data, building, compiling, running, "
             "results as numpy) against hand-written JAX doing the same computation in one jitted function. "
             "Cold: in a new process each, from `pp.load` (front end included) to the end of the first call, against "
             "building and calling the hand-written jitted function, persistent compilation cache off, median of the "
             "repetitions. Warm: later calls with new "
             "seeds, interleaved round by round; ratio = pplang median / hand-written median.", "",
             "| call | pplang warm | hand-written warm | ratio | ratio p10 | 10-block range | rounds | pplang cold | "
             "hand-written cold | cold ratio | check z | notes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {t(r.warm_pplang)} | {t(r.warm_hand)} | {r.ratio:.3f} | {r.p10:.3f} | "
                     f"{r.block_lo:.3f}–{r.block_hi:.3f} | {r.rounds} | {t(r.cold_pplang)} | {t(r.cold_hand)} | "
                     f"{r.cold_pplang / r.cold_hand:.2f} | {r.check:.2f} | {r.notes} |")
    lines += ["", "Goal: warm ratio at most 1.05. A cold pplang call also parses and checks the model file and "
              "compiles what the hand-written side does not need (the parameter initializer, the draws' sampler as "
              "its own program); a repeated call with the same model object and data reuses all of it.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--cold"]:  # a child process of `cold`
        kind, which, mode_name, side = argv[1:5]
        print(cold_child(kind, int(which), mode_name, side))
        return 0
    inv = harness.command_line(__doc__, argv)
    mode = MODES[inv.mode]
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    jobs = [("fit", k) for k in range(len(mode.fits))] + [("smc", 0), ("sample", 0), ("step", 0)]
    rows = [run_pair(kind, which, inv.mode, log) for kind, which in jobs]
    elapsed, load = inv.elapsed()
    return inv.finish(HEADING, report(rows, inv.mode, elapsed, load),
                      {"rows": [r.__dict__ for r in rows], "mode_settings": mode.__dict__})


if __name__ == "__main__":
    sys.exit(main())
