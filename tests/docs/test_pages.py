"""README.md and every page of docs/ run as written: each command, code and model block runs, and
each output a page shows is what a real run prints (tests/docs/docrun.py says how blocks are read;
tests/docs/regenerate.py rewrites the outputs after a change)."""
from __future__ import annotations

from pathlib import Path

import pytest
from docrun import PAGES, ROOT, run_isolated

# the pages that take longest run in parts (their sections taken in turn), so that pytest-xdist
# can spread them over its workers
PARTS = {"docs/examples.md": 3}
RUNS = [(page, (k, n)) for page in PAGES for n in [PARTS.get(str(page.relative_to(ROOT)), 1)] for k in range(n)]


@pytest.mark.parametrize("page, part", RUNS,
                         ids=[f"{p.relative_to(ROOT)}" + (f"-{k + 1}of{n}" if n > 1 else "") for p, (k, n) in RUNS])
def test_page_runs_as_written(page: Path, part: tuple[int, int]) -> None:
    result = run_isolated(page, part)
    if not result["seconds"] and not result["problems"]:
        pytest.skip("no block to run (all marked norun)")
    assert not result["problems"], "\n\n".join(result["problems"])
