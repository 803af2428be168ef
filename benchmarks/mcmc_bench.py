"""MCMC: pplang's NUTS (`pplang.inference.mcmc.sample`) against blackjax NUTS on a hand-written JAX log
density and against NumPyro's NUTS, in one process.

    python benchmarks/mcmc_bench.py [--quick | --smoke] [--out FILE] [--json FILE]

Models: eight schools, non-centred (`examples/eight_schools.ppl`, 10 parameters), a non-centred
hierarchical regression (`models/hier.ppl`, N = 2000 simulated observations in J = 50 groups) and
Bayesian logistic regression (`models/logreg.ppl`, N = 5000 simulated observations of D = 20
features).
All three run the same algorithm: NUTS with Stan's window adaptation (diagonal mass matrix, target
acceptance 0.8, maximum tree depth 10), 4 chains vectorized with `vmap`, W warmup steps and N
draws per chain. For each sampler and model it reports

* compile: seconds of the first run minus the median warm run (tracing and XLA compilation; the
  persistent compilation cache is off, so every first run compiles cold);
* warm: median seconds of one whole run (warmup and sampling), from repetitions interleaved
  round by round (the order of the samplers rotates), each repetition with another seed. Each
  side is called as a user calls it again in the same process: `pplang.inference.mcmc.sample(...)`, the
  jitted blackjax program, and NumPyro's `MCMC.run` on one `MCMC` object (with
  `jit_model_args=True`), whose sampler initialization runs again on every run;
* leapfrog steps per second: the integration steps of the N kept draws (one gradient evaluation
  each) over the whole warm run. Warmup steps are not counted on any side, so this understates
  every sampler's gradient throughput alike;
* min bulk ESS per second: ArviZ's bulk effective sample size, smallest over the parameters,
  over the warm run (the median over repetitions).

A full run writes its section of `benchmarks/results.md` (the part under the heading "MCMC"),
keeping the rest of the file.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import harness
import jax
import jax.numpy as jnp
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HEADING = "# MCMC: pplang NUTS vs blackjax on hand-written JAX vs NumPyro"
SAMPLERS = ("pplang", "blackjax", "numpyro")


@dataclass(frozen=True)
class Mode:
    chains: int
    warmup: int
    draws: int
    reps: int
    n: int  # logistic regression observations
    d: int  # and features
    hier_n: int = 2000  # hierarchical regression observations
    hier_j: int = 50  # and groups


MODES = {"full": Mode(4, 1000, 1000, 5, 5000, 20), "quick": Mode(4, 500, 500, 2, 5000, 20),
         "smoke": Mode(2, 60, 60, 1, 200, 3, 100, 5)}


@dataclass
class Row:
    model: str
    sampler: str
    compile_s: float
    warm_s: float
    leapfrog_per_s: float
    min_ess_bulk: float
    ess_per_s: float
    runs: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------- the models, three times over


def logreg_data(n: int, d: int, seed: int = 0) -> dict:
    """Features, and labels from weights drawn from the prior (as vi_bench.py simulates them)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d)
    y = rng.random(n) < 1.0 / (1.0 + np.exp(-(x @ w + 0.5)))
    return {"N": n, "D": d, "X": x, "y": y.astype(np.int32)}


