"""Rewrite the outputs README.md and docs/*.md show with those of a real run of their blocks.

    .venv/bin/python tests/docs/regenerate.py [PAGE.md ...]     # default: every page

Run it after a change that alters what a command or a code block prints; review the diff
(`git diff docs/`), then commit it. A block whose run fails is reported and left as it is.
tests/docs/test_pages.py fails while a page shows an output a real run does not print."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from docrun import PAGES, ROOT, run_isolated  # noqa: E402


def regenerate(path: Path) -> int:
    """Rewrite one page; the number of problems left (failed runs, excerpts that no longer fit)."""
    result = run_isolated(path)
    for problem in result["left"]:
        print(problem, file=sys.stderr)
    if result["edits"]:
        lines = path.read_text().splitlines()
        for first, end, new in sorted(result["edits"], reverse=True):
            lines[first:end] = new
        path.write_text("\n".join(lines) + "\n")
    print(f"{path.relative_to(ROOT)}: {len(result['edits'])} output(s) rewritten, {len(result['left'])} problem(s)")
    return len(result["left"])


if __name__ == "__main__":
    pages = [Path(p).resolve() for p in sys.argv[1:]] or PAGES
    sys.exit(1 if sum(regenerate(p) for p in pages) else 0)
