"""Amortized inference: train a guide driven by a neural network on a collection of data sets, or on
simulations from the model, so that it answers for new data in one forward pass.

A model describes one data set; a collection is many data sets of the same shapes, stacked along a
leading axis (the rows of an image data set, or repeated experiments). Training maximizes the mean
over the collection of an objective (ELBO, IWELBO, RWS, ... as in `pp.fit`), one minibatch of data
sets per step: the objective estimate of each data set in the batch comes from the same generated
estimator `pp.fit` uses, with that data set's values swapped in (`Problem.with_data`), and the
batch is a `vmap` over them. Parameters of the model (a decoder's weights) are trained with the
guide's, as in a variational autoencoder.

Training on simulations (`simulate=N`) needs no data: N draws of (latents, observations) from the
model, and the guide's log density of the latents given the observations is maximized (sleep
phase / neural posterior estimation), which fits q(z | x) to the exact posterior on average over
the model's prior predictive.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pplang import runtime as rt
from pplang.compiler.diagnostics import did_you_mean, error
from pplang.compiler.transforms.marginalize import summable
from pplang.data import check_support
from pplang.inference import sets as S
from pplang.inference.amortized_result import AmortizedPosterior, guide_inputs
from pplang.inference.variational import (
    Problem,
    check_outputs,
    checkpoint_exists,
    make_guide,
    make_optimizer,
    may_replace,
    nan_message,
    schedule_text,
)
from pplang.models import Model, as_key
from pplang.runtime.optimize import CheckpointError, CheckpointExists, optimize

DATA_SALT = 0x6461  # folded into the seed for the order of data sets in each epoch
MAX_CHUNK = 1000  # most steps per compiled chunk (the progress bar and NaN checks run between chunks)
SIZE_ROW = "#size"  # a data set's number of points, beside its padded values (`#size:NAME` with several sets)


@dataclass
class Collection:
    """Data sets stacked along a leading axis (`rows`, converted) and what they share (`shared`)."""

    rows: dict[str, Any]
    shared: dict[str, Any]
    size: int

    def first(self) -> dict[str, Any]:
        return {**self.shared, **{k: np.asarray(v[0]) for k, v in self.rows.items()}}


def stack(model: Model, guide: Model, data: Mapping[str, Any], shared: Mapping[str, Any]) -> Collection:
    """Check a collection: every entry an array whose leading axis counts the data sets, all of one
    length, each name known to the model or the guide, values inside the observed choices' supports."""
    check_names(model, guide, data, shared)
    rows, size = {}, None
    for name, value in data.items():
        try:
            arr = np.asarray(value)
        except ValueError:  # ragged: data sets of different sizes
            arr = np.asarray(value, dtype=object)
        if arr.dtype == object and arr.ndim >= 1:
            raise error(f"the data sets in `{name}` have different sizes", model.fn.span, model.source,
                        hint=ragged_hint(model))
        if arr.dtype == object or arr.dtype.kind not in "biuf" or arr.ndim == 0:
            raise error(f"data for `{name}` must be an array with one entry per data set (a leading axis)",
                        model.fn.span, model.source, found=f"{type(value).__name__} of shape {np.shape(value)}",
                        hint="stack the data sets: shape (number of data sets, ...); values common to all go "
                        "in shared=...")
        if size is not None and arr.shape[0] != size:
            first = next(iter(rows))
            raise error(f"`{name}` has {arr.shape[0]} data sets but `{first}` has {size}", model.fn.span,
                        model.source, hint="every entry of the data needs the same leading axis")
        size = arr.shape[0]
        rows[name] = arr
        info = model.fn.sites.get(name)
        if info is not None:
            if info.kind in ("int", "bool") and arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
                raise error(f"observed `{name}` must be whole numbers for `{info.dist}`", info.span, model.source,
                            found="non-integer values", hint="observe counts or 0/1 outcomes as integers")
            check_support(name, info, arr, model.source)
    if size == 0:
        raise error("the data has no data sets (its leading axis is empty)")
    return Collection(rows, dict(shared), int(size))