def hier_data(n: int, j: int, seed: int = 0) -> dict:
    """Observations of J groups (group g[i] of observation i), simulated from the model with mu = 1,
    tau = 0.5, sigma = 1 (as hier_bench.py does)."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, j, n)
    eta = rng.normal(size=j)
    return {"N": n, "J": j, "g": g.astype(np.int32), "y": (1.0 + 0.5 * eta[g] + rng.normal(size=n)).astype(np.float32)}


def eight_schools_density(data: dict) -> Callable:
    """The non-centred eight schools log joint over (mu, log tau, theta_tilde), written by hand: the
    half-Cauchy(5) density of tau = exp(u) and its log-Jacobian u."""
    y, sigma = jnp.asarray(data["y"], jnp.float32), jnp.asarray(data["sigma"], jnp.float32)
    norm = jax.scipy.stats.norm

    def log_density(p: dict) -> jax.Array:
        tau = jnp.exp(p["log_tau"])
        lp = norm.logpdf(p["mu"], 0.0, 5.0) + jnp.log(2 / (math.pi * 5.0)) - jnp.log1p((tau / 5.0) ** 2) + p["log_tau"]
        lp += jnp.sum(norm.logpdf(p["theta_tilde"]))
        return lp + jnp.sum(norm.logpdf(y, p["mu"] + tau * p["theta_tilde"], sigma))

    return log_density


def logreg_density(data: dict) -> Callable:
    x, y = jnp.asarray(data["X"]), jnp.asarray(data["y"], jnp.float32)
    norm = jax.scipy.stats.norm

    def log_density(p: dict) -> jax.Array:
        eta = x @ p["w"] + p["b"]
        lik = jnp.sum(y * jax.nn.log_sigmoid(eta) + (1 - y) * jax.nn.log_sigmoid(-eta))
        return norm.logpdf(p["b"], 0.0, 5.0) + jnp.sum(norm.logpdf(p["w"])) + lik

    return log_density


def hier_density(data: dict) -> Callable:
    """The hierarchical regression's log joint over (mu, log tau, log sigma, eta): half-normal(5)
    densities of tau and sigma with their log-Jacobians."""
    g, y = jnp.asarray(data["g"]), jnp.asarray(data["y"])
    norm = jax.scipy.stats.norm
    half = math.log(2.0)

    def log_density(p: dict) -> jax.Array:
        tau, sigma = jnp.exp(p["log_tau"]), jnp.exp(p["log_sigma"])
        lp = norm.logpdf(p["mu"], 0.0, 5.0) + half + norm.logpdf(tau, 0.0, 5.0) + p["log_tau"]
        lp += half + norm.logpdf(sigma, 0.0, 5.0) + p["log_sigma"] + jnp.sum(norm.logpdf(p["eta"]))
        return lp + jnp.sum(norm.logpdf(y, p["mu"] + tau * p["eta"][g], sigma))

    return log_density


def eight_schools_numpyro(data: dict) -> Callable:
    import numpyro
    import numpyro.distributions as dist

    def model(sigma: jax.Array, y: jax.Array) -> None:
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        with numpyro.plate("J", int(data["J"])):
            theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
            numpyro.sample("y", dist.Normal(mu + tau * theta_tilde, sigma), obs=y)

    return model


def logreg_numpyro(data: dict) -> Callable:
    import numpyro
    import numpyro.distributions as dist

    def model(X: jax.Array, y: jax.Array) -> None:
        b = numpyro.sample("b", dist.Normal(0.0, 5.0))
        with numpyro.plate("D", int(data["D"])):
            w = numpyro.sample("w", dist.Normal(0.0, 1.0))
        with numpyro.plate("N", int(data["N"])):
            numpyro.sample("y", dist.Bernoulli(logits=X @ w + b), obs=y)

    return model


def hier_numpyro(data: dict) -> Callable:
    import numpyro
    import numpyro.distributions as dist

    def model(g: jax.Array, y: jax.Array) -> None:
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfNormal(5.0))
        sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
        with numpyro.plate("J", int(data["J"])):
            eta = numpyro.sample("eta", dist.Normal(0.0, 1.0))
        with numpyro.plate("N", int(data["N"])):
            numpyro.sample("y", dist.Normal(mu + tau * eta[g], sigma), obs=y)

    return model


@dataclass(frozen=True)
class Bench:
    """One model three ways: its pplang file, its data, the hand-written log density in unconstrained
    coordinates with the start point's shapes, its NumPyro twin and that twin's array arguments, and
    which unconstrained coordinates are logs of positive choices (mapped back for the ESS)."""

    path: Path
    model: str
    data: Callable[[Mode], dict]
    density: Callable[[dict], Callable]
    start: Callable[[dict], dict]
    numpyro: Callable[[dict], Callable]
    numpyro_args: Callable[[dict], dict]
    logs: tuple[str, ...] = ()


BENCHES = {
    "eight_schools": Bench(
        ROOT / "examples" / "eight_schools.ppl", "eight_schools",
        lambda mode: json.loads((ROOT / "examples" / "eight_schools.data.json").read_text()),
        eight_schools_density,
        lambda d: {"mu": jnp.float32(0.0), "log_tau": jnp.float32(0.0), "theta_tilde": jnp.zeros(8)},
        eight_schools_numpyro,
        lambda d: {"sigma": jnp.asarray(d["sigma"], jnp.float32), "y": jnp.asarray(d["y"], jnp.float32)},
        ("tau",)),
    "hier": Bench(
        HERE / "models" / "hier.ppl", "hier", lambda mode: hier_data(mode.hier_n, mode.hier_j), hier_density,
        lambda d: {"mu": jnp.float32(0.0), "log_tau": jnp.float32(0.0), "log_sigma": jnp.float32(0.0),
                   "eta": jnp.zeros(d["J"])},
        hier_numpyro, lambda d: {"g": jnp.asarray(d["g"]), "y": jnp.asarray(d["y"])}, ("tau", "sigma")),
    "logreg": Bench(
        HERE / "models" / "logreg.ppl", "logreg", lambda mode: logreg_data(mode.n, mode.d), logreg_density,
        lambda d: {"b": jnp.float32(0.0), "w": jnp.zeros(d["D"])},
        logreg_numpyro, lambda d: {"X": jnp.asarray(d["X"]), "y": jnp.asarray(d["y"])}),
}


# ---------------------------------------------------------------- one run of each sampler


def min_ess(draws: dict) -> float:
    """ArviZ's bulk ESS, smallest over every scalar of `draws` (chains, draws, ...)."""
    from pplang.inference.mcmc_result import arviz

    az = arviz()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = az.ess(az.from_dict(posterior={k: np.asarray(v) for k, v in draws.items()}), method="bulk")
    return float(min(np.min(ess[v].values) for v in ess.data_vars))


