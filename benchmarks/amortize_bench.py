"""Amortized inference: the variational autoencoder's ELBO gradient step against a hand-written
equinox VAE, and the time to a posterior for a new data set, amortized against a fresh fit.

    python benchmarks/amortize_bench.py [--quick | --smoke] [--out FILE] [--json FILE]

The model is examples/vae.ppl with its guide examples/vae_guide.ppl: two latent coordinates, a
decoder MLP 2-128-128-64 (relu) giving the logits of 64 binomial(16, .) pixel counts, an encoder
MLP 64-128-128-4 (relu) giving each coordinate's location and log-scale, trained on the 1,797 UCI
digits of examples/digits.npz. Rows:

* `grad B`: the gradient of the mean ELBO over a batch of B images (one draw of z per image) with
  respect to both networks' weights, `pplang.inference.amortized.objective_step` (what `pp.amortize` runs
  per step) against the same written by hand with equinox (`hand_elbo`: the encoder, the
  reparameterized draw, the decoder and the densities, vmapped over the batch);
* `step B`: the same plus an optax Adam update of the weights.

Each row uses run.py's harness (agreement checked first, compile through the AOT API with the
persistent cache off, interleaved warm calls, medians, their ratio). Then, with the VAE trained,
`AmortizedPosterior.compare` on a few images: the amortized posterior of an image (one warm call)
against a full-rank guide fitted to that image alone with the decoder held fixed (`pp.fit`, its
whole wall time), and the ELBO each reaches (the amortization gap). The same for the conjugate
model of examples/amortized_normal.ppl, where the exact posterior is known.
A full run writes its section of `benchmarks/results.md`.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import gammaln
from jax.scipy.stats import norm

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
HEADING = "# Amortized inference: a VAE step vs hand-written equinox, and amortized vs per-data-set posteriors"
LEARNING_RATE = 3e-3


@dataclass(frozen=True)
class Mode:
    batches: tuple[int, ...]
    budget_s: float
    check_keys: int
    epochs: int  # training before the time-to-posterior comparison
    compare_images: int
    fit_steps: int
    settings: harness.Settings


MODES = {
    "full": Mode((64, 128, 256, 512, 1024), 15.0, 2000, 100, 5, 2000,
                 harness.Settings(compile_reps=3, min_rounds=30)),
    "quick": Mode((64, 1024), 3.0, 1000, 30, 2, 1000, harness.Settings(compile_reps=1, min_rounds=10)),
    "smoke": Mode((16,), 0.05, 200, 1, 1, 50, harness.Settings(compile_reps=1, min_rounds=3, warmup_calls=2)),
}


# ---------------------------------------------------------------- both sides


def load_vae() -> tuple[Any, Any, np.ndarray]:
    """pplang's model and guide, and the images (as the int32 pixel counts pplang binds them to)."""
    import pplang as pp

    model = pp.load(str(EXAMPLES / "vae.ppl"))["vae"]
    guide = pp.load(str(EXAMPLES / "vae_guide.ppl"))["vae_q"]
    x = np.asarray(pp.load_data(str(EXAMPLES / "digits.npz"))["x"], np.int32)
    return model, guide, x


def pplang_problem(model: Any, guide: Any, x: np.ndarray) -> Any:
    from pplang.inference.variational import Problem

    return Problem.build(model, guide, "elbo", {"x": x[0]})


def pplang_grad(problem: Any) -> Callable:
    """`(params, key, batch) -> (mean ELBO, grads)`: the step `pp.amortize` takes, without the update."""
    from pplang.inference.amortized import objective_step

    step = objective_step(problem, 1)

    def run(params: Any, key: Any, batch: Any) -> tuple:
        value, grads, _ = step(params, key, {}, {"x": batch})
        return value, grads

    return run


