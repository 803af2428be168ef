"""Loading model files and embedding models in Python (`@pp.model`, `@pp.guide`, `@pp.objective`).

A decorated function is parsed from its source with `ast` and compiled like a model file; errors
point at the Python file's own lines. Names the function uses resolve to host functions (any JAX
traceable callable) and to other decorated models, which can be called as submodels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pplang.compiler import ir
from pplang.compiler.diagnostics import PplError, did_you_mean, error
from pplang.compiler.frontend import syntax as S
from pplang.compiler.frontend.pyfront import parse_function
from pplang.compiler.pipeline import Compiled, compile_program, parse_file
from pplang.models import Model
from pplang.stdlib import distributions as dists
from pplang.stdlib.mathfns import FUNCTIONS
from pplang.stdlib.networks import Network


@dataclass
class Module:
    """A compiled model file: its models and guides by name, and the generated code."""

    compiled: Compiled

    @property
    def names(self) -> list[str]:
        return list(self.compiled.functions)

    @property
    def code(self) -> str:
        return self.compiled.source_code

    def __getitem__(self, name: str) -> Model | Objective:
        """The model, guide or objective declared as `name`."""
        if name not in self.compiled.functions:
            raise error(f"no model, guide or objective named `{name}` in {self.compiled.program.file}",
                        hint=did_you_mean(name, self.names) or f"declared: {', '.join(self.names) or 'nothing'}")
        fn = self.compiled.functions[name]
        if fn.kind == "objective":
            return Objective(fn, self.compiled.function(name), self.compiled.program.source)
        return Model(fn, self.compiled.function(name), self.compiled.hosts, self.compiled.program.source,
                     list(self.compiled.program.decls))

    def objective(self, name: str) -> Objective:
        got = self[name]
        if not isinstance(got, Objective):
            raise error(f"`{name}` is a {got.kind}, not an objective", got.fn.span, got.source,
                        hint="name an objective declared in the file")
        return got

    def __getattr__(self, name: str) -> Model:
        if name.startswith("_") or name == "compiled":
            raise AttributeError(name)
        return self[name]


def load(path: str, hosts: Mapping[str, Any] | None = None) -> Module:
    """Parse, check and compile a model file. `hosts` binds the only Python callables the file may
    call, by name; a file cannot import or run anything else."""
    return Module(compile_program(parse_file(path), dict(hosts or {})))


def loads(source: str, hosts: Mapping[str, Any] | None = None, file: str = "<string>") -> Module:
    """Like `load`, from a string."""
    from pplang.compiler.frontend.parser import parse_program

    return Module(compile_program(parse_program(source, file), dict(hosts or {})))


def _decorate(kind: str) -> Callable[[Callable], Model]:
    def wrap(fn: Callable) -> Model:
        try:
            return compile_decorated(fn, kind)
        except PplError as e:
            # the diagnostic points at the user's own line: raised again without the compiler's
            # frames (and without the exception it was raised while handling), so it is read first
            raise e.with_traceback(None) from None

    wrap.__name__ = kind
    return wrap


def compile_decorated(fn: Callable, kind: str) -> Model | Objective:
    """The decorated function parsed from its source and compiled like a model file."""
    decl, file, source, env = parse_function(fn, kind)
    decls, hosts = [decl], {}
    for name, obj in env.items():
        if isinstance(obj, Model) and obj.fn.name == name:
            decls.extend(d for d in obj_decls(obj) if d.name not in {x.name for x in decls})
        elif (callable(obj) or isinstance(obj, Network)) and name not in FUNCTIONS and name not in dists.SIGNATURES:
            hosts[name] = obj
    program = S.Program(decls, file, source)
    compiled = compile_program(program, hosts, only=[decl.name])
    if kind == "objective":
        return Objective(compiled.functions[decl.name], compiled.function(decl.name), source)
    return Model(compiled.functions[decl.name], compiled.function(decl.name), compiled.hosts, source, decls)


def obj_decls(m: Model) -> list[S.Decl]:
    return list(m.decls)


@dataclass
class Objective:
    """A compiled variational objective: a program whose expected return value `pp.fit` maximizes."""

    fn: ir.Function
    impl: Callable
    source: str

    @property
    def name(self) -> str:
        return self.fn.name


model = _decorate("model")
guide = _decorate("guide")
objective = _decorate("objective")
