r"""The deployed computation: a finite relaxation of dz/dt = F(z).

``Relaxation(steps=T, dt=ε)`` returns z_T of the map

    z_{t+1} = Φ(z_t) = z_t + ε F(z_t),     t = 0, …, T−1,

i.e. T explicit-Euler steps, solved by diffrax. Time is measured in steps
(s = t/ε, ds = 1), so that the step count is exact in floating point and the
vector field is ε F.

``steps`` is kept as an array under a static bound ``max_steps`` (diffrax's
own name for its loop bound): relaxations of different lengths under one
bound share one compilation, so a sweep over horizons compiles once.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._results import RESULTS
from .._tolerance import tree_dtype
from .._trees import tree_all_finite
from ..problem import euclidean_norm
from ._base import AbstractFastSolver


def check_steps(steps) -> int:
    """``steps`` as a positive Python int, or a clear ValueError."""
    if hasattr(steps, "item") and not isinstance(steps, bool):
        steps = steps.item() if getattr(steps, "ndim", 0) == 0 else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int (the number of Euler steps), got {steps!r}")
    return steps


def horizon(steps, max_steps=None):
    """(steps as an int array, static bound): a horizon that sweeps without recompiling."""
    steps = check_steps(steps)
    bound = steps if max_steps is None else check_steps(max_steps)
    if steps > bound:
        raise ValueError(f"steps ({steps}) exceeds max_steps ({bound})")
    return jnp.asarray(steps), bound


def _scaled_term(field, params, x, dt):
    # Time in units of steps: dz/ds = ε F(z), one Euler step of size 1 per relaxation step.
    return diffrax.ODETerm(
        lambda s, z, args: jax.tree.map(lambda u: u * jnp.asarray(dt).astype(u.dtype),
                                        field(z, params, x))
    )


def _euler(field, z0, params, x, steps, dt, max_steps, adjoint, saveat):
    # Time in the state's own precision: a float64 time would promote a float32
    # state at the first step (step counts are exact in float32 up to 2**24).
    time_dtype = tree_dtype(z0)
    return diffrax.diffeqsolve(
        _scaled_term(field, params, x, dt),
        diffrax.Euler(),
        t0=jnp.zeros((), time_dtype),
        t1=jnp.asarray(steps).astype(time_dtype),
        dt0=1.0,
        y0=z0,
        saveat=saveat,
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=max_steps,
        adjoint=adjoint,
    )


class Relaxation(AbstractFastSolver):
    """``steps`` explicit-Euler steps of size ``dt`` (see the module docstring).

    Attributes:
        steps: the horizon T (an int array; sweepable under one compilation).
        dt: the step size ε.
        max_steps: static bound on ``steps`` (default: ``steps``).
        adjoint: how diffrax differentiates the loop. Default: exact reverse mode
            that keeps every step's state (``RecursiveCheckpointAdjoint`` with
            ``checkpoints = max_steps``): memory O(T dim z) and no recomputation.
            On benchmarks/bench_implicit_vs_bptt.py (64 × 128, T = 150) BPTT took
            40 ms with it against 53 ms with diffrax's default (about log T
            checkpoints, recomputing the rest), and 35 ms as a raw ``lax.fori_loop``.
            ``diffrax.RecursiveCheckpointAdjoint()`` trades that time for memory;
            ``diffrax.ForwardMode()`` is forward mode.
    """

    steps: jax.Array
    dt: jax.Array
    max_steps: int = eqx.field(static=True)
    # static: its checkpoint count decides the loop's structure (and passes jax.jit)
    adjoint: diffrax.AbstractAdjoint = eqx.field(static=True)

    def __init__(self, steps, dt, *, max_steps=None, adjoint=None):
        self.steps, self.max_steps = horizon(steps, max_steps)
        self.dt = jnp.asarray(dt)
        if adjoint is None:
            adjoint = diffrax.RecursiveCheckpointAdjoint(checkpoints=self.max_steps)
        self.adjoint = adjoint

    def final_state(self, field, z0, params, x):
        """z_T alone (what reverse or forward mode differentiates)."""
        sol = _euler(field, z0, params, x, self.steps, self.dt, self.max_steps, self.adjoint,
                     diffrax.SaveAt(t1=True))
        return jax.tree.map(lambda u: u[-1], sol.ys)

    def solve(self, field, z0, params, x, norm=euclidean_norm):
        z = self.final_state(field, z0, params, x)
        result = RESULTS.where(tree_all_finite(z), RESULTS.successful, RESULTS.nonfinite)
        info = {"residual": norm(z, field(z, params, x)), "matvecs": self.steps + 1,
                "result": result}
        return z, info


def relax(field, z0, params, x, *, steps, dt, max_steps=None, adjoint=None, **steady):
    """z_T after ``steps`` Euler steps of size ``dt`` of dz/dt = field(z, params, x).

    Args:
        field: ``field(z, params, x) -> dz/dt`` over pytrees.
        z0, params, x: the initial state, parameters and input (``x`` may be None).
        steps: the number of Euler steps T, or ``None`` for an adaptive solve to a
            steady state (:class:`flowsim.SteadyState`; keyword options ``**steady``
            go to it, ``dt`` is its first step).
        dt: the step size ε.
        max_steps: a static bound on ``steps``, so that different horizons share one
            compilation (for ``steps=None``, diffrax's bound on the adaptive steps).
        adjoint: a diffrax adjoint (default: reverse mode with checkpointing).

    Returns:
        z_T for a number of steps. For ``steps=None``, ``(z, info)``: a steady
        state can fail to be reached, and ``info["result"]`` says so.
    """
    if steps is None:
        from .steady_state import SteadyState

        if max_steps is not None:
            steady["max_steps"] = max_steps
        return SteadyState(dt0=dt, **steady).solve(field, z0, params, x)
    if steady:
        raise TypeError(f"relax with a number of steps takes no {', '.join(steady)}")
    return Relaxation(steps, dt, max_steps=max_steps, adjoint=adjoint).final_state(
        field, z0, params, x)


def relax_trajectory(field, z0, params, x, *, steps, dt):
    """All states z_0, …, z_T of the Euler relaxation (leading axis of length T+1)."""
    steps = check_steps(steps)
    sol = _euler(field, z0, params, x, steps, dt, steps, diffrax.RecursiveCheckpointAdjoint(),
                 diffrax.SaveAt(ts=jnp.arange(steps + 1, dtype=tree_dtype(z0))))
    return sol.ys


__all__ = ["Relaxation", "relax", "relax_trajectory", "horizon", "check_steps"]
