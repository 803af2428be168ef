"""FitResult: summary table, resampling, plots, ArviZ export, and save/load round trips."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from pplang.compiler.diagnostics import PplError
from pplang.runtime.optimize import Timings

from pplang.plots import moving_average
from pplang.results import FitResult

N = 500
PNG = b"\x89PNG\r\n\x1a\n"


def fit_result() -> FitResult:
    rng = np.random.default_rng(0)
    mu = rng.normal(1.0, 2.0, N)
    z = np.stack([2 * mu, rng.normal(size=N), rng.normal(size=N)], axis=1)
    values = -10 * np.exp(-np.arange(300) / 50) + rng.normal(0, 0.1, 300)
    values[17] = np.nan  # a skipped step
    return FitResult(
        params={"q": {"loc": np.array([1.0, 2.0]), "scale": np.float64(0.5)}, "p": {"w": np.ones((2, 2))}},
        values=values,
        draws={"mu": mu, "z": z, "k": rng.integers(0, 3, N)},
        info={"model": "m", "guide": "q", "objective": "elbo", "steps": 300, "status": "done",
              "message": "ran 300 of 300 steps", "timings": Timings(0.5, 1.0, 300.0), "seed": np.int64(3)},
    )


def row(text: str, name: str, index: int | None = None) -> list[str]:
    """The cells of scalar `name`, or of entry `index` of array `name` (listed under it)."""
    lines = text.splitlines()
    if index is None:
        return next(line.split()[1:] for line in lines if line.split()[:1] == [name])
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name} (shape"))
    return next(line.split()[1:] for line in lines[start:] if line.split()[:1] == [f"[{index}]"])


def test_summary_has_a_header_and_one_row_per_scalar():
    r = fit_result()
    text = r.summary(quantiles=(0.1, 0.9))
    for line in ("model: m", "guide: q", "objective: elbo", "status: done after 300 steps", f"{N} draws"):
        assert line in text
    assert "10%" in text and "90%" in text and "5%" not in text
    mu = r.draws["mu"]
    assert row(text, "mu") == [f"{x:.4g}" for x in (mu.mean(), mu.std(), *np.quantile(mu, (0.1, 0.9)))]
    z2 = r.draws["z"][:, 2]
    assert row(text, "z", 2) == [f"{x:.4g}" for x in (z2.mean(), z2.std(), *np.quantile(z2, (0.1, 0.9)))]
    # no model order to follow: names in alphabetical order, the integer draws of k as value probabilities
    assert [line.split()[0] for line in text.splitlines()[-6:]] == ["k", "mu", "z", "[0]", "[1]", "[2]"]
    k = r.draws["k"]
    assert row(text, "k") == ["P", *[x for v in range(3) for x in (f"{v}:", f"{np.mean(k == v):.3f}")]]
    tail = r.values[-30:]
    assert f"objective (mean of the last 30 steps): {np.nanmean(tail):.6g}" in text
    assert "... 3 more rows" in r.summary(max_rows=2)
    assert repr(r) == "FitResult(model='m', guide='q', objective='elbo', status='done', steps=300, draws=500 x 3)"


def test_sample_subsamples_jointly_and_resamples_past_the_number_of_draws():
    r = fit_result()
    everything = r.sample()
    assert all(np.array_equal(everything[k], r.draws[k]) for k in r.draws)
    everything["mu"][0] = 99.0
    assert r.draws["mu"][0] != 99.0  # copies
    few = r.sample(100, seed=1)
    assert few["mu"].shape == (100,) and few["z"].shape == (100, 3)
    assert len(np.unique(few["mu"])) == 100 and np.isin(few["mu"], r.draws["mu"]).all()
    np.testing.assert_array_equal(few["z"][:, 0], 2 * few["mu"])  # the same draws for every address
    assert np.array_equal(r.sample(100, seed=1)["mu"], few["mu"])
    assert not np.array_equal(r.sample(100, seed=2)["mu"], few["mu"])
    many = r.sample(3 * N, seed=0)
    assert many["mu"].shape == (3 * N,) and len(np.unique(many["mu"])) < N + 1


def test_plot_writes_pngs(tmp_path):
    r = fit_result()
    paths = r.plot(tmp_path / "plots")
    assert [p.name for p in paths] == ["objective.png", "marginals.png"]
    for p in paths:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 5000
    empty = FitResult({}, np.zeros(0), {}, {})
    assert [p.name for p in empty.plot(tmp_path / "empty")] == ["objective.png"]


def test_moving_average_leaves_out_skipped_steps():
    v = np.array([1.0, np.nan, 3.0, 5.0, np.nan, np.nan])
    np.testing.assert_array_equal(moving_average(v, 2), [1.0, 1.0, 3.0, 4.0, 5.0, np.nan])


def test_save_and_load_round_trip(tmp_path):
    r = fit_result()
    folder = r.save(tmp_path / "fit", plots=True)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["draws.npz", "info.json", "marginals.png", "objective.png", "params.npz", "values.npy"]
    back = FitResult.load(folder)
    assert back.params.keys() == r.params.keys()
    for program in r.params:
        assert back.params[program].keys() == r.params[program].keys()
        for name, value in r.params[program].items():
            np.testing.assert_array_equal(back.params[program][name], value)
    assert all(np.array_equal(back.draws[k], r.draws[k]) for k in r.draws) and back.draws.keys() == r.draws.keys()
    np.testing.assert_array_equal(back.values, r.values)
    assert back.info["timings"] == {"compile_s": 0.5, "run_s": 1.0, "steps_per_s": 300.0}
    assert back.info["seed"] == 3 and back.info["model"] == "m"
    assert back.summary() == FitResult(r.params, r.values, r.draws, back.info).summary()


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(PplError, match="does not exist") as info:
        FitResult.load(tmp_path / "nowhere")
    assert "hint:" in str(info.value)
    folder = fit_result().save(tmp_path / "fit")
    (folder / "draws.npz").unlink()
    with pytest.raises(PplError, match="incomplete: draws.npz missing"):
        FitResult.load(folder)
    (folder / "draws.npz").write_bytes(b"not a zip file")
    with pytest.raises(PplError, match="cannot read"):
        FitResult.load(folder)


def test_to_arviz_has_the_draws_as_one_chain():
    pytest.importorskip("arviz")
    r = fit_result()
    data = r.to_arviz()
    post = data.posterior
    assert set(post.data_vars) == {"mu", "z", "k"}
    assert post["mu"].shape == (1, N) and post["z"].shape == (1, N, 3)
    np.testing.assert_array_equal(post["z"].values[0], r.draws["z"])
    assert data.attrs["model"] == "m" and data.attrs["objective"] == "elbo"


def test_to_arviz_without_arviz_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "arviz", None)  # import arviz now raises ImportError
    with pytest.raises(PplError, match="needs arviz") as info:
        fit_result().to_arviz()
    assert "pip install 'arviz<1'" in str(info.value)