def layers(params: dict, name: str) -> list[tuple[Any, Any]]:
    """(weight, bias) of each Linear layer of a network, from its parameters by address."""
    found = sorted({int(a.split("[")[1].split("]")[0]) for a in params if a.startswith(name)})
    return [(params[f"{name}.layers[{i}].weight"], params[f"{name}.layers[{i}].bias"]) for i in found]


def mlp(weights: list[tuple[Any, Any]], h: Any) -> Any:
    """The MLP by hand: Linear, relu, ..., Linear, as equinox's Linear computes (W @ h + b)."""
    for k, (w, b) in enumerate(weights):
        h = w @ h + b
        if k < len(weights) - 1:
            h = jax.nn.relu(h)
    return h


def log1pexp(t: Any) -> Any:
    positive = t >= 0
    return jnp.where(positive, t, 0.0) + jnp.log1p(jnp.exp(jnp.where(positive, -t, t)))


def hand_elbo(params: dict, key: Any, batch: Any) -> Any:
    """The mean over the batch of one-draw ELBO estimates, written directly in JAX: encoder,
    reparameterized z, decoder, binomial(16, logits) log-likelihood, normal prior and guide."""
    enc, dec = layers(params["q"], "encoder"), layers(params["p"], "decoder")

    def one(x: Any, k: Any) -> Any:
        h = mlp(enc, x / 16.0)
        loc, scale = h[:2], jnp.exp(h[2:])
        z = loc + scale * jax.random.normal(k, (2,))
        logits = mlp(dec, z)
        xf = x.astype(logits.dtype)
        log_lik = jnp.sum(gammaln(17.0) - gammaln(xf + 1.0) - gammaln(17.0 - xf) + xf * logits
                          - 16.0 * log1pexp(logits))
        return log_lik + jnp.sum(norm.logpdf(z)) - jnp.sum(norm.logpdf(z, loc, scale))

    keys = jax.random.split(key, batch.shape[0])
    return jnp.mean(jax.vmap(one)(batch, keys))


def hand_grad(params: Any, key: Any, batch: Any) -> tuple:
    return jax.value_and_grad(hand_elbo)(params, key, batch)


def fresh(fn: Callable) -> Callable:
    """A new function object calling `fn`, so that jax.jit traces it anew (no trace cache hit)."""
    return lambda *args: fn(*args)


def adam_step(grad: Callable, opt: optax.GradientTransformation) -> Callable:
    def step(params: Any, opt_state: Any, key: Any, batch: Any) -> tuple:
        value, grads = grad(params, key, batch)
        updates, opt_state = opt.update(jax.tree.map(jnp.negative, grads), opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


# ---------------------------------------------------------------- agreement


def check_gradients(pp_fn: Callable, hand_fn: Callable, params: dict, batch: Any, keys: int) -> float:
    """Both sides estimate the same gradient: the means of `keys` independent estimates of the ELBO and
    of every gradient entry agree within 5 standard errors (largest |z| returned). Different key
    schemes, so single estimates differ; their expectations may not."""
    ks = jax.random.split(jax.random.key(123), keys)

    def many(fn: Callable) -> Any:
        return jax.jit(jax.vmap(lambda k: fn(params, k, batch)))(ks)

    a, b = many(pp_fn), many(hand_fn)
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        se = np.sqrt(x.var(0) / keys + y.var(0) / keys) + 1e-12
        worst = max(worst, float(np.max(np.abs(x.mean(0) - y.mean(0)) / se)))
    assert worst < 5.0, f"pplang's and the hand-written VAE gradients differ in expectation: max |z| {worst:.2f}"
    return worst


def check_densities(model: Any, guide: Any, params: dict, x: np.ndarray) -> None:
    """pplang's model and guide log densities at a fixed (x, z) equal the hand-written ones."""
    z = np.array([0.3, -1.2], np.float32)
    lp = float(model.log_density({"z": z, "x": x}, params=params["p"]))
    lq = float(guide.log_density({"z": z}, {"x": x}, params=params["q"]))
    enc, dec = layers(params["q"], "encoder"), layers(params["p"], "decoder")
    h = mlp(enc, jnp.asarray(x) / 16.0)
    logits = mlp(dec, jnp.asarray(z))
    xf = jnp.asarray(x, jnp.float32)
    hand_lp = float(jnp.sum(gammaln(17.0) - gammaln(xf + 1) - gammaln(17.0 - xf) + xf * logits
                            - 16.0 * log1pexp(logits)) + jnp.sum(norm.logpdf(z)))
    hand_lq = float(jnp.sum(norm.logpdf(z, h[:2], jnp.exp(h[2:]))))
    for a, b, what in ((lp, hand_lp, "model"), (lq, hand_lq, "guide")):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(b)), f"{what} log density: pplang {a} vs hand-written {b}"