def check_names(model: Model, guide: Model, data: Mapping[str, Any], shared: Mapping[str, Any]) -> None:
    """The data is a mapping, and every name in it is known to the model or the guide, and given once."""
    if not isinstance(data, Mapping) or not data:
        raise error("amortized training needs data: a mapping from names to arrays whose first axis "
                    "counts the data sets", model.fn.span, model.source,
                    hint="e.g. data={'y': Y} with Y of shape (number of data sets, ...), or simulate=N")
    known = set(model.fn.sites) | {a for a, _ in model.fn.args} | {a for a, _ in guide.fn.args}
    for name in data:
        if name in shared:
            raise error(f"`{name}` is both in the data and in `shared`", hint="give it in one of them")
        if name not in known:
            raise error(f"the data has `{name}`, which neither model `{model.name}` nor guide `{guide.name}` uses",
                        model.fn.span, model.source, hint=did_you_mean(name, known) or
                        f"model choices: {', '.join(model.fn.sites)}; guide arguments: "
                        f"{', '.join(a for a, _ in guide.fn.args) or 'none'}")


def set_rows(model: Model, guide: Model, data: Mapping[str, Any], sizes: list[str]
             ) -> tuple[dict[str, Any], dict[str, S.Sets]]:
    """The collection with each set (the values sized by one of `sizes`, in the model or the guide)
    padded to its longest and the sizes taken out: lists of data sets of different sizes, or
    padded arrays with their sizes given by name (a `.npz`)."""
    check_names(model, guide, data, {})
    out = {a: v for a, v in data.items() if a not in sizes}
    found = {}
    for size in sizes:
        names = [a for a in [*S.set_names(model.fn, size), *S.set_names(guide.fn, size)] if a in data]
        names = list(dict.fromkeys(names))
        if not names:
            raise error(f"the data has none of the sets of `{size}` points that model `{model.name}` observes",
                        model.fn.arg_spans[size], model.source,
                        hint=f"give {', '.join(S.set_names(model.fn, size)) or 'the points'}: one list of points per "
                        "data set")
        found[size] = S.ragged(data, names, size, batched=True)
        out.update(found[size].rows)
    S.one_count(found, model.fn.span, model.source)
    return out, found


def ragged_hint(model: Model) -> str:
    """What to do with data sets of different sizes, for this model."""
    sizes = [a for a, t in model.fn.arg_types.items() if t == "size"]
    if sizes:
        named = ", ".join(f"`{a}`" for a in sizes)
        return (f"model `{model.name}` takes sets of {named} points: leave {named} out of shared=..., and "
                f"data sets of different sizes are padded to the longest (each data set's {named} "
                f"{'is its number' if len(sizes) == 1 else 'are its numbers'} of points)")
    return (f"model `{model.name}` needs data sets of one shape; to let their size vary, declare it a `size` "
            "argument (`N: size`) and read the points with a set network (deep_sets, set_transformer)")


def convert(rows: Mapping[str, np.ndarray], like: Mapping[str, Any]) -> dict[str, Any]:
    """The stacked arrays as JAX arrays of the dtypes binding gave the first data set's values."""
    out = {}
    for name, arr in rows.items():
        ref = like.get(name)
        out[name] = jnp.asarray(arr, None if ref is None else jnp.asarray(ref).dtype)
    return out


