"""Executes every course notebook (examples/course/*.ipynb) with a real Jupyter kernel.

Each notebook checks its answer against an exact one with `assert`, so a wrong posterior fails
the cell, and any cell error fails the test. The kernel is this interpreter's (`sys.executable`,
so pplang from the test environment), started in the notebook's folder as a reader would; one
test per notebook lets pytest-xdist spread them over workers.
"""

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

COURSE = Path(__file__).resolve().parents[2] / "examples" / "course"
NOTEBOOKS = sorted(COURSE.glob("*.ipynb"))
TIMEOUT_S = 300  # per cell; a lesson takes 10-40 s on 2 cores (docs/course.md)


def test_every_lesson_has_a_notebook() -> None:
    models = sorted(p.stem for p in COURSE.glob("[0-9][0-9]_*.ppl"))
    assert models == [p.stem for p in NOTEBOOKS]
    assert len(NOTEBOOKS) >= 11


def test_notebooks_are_committed_without_outputs() -> None:
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        dirty = [c["id"] for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not dirty, f"{path.name} has outputs in {dirty}: regenerate it with make_notebooks.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = nbformat.read(path, as_version=4)
    # The kernel runs in a child process: jupyter_client starts a `python3` kernel with this
    # interpreter (sys.executable); matplotlib draws without a display.
    monkeypatch.setenv("MPLBACKEND", "agg")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    client = nbclient.NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
