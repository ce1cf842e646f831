r"""The deployed computation: a finite relaxation of dz/dt = F(z).

``relax(field, z0, params, x, steps=T, dt=ε)`` returns z_T of the map

    z_{t+1} = Φ(z_t) = z_t + ε F(z_t),     t = 0, …, T−1,

i.e. T explicit-Euler steps, solved by diffrax. Time is measured in steps
(s = t/ε, ds = 1), so that the step count is exact in floating point and the
vector field is ε F. With ``steps=None`` it is an adaptive solve to a steady
state instead, stopped by ``diffrax.steady_state_event`` on ‖F(z)‖.
"""

import diffrax
import jax
import jax.numpy as jnp

from ._results import RESULTS
from ._trees import tree_all_finite


def _scaled_term(field, params, x, dt):
    # Time in units of steps: dz/ds = ε F(z), one Euler step of size 1 per relaxation step.
    return diffrax.ODETerm(
        lambda s, z, args: jax.tree.map(lambda u: u * jnp.asarray(dt).astype(u.dtype),
                                        field(z, params, x))
    )


def relax(field, z0, params, x, *, steps, dt, adjoint=None, max_steps=None, t_final=1e4,
          rtol=1e-8, atol=1e-10):
    """z_T after ``steps`` Euler steps of size ``dt`` of dz/dt = field(z, params, x).

    Args:
        field: ``field(z, params, x) -> dz/dt`` over pytrees.
        z0, params, x: the initial state, parameters and input (``x`` may be None).
        steps: number of explicit-Euler steps T (a Python int), or ``None`` for an
            adaptive (Tsit5) solve until ‖F(z)‖ ≤ atol + rtol‖z‖ or ``t_final``.
        dt: the step size ε (for ``steps=None``, the initial step).
        adjoint: a diffrax adjoint. Default: exact reverse mode through every step
            (``RecursiveCheckpointAdjoint``); use ``diffrax.ForwardMode()`` for
            forward-mode differentiation.
        max_steps: a static bound on ``steps``. Give it to pass ``steps`` as a traced
            integer, so that one compilation serves every horizon up to the bound.
            For ``steps=None``, the adaptive solver's step cap (default 100,000).

    Returns:
        z_T, a pytree like ``z0``. For ``steps=None`` use :func:`relax_to_steady_state`
        to also get the result code.
    """
    if steps is None:
        z, _ = relax_to_steady_state(field, z0, params, x, dt=dt, t_final=t_final,
                                     rtol=rtol, atol=atol,
                                     max_steps=100_000 if max_steps is None else max_steps)
        return z
    if max_steps is None:
        steps = max_steps = check_steps(steps)
    adjoint = diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint
    solution = diffrax.diffeqsolve(
        _scaled_term(field, params, x, dt),
        diffrax.Euler(),
        t0=0.0,
        t1=jnp.asarray(steps, dtype=float),
        dt0=1.0,
        y0=z0,
        saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=diffrax.ConstantStepSize(),
        max_steps=max_steps,
        adjoint=adjoint,
    )
    return _final(solution.ys)


def relax_trajectory(field, z0, params, x, *, steps, dt):
    """All states z_0, …, z_T of the Euler relaxation (leading axis of length T+1)."""
    steps = check_steps(steps)
    solution = diffrax.diffeqsolve(
        _scaled_term(field, params, x, dt),
        diffrax.Euler(),
        t0=0.0,
        t1=float(steps),
        dt0=1.0,
        y0=z0,
        saveat=diffrax.SaveAt(ts=jnp.arange(steps + 1, dtype=float)),
        max_steps=steps,
    )
    return solution.ys


def relax_to_steady_state(field, z0, params, x, *, dt=0.1, t_final=1e4, rtol=1e-8,
                          atol=1e-10, max_steps=100_000):
    """Adaptive solve of dz/dt = F(z) until the vector field is small.

    The stopping test is on ‖F(z)‖ (diffrax's ``steady_state_event`` looks at the
    vector field, not at the change of the state). Returns ``(z, result)`` where
    ``result`` is ``RESULTS.successful`` if the event fired with a finite state.
    """
    term = diffrax.ODETerm(lambda t, z, args: field(z, params, x))
    solution = diffrax.diffeqsolve(
        term,
        diffrax.Tsit5(),
        t0=0.0,
        t1=t_final,
        dt0=dt,
        y0=z0,
        saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        event=diffrax.Event(diffrax.steady_state_event(rtol=rtol, atol=atol)),
        max_steps=max_steps,
        throw=False,
    )
    z = _final(solution.ys)
    stopped = solution.event_mask is not None and solution.event_mask
    result = RESULTS.where(
        jnp.asarray(stopped), RESULTS.successful, RESULTS.max_steps_reached
    )
    result = RESULTS.where(tree_all_finite(z), result, RESULTS.nonfinite)
    return z, result


def _final(ys):
    return jax.tree.map(lambda u: u[-1], ys)


def check_steps(steps):
    """``steps`` as a positive Python int, or a clear ValueError."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int (the number of Euler steps), got {steps!r}")
    return steps


def horizon(steps, max_steps=None):
    """(steps as a traced-able int array, static bound) for an estimator's fields.

    Estimators keep their horizon as an array so that sweeping it does not
    recompile; ``max_steps`` (default: ``steps``) is the static loop bound.
    """
    steps = check_steps(int(steps) if hasattr(steps, "item") else steps)
    bound = steps if max_steps is None else check_steps(max_steps)
    if steps > bound:
        raise ValueError(f"steps ({steps}) exceeds max_steps ({bound})")
    return jnp.asarray(steps), bound


__all__ = ["relax", "relax_trajectory", "relax_to_steady_state"]