def minibatches(step: Callable, rows: Mapping[str, Any], size: int, batch_size: int, seed: int) -> Callable:
    """`step(params, key, state)` for runtime.optimize from `step(params, key, state, batch)`: each
    epoch visits the data sets in a fresh random order, `batch_size` at a time (the last partial
    batch of an epoch is left out). The order and the position in it live in the state."""
    per_epoch = size // batch_size
    data_key = jax.random.fold_in(jax.random.key(seed), DATA_SALT)

    def run(params: Any, key: Any, state: Any) -> tuple:
        t = state["t"]
        epoch, j = t // per_epoch, t % per_epoch
        order = jax.lax.cond(j == 0, lambda: jax.random.permutation(jax.random.fold_in(data_key, epoch), size),
                             lambda: state["order"])
        index = jax.lax.dynamic_slice(order, (j * batch_size,), (batch_size,))
        batch = {k: v[index] for k, v in rows.items()}
        value, grads, inner = step(params, key, state["inner"], batch)
        return value, grads, {"t": t + 1, "order": order, "inner": inner}

    return run


def batch_state(size: int, inner: Any) -> dict[str, Any]:
    return {"t": jnp.int32(0), "order": jnp.arange(size, dtype=jnp.int32), "inner": inner}


def objective_step(problem: Problem, particles: int, layout: Layout | Sequence[Layout] | None = None) -> Callable:
    """One step of the mean objective over a batch of data sets: each data set's estimate by the
    problem's generated estimator, with its own key. With a `layout` (one per set), each data
    set's sets are padded: the first `#size` points of each are real, and the model and guide
    score those alone."""
    layouts = as_layouts(layout)

    def surrogate(params: Any, key: Any, state: Any, batch: Mapping[str, Any]) -> tuple:
        n = jax.tree.leaves(batch)[0].shape[0]
        keys = jax.random.split(key, n)

        def one(row: Mapping[str, Any], k: Any) -> tuple:
            masks = set_masks(layouts, row) if layouts else None
            return problem.surrogate(params, k, state, particles, runner=problem.with_data(row, masks))

        sur, (v, costs) = jax.vmap(one)(dict(batch), keys)
        return jnp.mean(sur), (jnp.mean(v), jax.tree.map(jnp.mean, costs))

    grad = jax.grad(surrogate, has_aux=True)

    def step(params: Any, key: Any, state: Any, batch: Mapping[str, Any]) -> tuple:
        g, (v, costs) = grad(params, key, state, batch)
        return v, g, problem.next_state(state, costs)

    return step


def simulation_step(guide: Model, targets: list[str], env: Mapping[str, Any],
                    layout: Layout | Sequence[Layout] | None = None) -> Callable:
    """One step of training on simulations: the mean over the batch of the guide's log density of
    `targets` given the inputs it takes (`env`: its other arguments, bound). For neural posterior
    estimation the targets are the latents: log q(z | x). For sets (`layout`, one per set), each
    data set's first `#size` points of a set are real and the rest padding; for a predictive guide
    the targets are held-out points, `queries` per data set (of each set it predicts), each
    predicted from the real points: log q(y_new | x_new, the set), the prior-fitted network's
    objective."""
    order = [a for a, _ in guide.fn.args]
    layouts = as_layouts(layout)
    queries = max((lay.queries for lay in layouts), default=0)

    def log_q(params: Any, row: Mapping[str, Any], masks: Mapping[str, Any]) -> Any:
        ctx = rt.Context({a: row[a] for a in targets}, params.get("q", {}), guide.hosts, complete=True, masks=masks)
        values = {**env, **row}
        return guide.impl(ctx, jax.random.key(0), *[values[a] for a in order])[2].lp

    def one(params: Any, row: Mapping[str, Any]) -> Any:
        if not layouts:
            return log_q(params, row, {})
        masks = set_masks(layouts, row)
        points = {a: row[a][:lay.length] for lay in layouts for a in lay.points}
        if not queries:
            return log_q(params, {**row, **points}, masks)
        held = {a + S.NEW: row[a][lay.length:] for lay in layouts for a in lay.held}
        return jnp.mean(jax.vmap(lambda q: log_q(params, {**row, **points, **q}, masks))(held))

    def mean_log_q(params: Any, batch: Mapping[str, Any]) -> Any:
        return jnp.mean(jax.vmap(lambda row: one(params, row))(dict(batch)))

    grad = jax.value_and_grad(mean_log_q)

    def step(params: Any, key: Any, state: Any, batch: Mapping[str, Any]) -> tuple:
        v, g = grad(params, batch)
        return v, g, state

    return step


