"""Runs the code blocks of a Markdown page and compares the outputs it shows with a real run.

A page is read as a sequence of fenced blocks, each of one kind:

- *command*: a bare or ```bash block whose lines are `pplang ...`, `python ...` or `VAR=1 pplang ...`
  (`.venv/bin/` prefixes allowed), or a block of `$ command` lines each followed by its output.
  `pplang` runs in this process (`pplang.cli.main`), `python FILE.py` through `runpy`; a command
  with an environment prefix or `python -m` runs in a new process.
- *python*: a ```python block, run in one namespace per page, in order, printing into a capture.
- *model*: a ```ppl block, or a bare one that starts with a declaration (`model`, `guide`,
  `objective`, `network`): loaded with `pp.loads`; a load error is its output.
- *output*: the first bare/```text block after a command or python block, in the same section
  (no heading between them), and any later block marked `output`: what that block printed
  (stdout and stderr together, progress bars left out), or the part of it around `...` lines.
  After a model block, a block marked `output` shows its load error.

Words after the block's language say what its text cannot (GitHub shows only the first as the
language): `file=NAME` writes the block to NAME (the commands and code that follow read it, and
so check it); `output` makes the block the output of the previous run block whatever its language
(generated code); `norun` leaves a block out (a syntax description with placeholders, a command
that sets up the environment or needs data the repository does not ship); `fragment` marks model
text that is a piece of a model rather than a file; `rtol=X` loosens the number comparison of an
output block. Use `norun` and `fragment` sparingly. `source .venv/bin/activate` is a no-op: the
runner runs in that environment.

Outputs compare line by line after collapsing spaces: text must be equal, integers equal, decimals
within two units of their last shown digit or `rtol` (default 5e-3) relative, durations (`1.8 s`)
not at all. A line `...` stands for any number of lines. Every page runs in a fresh folder where
`examples/` holds links to the repository's examples, so commands and code read the shipped files
and whatever they write stays there.
"""
from __future__ import annotations

import contextlib
import io
import json
import linecache
import math
import os
import re
import runpy
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FLAGS = {"output", "norun", "fragment"}
DECLARATION = re.compile(r"^(model|guide|objective|network)\s")
COMMAND = re.compile(r"^(\$ |(\w+=\S+ )*(\.venv/bin/)?(pplang|python3?|bash|source)( |$))")
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?!\w)")
DURATION = re.compile(r"\s?(s|ms|min|seconds?)\b")
PROGRESS = re.compile(r"\r|\d+%\|")
DEFAULT_RTOL = 5e-3


@dataclass
class Block:
    """A fenced block: its page line (of the opening fence), language, marks and text."""

    line: int
    lang: str
    flags: set[str]
    attrs: dict[str, str]
    text: str
    kind: str = "text"
    after_heading: bool = False  # a Markdown heading lies between the previous block and this one
    section: int = 0  # how many `## ` headings come before it

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()


@dataclass
class Expected:
    """Output a page shows: `lines` of `block` (a slice of its lines) for the run block `source`."""

    block: Block
    start: int
    stop: int
    source: Block

    @property
    def lines(self) -> list[str]:
        return self.block.lines[self.start:self.stop]


@dataclass
class Outcome:
    """What running one block gave: its output, and what is wrong, if anything."""

    block: Block
    output: str = ""
    problems: list[str] = field(default_factory=list)
    expected: list[Expected] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)  # a command block: what each command printed
    failed: list[str] = field(default_factory=list)  # its commands that exited with an error
    seconds: float = 0.0


def parse(text: str) -> list[Block]:
    """The fenced blocks of a page, classified."""
    blocks, lines, i, heading, section = [], text.splitlines(), 0, False, 0
    while i < len(lines):
        m = re.match(r"^```(.*)$", lines[i])
        if not m:
            heading = heading or lines[i].startswith("#")
            section += lines[i].startswith("## ")
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        words = m.group(1).split()
        lang = words[0] if words and words[0] not in FLAGS and "=" not in words[0] else ""
        rest = words[1:] if lang else words
        block = Block(i + 1, lang, {w for w in rest if "=" not in w},
                      dict(w.split("=", 1) for w in rest if "=" in w), "".join(ln + "\n" for ln in lines[i + 1:j]))
        block.kind, block.after_heading, block.section, heading = classify(block), heading, section, False
        blocks.append(block)
        i = j + 1
    return blocks


