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
* `ELBO step B=b`: value and gradient of the mean ELBO over b data sets of 2..64 points padded to
  64 (copies of their last point) with their sizes: what `pp.amortize(model, guide, data=...)`
  runs per step on a collection of data sets of different sizes, the model's loop over the points
  and the guide's pooling both masked (`amortized.objective_step` over `Problem.build`), against
  the same written by hand (reparameterized draws of (w, b), the likelihood summed over the real
  points with `jnp.where`). The two draw with different key schemes, so agreement is checked in
  expectation: the means of 256 estimates of the ELBO and of every gradient entry agree within 5
  standard errors. Goal: ratio <= 1.05.
* time to a posterior for new data sets of 50 points, at matched accuracy: the guide trained twice,
  briefly (16384 simulations x 10 epochs at a constant learning rate, as before) and longer with a
  decaying rate (65536 x 20, lr_schedule="cosine"; the recipe docs/amortized.md gives), each
  training timed. Then on new data sets, one method after another per data set (so the machine's
  load falls on all alike), after a first answer that compiles: the amortized answers (one warm
  call, 1000 draws), the longer-trained one corrected by importance sampling against the model
  (1000 draws), `pp.sample` (NUTS, 4 chains x 1000 draws after 1000 warmup, and short single chains
  of 100 after 100 and 50 after 50, near the amortized answer's accuracy) and `pp.fit` (a
  full-rank normal guide, 2000 and 200 steps), each method with its own copy of the model so that
  none evicts another's cached compilations. Each row: the median time, the mean error of the posterior means in
  exact-posterior sds and the mean relative error of the sds. Below the table, for each amortized
  answer, the fastest other method at least as accurate and the ratio of their times. Goal:
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
from pplang.inference.amortized import SIZE_ROW, Layout, objective_step, simulation_step
from pplang.inference.variational import Problem

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "set_regression.ppl"
LENGTH = 64  # the padded length of the training sets


@dataclass(frozen=True)
class Mode:
    batches: tuple[int, ...]
    budget_s: float
    simulate: int
    epochs: int
    long_simulate: int
    long_epochs: int
    data_sets: int
    warmup: int
    draws: int
    small_nuts: tuple[tuple[int, int], ...]  # warmup and draws of one chain: NUTS near the amortized accuracy
    fit_steps: int
    settings: harness.Settings
    check_keys: int = 256  # estimates averaged by the ELBO rows' check in expectation


