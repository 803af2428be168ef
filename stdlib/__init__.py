"""The language's standard library: distributions and the constraints of their supports."""

from . import constraints, distributions

__all__ = ["constraints", "distributions"]
