"""Dependencies point one way: `pplang` (API, inference, CLI) -> `pplang.compiler` -> `pplang.runtime`,
`pplang.stdlib`; inside the compiler, each stage imports only earlier stages. Read from the source
(every import statement, function-local ones too), so a lower layer that reaches up fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"pplang": "pplang", "compiler": "pplang.compiler", "runtime": "pplang.runtime", "stdlib": "pplang.stdlib"}

# Compiler stages in pipeline order; a module may import its own stage and earlier ones.
STAGES = [
    ("pplang.compiler.frontend.syntax", "pplang.compiler.diagnostics", "pplang.compiler.names", "pplang.compiler.dims"),
    ("pplang.compiler.frontend",),
    ("pplang.compiler.ir",),
    ("pplang.compiler.check", "pplang.compiler.analysis", "pplang.compiler.printer"),
    ("pplang.compiler.codegen",),
    ("pplang.compiler.transforms",),
    ("pplang.compiler.pipeline",),
]


def modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            out[".".join((package, *parts))] = path
    return out


def imports(name: str, path: Path) -> set[str]:
    """Every pplang module `name` imports, relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found |= {f"{base}.{a.name}" for a in node.names} | {base}
    return {m for m in found if m == "pplang" or m.startswith("pplang.")}


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def stage(module: str) -> int | None:
    return next((k for k, prefixes in enumerate(STAGES) if within(module, prefixes)), None)


MODULES = modules()
GRAPH = {name: imports(name, path) for name, path in MODULES.items()}


def test_every_folder_has_modules() -> None:
    assert {m.split(".")[1] if m.count(".") else m for m in MODULES} >= {"compiler", "runtime", "stdlib", "cli"}
    assert all(stage(m) is not None for m in MODULES if m.startswith("pplang.compiler."))


@pytest.mark.parametrize("name", [m for m in MODULES if within(m, ("pplang.runtime", "pplang.stdlib"))])
def test_runtime_and_stdlib_import_only_each_other(name: str) -> None:
    bad = {m for m in GRAPH[name] if not within(m, ("pplang.runtime", "pplang.stdlib"))}
    assert not bad, f"{name} imports {sorted(bad)}"


@pytest.mark.parametrize("name", [m for m in MODULES if within(m, ("pplang.compiler",))])
def test_compiler_imports_no_higher_layer_and_no_later_stage(name: str) -> None:
    up = {m for m in GRAPH[name] if not within(m, ("pplang.compiler", "pplang.runtime", "pplang.stdlib"))}
    assert not up, f"{name} imports the user's package: {sorted(up)}"
    own = stage(name)
    later = {m for m in GRAPH[name] if within(m, ("pplang.compiler",)) and (stage(m) or 0) > (own or 0)}
    assert not later, f"{name} (stage {own}) imports later stages: {sorted(later)}"


@pytest.mark.parametrize("name", [m for m in MODULES if not within(m, ("pplang.cli",))])
def test_only_the_cli_imports_the_cli(name: str) -> None:
    assert not {m for m in GRAPH[name] if within(m, ("pplang.cli",))}, f"{name} imports the CLI"


def test_the_checker_catches_a_violation(tmp_path: Path) -> None:
    """The import reader sees function-local and relative imports (the test above can fail)."""
    path = tmp_path / "ops.py"
    path.write_text("def f():\n    from ..compiler import codegen\n    import pplang.models\n")
    assert imports("pplang.runtime.ops", path) >= {"pplang.compiler.codegen", "pplang.models"}
