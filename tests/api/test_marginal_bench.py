"""benchmarks/marginal_bench.py runs end to end in its smoke configuration, and its agreement check
rejects a hand-written forward algorithm that computes something else."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_marginal_benchmark_smoke_run(tmp_path: Path) -> None:
    out, raw = tmp_path / "results.md", tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(BENCH / "marginal_bench.py"), "--smoke", "--out", str(out), "--json",
                           str(raw)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert out.read_text().startswith("# Discrete choices summed out")
    results = json.loads(raw.read_text())["results"]
    assert {r["group"] for r in results} == {"hmm", "gmm", "pair"}
    for r in results:
        assert r["check_error"] <= 1e-4 and r["rounds"] >= 3, r


def test_the_check_rejects_a_forward_algorithm_without_its_initial_state() -> None:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    mb = importlib.import_module("marginal_bench")
    data, point = mb.hmm_data(3, 30), mb.hmm_point(3)
    right = mb.hand_hmm(data)
    ours = mb.pplang_fn("hmm", data)
    assert mb.check(point)(ours, right) < 1e-4

    def wrong(v: dict) -> tuple:  # forgets log init[z0]: the value moves by a constant, the init gradient too
        value, grads = right(v)
        return value - jnp.log(v["init"][0]), grads

    with pytest.raises(AssertionError, match="log density"):
        mb.check(point)(ours, jax.jit(wrong))
