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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

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


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed by this fit (missing file, other parameters or optimizer)."""


class Carry(NamedTuple):
    """What the scan threads from step to step, per chunk: `first_bad` is -1 until a step is not finite,
    `snapshot` holds (params, state) as they were at that step when `describe_nan` needs them."""

    params: Params
    opt_state: Any
    state: State
    stopped: jax.Array
    first_bad: jax.Array
    skipped: jax.Array
    snapshot: Any


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
    last_mean: float | None
    note: str


def make_chunk_runner(step: Step, optimizer: optax.GradientTransformation, chunk: int, *, stop_on_nan: bool,
                      keep_snapshot: bool) -> Callable:
    """A jitted `(carry, key, start, limit) -> (carry, values)` running steps start .. start+limit-1
    (limit <= chunk) in one `lax.scan` of length `chunk`. Steps past `limit`, and every step after a
    non-finite one when `stop_on_nan`, are inactive: computed but discarded (a `jnp.where`, not a
    `lax.cond`, whose predicate accelerators would read back to the host at every step), value NaN."""

    def body(carry: Carry, i: jax.Array, key: Key, start: jax.Array, limit: jax.Array) -> tuple[Carry, jax.Array]:
        t = start + i
        value, grads, new_state = step(carry.params, jax.random.fold_in(key, t), carry.state)
        if jnp.ndim(value) != 0:
            raise ValueError(f"step must return a scalar objective value, not one of shape {jnp.shape(value)}")
        value = jnp.asarray(value, float)  # the default float type: float64 under jax_enable_x64
        ok = jnp.isfinite(value)
        for g in jax.tree.leaves(grads):
            ok = ok & jnp.all(jnp.isfinite(g))
        ascent = jax.tree.map(jnp.negative, grads)  # optax minimizes; the objective is maximized
        updates, opt_state = optimizer.update(ascent, carry.opt_state, carry.params)
        params = optax.apply_updates(carry.params, updates)
        active = (i < limit) & ~carry.stopped
        take, bad = active & ok, active & ~ok
        fresh = bad & (carry.first_bad < 0)

        def where(flag: jax.Array, new: Any, old: Any) -> Any:
            return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)

        snapshot = where(fresh, (carry.params, carry.state), carry.snapshot) if keep_snapshot else carry.snapshot
        out = Carry(
            params=where(take, params, carry.params),
            opt_state=where(take, opt_state, carry.opt_state),
            state=where(take, new_state, carry.state),
            stopped=(carry.stopped | bad) if stop_on_nan else carry.stopped,
            first_bad=jnp.where(fresh, t, carry.first_bad),
            skipped=carry.skipped if stop_on_nan else carry.skipped + bad.astype(jnp.int32),
            snapshot=snapshot,
        )
        return out, jnp.where(take, value, jnp.nan)

    def run(carry: Carry, key: Key, start: jax.Array, limit: jax.Array) -> tuple[Carry, jax.Array]:
        return jax.lax.scan(lambda c, i: body(c, i, key, start, limit), carry, jnp.arange(chunk, dtype=jnp.int32))

    return jax.jit(run)


def optimize(step: Step, params: Params, state: State, optimizer: optax.GradientTransformation, *,
             steps: int, key: Key, chunk: int = 100, on_nan: str = "stop", tol: float | None = None,
             patience: int = 10, checkpoint: str | Path | None = None, checkpoint_every: int = 1000,
             resume: bool = False, progress: bool = True, progress_unit: tuple[str, int] = ("step", 1),
             describe_nan: Callable[[Params, Key, State], str] | None = None) -> OptimizeResult:
    """Maximize the objective whose estimate and ascent gradient `step(params, key, state)` returns.

    Runs until `steps` steps in all (counting steps loaded from a checkpoint), `chunk` at a time.
    - on_nan: a step whose value or gradient is not finite leaves params, optimizer state and state
      unchanged. "skip" counts it and goes on; "stop" ends the fit at the end of that chunk with the
      parameters of the last good step. Either way the first such step is reported, with the text
      `describe_nan(params, key, state)` gives for that step's inputs.
    - tol: with m_k the mean of the finite values of chunk k, chunk k is calm when
      |m_k - m_{k-1}| < tol * max(|m_k|, |m_{k-1}|, 1) (relative change; absolute below magnitude 1);
      the fit stops as "converged" after `patience` consecutive calm chunks.
    - checkpoint: a folder; after the first chunk that reaches each multiple of `checkpoint_every`
      steps, and when the fit ends (also on Ctrl-C), the whole state is written to
      `checkpoint/checkpoint.npz` atomically. With `resume`, an existing checkpoint is loaded and the
      fit continues from it (a missing one starts afresh); `params` and `state` then only give the
      expected structure, and `key` must be the one the checkpoint was written with.
    - Ctrl-C ends the fit after the last completed chunk, with status "interrupted".
    - progress_unit: (name, steps per unit) of the progress bar, e.g. ("epoch", steps per epoch).
    """
    if on_nan not in ("stop", "skip"):
        raise ValueError(f"on_nan must be 'stop' or 'skip', not {on_nan!r}")
    if steps < 0 or chunk < 1 or patience < 1 or checkpoint_every < 1:
        raise ValueError("steps must be >= 0 and chunk, patience, checkpoint_every >= 1")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint folder")
    params, state = strong(params), strong(state)
    opt_state = strong(optimizer.init(params))
    folder = None if checkpoint is None else Path(checkpoint)
    cur = Progress(params, opt_state, state, 0, (), 0, None, 0, None, "")
    if resume and folder is not None and (folder / CHECKPOINT_FILE).exists():
        cur = load_checkpoint(folder, cur, key)
    keep_snapshot = describe_nan is not None and on_nan == "skip"
    runner = make_chunk_runner(step, optimizer, chunk, stop_on_nan=on_nan == "stop", keep_snapshot=keep_snapshot)
    compiled = None
    compile_s = run_s = 0.0
    start_done = written = cur.done
    status, stop_at = "done", None
    unit, per = progress_unit

    def units(n: int) -> float:  # whole steps stay ints, so the bar reads "20/20", not "20.0/20.0"
        return n if per == 1 else n / per

    bar = tqdm(total=units(steps), initial=units(min(cur.done, steps)), disable=not progress, unit=unit,
               dynamic_ncols=True, bar_format=None if per == 1 else "{l_bar}{bar}| {n:.1f}/{total:.0f} {unit}s "
               "[{elapsed}<{remaining}{postfix}]")
    try:
        while cur.done < steps:
            n = min(chunk, steps - cur.done)
            snapshot = (cur.params, cur.state) if keep_snapshot else None
            carry = Carry(cur.params, cur.opt_state, cur.state, jnp.bool_(False), jnp.int32(-1), jnp.int32(0), snapshot)
            args = (carry, key, jnp.int32(cur.done), jnp.int32(n))
            if compiled is None:
                bar.set_postfix_str("compiling")
                t0 = time.perf_counter()
                compiled = runner.lower(*args).compile()
                compile_s = time.perf_counter() - t0
                bar.unpause()  # the steps/s shown leave the compile time out
            t0 = time.perf_counter()
            out, vals = compiled(*args)
            vals = np.asarray(vals)[:n]
            bad = int(out.first_bad)  # the chunk's first non-finite step, or -1
            run_s += time.perf_counter() - t0
            if on_nan == "stop" and bad >= 0:
                vals = vals[: bad - cur.done]
            note = cur.note
            if bad >= 0 and cur.first_bad is None and describe_nan is not None:
                at = out.snapshot if keep_snapshot else (out.params, out.state)
                note = describe(describe_nan, at[0], jax.random.fold_in(key, bad), at[1])
            finite = vals[np.isfinite(vals)]
            mean = float(finite.mean()) if finite.size else math.nan
            calm = cur.calm
            if tol is not None:
                last = cur.last_mean
                steady = last is not None and np.isfinite(mean) and np.isfinite(last)
                calm = calm + 1 if steady and abs(mean - last) < tol * max(abs(mean), abs(last), 1.0) else 0
            first_bad = cur.first_bad if cur.first_bad is not None or bad < 0 else bad
            cur = Progress(out.params, out.opt_state, out.state, cur.done + len(vals), (*cur.values, vals),
                           cur.skipped + int(out.skipped), first_bad, calm, mean, note)
            bar.set_postfix_str(f"objective={mean:.5g}", refresh=False)
            bar.update(units(len(vals)))
            if on_nan == "stop" and bad >= 0:
                status, stop_at = "nan", bad
                break
            if tol is not None and calm >= patience:
                status = "converged"
                break
            if folder is not None and cur.done // checkpoint_every > written // checkpoint_every:
                save_checkpoint(folder, cur, key)
                written = cur.done
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        bar.close()
    if folder is not None:
        save_checkpoint(folder, cur, key)
    ran = cur.done - start_done
    timings = Timings(compile_s, run_s, ran / run_s if run_s > 0 else 0.0)
    values = np.concatenate(cur.values) if cur.values else np.zeros(0, np.float32)
    message = report(status, cur, steps, stop_at, tol, patience)
    return OptimizeResult(cur.params, cur.opt_state, cur.state, values, cur.done, status, message, cur.skipped,
                          cur.first_bad, timings)


def describe(describe_nan: Callable[[Params, Key, State], str], params: Params, key: Key, state: State) -> str:
    """The caller's account of a non-finite step; its own failure is reported, not raised, so the
    fit's results survive a broken diagnostic."""
    try:
        return str(describe_nan(params, key, state))
    except Exception as exc:  # noqa: BLE001 - any failure here must not lose the fit
        return f"(describe_nan failed: {type(exc).__name__}: {exc})"


