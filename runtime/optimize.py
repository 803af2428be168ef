"""The optimization loop behind variational fitting: optax steps run in jitted chunks of `lax.scan`.

Python runs once per chunk of `chunk` steps, so the progress bar, convergence test, NaN report and
checkpoints cost nothing per step. Step `t` (0-based, counted over the whole fit) uses the key
`fold_in(key, t)`, so a fit resumed from a checkpoint takes exactly the steps an uninterrupted one
would, whatever the chunking.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from .archives import load_npz

Params = Any
State = Any
Key = jax.Array
Step = Callable[[Params, Key, State], tuple[jax.Array, Params, State]]

CHECKPOINT_FILE = "checkpoint.npz"
CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class Timings:
    """Seconds spent compiling the chunk runner, running chunks, and the steps per second run."""

    compile_s: float
    run_s: float
    steps_per_s: float


@dataclass
class OptimizeResult:
    """Where the loop ended: `params` are the last good ones; `values` has one entry per completed
    step (NaN for skipped steps); `status` is one of "done", "converged", "nan", "interrupted"."""

    params: Params
    opt_state: Any
    state: State
    values: np.ndarray
    steps: int
    status: str
    message: str
    skipped: int
    first_bad_step: int | None
    timings: Timings


class ScheduleWarning(UserWarning):
    """A run resumed from a checkpoint written under another learning-rate schedule."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed by this fit (missing file, other parameters or optimizer)."""


class CheckpointExists(FileExistsError):
    """A fit that does not resume would write over another run's checkpoint (see `overwrite`)."""


class Chunk(NamedTuple):
    """What the fast chunk runner returns: the state after all its steps, their values, and `ok`,
    whether every value and every leaf of that state is finite."""

    params: Params
    opt_state: Any
    state: State
    values: jax.Array
    ok: jax.Array


class Carry(NamedTuple):
    """What the checked runner threads from step to step and returns: `done` steps run in this call,
    `bad` the index of the first non-finite step (-1 while there is none; the call ends after that
    step, whose update is in `params`), `values` one entry per step run."""

    params: Params
    opt_state: Any
    state: State
    done: jax.Array
    bad: jax.Array
    values: jax.Array


class Progress(NamedTuple):
    """Host-side record of a fit, replaced whole after each chunk so an interrupt never sees half of it."""

    params: Params
    opt_state: Any
    state: State
    done: int
    values: tuple[np.ndarray, ...]
    skipped: int
    first_bad: int | None
    calm: int
    note: str


def finite(tree: Any) -> jax.Array:
    """Whether every floating-point leaf of `tree` is finite (one reduction per leaf)."""
    ok = jnp.bool_(True)
    for leaf in jax.tree.leaves(tree):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            ok = ok & jnp.all(jnp.isfinite(leaf))
    return ok


def take_step(step: Step, optimizer: optax.GradientTransformation, key: Key, t: jax.Array, params: Params,
              opt_state: Any, state: State) -> tuple[jax.Array, Params, Any, State]:
    """Step t: the objective's value, and the parameters, optimizer state and state after its update."""
    value, grads, new_state = step(params, jax.random.fold_in(key, t), state)
    if jnp.ndim(value) != 0:
        raise ValueError(f"step must return a scalar objective value, not one of shape {jnp.shape(value)}")
    value = jnp.asarray(value, float)  # the default float type: float64 under jax_enable_x64
    ascent = jax.tree.map(jnp.negative, grads)  # optax minimizes; the objective is maximized
    updates, opt_state = optimizer.update(ascent, opt_state, params)
    return value, optax.apply_updates(params, updates), opt_state, new_state


def make_chunk_runner(step: Step, optimizer: optax.GradientTransformation, chunk: int) -> Callable:
    """A jitted `(params, opt_state, state, key, start) -> Chunk` running steps start .. start+chunk-1
    in one `lax.scan`, as a hand-written loop would: nothing is checked or masked per step. Masking
    every step (selecting the old parameters where a step is not finite) made a fit of logistic
    regression about 9% slower, and a loop with a run-time length (`make_checked_runner`) about 4%;
    one finiteness test of the values and of the final state costs nothing measurable. A non-finite
    step leaves its mark there, since a NaN or infinite parameter or optimizer moment stays so."""

    def run(params: Params, opt_state: Any, state: State, key: Key, start: jax.Array) -> Chunk:
        def body(carry: tuple, t: jax.Array) -> tuple:
            value, *carry = take_step(step, optimizer, key, t, *carry)
            return tuple(carry), value

        carry, values = jax.lax.scan(body, (params, opt_state, state), start + jnp.arange(chunk, dtype=jnp.int32))
        return Chunk(*carry, values, finite(values) & finite(carry))

    return jax.jit(run)


