"""What amortized training returns: a guide with trained weights that answers `posterior(x)` for new
data sets in one forward pass, can be corrected by importance sampling or SMC with itself as the
proposal, compared with a per-data-set fit, and saved to and loaded from a folder."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pplang import html, plots
from pplang import runtime as rt
from pplang.compiler.diagnostics import PplError, error
from pplang.files import new_folder
from pplang.inference import predictive as exports
from pplang.inference import set_answers, sets
from pplang.models import Model, as_key
from pplang.results import load_folder, write_files
from pplang.summary import QUANTILES, SiteRows, check_hdi, check_quantiles, format_table, site_rows


def guide_inputs(model: Model, guide: Model) -> list[str]:
    """The guide's arguments named after the model's random choices: the observations it maps."""
    return [a for a, _ in guide.fn.args if a in model.fn.sites]


@dataclass
class Posterior:
    """Draws from the amortized posterior of one data set (`draws[address]`: leading draw axis) or
    of a batch of them (`batched`: leading data-set axis, then the draw axis)."""

    draws: dict[str, np.ndarray]
    batched: bool
    order: tuple[str, ...] = ()  # the model's order of its addresses (the summary's row order)
    computed: tuple[str, ...] = ()  # which names of `draws` the model computes

    def mean(self) -> dict[str, np.ndarray]:
        return {a: v.mean(axis=1 if self.batched else 0) for a, v in self.draws.items()}

    def sd(self) -> dict[str, np.ndarray]:
        return {a: v.std(axis=1 if self.batched else 0) for a, v in self.draws.items()}

    def quantile(self, q: float | Sequence[float]) -> dict[str, np.ndarray]:
        return {a: np.quantile(v, q, axis=1 if self.batched else 0) for a, v in self.draws.items()}

    def one(self, index: int = 0) -> dict[str, np.ndarray]:
        """The draws of one data set (the `index`-th of a batch)."""
        return {a: v[index] for a, v in self.draws.items()} if self.batched else self.draws

    def rows(self, index: int = 0, quantiles: Sequence[float] = QUANTILES,
             hdi_prob: float | None = None) -> list[SiteRows]:
        """The summary's row data (pplang.summary.site_rows) of one data set's draws (the `index`-th of a batch)."""
        return site_rows(self.one(index), order=self.order, computed=self.computed,
                         quantiles=check_quantiles(quantiles), hdi_prob=check_hdi(hdi_prob))

    def summary(self, index: int = 0, quantiles: Sequence[float] = QUANTILES, hdi_prob: float | None = None,
                max_rows: int | None = 40) -> str:
        """The table of one data set's draws (the `index`-th of a batch)."""
        return format_table(self.rows(index, quantiles, hdi_prob), max_rows)

    def _repr_html_(self) -> str:
        note = [f"the first of a batch of {next(iter(self.draws.values())).shape[0]} data sets"] if self.batched else []
        return html.sites_table("amortized posterior", note, self.rows())

    def plot(self, index: int = 0) -> Any:
        """A matplotlib Figure of the marginals of one data set's draws (discrete choices as probabilities)."""
        draws = self.one(index)
        return plots.combined("amortized posterior", [("marginals.png", plots.marginals(draws),
                                                       plots.marginal_height(draws))])


@dataclass
class Comparison:
    """An amortized answer against a per-data-set fit of the same data: ELBOs (each with its
    standard error), the amortization gap (fitted minus amortized ELBO, >= 0 up to noise when the
    fitted family contains the amortized one), posterior means and sds, and the time each took."""

    elbo_amortized: float
    elbo_amortized_se: float
    elbo_fitted: float
    elbo_fitted_se: float
    mean_amortized: dict[str, np.ndarray]
    mean_fitted: dict[str, np.ndarray]
    sd_amortized: dict[str, np.ndarray]
    sd_fitted: dict[str, np.ndarray]
    seconds_amortized: float
    seconds_fitted: float

    @property
    def gap(self) -> float:
        return self.elbo_fitted - self.elbo_amortized

    def summary(self) -> str:
        lines = [f"ELBO amortized {self.elbo_amortized:.4f} (se {self.elbo_amortized_se:.4f}), per-data-set fit "
                 f"{self.elbo_fitted:.4f} (se {self.elbo_fitted_se:.4f}): gap {self.gap:.4f}",
                 f"time to the posterior: amortized {self.seconds_amortized * 1e3:.1f} ms, "
                 f"fit {self.seconds_fitted:.2f} s"]
        for a in self.mean_fitted:
            ma, mf = np.ravel(self.mean_amortized[a]), np.ravel(self.mean_fitted[a])
            sa, sf = np.ravel(self.sd_amortized[a]), np.ravel(self.sd_fitted[a])
            lines.append(f"{a}: mean {fmt(ma)} vs {fmt(mf)}, sd {fmt(sa)} vs {fmt(sf)}")
        return "\n".join(lines)


