"""Timing machinery shared by the benchmarks: compile times, interleaved warm timings, the table.

Each benchmark is a `Case`: two factories that build fresh callables (pplang's and hand-written
JAX's), the arguments to call them with, and a check that both compute the same thing. Factories
build new functions on every call so that no JAX trace cache carries over between measurements.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np


@dataclass
class Case:
    """One pplang-vs-JAX comparison.

    `check(pplang_fn, baseline_fn)` runs both (jitted), raises AssertionError when they disagree
    and returns the largest relative error it saw.
    """

    name: str
    group: str
    make_pplang: Callable[[], Callable]
    make_baseline: Callable[[], Callable]
    args: tuple
    check: Callable[[Callable, Callable], float]
    warm_budget_s: float
    notes: str = ""


@dataclass
class Settings:
    """How hard to measure: compile repetitions, the bounds on the number of interleaved rounds
    (each case says how many seconds of them it wants) and untimed calls first."""

    compile_reps: int
    min_rounds: int
    max_rounds: int = 200_000
    warmup_calls: int = 10


@dataclass
class Compile:
    """Median seconds to trace and lower to StableHLO and to compile that with XLA; the size of the
    program before (StableHLO lines) and after XLA's optimizations (HLO instructions)."""

    lower_s: float
    xla_s: float
    hlo_lines: int
    optimized_instructions: int

    @property
    def total_s(self) -> float:
        return self.lower_s + self.xla_s


@dataclass
class Result:
    name: str
    group: str
    pplang_warm_s: float
    baseline_warm_s: float
    ratio: float
    ratio_p10: float
    ratio_q25: float
    ratio_q75: float
    block_min: float
    block_max: float
    rounds: int
    pplang_compile: Compile
    baseline_compile: Compile
    check_error: float
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["pplang_compile"] = dict(self.pplang_compile.__dict__)
        d["baseline_compile"] = dict(self.baseline_compile.__dict__)
        return d


def block(x: Any) -> Any:
    return jax.block_until_ready(x)


def compile_once(make: Callable[[], Callable], args: tuple) -> Compile:
    """Trace+lower and XLA-compile a freshly built callable; the AOT API separates the two phases
    and never runs the computation, so no execution time leaks into the figure."""
    fn = jax.jit(make())
    t0 = time.perf_counter()
    lowered = fn.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    instructions = sum(" = " in line for line in compiled.as_text().splitlines())
    return Compile(t1 - t0, t2 - t1, len(lowered.as_text().splitlines()), instructions)


def measure_compile(case: Case, reps: int) -> tuple[Compile, Compile]:
    """Median compile figures of both sides; the side that goes first alternates between repetitions."""
    runs: dict[str, list[Compile]] = {"pplang": [], "baseline": []}
    makers = {"pplang": case.make_pplang, "baseline": case.make_baseline}
    for r in range(reps):
        for side in (("pplang", "baseline") if r % 2 == 0 else ("baseline", "pplang")):
            runs[side].append(compile_once(makers[side], case.args))

    def summarize(rows: list[Compile]) -> Compile:
        return Compile(statistics.median(r.lower_s for r in rows), statistics.median(r.xla_s for r in rows),
                       rows[0].hlo_lines, rows[0].optimized_instructions)

    return summarize(runs["pplang"]), summarize(runs["baseline"])


