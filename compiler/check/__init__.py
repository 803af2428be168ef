"""Checking: names, kinds, shapes, signatures and strategies, lowered to the IR in one walk."""

from pplang.compiler.check.checker import Checker

__all__ = ["Checker"]
