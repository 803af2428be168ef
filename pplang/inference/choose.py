"""`pp.infer`: the best applicable method for a model and its data, and why.

NUTS where every latent choice is continuous or a discrete choice the marginalize transformation
sums out (the reference answer, with diagnostics); a particle filter where other discrete choices
rule NUTS out and the model has a loop over time; importance sampling
from the prior only when asked for, or when nothing else applies (discrete choices outside a loop
over time), and then said so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pplang.compiler.diagnostics import PplError, did_you_mean, error
from pplang.models import Model

METHODS = ("auto", "nuts", "smc", "is")
NAMES = {"nuts": "NUTS", "smc": "a particle filter (SMC)", "is": "importance sampling"}


@dataclass(frozen=True)
class Choice:
    """A method (`nuts`, `smc` or `is`) and the reason it was picked."""

    method: str
    reason: str

    def __str__(self) -> str:
        return f"method: {NAMES[self.method]} ({self.reason})"


def sequential(model: Model) -> bool:
    """Whether the `smc` transformation applies: one top-level loop over time that carries state."""
    from pplang.inference.filtering import compiled

    try:
        compiled(model)
    except PplError:
        return False
    return True


def choose_method(model: Model, data: Mapping[str, Any] | None = None) -> Choice:
    """The method `pp.infer` and `pplang infer` run for this model and data, and why."""
    bound = model.bind(data or {})
    discrete = [a for a in model.latent_addresses(bound) if model.sites[a].kind in ("int", "bool")]
    if not discrete:
        return Choice("nuts", "every latent choice is continuous")
    names = ", ".join(f"`{a}`" for a in discrete)
    try:
        marginal = model.marginal(bound.observed)
        marginal.bind(data or {})  # with this data, its tables within the budget
        left = [a for a in marginal.latent_addresses(bound) if model.sites[a].kind in ("int", "bool")]
    except PplError:
        left = discrete
    if not left:
        return Choice("nuts", f"the discrete choices {names} are summed out of the density (marginalize), and "
                      "the other latent choices are continuous")
    if sequential(model):
        return Choice("smc", f"the discrete choices {names} rule out NUTS, and the model has a loop over time")
    return Choice("is", f"the discrete choices {names} rule out NUTS and no loop over time allows SMC; "
                  "check the effective sample size and Pareto k")


def pick(model: Model, data: Mapping[str, Any] | None, method: str) -> Choice:
    """`method` as asked for, or the automatic choice for `auto`."""
    if method not in METHODS:
        raise error(f"unknown inference method {method!r}",
                    hint=did_you_mean(str(method), METHODS) or "methods: " + ", ".join(METHODS))
    return choose_method(model, data) if method == "auto" else Choice(method, "asked for")


def infer(model: Model, data: Mapping[str, Any] | None = None, *, method: str = "auto", seed: Any = 0,
          **options: Any) -> Any:
    """The posterior by the best applicable method (`choose_method` says which and why), or by
    `method` ("nuts", "smc", "is"). `options` go to `pp.sample`, `pp.smc` or
    `pp.importance_sampling`; the result is theirs."""
    choice = pick(model, data, method)
    if choice.method == "nuts":
        from pplang.inference.mcmc import sample

        return sample(model, data, seed=seed, **options)
    if choice.method == "smc":
        from pplang.inference.filtering import smc

        return smc(model, data, seed=seed, **options)
    from pplang.inference.importance import importance_sampling

    return importance_sampling(model, data, seed=seed, **options)
