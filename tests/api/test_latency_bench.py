"""benchmarks/latency_bench.py runs end to end in its smoke configuration, and its fit check catches a
hand-written side that optimizes something else."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_latency_benchmark_smoke_run(tmp_path: Path) -> None:
    out, raw = tmp_path / "results.md", tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(BENCH / "latency_bench.py"), "--smoke", "--out", str(out), "--json",
                           str(raw)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert out.read_text().startswith("# Repeated calls: whole API calls vs hand-written JAX")
    rows = json.loads(raw.read_text())["rows"]
    assert [r["name"].split()[0] for r in rows] == ["fit", "smc", "sample", "vi"]
    for r in rows:
        assert r["warm_pplang"] > 0 and r["warm_hand"] > 0 and r["cold_pplang"] > 0 and r["cold_hand"] > 0, r
        assert r["rounds"] >= 5, r


def test_fit_check_rejects_another_learning_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    lb = importlib.import_module("latency_bench")
    mode = lb.MODES["smoke"]
    pair = lb.fit_pair(mode, 0)
    f = pair.make_pplang()
    monkeypatch.setattr(lb, "LEARNING_RATE", 0.2)  # the hand-written side now takes steps 20x longer
    g = lb.fit_pair(mode, 0).make_hand()
    with pytest.raises(AssertionError, match="fit"):
        pair.check(f, g)
