"""The package's public surface: names load on first use, and the runtime stands without the compiler."""

import subprocess
import sys

import pplang as pp


def test_public_names_are_the_documented_objects_after_any_import_order() -> None:
    import pplang.embed
    import pplang.inference.importance
    import pplang.models  # noqa: F401 - a submodule must not shadow the `model` decorator

    assert pp.model is pplang.embed.model and callable(pp.model)
    assert pp.Model is pplang.models.Model
    assert pp.importance_sampling is pplang.inference.importance.importance_sampling
    assert set(pp.__all__) <= set(dir(pp))


def test_runtime_and_stdlib_import_without_the_compiler() -> None:
    """A generated module imports only pplang.runtime and pplang.stdlib: it must not pull in the
    compiler, the checker or lark."""
    code = ("import sys\nfrom pplang import runtime, stdlib\n"
            "bad = [m for m in sys.modules if m.startswith(('pplang.compiler', 'pplang.compiler.check', 'lark'))]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
