"""What the type checker knows of each distribution, without JAX: the ways to call it
(`SIGNATURES`, rendered for error messages by `describe`) and which gradient strategies it
allows (`FLAGS`: the class attributes of pplang.stdlib.distributions, named here so that
checking a file does not import JAX; a test checks the two agree).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_REPARAM = frozenset({"reparameterized"})
_ENUM_MVD = frozenset({"enumerable", "has_mvd"})
FLAGS: dict[str, frozenset[str]] = {
    "normal": frozenset({"reparameterized", "has_mvd"}),
    "half_normal": _REPARAM,
    "lognormal": _REPARAM,
    "student_t": _REPARAM,
    "cauchy": _REPARAM,
    "half_cauchy": _REPARAM,
    "half_student_t": _REPARAM,
    "laplace": _REPARAM,
    "uniform": _REPARAM,
    "exponential": frozenset({"reparameterized", "has_mvd"}),
    "gamma": _REPARAM,
    "inverse_gamma": _REPARAM,
    "beta": _REPARAM,
    "bernoulli": _ENUM_MVD,
    "bernoulli_logit": _ENUM_MVD,
    "binomial": _ENUM_MVD,
    "categorical": _ENUM_MVD,
    "categorical_logit": _ENUM_MVD,
    "poisson": frozenset({"has_mvd"}),
    "geometric": frozenset({"has_mvd"}),
    "negative_binomial": frozenset(),
    "negative_binomial_2": frozenset(),
    "dirichlet": _REPARAM,
    "multivariate_normal": _REPARAM,
    "lkj_cholesky": _REPARAM,
    "flat": frozenset(),
}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter. `kind` is the element constraint ("real", "positive", "unit", "int")
    or the shape kind ("vector", "matrix", "simplex"); `event_rank` is how many trailing
    dims belong to one distribution (more leading dims batch it). `default` None means
    required."""

    name: str
    kind: str
    event_rank: int = 0
    default: float | None = None
    keyword_only: bool = False

    def __str__(self) -> str:
        kind = self.kind
        if self.event_rank == 1 and kind not in ("vector", "simplex"):
            kind = f"{kind} vector"
        text = f"{self.name}: {kind}"
        return text if self.default is None else f"{text} = {self.default:g}"


@dataclass(frozen=True)
class Signature:
    """One way to call a distribution: its parameters, what its values are
    (`value_kind` "real" | "int" | "bool", `event_rank`) and the name of its support
    constraint (see constraints; "interval", "int_interval" depend on parameters)."""

    name: str
    params: list[ParamSpec]
    value_kind: str
    event_rank: int
    support: str

    @property
    def constructor(self) -> Callable[..., Any]:
        """The distribution class (importing JAX on first use)."""
        from .distributions import DISTRIBUTIONS

        return DISTRIBUTIONS[self.name]

    @property
    def reparameterized(self) -> bool:
        return "reparameterized" in FLAGS.get(self.name, ())

    @property
    def enumerable(self) -> bool:
        return "enumerable" in FLAGS.get(self.name, ())

    @property
    def has_mvd(self) -> bool:
        return "has_mvd" in FLAGS.get(self.name, ())

    def __str__(self) -> str:
        parts = []
        for i, p in enumerate(self.params):
            if p.keyword_only and (i == 0 or not self.params[i - 1].keyword_only):
                parts.append("*")
            parts.append(str(p))
        return f"{self.name}({', '.join(parts)})"


def _sig(name: str, params: list[ParamSpec], value_kind: str, support: str, event_rank: int = 0) -> Signature:
    return Signature(name, params, value_kind, event_rank, support)


_P = ParamSpec
_LOC, _SCALE = _P("loc", "real"), _P("scale", "positive")

SIGNATURES: dict[str, list[Signature]] = {
    "normal": [_sig("normal", [_LOC, _SCALE], "real", "real")],
    "half_normal": [_sig("half_normal", [_SCALE], "real", "positive")],
    "lognormal": [_sig("lognormal", [_LOC, _SCALE], "real", "positive")],
    "student_t": [_sig("student_t", [_P("df", "positive"), _P("loc", "real", default=0.0),
                                     _P("scale", "positive", default=1.0)], "real", "real")],
    "cauchy": [_sig("cauchy", [_LOC, _SCALE], "real", "real")],
    "half_cauchy": [_sig("half_cauchy", [_SCALE], "real", "positive")],
    "half_student_t": [_sig("half_student_t", [_P("df", "positive"), _P("scale", "positive", default=1.0)],
                            "real", "positive")],
    "laplace": [_sig("laplace", [_LOC, _SCALE], "real", "real")],
    "uniform": [_sig("uniform", [_P("low", "real"), _P("high", "real")], "real", "interval")],
    "exponential": [_sig("exponential", [_P("rate", "positive")], "real", "positive")],
    "gamma": [_sig("gamma", [_P("concentration", "positive"), _P("rate", "positive")], "real", "positive")],
    "inverse_gamma": [_sig("inverse_gamma", [_P("concentration", "positive"), _P("scale", "positive")],
                           "real", "positive")],
    "beta": [_sig("beta", [_P("a", "positive"), _P("b", "positive")], "real", "unit")],
    "bernoulli": [
        _sig("bernoulli", [_P("probs", "unit")], "bool", "bool"),
        _sig("bernoulli", [_P("logits", "real", keyword_only=True)], "bool", "bool"),
    ],
    "bernoulli_logit": [_sig("bernoulli_logit", [_P("logits", "real")], "bool", "bool")],
    "binomial": [
        _sig("binomial", [_P("total_count", "int"), _P("probs", "unit")], "int", "int_interval"),
        _sig("binomial", [_P("total_count", "int"), _P("logits", "real", keyword_only=True)], "int", "int_interval"),
    ],
    "categorical": [
        _sig("categorical", [_P("probs", "simplex", 1)], "int", "int_interval"),
        _sig("categorical", [_P("logits", "vector", 1, keyword_only=True)], "int", "int_interval"),
    ],
    "categorical_logit": [_sig("categorical_logit", [_P("logits", "vector", 1)], "int", "int_interval")],
    "poisson": [_sig("poisson", [_P("rate", "positive")], "int", "nonnegative_int")],
    "geometric": [_sig("geometric", [_P("probs", "unit")], "int", "nonnegative_int")],
    "negative_binomial": [_sig("negative_binomial", [_P("total_count", "positive"), _P("probs", "unit")],
                               "int", "nonnegative_int")],
    "negative_binomial_2": [_sig("negative_binomial_2", [_P("mu", "positive"), _P("phi", "positive")],
                                 "int", "nonnegative_int")],
    "dirichlet": [_sig("dirichlet", [_P("concentration", "positive", 1)], "real", "simplex", 1)],
    "multivariate_normal": [
        _sig("multivariate_normal", [_P("loc", "vector", 1), _P("covariance_matrix", "matrix", 2)], "real", "real", 1),
        _sig("multivariate_normal", [_P("loc", "vector", 1), _P("scale_tril", "matrix", 2, keyword_only=True)],
             "real", "real", 1),
    ],
    "lkj_cholesky": [_sig("lkj_cholesky", [_P("dim", "int"), _P("concentration", "positive", default=1.0)],
                          "real", "cholesky_corr", 2)],
    "flat": [_sig("flat", [], "real", "real")],
}


def describe(name: str) -> str:
    """The signatures of distribution `name`, one per line, for error messages."""
    return "\n".join(str(s) for s in SIGNATURES[name])