# ---------------------------------------------------------------- rows


def cases(mode: Mode) -> list[tuple[harness.Case, str]]:
    model, guide, x = load_vae()
    problem = pplang_problem(model, guide, x)
    params = problem.init_params(0)
    check_densities(model, guide, params, x[0])
    opt = optax.adam(LEARNING_RATE)
    out = []
    for b in mode.batches:
        batch = jnp.asarray(x[:b])
        args = (params, jax.random.key(1), batch)

        def check(f: Callable, g: Callable, batch: Any = batch) -> float:
            return check_gradients(pplang_grad(problem), hand_grad, params, batch[:16], mode.check_keys)

        out.append((harness.Case(f"grad B={b}", "grad", lambda: pplang_grad(pplang_problem(model, guide, x)),
                                 lambda: fresh(hand_grad), args, check, mode.budget_s,
                                 "value_and_grad of the batch-mean ELBO, one draw per image"),
                    "max |z| of mean value and gradient entries (log densities checked exactly first)"))
        step_args = (params, opt.init(params), jax.random.key(1), batch)

        def check_step(f: Callable, g: Callable, step_args: tuple = step_args) -> float:
            (pa, _, va), (pb, _, vb) = f(*step_args), g(*step_args)
            assert np.isfinite(float(va)) and np.isfinite(float(vb))
            return harness.relative_error(jax.tree.map(lambda u, v: u - v, pa, params),
                                          jax.tree.map(lambda u, v: u - v, pb, params)) / LEARNING_RATE

        out.append((harness.Case(f"step B={b}", "step",
                                 lambda: adam_step(pplang_grad(pplang_problem(model, guide, x)), opt),
                                 lambda: adam_step(fresh(hand_grad), opt), step_args, check_step, mode.budget_s,
                                 "gradient + optax Adam update"),
                    "largest difference of the two updates / learning rate (different draws: a sanity bound, <= 2)"))
    return out


def run_rows(mode: Mode, log: Callable[[str], None]) -> list[harness.Result]:
    results = []
    for case, what in cases(mode):
        r = harness.run_case(case, mode.settings, log)
        if case.group == "step":
            assert r.check_error <= 2.0 + 1e-6, f"{case.name}: update sizes differ: {r.check_error}"
        r.extra["check_what"] = what
        results.append(r)
    return results


# ---------------------------------------------------------------- time to a posterior