def make_checked_runner(step: Step, optimizer: optax.GradientTransformation, chunk: int) -> Callable:
    """A jitted `(params, opt_state, state, key, start, limit) -> Carry` running steps start ..
    start+limit-1 (limit <= chunk) in one `lax.while_loop` that ends after the first non-finite step:
    one whose value is not finite or which leaves a parameter, the optimizer state or the state not
    finite (a gradient the optimizer absorbs, as optax.zero_nans or a held parameter does, is not).
    It runs a fit's last, shorter chunk and finds the first such step of a chunk whose test failed;
    `optimize` recovers the state before that step by running the steps before it again, which gives
    the same values since step t's key is fold_in(key, t)."""

    def run(params: Params, opt_state: Any, state: State, key: Key, start: jax.Array, limit: jax.Array) -> Carry:
        def body(c: Carry) -> Carry:
            t = start + c.done
            value, *carry = take_step(step, optimizer, key, t, c.params, c.opt_state, c.state)
            ok = jnp.isfinite(value) & finite(carry)
            return Carry(*carry, c.done + 1, jnp.where(ok, c.bad, t), c.values.at[c.done].set(value))

        start_carry = Carry(params, opt_state, state, jnp.int32(0), jnp.int32(-1),
                            jnp.full(chunk, jnp.nan, jnp.result_type(float)))
        return jax.lax.while_loop(lambda c: (c.done < limit) & (c.bad < 0), body, start_carry)

    return jax.jit(run)


