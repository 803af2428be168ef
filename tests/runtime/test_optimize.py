"""The optimization loop: it maximizes, handles non-finite steps, converges, checkpoints, resumes exactly
and survives Ctrl-C.

The reference fit is stochastic-gradient ascent on E[-(x - 3 - eps)^2], eps ~ N(0, 1), with learning
rate 1/(2(t+1)): step t moves x to the running mean of 3 + eps_0..eps_t exactly, so the final x is
3 + mean(eps) (a standard error of 1/sqrt(steps)) and, since eps_t comes from fold_in(key, t), the
exact value can be recomputed outside the loop.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from pplang.runtime import optimize as opt
from pplang.runtime.optimize import CheckpointError, optimize

TARGET = 3.0
KEY = jax.random.key(7)


def noisy_quadratic(params, key, state):
    eps = jax.random.normal(key, params["x"].shape)
    value, grads = jax.value_and_grad(lambda p: -jnp.sum((p["x"] - TARGET - eps) ** 2))(params)
    return value, grads, state


def running_mean_sgd() -> optax.GradientTransformation:
    return optax.sgd(lambda count: 0.5 / (count + 1))


def with_baseline(params, key, state):
    """The noisy quadratic, also threading a moving average of the value (state the loop must carry)."""
    value, grads, _ = noisy_quadratic(params, key, state)
    return value, grads, {"baseline": 0.9 * state["baseline"] + 0.1 * value}


def counter(bad_steps=(), bad_grad_steps=(), key=KEY):
    """value = x, gradient 1 (so sgd(1) adds 1 per good step); NaN value at the step indices in
    `bad_steps` and NaN gradient at those in `bad_grad_steps`, recognised by their keys."""
    def key_of(t):
        return jax.random.key_data(jax.random.fold_in(key, t))

    bad = jnp.stack([key_of(t) for t in bad_steps]) if bad_steps else None
    bad_grad = jnp.stack([key_of(t) for t in bad_grad_steps]) if bad_grad_steps else None

    def hit(k, table):
        return jnp.any(jnp.all(table == jax.random.key_data(k), axis=-1)) if table is not None else False

    def step(params, k, state):
        value = jnp.where(hit(k, bad), jnp.nan, params["x"])
        grad = jnp.where(hit(k, bad_grad), jnp.nan, 1.0)
        return value, {"x": grad}, state

    return step


def equal_trees(a, b) -> bool:
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    return ta == tb and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def test_maximizes_to_the_exact_running_mean():
    steps = 2000
    r = optimize(noisy_quadratic, {"x": jnp.zeros(3)}, {}, running_mean_sgd(), steps=steps, key=KEY, chunk=64,
                 progress=False)
    eps = jax.vmap(lambda t: jax.random.normal(jax.random.fold_in(KEY, t), (3,)))(jnp.arange(steps))
    exact = TARGET + np.asarray(eps, np.float64).mean(axis=0)
    x = np.asarray(r.params["x"])
    assert r.status == "done" and r.steps == steps and r.skipped == 0 and r.first_bad_step is None
    assert r.values.shape == (steps,) and np.isfinite(r.values).all()
    np.testing.assert_allclose(x, exact, atol=2e-4)  # float32 rounding over 2000 updates
    assert np.all(np.abs(x - TARGET) < 4.5 / np.sqrt(steps))
    assert r.timings.compile_s > 0 and r.timings.run_s > 0 and r.timings.steps_per_s > 0
    assert "2000 of 2000" in r.message


def test_chunking_does_not_change_the_fit():
    runs = [optimize(noisy_quadratic, {"x": jnp.zeros(2)}, {}, optax.adam(0.05), steps=150, key=KEY, chunk=c,
                     progress=False) for c in (7, 64)]
    assert equal_trees(runs[0].params, runs[1].params)
    assert np.array_equal(runs[0].values, runs[1].values)


def test_skip_leaves_params_and_optimizer_state_unchanged_at_bad_steps():
    calls = []

    def describe(params, key, state):
        calls.append((float(params["x"]), np.asarray(jax.random.key_data(key))))
        return "x ~ normal(...) at line 3 gave NaN"

    momentum = optax.sgd(1.0, momentum=0.9)
    step = counter(bad_steps=(5,), bad_grad_steps=(12,))
    r = optimize(step, {"x": jnp.float32(0.0)}, {}, momentum, steps=40, key=KEY, chunk=8, on_nan="skip",
                 describe_nan=describe, progress=False)
    clean = optimize(counter(), {"x": jnp.float32(0.0)}, {}, momentum, steps=38, key=KEY, chunk=8, progress=False)
    assert r.status == "done" and r.steps == 40 and r.skipped == 2 and r.first_bad_step == 5
    assert equal_trees(r.params, clean.params) and equal_trees(r.opt_state, clean.opt_state)
    assert np.isnan(r.values[[5, 12]]).all() and np.isfinite(np.delete(r.values, [5, 12])).all()
    np.testing.assert_array_equal(np.delete(r.values, [5, 12]), clean.values)
    assert len(calls) == 1
    x_at_5 = clean.values[5]  # the value is x, so x before step 5 is the clean run's 6th value
    assert calls[0][0] == x_at_5
    np.testing.assert_array_equal(calls[0][1], jax.random.key_data(jax.random.fold_in(KEY, 5)))
    assert "skipped 2 steps" in r.message and "step 5" in r.message and "line 3 gave NaN" in r.message


def test_stop_returns_the_last_good_params_exactly():
    calls = []

    def describe(params, key, state):
        calls.append((float(params["x"]), np.asarray(jax.random.key_data(key))))
        return "the culprit"

    step = counter(bad_steps=(13,))
    r = optimize(step, {"x": jnp.float32(0.0)}, {}, optax.sgd(1.0), steps=40, key=KEY, chunk=4, describe_nan=describe,
                 progress=False)
    assert r.status == "nan" and r.first_bad_step == 13 and r.steps == 13 and r.skipped == 0
    assert float(r.params["x"]) == 13.0  # 13 good steps of +1
    np.testing.assert_array_equal(r.values, np.arange(13, dtype=np.float32))
    assert calls == [(13.0, calls[0][1])]
    np.testing.assert_array_equal(calls[0][1], jax.random.key_data(jax.random.fold_in(KEY, 13)))
    assert "stopped at step 13" in r.message and "the culprit" in r.message


def test_stop_at_the_first_step_of_a_chunk_and_a_failing_describe():
    def describe(params, key, state):
        raise RuntimeError("boom")

    r = optimize(counter(bad_grad_steps=(8,)), {"x": jnp.float32(0.0)}, {}, optax.sgd(1.0), steps=40, key=KEY,
                 chunk=4, describe_nan=describe, progress=False)
    assert r.status == "nan" and r.steps == 8 and float(r.params["x"]) == 8.0
    assert "describe_nan failed: RuntimeError: boom" in r.message


def test_converges_early_with_tol():
    tol, patience, chunk, window = 1e-6, 3, 25, 60

    def quadratic(params, key, state):
        value, grads = jax.value_and_grad(lambda p: -jnp.sum((p["x"] - TARGET) ** 2))(params)
        return value, grads, state

    r = optimize(quadratic, {"x": jnp.zeros(2)}, {}, optax.sgd(0.05), steps=100_000, key=KEY, chunk=chunk, tol=tol,
                 tol_window=window, patience=patience, progress=False)
    assert r.status == "converged" and r.steps < 100_000 and r.steps % chunk == 0
    # the test after each chunk: the mean of the last `window` values against the `window` before them
    calm = [opt.levelled((r.values[:end],), window, tol) for end in range(chunk, r.steps + 1, chunk)]
    assert all(calm[-patience:]) and not calm[-patience - 1]  # stopped at the first run of `patience` calm chunks
    np.testing.assert_allclose(np.asarray(r.params["x"]), TARGET, atol=1e-2)
    assert "converged" in r.message and f"last {window} steps" in r.message


def test_tol_compares_smoothed_objectives_so_a_noisy_fit_converges():
    """Values with noise of sd 1 around an optimum of 0: means of 100 steps differ by about 0.14 from
    chunk to chunk, more than tol = 0.02, so comparing them rarely finds five calm chunks in a row;
    means of 5000 steps differ by about 0.02, and the fit stops soon after the first test it can make."""

    def noisy(params, key, state):
        value, grads = jax.value_and_grad(lambda p: -jnp.sum((p["x"] - TARGET) ** 2))(params)
        return value + jax.random.normal(key), grads, state

    def run(window: int) -> opt.OptimizeResult:
        return optimize(noisy, {"x": jnp.zeros(2)}, {}, optax.sgd(0.05), steps=40_000, key=KEY, chunk=100,
                        tol=0.02, tol_window=window, patience=5, progress=False)

    smoothed = run(5000)
    assert smoothed.status == "converged" and smoothed.steps < 20_000
    assert run(100).status == "done"


def test_tol_window_is_checked():
    with pytest.raises(ValueError, match="tol_window"):
        optimize(noisy_quadratic, {"x": jnp.zeros(2)}, {}, optax.sgd(0.1), steps=10, key=KEY, tol=0.1, tol_window=0,
                 progress=False)


def test_checkpoint_and_resume_reproduce_an_uninterrupted_fit(tmp_path, monkeypatch):
    init, state = {"x": jnp.zeros(2)}, {"baseline": jnp.float32(0.0)}
    full = optimize(with_baseline, init, state, optax.adam(0.05), steps=300, key=KEY, chunk=32, progress=False)
    written = []
    save = opt.save_checkpoint

    def recording(folder, cur, key, schedule):
        written.append(cur.done)
        return save(folder, cur, key, schedule)

    monkeypatch.setattr(opt, "save_checkpoint", recording)
    half = optimize(with_baseline, init, state, optax.adam(0.05), steps=150, key=KEY, chunk=32, checkpoint=tmp_path,
                    checkpoint_every=64, progress=False)
    assert half.steps == 150 and written == [64, 128, 150]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]  # no temporary file left
    rest = optimize(with_baseline, init, state, optax.adam(0.05), steps=300, key=KEY, chunk=32, checkpoint=tmp_path,
                    resume=True, progress=False)
    assert rest.status == "done" and rest.steps == 300
    assert equal_trees(rest.params, full.params)
    assert equal_trees(rest.opt_state, full.opt_state)  # optax NamedTuples round-trip
    assert equal_trees(rest.state, full.state)
    assert np.array_equal(rest.values, full.values)


def test_resume_checks_the_checkpoint(tmp_path):
    raw_key = jax.random.PRNGKey(3)  # raw uint32 keys work as well as typed ones
    optimize(noisy_quadratic, {"x": jnp.zeros(2)}, {}, optax.adam(0.1), steps=10, key=raw_key, chunk=5,
             checkpoint=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match=r"params do not match.*\['x'\] has shape \(2,\) float32 in the "
                                              r"checkpoint but \(3,\)"):
        optimize(noisy_quadratic, {"x": jnp.zeros(3)}, {}, optax.adam(0.1), steps=20, key=raw_key,
                 checkpoint=tmp_path, resume=True, progress=False)
    with pytest.raises(CheckpointError, match=r"\['y'\] is in this fit but not in the checkpoint"):
        optimize(noisy_quadratic, {"x": jnp.zeros(2), "y": jnp.zeros(2)}, {}, optax.adam(0.1), steps=20, key=raw_key,
                 checkpoint=tmp_path, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="another optimizer"):
        optimize(noisy_quadratic, {"x": jnp.zeros(2)}, {}, optax.sgd(0.1, momentum=0.9), steps=20, key=raw_key,
                 checkpoint=tmp_path, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="another random key"):
        optimize(noisy_quadratic, {"x": jnp.zeros(2)}, {}, optax.adam(0.1), steps=20, key=jax.random.PRNGKey(4),
                 checkpoint=tmp_path, resume=True, progress=False)
    r = optimize(noisy_quadratic, {"x": jnp.zeros(2)}, {}, optax.adam(0.1), steps=10, key=raw_key,
                 checkpoint=tmp_path, resume=True, progress=False)
    assert r.steps == 10 and r.values.shape == (10,) and r.timings.steps_per_s == 0.0  # nothing left to run
    fresh = optimize(noisy_quadratic, {"x": jnp.zeros(2)}, {}, optax.adam(0.1), steps=10, key=raw_key,
                     checkpoint=tmp_path / "new", resume=True, progress=False)
    assert fresh.steps == 10 and (tmp_path / "new" / "checkpoint.npz").exists()  # no checkpoint yet: from scratch


def test_resuming_under_another_schedule_warns(tmp_path):
    """More steps under a decaying rate change the rate of the steps already taken: the resumed run
    is not the straight one, and says so; the same schedule resumes silently and exactly."""
    def run(steps, stop, resume):
        sched = optax.cosine_decay_schedule(0.1, steps, alpha=1e-3)
        return optimize(noisy_quadratic, {"x": jnp.zeros(2)}, {}, optax.adam(sched), steps=stop, key=KEY, chunk=10,
                        checkpoint=tmp_path, resume=resume, overwrite=not resume, progress=False,
                        schedule=f"cosine over {steps} steps")

    run(40, 20, False)  # interrupted after 20 of 40 steps
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same schedule: no warning
        same = run(40, 40, True)
    assert equal_trees(same.params, run(40, 40, False).params)
    run(40, 20, False)
    with pytest.warns(opt.ScheduleWarning, match="cosine over 40 steps; this run's is cosine over 80 steps"):
        run(80, 80, True)


def test_ctrl_c_returns_the_last_completed_chunk_and_checkpoints(tmp_path, monkeypatch):
    make = opt.make_chunk_runner

    class Interrupting:
        """The real runner, with Ctrl-C arriving during its third chunk."""

        def __init__(self, runner):
            self.runner, self.calls = runner, 0

        def lower(self, *args):
            compiled = self.runner.lower(*args).compile()
            outer = self

            class Lowered:
                def compile(self):
                    def call(*a):
                        outer.calls += 1
                        if outer.calls == 3:
                            raise KeyboardInterrupt
                        return compiled(*a)
                    return call
            return Lowered()

    monkeypatch.setattr(opt, "make_chunk_runner", lambda *a, **k: Interrupting(make(*a, **k)))
    r = optimize(noisy_quadratic, {"x": jnp.zeros(2)}, {}, optax.adam(0.05), steps=200, key=KEY, chunk=30,
                 checkpoint=tmp_path, progress=False)
    monkeypatch.undo()
    assert r.status == "interrupted" and r.steps == 60 and r.values.shape == (60,)
    assert "interrupted after 60 of 200" in r.message
    clean = optimize(noisy_quadratic, {"x": jnp.zeros(2)}, {}, optax.adam(0.05), steps=60, key=KEY, chunk=30,
                     progress=False)
    assert equal_trees(r.params, clean.params)
    rest = optimize(noisy_quadratic, {"x": jnp.zeros(2)}, {}, optax.adam(0.05), steps=200, key=KEY, chunk=30,
                    checkpoint=tmp_path, resume=True, progress=False)
    full = optimize(noisy_quadratic, {"x": jnp.zeros(2)}, {}, optax.adam(0.05), steps=200, key=KEY, chunk=30,
                    progress=False)
    assert equal_trees(rest.params, full.params)


def test_progress_bar_weak_types_and_bad_arguments(capsys):
    r = optimize(noisy_quadratic, {"x": jnp.asarray(0.0)}, {}, optax.adam(0.1), steps=20, key=KEY, chunk=10)
    assert r.steps == 20 and r.params["x"].dtype == jnp.float32
    assert "20/20" in capsys.readouterr().err and "objective=" not in capsys.readouterr().out
    with pytest.raises(ValueError, match="on_nan"):
        optimize(noisy_quadratic, {"x": jnp.zeros(2)}, {}, optax.adam(0.1), steps=5, key=KEY, on_nan="ignore")
    with pytest.raises(ValueError, match="checkpoint folder"):
        optimize(noisy_quadratic, {"x": jnp.zeros(2)}, {}, optax.adam(0.1), steps=5, key=KEY, resume=True)
    with pytest.raises(ValueError, match="scalar objective"):
        optimize(lambda p, k, s: (p["x"], p, s), {"x": jnp.zeros(2)}, {}, optax.adam(0.1), steps=5, key=KEY,
                 progress=False)


def test_skip_many_bad_steps_in_one_chunk_matches_a_clean_run():
    """Adjacent bad steps, one at a chunk's first step and one at its last: each is skipped exactly,
    the others applied as in a run without them."""
    bad = (0, 1, 5, 7, 8, 15)
    momentum = optax.sgd(0.5, momentum=0.9)
    r = optimize(counter(bad_grad_steps=bad), {"x": jnp.float32(0.0)}, {}, momentum, steps=24, key=KEY, chunk=8,
                 on_nan="skip", progress=False)
    clean = optimize(counter(), {"x": jnp.float32(0.0)}, {}, momentum, steps=24 - len(bad), key=KEY, chunk=8,
                     progress=False)
    assert r.status == "done" and r.steps == 24 and r.skipped == len(bad) and r.first_bad_step == 0
    assert equal_trees(r.params, clean.params) and equal_trees(r.opt_state, clean.opt_state)
    assert np.isnan(r.values[list(bad)]).all()
    np.testing.assert_array_equal(np.delete(r.values, list(bad)), clean.values)


def test_a_gradient_the_optimizer_absorbs_is_not_a_bad_step():
    """optax.zero_nans turns a NaN gradient into a zero update: the parameters stay finite, so the
    step counts (value x, no change of x) in whole chunks and in the checked last chunk alike."""
    sanitizing = optax.chain(optax.zero_nans(), optax.sgd(1.0))
    r = optimize(counter(bad_grad_steps=(3, 17)), {"x": jnp.float32(0.0)}, {}, sanitizing, steps=18, key=KEY,
                 chunk=8, on_nan="stop", progress=False)
    assert r.status == "done" and r.steps == 18 and r.skipped == 0 and r.first_bad_step is None
    assert float(r.params["x"]) == 16.0  # 18 steps of +1, two of them zero
    assert np.isfinite(r.values).all()
