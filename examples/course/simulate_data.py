"""Writes the simulated data sets of the course (lessons 3, 8 and 9) and lesson 2's data.

    python examples/course/simulate_data.py

Each data set is drawn from its model with the parameters stated in the lesson's model file and
a fixed seed, so running this again writes the same files. Lesson 2 reuses examples/linreg's
simulated cars and adds the noise sd the conjugate model takes as known.
"""

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def write(name: str, data: dict) -> None:
    (HERE / name).write_text(json.dumps(data) + "\n")


def regression() -> None:
    cars = json.loads((HERE.parent / "linreg.data.json").read_text())
    write("02_regression.data.json", {**cars, "sigma": 0.7})


def logistic(rng: np.random.Generator) -> None:
    n = 80
    x = np.round(rng.uniform(0.0, 4.0, n), 2)  # hours of soaking
    y = rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-(-2.0 + 1.2 * x)))
    write("03_logistic.data.json", {"N": n, "x": x.tolist(), "y": y.astype(int).tolist()})


def gp(rng: np.random.Generator) -> None:
    n = 30
    x = np.round(np.sort(rng.uniform(0.0, 10.0, n)), 3)
    y = np.round(np.sin(x) + x / 5.0 + rng.normal(0.0, 0.3, n), 3)
    write("08_gp.data.json", {"N": n, "x": x.tolist(), "y": y.tolist()})


def local_level(rng: np.random.Generator) -> None:
    t, q, r = 100, 0.3, 1.0
    x = rng.normal(0.0, 2.0) + np.concatenate([[0.0], np.cumsum(rng.normal(0.0, q, t - 1))])
    y = np.round(x + rng.normal(0.0, r, t), 3)
    write("09_time_series.data.json", {"T": t, "q": q, "r": r, "y": y.tolist()})


def main() -> None:
    rng = np.random.default_rng(2026)
    regression()
    logistic(rng)
    gp(rng)
    local_level(rng)


if __name__ == "__main__":
    main()
