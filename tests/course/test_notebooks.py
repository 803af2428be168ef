"""Executes every course notebook (examples/course/*.ipynb) with a real Jupyter kernel.

Each notebook checks its answer against an exact one with `assert`, so a wrong posterior fails
the cell, and any cell error fails the test. The kernel is this interpreter's (`sys.executable`,
so pplang from the test environment), started in the notebook's folder as a reader would; one
test per notebook lets pytest-xdist spread them over workers.
"""

import importlib.util
import os
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

COURSE = Path(__file__).resolve().parents[2] / "examples" / "course"
NOTEBOOKS = sorted(COURSE.glob("*.ipynb"))
TIMEOUT_S = 300  # per cell; a lesson takes 15-30 s on 2 cores (docs/course.md)


def test_every_lesson_has_a_notebook() -> None:
    models = sorted(p.stem for p in COURSE.glob("[0-9][0-9]_*.ppl"))
    assert models == [p.stem for p in NOTEBOOKS]
    assert len(NOTEBOOKS) >= 11
    assert [m for m in models if not (COURSE / f"{m}.data.json").is_file()] == []


def test_notebooks_match_their_generator() -> None:
    """The notebooks are written by make_notebooks.py: an edit made to one but not the other fails."""
    spec = importlib.util.spec_from_file_location("make_notebooks", COURSE / "make_notebooks.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert sorted(generator.LESSONS) == [p.stem for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        committed = [(c.cell_type, c.source) for c in nbformat.read(path, as_version=4).cells]
        generated = [(c.cell_type, c.source) for c in generator.notebook(generator.LESSONS[path.stem]).cells]
        assert committed == generated, f"{path.name} differs from make_notebooks.py: run it to regenerate"


def test_notebooks_are_committed_without_outputs() -> None:
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        dirty = [c["id"] for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not dirty, f"{path.name} has outputs in {dirty}: regenerate it with make_notebooks.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = nbformat.read(path, as_version=4)
    # The kernel runs in a child process. JUPYTER_PATH puts this environment's `python3` kernel spec
    # (ipykernel's) before any of the user's, and jupyter_client starts it with this interpreter
    # (sys.executable). Without MPLBACKEND the kernel draws every figure with the inline backend, as
    # for a reader, so a plot that fails to render fails the test.
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join([str(Path(sys.prefix) / "share" / "jupyter"),
                                                        os.environ.get("JUPYTER_PATH", "")]).rstrip(os.pathsep))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    client = nbclient.NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
