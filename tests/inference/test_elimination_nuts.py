"""NUTS on a model whose discrete choices variable elimination sums out together, against the exact
posterior: the sprinkler network of docs/marginalize.md with a beta prior on the chance of rain,
integrated numerically over that chance with the three choices summed by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import integrate, stats

import pplang as pp

ROOT = Path(__file__).resolve().parents[2]


def sprinkler_model() -> pp.Model:
    doc = (ROOT / "docs" / "marginalize.md").read_text().split("```")
    (block,) = [doc[i] for i in range(1, len(doc), 2) if "model sprinkler" in doc[i]]
    return pp.loads(block.lstrip("\n"), file="marginalize.md")["sprinkler"]


def exact(y: np.ndarray) -> tuple[float, float]:
    """E[p_rain | y] and P(rain | y), summing rain, sprinkler and wet by hand."""
    wet_given = {(True, True): 0.99, (False, True): 0.9, (True, False): 0.8, (False, False): 0.0}  # (rain, sprinkler)
    readings = {w: float(np.prod(stats.norm.pdf(y, 0.7 if w else 0.2, 0.1))) for w in (False, True)}

    def given_rain(rain: bool) -> float:  # p(y | rain)
        total = 0.0
        for sprinkler in (False, True):
            ps = (0.01 if rain else 0.4) if sprinkler else (0.99 if rain else 0.6)
            pw = wet_given[(rain, sprinkler)]
            total += ps * (pw * readings[True] + (1 - pw) * readings[False])
        return total

    wet, dry = given_rain(True), given_rain(False)
    prior = stats.beta(2.0, 8.0).pdf
    z = integrate.quad(lambda p: prior(p) * (p * wet + (1 - p) * dry), 0, 1)[0]
    mean = integrate.quad(lambda p: p * prior(p) * (p * wet + (1 - p) * dry), 0, 1)[0] / z
    rain = integrate.quad(lambda p: prior(p) * p * wet, 0, 1)[0] / z
    return mean, rain


def test_the_sprinkler_network_samples_its_exact_posterior() -> None:
    model = sprinkler_model()
    y = np.array([0.68, 0.74, 0.66])
    res = pp.sample(model, {"N": 3, "y": y}, chains=4, warmup=400, draws=500, seed=3, progress=False)
    assert model.marginal(["y"]).marginalized == dict.fromkeys(("rain", "sprinkler", "wet"), "elimination")
    mean, rain = exact(y)
    table = res.table()
    row = table.loc["p_rain"]
    assert abs(row["mean"] - mean) < 4 * row["mcse_mean"] + 1e-3, (row["mean"], mean)
    got = res.draws["p(rain)"][..., 1].mean()  # the chance of rain given each draw's p_rain, averaged
    assert abs(got - rain) < 4 * table.loc["p(rain)[1]", "mcse_mean"] + 1e-3, (got, rain)