def measure_warm(f: Callable, g: Callable, args: tuple, budget_s: float, settings: Settings
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-call seconds of `f` and `g`, called alternately (order flipped every round, so neither side
    always runs right after the other), until the budget is spent; garbage collection is paused as
    in `timeit`."""
    for _ in range(settings.warmup_calls):
        block(f(*args))
        block(g(*args))
    tf: list[float] = []
    tg: list[float] = []
    clock = time.perf_counter
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        end = clock() + budget_s
        r = 0
        while r < settings.max_rounds and (r < settings.min_rounds or clock() < end):
            order = ((f, tf), (g, tg)) if r % 2 == 0 else ((g, tg), (f, tf))
            for fn, out in order:
                t0 = clock()
                block(fn(*args))
                out.append(clock() - t0)
            r += 1
    finally:
        if gc_was_enabled:
            gc.enable()
    return np.asarray(tf), np.asarray(tg)


def run_case(case: Case, settings: Settings, log: Callable[[str], None] = print) -> Result:
    log(f"[{case.name}] checking agreement")
    f, g = jax.jit(case.make_pplang()), jax.jit(case.make_baseline())
    err = case.check(f, g)
    log(f"[{case.name}] compile x{settings.compile_reps}")
    pc, bc = measure_compile(case, settings.compile_reps)
    log(f"[{case.name}] warm timing ~{case.warm_budget_s:.1f}s")
    tf, tg = measure_warm(f, g, case.args, case.warm_budget_s, settings)
    q25, q75 = np.quantile(tf / tg, [0.25, 0.75])
    blocks = block_ratios(tf, tg)
    pm, bm = float(np.median(tf)), float(np.median(tg))
    p10 = float(np.quantile(tf, 0.1) / np.quantile(tg, 0.1))
    return Result(case.name, case.group, pm, bm, pm / bm, p10, float(q25), float(q75), float(blocks.min()),
                  float(blocks.max()), len(tf), pc, bc, err, case.notes)


def block_ratios(tf: np.ndarray, tg: np.ndarray, blocks: int = 10) -> np.ndarray:
    """Ratio of medians within each of `blocks` consecutive stretches of rounds: how much the
    headline ratio moves with the machine's load over the run."""
    return np.array([np.median(a) / np.median(b)
                     for a, b in zip(np.array_split(tf, blocks), np.array_split(tg, blocks)) if len(a)])


def relative_error(a: Any, b: Any) -> float:
    """Largest |a - b| over the pytrees, relative to the largest |b| (at least 1)."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb), f"different structures: {jax.tree.structure(a)} vs {jax.tree.structure(b)}"
    worst = 0.0
    for x, y in zip(la, lb):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        assert x.shape == y.shape, f"shape {x.shape} vs {y.shape}"
        assert np.all(np.isfinite(x)) and np.all(np.isfinite(y)), "non-finite values"
        scale = max(1.0, float(np.max(np.abs(y), initial=0.0)))
        worst = max(worst, float(np.max(np.abs(x - y), initial=0.0)) / scale)
    return worst


def assert_close(a: Any, b: Any, rtol: float, what: str) -> float:
    err = relative_error(a, b)
    assert err <= rtol, f"{what}: pplang and baseline differ, relative error {err:.3g} > {rtol:g}"
    return err


# ---------------------------------------------------------------- report


def fmt_time(s: float) -> str:
    if not math.isfinite(s):
        return "n/a"
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1.0:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def table(results: list[Result]) -> str:
    head = ["benchmark", "pplang warm", "baseline warm", "ratio", "ratio p10", "per-round IQR", "10-block range",
            "pplang compile", "baseline compile", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r.name, fmt_time(r.pplang_warm_s), fmt_time(r.baseline_warm_s),
                 f"{r.ratio:.3f}", f"{r.ratio_p10:.3f}", f"{r.ratio_q25:.2f}–{r.ratio_q75:.2f}",
                 f"{r.block_min:.3f}–{r.block_max:.3f}",
                 fmt_time(r.pplang_compile.total_s),
                 fmt_time(r.baseline_compile.total_s), r.notes]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def details_table(results: list[Result]) -> str:
    head = ["benchmark", "rounds", "pplang trace+lower", "pplang XLA", "baseline trace+lower", "baseline XLA",
            "StableHLO lines (pplang / baseline)", "optimized HLO instructions (pplang / baseline)",
            "check rel. error"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        p, b = r.pplang_compile, r.baseline_compile
        cells = [r.name, str(r.rounds), fmt_time(p.lower_s), fmt_time(p.xla_s), fmt_time(b.lower_s),
                 fmt_time(b.xla_s), f"{p.hlo_lines} / {b.hlo_lines}",
                 f"{p.optimized_instructions} / {b.optimized_instructions}", f"{r.check_error:.1e}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_section(path: Path, heading: str, text: str) -> None:
    """Replace one benchmark's section of `path` (from `heading` to the next top-level heading) or
    append it; the rest of the file is kept."""
    old = path.read_text() if path.exists() else ""
    if heading not in old:
        path.write_text((old.rstrip() + "\n\n" if old.strip() else "") + text)
        return
    before, after = old.split(heading, 1)
    rest = after.split("\n# ", 1)
    tail = "\n# " + rest[1] if len(rest) == 2 else ""
    path.write_text(before + text.rstrip() + "\n" + tail)


# ---------------------------------------------------------------- command line of the section benchmarks


@dataclass
class Invocation:
    """How a benchmark was asked to run: its mode ("full", "quick" or "smoke"), the markdown file
    whose section it writes (None: print only) and the JSON file for the raw figures."""

    mode: str
    out: Path | None
    json: Path | None
    load_start: float = field(default_factory=lambda: os.getloadavg()[0])
    start: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> tuple[float, tuple[float, float]]:
        """Seconds since the start, and the 1-minute load average at the start and now."""
        return time.perf_counter() - self.start, (self.load_start, os.getloadavg()[0])

    def finish(self, heading: str, text: str, raw: dict[str, Any]) -> int:
        """Print the report, write its section of the markdown file and the raw figures."""
        print(text)
        if self.out is not None:
            write_section(self.out, heading, text)
        if self.json is not None:
            self.json.write_text(json.dumps({"mode": self.mode, **raw}, indent=1, default=float))
        return 0


def command_line(doc: str, argv: list[str] | None, quick_help: str = "same sizes, short timings") -> Invocation:
    """The command line the section benchmarks share: --quick | --smoke, --out FILE, --json FILE. A
    full run writes its section of benchmarks/results.md unless --out names another file. Turns
    JAX's persistent compilation cache off (pplang turns it on), so compiles are cold on all sides."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help=quick_help)
    size.add_argument("--smoke", action="store_true", help="tiny sizes and few repetitions (for tests)")
    ap.add_argument("--out", type=Path, help="markdown file whose section of this benchmark to write, keeping the "
                                              "rest (a full run: benchmarks/results.md unless given)")
    ap.add_argument("--json", type=Path, help="also write the raw results as JSON")
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    out = args.out if args.out is not None or mode != "full" else Path(__file__).resolve().parent / "results.md"
    jax.config.update("jax_enable_compilation_cache", False)
    return Invocation(mode, out, args.json)

