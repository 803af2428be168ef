"""ODE solutions inside models, through diffrax: `ode_rk45(f, y0, t0, ts, ...)` and
`ode_bdf(f, y0, t0, ts, ...)` in the language solve dy/dt = f(t, y, ...) from y(t0) = y0 and return
y at the times `ts` (one row per time). `f` is a declaration of the same file that draws nothing;
its generated function is called with a plain context. Gradients flow through the solver
(diffrax's recursive checkpointing adjoint), so NUTS and VI differentiate the solution.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .context import Context

RTOL, ATOL = 1e-6, 1e-6  # Stan's defaults for its ODE solvers
MAX_STEPS = 100_000


def solve(rhs: Any, y0: Any, t0: Any, ts: Any, args: tuple, stiff: bool) -> Any:
    import diffrax  # imported on first use: most models solve no ODE

    def field(t: Any, y: Any, a: tuple) -> Any:
        value, _, _ = rhs(Context(), jax.random.key(0), t, y, *a)
        return jnp.broadcast_to(jnp.asarray(value, y.dtype), y.shape)

    y0 = jnp.asarray(y0, jnp.result_type(float, y0))
    ts = jnp.asarray(ts, y0.dtype)
    solver = diffrax.Kvaerno5() if stiff else diffrax.Tsit5()
    sol = diffrax.diffeqsolve(diffrax.ODETerm(field), solver, t0=jnp.asarray(t0, y0.dtype), t1=ts[-1], dt0=None,
                              y0=y0, args=tuple(args), saveat=diffrax.SaveAt(ts=ts),
                              stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL),
                              max_steps=MAX_STEPS, throw=False)
    return sol.ys


def ode_rk45(rhs: Any, y0: Any, t0: Any, ts: Any, *args: Any) -> Any:
    """Non-stiff systems: an explicit Runge-Kutta method with adaptive steps (Tsit5)."""
    return solve(rhs, y0, t0, ts, args, stiff=False)


def ode_bdf(rhs: Any, y0: Any, t0: Any, ts: Any, *args: Any) -> Any:
    """Stiff systems: an implicit method with adaptive steps (Kvaerno5)."""
    return solve(rhs, y0, t0, ts, args, stiff=True)
