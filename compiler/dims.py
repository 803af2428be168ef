"""Evaluate the size expressions the checker writes (`N`, `x.shape[0]`, `max(T, 1)`) against bound
arguments, without `eval`: model files are data, so nothing here executes arbitrary Python."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

import numpy as np


def eval_dim(dim: int | str | None, env: Mapping[str, Any]) -> int | None:
    if dim is None or isinstance(dim, int):
        return dim
    try:
        return int(_eval(ast.parse(dim, mode="eval").body, env))
    except (KeyError, ValueError, TypeError, IndexError, SyntaxError, ZeroDivisionError, OverflowError):
        return None


def eval_shape(shape: tuple | None, env: Mapping[str, Any]) -> tuple | None:
    if shape is None:
        return None
    return tuple(eval_dim(d, env) for d in shape)


def _eval(node: ast.AST, env: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.Attribute) and node.attr == "shape":
        return np.shape(_eval(node.value, env))
    if isinstance(node, ast.Subscript):
        return _eval(node.value, env)[_eval(node.slice, env)]
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, env), _eval(node.right, env)
        ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
               ast.FloorDiv: lambda: a // b, ast.Mod: lambda: a % b}
        return ops[type(node.op)]()
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand, env)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("max", "min"):
        vals = [_eval(a, env) for a in node.args]
        return max(vals) if node.func.id == "max" else min(vals)
    raise ValueError(f"unsupported size expression {ast.dump(node)}")
