"""The benchmark runner works end to end in a tiny configuration, and its agreement checks (the
only thing these tests assert about pplang; timings are never asserted) catch a baseline that
computes something else."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import jax
import jax.numpy as jnp
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
GROUPS = ("loop_simulate", "loop_log_density", "compile_vs_length", "hier_grad")


def bench_module(name: str) -> ModuleType:
    """A module of benchmarks/, imported the way run.py imports it (as a sibling)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def test_smoke_run_reports_every_benchmark_and_agreement(tmp_path: Path) -> None:
    out, raw = tmp_path / "results.md", tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(BENCH / "run.py"), "--smoke", "--out", str(out), "--json", str(raw)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = out.read_text()
    assert proc.stdout.strip() == table.strip()
    summary = table.split("Details")[0]  # the summary table, before the details table
    rows = [line for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| benchmark")]
    names = [row.split("|")[1].strip() for row in rows]
    assert [n.split()[0] for n in names] == ["loop_simulate", "loop_log_density", "compile_vs_length",
                                            "compile_vs_length", "hier_grad"], names
    results = json.loads(raw.read_text())["results"]
    assert {r["group"] for r in results} == set(GROUPS)
    for r in results:
        assert r["check_error"] <= 1e-5, r["name"]
        assert r["rounds"] >= 5
        assert r["pplang_compile"]["hlo_lines"] > 0 and r["baseline_compile"]["hlo_lines"] > 0
    lengths = [r for r in results if r["group"] == "compile_vs_length"]
    # the loop is vectorized: the program does not grow with the loop length
    assert len({r["pplang_compile"]["hlo_lines"] for r in lengths}) == 1


def test_only_runs_the_named_benchmark(tmp_path: Path) -> None:
    raw = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(BENCH / "run.py"), "--smoke", "--only", "loop_log_density",
                           "--json", str(raw)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert [r["group"] for r in json.loads(raw.read_text())["results"]] == ["loop_log_density"]


def test_hier_check_rejects_a_different_bijection() -> None:
    hier = bench_module("hier_bench")
    data = hier.make_data(100, 5)
    case = hier.cases(100, 5, 0.0)["hier_grad"][0]
    pp_fn = jax.jit(case.make_pplang())
    assert case.check(pp_fn, jax.jit(case.make_baseline())) <= 1e-5

    def softplus_baseline(u: dict) -> tuple:
        # exp -> softplus for tau: a plausible slip the check has to catch
        shifted = {**u, "tau": jnp.log(jax.nn.softplus(u["tau"]))}
        return hier.baseline(data)(shifted)

    with pytest.raises(AssertionError, match="differ"):
        case.check(pp_fn, jax.jit(softplus_baseline))


def test_loop_checks_reject_wrong_baselines() -> None:
    loop = bench_module("loop_bench")
    data = loop.make_data(50)
    groups = loop.cases(50, (10,), 0.0, 0.0, 1000)
    ld, sim = groups["loop_log_density"][0], groups["loop_simulate"][0]
    assert ld.check(jax.jit(ld.make_pplang()), jax.jit(ld.make_baseline())) <= 1e-5

    def wrong_prior(v: dict) -> jax.Array:  # sigma ~ half_normal(4) instead of 5
        right = loop.baseline_log_density(data["x"], data["y"])(v)
        return right + jax.scipy.stats.norm.logpdf(v["sigma"], 0, 4.0) - jax.scipy.stats.norm.logpdf(v["sigma"], 0, 5.0)

    with pytest.raises(AssertionError, match="differ"):
        ld.check(jax.jit(ld.make_pplang()), jax.jit(wrong_prior))

    base = loop.baseline_simulate(data["x"])

    def wider_sigma(key: jax.Array) -> tuple:  # draws sigma from half_normal(10), scores it as half_normal(5)
        v, _ = base(key)
        v = {**v, "sigma": 2.0 * v["sigma"], "y": v["mu"] + v["beta"] * data["x"] + 2.0 * (v["y"] - v["mu"]
                                                                                          - v["beta"] * data["x"])}
        return v, loop.log_joint(v["mu"], v["beta"], v["sigma"], data["x"], v["y"])

    with pytest.raises(AssertionError, match="sigma"):
        sim.check(jax.jit(sim.make_pplang()), jax.jit(wider_sigma))


def test_smc_benchmark_smoke_run_and_check(tmp_path: Path) -> None:
    """benchmarks/smc_bench.py runs end to end in its smoke configuration, writes its own section of the
    results file and keeps the rest; its agreement check passes pp.smc against the hand-written filter
    and rejects a filter with the wrong observation noise."""
    out, raw = tmp_path / "results.md", tmp_path / "r.json"
    out.write_text("# earlier results\n\nkept\n")
    proc = subprocess.run([sys.executable, str(BENCH / "smc_bench.py"), "--smoke", "--out", str(out), "--json",
                           str(raw)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert text.startswith("# earlier results\n\nkept\n") and "# Particle filtering" in text
    for r in json.loads(raw.read_text())["results"]:
        assert r["jax"]["check_error"] < 5.0 and r["jax"]["rounds"] >= 3
        assert {"pplang", "hand-written JAX"} <= set(r["log_z_error"])
    smc = bench_module("smc_bench")
    data = smc.make_data(20)
    check = smc.check_filters(data, 100, 30, {})
    with pytest.raises(AssertionError, match="differ"):
        check(jax.jit(smc.pplang_filter(data, 100)), jax.jit(smc.jax_filter({**data, "r": 1.5}, 100)))



def test_vi_benchmark_smoke_run_and_check(tmp_path: Path) -> None:
    """benchmarks/vi_bench.py runs end to end in its smoke configuration and writes its own section of
    the results file, keeping the rest; its density check passes pplang's model and guide against the
    hand-written ones and rejects a hand-written baseline with another prior."""
    out, raw = tmp_path / "results.md", tmp_path / "r.json"
    out.write_text("# earlier results\n\nkept\n")
    proc = subprocess.run([sys.executable, str(BENCH / "vi_bench.py"), "--smoke", "--out", str(out), "--json",
                           str(raw)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert text.startswith("# earlier results\n\nkept\n") and "# Variational inference: pplang vs" in text
    bench = json.loads(raw.read_text())
    groups = {r["group"] for r in bench["results"]}
    assert {"grad_written", "grad_softplus", "grad_auto", "step", "loop"} <= groups
    if bench["numpyro"] is not None:
        assert {"step_numpyro_written", "step_numpyro_auto", "loop_numpyro"} <= groups
    assert all(r["rounds"] >= 5 for r in bench["results"])
    vi = bench_module("vi_bench")
    data = vi.make_data(50, 2)
    densities = vi.pplang_densities(vi.pplang_problem(data, "written"), vi.WRITTEN, data)
    assert vi.check_densities(*densities, vi.hand(data), 2, "pplang") <= 1e-5
    with pytest.raises(AssertionError, match="differ"):  # b ~ normal(0, 1) instead of normal(0, 5)
        vi.check_densities(*densities, vi.hand(data, b_scale=1.0), 2, "pplang")


def test_vi_variance_smoke_run_and_check(tmp_path: Path) -> None:
    """benchmarks/vi_variance.py runs end to end in its smoke configuration (every strategy's mean
    gradient within 5 standard errors of the exact one) and writes its own section; its unbiasedness
    check rejects estimates of the gradient at another point."""
    out, raw = tmp_path / "results.md", tmp_path / "r.json"
    out.write_text("# earlier results\n\nkept\n")
    proc = subprocess.run([sys.executable, str(BENCH / "vi_variance.py"), "--smoke", "--out", str(out), "--json",
                           str(raw)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert text.startswith("# earlier results\n\nkept\n") and "# Variational inference: gradient variance" in text
    rows = json.loads(raw.read_text())["rows"]
    assert [r["label"] for r in rows][-2:] == ["mvd", "enum"]
    assert all(r["max_z"] < 5.0 for r in rows)
    # mvd and enum sum over the two values of each z exactly: far less variance than reinforce
    assert rows[-1]["variance_ratio"] < 0.5 and rows[-2]["variance_ratio"] < 0.5
    var = bench_module("vi_variance")
    data, point = var.make_data(6), var.fixed_point(6)
    problem = var.build(data, "enum", None)
    enum = var.Estimator("enum", problem, {**problem.init_params(0), "q": point}, problem.init_state())
    g = var.gradients(enum, 500)
    assert var.check_unbiased("enum", g, var.exact_grad(point, data["y"])) < 5.0
    with pytest.raises(AssertionError, match="standard errors"):
        var.check_unbiased("enum", g, var.exact_grad({**point, "m1": point["m1"] + 0.5}, data["y"]))


def test_amortize_benchmark_smoke_run_and_checks(tmp_path: Path) -> None:
    """benchmarks/amortize_bench.py runs end to end in its smoke configuration and writes its own
    section; its checks pass pplang's VAE against the hand-written one and reject a hand-written VAE
    whose decoder is wired differently (its gradient is another one)."""
    out, raw = tmp_path / "results.md", tmp_path / "r.json"
    out.write_text("# earlier results\n\nkept\n")
    proc = subprocess.run([sys.executable, str(BENCH / "amortize_bench.py"), "--smoke", "--out", str(out),
                           "--json", str(raw)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert text.startswith("# earlier results\n\nkept\n") and "# Amortized inference" in text
    bench = json.loads(raw.read_text())
    assert {r["group"] for r in bench["results"]} == {"grad", "step"}
    assert [p["what"] for p in bench["posteriors"]] == ["vae", "normal"]
    am = bench_module("amortize_bench")
    model, guide, x = am.load_vae()
    problem = am.pplang_problem(model, guide, x)
    params = problem.init_params(0)
    am.check_densities(model, guide, params, x[0])
    batch = jnp.asarray(x[:8])
    assert am.check_gradients(am.pplang_grad(problem), am.hand_grad, params, batch, 300) < 5.0

    def relu_free(params, key, batch):  # the decoder without its relus: another model
        relu = jax.nn.relu
        jax.nn.relu = lambda h: h
        try:
            return am.hand_grad(params, key, batch)
        finally:
            jax.nn.relu = relu

    with pytest.raises(AssertionError, match="differ"):
        am.check_gradients(am.pplang_grad(problem), relu_free, params, batch, 300)