@dataclass(frozen=True)
class Layout:
    """How one set of the data sets is stored: `points` (the per-point values) padded to `length`
    (the largest size), each data set's size in its `row`, and for a predictive guide `queries`
    held-out points after them, of which the guide predicts `held` (and reads the others as
    `NAME_new` inputs)."""

    size: str
    length: int
    points: tuple[str, ...]
    queries: int = 0
    held: tuple[str, ...] = ()
    row: str = SIZE_ROW


def size_row(size: str, sizes: Sequence[str]) -> str:
    """The row holding each data set's size of the set `size`: `#size`, or `#size:NAME` with several."""
    return SIZE_ROW if len(sizes) == 1 else f"{SIZE_ROW}:{size}"


def as_layouts(layout: Layout | Sequence[Layout] | None) -> tuple[Layout, ...]:
    return () if layout is None else (layout,) if isinstance(layout, Layout) else tuple(layout)


def set_masks(layouts: Sequence[Layout], row: Mapping[str, Any]) -> dict[str, Any]:
    """Each set's mask of its real points in one data set (inside a compiled step)."""
    return {lay.size: jnp.arange(lay.length) < row[lay.row] for lay in layouts}


def predictive_targets(model: Model, guide: Model, sizes: Sequence[str]) -> list[str]:
    """A predictive guide's targets: the choices it draws named `NAME_new` after a per-point choice
    NAME of the model's set (a held-out point it predicts); empty for a posterior guide. Its other
    `NAME_new` arguments are the new point's inputs, also per-point choices of the model."""
    news = [a for a in guide.fn.sites if a.endswith(S.NEW)]
    if not news:
        return []
    per_point = [a for size in sizes for a in S.set_names(model.fn, size)]
    for a in news:
        if a[:-len(S.NEW)] not in per_point:
            raise error(f"guide `{guide.name}` draws `{a}`, but `{a[:-len(S.NEW)]}` is not a per-point choice of "
                        f"model `{model.name}`'s set", guide.fn.sites[a].span, guide.source,
                        hint="a predictive guide draws NAME_new for a choice NAME sized by the model's `size` argument")
    other = [a for a in guide.fn.sites if a not in news]
    if other:
        raise error(f"guide `{guide.name}` predicts new points ({', '.join(news)}) and also draws `{other[0]}`",
                    guide.fn.sites[other[0]].span, guide.source,
                    hint="a guide either predicts held-out points (draws NAME_new) or gives the posterior of the "
                    "latents; write two guides")
    for a, _ in guide.fn.args:
        if a.endswith(S.NEW) and (a[:-len(S.NEW)] not in per_point or a[:-len(S.NEW)] not in model.fn.sites):
            raise error(f"guide `{guide.name}` takes `{a}`, but `{a[:-len(S.NEW)]}` is not a per-point choice of "
                        f"model `{model.name}`", guide.fn.arg_spans[a], guide.source,
                        hint="a new point's inputs are named after the model's per-point choices, which the "
                        "simulations draw (e.g. `x[i] ~ normal(0, 1)` in the model, `x_new: real` in the guide)")
    return news


