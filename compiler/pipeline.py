"""The compile pipeline: source -> AST -> check -> IR -> analyses -> JAX source -> Python functions.

`check_program` stops after the analyses (what `pplang check`, `info`, `graph` and `compile --emit
ast|ir` need) and imports neither the code generator nor JAX; `compile_program` goes on to the code.

Generated modules are cached by a hash of their text, so loading the same program twice reuses
the functions (and with them JAX's traces); JAX's persistent compilation cache keeps compiled
executables across processes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pplang.compiler import analysis, ir
from pplang.compiler.check import Checker
from pplang.compiler.diagnostics import error
from pplang.compiler.frontend import syntax as S
from pplang.compiler.frontend.parser import parse_program
from pplang.compiler.names import py_name

_MODULES: dict[str, dict[str, Any]] = {}
_CACHE_ON = False


def enable_compilation_cache() -> None:
    """Turn on JAX's persistent compilation cache (directory: $PPLANG_CACHE_DIR or ~/.cache/pplang)."""
    global _CACHE_ON
    if _CACHE_ON:
        return
    import jax

    path = os.environ.get("PPLANG_CACHE_DIR") or str(Path.home() / ".cache" / "pplang" / "jax")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    _CACHE_ON = True


@dataclass
class Checked:
    """One checked program: its syntax, the IR of each declaration and the hosts it may call."""

    program: S.Program
    functions: dict[str, ir.Function]
    hosts: dict[str, Any]


@dataclass
class Compiled(Checked):
    """A checked program with its generated code, run into `namespace`."""

    source_code: str
    namespace: dict[str, Any]

    def function(self, name: str) -> Callable:
        return self.namespace[py_name(name)]


def check_program(program: S.Program, hosts: dict[str, Any] | None = None,
                  only: list[str] | None = None) -> Checked:
    """Check `program` (or the declarations `only`) and lower it to IR with its loops classified."""
    checker = Checker(program, dict(hosts or {}))
    if only is None:
        functions = checker.check_all()
    else:
        functions = {n: checker.lower_objective(n) if checker.decls[n].kind == "objective" else checker.lower(n)
                     for n in only}
    for fn in functions.values():
        analysis.classify_loops(fn)
    return Checked(program, functions, checker.hosts)


def compile_program(program: S.Program, hosts: dict[str, Any] | None = None,
                    only: list[str] | None = None) -> Compiled:
    from pplang.compiler import codegen

    checked = check_program(program, hosts, only)
    code = codegen.generate_module(list(checked.functions.values()), program.file, program.source)
    return Compiled(checked.program, checked.functions, checked.hosts, code, exec_module(code))


def exec_module(code: str) -> dict[str, Any]:
    """Run generated code (never user code: model files only contribute identifiers and numbers,
    which the grammar restricts, and comments made safe by the code generator)."""
    digest = hashlib.sha256(code.encode()).hexdigest()
    if digest not in _MODULES:
        enable_compilation_cache()
        ns: dict[str, Any] = {"__name__": f"pplang_generated_{digest[:12]}", "__pplang_code__": code}
        exec(compile(code, f"<pplang {digest[:12]}>", "exec"), ns)  # noqa: S102 - generated code
        _MODULES[digest] = ns
    return _MODULES[digest]


def read_source(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the program
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror}", hint="check the path") from None
    except UnicodeDecodeError:
        raise error(f"{path} is not a UTF-8 text file", hint="model files are plain text") from None


def parse_file(path: str) -> S.Program:
    return parse_program(read_source(path), path)
