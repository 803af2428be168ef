"""Notebook-friendly objects: a short repr of models, HTML tables of results built from the rows of
their text summaries, `plot()` returning a matplotlib Figure (discrete choices as probabilities,
vector states one panel per component, 2-D positions as a path, a posterior predictive check),
`to_arviz()` with every group a result has, and decorated-model diagnostics without the compiler's
frames."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

import pplang as pp
from pplang.results import FitResult

matplotlib.use("Agg")
pytest.importorskip("arviz")

ROOT = Path(__file__).resolve().parents[2]
SRC = """
model pick(N: int):
    k ~ categorical([0.2, 0.3, 0.5])      # which of three levels
    s ~ half_normal(1.0)
    for i in range(N):
        y[i] ~ normal(2.0 * k, s)

model hmm(T: int):
    z[0] ~ bernoulli(0.5)
    y[0] ~ normal(3.0 * z[0], 1.0)
    for t in range(1, T):
        z[t] ~ bernoulli(0.1 + 0.8 * z[t - 1])
        y[t] ~ normal(3.0 * z[t], 1.0)

model normal_mean(N: int):
    mu ~ normal(0.0, 1.0)
    for i in range(N):
        y[i] ~ normal(mu, 1.0)
"""
PICK_DATA = {"N": 6, "y": [3.9, 4.2, 4.1, 3.7, 4.4, 3.8]}


@pytest.fixture(scope="module")
def mod() -> pp.Module:
    return pp.loads(SRC, file="notebook.ppl")


def html_rows(html: str) -> list[list[str]]:
    """The cells of each body row of the HTML table."""
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    return [re.findall(r"<t[hd]>(.*?)</t[hd]>", row) for row in body.split("</tr>") if row]


def groups(idata: object) -> dict[str, dict[str, tuple]]:
    return {g: {k: v.shape for k, v in idata[g].data_vars.items()} for g in idata.groups()}


# ------------------------------------------------------------------ models


def test_repr_of_a_model_is_short_and_names_what_it_has() -> None:
    m = pp.load(str(ROOT / "examples" / "tracking.ppl"))["tracking"]
    text = repr(m)
    assert len(text) < 400 and len(text.splitlines()) <= 5
    assert text.startswith("<model tracking(T: int, dt: positive, q: positive, r: positive)")
    assert "x ~ multivariate_normal: shape [max(1, T), 4], support real" in text
    assert "y ~ normal: shape [max(1, T), 2], support real" in text and "computes: F, a, b, c, Q" in text
    rows = html_rows(m._repr_html_())
    assert rows == [["x", "multivariate_normal", "[max(1, T), 4]", "real"], ["y", "normal", "[max(1, T), 2]", "real"]]


def test_repr_of_a_long_model_lists_the_first_choices() -> None:
    src = "model many():\n" + "".join(f"    c{i} ~ normal(0.0, 1.0)\n" for i in range(30))
    text = repr(pp.loads(src)["many"])
    assert "c0 ~ normal: shape (), support real" in text and "c11 ~" in text and "c12 ~" not in text
    assert "... 18 more choices" in text and len(text.splitlines()) == 14


# ------------------------------------------------------------------ decorated-model diagnostics


BAD = '''
import pplang as pp


@pp.model
def bad(N: int):
    mu = pp.sample(pp.normal(0.0, 1.0))
    y = pp.sample(pp.normal(mu, sigmaa))
'''


def test_a_decorated_model_error_shows_the_diagnostic_without_the_compilers_frames(tmp_path: Path) -> None:
    script = tmp_path / "bad_model.py"
    script.write_text(BAD)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 1
    err = done.stderr
    assert f"{script}:8:33: error: unknown name `sigmaa`" in err and "^^^^^^" in err and "hint:" in err
    frames = re.findall(r'File "([^"]+)"', err)
    assert frames[0] == str(script) and len(frames) == 2  # the decorator line, and where it is raised again
    package = Path(pp.__file__).parent
    inside = [Path(f).relative_to(package) for f in frames if Path(f).is_relative_to(package)]
    assert inside == [Path("embed.py")], err  # no compiler module's frame
    assert "During handling" not in err and "direct cause" not in err


def test_ipython_shows_the_diagnostic_alone() -> None:
    with pytest.raises(pp.PplError) as info:
        pp.loads("model m():\n    x ~ normal(0.0, sdev)\n", file="m.ppl")
    lines = info.value._render_traceback_()  # IPython's hook: shown instead of the traceback
    assert lines[0] == "m.ppl:2:21: error: unknown name `sdev`"
    assert "\n".join(lines) == info.value.render() and not any("Traceback" in x for x in lines)


# ------------------------------------------------------------------ importance sampling


def test_importance_result_table_plot_and_arviz(mod: pp.Module) -> None:
    # k drawn by the proposal (not summed out), so that its weighted draws are what is shown
    r = pp.importance_sampling(mod["pick"], PICK_DATA, num_samples=4000, seed=0, marginalize=False)
    assert len(repr(r)) < 200 and "model='pick'" in repr(r)
    rows = html_rows(r._repr_html_())
    assert [row[0] for row in rows] == ["k", "s"]
    w = r.weights
    assert rows[0][1].startswith("P 0: ")  # a discrete choice's row: the probability of each value
    assert f"1: {np.sum(w[r.samples['k'] == 1]):.3f}" in rows[0][1]
    assert "importance sampling of pick" in r._repr_html_() and "Pareto k" in r._repr_html_()

    fig = r.plot()
    assert isinstance(fig, Figure) and fig._suptitle.get_text() == "importance sampling of pick"
    k_ax = next(ax for ax in fig.axes if ax.get_title() == "k")
    bars = [c for c in k_ax.containers if isinstance(c, BarContainer)][0]
    heights = [b.get_height() for b in bars]
    assert [b.get_x() + b.get_width() / 2 for b in bars] == pytest.approx([0, 1, 2])
    assert heights == pytest.approx([np.sum(w[r.samples["k"] == k]) for k in range(3)])  # probabilities
    ppc = next(ax for ax in fig.axes if ax.get_title() == "y: observed and replicated")
    assert ppc.get_legend() is not None and ppc.get_legend().get_bbox_to_anchor().x0 > ppc.bbox.x1 - 1  # outside

    idata = r.to_arviz(num_samples=500)
    assert groups(idata) == {
        "posterior": {"k": (1, 500), "s": (1, 500)}, "posterior_predictive": {"y": (1, 500, 6)},
        "sample_stats": {"log_weight": (1, 500)}, "prior": {"k": (1, 500), "s": (1, 500)},
        "prior_predictive": {"y": (1, 500, 6)}, "observed_data": {"y": (6,)}}
    np.testing.assert_allclose(idata.observed_data["y"], PICK_DATA["y"])


def test_infer_writes_the_plots_of_the_method_it_chose(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pplang.cli import main

    plots = tmp_path / "plots"
    code = main(["infer", "--method", "is", str(ROOT / "examples" / "coin.ppl"), "--data",
                 str(ROOT / "examples" / "coin.data.json"), "-n", "500", "--plots", str(plots)])
    out = capsys.readouterr().out
    assert code == 0 and f"wrote {plots / 'marginals.png'}" in out and f"wrote {plots / 'ppc.png'}" in out
    assert sorted(p.name for p in plots.iterdir()) == ["marginals.png", "ppc.png"]
    code = main(["infer", "--method", "is", str(ROOT / "examples" / "coin.ppl"), "--data",
                 str(ROOT / "examples" / "coin.data.json"), "-n", "500", "--plots", str(plots)])
    assert code == 1 and "already exists" in capsys.readouterr().err  # refused before it runs


def test_plot_writes_the_same_figures_to_a_folder(mod: pp.Module, tmp_path: Path) -> None:
    r = pp.importance_sampling(mod["pick"], PICK_DATA, num_samples=500, seed=0)
    paths = r.plot(tmp_path / "plots")
    assert [p.name for p in paths] == ["marginals.png", "ppc.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    with pytest.raises(pp.PplError, match="already exists"):
        r.plot(tmp_path / "plots")


# ------------------------------------------------------------------ variational fits


def test_fit_result_table_plot_and_arviz(mod: pp.Module) -> None:
    data = {"N": 5, "y": [0.3, -0.2, 0.8, 0.1, 0.5]}
    r = pp.fit(mod["normal_mean"], "mean_field", data=data, steps=200, progress=False, num_draws=300)
    rows = html_rows(r._repr_html_())
    assert [row[0] for row in rows] == ["mu"] and rows[0][1] == f"{r.draws['mu'].mean():.4g}"
    fig = r.plot()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["", "mu", "y: observed and replicated"] and fig._suptitle.get_text() == "fit of normal_mean"
    idata = r.to_arviz()
    assert groups(idata) == {"posterior": {"mu": (1, 300)}, "posterior_predictive": {"y": (1, 300, 5)},
                             "prior": {"mu": (1, 300)}, "prior_predictive": {"y": (1, 300, 5)},
                             "observed_data": {"y": (5,)}}
    # the replicated data follow the fitted posterior: y_rep ~ normal(mu, 1) per draw
    rep = idata.posterior_predictive["y"].values[0]
    assert abs(rep.mean() - r.draws["mu"].mean()) < 4 * np.sqrt((1 + r.draws["mu"].var()) / rep.size) + 0.05


def test_the_moving_average_starts_with_its_first_full_window() -> None:
    values = np.concatenate([np.full(10, -100.0), np.zeros(990)])  # a poor start
    fig = FitResult({}, values, {}, {"objective": "elbo"}).plot()
    ax = fig.axes[0]
    average = next(line for line in ax.lines if line.get_label().startswith("moving average"))
    x, y = average.get_xdata(), average.get_ydata()
    assert x[0] == 19 and y[0] == pytest.approx(-50.0)  # 20-step windows: the first is full at step 19
    assert ax.get_legend().get_bbox_to_anchor().x0 > ax.bbox.x1 - 1  # the legend is outside the data


def test_discrete_arrays_and_long_vectors_have_their_own_panels() -> None:
    rng = np.random.default_rng(0)
    draws = {"z": rng.random((400, 8)) < np.linspace(0.1, 0.9, 8), "k": rng.integers(0, 4, (400, 5)),
             "v": rng.normal(size=(400, 3)), "w": rng.normal(size=(400, 30))}
    fig = FitResult({}, np.zeros(10), draws, {}).plot()
    by_title = {ax.get_title(): ax for ax in fig.axes}
    assert {"z", "k", "v[0]", "v[1]", "v[2]", "w"} <= set(by_title)  # a short vector: one panel per component
    bars = by_title["z"].containers[0]  # a binary array: P(= 1) per index
    assert [b.get_height() for b in bars] == pytest.approx(draws["z"].mean(0))
    assert any(isinstance(im, AxesImage) for im in by_title["k"].images)  # values by index: a heat map
    assert len(by_title["w"].lines) == 1 and by_title["w"].collections  # mean and band against the index


# ------------------------------------------------------------------ particle filters


def test_smc_discrete_state_is_a_heat_map_and_the_result_exports(mod: pp.Module) -> None:
    y = np.array([0.1, 3.2, 2.9, 3.1, -0.4, 0.2, 0.3, 2.8, 3.3, 0.0])
    r = pp.smc(mod["hmm"], {"T": 10, "y": y}, particles=300, seed=0, progress=False)
    rows = html_rows(r._repr_html_())
    assert [row[0] for row in rows] == [str(i) for i in range(10)]
    assert rows[0][1] == f"{r.filtering_mean('z')[0]:.4g}"
    fig = r.plot()
    assert fig._suptitle.get_text() == "particle filter of hmm: 300 particles"
    z_ax = next(ax for ax in fig.axes if ax.get_title(loc="left") == "z")
    image = z_ax.images[0].get_array()
    ks, p = r.filtering_probabilities("z")
    assert list(ks) == [0, 1] and image.shape == (2, 10)
    np.testing.assert_allclose(image, p.T) and np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(p[:, 1], r.filtering_mean("z"), atol=1e-5)
    assert any(ax.get_title() == "y: observed and replicated" for ax in fig.axes)
    idata = r.to_arviz(n=50)
    assert groups(idata) == {"posterior": {"z": (1, 50, 10)}, "posterior_predictive": {"y": (1, 50, 10)},
                             "prior": {"z": (1, 50, 10)}, "prior_predictive": {"y": (1, 50, 10)},
                             "observed_data": {"y": (10,)}}


def test_smc_vector_state_has_a_panel_per_component_and_the_path() -> None:
    m = pp.load(str(ROOT / "examples" / "tracking.ppl"))["tracking"]
    data = pp.load_data(str(ROOT / "examples" / "tracking.data.json"))
    data = {**data, "T": 12, "y": np.asarray(data["y"])[:12]}
    r = pp.smc(m, data, particles=300, seed=0, progress=False)
    fig = r.plot()
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles[:5] == ["x and y", "x[., 0]", "x[., 1]", "x[., 2]", "x[., 3]"]
    path = fig.axes[0]
    observed = next(line for line in path.lines if line.get_label() == "observed y")
    np.testing.assert_allclose(observed.get_xydata(), data["y"])
    mean = next(line for line in path.lines if line.get_label().startswith("filtering mean"))
    np.testing.assert_allclose(mean.get_xydata(), r.filtering_mean("x")[:, :2], rtol=1e-5)
    # the observations of a position are drawn with its filtered path; velocities have none
    assert [line.get_label() for line in fig.axes[1].lines] == ["filtering mean", "observed y[., 0]"]
    assert [line.get_label() for line in fig.axes[3].lines] == ["filtering mean"]


# ------------------------------------------------------------------ MCMC


def test_mcmc_result_table_plot_and_arviz(mod: pp.Module) -> None:
    data = {"N": 4, "y": [0.5, 1.0, 0.2, 0.9]}
    r = pp.sample(mod["normal_mean"], data, chains=2, warmup=150, draws=100, progress=False, seed=1)
    rows = html_rows(r._repr_html_())
    assert [row[0] for row in rows] == ["mu"] and len(rows[0]) == 10
    assert "NUTS on normal_mean" in r._repr_html_() and "divergences" in r._repr_html_()
    fig = r.plot()
    assert fig._suptitle.get_text() == "NUTS on normal_mean"
    assert len(fig.axes) == 2 + 1 + 1  # trace (density, draws), rank, posterior predictive check
    idata = r.to_arviz()
    shapes = groups(idata)
    assert shapes["prior"] == {"mu": (2, 100)} and shapes["prior_predictive"] == {"y": (2, 100, 4)}
    assert shapes["posterior_predictive"] == {"y": (2, 100, 4)} and shapes["log_likelihood"] == {"y": (2, 100, 4)}
    assert shapes["observed_data"] == {"y": (4,)} and "diverging" in shapes["sample_stats"]


# ------------------------------------------------------------------ amortized


def test_amortized_posterior_plot_and_arviz() -> None:
    normal = pp.load(str(ROOT / "examples" / "amortized_normal.ppl"))
    r = pp.amortize(normal["repeated"], normal["repeated_q"], simulate=256, shared={"N": 5}, epochs=1,
                    batch_size=64, progress=False)
    assert "amortized posterior of repeated" in r._repr_html_() and "<li>model: repeated</li>" in r._repr_html_()
    assert len(r.plot().axes) == 1
    y = {"y": np.array([1.0, 2.0, 0.5, 1.5, 1.2])}
    fig = r.plot(data=y, num_samples=100)
    assert [ax.get_title() for ax in fig.axes] == ["", "mu", "y: observed and replicated"]
    assert groups(r.to_arviz(num_samples=50)) == {"prior": {"mu": (1, 50)}, "prior_predictive": {"y": (1, 50, 5)}}
    assert groups(r.to_arviz(y, num_samples=50)) == {
        "posterior": {"mu": (1, 50)}, "posterior_predictive": {"y": (1, 50, 5)}, "prior": {"mu": (1, 50)},
        "prior_predictive": {"y": (1, 50, 5)}, "observed_data": {"y": (5,)}}
    post = r.posterior(y, num_samples=100)
    assert html_rows(post._repr_html_())[0][0] == "mu" and isinstance(post.plot(), Figure)