MODES = {
    "full": Mode((64, 256), 10.0, 16384, 10, 65536, 20, 20, 1000, 1000, ((100, 100), (50, 50)), 2000,
                 harness.Settings(compile_reps=3, min_rounds=30)),
    "quick": Mode((64,), 3.0, 4096, 4, 16384, 10, 5, 1000, 1000, ((100, 100), (50, 50)), 2000,
                  harness.Settings(compile_reps=1, min_rounds=10)),
    "smoke": Mode((8,), 0.05, 256, 1, 512, 1, 1, 50, 50, ((20, 20),), 50,
                  harness.Settings(compile_reps=1, min_rounds=3, warmup_calls=2), 64),
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


# ---------------------------------------------------------------- ELBO on data sets of different sizes


def elbo_batch(b: int, seed: int = 1) -> dict[str, Any]:
    """b data sets of 2..64 points padded to 64 with copies of their last point, and their sizes."""
    out = batch_of(b, seed)
    n = np.asarray(out[SIZE_ROW])
    idx = np.minimum(np.arange(LENGTH)[None, :], n[:, None] - 1)
    return {"x": jnp.take_along_axis(out["x"], jnp.asarray(idx), 1),
            "y": jnp.take_along_axis(out["y"], jnp.asarray(idx), 1), SIZE_ROW: out[SIZE_ROW]}


def pplang_elbo(module: Any, batch: dict[str, Any]) -> tuple[Callable, Any]:
    """What `pp.amortize(model, guide, data=...)` runs per step on data sets of different sizes: the
    mean ELBO over the batch, each data set's model and guide masked to its real points."""
    model, guide = module["line"], module["line_q"]
    first = {"N": LENGTH, "x": np.asarray(batch["x"][0]), "y": np.asarray(batch["y"][0])}
    target = model.summed_out(model.bind(first).observed, True, guide.sites)
    problem = Problem.build(target, guide, "elbo", first)
    step = objective_step(problem, 1, Layout("N", LENGTH, ()))

    def f(params: Any, key: Any, batch: Any) -> tuple:
        v, g, _ = step(params, key, {}, batch)
        return v, g

    return f, problem.init_params(0)


def hand_elbo(encoder: nets.DeepSets) -> Callable:
    """The same by hand: the reparameterized draws of (w, b), jax.scipy normal log densities, the
    likelihood summed over the real points with `jnp.where`, vmapped over the batch."""

    def one(module: eqx.Module, row: Any, k: Any) -> Any:
        x, y = row["x"], row["y"]
        mask = jnp.arange(LENGTH) < row[SIZE_ROW]
        h = module(jnp.stack([x, y, x * y, x * x], axis=1), mask)
        e1, e2 = jax.random.normal(k, (2,))
        w = h[0] + jnp.exp(h[1]) * e1
        b = h[2] + h[4] * w + jnp.exp(h[3]) * e2
        lq = norm.logpdf(w, h[0], jnp.exp(h[1])) + norm.logpdf(b, h[2] + h[4] * w, jnp.exp(h[3]))
        lik = jnp.where(mask, norm.logpdf(x) + norm.logpdf(y, w * x + b, 0.5), 0.0)
        return norm.logpdf(w) + norm.logpdf(b) + jnp.sum(lik) - lq

    def f(params: Any, key: Any, batch: Any) -> tuple:
        template = encoder.initial("encoder", jnp.zeros((LENGTH, 4)))
        module = nets.with_weights("encoder", template, params["q"])
        keys = jax.random.split(key, batch[SIZE_ROW].shape[0])

        def loss(m: eqx.Module) -> Any:
            return jnp.mean(jax.vmap(lambda row, k: one(m, row, k))(batch, keys))

        v, g = eqx.filter_value_and_grad(loss)(module)
        return v, {"q": nets.weights("encoder", g)}

    return f


def check_in_expectation(f: Callable, g: Callable, params: Any, batch: Any, keys: int = 256) -> float:
    """Both estimate the same ELBO and gradient with different key schemes: the means of `keys`
    estimates agree within 5 standard errors (largest |z| returned)."""
    ks = jax.random.split(jax.random.key(123), keys)
    a, b = (jax.jit(jax.vmap(lambda k, fn=fn: fn(params, k, batch)))(ks) for fn in (f, g))
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        se = np.sqrt(x.var(0) / keys + y.var(0) / keys) + 1e-9
        worst = max(worst, float(np.max(np.abs(x.mean(0) - y.mean(0)) / se)))
    assert worst < 5.0, f"pplang's and the hand-written masked ELBO differ in expectation: max |z| {worst:.2f}"
    return worst


def elbo_rows(mode: Mode, log: Callable[[str], None]) -> list[harness.Result]:
    module = pp.load(str(EXAMPLE))
    encoder = module["line_q"].hosts["encoder"]
    out = []
    for b in mode.batches:
        batch = elbo_batch(b)
        _, params = pplang_elbo(module, batch)

        def check(f: Callable, g: Callable, batch: Any = batch, params: Any = params) -> float:
            return check_in_expectation(f, g, params, batch, mode.check_keys)

        case = harness.Case(f"ELBO step B={b}", "elbo",
                            lambda batch=batch: pplang_elbo(pp.load(str(EXAMPLE)), batch)[0],
                            lambda: hand_elbo(encoder), (params, jax.random.key(0), batch), check, mode.budget_s,
                            f"value and gradient of the mean ELBO over {b} data sets of 2..{LENGTH} points, padded "
                            "and masked (model and guide)")
        out.append(harness.run_case(case, mode.settings, log))
    return out


# ---------------------------------------------------------------- time to a posterior


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t0


@dataclass
class Answer:
    """Posterior means and sds of (w, b) for one data set."""

    mean: np.ndarray
    sd: np.ndarray


def of_draws(draws: dict[str, Any]) -> Answer:
    w, b = (np.asarray(draws[a]).reshape(-1) for a in ("w", "b"))
    return Answer(np.array([w.mean(), b.mean()]), np.array([w.std(), b.std()]))


def corrected(amortized: pp.AmortizedPosterior, data: dict[str, Any]) -> Answer:
    """The amortized answer corrected by importance sampling against the model (1000 draws): the
    weighted means and sds."""
    imp = amortized.importance_sampling(data, num_samples=1000)
    w = imp.weights
    mean = np.array([np.sum(w * imp.samples[a]) for a in ("w", "b")])
    sd = np.sqrt(np.array([np.sum(w * imp.samples[a] ** 2) for a in ("w", "b")]) - mean ** 2)
    return Answer(mean, sd)


def new_sets(count: int, n: int, seed: int = 7) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(count):
        w, b = rng.normal(size=2)
        x = rng.normal(size=n)
        sets.append((x, w * x + b + 0.5 * rng.normal(size=n)))
    return sets


def time_to_posterior(mode: Mode, log: Callable[[str], None]) -> list[str]:
    """Each method answers every new data set in turn (the methods interleaved, so the machine's
    load falls on all of them alike), after one first answer that compiles; the times are medians
    over the data sets, the errors means."""
    module = pp.load(str(EXAMPLE))
    model, guide = module["line"], module["line_q"]
    trainings = {
        "short": (f"{mode.simulate} simulations x {mode.epochs} epochs at a constant learning rate 3e-3",
                  dict(simulate=mode.simulate, epochs=mode.epochs, learning_rate=3e-3, lr_schedule="constant")),
        "longer": (f"{mode.long_simulate} simulations x {mode.long_epochs} epochs, learning rate 3e-3 decaying "
                   "(lr_schedule='cosine')",
                   dict(simulate=mode.long_simulate, epochs=mode.long_epochs, learning_rate=3e-3,
                        lr_schedule="cosine")),
    }
    trained, lines = {}, []
    for name, (text, options) in trainings.items():
        log(f"[time to posterior] training ({name}): {text}")
        trained[name], t = timed(lambda options=options: pp.amortize(model, guide, sizes=(2, 64), progress=False,
                                                                    **options))
        lines.append(f"* {name} training: {text}, sizes 2..64: {t:.1f} s")

    def model_of() -> Any:
        """The model compiled anew for each method, so that no method's cached bindings and compiled
        calls push another's out of the model's caches as the methods take turns."""
        return pp.load(str(EXAMPLE))["line"]

    def nuts(chains: int, warmup: int, draws: int) -> Callable:
        own = model_of()
        return lambda d: of_draws(pp.sample(own, {**d, "N": 50}, chains=chains, warmup=warmup, draws=draws,
                                            progress=False).draws)

    def vi(steps: int) -> Callable:
        own = model_of()
        return lambda d: of_draws(pp.fit(own, "full_rank", data={**d, "N": 50}, steps=steps, progress=False).draws)

    methods: dict[str, Callable] = {
        "amortized, short training": lambda d: of_draws(trained["short"].posterior(d, num_samples=1000,
                                                                                  computed=False).draws),
        "amortized, longer training": lambda d: of_draws(trained["longer"].posterior(d, num_samples=1000,
                                                                                    computed=False).draws),
        "amortized (longer) + importance correction": lambda d: corrected(trained["longer"], d),
        f"NUTS, 4 chains x {mode.draws} ({mode.warmup} warmup)": nuts(4, mode.warmup, mode.draws),
        **{f"NUTS, 1 chain x {n} ({w} warmup)": nuts(1, w, n) for w, n in mode.small_nuts},
        f"VI full-rank, {mode.fit_steps} steps": vi(mode.fit_steps),
        f"VI full-rank, {mode.fit_steps // 10} steps": vi(mode.fit_steps // 10),
    }
    sets = new_sets(mode.data_sets + 1, 50)
    x0, y0 = sets[0]
    for name, run in methods.items():
        log(f"[time to posterior] first answer (compiles): {name}")
        run({"x": x0, "y": y0})
    times: dict[str, list[float]] = {name: [] for name in methods}
    mean_err: dict[str, list[float]] = {name: [] for name in methods}
    sd_err: dict[str, list[float]] = {name: [] for name in methods}
    log(f"[time to posterior] {mode.data_sets} new data sets")
    for x, y in sets[1:]:
        mean, sd = exact(x, y)
        for name, run in methods.items():
            answer, t = timed(lambda x=x, y=y, run=run: run({"x": x, "y": y}))
            times[name].append(t)
            mean_err[name].append(float(np.mean(np.abs(answer.mean - mean) / sd)))
            sd_err[name].append(float(np.mean(np.abs(answer.sd / sd - 1))))
    med = {name: statistics.median(ts) for name, ts in times.items()}
    err = {name: float(np.mean(e)) for name, e in mean_err.items()}
    rows = [*lines, "", f"| method | time to the posterior of a new 50-point set (median of {mode.data_sets}) | "
            "mean error of the posterior means (exact sds) | mean error of the sds (relative) | "
            "time / amortized (longer) |", "|---|---|---|---|---|"]
    base = med["amortized, longer training"]
    for name in methods:
        rows.append(f"| {name} | {harness.fmt_time(med[name])} | {err[name]:.3f} | {np.mean(sd_err[name]):.3f} | "
                    f"{med[name] / base:,.1f}x |")
    rows += ["", *matched(med, err)]
    return rows


def matched(med: dict[str, float], err: dict[str, float]) -> list[str]:
    """The speed-ups at matched accuracy: for each amortized answer, the fastest other method whose
    posterior means are at least as accurate, and the ratio of their times."""
    amortized = [name for name in med if name.startswith("amortized")]
    others = [name for name in med if name not in amortized]
    out = []
    for name in amortized:
        rivals = [o for o in others if err[o] <= err[name]]
        if not rivals:
            out.append(f"* {name} (error {err[name]:.3f}): no other method measured is as accurate")
            continue
        best = min(rivals, key=lambda o: med[o])
        out.append(f"* {name} (error {err[name]:.3f}, {harness.fmt_time(med[name])}): the fastest method at least "
                   f"as accurate is {best} (error {err[best]:.3f}, {harness.fmt_time(med[best])}), which takes "
                   f"{med[best] / med[name]:,.1f}x as long")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    mode = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]

    def log(s: str) -> None:
        print(s, file=sys.stderr)

    results = throughput_rows(mode, log) + elbo_rows(mode, log)
    text = ["# Sets of any size: set-encoder training step vs hand-written equinox, time to a posterior", "",
            harness.table(results), "", "## Time to a posterior", "", *time_to_posterior(mode, log)]
    print("\n".join(text))
    if args.out:
        Path(args.out).write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
