"""Importance sampling and predictive simulation, built on the core transformations.

Importance sampling draws the latent choices from the prior (or from a guide), constrains the
observed ones to the data and weights each draw by the density of what was constrained. Its
outputs: weighted posterior draws, the effective sample size, and the log marginal likelihood
estimate `log mean(w)` (whose exponential is unbiased for the marginal likelihood).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from pplang import html, pareto, plots
from pplang.compiler.diagnostics import error
from pplang.inference import predictive
from pplang.models import Model, as_key
from pplang.pareto import pareto_k, verdict
from pplang.summary import QUANTILES, SiteRows, check_hdi, check_quantiles, format_table, site_rows

PLOTS = ("marginals.png", "ppc.png")  # what `ImportanceResult.plot(folder)` writes
MIN_ESS = 100  # fewer effective draws than this: the estimates are unreliable


@dataclass
class ImportanceResult:
    """Weighted draws of the latent choices and of the values the model computes from them.
    `samples[name]` has a leading axis of draws."""

    samples: dict[str, np.ndarray]
    log_weights: np.ndarray
    observed: list[str]
    computed: tuple[str, ...] = ()  # which names of `samples` the model computes (shown after the choices)
    # set by importance_sampling (for replicated data and prior draws): the model, its data and parameters
    model: Model | None = field(default=None, repr=False, compare=False)
    data: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    params: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    order: tuple[str, ...] = ()  # the model's order of its addresses (the summary's row order)

    @property
    def num_samples(self) -> int:
        return int(self.log_weights.shape[0])

    @property
    def weights(self) -> np.ndarray:
        """Normalized weights (sum to one)."""
        lw = self.log_weights
        return np.asarray(jnp.exp(lw - logsumexp(lw)))

    @property
    def log_marginal_likelihood(self) -> float:
        """log of the mean weight: an estimate of log p(data)."""
        return float(logsumexp(self.log_weights) - np.log(self.num_samples))

    @property
    def log_marginal_likelihood_se(self) -> float:
        """Delta-method standard error of `log_marginal_likelihood`."""
        w = np.exp(self.log_weights - self.log_weights.max())
        return float(np.std(w, ddof=1) / (np.sqrt(self.num_samples) * np.mean(w)))

    @property
    def ess(self) -> float:
        """Kish's effective sample size of the weights."""
        lw = self.log_weights
        return float(jnp.exp(2 * logsumexp(lw) - logsumexp(2 * lw)))

    @property
    def pareto_k(self) -> float:
        """Pareto-k diagnostic of the weights: below 0.5 good, above 0.7 unreliable (see pplang.pareto)."""
        return pareto_k(self.log_weights)

    def mean(self, address: str) -> np.ndarray:
        return np.tensordot(self.weights, self.samples[address], axes=1)

    def resample(self, num: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        """Unweighted draws by multinomial resampling."""
        num = num or self.num_samples
        idx = np.asarray(jax.random.choice(jax.random.key(seed), self.num_samples, (num,), p=self.weights))
        return {a: v[idx] for a, v in self.samples.items()}

    def __repr__(self) -> str:
        name = f"model={self.model.name!r}, " if self.model is not None else ""
        return (f"ImportanceResult({name}draws={self.num_samples}, ess={self.ess:.1f}, "
                f"log_marginal_likelihood={self.log_marginal_likelihood:.4g}, choices={sorted(self.samples)})")

    def facts(self) -> list[str]:
        """The summary's header lines: draws, ESS, log marginal likelihood, Pareto k, observed."""
        k = self.pareto_k
        lines = [f"importance sampling: {self.num_samples} draws, effective sample size {self.ess:.1f}, "
                 f"log marginal likelihood {self.log_marginal_likelihood:.3f} "
                 f"(se {self.log_marginal_likelihood_se:.3f})", f"Pareto k {k:.2f} ({verdict(k)})"]
        if self.observed:
            lines.append(f"observed: {', '.join(self.observed)}")
        return lines

    def rows(self, quantiles: Sequence[float] = QUANTILES, hdi_prob: float | None = None) -> list[SiteRows]:
        """The summary's row data (pplang.summary.site_rows): weighted mean, sd, quantiles (and an HDI)
        of every continuous element, value probabilities of every discrete one, and the weights' ESS
        with each mean's MCSE, sd / sqrt(ESS)."""
        return site_rows(self.samples, self.weights, order=self.order, computed=self.computed,
                         quantiles=check_quantiles(quantiles), hdi_prob=check_hdi(hdi_prob), ess=self.ess)

    def problems(self) -> list[str]:
        """What makes these estimates unreliable (empty when nothing does): a Pareto k above 0.7,
        or fewer than 100 effective draws."""
        out = []
        if self.pareto_k > pareto.BAD:
            out.append(f"Pareto k {self.pareto_k:.2f} > {pareto.BAD}")
        if self.ess < MIN_ESS:
            out.append(f"effective sample size {self.ess:.1f} < {MIN_ESS}")
        return out

    def warnings(self, sample: str | None = None, remedy: str | None = None) -> list[str]:
        """One line of advice per problem of the weights. `sample`: the command or call that samples
        the posterior with NUTS instead; `remedy`: what to do when the Pareto k is above 0.7
        (default: a better proposal, or NUTS)."""
        nuts = sample or "pp.sample(model, data)"
        out = []
        if self.ess < MIN_ESS:
            out.append(f"warning: effective sample size {self.ess:.1f} is small; the estimates are unreliable. "
                       "Draw more samples or use a better proposal.")
        k = pareto.warning(self.pareto_k, remedy or "use a proposal (guide) closer to the posterior, or sample it "
                           f"with NUTS: {nuts}", sample)
        return out + ([k] if k else [])

    def summary(self, quantiles: Sequence[float] = QUANTILES, hdi_prob: float | None = None,
                max_rows: int | None = 40, sample: str | None = None, remedy: str | None = None) -> str:
        """What was run (`facts`), the warnings (what to do; see `warnings`), then the table (see `rows`)."""
        warn = "".join(f"{w}\n" for w in self.warnings(sample, remedy))
        return "\n".join(self.facts()) + "\n" + warn + format_table(self.rows(quantiles, hdi_prob), max_rows)

    def _repr_html_(self) -> str:
        title = f"importance sampling of {self.model.name}" if self.model is not None else "importance sampling"
        return html.sites_table(title, self.facts() + self.warnings(), self.rows())

    # ------------------------------------------------------------ replicated data, plots, ArviZ

    def attached(self, what: str) -> Model:
        if self.model is None:
            raise error(f"{what} needs the model, and this result has none",
                        hint="run pp.importance_sampling(model, data, ...) to get a result that keeps it")
        return self.model

    def posterior_predictive(self, num_samples: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        """Replicated observations: the draws resampled by weight, then each observed choice drawn
        anew given each of them (a leading draw axis)."""
        model = self.attached("posterior predictive simulation")
        return predictive.replicate(model, self.data, self.resample(num_samples, seed), self.params, seed + 1)

    def sections(self) -> list[tuple[str, Any, float]]:
        out = [("marginals.png", plots.marginals(self.samples, self.weights, self.computed),
                plots.marginal_height(self.samples))]
        if self.model is not None and self.observed and self.model.replicable:
            model = self.model
            out.append(("ppc.png", plots.ppc(predictive.observed_data(model, self.data), self.posterior_predictive()),
                        2.8))
        return out

    def plot(self, folder: str | Path | None = None, overwrite: bool = False) -> Any:
        """A matplotlib Figure: the weighted marginals of every choice (discrete ones as
        probabilities) and, with the model attached, a posterior predictive check. With `folder`,
        the same as marginals.png and ppc.png written there (existing ones replaced only with
        `overwrite`), and the paths returned."""
        title = f"importance sampling of {self.model.name}" if self.model is not None else "importance sampling"
        if folder is not None:
            return plots.write(folder, title, self.sections(), overwrite)
        return plots.combined(title, self.sections())

    def to_arviz(self, num_samples: int | None = None, seed: int = 0) -> Any:
        """An arviz.InferenceData: posterior (the draws resampled by weight, one chain; ArviZ has no
        weights), sample_stats (the log weights of the resampled draws) and, with the model
        attached, observed_data, posterior_predictive, prior and prior_predictive."""
        n = num_samples or self.num_samples
        index = np.asarray(jax.random.choice(jax.random.key(seed), self.num_samples, (n,), p=self.weights))
        draws = {a: v[index] for a, v in self.samples.items()}
        groups: dict[str, Any] = {"posterior": predictive.one_chain(draws),
                                  "sample_stats": {"log_weight": self.log_weights[index][None]}}
        if self.model is not None:
            groups["observed_data"] = predictive.observed_data(self.model, self.data)
            if self.model.replicable:
                groups["posterior_predictive"] = predictive.one_chain(
                    predictive.replicate(self.model, self.data, draws, self.params, seed + 1))
            before, implied = predictive.prior(self.model, self.model.bind(self.data), n,
                                               self.params, seed + 2)
            groups["prior"], groups["prior_predictive"] = predictive.one_chain(before), predictive.one_chain(implied)
        info = {"method": "importance sampling", "ess": self.ess,
                "log_marginal_likelihood": self.log_marginal_likelihood, "pareto_k": self.pareto_k}
        if self.model is not None:
            info["model"] = self.model.name
        return predictive.inference_data(info, **groups)


def importance_sampling(model: Model, data: Mapping[str, Any] | None = None, *, num_samples: int = 1000,
                        seed: Any = 0, proposal: Model | None = None, params: Mapping | None = None,
                        proposal_params: Mapping | None = None,
                        computed: bool | Sequence[str] = True,
                        marginalize: bool | Sequence[str] = True) -> ImportanceResult:
    """Posterior draws with weights. The proposal is the prior, or a guide whose random choices
    have the model's addresses (the model draws any latent the guide leaves out from its prior).
    The named values the model computes are kept beside the draws (`computed`: all, none or names).
    Discrete latent choices with finite support that the proposal does not draw are summed out of
    the weights (`marginalize`: all, none or names) and recovered per draw as computed values
    (`z`, `p(z)`, `map(z)`): far fewer draws go to waste than when they are proposed from the prior."""
    if not isinstance(num_samples, int) or num_samples < 1:
        raise error(f"num_samples must be a positive int, got {num_samples!r}", hint="for example num_samples=1000")
    model = model.summed_out(model.bind(data).observed, marginalize, proposal.sites if proposal is not None else ())
    bound = model.bind(data)
    key = as_key(seed)
    if proposal is None:
        _, values, s = model._call(key, bound, bound.observed, params, num_samples=num_samples)
        log_p, log_q = np.asarray(s.lw), np.zeros(np.shape(s.lw))
        later = jax.random.fold_in(key, 2)
    else:
        for a in proposal.sites:
            if a not in model.sites:
                raise error(f"the proposal `{proposal.name}` draws `{a}`, which model `{model.name}` does not have",
                            proposal.fn.span, proposal.source, hint="a guide's choices must use the model's addresses")
            if a in bound.observed:
                raise error(f"the proposal `{proposal.name}` draws `{a}`, which is observed in the data",
                            proposal.fn.span, proposal.source, hint="a guide proposes only latent choices")
        q_data = {a: (data or {})[a] for a, _ in proposal.fn.args if a in (data or {})}
        q_bound = proposal.bind(q_data, observations=False)
        q_params = dict(proposal_params or {})
        proposal.check_addresses({}, q_params)
        propose = proposal.runner(q_bound, frozenset(), frozenset(), frozenset(q_params), batch=True)
        drawn = frozenset(a for a in proposal.sites if a in model.sites)
        runner = model.runner(bound, frozenset(bound.observed) | drawn, frozenset(), frozenset(params or {}))
        try:
            values, log_p, log_q, later = proposed(propose, runner, num_samples, key, q_params, q_bound.arrays,
                                                   bound.observed, dict(params or {}), bound.arrays)
        except (TypeError, ValueError, IndexError, ZeroDivisionError) as e:
            raise located(e, (proposal, model)) from None
        log_p, log_q = np.asarray(log_p), np.asarray(log_q)
    observed = sorted(bound.observed)
    latents = {a: np.asarray(v) for a, v in values.items() if a not in bound.observed}
    check_weights(model, proposal, log_p, log_q, latents)
    log_w = log_p - log_q
    if not np.any(np.isfinite(log_w)):
        raise error(
            f"every one of the {num_samples} draws has zero weight: the data is impossible under {model.kind} "
            f"`{model.name}` as far as these draws can tell",
            model.fn.span,
            model.source,
            found="log weights all -inf",
            hint="check the observations against each choice's support, or propose from a guide closer to the "
            "posterior",
        )
    samples = model.with_computed(latents, data, computed, params, later, num_samples)
    choices = (model.full or model).fn.sites  # summed-out choices, recovered per draw, are shown as choices
    return ImportanceResult(samples, log_w, observed, tuple(n for n in samples if n not in choices), model, data,
                            params, tuple((model.full or model).fn.sites) + tuple(model.computed_names))


@partial(jax.jit, static_argnums=(0, 1, 2))
def proposed(propose: Callable, runner: Callable, num_samples: int, key: Any, q_params: Any, q_arrays: Any,
             observed: Any, params: Any, arrays: Any) -> tuple:
    """`num_samples` draws of the proposal (`propose`, a batched runner) and the model's log weight
    of each (`runner`, the proposal's draws given), and the key of the computed values, in one
    compiled call: splitting keys and mapping over draws outside it would cost more than the draws."""
    kq, kp = jax.random.split(key)
    _, drawn, q_score = propose(jax.random.split(kq, num_samples), {}, q_params, q_arrays)
    keys = jax.random.split(kp, num_samples)
    _, values, s = jax.vmap(lambda k, vals: runner(k, {**observed, **vals}, params, arrays))(keys, drawn)
    return values, s.lw, q_score.lp, jax.random.fold_in(key, 2)


def located(exc: Exception, programs: Sequence[Model]) -> Exception:
    """An error raised while tracing the programs, located at the one whose generated code raised it."""
    culprit, tb = programs[-1], exc.__traceback__
    while tb is not None:
        culprit = next((p for p in programs if tb.tb_frame.f_globals is p.impl.__globals__), culprit)
        tb = tb.tb_next
    return culprit.located(exc)


def check_weights(model: Model, proposal: Model | None, log_p: np.ndarray, log_q: np.ndarray,
                  drawn: Mapping[str, Any]) -> None:
    """Refuse weights that are NaN or +inf, naming the first such draw's culprit: the normalized
    weights, the estimates and the Pareto k made from them would be NaN or meaningless. `log_p` is
    the model's log weight of each draw, `log_q` the proposal's log density of it (0 for the prior),
    `drawn` the proposed latent values. (Weights that are all -inf get their own message.)"""
    log_w = log_p - log_q
    bad = np.isnan(log_w) | np.isposinf(log_w)
    if not bad.any():
        return
    i = int(np.argmax(bad))
    n, what = int(bad.sum()), "NaN" if np.isnan(log_w[i]) else "+inf"
    values = {a: np.asarray(v)[i] for a, v in sorted(drawn.items())}
    unfinite = [a for a, v in values.items() if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all()]
    prog = proposal if proposal is not None and (unfinite or not np.isfinite(log_q[i])) else model
    if unfinite:
        where = f"the {'proposal' if proposal else 'prior'} drew a non-finite `{unfinite[0]}`"
    elif prog is proposal:
        where = f"the proposal `{proposal.name}` gave its own draw log density {log_q[i]}"
    else:
        at = ", ".join(f"{a} = {float(v):.4g}" for a, v in values.items() if v.ndim == 0)
        where = f"{model.kind} `{model.name}` gave it log density {log_p[i]}" + (f" at {at}" if at else "")
    from pplang.precision import float64_hint

    closer = "propose from a guide closer to the posterior, with tails at least as heavy as the posterior's"
    hint = f"{float64_hint()}; otherwise {closer}" if float64_hint() else closer
    raise error(f"{n} of the {log_w.size} importance weights {'are' if n > 1 else 'is'} {what} (the first at draw "
                f"{i}: {where}); the estimates and the Pareto k would be meaningless",
                prog.fn.span, prog.source, hint=hint)


def prior_predictive(model: Model, data: Mapping[str, Any] | None = None, *, num_samples: int = 1000,
                     seed: Any = 0) -> dict[str, np.ndarray]:
    """Draws of every random choice from the prior."""
    if not isinstance(num_samples, int) or num_samples < 1:
        raise error(f"num_samples must be a positive int, got {num_samples!r}", hint="for example num_samples=1000")
    tr = model.simulate(data, seed=seed, num_samples=num_samples)
    return {a: np.asarray(v) for a, v in tr.values.items()}


def posterior_predictive(model: Model, posterior: ImportanceResult, data: Mapping[str, Any] | None = None,
                         *, num_samples: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Replicated observations: resample the posterior, then draw the observed choices anew
    given each draw of the latent ones."""
    draws = {a: v for a, v in posterior.resample(num_samples, seed=seed).items() if a in model.sites}
    n = next(iter(draws.values())).shape[0] if draws else (num_samples or posterior.num_samples)
    bound = model.bind(data)
    runner = model.runner(bound, frozenset(draws), batch=False)
    keys = jax.random.split(jax.random.key(seed + 1), n)
    _, values, _ = jax.vmap(lambda k, vals: runner(k, vals, {}, bound.arrays))(
        keys, {a: jnp.asarray(v) for a, v in draws.items()})
    return {a: np.asarray(v) for a, v in values.items() if a in bound.observed or a not in draws}
