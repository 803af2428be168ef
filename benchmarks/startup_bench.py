"""Start-up: the wall time of the commands that only parse and check, against the interpreter's own.

    python benchmarks/startup_bench.py [--quick | --smoke] [--out FILE] [--json FILE]

`pplang check`, `info`, `graph` and `compile --emit ir` read a model file and answer without running
anything, so what a user waits for is start-up: Python, pplang's imports and the parser. Each row
runs the command in a new process (`pplang` as installed beside this interpreter, on
examples/coin.ppl) and `python -c pass` in another, interleaved round by round with the order
alternating, after one untimed run of each (which also fills the parser-table cache, as a user's
first command does, and writes the bytecode caches, which PYTHONDONTWRITEBYTECODE is dropped
for: a user's installation has them). The figure is the difference of the medians: what pplang adds to the
interpreter's start, in wall time and in the CPU time (user + system) of the process, which a
machine loaded by other work disturbs less. A reference row does the same for
`python -c "import jax"`, what every one of these commands paid before they stopped importing JAX
(left out of a smoke run). Goal: `pplang check` under 0.3 s above `python -c pass`.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import harness

ROOT = Path(__file__).resolve().parents[1]
HEADING = "# Start-up: commands that only parse and check"
COIN = str(ROOT / "examples" / "coin.ppl")
GOAL_S = 0.3
REPS = {"full": 31, "quick": 9, "smoke": 1}
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def pplang_command() -> list[str]:
    """The installed `pplang` script beside this interpreter, else `python -m pplang.cli`."""
    script = Path(sys.executable).parent / "pplang"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pplang.cli"]


def commands(reference: bool = True) -> dict[str, list[str]]:
    """The commands timed, and (`reference`) `python -c "import jax"`."""
    cli = pplang_command()
    rows = {"pplang check": [*cli, "check", COIN],
            "pplang info": [*cli, "info", COIN],
            "pplang graph": [*cli, "graph", COIN],
            "pplang compile --emit ir": [*cli, "compile", COIN, "--emit", "ir"]}
    if reference:
        rows["python -c 'import jax' (reference)"] = [sys.executable, "-c", "import jax"]
    return rows


def wall(argv: list[str]) -> tuple[float, float]:
    """Seconds from starting `argv` in a new process to its exit (which must be 0), and the CPU
    seconds (user + system) the process used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                          env=ENV)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {proc.returncode}:\n{proc.stderr[-2000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(argv: list[str], reps: int) -> dict[str, float]:
    """Medians of `argv` and of `python -c pass` over interleaved rounds, and their difference."""
    base = [sys.executable, "-c", "pass"]
    wall(argv), wall(base)  # untimed: bytecode and parser-table caches, page cache
    ours, theirs = [], []
    for r in range(reps):
        pair = (argv, base) if r % 2 == 0 else (base, argv)
        a, b = wall(pair[0]), wall(pair[1])
        ours.append(a if r % 2 == 0 else b)
        theirs.append(b if r % 2 == 0 else a)
    m, m0 = (statistics.median(t[0] for t in x) for x in (ours, theirs))
    c, c0 = (statistics.median(t[1] for t in x) for x in (ours, theirs))
    p10, p10_0 = (sorted(t[0] for t in x)[len(x) // 10] for x in (ours, theirs))
    return {"median": m, "python_median": m0, "above_python": m - m0, "p10_above": p10 - p10_0,
            "cpu": c, "cpu_above_python": c - c0, "reps": reps}


def report(rows: dict[str, dict[str, float]], mode: str, elapsed: float, load: tuple[float, float]) -> str:
    lines = [HEADING, "",
             f"`.venv/bin/python benchmarks/startup_bench.py`, mode `{mode}`, {datetime.date.today()}; "
             f"{platform.python_version()} on {platform.machine()}, run took {elapsed:.0f} s; 1-minute load "
             f"average {load[0]:.1f} at the start, {load[1]:.1f} at the end.", "",
             "Each command in a new process on examples/coin.ppl, interleaved round by round with `python -c pass` "
             "(order alternating, one untimed run of each first); medians over the rounds. *Above python*: the "
             "command's median minus the interpreter's, what pplang adds; *CPU above python* the same for the CPU "
             "time (user + system) of the process, which the machine's load disturbs less.", "",
             "| command | median | `python -c pass` median | above python | p10 above python | CPU | "
             "CPU above python | rounds |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| `{name}` | {r['median'] * 1e3:.0f} ms | {r['python_median'] * 1e3:.0f} ms | "
                     f"{r['above_python'] * 1e3:.0f} ms | {r['p10_above'] * 1e3:.0f} ms | {r['cpu'] * 1e3:.0f} ms | "
                     f"{r['cpu_above_python'] * 1e3:.0f} ms | {r['reps']} |")
    check, cpu = rows["pplang check"]["above_python"], rows["pplang check"]["cpu_above_python"]
    verdict = "met" if check < GOAL_S else "not met"
    lines += ["", f"Goal: `pplang check` under {GOAL_S * 1e3:.0f} ms above python ({verdict}: "
              f"{check * 1e3:.0f} ms wall, {cpu * 1e3:.0f} ms CPU). "
              "None of these commands imports JAX or equinox, and only `graph` imports networkx (to build the "
              "graph); tests/api/test_startup.py keeps it so."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    run = harness.command_line(__doc__, argv)
    if shutil.which(pplang_command()[0]) is None:
        raise SystemExit(f"cannot run {pplang_command()[0]}")
    rows = {}
    for name, argv_ in commands(reference=run.mode != "smoke").items():
        print(f"{name} ...", file=sys.stderr)
        rows[name] = measure(argv_, REPS[run.mode])
    elapsed, load = run.elapsed()
    return run.finish(HEADING, report(rows, run.mode, elapsed, load), {"rows": rows})


if __name__ == "__main__":
    sys.exit(main())
