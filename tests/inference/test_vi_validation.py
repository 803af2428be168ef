"""Variational inference against posteriordb's reference posteriors (long MCMC runs).

For eight schools (non-centred), kidiq and arK, a full-rank normal guide in unconstrained space is
fitted by maximizing the ELBO, then corrected by importance resampling with the fitted guide as the
proposal. The corrected posterior mean of every quantity posteriordb reports must match the
reference mean within 4.5 standard errors: the importance-sampling error sd / sqrt(ESS) (sd the
reference posterior sd, ESS the weights' effective sample size) combined with the reference's own
Monte Carlo error. The Pareto k of the weights says whether the correction can be trusted: below
0.7 for kidiq and arK. For eight schools it is genuinely above 0.5 (see `test_eight_schools`), and
the test checks that instead. A mean-field guide is fitted too and its bias recorded, not asserted:
docs/vi-validation.md reports it (`python tests/inference/test_vi_validation.py` prints the numbers). What is
asserted of it is what the Pareto k must say: for kidiq and arK, whose posteriors are strongly
correlated, the mean-field guide is too narrow to be corrected (k above 0.7).

The reference summaries in tests/data/posteriordb/ and the data in examples/ come from posteriordb
(BSD 3-Clause licence, tests/data/posteriordb/LICENCE.md).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import optax
import pytest

import pplang as pp

ROOT = Path(__file__).resolve().parents[2]
REFERENCES = ROOT / "tests" / "data" / "posteriordb"
EXAMPLES = ROOT / "examples"

POSTERIORS = {  # example -> posteriordb posterior
    "eight_schools": "eight_schools-eight_schools_noncentered",
    "kidiq": "kidiq-kidscore_momiq",
    "ark": "arK-arK",
}
# Adam with a step size decaying from 0.1 to 0.001. Both ends matter: kidiq's intercept must travel
# from 0 to 26 along a ridge (correlation -0.99 with the slope), which takes tens of thousands of
# steps, and a constant step keeps the guide's location jittering by about the step size, more than
# arK's alpha has posterior sd (0.01). The steps themselves are cheap (10,000 to 25,000 per second
# here); compiling dominates the time of a fit.
STEPS = 50_000
PARTICLES = 4
LEARNING_RATE = (0.1, 0.01)  # initial rate, and the factor it decays by over the fit
DRAWS = 100_000  # importance-resampling draws
SEED = 0
Z = 4.5  # standard errors allowed
PARETO_OK = 0.7

# Quantities posteriordb reports that are computed, not drawn: name -> function of the draws.
DERIVED: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
    "theta": lambda d: d["mu"][:, None] + d["tau"][:, None] * d["theta_tilde"],  # eight schools
}


@dataclass(frozen=True)
class Reference:
    """A reference posterior mean, sd, and the Monte Carlo standard error of the mean."""

    mean: float
    sd: float
    se: float


def references(posterior: str) -> dict[str, Reference]:
    """posteriordb's summaries by its names (`beta[1]` is 1-based); sd from the mean square."""
    mean = json.loads((REFERENCES / "mean_value" / f"{posterior}.json").read_text())
    square = json.loads((REFERENCES / "mean_squared_value" / f"{posterior}.json").read_text())
    assert mean["names"] == square["names"]
    return {n: Reference(m, math.sqrt(s - m * m), se)
            for n, m, s, se in zip(mean["names"], mean["mean_value"], square["mean_squared_value"], mean["mcse_mean"])}


def quantity(name: str, draws: dict[str, np.ndarray]) -> np.ndarray:
    """Draws of the posteriordb quantity `name` (`sigma`, `beta[2]`) from draws by pplang address."""
    base, index = re.fullmatch(r"(\w+)(?:\[(\d+)\])?", name).groups()
    values = DERIVED[base](draws) if base in DERIVED else np.asarray(draws[base], float)
    return values if index is None else values[:, int(index) - 1]


@cache
def fitted(example: str, guide: str, seed: int = SEED) -> tuple[pp.FitResult, pp.ImportanceResult]:
    """A fit of `guide` to the example's model and its importance-resampling correction."""
    model = pp.load(str(EXAMPLES / f"{example}.ppl"))[example]
    data = pp.load_data(str(EXAMPLES / f"{example}.data.json"))
    rate, decay = LEARNING_RATE
    optimizer = optax.adam(optax.exponential_decay(rate, STEPS, decay))
    result = pp.fit(model, guide, "elbo", data, optimizer=optimizer, steps=STEPS, particles=PARTICLES, seed=seed,
                    progress=False, num_draws=DRAWS)
    assert result.info["status"] == "done", result.info["message"]
    return result, result.importance_resample(num_samples=DRAWS, seed=seed)


@dataclass(frozen=True)
class Row:
    """One quantity of one posterior: the reference, the guide's own mean and sd, the corrected
    mean and its tolerance."""

    name: str
    ref: Reference
    guide_mean: float
    guide_sd: float
    corrected: float
    tolerance: float

    @property
    def bias(self) -> float:
        """The guide's error in reference posterior sds."""
        return (self.guide_mean - self.ref.mean) / self.ref.sd