def optimize(step: Step, params: Params, state: State, optimizer: optax.GradientTransformation, *,
             steps: int, key: Key, chunk: int = 100, on_nan: str = "stop", tol: float | None = None,
             tol_window: int | None = None, patience: int = 10, checkpoint: str | Path | None = None,
             checkpoint_every: int = 1000, resume: bool = False, overwrite: bool = False,
             progress: bool = True, progress_unit: tuple[str, int] = ("step", 1),
             describe_nan: Callable[[Params, Key, State], str] | None = None,
             cache: dict | None = None, schedule: str = "") -> OptimizeResult:
    """Maximize the objective whose estimate and ascent gradient `step(params, key, state)` returns.

    Runs until `steps` steps in all (counting steps loaded from a checkpoint), `chunk` at a time.
    - on_nan: a step is not finite when its value is not, or when its update leaves a parameter,
      the optimizer state or the state not finite (a non-finite gradient does, unless the optimizer
      absorbs it). Such a step leaves params, optimizer state and state unchanged. "skip" counts it
      and goes on; "stop" ends the fit there with the parameters of the last good step. Either way
      the first such step is reported, with the text `describe_nan(params, key, state)` gives for
      that step's inputs. Whole chunks run unchecked and are tested once at their end; a chunk that
      fails the test is run again, checked step by step (make_checked_runner), so fits without a
      bad step pay nothing for the check. A last chunk shorter than `chunk` (steps not a multiple
      of it) runs checked too, which costs one more compilation: choose `steps` a multiple of `chunk`.
    - tol: the objective is smoothed before it is compared, since one-step estimates are noisy:
      after each chunk, with a the mean of the finite values of the last `tol_window` steps and b
      that of the `tol_window` steps before them, the chunk is calm when
      |a - b| < tol * max(|a|, |b|, 1) (relative change; absolute below magnitude 1); the fit
      stops as "converged" after `patience` consecutive calm chunks. tol_window defaults to a tenth
      of `steps` (at least one chunk); the noise of a - b shrinks as 1/sqrt(tol_window).
    - checkpoint: a folder; after the first chunk that reaches each multiple of `checkpoint_every`
      steps, and when the fit ends (also on Ctrl-C), the whole state is written to
      `checkpoint/checkpoint.npz` atomically. With `resume`, an existing checkpoint is loaded and the
      fit continues from it (a missing one starts afresh); `params` and `state` then only give the
      expected structure, and `key` must be the one the checkpoint was written with. Without
      `resume`, an existing checkpoint is another run's: it is replaced only with `overwrite`
      (else CheckpointExists, before any step runs).
    - Ctrl-C ends the fit after the last completed chunk, with status "interrupted".
    - progress_unit: (name, steps per unit) of the progress bar, e.g. ("epoch", steps per epoch).
    - schedule: what the learning rate does over these steps when it varies ("cosine from 0.01 to
      1e-05 over 2000 steps"), kept in checkpoints: resuming under another schedule (more steps
      under a decaying rate) warns, since the resumed run then differs from one run straight through.
    - cache: a dict the caller keeps with `step` and `optimizer`: the runners compiled here are
      stored in it, and a later call with the same step, optimizer, chunk and argument shapes runs
      them without compiling again (the compile time it reports is then 0).
    """
    if on_nan not in ("stop", "skip"):
        raise ValueError(f"on_nan must be 'stop' or 'skip', not {on_nan!r}")
    if steps < 0 or chunk < 1 or patience < 1 or checkpoint_every < 1 or (tol_window is not None and tol_window < 1):
        raise ValueError("steps must be >= 0 and chunk, patience, checkpoint_every, tol_window >= 1")
    window = tol_window if tol_window is not None else max(chunk, steps // 10)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint folder")
    if checkpoint is not None and not resume and not overwrite and (Path(checkpoint) / CHECKPOINT_FILE).exists():
        raise CheckpointExists(f"{Path(checkpoint) / CHECKPOINT_FILE} holds another run's checkpoint")
    cache = {} if cache is None else cache
    if "start" not in cache:  # one compiled call, not one dispatch per leaf of the optimizer state
        cache["start"] = jax.jit(lambda p, s: (strong(p), strong(optimizer.init(p)), strong(s)))
    params, opt_state, state = cache["start"](params, state)
    folder = None if checkpoint is None else Path(checkpoint)
    cur = Progress(params, opt_state, state, 0, (), 0, None, 0, "")
    if resume and folder is not None and (folder / CHECKPOINT_FILE).exists():
        cur = load_checkpoint(folder, cur, key, schedule)
    if ("runners", chunk) not in cache:
        cache["runners", chunk] = {"chunk": make_chunk_runner(step, optimizer, chunk),
                                   "checked": make_checked_runner(step, optimizer, chunk)}
    runners = cache["runners", chunk]
    compiled = cache.setdefault(("compiled", chunk, signature((params, opt_state, state, key))), {})
    compile_s = run_s = 0.0
    start_done = written = cur.done
    status, stop_at = "done", None
    unit, per = progress_unit

    def units(n: int) -> float:  # whole steps stay ints, so the bar reads "20/20", not "20.0/20.0"
        return n if per == 1 else n / per

    bar = tqdm(total=units(steps), initial=units(min(cur.done, steps)), disable=not progress, unit=unit,
               dynamic_ncols=True, bar_format=None if per == 1 else "{l_bar}{bar}| {n:.1f}/{total:.0f} {unit}s "
               "[{elapsed}<{remaining}{postfix}]")

    def call(which: str, *args: Any, wait: bool = True) -> Any:
        """One call of a runner, compiled on its first call (the checked one only when needed).
        With wait=False it returns at once (JAX dispatches asynchronously), so the next chunk can
        be queued while this one runs."""
        nonlocal compile_s, run_s
        if which not in compiled:
            bar.set_postfix_str("compiling")
            t0 = time.perf_counter()
            compiled[which] = runners[which].lower(*args).compile()
            compile_s += time.perf_counter() - t0
            bar.unpause()  # the steps/s shown leave the compile time out
        t0 = time.perf_counter()
        out = compiled[which](*args)
        if wait:
            out = jax.block_until_ready(out)
        run_s += time.perf_counter() - t0
        return out

    def segment(params: Params, opt_state: Any, state: State, t: int, n: int) -> tuple[tuple, np.ndarray, int | None]:
        """Run steps t .. t+n-1 checked: (params, opt_state, state) after them and their values, or,
        when a step b is not finite, the state before b (steps t .. b-1 run again), their values, and b."""
        out = call("checked", params, opt_state, state, key, jnp.int32(t), jnp.int32(n))
        bad = int(out.bad)
        if bad < 0:
            return (out.params, out.opt_state, out.state), np.asarray(out.values)[:n], None
        if bad == t:
            return (params, opt_state, state), np.asarray(out.values)[:0], bad
        carry, values, again = segment(params, opt_state, state, t, bad - t)
        return carry, values, bad if again is None else again  # again: only where a backend is not deterministic

    ahead: tuple[int, Chunk] | None = None  # the next whole chunk, queued before this one was checked
    stopping = False  # Ctrl-C came while a chunk was being queued: stop after the running one
    try:
        while cur.done < steps:
            t, end = cur.done, min(cur.done + chunk, steps)
            carry, pieces = (cur.params, cur.opt_state, cur.state), []
            skipped, first_bad, note = cur.skipped, cur.first_bad, cur.note
            if end - t == chunk:  # a whole chunk: fast, and checked only if its final test fails
                out = ahead[1] if ahead is not None and ahead[0] == t else call("chunk", *carry, key, jnp.int32(t),
                                                                                 wait=False)
                ahead = None
                if end + chunk <= steps and not stopping:  # queue the next chunk on this one's (not yet
                    # checked) result, so the device never waits for Python; dropped if this one fails its test
                    try:
                        ahead = (end, call("chunk", out.params, out.opt_state, out.state, key, jnp.int32(end),
                                           wait=False))
                    except KeyboardInterrupt:  # Ctrl-C while queuing: this chunk still completes and counts
                        stopping = True
                t0 = time.perf_counter()
                ok = bool(out.ok)
                run_s += time.perf_counter() - t0
                if ok:
                    carry, t = (out.params, out.opt_state, out.state), end
                    pieces.append(np.asarray(out.values))
                else:
                    ahead = None  # queued on a state that is not finite
            while t < end:
                carry, vals, bad = segment(*carry, t, end - t)
                pieces.append(vals)
                if bad is None:
                    t = end
                    break
                if first_bad is None:
                    first_bad = bad
                    if describe_nan is not None:
                        note = describe(describe_nan, carry[0], jax.random.fold_in(key, bad), carry[2])
                if on_nan == "stop":
                    t, status, stop_at = bad, "nan", bad
                    break
                pieces.append(np.full(1, np.nan, vals.dtype))  # the skipped step
                skipped, t = skipped + 1, bad + 1
            vals = np.concatenate(pieces)
            finite = vals[np.isfinite(vals)]
            mean = float(finite.mean()) if finite.size else math.nan
            calm = cur.calm
            if tol is not None:
                calm = calm + 1 if levelled((*cur.values, vals), window, tol) else 0
            cur = Progress(*carry, t, (*cur.values, vals), skipped, first_bad, calm, note)
            bar.set_postfix_str(f"objective={mean:.5g}", refresh=False)
            bar.update(units(len(vals)))
            if status == "nan":
                break
            if tol is not None and calm >= patience:
                status = "converged"
                break
            if stopping:
                status = "interrupted"
                break
            if folder is not None and cur.done // checkpoint_every > written // checkpoint_every:
                save_checkpoint(folder, cur, key, schedule)
                written = cur.done
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        bar.close()
    if folder is not None:
        save_checkpoint(folder, cur, key, schedule)
    ran = cur.done - start_done
    timings = Timings(compile_s, run_s, ran / run_s if run_s > 0 else 0.0)
    values = np.concatenate(cur.values) if cur.values else np.zeros(0, np.float32)
    message = report(status, cur, steps, stop_at, tol, window, patience)
    return OptimizeResult(cur.params, cur.opt_state, cur.state, values, cur.done, status, message, cur.skipped,
                          cur.first_bad, timings)


def signature(tree: Any) -> tuple:
    """The structure, shapes and dtypes of a tree: what a compiled runner's inputs must match."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((np.shape(x), str(getattr(x, "dtype", type(x).__name__))) for x in leaves)


def describe(describe_nan: Callable[[Params, Key, State], str], params: Params, key: Key, state: State) -> str:
    """The caller's account of a non-finite step; its own failure is reported, not raised, so the
    fit's results survive a broken diagnostic."""
    try:
        return str(describe_nan(params, key, state))
    except Exception as exc:  # noqa: BLE001 - any failure here must not lose the fit
        return f"(describe_nan failed: {type(exc).__name__}: {exc})"


def levelled(values: tuple[np.ndarray, ...], window: int, tol: float) -> bool:
    """Whether the mean objective of the last `window` steps is within `tol` (relative, absolute
    below magnitude 1) of the mean of the `window` steps before them; False until there are
    2 * window steps, or when either window has no finite value."""
    tail, n = [], 0
    for piece in reversed(values):  # only the last 2 * window steps are copied, however long the fit
        tail.append(piece)
        n += len(piece)
        if n >= 2 * window:
            break
    if n < 2 * window:
        return False
    v = np.concatenate(tail[::-1])[-2 * window:]
    before, after = v[:window], v[window:]
    if not (np.isfinite(before).any() and np.isfinite(after).any()):
        return False
    a, b = float(np.nanmean(after)), float(np.nanmean(before))
    return abs(a - b) < tol * max(abs(a), abs(b), 1.0)


def report(status: str, cur: Progress, steps: int, stop_at: int | None, tol: float | None, window: int,
           patience: int) -> str:
    """One readable paragraph: why the loop ended, and any non-finite steps."""
    if status == "converged":
        text = (f"converged after {cur.done} steps: the mean objective of the last {window} steps was within "
                f"tol={tol:g} (relative) of the mean of the {window} before them at {patience} checks in a row")
    elif status == "nan":
        text = (f"stopped at step {stop_at}: the objective or its gradient was not finite; "
                f"the parameters are those after the last good step ({cur.done} steps completed)")
    else:
        text = f"{'interrupted after' if status == 'interrupted' else 'ran'} {cur.done} of {steps} steps"
    if cur.skipped:
        text += (f"; skipped {cur.skipped} step{'s' if cur.skipped != 1 else ''} with a non-finite objective "
                 f"or gradient, the first at step {cur.first_bad}")
    if cur.note:
        text += "\n" + cur.note
    return text


def strong(tree: Any) -> Any:
    """The same tree with every leaf a committed (not weakly typed) array, so chunk outputs have the
    types of chunk inputs and one compiled runner serves the whole fit."""
    return jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.asarray(x).dtype), tree)


