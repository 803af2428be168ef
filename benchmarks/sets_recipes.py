"""How training sets the accuracy of an amortized posterior: the deep-sets guide `line_q` of
examples/set_regression.ppl (Bayesian linear regression, conjugate) trained on simulations of
2..64 points under several recipes, and its answers for 100 new data sets of each of 4, 16, 50 and
64 points checked against the exact posterior.

    python benchmarks/sets_recipes.py [--only NAME ...] [--out FILE]

Each row: the recipe (simulations, epochs, learning rate and its schedule, batch size, network
width), the training time and steps, and per size the mean error of the posterior means in
exact-posterior sds and the mean ratio of the sds to the exact ones (2000 draws per data set).
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import pplang as pp
from pplang.inference.sets import SizeWarning

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "set_regression.ppl"
NETWORK = "deep_sets(out_size=5, width=64, phi=[64], rho=[64])"
SIZES = (4, 16, 50, 64)


@dataclass(frozen=True)
class Recipe:
    name: str
    simulate: int
    epochs: int
    learning_rate: float
    schedule: str
    batch_size: int
    width: int = 64


RECIPES = (
    Recipe("as before", 16384, 10, 3e-3, "constant", 64),
    Recipe("cosine", 16384, 10, 3e-3, "cosine", 64),
    Recipe("cosine, batch 32", 16384, 10, 3e-3, "cosine", 32),
    Recipe("cosine, 40 epochs", 16384, 40, 3e-3, "cosine", 64),
    Recipe("cosine, 40 epochs, batch 256", 16384, 40, 3e-3, "cosine", 256),
    Recipe("cosine, 40 epochs, width 128", 16384, 40, 3e-3, "cosine", 64, 128),
    Recipe("cosine, 65536 simulations", 65536, 10, 3e-3, "cosine", 64),
    Recipe("cosine, 65536 simulations, width 128", 65536, 10, 3e-3, "cosine", 64, 128),
    Recipe("cosine, 65536 simulations, rate 1e-2", 65536, 10, 1e-2, "cosine", 64),
    Recipe("cosine, 65536 simulations, 20 epochs", 65536, 20, 3e-3, "cosine", 64),
)


def run(recipe: Recipe) -> str:
    source = EXAMPLE.read_text().replace(NETWORK, f"deep_sets(out_size=5, width={recipe.width}, "
                                                  f"phi=[{recipe.width}], rho=[{recipe.width}])")
    module = pp.loads(source, file=str(EXAMPLE))
    t0 = time.perf_counter()
    r = pp.amortize(module["line"], module["line_q"], simulate=recipe.simulate, sizes=(2, 64), epochs=recipe.epochs,
                    learning_rate=recipe.learning_rate, batch_size=recipe.batch_size, progress=False,
                    lr_schedule=recipe.schedule)
    seconds = time.perf_counter() - t0
    rng = np.random.default_rng(2026)
    cells = []
    for n in SIZES:
        w, b = rng.normal(size=(2, 100))
        x = rng.normal(size=(100, n))
        y = w[:, None] * x + b[:, None] + 0.5 * rng.normal(size=(100, n))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SizeWarning)
            post = r.posterior({"x": x, "y": y}, num_samples=2000)
        errs, ratios = [], []
        for i in range(100):
            X = np.stack([x[i], np.ones(n)], 1)
            cov = np.linalg.inv(np.eye(2) + X.T @ X / 0.25)
            mean, sd = cov @ X.T @ y[i] / 0.25, np.sqrt(np.diag(cov))
            draws = np.stack([post.draws["w"][i], post.draws["b"][i]])
            errs.append(np.abs(draws.mean(1) - mean) / sd)
            ratios.append(draws.std(1) / sd)
        cells.append(f"{np.mean(errs):.3f} / {np.mean(ratios):.3f}")
    return (f"| {recipe.name} | {recipe.simulate} x {recipe.epochs} | {recipe.learning_rate:g} {recipe.schedule} | "
            f"{recipe.batch_size} | {recipe.width} | {seconds:.0f} s, {r.info['steps']} steps | "
            + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", help="a recipe's name (repeatable)")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    chosen = [r for r in RECIPES if not args.only or r.name in args.only]
    text = ["| recipe | simulations x epochs | learning rate | batch | width | training | "
            + " | ".join(f"{n} points: mean error (sds) / sd ratio" for n in SIZES) + " |",
            "|---|---|---|---|---|---|" + "---|" * len(SIZES)]
    print("\n".join(text), flush=True)
    for recipe in chosen:
        text.append(run(recipe))
        print(text[-1], flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