def make_pplang(bench: Bench, data: dict, mode: Mode) -> Callable[[int], tuple[dict, float]]:
    import pplang as pp
    from pplang.inference.mcmc import sample

    model = pp.load(str(bench.path))[bench.model]

    def run(seed: int) -> tuple[dict, float]:
        res = sample(model, data, chains=mode.chains, warmup=mode.warmup, draws=mode.draws, seed=seed,
                     progress=False)
        return res.draws, float(res.stats["n_steps"].sum())

    return run


def make_blackjax(bench: Bench, data: dict, mode: Mode) -> Callable[[int], tuple[dict, float]]:
    import blackjax

    log_density = bench.density(data)
    start = bench.start(data)

    def chain(key: jax.Array) -> tuple[dict, jax.Array]:
        k_init, k_warm, k_draw = jax.random.split(key, 3)
        x0 = jax.tree.map(lambda v: jax.random.uniform(k_init, jnp.shape(v), minval=-2.0, maxval=2.0), start)
        warm = blackjax.window_adaptation(blackjax.nuts, log_density, target_acceptance_rate=0.8)
        (state, params), _ = warm.run(k_warm, x0, num_steps=mode.warmup)
        step = blackjax.nuts(log_density, **params).step

        def body(s: object, k: jax.Array) -> tuple:
            s, info = step(k, s)
            return s, (s.position, info.num_integration_steps)

        _, (positions, steps) = jax.lax.scan(body, state, jax.random.split(k_draw, mode.draws))
        return positions, steps

    run_all = jax.jit(lambda key: jax.vmap(chain)(jax.random.split(key, mode.chains)))

    def run(seed: int) -> tuple[dict, float]:
        positions, steps = jax.block_until_ready(run_all(jax.random.key(seed)))
        for name in bench.logs:
            positions = {**positions, name: jnp.exp(positions.pop(f"log_{name}"))}
        return positions, float(steps.sum())

    return run