def fmt(v: np.ndarray, most: int = 4) -> str:
    text = ", ".join(f"{x:.4g}" for x in v[:most])
    return f"[{text}{', ...' if v.size > most else ''}]" if v.size > 1 else text


@dataclass
class AmortizedPosterior:
    """A trained amortized guide. `params["model"]` and `params["guide"]` are the unconstrained
    parameter values (network weights by address); `values` the objective at each step; `info`
    JSON-able facts (mode, objective, data sets, epochs, status, timings, ...)."""

    model: Model
    guide: Model
    params: dict[str, dict[str, Any]]
    shared: dict[str, Any]
    values: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    _draw: dict = field(default_factory=dict, repr=False, compare=False)  # compiled answers
    _plans: dict = field(default_factory=dict, repr=False, compare=False)  # set answers' bound values per bucket

    @property
    def set_sizes(self) -> list[str]:
        """The names of the model's `size` arguments it was trained to answer any size of."""
        return list(sets.trained_sets(self.info))

    @property
    def inputs(self) -> list[str]:
        """The guide's arguments taken from each data set (named after the model's observations)."""
        return guide_inputs(self.model, self.guide)

    def __repr__(self) -> str:
        facts = ", ".join(f"{k}={self.info[k]!r}" for k in ("model", "guide", "mode", "objective", "status")
                          if k in self.info)
        return f"AmortizedPosterior({facts}, steps={len(self.values)})"

    def summary(self) -> str:
        """What was trained, on what, how it ended and the final objective."""
        i = self.info
        lines = [f"model: {i.get('model')}", f"guide: {i.get('guide')}"]
        if i.get("mode") == "simulate":
            lines.append(f"trained on {i.get('data_sets')} simulations from the model: {i.get('objective')}")
        else:
            lines.append(f"trained on {i.get('data_sets')} data sets: objective {i.get('objective')}")
        ranges = [f"{r[0]}..{r[1]} points (`{n}`)" for n, r in sets.trained_sets(i).items() if r]
        if ranges:
            lines.append(f"sets of {', '.join(ranges)}")
        lines.append(f"{i.get('epochs', 0):.4g} epochs of {i.get('data_sets', 0) // max(1, i.get('batch_size', 1))} "
                     f"batches of {i.get('batch_size')}; status: {i.get('status')}")
        tail = self.values[-max(1, len(self.values) // 10):]
        if np.isfinite(tail).any():
            lines.append(f"objective per data set (mean of the last {len(tail)} steps): {np.nanmean(tail):.6g}")
        return "\n".join(lines)

    # ------------------------------------------------------------ answers

    def posterior(self, data: Mapping[str, Any] | None = None, *, num_samples: int = 1000, seed: Any = 0,
                  computed: bool | Sequence[str] | None = None, **kwargs: Any) -> Posterior:
        """Draws from the guide for a new data set, or for a batch of them (each input with one more
        leading axis than the guide declares), in one compiled call: no optimization. The values the
        model computes are kept beside the draws of one data set (`computed`: all by default, none,
        or names); for a batch only when asked for, since they take one more pass per data set."""
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
            raise error(f"num_samples must be a positive int, got {num_samples!r}", hint="for example num_samples=1000")
        data = {**dict(data or {}), **kwargs}
        if self.set_sizes:  # sets of any size: padded per bucket (set_answers)
            self.check_target("posterior", "predictive(data, new_inputs)")
            draws, batched = set_answers.posterior_draws(self, data, num_samples, seed)
            if computed is False or batched:
                return Posterior(draws, batched)
            return Posterior(self.model.with_computed(draws, self.model_data(data), computed is None or computed,
                                                      self.params["model"]), False)
        values, batched = self.guide_values(data)
        fn = self.draw_fn(batched, num_samples)
        key = as_key(seed)
        draws = {a: np.asarray(v) for a, v in fn(self.params["guide"], values, key).items()}
        which = (not batched) if computed is None else computed
        order = (*self.model.fn.sites, *self.model.computed_names)

        def posterior(values: dict[str, np.ndarray]) -> Posterior:
            return Posterior(values, batched, order, tuple(a for a in values if a not in self.model.fn.sites))

        if which is False:
            return posterior(draws)
        if not batched:
            return posterior(self.model.with_computed(draws, self.model_data(data), which, self.params["model"]))
        sets = []
        for i in range(np.shape(data[self.inputs[0]])[0]):
            one = {a: (np.asarray(v)[i] if a in self.inputs else v) for a, v in data.items()}
            sets.append(self.model.with_computed({a: v[i] for a, v in draws.items()}, self.model_data(one), which,
                                                 self.params["model"]))
        return posterior({a: np.stack([s[a] for s in sets]) for a in sets[0]})

    def guide_values(self, data: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """The guide's argument values for one data set or a batch, checked by binding the first."""
        inputs = self.inputs
        missing = [a for a in inputs if a not in data]
        if missing:
            raise error(f"no value for `{missing[0]}`: the amortized guide `{self.guide.name}` maps "
                        f"{', '.join(inputs)} to the posterior", self.guide.fn.span, self.guide.source,
                        hint=f"pass {', '.join(repr(a) for a in inputs)}")
        ranks = dict((a, t.rank) for a, t in self.guide.fn.args)
        first = inputs[0]
        ragged = [a for a in inputs if set_answers.is_ragged(data[a])]
        if ragged:
            from pplang.inference.amortized import ragged_hint

            raise error(f"the data sets in `{ragged[0]}` have different sizes", self.guide.fn.span, self.guide.source,
                        hint=ragged_hint(self.model))
        batched = ranks[first] is not None and np.ndim(data[first]) == ranks[first] + 1
        one = {a: (np.asarray(data[a])[0] if batched else data[a]) for a in inputs}
        bound = self.guide.bind({**self.shared, **one}, strict=False, observations=False)
        env = {**bound.static, **bound.arrays}
        if batched:
            n = np.shape(data[first])[0]
            for a in inputs:
                if np.shape(data[a])[:1] != (n,):
                    raise error(f"`{a}` has {np.shape(data[a])[:1] or 'no'} data sets but `{first}` has {n}",
                                hint="a batch stacks every input along one leading axis")
            env |= {a: jnp.asarray(np.asarray(data[a]), jnp.asarray(env[a]).dtype) for a in inputs}
        return env, batched

    def draw_fn(self, batched: bool, num_samples: int) -> Any:
        """A jitted `(params, values, key) -> draws`: the network sees each data set once (its
        inputs are not batched over the draws, so vmap leaves it unbatched)."""
        cache = (batched, num_samples)
        if cache not in self._draw:
            guide, order = self.guide, [a for a, _ in self.guide.fn.args]
            inputs = set(self.inputs)

            def one(params: Any, values: Mapping[str, Any], key: Any) -> dict:
                ctx = rt.Context({}, params, guide.hosts)
                return guide.impl(ctx, key, *[values[a] for a in order])[1]

            def many(params: Any, values: Mapping[str, Any], key: Any) -> dict:
                return jax.vmap(lambda k: one(params, values, k))(jax.random.split(key, num_samples))

            if batched:
                axes = {a: (0 if a in inputs else None) for a in order}

                def run(params: Any, values: Mapping[str, Any], key: Any) -> dict:
                    n = jax.tree.leaves({a: values[a] for a in inputs})[0].shape[0]
                    keys = jax.random.split(key, n)
                    return jax.vmap(many, in_axes=(None, axes, 0))(params, values, keys)
            else:
                run = many
            self._draw[cache] = jax.jit(run)
        return self._draw[cache]

    def sample(self, num_samples: int = 1000, *, seed: Any = 0,
               given: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Draws of every choice of the model with its trained parameters (a variational
        autoencoder's generated images), each with a leading draw axis. With `given` (arrays whose
        first axis counts draws), those choices are fixed, one row per draw, and the others drawn
        given them (images decoded from chosen points of the latent space)."""
        if not given:
            tr = self.model.simulate(self.shared, seed=seed, num_samples=num_samples, params=self.params["model"])
            return {a: np.asarray(v) for a, v in tr.values.items()}
        rows = {a: np.asarray(v) for a, v in given.items()}
        n = next(iter(rows.values())).shape[0]
        return self.simulate_given(rows, (n,), seed)

    def predictive(self, data: Mapping[str, Any] | None = None, new_inputs: Mapping[str, Any] | None = None, *,
                   num_samples: int = 1, seed: Any = 0, **kwargs: Any) -> dict[str, np.ndarray]:
        """Posterior predictive draws for a data set or a batch of them: the latent choices from the
        amortized guide, then the model's other choices drawn anew given them (a variational
        autoencoder's reconstructions). Leading axes as in `posterior`: (data set,) draw.

        For a set model, `new_inputs` are new points' inputs (`{"x_new": [...]}`, one value per new
        point): a predictive guide (a prior-fitted network, trained to predict held-out points)
        draws each new point's `NAME_new` in one pass; a posterior guide draws the latents and the
        model draws the new points given them. Axes: (data set,) draw, new point."""
        data = {**dict(data or {}), **kwargs}
        if self.set_sizes and new_inputs is not None:
            if self.info.get("target") == "predictive":
                return set_answers.predictive_draws(self, data, new_inputs, num_samples, seed)[0]
            return self.predict_from_latents(data, new_inputs, num_samples, seed)
        self.check_target("predictive", "predictive(data, new_inputs)")
        post = self.posterior(data, num_samples=num_samples, seed=seed)
        latents = {a: v for a, v in post.draws.items() if a in self.model.fn.sites}
        lead = next(iter(post.draws.values())).shape[:2 if post.batched else 1]
        return self.simulate_given(latents, lead, seed)

    def log_predictive(self, data: Mapping[str, Any], new_points: Mapping[str, Any], *, num_samples: int = 1000,
                       seed: Any = 0) -> np.ndarray:
        """The log predictive density of new points of a set model (`new_points`: their inputs
        `NAME_new` and values `NAME_new`, one per point), for a data set (points,) or a batch (data
        set, point): the predictive guide's density, or for a posterior guide the model's density
        of each point averaged over `num_samples` draws of the latents."""
        if not self.set_sizes:
            raise error("log_predictive is for set models (with a `size` argument)",
                        hint="use importance_sampling(data) for the marginal likelihood of a data set")
        if self.info.get("target") == "predictive":
            inputs = {a: v for a, v in new_points.items() if a in dict(self.guide.fn.args)}
            return set_answers.predictive_draws(self, data, inputs, 1, seed, new_points)[0]["log_density"]
        return self.latent_log_predictive(data, new_points, num_samples, seed)

    def check_target(self, asked: str, instead: str) -> None:
        if self.info.get("target") == "predictive":
            raise error(f"guide `{self.guide.name}` predicts new points (it was trained as a prior-fitted network); it "
                        f"gives no {asked} of the latents", self.guide.fn.span, self.guide.source,
                        hint=f"use {instead}, or train a guide that draws the latents")

    def new_point_values(self, new: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
        """New points named after the model's per-point choices (`x_new` -> `x`), each (..., point),
        by the set they belong to (the `size` that sizes the choice); with several sets, as many
        new points of each."""
        per_set = {size: sets.set_names(self.model.fn, size) for size in self.set_sizes}
        out = {size: {a: np.asarray(new[a + sets.NEW], float) for a in names if a + sets.NEW in new}
               for size, names in per_set.items()}
        out = {size: v for size, v in out.items() if v}
        if not out:
            raise error("new points are named NAME_new after the model's per-point choices",
                        hint="e.g. {" + ", ".join(repr(a + sets.NEW) + ": [...]" for ns in per_set.values()
                                                  for a in ns) + "}")
        counts = {a: v.shape[-1] for vs in out.values() for a, v in vs.items()}
        a, m = next(iter(counts.items()))
        b, k = next(((b, k) for b, k in counts.items() if k != m), (a, m))
        if k != m:
            raise error(f"`{a}{sets.NEW}` has {m} new points but `{b}{sets.NEW}` has {k}",
                        hint="one value per new point" + (", as many new points of each set"
                                                           if len(out) > 1 else ""))
        return out

    def new_point_sizes(self, points: Mapping[str, Any], m: int) -> dict[str, int]:
        """The sizes the model is bound to for new points: `m` for the sets that have them, one
        point for the others (drawn, and left out of the answer)."""
        return {size: (m if size in points else 1) for size in self.set_sizes}

    def predict_from_latents(self, data: Mapping[str, Any], new: Mapping[str, Any], num_samples: int,
                             seed: Any) -> dict[str, np.ndarray]:
        """The model's new points given the guide's latents, at the new inputs."""
        post = self.posterior(data, num_samples=num_samples, seed=seed, computed=False)
        points = self.new_point_values(new)
        flat = {a: v for vs in points.values() for a, v in vs.items()}
        m = next(iter(flat.values())).shape[-1]
        lead = next(iter(post.draws.values())).shape[:2 if post.batched else 1]
        given = {a: v for a, v in post.draws.items() if a in self.model.fn.sites}
        given |= {a: np.broadcast_to(v[..., None, :] if post.batched else v, lead + (m,)) for a, v in flat.items()}
        out = self.simulate_given(given, lead, seed, self.new_point_sizes(points, m))
        return {a + sets.NEW: v for a, v in out.items()
                if any(a in sets.set_names(self.model.fn, size) for size in points)}

    def latent_log_predictive(self, data: Mapping[str, Any], new: Mapping[str, Any], num_samples: int,
                              seed: Any) -> np.ndarray:
        """log mean_s p(y_new | x_new, z_s) for z_s from the guide, per new point: the model's log
        weight of a one-point set given the latents and the whole point, less that given the
        latents and the point's inputs alone (in each set, the new values named in `new` that the
        model draws last are the predicted ones). With new points of several sets, the j-th point
        of each is scored jointly."""
        post = self.posterior(data, num_samples=num_samples, seed=seed, computed=False)
        grouped = self.new_point_values(new)
        points = {a: v for vs in grouped.values() for a, v in vs.items()}
        latents = {a: jnp.asarray(v) for a, v in post.draws.items() if a in self.model.fn.sites}
        inputs = frozenset(a for vs in grouped.values() for a in [b for b in self.model.fn.sites if b in vs][:-1])
        bound = self.model.bind({**self.shared, **self.new_point_sizes(grouped, 1)}, observations=False)
        params = self.params["model"]
        whole = self.model.runner(bound, frozenset([*latents, *points]), param_addrs=frozenset(params))
        part = self.model.runner(bound, frozenset([*latents, *inputs]), param_addrs=frozenset(params))

        def lp(z: Mapping[str, Any], p: Mapping[str, Any]) -> Any:
            one = {a: jnp.reshape(v, (1,)) for a, v in p.items()}
            k = jax.random.key(0)
            return (whole(k, {**z, **one}, params, bound.arrays)[2].lw
                    - part(k, {**z, **{a: one[a] for a in inputs}}, params, bound.arrays)[2].lw)

        def per_set(z: Mapping[str, Any], pts: Mapping[str, Any]) -> Any:
            terms = jax.vmap(lambda zz: jax.vmap(lambda pp: lp(zz, pp))(pts))(z)  # (draws, points)
            return jax.scipy.special.logsumexp(terms, axis=0) - jnp.log(terms.shape[0])

        pts = {a: jnp.asarray(v) for a, v in points.items()}
        fn = jax.jit(jax.vmap(per_set) if post.batched else per_set)
        return np.asarray(fn(latents, pts))

    def simulate_given(self, values: Mapping[str, np.ndarray], lead: tuple, seed: Any,
                       data: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """The model's choices other than `values`, drawn given them with the trained parameters;
        `values` have the leading axes `lead`, and so do the draws."""
        unknown = [a for a in values if a not in self.model.fn.sites]
        if unknown:
            raise error(f"model `{self.model.name}` has no random choice `{unknown[0]}`", self.model.fn.span,
                        self.model.source, hint=f"choices: {', '.join(self.model.fn.sites)}")
        flat = {a: jnp.asarray(v.reshape((-1,) + v.shape[len(lead):])) for a, v in values.items()}
        bound = self.model.bind({**self.shared, **dict(data or {})}, observations=False)
        params = self.params["model"]
        run = self.model.runner(bound, frozenset(flat), param_addrs=frozenset(params))
        keys = jax.random.split(jax.random.fold_in(as_key(seed), 1), int(np.prod(lead)))
        _, out, _ = jax.jit(jax.vmap(lambda k, g: run(k, g, params, bound.arrays)))(keys, flat)
        return {a: np.asarray(v).reshape(lead + v.shape[1:]) for a, v in out.items() if a not in flat}

    def model_data(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The model's data for one data set: the shared values, the data set, and for a set model
        its size (the count of its points) when not given."""
        out = {**self.shared, **dict(data)}
        for size in self.set_sizes:
            names = [a for a in set_answers.set_inputs(self, size) if a in out]
            if size not in out and names:
                out[size] = len(np.asarray(out[names[0]]))
        return out

    def importance_sampling(self, data: Mapping[str, Any], *, num_samples: int = 1000, seed: Any = 0) -> Any:
        """Correct the amortized answer for one data set: importance sampling with the guide as the
        proposal (weighted draws, ESS, Pareto k, log marginal likelihood)."""
        from pplang.inference.importance import importance_sampling

        return importance_sampling(self.model, self.model_data(data), num_samples=num_samples, seed=seed,
                                   proposal=self.guide, proposal_params=self.params["guide"],
                                   params=self.params["model"])

    def smc(self, data: Mapping[str, Any], *, particles: int = 1000, seed: Any = 0, **options: Any) -> Any:
        """A particle filter over the model's time loop for one data set, the guide proposing (the
        guide needs the model's sequential structure; see pp.smc)."""
        from pplang.inference.filtering import smc

        return smc(self.model, self.model_data(data), particles=particles, proposal=self.guide, seed=seed,
                   params=self.params["model"], proposal_params=self.params["guide"], **options)

    def compare(self, data: Mapping[str, Any], *, guide: Any = "full_rank", steps: int = 3000,
                learning_rate: float = 0.01, num_samples: int = 4000, seed: int = 0) -> Comparison:
        """How far the amortized answer for one data set is from a fit to that data set alone: a
        `guide` (automatic by name, or a guide) fitted by pp.fit with the model's parameters held
        at their trained values, both judged by the ELBO on `num_samples` draws. An automatic guide
        starts at the amortized answer's mean, so the fit finds the best guide near it (the
        amortization gap of Cremer et al. 2018); from the prior's draws instead, a fit to a
        variational autoencoder's image often ends in another, far worse mode of the decoder."""
        from pplang.inference.autoguide import auto_guide
        from pplang.inference.importance import importance_sampling
        from pplang.inference.variational import fit

        answer = self.posterior(data, num_samples=num_samples, seed=seed)  # compiled once, as later answers find it
        t0 = time.perf_counter()
        self.posterior(data, num_samples=num_samples, seed=seed)
        seconds_amortized = time.perf_counter() - t0
        own = self.importance_sampling(data, num_samples=num_samples, seed=seed)
        t0 = time.perf_counter()
        if isinstance(guide, str):
            mean = answer.mean()
            start = {a: mean[a] for a in self.model.fn.sites if a in mean and a not in data}
            guide = auto_guide(self.model, guide, self.model_data(data), init_loc=start)
        held = {self.model.name: self.params["model"]} if self.params["model"] else None
        fitted = fit(self.model, guide, data=self.model_data(data), steps=steps, learning_rate=learning_rate,
                     seed=seed, progress=False, num_draws=num_samples, fixed=held)
        seconds_fitted = time.perf_counter() - t0
        role = next(r for r, m in fitted.problem.roles.items() if m is not self.model)
        per = importance_sampling(self.model, self.model_data(data), num_samples=num_samples, seed=seed + 1,
                                  proposal=fitted.problem.roles[role], proposal_params=fitted.unconstrained[role],
                                  params=self.params["model"])
        latents = [a for a in own.samples if a in fitted.draws]
        return Comparison(
            *elbo(own.log_weights), *elbo(per.log_weights),
            {a: own.samples[a].mean(0) for a in latents}, {a: fitted.draws[a].mean(0) for a in latents},
            {a: own.samples[a].std(0) for a in latents}, {a: fitted.draws[a].std(0) for a in latents},
            seconds_amortized, seconds_fitted)

    # ------------------------------------------------------------ saving

    def title(self) -> str:
        return f"amortized posterior of {self.model.name} (guide {self.guide.name})"

    def sections(self, data: Mapping[str, Any] | None, num_samples: int, seed: Any) -> list[tuple[str, Any, float]]:
        out = [("objective.png", plots.objective(self.values, str(self.info.get("objective", "objective"))), 3.2)]
        if data is not None:
            draws = self.posterior(data, num_samples=num_samples, seed=seed).draws
            out.append(("marginals.png", plots.marginals(draws, last=self.model.computed_names),
                        plots.marginal_height(draws)))
            observed = exports.observed_data(self.model, self.model_data(data))
            if observed:
                out.append(("ppc.png", plots.ppc(observed, self.predictive(data, num_samples=num_samples, seed=seed)),
                            2.8))
        return out

    def plot(self, folder: str | Path | None = None, overwrite: bool = False, *,
             data: Mapping[str, Any] | None = None, num_samples: int = 1000, seed: Any = 0) -> Any:
        """A matplotlib Figure: the training objective per step with its moving average and, given
        one data set (`data`), the marginals of its amortized posterior and a posterior predictive
        check. With `folder`, the same as objective.png (and marginals.png, ppc.png) written there
        (existing ones replaced only with `overwrite`), and the paths returned."""
        if folder is not None:
            return plots.write(folder, self.title(), self.sections(data, num_samples, seed), overwrite)
        return plots.combined(self.title(), self.sections(data, num_samples, seed))

    def _repr_html_(self) -> str:
        return html.table(self.title(), self.summary().splitlines(), [], [])

    def to_arviz(self, data: Mapping[str, Any] | None = None, *, num_samples: int = 1000, seed: int = 0) -> Any:
        """An arviz.InferenceData: prior and prior_predictive (the model with its trained
        parameters; the predictive group holds the choices the guide reads) and, given one data
        set (`data`), its amortized posterior, observed_data and posterior_predictive (one chain
        of `num_samples` draws each)."""
        drawn = self.sample(num_samples, seed=seed + 2)
        groups: dict[str, Any] = {"prior": exports.one_chain({a: v for a, v in drawn.items() if a not in self.inputs}),
                                  "prior_predictive": exports.one_chain({a: drawn[a] for a in self.inputs})}
        if data is not None:
            groups["posterior"] = exports.one_chain(self.posterior(data, num_samples=num_samples, seed=seed).draws)
            groups["observed_data"] = exports.observed_data(self.model, self.model_data(data))
            groups["posterior_predictive"] = exports.one_chain(self.predictive(data, num_samples=num_samples,
                                                                               seed=seed))
        return exports.inference_data({**self.info, "model": self.model.name, "guide": self.guide.name}, **groups)

    def save(self, folder: str | Path, plots: bool = False, overwrite: bool = False,
             keep: Sequence[str] = ()) -> Path:
        """params.npz (keys `model/address`, `guide/address`), values.npy and info.json (with the
        shared values and the source of the model's and the guide's files, so `load` can compile
        them again; programs written in Python are not saved, and `load` takes them as arguments).
        All at once, as `FitResult.save`: a failure leaves any previous folder whole; an existing
        folder is replaced only with `overwrite`, and `keep` names entries it passes on."""
        info = {**self.info, "shared": self.shared, "model": self.model.name, "guide": self.guide.name,
                "programs": {role: program_record(m) for role, m in (("model", self.model), ("guide", self.guide))}}
        with new_folder(folder, overwrite, keep) as tmp:
            write_files(tmp, self.params, self.values, info)
            if plots:
                self.plot(tmp)
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path, model: Model | None = None, guide: Model | None = None,
             hosts: Mapping[str, Any] | None = None) -> AmortizedPosterior:
        """Read back what `save` wrote. A program not given is compiled again from the source saved
        in the folder, checked against its saved hash and with no host functions bound: a folder
        someone sends you is data, as a model file is, and never reaches your Python objects. To
        bind hosts (networks or functions from Python), compile the programs from your own source
        and pass them: `load(folder, model=module["m"], guide=module["q"])`."""
        if hosts:
            raise error("hosts are bound only to programs compiled from your own source, not to the source saved "
                        "in a results folder", hint="pp.load(your_file, hosts={...}), then "
                        "AmortizedPosterior.load(folder, model=module[...], guide=module[...])")
        saved, values, info, folder = load_folder(folder, "amortized posterior", "pplang amortize ... --results folder")
        records = info.pop("programs", {})
        if not isinstance(records, dict):
            raise error(f"the saved amortized posterior at {folder} is damaged: `programs` is not a mapping",
                        hint="save it again with `result.save(folder)`")
        model = model or compile_saved(records.get("model"), info.get("model"), folder, "model")
        guide = guide or compile_saved(records.get("guide"), info.get("guide"), folder, "guide")
        check_saved_params(saved, {"model": model, "guide": guide}, folder)
        params = {"model": {}, "guide": {}} | {r: {a: jnp.asarray(v) for a, v in ps.items()} for r, ps in saved.items()}
        shared = info.pop("shared", {})
        if not isinstance(shared, dict):
            raise error(f"the saved amortized posterior at {folder} is damaged: `shared` is not a mapping",
                        hint="save it again with `result.save(folder)`")
        return cls(model, guide, params, shared, values, info)


def program_record(m: Model) -> dict[str, Any]:
    """What `load` needs to compile a program again: its file's source and that source's hash,
    unless it was written in Python (a decorated function, whose source is not compiled from text)."""
    file = m.fn.span.file
    source = None if file.endswith(".py") else m.source
    digest = None if source is None else hashlib.sha256(source.encode()).hexdigest()
    return {"name": m.name, "file": file, "source": source, "sha256": digest}


def compile_saved(record: Any, name: Any, folder: Path, role: str) -> Model:
    """The saved program compiled again from its file's source, with no hosts bound."""
    from pplang.embed import loads

    damaged = error(f"the saved amortized posterior at {folder} is damaged: its {role} record is not valid",
                    hint=f"save it again, or pass the {role}: AmortizedPosterior.load(folder, {role}=...)")
    if not isinstance(record, dict):
        raise damaged
    if record.get("source") is None:
        raise error(f"the {role} `{name}` of the amortized posterior at {folder} was written in Python and is "
                    "not saved with it", hint=f"pass it: AmortizedPosterior.load(folder, {role}=...)")
    source, file, prog = record.get("source"), record.get("file"), record.get("name")
    if not all(isinstance(v, str) for v in (source, file, prog)):
        raise damaged
    if hashlib.sha256(source.encode()).hexdigest() != record.get("sha256"):
        raise error(f"the saved source of the {role} at {folder} does not match its hash: the folder was changed "
                    "after it was saved", hint=f"save it again, or pass the {role}: "
                    f"AmortizedPosterior.load(folder, {role}=...)")
    module = loads(source, file=file)
    try:
        return module[prog]
    except PplError:
        raise damaged from None


def check_saved_params(saved: Mapping[str, Mapping[str, np.ndarray]], programs: Mapping[str, Model],
                       folder: Path) -> None:
    """Each saved parameter belongs to the program and has the dtype of a parameter (real numbers);
    its shape is checked against the program's when the posterior is used."""
    for role, ps in saved.items():
        if role not in programs:
            raise error(f"the saved amortized posterior at {folder} has parameters of an unknown program `{role}`",
                        hint="save it again with `result.save(folder)`")
        for a, v in ps.items():
            if np.asarray(v).dtype.kind not in "fiu":
                raise error(f"the saved parameter `{a}` of the {role} at {folder} is not numeric",
                            hint="save it again with `result.save(folder)`")


def elbo(log_weights: np.ndarray) -> tuple[float, float]:
    """The ELBO estimate from importance log weights log p(x, z) - log q(z) under q, and its SE."""
    lw = np.asarray(log_weights, float)
    lw = lw[np.isfinite(lw)]
    return float(lw.mean()), float(lw.std(ddof=1) / np.sqrt(max(lw.size, 1)))
