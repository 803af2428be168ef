"""The language's standard library: distributions and the constraints of their supports.

Submodules load on first use, so that the type checker (which reads only `signatures`,
`mathfns` and the names in `networks`) does not import JAX."""

from importlib import import_module
from typing import Any

__all__ = ["constraints", "distributions"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
