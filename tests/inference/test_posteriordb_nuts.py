"""NUTS on posteriordb's posteriors (`examples/posteriordb/`) against their reference summaries: a
check of the sampler on posteriors nobody here designed, with answers nobody here computed.

Per posterior, 4 chains with a fixed seed and the settings of `examples/posteriordb/settings.py`
(shared with `nuts_table.py`, which writes the table in docs/posteriordb.md). For every reference
parameter: |mean - ref| <= max(0.1 ref sd, 4 MCSE) with the MCSEs of both runs combined,
|sd - ref sd| <= max(0.1 ref sd, 4 MCSE of the sd), R-hat < 1.01; and no divergences. Runs over
~20 s are marked slow (the whole file takes a few minutes with `-n 2`).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SETTINGS_FILE = Path(__file__).resolve().parents[2] / "examples" / "posteriordb" / "settings.py"


def load_settings() -> ModuleType:
    """The shared settings module, by path (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("posteriordb_settings", SETTINGS_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


settings = load_settings()


def case(posterior: str) -> pytest.param:
    s = settings.SETTINGS[posterior]
    marks = [pytest.mark.slow] if s.slow else []
    if s.skip:
        marks.append(pytest.mark.skip(reason=s.skip))
    return pytest.param(posterior, marks=marks, id=posterior)


@pytest.mark.filterwarnings("ignore::UserWarning")  # data entries a model does not use are ignored with a note
@pytest.mark.parametrize("posterior", [case(p) for p in settings.SETTINGS])
def test_nuts_matches_reference(posterior: str) -> None:
    s = settings.SETTINGS[posterior]
    res, seconds = settings.run(posterior)
    outcome = settings.compare(posterior, res, seconds)
    unexpected = [what for check, what in outcome.failures if check not in s.expected_checks]
    assert not unexpected, f"{posterior} ({seconds:.0f} s):\n" + "\n".join(what for _, what in outcome.failures)
    if s.expected_failures:
        assert outcome.failures, f"{posterior} now passes every check: drop its expected failures"
        pytest.xfail(f"{s.expected_failures} ({'; '.join(what for _, what in outcome.failures)})")


def test_every_expressible_posterior_has_settings() -> None:
    """A new model file in examples/posteriordb gets NUTS settings (and so a test and a table row)."""
    files = sorted(f.stem for f in settings.EXAMPLES.glob("*.ppl"))
    assert sorted(settings.SETTINGS) == files