def time_to_posterior(mode: Mode, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """`compare` on a few images of the trained VAE and on new data sets of the conjugate model."""
    import pplang as pp

    model, guide, x = load_vae()
    log(f"[time to posterior] training the VAE for {mode.epochs} epochs")
    t0 = time.perf_counter()
    vae = pp.amortize(model, guide, {"x": x}, epochs=mode.epochs, batch_size=64, learning_rate=LEARNING_RATE,
                      lr_schedule="constant", progress=False)
    rows = [{"what": "vae", "train_s": time.perf_counter() - t0, "compile_s": vae.info["timings"].compile_s,
             "comparisons": []}]
    rng = np.random.default_rng(0)
    for i in rng.choice(len(x), mode.compare_images, replace=False):
        log(f"[time to posterior] image {i}")
        c = vae.compare({"x": x[i]}, guide="full_rank", steps=mode.fit_steps, num_samples=4000)
        rows[0]["comparisons"].append(comparison_row(c, f"image {i}"))

    normal = pp.load(str(EXAMPLES / "amortized_normal.ppl"))
    log("[time to posterior] training the conjugate model's guide on 20000 simulations")
    t0 = time.perf_counter()
    am = pp.amortize(normal["repeated"], normal["repeated_q"], simulate=20_000, shared={"N": 5},
                     epochs=max(1, mode.epochs // 5), batch_size=64, learning_rate=3e-3, lr_schedule="constant",
                     progress=False)
    rows.append({"what": "normal", "train_s": time.perf_counter() - t0, "compile_s": am.info["timings"].compile_s,
                 "comparisons": []})
    for j in range(mode.compare_images):
        y = rng.normal(0.0, 2.0) + rng.normal(size=5)
        exact_mean = y.sum() / 5.25
        c = am.compare({"y": y}, guide="full_rank", steps=mode.fit_steps, num_samples=4000)
        row = comparison_row(c, f"data set {j}")
        row["exact_mean"], row["exact_sd"] = float(exact_mean), 5.25**-0.5
        rows[1]["comparisons"].append(row)
    return rows


def comparison_row(c: Any, label: str) -> dict[str, Any]:
    return {"label": label, "seconds_amortized": c.seconds_amortized, "seconds_fitted": c.seconds_fitted,
            "elbo_amortized": c.elbo_amortized, "elbo_amortized_se": c.elbo_amortized_se,
            "elbo_fitted": c.elbo_fitted, "elbo_fitted_se": c.elbo_fitted_se, "gap": c.gap,
            "mean_amortized": {a: np.ravel(v).tolist() for a, v in c.mean_amortized.items()},
            "mean_fitted": {a: np.ravel(v).tolist() for a, v in c.mean_fitted.items()}}


def posterior_table(rows: list[dict[str, Any]]) -> str:
    head = ["model", "data set", "amortized posterior", "per-data-set fit", "time ratio (fit / amortized)",
            "ELBO amortized", "ELBO fitted", "gap (fitted - amortized)", "posterior mean, amortized vs fitted"
            + " (vs exact)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for block in rows:
        for c in block["comparisons"]:
            means = "; ".join(f"{a}: {', '.join(f'{v:.3f}' for v in c['mean_amortized'][a])} vs "
                              f"{', '.join(f'{v:.3f}' for v in c['mean_fitted'][a])}" for a in c["mean_amortized"])
            if "exact_mean" in c:
                means += f" (exact {c['exact_mean']:.3f}, sd {c['exact_sd']:.3f})"
            cells = [block["what"], c["label"], harness.fmt_time(c["seconds_amortized"]),
                     harness.fmt_time(c["seconds_fitted"]), f"{c['seconds_fitted'] / c['seconds_amortized']:.0f}",
                     f"{c['elbo_amortized']:.3f} ± {c['elbo_amortized_se']:.3f}",
                     f"{c['elbo_fitted']:.3f} ± {c['elbo_fitted_se']:.3f}", f"{c['gap']:.3f}", means]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- report


def details(results: list[harness.Result]) -> str:
    head = ["benchmark", "rounds", "pplang trace+lower", "pplang XLA", "baseline trace+lower", "baseline XLA",
            "optimized HLO instructions (pplang / baseline)", "check", "check figure"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        p, b = r.pplang_compile, r.baseline_compile
        cells = [r.name, str(r.rounds), harness.fmt_time(p.lower_s), harness.fmt_time(p.xla_s),
                 harness.fmt_time(b.lower_s), harness.fmt_time(b.xla_s),
                 f"{p.optimized_instructions} / {b.optimized_instructions}", f"{r.check_error:.2f}",
                 r.extra["check_what"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(results: list[harness.Result], posts: list[dict[str, Any]], mode_name: str, mode: Mode,
           elapsed_s: float, load: tuple[float, float]) -> str:
    dev = jax.devices()[0]
    ratios = ", ".join(f"{r.name.split()[1]}: {r.ratio:.3f}" for r in results if r.group == "grad")
    steps = ", ".join(f"{r.name.split()[1]}: {r.ratio:.3f}" for r in results if r.group == "step")
    gaps = [c["gap"] for block in posts for c in block["comparisons"] if block["what"] == "vae"]
    speed = [c["seconds_fitted"] / c["seconds_amortized"] for block in posts for c in block["comparisons"]]
    lines = [
        HEADING, "",
        f"`.venv/bin/python benchmarks/amortize_bench.py{'' if mode_name == 'full' else ' --' + mode_name}`, "
        f"mode `{mode_name}`, {datetime.date.today().isoformat()}; JAX {jax.__version__} on {dev.platform} "
        f"({dev.device_kind}), {os.cpu_count()} CPU cores, Python {platform.python_version()}; run took "
        f"{elapsed_s:.0f} s; 1-minute load average {load[0]:.1f} at the start, {load[1]:.1f} at the end.", "",
        "Model `examples/vae.ppl` with guide `examples/vae_guide.ppl` (decoder 2-128-128-64, encoder "
        "64-128-128-4, relu; binomial(16, logits) pixels), images from `examples/digits.npz`. pplang: the step "
        "`pp.amortize` runs (`objective_step`: the generated ELBO estimator with each image's values swapped in, "
        "vmapped over the batch); baseline: the same VAE written by hand (`hand_elbo`). Columns as in run.py "
        "(ratio = pplang median / baseline median over interleaved rounds).", "",
        harness.table(results), "",
        f"Against the hand-written VAE (goal: ratio at most 1.05), gradient by batch size: {ratios}; with the Adam "
        f"update: {steps}.", "",
        "Time to a posterior for a new data set: the trained amortized guide's answer (one warm call of "
        "`posterior`, 4000 draws) against `pp.fit` of a full-rank normal guide to that data set alone, started at "
        f"the amortized answer's mean ({mode.fit_steps} steps, the model's parameters held at their trained "
        "values; wall time including its compilation), each judged by the ELBO of 4000 draws "
        "(`AmortizedPosterior.compare`). The VAE was trained "
        f"for {mode.epochs} epochs ({posts[0]['train_s']:.1f} s, {posts[0]['compile_s']:.1f} s of it compiling); "
        f"the conjugate model's guide on 20000 simulations ({posts[1]['train_s']:.1f} s).", "",
        posterior_table(posts), "",
        f"The amortized answer came {min(speed):.0f} to {max(speed):.0f} times faster than a fit; on the VAE's images "
        f"it gave up {statistics.mean(gaps):.2f} nats of ELBO on average (the amortization gap: the fit starts at the "
        "amortized answer's mean, and its family, a full-rank normal, contains the amortized one, a diagonal "
        "normal; started from the prior instead, fits to these images often end in a far worse mode of the "
        "decoder).", "",
        "Checks (before timing; the run stops if one fails): the model's and guide's log densities at a fixed point "
        "equal the hand-written ones (relative 1e-4), then the means of "
        f"{mode.check_keys} independent estimates of the ELBO and of every gradient entry agree (|z| < 5); the step "
        "rows require the two updates' sizes to agree (both Adam's first step, at most the learning rate per entry).",
        "", "Details (compile phases, median; program sizes; the check's figure):", "", details(results), "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    run = harness.command_line(__doc__, argv, "batch sizes 64 and 1024, short timings")
    mode = MODES[run.mode]

    def log(s: str) -> None:
        print(s, file=sys.stderr)

    results = run_rows(mode, log)
    posts = time_to_posterior(mode, log)
    text = report(results, posts, run.mode, mode, *run.elapsed())
    return run.finish(HEADING, text, {"results": [r.as_dict() for r in results], "posteriors": posts})

if __name__ == "__main__":
    sys.exit(main())