def compare(example: str, guide: str) -> tuple[list[Row], float, float]:
    """Rows for every reference quantity, the Pareto k and the ESS of the correction."""
    result, corrected = fitted(example, guide)
    weights = corrected.weights
    rows = []
    for name, ref in references(POSTERIORS[example]).items():
        q = quantity(name, result.draws)
        mean = float(np.sum(weights * quantity(name, corrected.samples)))
        tolerance = Z * math.sqrt(ref.sd**2 / corrected.ess + ref.se**2)
        rows.append(Row(name, ref, float(q.mean()), float(q.std()), mean, tolerance))
    return rows, corrected.pareto_k, corrected.ess


def check_means(rows: list[Row]) -> None:
    bad = [f"{r.name}: {r.corrected:.4g} vs {r.ref.mean:.4g} (tolerance {r.tolerance:.3g})" for r in rows
           if not abs(r.corrected - r.ref.mean) < r.tolerance]
    assert not bad, "corrected means off the reference: " + "; ".join(bad)


def record_mean_field(example: str, record: Callable[[str, object], None]) -> float:
    """Fit the mean-field guide and record its bias (in posterior sds) and sd ratio per quantity;
    return the Pareto k of its correction."""
    rows, k, ess = compare(example, "mean_field")
    for r in rows:
        record(f"mean_field {r.name}", f"bias {r.bias:+.2f} sd, sd ratio {r.guide_sd / r.ref.sd:.2f}")
    record("mean_field pareto_k", f"{k:.2f}")
    return k


@pytest.mark.parametrize("example", ["kidiq", "ark"])
def test_full_rank_corrected_means(example: str, record_property: Callable[[str, object], None]) -> None:
    rows, k, ess = compare(example, "full_rank")
    assert k < PARETO_OK, f"Pareto k {k:.2f}: the full-rank guide is too poor a proposal"
    check_means(rows)
    mean_field_k = record_mean_field(example, record_property)
    assert mean_field_k > PARETO_OK, f"Pareto k {mean_field_k:.2f} of a mean-field guide on a correlated posterior"


def test_eight_schools(record_property: Callable[[str, object], None]) -> None:
    """The corrected means match, but the weights of a normal guide have infinite variance here.

    Near tau = 0 the likelihood is flat and the half-Cauchy prior density is positive, so the
    posterior density of log(tau) falls off only like tau = exp(log tau) to the left, while the
    guide's normal falls off like exp(-log(tau)^2 / 2s^2). The weights p/q grow without bound in that
    tail and their second moment, the integral of p^2/q, diverges: the weights' tail index is at
    least 0.5, and at most 1 since their mean is finite. The estimate of k from 10^5 draws lies
    between 0.6 and 0.8 over fitting seeds; the mean estimates still converge, more slowly."""
    rows, k, ess = compare("eight_schools", "full_rank")
    assert 0.5 < k < 1.0, f"Pareto k {k:.2f}"
    check_means(rows)
    record_mean_field("eight_schools", record_property)


# ---------------------------------------------------------------- the report in docs/vi-validation.md


def report(seeds: int = 5) -> str:
    """Markdown tables of every posterior: reference, mean-field, full-rank, corrected; and Pareto k
    of the correction over `seeds` fitting seeds."""
    out = []
    for example, posterior in POSTERIORS.items():
        mf, mf_k, mf_ess = compare(example, "mean_field")
        fr, fr_k, fr_ess = compare(example, "full_rank")
        out.append(f"### {example} ({posterior})\n")
        out.append("| quantity | reference mean (sd) | mean-field mean (sd) | mean-field bias | "
                   "full-rank mean (sd) | full-rank + IS mean | tolerance |")
        out.append("|---|---|---|---|---|---|---|")
        for a, b in zip(mf, fr):
            out.append(f"| {a.name} | {a.ref.mean:.4g} ({a.ref.sd:.3g}) | {a.guide_mean:.4g} ({a.guide_sd:.3g}) | "
                       f"{a.bias:+.2f} sd | {b.guide_mean:.4g} ({b.guide_sd:.3g}) | {b.corrected:.4g} | "
                       f"{b.tolerance:.2g} |")
        ks = [compare_k(example, "full_rank", s) for s in range(seeds)]
        out.append(f"\nPareto k of the correction ({DRAWS} draws): full-rank {fr_k:.2f} (ESS {fr_ess:.0f}), "
                   f"mean-field {mf_k:.2f} (ESS {mf_ess:.0f}); full-rank over fitting seeds 0-{seeds - 1}: "
                   + ", ".join(f"{k:.2f}" for k in ks) + "\n")
    return "\n".join(out)


def compare_k(example: str, guide: str, seed: int) -> float:
    return fitted(example, guide, seed)[1].pareto_k


if __name__ == "__main__":
    print(report(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