def make_numpyro(bench: Bench, data: dict, mode: Mode) -> Callable[[int], tuple[dict, float]]:
    from numpyro.infer import MCMC, NUTS

    model = bench.numpyro(data)
    args = bench.numpyro_args(data)
    mcmc = MCMC(NUTS(model, target_accept_prob=0.8, max_tree_depth=10), num_warmup=mode.warmup,
                num_samples=mode.draws, num_chains=mode.chains, chain_method="vectorized", progress_bar=False,
                jit_model_args=True)

    def run(seed: int) -> tuple[dict, float]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mcmc.run(jax.random.key(seed), extra_fields=("num_steps",), **args)
        draws = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
        return draws, float(np.sum(mcmc.get_extra_fields()["num_steps"]))

    return run


MAKERS = {"pplang": make_pplang, "blackjax": make_blackjax, "numpyro": make_numpyro}


def run_model(name: str, mode: Mode, log: Callable[[str], None]) -> list[Row]:
    """First (compiling) run of each sampler, then `reps` interleaved warm runs with fresh seeds."""
    bench = BENCHES[name]
    data = bench.data(mode)
    runs = {s: MAKERS[s](bench, data, mode) for s in SAMPLERS}
    first: dict[str, float] = {}
    for s in SAMPLERS:
        log(f"[{name}] {s}: first run (compiles)")
        t0 = time.perf_counter()
        runs[s](0)
        first[s] = time.perf_counter() - t0
    record: dict[str, list[dict]] = {s: [] for s in SAMPLERS}
    for r in range(mode.reps):
        order = SAMPLERS[r % 3:] + SAMPLERS[:r % 3]
        for s in order:
            log(f"[{name}] {s}: repetition {r + 1} of {mode.reps}")
            t0 = time.perf_counter()
            draws, steps = runs[s](r + 1)
            seconds = time.perf_counter() - t0
            record[s].append({"seconds": seconds, "leapfrog_steps": steps, "min_ess_bulk": min_ess(draws)})
    rows = []
    for s in SAMPLERS:
        warm = statistics.median(x["seconds"] for x in record[s])
        ess = statistics.median(x["min_ess_bulk"] for x in record[s])
        steps = statistics.median(x["leapfrog_steps"] for x in record[s])
        rows.append(Row(name, s, max(first[s] - warm, 0.0), warm, steps / warm, ess, ess / warm, record[s]))
    return rows


def report(rows: list[Row], mode_name: str, mode: Mode, elapsed: float, load: tuple[float, float]) -> str:
    lines = [HEADING, "", f"Mode {mode_name}: {mode.chains} chains, {mode.warmup} warmup steps and {mode.draws} draws "
             f"per chain, {mode.reps} interleaved repetitions; logistic regression N = {mode.n}, D = {mode.d}; "
             f"hierarchical regression N = {mode.hier_n}, J = {mode.hier_j}. "
             f"JAX {jax.__version__} on {jax.devices()[0].platform}; {elapsed:.0f} s, load average "
             f"{load[0]:.1f} -> {load[1]:.1f}.", "",
             "| model | sampler | compile | warm run | leapfrog steps/s | min bulk ESS | min bulk ESS/s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.model} | {r.sampler} | {harness.fmt_time(r.compile_s)} | {harness.fmt_time(r.warm_s)} | "
                     f"{r.leapfrog_per_s:,.0f} | {r.min_ess_bulk:.0f} | {r.ess_per_s:,.1f} |")
    lines += ["", "Leapfrog steps count the kept draws only (warmup excluded on every side); see the module's "
              "docstring.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    run = harness.command_line(__doc__, argv)
    mode = MODES[run.mode]
    rows = [row for name in BENCHES
            for row in run_model(name, mode, log=lambda s: print(s, file=sys.stderr))]
    text = report(rows, run.mode, mode, *run.elapsed())
    return run.finish(HEADING, text, {"results": [asdict(r) for r in rows]})


if __name__ == "__main__":
    sys.exit(main())
