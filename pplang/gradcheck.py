"""Checking a gradient estimator: is the Monte Carlo mean of its estimates within a few standard
errors of a reference gradient?

An unbiased estimator's mean over n independent keys differs from the true gradient by about
sd / sqrt(n) per coordinate, so a z-score of (mean - reference) / SE beyond about 4.5 says the
estimator is biased (or the reference wrong), while a correct one passes with probability
1 - 7e-6 per coordinate. The reference is an exact gradient when the caller can give one, or else
a second, independent and lower-variance estimate of the same objective: every enumerable choice
summed exactly (`enum`) and every continuous one differentiated through (`reparam`), over more
keys, whose own standard error enters the z-score.

    from pplang.gradcheck import check_gradient
    check = check_gradient(model, guide, "elbo", data, strategies={"z": "reinforce"})
    print(check.report())
    assert check.ok
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pplang.compiler.diagnostics import PplError, error
from pplang.models import Model

REFERENCES = ("enum", "reparam")
# Float rounding allowed on top of the standard errors (relative and absolute), so that estimators
# with zero variance (`enum` alone) compare equal to an exact gradient computed another way.
RTOL, ATOL = 1e-4, 1e-6


@dataclass
class Entry:
    """One parameter: the estimator's mean and standard error against the reference."""

    role: str
    address: str
    mean: np.ndarray
    se: np.ndarray
    reference: np.ndarray
    reference_se: np.ndarray
    z: np.ndarray

    @property
    def max_abs_z(self) -> float:
        return float(np.max(np.abs(self.z))) if self.z.size else 0.0


