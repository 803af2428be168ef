"""Commands that only parse and check start fast: they import neither JAX nor equinox (nor networkx,
except `graph`, which builds a networkx graph), and the start-up benchmark runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COIN = str(ROOT / "examples" / "coin.ppl")
HEAVY = ("jax", "equinox", "networkx", "optax", "blackjax", "arviz")


def imported_after(argv: list[str]) -> list[str]:
    """The heavy packages in sys.modules after running `pplang ARGV` in a fresh interpreter."""
    code = ("import io, contextlib, sys\nfrom pplang.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n    code = main({argv!r})\n"
            "assert code == 0, code\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return [m for m in proc.stdout.strip().split(",") if m]


@pytest.mark.parametrize("argv", [["check", COIN], ["info", COIN], ["compile", COIN, "--emit", "ir"],
                                  ["compile", COIN, "--emit", "ast"]])
def test_parse_and_check_commands_import_no_heavy_package(argv: list[str]) -> None:
    assert imported_after(argv) == []


def test_graph_imports_networkx_but_not_jax() -> None:
    assert imported_after(["graph", COIN]) == ["networkx"]


def test_importing_pplang_imports_nothing_heavy_and_its_names_still_load() -> None:
    code = ("import sys\nimport pplang as pp\nassert 'jax' not in sys.modules\n"
            "assert callable(pp.model) and callable(pp.load) and pp.Model.__name__ == 'Model'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_startup_benchmark_smoke_run(tmp_path: Path) -> None:
    out, raw = tmp_path / "results.md", tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "startup_bench.py"), "--smoke", "--out", str(out),
                           "--json", str(raw)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert out.read_text().startswith("# Start-up: commands that only parse and check")
    rows = json.loads(raw.read_text())["rows"]
    assert "pplang check" in rows
    for r in rows.values():
        assert r["median"] > 0 and r["python_median"] > 0 and r["reps"] == 1, r