def simulations(model: Model, guide: Model, count: int, shared: Mapping[str, Any], seed: int,
                predictive: bool = False) -> tuple:
    """`count` draws of every choice of the model, and which of them are latent: the guide's
    inputs are the choices it takes as arguments; it must draw every other choice of the model
    (unless it is `predictive`: then it predicts new points, and the latents stay unseen)."""
    observed = [a for a in guide_inputs(model, guide)]
    if not observed:
        raise error(f"guide `{guide.name}` takes none of model `{model.name}`'s random choices as an argument",
                    guide.fn.span, guide.source, hint="an amortized guide is a function of the observations: "
                    "name its arguments after the choices the model observes, e.g. `guide q(y: real[N])`")
    # a discrete choice with finite support the guide leaves out is summed out: fitting log q of the
    # other latents on joint simulations targets their marginal posterior, and the importance
    # correction sums it out of the model's density
    summed = set(summable(model.fn, observed))
    latents = [a for a in model.fn.sites if a not in observed and (a in guide.fn.sites or a not in summed)]
    missing = [a for a in latents if a not in guide.fn.sites]
    if missing and not predictive:
        raise error(f"guide `{guide.name}` does not draw {', '.join(f'`{a}`' for a in missing)}, latent in model "
                    f"`{model.name}`", guide.fn.span, guide.source,
                    hint="training on simulations fits the guide's density of every latent choice; draw each "
                    "one in the guide, or take it as an argument if it is observed")
    extra = [a for a in guide.fn.sites if a not in model.fn.sites]
    if extra and not predictive:
        raise error(f"guide `{guide.name}` draws {', '.join(f'`{a}`' for a in extra)}, which model "
                    f"`{model.name}` does not", guide.fn.span, guide.source,
                    hint="training on simulations needs the guide's density of the model's latents alone")
    if model.fn.params or model.fn.networks:
        raise error(f"model `{model.name}` has parameters of its own; training on simulations would draw "
                    "data from their initial values", model.fn.span, model.source,
                    hint="train on data instead (data=...), which fits the model's parameters too")
    tr = model.simulate(dict(shared), seed=seed, num_samples=count)
    values = {a: np.asarray(v) for a, v in tr.values.items()}
    return values, observed, latents