def report(status: str, cur: Progress, steps: int, stop_at: int | None, tol: float | None, patience: int) -> str:
    """One readable paragraph: why the loop ended, and any non-finite steps."""
    if status == "converged":
        text = (f"converged after {cur.done} steps: the chunk-mean objective changed by less than "
                f"tol={tol:g} (relative) for {patience} chunks in a row")
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


def save_checkpoint(folder: Path, cur: Progress, key: Key) -> Path:
    """Write everything a resumed fit needs to one .npz (structure as JSON inside it): to a temporary
    file first, then renamed over the old checkpoint, so a crash never leaves half a checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    data, typed = key_data(key)
    arrays = {"key": data, "values": np.concatenate(cur.values) if cur.values else np.zeros(0, np.float32)}
    meta: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT, "step": cur.done, "typed_key": typed,
        "skipped": cur.skipped, "first_bad_step": cur.first_bad, "calm": cur.calm,
        "last_mean": cur.last_mean if cur.last_mean is None or np.isfinite(cur.last_mean) else None,
        "note": cur.note,
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


def load_checkpoint(folder: Path, template: Progress, key: Key) -> Progress:
    """The saved progress, shaped like `template` (whose trees give the structure, NamedTuples of
    optax states included); CheckpointError when it belongs to another fit."""
    path = folder / CHECKPOINT_FILE
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        meta = json.loads(str(arrays["meta"]))
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {meta.get('format')}, expected {CHECKPOINT_FORMAT}")
    data, typed = key_data(key)
    if typed != meta["typed_key"] or not np.array_equal(data, arrays["key"]):
        raise CheckpointError(f"checkpoint {path} was written by a fit with another random key (seed); "
                              "resume with the same seed, or delete the checkpoint to start afresh")
    trees = {}
    for group in ("params", "opt_state", "state"):
        tree = getattr(template, group)
        problem = mismatch(group.replace("_", " "), meta[group], leaf_specs(tree))
        if problem:
            hint = " (was it written with another optimizer?)" if group == "opt_state" else ""
            raise CheckpointError(f"checkpoint {path} cannot be resumed by this fit: {problem}{hint}")
        leaves, treedef = jax.tree.flatten(tree)
        trees[group] = jax.tree.unflatten(
            treedef, [jnp.asarray(arrays[f"{group}/{i}"], dtype=leaf.dtype) for i, leaf in enumerate(leaves)])
    values = arrays["values"]
    last_mean = meta["last_mean"]
    return Progress(trees["params"], trees["opt_state"], trees["state"], int(meta["step"]),
                    (values,) if values.size else (), int(meta["skipped"]), meta["first_bad_step"],
                    int(meta["calm"]), math.nan if last_mean is None else float(last_mean), meta["note"])