def classify(b: Block) -> str:
    code = [ln for ln in b.lines if ln.strip() and not ln.lstrip().startswith("#")]
    if "norun" in b.flags:
        return "norun"
    if "output" in b.flags:
        return "output"
    if "fragment" in b.flags:
        return "fragment"
    if b.lang == "python":
        return "python"
    if "file" in b.attrs:
        return "file"
    if b.lang == "ppl" or (b.lang in ("", "text") and code and DECLARATION.match(code[0])):
        return "model"
    if b.lang in ("", "bash", "sh", "shell", "console") and code and COMMAND.match(code[0]) \
            and all(COMMAND.match(ln) or not ln.startswith("$ ") for ln in code):
        return "command"
    return "text"


def commands(b: Block) -> list[tuple[str, int, int]]:
    """(command line, first and end line of the output it shows) for each command of a block."""
    lines, out, i = b.lines, [], 0
    dollar = any(ln.startswith("$ ") for ln in lines)
    while i < len(lines):
        line = lines[i]
        if not line.strip() or (not dollar and line.lstrip().startswith("#")):
            i += 1
            continue
        cmd = line[2:] if dollar else line
        while cmd.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd = cmd.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        start = i
        while dollar and i < len(lines) and not lines[i].startswith("$ "):
            i += 1
        out.append((cmd, start, i))
    return out


class Page:
    """Runs one page's blocks in order in `workdir`."""

    def __init__(self, path: Path, workdir: Path) -> None:
        self.path, self.workdir = path, workdir
        self.name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
        self.namespace: dict = {"__name__": "__main__"}
        examples = workdir / "examples"
        examples.mkdir(exist_ok=True)
        for entry in (ROOT / "examples").iterdir():
            if not (examples / entry.name).exists():
                (examples / entry.name).symlink_to(entry)

    def run(self, part: tuple[int, int] = (0, 1)) -> list[Outcome]:
        """Run the page, or with part (k, n) its sections k, k + n, k + 2n, ... (every `file=`
        block is written all the same); a page with python blocks runs whole."""
        blocks = parse(self.path.read_text())
        k, n = part
        if n > 1:
            assert all(b.kind != "python" for b in blocks), f"{self.name} has python blocks: run it whole"
        outcomes: list[Outcome] = []
        last: Outcome | None = None  # the latest run block
        waiting = False  # whether it still waits for the output block it shows, if any
        with chdir(self.workdir):
            for b in blocks:
                if "file" in b.attrs:
                    (self.workdir / b.attrs["file"]).write_text(b.text)
                if b.section % n != k:
                    continue
                implicit = waiting and last.block.kind != "model" and b.lang in ("", "text", "console") \
                    and not b.after_heading
                if b.kind == "output" or (b.kind == "text" and implicit):
                    if last is None:
                        problem = f"{self.name}:{b.line}: an output block after no run block"
                        outcomes.append(Outcome(b, problems=[problem]))
                    else:
                        last.expected.append(Expected(b, 0, len(b.lines), last.block))
                    waiting = False
                    continue
                run = {"python": self.python, "model": self.model, "command": self.command}.get(b.kind)
                if run is None:  # text, a file, norun, a fragment
                    continue
                began = time.perf_counter()
                last = run(b)
                last.seconds = time.perf_counter() - began
                outcomes.append(last)
                waiting = not (b.kind == "command" and shown_outputs(last))  # a `$` block shows its own
        for o in outcomes:
            check(o, self.name)
        return outcomes

    def python(self, b: Block) -> Outcome:
        o = Outcome(b)
        # compiled at its page lines under the page's name, with the page in linecache: tracebacks
        # point into the page, and @pp.model can read a function's source as from a file
        source = self.path.read_text()
        linecache.cache[self.name] = (len(source), None, source.splitlines(keepends=True), self.name)
        with captured() as buf, importable(self.workdir):
            try:
                exec(compile("\n" * b.line + b.text, self.name, "exec"), self.namespace)  # noqa: S102 - the page's own code
            except Exception:  # noqa: BLE001 - reported as the block's failure
                print(traceback.format_exc(), file=sys.stderr)
                o.problems.append(f"{self.name}:{b.line}: the python block raised:\n{buf.getvalue()}")
        o.output = buf.getvalue()
        return o

    def model(self, b: Block) -> Outcome:
        import pplang as pp

        o = Outcome(b)
        try:
            pp.loads(b.text, file=b.attrs.get("file", Path(self.name).name))
        except pp.PplError as e:
            o.output = e.render() + "\n"
            o.failed.append(f"{self.name}:{b.line}: the model does not load:\n{o.output}")
        return o

    def command(self, b: Block) -> Outcome:
        o = Outcome(b)
        for cmd, start, stop in commands(b):
            try:
                text, code = self.one_command(cmd)
            except ValueError as e:
                o.problems.append(f"{self.name}:{b.line}: {e}")
                text, code = "", 0
            o.expected.append(Expected(b, start, stop, b))
            o.output += text
            o.parts.append(text)
            if code != 0:
                o.failed.append(f"{self.name}:{b.line}: `{cmd}` exited with {code}:\n{text}")
        return o

    def one_command(self, cmd: str) -> tuple[str, int]:
        argv = shlex.split(cmd, comments=True)
        env = {}
        while argv and re.match(r"^\w+=", argv[0]):
            k, v = argv.pop(0).split("=", 1)
            env[k] = v
        prog = argv[0].removeprefix(".venv/bin/")
        if argv == ["source", ".venv/bin/activate"]:
            return "", 0  # the runner already runs in that environment
        if prog == "pplang" and not env:
            from pplang.cli import main

            with captured() as buf:
                code = main(argv[1:])
            return buf.getvalue(), code
        if prog in ("python", "python3") and not env and argv[1:2] != ["-m"]:
            with captured() as buf, argv_as(argv[1:]):
                try:
                    runpy.run_path(argv[1], run_name="__main__")
                    code = 0
                except SystemExit as e:
                    code = int(e.code or 0) if not isinstance(e.code, str) else 1
                except Exception:  # noqa: BLE001 - as python would: the traceback, exit code 1
                    traceback.print_exc()
                    code = 1
            return buf.getvalue(), code
        if prog in ("pplang", "python", "python3"):
            exe = [sys.executable, "-m", "pplang.cli"] if prog == "pplang" else [sys.executable]
            done = subprocess.run([*exe, *argv[1:]], capture_output=True, text=True, cwd=self.workdir,
                                  env={**os.environ, **env}, timeout=600)
            return strip_progress(done.stdout + done.stderr), done.returncode
        raise ValueError(f"the doc runner does not run `{prog}` (mark the block norun)")


