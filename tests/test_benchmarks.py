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

ROOT = Path(__file__).resolve().parent.parent
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
