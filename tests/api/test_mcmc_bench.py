"""benchmarks/mcmc_bench.py runs end to end in its smoke configuration and reports every sampler."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_mcmc_benchmark_smoke_run(tmp_path: Path) -> None:
    out, raw = tmp_path / "results.md", tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(BENCH / "mcmc_bench.py"), "--smoke", "--out", str(out), "--json",
                           str(raw)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.startswith("# MCMC: pplang NUTS vs blackjax")
    rows = json.loads(raw.read_text())["results"]
    assert {(r["model"], r["sampler"]) for r in rows} == {(m, s) for m in ("eight_schools", "hier", "logreg")
                                                          for s in ("pplang", "blackjax", "numpyro")}
    for r in rows:
        assert r["warm_s"] > 0 and r["min_ess_bulk"] > 5 and r["leapfrog_per_s"] > 0, r
