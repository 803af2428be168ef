"""Time pplang against hand-written JAX doing the same computation, in one process.

    python benchmarks/run.py [--quick | --smoke] [--only NAME] [--out FILE] [--json FILE]

For each benchmark: check that both sides agree, time trace+lower and XLA compile (AOT API,
persistent compilation cache off), then time warm calls interleaved round by round and report
the ratio of the median pplang call to the median hand-written call. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import harness
import jax

HERE = Path(__file__).resolve().parent
HEADING = "# pplang vs hand-written JAX"
GROUPS = ("loop_simulate", "loop_log_density", "compile_vs_length", "hier_grad")


@dataclass
class Mode:
    """Problem sizes and measuring effort of a run."""

    loop_n: int
    lengths: tuple[int, ...]
    hier_n: int
    hier_groups: int
    budget_s: float  # seconds of interleaved warm calls for each main benchmark
    length_budget_s: float  # ... for each length of compile_vs_length
    num_keys: int  # draws for the moment check of the samplers
    settings: harness.Settings


MODES = {
    "full": Mode(1000, (100, 1000, 10000), 2000, 50, 30.0, 6.0, 1000, harness.Settings(compile_reps=5, min_rounds=50)),
    "quick": Mode(1000, (100, 1000, 10000), 2000, 50, 4.0, 1.0, 1000, harness.Settings(compile_reps=2, min_rounds=50)),
    "smoke": Mode(50, (10, 100), 100, 5, 0.05, 0.02, 200,
                  harness.Settings(compile_reps=1, min_rounds=5, warmup_calls=2)),
}


def build_cases(mode: Mode) -> dict[str, list[harness.Case]]:
    # Imported here, after main() has turned JAX's persistent cache off: these modules load their
    # models on import, and loading is where pplang configures that cache.
    import hier_bench
    import loop_bench

    return {**loop_bench.cases(mode.loop_n, mode.lengths, mode.budget_s, mode.length_budget_s, mode.num_keys),
            **hier_bench.cases(mode.hier_n, mode.hier_groups, mode.budget_s)}


def frontend_times(reps: int) -> dict[str, float]:
    """Median seconds pplang's front end (parse, check, IR, code generation) takes per model file."""
    import pplang as pp

    times = {}
    for path in sorted((HERE / "models").glob("*.ppl")):
        text = path.read_text()
        runs = []
        for _ in range(reps):
            t0 = time.perf_counter()
            pp.loads(text, file=str(path))
            runs.append(time.perf_counter() - t0)
        times[path.name] = statistics.median(runs)
    return times


def length_summary(results: list[harness.Result]) -> str:
    rows = [r for r in results if r.group == "compile_vs_length"]
    if not rows:
        return ""
    def relative(side: str) -> str:
        first = getattr(rows[0], side).total_s
        return ", ".join(f"{r.name.split()[-1]}: {getattr(r, side).total_s / first:.2f}" for r in rows)

    ratios = ", ".join(f"{r.pplang_compile.total_s / r.baseline_compile.total_s:.2f}" for r in rows)
    lines = ", ".join(str(r.pplang_compile.hlo_lines) for r in rows)
    return (f"compile_vs_length: compile time relative to the shortest loop, pplang {relative('pplang_compile')}; "
            f"hand-written {relative('baseline_compile')}. pplang / hand-written "
            f"compile time per length: {ratios}. StableHLO lines of the pplang program: {lines}.")


def report(results: list[harness.Result], mode_name: str, elapsed_s: float, load: tuple[float, float],
           frontend: dict[str, float]) -> str:
    dev = jax.devices()[0]
    head = [
        HEADING,
        "",
        f"Mode `{mode_name}`, {datetime.date.today().isoformat()}; JAX {jax.__version__} on {dev.platform} "
        f"({dev.device_kind}), {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
        f"run took {elapsed_s:.0f} s; 1-minute load average {load[0]:.1f} at the start, {load[1]:.1f} at the end.",
        "",
        "Warm: median time per call over interleaved rounds (one pplang call and one baseline call per "
        "round, order alternating, each call blocked until ready). Ratio: pplang median / baseline median. "
        "Ratio p10: the same with 10th percentiles (the less contended calls; a cross-check when the machine "
        "is loaded). "
        "Per-round IQR: 25th–75th percentile of the ratio of the two calls of a round (the spread of single "
        "calls). 10-block range: lowest and highest ratio of medians within each tenth of the rounds (how far "
        "the headline moves with the machine's load). Compile: median of trace+lower+XLA compile through "
        "`jax.jit(f).lower(...).compile()`, persistent compilation cache off.",
        "",
        harness.table(results),
        "",
    ]
    summary = length_summary(results)
    if summary:
        head += [summary, ""]
    fe = ", ".join(f"`{name}` {harness.fmt_time(t)}" for name, t in frontend.items())
    head += [f"pplang front end (`pp.loads`: parse, check, code generation; not in the compile column): {fe}.", ""]
    head += ["Details (compile phases, median):", "", harness.details_table(results), ""]
    return "\n".join(head)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="same sizes, short timings (about a minute)")
    size.add_argument("--smoke", action="store_true", help="tiny sizes and few repetitions (for tests)")
    ap.add_argument("--only", choices=GROUPS, action="append", help="run only this benchmark (repeatable)")
    ap.add_argument("--out", type=Path, help="markdown file whose core section to write, keeping the other "
                                              "benchmarks' sections (a full run of everything: benchmarks/results.md "
                                              "unless given)")
    ap.add_argument("--json", type=Path, help="also write the raw results as JSON")
    args = ap.parse_args(argv)
    mode_name = "quick" if args.quick else "smoke" if args.smoke else "full"
    out = args.out
    if out is None and mode_name == "full" and not args.only:
        out = HERE / "results.md"

    # pplang turns on JAX's persistent compilation cache when it loads a model; compile times here
    # are cold compiles on both sides, so keep it off (before anything compiles).
    jax.config.update("jax_enable_compilation_cache", False)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    mode = MODES[mode_name]
    groups = build_cases(mode)
    results = []
    for name in args.only or GROUPS:
        for case in groups[name]:
            results.append(harness.run_case(case, mode.settings, log=lambda s: print(s, file=sys.stderr)))
    frontend = frontend_times(mode.settings.compile_reps)
    text = report(results, mode_name, time.perf_counter() - start, (load_start, os.getloadavg()[0]), frontend)
    print(text)
    if out is not None:
        harness.write_section(out, HEADING, text)
    if args.json is not None:
        args.json.write_text(json.dumps({"mode": mode_name, "results": [r.as_dict() for r in results]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