def amortize(model: Model, guide: Any, data: Mapping[str, Any] | None = None, *, simulate: int | None = None,
             shared: Mapping[str, Any] | None = None, objective: Any = "elbo", epochs: int = 10,
             batch_size: int = 64, optimizer: optax.GradientTransformation | str | None = None,
             learning_rate: Any = 1e-3, lr_schedule: str = "constant", lr_end: float | None = None,
             particles: int = 1, seed: int = 0,
             strategies: Mapping[str, str] | None = None, baseline: Any = None,
             programs: Mapping[str, Model] | None = None, on_nan: str = "stop",
             checkpoint: str | None = None, checkpoint_every: int = 1000, resume: bool = False,
             progress: bool = True, results: str | None = None, overwrite: bool = False,
             sizes: int | tuple[int, int] | Mapping[str, Any] | None = None, queries: int = 8) -> AmortizedPosterior:
    """Train `guide` (whose arguments are named after the model's observations) to answer for any
    data set of the model in one forward pass.

    data: a collection of data sets, each entry stacked along a leading axis; `shared`: values
    common to all of them (sizes, covariates). Each step maximizes the mean `objective` (as in
    pp.fit) over `batch_size` data sets; an epoch visits every data set once. simulate=N instead
    draws N data sets with their latents from the model and maximizes the guide's log density of
    the latents given the observations (no data needed). optimizer, learning_rate, lr_schedule and
    lr_end are as in pp.fit, the schedule running over all epochs. For a model with a `size`
    argument, `sizes=(low, high)` draws each simulated data set's number of points uniformly
    between them (with several `size` arguments, each independently: one range for all, or a
    mapping from each size's name to its range); a guide that draws `NAME_new` choices is trained
    to predict `queries` held-out points of each simulated set from its other points (a
    prior-fitted network). checkpoint, resume, results and
    overwrite are as in pp.fit: an existing results folder or another run's checkpoint is replaced
    only with overwrite. Returns an AmortizedPosterior."""
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("particles", particles)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise error(f"{name} must be a positive int, got {v!r}", hint=f"for example {name}=10")
    if (data is None) == (simulate is None):
        raise error("amortize takes either data (a collection of data sets) or simulate=N, not "
                    + ("both" if data is not None else "neither"),
                    hint="data={'y': Y} trains on data; simulate=10000 trains on simulations from the model")
    keep = check_outputs(results, checkpoint, resume, overwrite)
    held: list[str] = []
    set_info: dict[str, Any] = {}
    if not isinstance(guide, Model):
        guide = make_guide(model, guide, {})
    shared = dict(shared or {})
    t0 = time.perf_counter()
    target = model  # the model the objective scores: with unguided discrete choices summed out (data mode)
    if simulate is not None:
        if isinstance(simulate, bool) or not isinstance(simulate, int) or simulate < 1:
            raise error(f"simulate must be a positive int, got {simulate!r}", hint="for example simulate=10000")
        sizes_of = S.size_arguments(model, guide)
        held = predictive_targets(model, guide, sizes_of)
        layouts: list[Layout] = []
        if sizes_of:
            for size in sizes_of:
                S.check_guide(model, guide, size)
            ranges = S.size_ranges(model, sizes_of, sizes, shared)
            for size in sizes_of:
                shared.pop(size, None)
            if held and (isinstance(queries, bool) or not isinstance(queries, int) or queries < 1):
                raise error(f"queries must be a positive int, got {queries!r}", hint="for example queries=8")
            news = [*held, *(a for a, _ in guide.fn.args if a.endswith(S.NEW))]
            news = list(dict.fromkeys(a[:-len(S.NEW)] for a in news))
            for size in sizes_of:
                mine = S.set_names(model.fn, size)
                own = tuple(a for a in news if a in mine)
                layouts.append(Layout(size, ranges[size][1], tuple(a for a in mine if a in model.fn.sites),
                                      queries if own else 0, own, size_row(size, sizes_of)))
            lengths = {lay.size: lay.length + lay.queries for lay in layouts}
            values, observed, latents = simulations(model, guide, simulate, {**shared, **lengths}, seed, bool(held))
            draw = np.random.default_rng([seed, DATA_SALT])
            for lay in layouts:  # each set's size drawn independently
                lo, hi = ranges[lay.size]
                values[lay.row] = draw.integers(lo, hi + 1, size=simulate).astype(np.int32)
            set_info = {**S.set_info(ranges), "queries": queries if held else 0}
        elif held:
            raise error(f"guide `{guide.name}` predicts new points, but model `{model.name}` has no set (no `size` "
                        "argument)", model.fn.span, model.source,
                        hint="declare the number of points as `N: size` and the points as values sized by it")
        else:
            values, observed, latents = simulations(model, guide, simulate, shared, seed)
        targets = held or latents
        kept = [*observed, *([] if held else latents), *(lay.row for lay in layouts)]
        kept += [a for lay in layouts for a in lay.held if a not in kept]
        rows_np = {a: values[a] for a in kept}
        collection = Collection(rows_np, shared, simulate)
        first = {**shared, **{a: values[a][0] for a in observed}}
        for lay in layouts:
            first |= {lay.size: lay.length, **{a: values[a][0][:lay.length] for a in lay.points if a in first}}
            first |= {a: values[a[:-len(S.NEW)]][0][lay.length] for a, _ in guide.fn.args
                      if a.endswith(S.NEW) and a[:-len(S.NEW)] in lay.points}
        bound = guide.bind(first, strict=False, observations=False)
        env = {**bound.static, **bound.arrays}
        problem = None
        like = {**bound.arrays, **{a: values[a][0] for a in latents if a in rows_np}}
        rows = convert(rows_np, like)
        params = init_guide_params(guide, env, seed)
        inner = simulation_step(guide, targets, {a: v for a, v in env.items() if a not in rows_np}, layouts)
        state: Any = None
        mode = "simulate"
        objective_name = "log q(held-out point | the others)" if held else "log q(latents | observations)"
    else:
        varying = [n for n in S.size_arguments(model, guide) if n not in shared]
        found: dict[str, S.Sets] = {}
        if varying:  # data sets of any sizes: each set padded to its longest, with masks
            for size in varying:
                S.check_guide(model, guide, size)
                S.check_model(model, size)
            data, found = set_rows(model, guide, data, varying)
        collection = stack(model, guide, data, shared)
        first = collection.first()
        layouts = []
        for size, sets in found.items():
            first[size] = sets.length
            layouts.append(Layout(size, sets.length, (), row=size_row(size, varying)))
            collection.rows[layouts[-1].row] = sets.sizes.astype(np.int32)
        if found:
            set_info = {**S.set_info({n: (int(v.sizes.min()), int(v.sizes.max())) for n, v in found.items()}),
                        "queries": 0}
        # the first data set's errors, located at the model; discrete choices the guide leaves out summed out
        target = model.summed_out(model.bind(first).observed, True, guide.sites)
        problem = Problem.build(target, guide, objective, first, programs, strategies, baseline)
        like = {}
        for prog in problem.runner.programs.values():
            like |= {**prog.data, **prog.observed}
        rows = convert(collection.rows, like)
        params = problem.init_params(seed)
        inner = objective_step(problem, particles, layouts)
        state = problem.init_state()
        mode, objective_name = "data", problem.objective.name
    size = collection.size
    batch = min(batch_size, size)
    per_epoch = size // batch
    steps = epochs * per_epoch
    opt = make_optimizer(optimizer, learning_rate, steps, lr_schedule, lr_end)
    step = minibatches(inner, rows, size, batch, seed)
    # chunks that divide an epoch (so every chunk is whole and one compiled loop serves the training)
    chunk = max(d for d in range(1, min(per_epoch, MAX_CHUNK) + 1) if per_epoch % d == 0)
    try:
        out = optimize(step, params, batch_state(size, state), opt, steps=steps, key=jax.random.key(seed),
                       chunk=chunk, on_nan=on_nan, checkpoint=checkpoint,
                       checkpoint_every=checkpoint_every, resume=resume, overwrite=overwrite, progress=progress,
                       progress_unit=("epoch", per_epoch),
                       schedule=schedule_text(optimizer, learning_rate, steps, lr_schedule, lr_end))
    except CheckpointExists:
        raise checkpoint_exists(checkpoint) from None
    except CheckpointError as e:
        raise error(f"cannot resume: {e}", hint="resume with the same model, guide, data, optimizer and seed, "
                    "or start afresh without resume") from None
    except ValueError as e:
        raise error(str(e), hint="check the arguments of amortize") from None
    roles = problem.roles if problem is not None else {"q": guide}
    by_name = {"model": {}, "guide": {}}
    for role, p in out.params.items():
        m = roles.get(role)
        if m is model or m is target:
            by_name["model"] = dict(p)
        elif m is guide:
            by_name["guide"] = dict(p)
    info = {"model": model.name, "guide": guide.name, "mode": mode, "objective": objective_name,
            "data_sets": size, "batch_size": batch, "epochs": out.steps / per_epoch, "steps": out.steps,
            "status": out.status, "message": nan_message(out), "particles": particles, "seed": seed,
            "timings": out.timings, "wall_s": time.perf_counter() - t0, "file": model.fn.span.file,
            "target": "predictive" if mode == "simulate" and held else "posterior", **set_info}
    result = AmortizedPosterior(model, guide, by_name, shared, np.asarray(out.values), info)
    if results is not None:
        result.save(results, plots=True, overwrite=may_replace(results, keep, overwrite or resume), keep=keep)
    return result


def init_guide_params(guide: Model, env: Mapping[str, Any], seed: int) -> dict[str, dict[str, Any]]:
    """The guide's parameters (network weights included) as first seen on one data set, by role."""
    order = [a for a, _ in guide.fn.args]

    def collect(k: Any) -> dict:
        found: dict = {}
        guide.impl(rt.Context({}, {}, guide.hosts, collect=found), k, *[env[a] for a in order])
        return found

    return {"q": dict(jax.jit(collect)(as_key(seed)))}