@dataclass
class GradCheck:
    """The comparison of an estimator's mean gradient with a reference, per parameter.

    `mean`, `se`, `reference` and `z` are nested dicts role -> parameter address -> array (the
    shape of the parameter); `ok` is True when every |z| is below `threshold`."""

    entries: list[Entry]
    threshold: float
    num_estimates: int
    reference_kind: str
    strategies: dict[str, str] = field(default_factory=dict)
    reference_strategies: dict[str, str] = field(default_factory=dict)
    estimator: str = "the estimator"

    def _nested(self, attr: str) -> dict[str, dict[str, np.ndarray]]:
        out: dict[str, dict[str, np.ndarray]] = {}
        for e in self.entries:
            out.setdefault(e.role, {})[e.address] = getattr(e, attr)
        return out

    @property
    def mean(self) -> dict[str, dict[str, np.ndarray]]:
        return self._nested("mean")

    @property
    def se(self) -> dict[str, dict[str, np.ndarray]]:
        return self._nested("se")

    @property
    def reference(self) -> dict[str, dict[str, np.ndarray]]:
        return self._nested("reference")

    @property
    def reference_se(self) -> dict[str, dict[str, np.ndarray]]:
        return self._nested("reference_se")

    @property
    def z(self) -> dict[str, dict[str, np.ndarray]]:
        return self._nested("z")

    @property
    def max_abs_z(self) -> float:
        return max((e.max_abs_z for e in self.entries), default=0.0)

    @property
    def ok(self) -> bool:
        return all(e.max_abs_z < self.threshold for e in self.entries)

    def report(self) -> str:
        """A table: one row per scalar parameter, the worst first, and the verdict."""
        rows = []
        for e in self.entries:
            for idx in np.ndindex(e.z.shape):
                name = f"{e.role}/{e.address}" + (f"[{', '.join(map(str, idx))}]" if idx else "")
                rows.append((abs(float(e.z[idx])), name, float(e.mean[idx]), float(e.se[idx]),
                             float(e.reference[idx]), float(e.reference_se[idx]), float(e.z[idx])))
        rows.sort(key=lambda r: -r[0])
        width = max([len(r[1]) for r in rows] + [9])
        head = (f"{'parameter':<{width}}  {'mean':>11}  {'se':>9}  {'reference':>11}  {'ref se':>9}  {'z':>7}")
        lines = [f"gradient check: {self.num_estimates} estimates of {self.estimator} against {self.reference_kind}"]
        if self.strategies:
            lines.append(f"strategies: {_strategy_text(self.strategies)}")
        if self.reference_strategies:
            lines.append(f"reference strategies: {_strategy_text(self.reference_strategies)}")
        lines.append(head)
        for _, name, m, s, r, rs, z in rows:
            flag = "  <-- biased?" if abs(z) >= self.threshold else ""
            lines.append(f"{name:<{width}}  {m:>11.5g}  {s:>9.3g}  {r:>11.5g}  {rs:>9.3g}  {z:>7.2f}{flag}")
        if not rows:
            lines.append("(no parameters)")
        verdict = "OK" if self.ok else "FAILED"
        lines.append(f"{verdict}: largest |z| = {self.max_abs_z:.2f} (threshold {self.threshold:g})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()


def _strategy_text(strategies: Mapping[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(strategies.items()))


def _leaves(tree: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], Any]:
    """(role, address) -> value of a params-shaped tree; learned baselines are not parameters of
    the objective and are left out."""
    return {(role, a): v for role, sub in tree.items() if role != "_baselines" for a, v in sub.items()}


def compare(estimates: Mapping[str, Mapping[str, Any]], reference: Mapping[str, Mapping[str, Any]],
            reference_estimates: Mapping[str, Mapping[str, Any]] | None = None, *, threshold: float = 4.5,
            reference_kind: str = "the exact gradient", strategies: Mapping[str, str] | None = None,
            reference_strategies: Mapping[str, str] | None = None, estimator: str = "the estimator") -> GradCheck:
    """Compare gradient estimates (a params-shaped tree with a leading axis of independent
    estimates) with a reference: an exact gradient (`reference`), or, when `reference_estimates`
    is given instead, the mean of those. Every parameter of `estimates` must be in the reference."""
    est = _leaves(estimates)
    exact = None if reference_estimates is not None else _leaves(reference)
    ref_est = None if reference_estimates is None else _leaves(reference_estimates)
    entries, n = [], 0
    for (role, a), draws in est.items():
        draws = np.asarray(draws, dtype=np.float64)
        n = draws.shape[0]
        mean = draws.mean(axis=0)
        se = draws.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(mean.shape, np.inf)
        if ref_est is not None:
            if (role, a) not in ref_est:
                raise ValueError(f"the reference has no gradient for `{a}` of `{role}`")
            rd = np.asarray(ref_est[(role, a)], dtype=np.float64)
            ref, ref_se = rd.mean(axis=0), rd.std(axis=0, ddof=1) / np.sqrt(rd.shape[0])
        else:
            if (role, a) not in exact:  # type: ignore[operator]
                raise ValueError(f"the reference has no gradient for `{a}` of `{role}`")
            ref = np.broadcast_to(np.asarray(exact[(role, a)], dtype=np.float64), mean.shape)  # type: ignore[index]
            ref_se = np.zeros(mean.shape)
        scale = np.sqrt(np.square(se) + np.square(ref_se) + np.square(RTOL * np.abs(ref) + ATOL))
        z = (mean - ref) / scale
        z = np.where(np.isfinite(mean) & np.isfinite(ref), z, np.inf)
        entries.append(Entry(role, a, mean, se, np.asarray(ref), ref_se, z))
    return GradCheck(entries, threshold, n, reference_kind, dict(strategies or {}), dict(reference_strategies or {}),
                     estimator)


def gradient_draws(estimate: Callable[[Any, Any], Any], params: Any, num_estimates: int, seed: int,
                   batch: int = 1000) -> Any:
    """`estimate(params, key)` for `num_estimates` independent keys, vmapped in batches under jit."""
    batch = min(batch, num_estimates)
    chunks = -(-num_estimates // batch)
    keys = jax.random.split(jax.random.key(seed), chunks * batch)  # whole batches: one compile
    run = jax.jit(jax.vmap(lambda k: estimate(params, k)))
    parts = [run(keys[i * batch:(i + 1) * batch]) for i in range(chunks)]
    return jax.tree.map(lambda *xs: jnp.concatenate(xs)[:num_estimates], *parts)


def check_gradient(model: Model, guide: Model | str | None = None, objective: Any = "elbo",
                   data: Mapping[str, Any] | None = None, *, params: Mapping[str, Any] | None = None,
                   exact: Callable[[Any], Any] | None = None, num_estimates: int = 2000, seed: int = 0,
                   strategies: Mapping[str, str] | None = None, reference: str | None = "enum",
                   reference_estimates: int | None = None, programs: Mapping[str, Model] | None = None,
                   baseline: Any = None, particles: int = 1, estimate: Callable[[Any, Any], Any] | None = None,
                   threshold: float = 4.5) -> GradCheck:
    """Check the gradient estimator of `objective` (model, guide and data as in `pp.fit`) at
    `params` (unconstrained, as `Problem.init_params` gives them; the initial values by default).

    The estimator is the one pplang generates for the given `strategies` (and baseline), or your
    own `estimate(params, key) -> gradient` (a params-shaped tree). It is run for `num_estimates`
    independent keys and its mean compared with:
    - `exact(params)`, an exact gradient (a params-shaped tree), when given; else
    - a reference estimate over `reference_estimates` keys (default 4 * num_estimates) with every
      continuous choice `reparam` and, for reference="enum" (the default), every finite one `enum`
      where the objective allows it (other choices keep their strategy; the report lists them).
      reference=None is the same as "enum".
    Returns a `GradCheck`: `.ok`, `.z`, `.mean`, `.se`, `.reference`, `.report()`."""
    from pplang.inference.variational import Problem, make_guide

    if reference is not None and reference not in REFERENCES:
        raise error(f"unknown reference {reference!r}", hint="reference='enum', 'reparam' or None (the same as enum)")
    for name, v, least in (("num_estimates", num_estimates, 2), ("particles", particles, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise error(f"{name} must be an int of at least {least}, got {v!r}", hint=f"for example {name}=2000"
                        if name == "num_estimates" else "for example particles=1")
    data = dict(data or {})
    q = make_guide(model, guide if guide is not None else "mean_field", data)
    problem = Problem.build(model, q, objective, data, programs, strategies, baseline)
    params = problem.init_params(seed) if params is None else params
    chosen = site_strategies(problem) if estimate is None else {}
    mine = estimate if estimate is not None else (lambda p, k: problem.value_and_grad(p, k, particles)[1])
    draws = gradient_draws(mine, params, num_estimates, seed)
    own = "your estimate function" if estimate is not None else "the generated estimator"
    if exact is not None:
        return compare(draws, exact(params), threshold=threshold, strategies=chosen, estimator=own)
    ref_problem = reference_problem(problem, model, q, objective, data, programs, dict(strategies or {}),
                                    reference or "enum")
    ref_params = {**params, "_baselines": {}} if "_baselines" in params else params
    n_ref = reference_estimates or 4 * num_estimates
    ref_draws = gradient_draws(lambda p, k: ref_problem.value_and_grad(p, k, particles)[1], ref_params, n_ref,
                               seed + 1_000_003)
    ref_chosen = site_strategies(ref_problem)
    kind = f"a reference estimate over {n_ref} keys"
    if estimate is None and ref_chosen == chosen:
        kind += " (with the same strategies: this checks only Monte Carlo consistency)"
    return compare(draws, {}, ref_draws, threshold=threshold, reference_kind=kind, strategies=chosen,
                   reference_strategies=ref_chosen, estimator=own)


def site_strategies(problem: Any) -> dict[str, str]:
    """The strategy of every choice the objective draws through its programs, by `role/address`."""
    out = {}
    drawn = {c.program for c in problem.plan.calls.values() if c.kind == "simulate" and not c.stop}
    for role, prog in problem.runner.programs.items():
        if role not in drawn:
            continue
        for a, s in prog.strategies.items():
            if a not in prog.observed:
                out[f"{role}/{a}"] = s
    for a, s in problem.runner.strategies.items():
        out[f"objective/{a}"] = s
    return out


def reference_problem(problem: Any, model: Model, guide: Model, objective: Any, data: Mapping[str, Any],
                      programs: Mapping[str, Model] | None, strategies: dict[str, str], kind: str) -> Any:
    """The same objective with the lowest-variance strategies that apply: `reparam` for every
    reparameterizable choice, then `enum` for each finite one that the objective allows (tried one
    at a time, since enum cannot apply inside the objective's loops or some of the programs')."""
    from pplang.inference.variational import Problem

    def build(overrides: Mapping[str, str]) -> Any:
        return Problem.build(model, guide, objective, data, programs, overrides, None)

    sites = {a: info for m in problem.roles.values() for a, info in m.fn.sites.items()}
    sites.update(problem.objective.fn.sites)
    overrides = dict(strategies)
    for a, info in sites.items():
        if info.reparameterized:
            overrides[a] = "reparam"
    current = build(overrides)
    if kind == "enum":
        for a, info in sites.items():
            if info.enumerable and overrides.get(a) != "enum":
                try:
                    current = build({**overrides, a: "enum"})
                except PplError:
                    continue
                overrides[a] = "enum"
    return current


__all__ = ["check_gradient", "compare", "GradCheck", "Entry", "gradient_draws"]
