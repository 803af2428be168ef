"""Lesson 8, in Python: tracking with a constant-velocity model (see tracking.ppl).

    python examples/tracking.py

1. Filter the 60 position fixes with 5000 particles; each particle is a 4-vector
   (east, north, east velocity, north velocity).
2. Compare the filtered positions with the raw fixes: the filter combines each fix with where
   the object should be given its past track, so its position uncertainty (the half-width of the
   90% band) ends up well below the sensor's (1.645 * 3 m = 4.9 m).
3. The velocity is never measured, yet the filter estimates it from how the fixes move.
4. Draw a few whole tracks from the particle system's genealogy (`trajectories`): paths that
   are consistent with all 60 fixes, not only with those up to each step. Their beginnings are
   shared: every resampling copies some particles and drops others, so all final particles descend
   from a few of the first ones.
"""

# ruff: noqa: F821
# (The linter reads this file as plain Python: it cannot know that `x[0] = ...` creates the array
# `x` inside the model.)

from pathlib import Path

import numpy as np

import pplang as pp

HERE = Path(__file__).resolve().parent


@pp.model
def tracking(T: int, dt: "positive", q: "positive", r: "positive"):
    F = [[1.0, 0.0, dt, 0.0], [0.0, 1.0, 0.0, dt], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    a = q * dt * dt * dt / 3.0
    b = q * dt * dt / 2.0
    c = q * dt
    Q = [[a, 0.0, b, 0.0], [0.0, a, 0.0, b], [b, 0.0, c, 0.0], [0.0, b, 0.0, c]]
    x[0] = pp.sample(pp.multivariate_normal(pp.zeros(4), pp.diag_matrix([100.0, 100.0, 25.0, 25.0])))
    y[0] = pp.sample(pp.normal(x[0][0:2], r))
    for t in range(1, T):
        x[t] = pp.sample(pp.multivariate_normal(F @ x[t - 1], Q))
        y[t] = pp.sample(pp.normal(x[t][0:2], r))


def main() -> dict:
    data = pp.load_data(str(HERE / "tracking.data.json"))  # T, dt, q, r and the fixes y (T x 2)
    result = pp.smc(tracking, data, particles=5000, seed=0)
    print(result.summary())

    y = np.asarray(data["y"])
    mean = np.asarray(result.filtering_mean("x"))                              # (T, 4)
    lo, hi = np.asarray(result.filtering_quantiles("x", [0.05, 0.95]))          # each (T, 4)
    print("   t   fix (east, north)     filtered position        90% half-width   filtered velocity")
    for t in (0, 1, 2, 5, 10, 20, 40, 59):
        half = (hi[t, :2] - lo[t, :2]) / 2
        print(f"  {t:2d}   ({y[t, 0]:7.2f}, {y[t, 1]:7.2f})   ({mean[t, 0]:7.2f}, {mean[t, 1]:7.2f})"
              f"   ({half[0]:4.2f}, {half[1]:4.2f}) m    ({mean[t, 2]:5.2f}, {mean[t, 3]:5.2f}) m/s")

    half_width = float(np.mean((hi[10:, :2] - lo[10:, :2]) / 2))
    print(f"position uncertainty after 10 fixes: 90% half-width {half_width:.2f} m on average "
          f"(one fix alone: {1.645 * data['r']:.2f} m)")
    print(f"log p(fixes): {result.log_marginal_likelihood:.3f}")

    paths = np.asarray(result.trajectories(3, seed=1)["x"])                   # (3, T, 4)
    for k, path in enumerate(paths):
        print(f"a whole track {k}: from ({path[0, 0]:.1f}, {path[0, 1]:.1f}) to ({path[-1, 0]:.1f}, "
              f"{path[-1, 1]:.1f}), mean speed {np.mean(np.hypot(path[:, 2], path[:, 3])):.2f} m/s")
    # Resampling copies particles, so going back in time the family tree narrows (path degeneracy).
    starts = np.unique(np.asarray(result.particles["x"])[:, 0, :2], axis=0)
    print(f"the 5000 final particles descend from {len(starts)} of the 5000 starting points: whole tracks "
          "say much about the last steps, little about the first")
    return {"result": result, "data": data}


if __name__ == "__main__":
    main()