@contextlib.contextmanager
def chdir(path: Path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextlib.contextmanager
def importable(folder: Path):
    """Modules in `folder` importable, as from `python` started there."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


@contextlib.contextmanager
def argv_as(argv: list[str]):
    old = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = old


class _Capture(io.StringIO):
    def getvalue(self) -> str:
        return strip_progress(super().getvalue())


@contextlib.contextmanager
def captured():
    """stdout and stderr into one buffer, in the order they were written (as a terminal shows them),
    with warnings shown as a fresh `python` shows them (once per place, on stderr), whatever the
    test runner around does with them."""
    buf = _Capture()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf), warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", quiet)
        warnings.showwarning = show_warning
        yield buf


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def strip_progress(text: str) -> str:
    return "".join(ln for ln in text.splitlines(keepends=True) if not PROGRESS.search(ln.rstrip("\n")))


# ---------------------------------------------------------------- comparing and regenerating outputs

def shape(line: str) -> str:
    return " ".join(NUMBER.sub("#", line).split())


def numbers(line: str) -> list[tuple[str, bool]]:
    """The numbers of a line, each with whether it is compared (a duration is not)."""
    return [(m.group(), not DURATION.match(line, m.end())) for m in NUMBER.finditer(line)]


def close(shown: str, got: str, rtol: float) -> bool:
    if not re.search(r"[.eE]", shown + got):
        return shown.lstrip("+") == got.lstrip("+")
    mantissa, _, exponent = shown.lower().partition("e")
    decimals = len(mantissa.partition(".")[2]) - int(exponent or 0)
    a, b = float(shown), float(got)
    return rtol == math.inf or abs(a - b) <= max(2 * 10.0 ** -decimals, rtol * max(abs(a), abs(b)))


def same_line(shown: str, got: str, rtol: float | None) -> bool:
    """Whether a shown line matches a printed one (rtol None: text only, for regeneration)."""
    if shape(shown) != shape(got):
        return False
    if rtol is None:
        return True
    return all(not use or close(a, b, rtol) for (a, use), (b, _) in zip(numbers(shown), numbers(got)))


def align(shown: list[str], got: list[str], rtol: float | None) -> list[int | None] | None:
    """For each shown line, the printed line it stands for (None for a `...` line), or None if
    the shown lines do not fit the printed ones."""
    shown, got = trim(shown), trim(got)

    def fit(i: int, j: int) -> list[int | None] | None:
        if i == len(shown):
            return [] if j == len(got) else None
        if shown[i].strip() == "...":
            skips = range(j, len(got) + 1)
            if rtol is None and i + 1 < len(shown):  # text alone: try first where the integers agree too
                skips = sorted(skips, key=lambda k: not (k < len(got) and same_line(shown[i + 1], got[k], math.inf)))
            for k in skips:
                rest = fit(i + 1, k)
                if rest is not None:
                    return [None, *rest]
            return None
        if j < len(got) and same_line(shown[i], got[j], rtol):
            rest = fit(i + 1, j + 1)
            return None if rest is None else [j, *rest]
        return None

    return fit(0, 0)


def trim(lines: list[str]) -> list[str]:
    lines = [ln.rstrip() for ln in lines]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def shown_outputs(o: Outcome) -> list[Expected]:
    """The outputs a page shows for a run block: its output block (even empty), the output lines
    under each `$` command that has some."""
    return [e for e in o.expected if e.block is not o.block or e.stop > e.start]


def check(o: Outcome, page: str) -> None:
    """Problems of a run block: an error the page does not show, an output that differs."""
    shown = shown_outputs(o)
    if o.failed and not any("error" in "\n".join(e.lines) for e in shown):
        o.problems.extend(o.failed)
    for e, got in zip(shown, split_output(o, shown)):
        if align(e.lines, got.splitlines(), float(e.block.attrs.get("rtol", DEFAULT_RTOL))) is None:
            o.problems.append(f"{page}:{e.block.line + 1 + e.start}: the output shown differs from a real run of "
                              f"the block at line {o.block.line}\n--- shown\n" + "\n".join(trim(e.lines))
                              + "\n--- printed\n" + got)


def split_output(o: Outcome, shown: list[Expected]) -> list[str]:
    """The printed text each shown output stands for: per command in a `$` block, else all of it."""
    if o.parts and shown and shown[0].block is o.block:
        return [text for text, e in zip(o.parts, o.expected) if e in shown]
    return [o.output] * len(shown)


def regenerated(o: Outcome) -> list[tuple[Expected, list[str] | None]]:
    """New text for each output a block shows: none where it still matches; else the printed lines
    in place of the shown ones they stand for (matched by their text and integers, else by their
    text alone), keeping `...` lines; a shown output without `...` that no longer fits is replaced whole, an
    excerpt that no longer fits is left for a person to redo (None)."""
    shown = shown_outputs(o)
    out: list[tuple[Expected, list[str] | None]] = []
    for e, got in zip(shown, split_output(o, shown)):
        printed = trim(got.splitlines())
        lines = trim(e.lines)
        rtol = float(e.block.attrs.get("rtol", DEFAULT_RTOL))
        if align(lines, printed, rtol) is not None:  # still true: left as it is (no churn from timings)
            out.append((e, lines))
            continue
        # the same integers (a table's row labels) and text; else the text alone
        where = align(lines, printed, math.inf) or align(lines, printed, None)
        if where is not None:
            out.append((e, [lines[i] if j is None else printed[j] for i, j in enumerate(where)]))
        else:
            out.append((e, None if any(ln.strip() == "..." for ln in lines) else printed))
    return out


def edits(page: Path, outcomes: list[Outcome]) -> tuple[list[tuple[int, int, list[str]]], list[str]]:
    """The rewrites that make the page show what its blocks printed, as (first, end, new lines)
    with 0-based page line indices, and the problems left (failed runs, excerpts that no longer
    fit)."""
    lines = page.read_text().splitlines()
    out, left = [], []
    for o in outcomes:
        failed = [p for p in o.problems if "differs from a real run" not in p]
        left += failed
        if failed:
            continue
        for e, new in regenerated(o):
            if new is None:
                left.append(f"{page.name}:{e.block.line}: the excerpt no longer fits what the block at line "
                            f"{o.block.line} prints; redo it by hand (`...` stands for any lines)")
                continue
            first, end = e.block.line + e.start, e.block.line + e.stop
            while end > first and not lines[end - 1].strip():
                end -= 1
            if lines[first:end] != new:
                out.append((first, end, new))
    return out, left


def run_isolated(page: Path, part: tuple[int, int] = (0, 1)) -> dict:
    """Run a page in a new Python process, as a reader would in a new session: a page may change
    what the rest of a process computes (`pp.enable_x64()`, caches, warning registries). Returns
    {"problems": [...], "edits": [...], "left": [...], "seconds": {line: s}}."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, __file__, str(page), str(part[0]), str(part[1]), tmp],
                              capture_output=True, text=True, cwd=ROOT, env={**os.environ, "MPLBACKEND": "Agg"})
    if done.returncode != 0:
        return {"problems": [f"{page.name}: the runner failed:\n{done.stderr[-4000:]}"], "edits": [], "left": [],
                "seconds": {}}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    page, k, n, workdir = Path(argv[0]), int(argv[1]), int(argv[2]), Path(argv[3])
    outcomes = Page(page, workdir).run((k, n))
    changes, left = edits(page, outcomes)
    print(json.dumps({"problems": [p for o in outcomes for p in o.problems], "edits": changes, "left": left,
                      "seconds": {o.block.line: round(o.seconds, 2) for o in outcomes}}))


if __name__ == "__main__":
    main(sys.argv[1:])
