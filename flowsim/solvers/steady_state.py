r"""An adaptive solve of dz/dt = F(z) until the vector field is small: a steady state.

diffrax integrates the flow (Tsit5 with a PID step-size controller by
default) and a :class:`diffrax.Event` stops it as soon as

    ‖F(z)‖ < steady_tol,

measured in the problem's norm (the metric of the flow: for a natural-gradient
flow, the Fisher metric). The test looks at the *vector field*, not at the
change of the state between steps (which a slow flow can make small far from
a steady state).

Reaching ``t_final`` first is a result, ``RESULTS.not_steady``, not a steady
state. Two options make other flows of the same solver:

* ``require_steady=False``: stop at a steady state or at ``t_final``,
  whichever comes first, both successful (a relaxation of bounded time);
* ``stop_at_steady=False`` (and ``require_steady=False``): a finite-time flow
  to ``t_final`` with no event.
"""

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._results import RESULTS
from .._tolerance import eps, tree_dtype
from .._trees import tree_all_finite
from ..problem import euclidean_norm
from ._base import AbstractFastSolver


def evaluations_per_step(solver) -> int:
    """Evaluations of F per step of a diffrax solver (stages, less one when FSAL)."""
    tableau = getattr(solver, "tableau", None)
    if tableau is None or not hasattr(tableau, "num_stages"):
        return 1
    return tableau.num_stages - int(bool(getattr(tableau, "fsal", False)))


class SteadyState(AbstractFastSolver):
    """Adaptive flow until ‖F(z)‖ < ``steady_tol`` (see the module docstring).

    Attributes:
        t_final: the flow stops here at the latest.
        steady_tol: the steady-state test ‖F(z)‖ < steady_tol (default √ε of the state's dtype).
        rtol, atol: the step-size controller's tolerances (default √ε).
        dt0: the first step.
        max_steps: diffrax's bound on the number of steps.
        stop_at_steady: stop as soon as the test holds (an event).
        require_steady: reaching ``t_final`` without a steady state is ``not_steady``.
        solver: the diffrax solver (default ``Tsit5()``).
    """

    t_final: float = 1e4
    steady_tol: float | None = None
    rtol: float | None = None
    atol: float | None = None
    dt0: float = 0.1
    max_steps: int = eqx.field(static=True, default=100_000)
    stop_at_steady: bool = eqx.field(static=True, default=True)
    require_steady: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if self.require_steady and not self.stop_at_steady:
            raise ValueError("require_steady needs stop_at_steady (the steady-state event)")
    solver: diffrax.AbstractSolver = diffrax.Tsit5()

    def _solve(self, field, z0, params, x, norm, saveat):
        dtype = tree_dtype(z0)  # times in the state's precision: float64 would promote float32
        default = eps(dtype) ** 0.5
        pick = lambda value: default if value is None else value
        term = diffrax.ODETerm(lambda t, z, args: field(z, params, x))
        event = None
        if self.stop_at_steady:
            tol = pick(self.steady_tol)
            event = diffrax.Event(lambda t, z, args, **kw: norm(z, field(z, params, x)) < tol)
        as_time = lambda t: jnp.asarray(t).astype(dtype)
        return diffrax.diffeqsolve(
            term, self.solver, t0=as_time(0.0), t1=as_time(self.t_final), dt0=as_time(self.dt0),
            y0=z0, saveat=saveat,
            stepsize_controller=diffrax.PIDController(rtol=pick(self.rtol), atol=pick(self.atol)),
            event=event, max_steps=self.max_steps, throw=False,
        )

    def solve(self, field, z0, params, x, norm=euclidean_norm):
        sol = self._solve(field, z0, params, x, norm, diffrax.SaveAt(t1=True))
        z = jax.tree.map(lambda u: u[-1], sol.ys)
        reached_end = RESULTS.not_steady if self.require_steady else RESULTS.successful
        result = RESULTS.where(sol.result == diffrax.RESULTS.event_occurred, RESULTS.successful,
                               RESULTS.where(sol.result == diffrax.RESULTS.successful, reached_end,
                                             RESULTS.max_steps_reached))
        result = RESULTS.where(tree_all_finite(z), result, RESULTS.nonfinite)
        per_step = evaluations_per_step(self.solver) + int(self.stop_at_steady)
        info = {"residual": norm(z, field(z, params, x)),
                "matvecs": jnp.asarray(sol.stats["num_steps"]) * per_step + 1,
                "result": result, "t_final": sol.ts[-1]}
        return z, info

    def trajectory(self, field, z0, params, x, ts, norm=euclidean_norm):
        """The states at the times ``ts`` (a flow to ``ts[-1]``, with no early stop)."""
        flow = dataclasses.replace(self, t_final=ts[-1], stop_at_steady=False,
                                   require_steady=False)
        return flow._solve(field, z0, params, x, norm, diffrax.SaveAt(ts=ts)).ys


__all__ = ["SteadyState", "evaluations_per_step"]
