r"""The projected gradient flow η̇ = −∇𝓕(η) on [0, 1]ⁿ, as a diffrax ODE.

On the box the flow is the projection of −∇𝓕 onto the tangent cone:

    η̇_i = 0        where η_i = 0 and −∂_i𝓕 < 0, or η_i = 1 and −∂_i𝓕 > 0,
    η̇_i = −∂_i𝓕   otherwise,

so d𝓕/dt = −‖η̇‖² ≤ 0 and a module that reaches a bound stays there until
the force on it turns inward. Two pieces make a Runge–Kutta solve respect
it: the field (:func:`tangent_field`) reads the state through clip(η, 0, 1)
and zeroes the outward components there, and :class:`ProjectedSolver` wraps
the solver so that every accepted step ends with clip(η₁, 0, 1) (the
projected Runge–Kutta step; the wrapped solver's error estimate drives the
step size, and rejects the steps that straddle a kink where a bound
becomes active). The states saved are in the box exactly.

With one explicit Euler step of size s per step the same scheme is the
discrete projected gradient η ← clip(η − s∇𝓕, 0, 1) of
:mod:`flowsim.coordinator.relax`; the two agree as s → 0 (tests).
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._results import RESULTS
from .system import check_state


def tangent_field(energy):
    """The vector field (t, η, args) ↦ the tangent-cone projection of −∇𝓕 at clip(η, 0, 1)."""

    def field(t, eta, args):
        del t, args
        x = jnp.clip(eta, 0.0, 1.0)
        v = -jax.grad(energy)(x)
        outward = ((x <= 0.0) & (v < 0.0)) | ((x >= 1.0) & (v > 0.0))
        return jnp.where(outward, 0.0, v)

    return field


class ProjectedSolver(diffrax.AbstractAdaptiveSolver, diffrax.AbstractWrappedSolver):
    """Wraps a diffrax solver so that every step ends in the box: y₁ ← clip(y₁, 0, 1)."""

    solver: diffrax.AbstractSolver

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):
        return self.solver.interpolation_cls

    def order(self, terms):
        return self.solver.order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def init(self, terms, t0, t1, y0, args):
        return self.solver.init(terms, t0, t1, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        y1, error, dense, state, result = self.solver.step(terms, t0, t1, y0, args,
                                                           solver_state, made_jump)
        return jnp.clip(y1, 0.0, 1.0), error, dense, state, result

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)


class ProjectedGradientFlow(eqx.Module):
    """Options of :func:`flow`: the wrapped solver and its adaptive step control."""

    solver: diffrax.AbstractSolver = diffrax.Tsit5()
    rtol: float = 1e-8
    atol: float = 1e-10
    dt0: float | None = None
    max_steps: int = eqx.field(static=True, default=100_000)


class FlowSolution(eqx.Module):
    """The flow at the saved times: ``ts``, states ``eta`` (T, n), ``energies`` (T,), ``result``."""

    ts: jax.Array
    eta: jax.Array
    energies: jax.Array
    result: RESULTS


@eqx.filter_jit
def _flow(energy, eta0, ts, options):
    controller = diffrax.PIDController(rtol=options.rtol, atol=options.atol)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(tangent_field(energy)), ProjectedSolver(options.solver), ts[0], ts[-1],
        options.dt0, eta0, saveat=diffrax.SaveAt(ts=ts), stepsize_controller=controller,
        max_steps=options.max_steps, throw=False)
    # diffrax's interpolation between steps is unclipped; the saved states are
    # read through the same projection the field uses.
    eta = jnp.clip(sol.ys, 0.0, 1.0)
    result = RESULTS.where(sol.result == diffrax.RESULTS.successful, RESULTS.successful,
                           RESULTS.max_steps_reached)
    return FlowSolution(ts=ts, eta=eta, energies=jax.vmap(energy)(eta), result=result)


def flow(energy, eta0, ts, options: ProjectedGradientFlow = ProjectedGradientFlow()):
    """Solve the projected gradient flow of ``energy`` from ``eta0``, saved at times ``ts``.

    ``ts[0]`` is the start; returns a :class:`FlowSolution`. Raises ValueError
    (one line) for η₀ outside [0, 1] or a coordinator with a bad entry.
    """
    eta0 = jnp.asarray(eta0)
    if not jnp.issubdtype(eta0.dtype, jnp.floating):
        eta0 = eta0.astype(float)
    check_state(eta0, getattr(energy, "n", None))
    if hasattr(energy, "check"):
        energy.check()
    return _flow(energy, eta0, jnp.asarray(ts, eta0.dtype), options)


__all__ = ["tangent_field", "ProjectedSolver", "ProjectedGradientFlow", "FlowSolution", "flow"]