# ---------------------------------------------------------------- checkpoints


def leaf_specs(tree: Any) -> list[dict]:
    return [{"path": jax.tree_util.keystr(path), "shape": list(np.shape(leaf)), "dtype": str(np.asarray(leaf).dtype)}
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def key_data(key: Key) -> tuple[np.ndarray, bool]:
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    return np.asarray(jax.random.key_data(key) if typed else key), bool(typed)


def save_checkpoint(folder: Path, cur: Progress, key: Key, schedule: str = "") -> Path:
    """Write everything a resumed fit needs to one .npz (structure as JSON inside it): to a temporary
    file first, then renamed over the old checkpoint, so a crash never leaves half a checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    data, typed = key_data(key)
    arrays = {"key": data, "values": np.concatenate(cur.values) if cur.values else np.zeros(0, np.float32)}
    meta: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT, "step": cur.done, "typed_key": typed,
        "skipped": cur.skipped, "first_bad_step": cur.first_bad, "calm": cur.calm, "note": cur.note,
        "schedule": schedule,
    }
    for group in ("params", "opt_state", "state"):
        tree = getattr(cur, group)
        meta[group] = leaf_specs(tree)
        for i, leaf in enumerate(jax.tree.leaves(tree)):
            arrays[f"{group}/{i}"] = np.asarray(leaf)
    arrays["meta"] = np.array(json.dumps(meta))
    path = folder / CHECKPOINT_FILE
    tmp = folder / f".{CHECKPOINT_FILE}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def mismatch(group: str, saved: list[dict], now: list[dict]) -> str | None:
    """What differs between the leaves a checkpoint holds and the leaves this fit has, or None."""
    old = {s["path"]: s for s in saved}
    new = {s["path"]: s for s in now}
    problems = [f"{p} is in the checkpoint but not in this fit" for p in old if p not in new]
    problems += [f"{p} is in this fit but not in the checkpoint" for p in new if p not in old]
    for p in old.keys() & new.keys():
        if (old[p]["shape"], old[p]["dtype"]) != (new[p]["shape"], new[p]["dtype"]):
            problems.append(f"{p} has shape {tuple(old[p]['shape'])} {old[p]['dtype']} in the checkpoint "
                            f"but {tuple(new[p]['shape'])} {new[p]['dtype']} in this fit")
    if not problems and [s["path"] for s in saved] != [s["path"] for s in now]:
        problems.append("the leaves are in a different order")
    if not problems:
        return None
    return f"its {group} do not match this fit's: " + "; ".join(sorted(problems)[:6])


def load_checkpoint(folder: Path, template: Progress, key: Key, schedule: str = "") -> Progress:
    """The saved progress, shaped like `template` (whose trees give the structure, NamedTuples of
    optax states included); CheckpointError when it belongs to another fit or is damaged. Every
    field is checked (types, the arrays' shapes against this fit's, counts within range), since a
    checkpoint folder may come from elsewhere. A checkpoint written under another learning-rate
    `schedule` resumes with a warning."""
    path = folder / CHECKPOINT_FILE
    try:
        arrays = load_npz(path)
        meta = json.loads(str(arrays["meta"]))
    except (OSError, ValueError, KeyError, RecursionError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    damaged = f"checkpoint {path} is damaged"
    fields = {"format": int, "step": int, "typed_key": bool, "skipped": int, "calm": int, "note": str,
              "params": list, "opt_state": list, "state": list}
    if not isinstance(meta, dict) or any(not isinstance(meta.get(k), t) or isinstance(meta.get(k), bool) != (t is bool)
                                         for k, t in fields.items()):
        raise CheckpointError(f"{damaged}: its description lacks a field or has one of the wrong type")
    if meta["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {meta['format']}, expected {CHECKPOINT_FORMAT}")
    values = arrays.get("values")
    step, first_bad = meta["step"], meta.get("first_bad_step")
    if values is None or values.ndim != 1 or step < 0 or values.shape[0] != step or not 0 <= meta["skipped"] <= step \
            or meta["calm"] < 0 or not (first_bad is None or (type(first_bad) is int and 0 <= first_bad < step)):
        raise CheckpointError(f"{damaged}: its step count ({step}) does not agree with what it holds")
    data, typed = key_data(key)
    if typed != meta["typed_key"] or not np.array_equal(data, arrays.get("key")):
        raise CheckpointError(f"checkpoint {path} was written by a fit with another random key (seed); "
                              "resume with the same seed, or delete the checkpoint to start afresh")
    trees = {}
    for group in ("params", "opt_state", "state"):
        tree = getattr(template, group)
        if not all(isinstance(spec, dict) and isinstance(spec.get("path"), str) and isinstance(spec.get("dtype"), str)
                   and isinstance(spec.get("shape"), list) for spec in meta[group]):
            raise CheckpointError(f"{damaged}: its {group.replace('_', ' ')} description is not valid")
        problem = mismatch(group.replace("_", " "), meta[group], leaf_specs(tree))
        if problem:
            hint = " (was it written with another optimizer?)" if group == "opt_state" else ""
            raise CheckpointError(f"checkpoint {path} cannot be resumed by this fit: {problem}{hint}")
        leaves, treedef = jax.tree.flatten(tree)
        loaded = [arrays.get(f"{group}/{i}") for i in range(len(leaves))]
        if any(a is None or np.shape(a) != np.shape(leaf) for a, leaf in zip(loaded, leaves)):
            raise CheckpointError(f"{damaged}: its {group.replace('_', ' ')} arrays do not have the shapes it records")
        trees[group] = jax.tree.unflatten(treedef, [jnp.asarray(a, leaf.dtype) for a, leaf in zip(loaded, leaves)])
    saved = meta.get("schedule")
    if isinstance(saved, str) and saved != schedule:
        warnings.warn(f"checkpoint {path} was written under a learning rate {saved or 'constant'}; this run's is "
                      f"{schedule or 'constant'}: it goes on under its own, so it will not equal a run straight "
                      "through (resume with the same steps or epochs to continue exactly)", ScheduleWarning,
                      stacklevel=4)
    return Progress(trees["params"], trees["opt_state"], trees["state"], step, (values,) if values.size else (),
                    meta["skipped"], first_bad, meta["calm"], meta["note"])
