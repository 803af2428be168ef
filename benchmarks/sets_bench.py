"""Sets of any size: training throughput of a set encoder against the same written by hand in
equinox, and the time to a posterior for a new data set, amortized against pplang's NUTS and VI.

    python benchmarks/sets_bench.py [--quick | --smoke] [--out FILE]

The model is Bayesian linear regression on a set of points (examples/set_regression.ppl, `line`),
with the guide `line_q`: a deep-sets encoder (per-point MLP 4-64-64, masked mean pooling with the
log of the count, MLP 65-64-5) giving the posterior of (w, b).

* `train step B=b`: value and gradient of the mean log q(w, b | set) over a batch of b simulated
  sets padded to 64 points with masks: pplang.inference.amortized.simulation_step (what
  `pp.amortize(simulate=...)` runs per step) against the same written by hand with equinox
  (eqx.nn layers with the same weights, `jnp.where` masked pooling, jax.scipy normal log
  densities, vmapped over the batch). Agreement (values and gradients) is checked first; timing
  uses run.py's harness (interleaved warm calls, medians, compile apart). Goal: ratio <= 1.05.
* time to a posterior for new data sets of 50 points: the trained amortized guide (one warm call,
  1000 draws) against `pp.sample` (NUTS, 4 chains x 1000 draws after 1000 warmup) and `pp.fit`
  (a full-rank normal guide, 2000 steps), each timed on a data set after a first one of the same
  size (so compilation is cached where pplang caches it), with the mean error of the posterior
  means in exact-posterior sds over the data sets; and the amortized answer corrected by
  importance sampling against the model (1000 draws), which reaches NUTS's accuracy. Goal:
  >= 1000x faster at matched accuracy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import equinox as eqx
import harness
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm
from pplang.stdlib import networks as nets

import pplang as pp
from pplang.inference.amortized import SIZE_ROW, Layout, simulation_step

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "set_regression.ppl"
LENGTH = 64  # the padded length of the training sets


@dataclass(frozen=True)
class Mode:
    batches: tuple[int, ...]
    budget_s: float
    simulate: int
    epochs: int
    data_sets: int
    warmup: int
    draws: int
    fit_steps: int
    settings: harness.Settings


MODES = {
    "full": Mode((64, 256), 10.0, 16384, 10, 5, 1000, 1000, 2000, harness.Settings(compile_reps=3, min_rounds=30)),
    "quick": Mode((64,), 3.0, 4096, 4, 3, 1000, 1000, 2000, harness.Settings(compile_reps=1, min_rounds=10)),
    "smoke": Mode((8,), 0.05, 256, 1, 1, 50, 50, 50, harness.Settings(compile_reps=1, min_rounds=3, warmup_calls=2)),
}


def exact(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.stack([x, np.ones_like(x)], 1)
    cov = np.linalg.inv(np.eye(2) + X.T @ X / 0.25)
    return cov @ X.T @ y / 0.25, np.sqrt(np.diag(cov))


# ---------------------------------------------------------------- training throughput


def batch_of(b: int, seed: int = 0) -> dict[str, Any]:
    """b simulated sets of 2..64 points, padded to 64, with latents and sizes."""
    rng = np.random.default_rng(seed)
    w, bb = rng.normal(size=(2, b))
    x = rng.normal(size=(b, LENGTH))
    y = w[:, None] * x + bb[:, None] + 0.5 * rng.normal(size=(b, LENGTH))
    return {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32), "w": jnp.asarray(w, jnp.float32),
            "b": jnp.asarray(bb, jnp.float32), SIZE_ROW: jnp.asarray(rng.integers(2, LENGTH + 1, b), jnp.int32)}


def pplang_step(guide: Any) -> Callable:
    env = {"N": LENGTH}
    step = simulation_step(guide, ["w", "b"], env, Layout("N", LENGTH, ("x", "y")))

    def f(params: Any, batch: Any) -> tuple:
        v, g, _ = step(params, jax.random.key(0), None, batch)
        return v, g

    return f


def hand_step(encoder: nets.DeepSets) -> Callable:
    """The same objective by hand: the module rebuilt from the weights (a tree operation), masked
    mean pooling, the two normals."""

    def log_q(module: eqx.Module, row: Any) -> Any:
        pts = jnp.stack([row["x"], row["y"], row["x"] * row["y"], row["x"] * row["x"]], axis=1)
        mask = jnp.arange(LENGTH) < row[SIZE_ROW]
        h = module(pts, mask)
        return (norm.logpdf(row["w"], h[0], jnp.exp(h[1]))
                + norm.logpdf(row["b"], h[2] + h[4] * row["w"], jnp.exp(h[3])))

    def f(params: Any, batch: Any) -> tuple:
        template = encoder.initial("encoder", jnp.zeros((LENGTH, 4)))
        module = nets.with_weights("encoder", template, params["q"])

        def loss(m: eqx.Module) -> Any:
            return jnp.mean(jax.vmap(lambda row: log_q(m, row))(batch))

        v, g = eqx.filter_value_and_grad(loss)(module)
        return v, {"q": nets.weights("encoder", g)}

    return f


def throughput_rows(mode: Mode, log: Callable[[str], None]) -> list[harness.Result]:
    module = pp.load(str(EXAMPLE))
    guide = module["line_q"]
    encoder = guide.hosts["encoder"]
    template = encoder.initial("encoder", jnp.zeros((LENGTH, 4)))
    params = {"q": nets.weights("encoder", template)}
    out = []
    for b in mode.batches:
        batch = batch_of(b)

        def check(f: Callable, g: Callable, batch: Any = batch) -> float:
            (va, ga), (vb, gb) = f(params, batch), g(params, batch)
            harness.assert_close(va, vb, 1e-5, "objective")
            return harness.assert_close(ga, gb, 1e-4, "gradient")

        case = harness.Case(f"train step B={b}", "train", lambda: pplang_step(pp.load(str(EXAMPLE))["line_q"]),
                            lambda: hand_step(encoder), (params, batch), check, mode.budget_s,
                            f"value and gradient of mean log q over {b} sets padded to {LENGTH}")
        out.append(harness.run_case(case, mode.settings, log))
    return out


# ---------------------------------------------------------------- time to a posterior


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t0


def corrected(amortized: pp.AmortizedPosterior, data: dict[str, Any]) -> dict[str, np.ndarray]:
    """The amortized answer corrected by importance sampling against the model (1000 draws), as
    weighted-mean-preserving resampled draws."""
    imp = amortized.importance_sampling(data, num_samples=1000)
    w = imp.weights
    return {a: np.asarray([np.sum(w * imp.samples[a])]) for a in ("w", "b")}


def time_to_posterior(mode: Mode, log: Callable[[str], None]) -> list[str]:
    module = pp.load(str(EXAMPLE))
    model, guide = module["line"], module["line_q"]
    log(f"[time to posterior] training on {mode.simulate} simulations x {mode.epochs} epochs")
    amortized, t_train = timed(lambda: pp.amortize(model, guide, simulate=mode.simulate, sizes=(2, 64),
                                                   epochs=mode.epochs, learning_rate=3e-3, progress=False))
    rng = np.random.default_rng(7)
    sets = []
    for _ in range(mode.data_sets + 1):
        w, b = rng.normal(size=2)
        x = rng.normal(size=50)
        sets.append((x, w * x + b + 0.5 * rng.normal(size=50)))
    methods: dict[str, Callable] = {
        "amortized": lambda d: amortized.posterior(d, num_samples=1000, computed=False).draws,
        "amortized + importance correction": lambda d: corrected(amortized, d),
        "NUTS": lambda d: {a: np.asarray(v).reshape(-1) for a, v in pp.sample(
            model, {**d, "N": 50}, warmup=mode.warmup, draws=mode.draws, progress=False).draws.items()},
        "VI": lambda d: pp.fit(model, "full_rank", data={**d, "N": 50}, steps=mode.fit_steps,
                               progress=False).draws,
    }
    rows = [f"trained in {t_train:.1f} s (compile {amortized.info['timings'].compile_s:.1f} s) on {mode.simulate} "
            f"simulations x {mode.epochs} epochs, sizes 2..64", "",
            "| method | time to the posterior of a new 50-point set (median) | mean error of posterior means "
            "(exact sds) | speed-up of amortized |", "|---|---|---|---|"]
    times: dict[str, list[float]] = {}
    errors: dict[str, list[float]] = {}
    for name, run in methods.items():
        log(f"[time to posterior] {name}")
        x0, y0 = sets[0]
        run({"x": x0, "y": y0})  # compiles; later sets of the same size reuse it where pplang caches
        for x, y in sets[1:]:
            draws, t = timed(lambda x=x, y=y, run=run: run({"x": x, "y": y}))
            mean, sd = exact(x, y)
            errors.setdefault(name, []).append(float(np.mean(np.abs(
                np.array([np.mean(draws["w"]), np.mean(draws["b"])]) - mean) / sd)))
            times.setdefault(name, []).append(t)
    base = statistics.median(times["amortized"])
    for name in methods:
        t = statistics.median(times[name])
        rows.append(f"| {name} | {harness.fmt_time(t)} | {np.mean(errors[name]):.3f} | "
                    f"{'' if name == 'amortized' else f'{t / base:,.0f}x'} |")
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    mode = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]

    def log(s: str) -> None:
        print(s, file=sys.stderr)

    results = throughput_rows(mode, log)
    text = ["# Sets of any size: set-encoder training step vs hand-written equinox, time to a posterior", "",
            harness.table(results), "", "## Time to a posterior", "", *time_to_posterior(mode, log)]
    print("\n".join(text))
    if args.out:
        Path(args.out).write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
