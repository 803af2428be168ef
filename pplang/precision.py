"""The float64 switch: `pp.enable_x64()`, `PPLANG_X64=1`, or `--x64` on any `pplang` command.

JAX computes in float32 unless told otherwise, which is fast but leaves about seven significant
digits: too few for ill-conditioned Cholesky factors, posteriors far narrower than their values,
or long sums. The switch must flip before the first array is made, since arrays made before it
stay float32 (see docs/precision.md).
"""

from __future__ import annotations

import os

ENV = "PPLANG_X64"


def enable_x64() -> None:
    """Make JAX compute in float64 from here on (call it before any array is made)."""
    import jax

    jax.config.update("jax_enable_x64", True)


def requested_by_environment() -> bool:
    """Whether PPLANG_X64 asks for float64 (any value but empty, 0, false or no)."""
    return os.environ.get(ENV, "").strip().lower() not in ("", "0", "false", "no")


def is_x64() -> bool:
    import jax

    return bool(jax.config.jax_enable_x64)


def float64_hint() -> str | None:
    """Advice to retry in float64, or None when JAX already computes in it."""
    if is_x64():
        return None
    return ("JAX computes in float32 here; if rounding is the cause (a posterior far narrower than its values, "
            "an ill-conditioned covariance, long sums), rerun in float64: `--x64` on the command line, "
            "pp.enable_x64() in Python, or PPLANG_X64=1")
