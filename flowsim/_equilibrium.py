r"""The equilibrium z* with F(z*) = 0, matrix-free.

A relaxation of ``relax_steps`` Euler steps brings the state into the basin;
optimistix ``Newton`` then solves F(z) = 0 with a lineax ``GMRES`` inner solve
on the linearisation z ↦ F_z v (``jax.linearize``: F_z is never materialised,
so memory is O(dim z) and a 20,000-dimensional state is cheap).

Newton has no globalisation: started too far from z* it can wander without
converging even where the flow itself contracts to z*. If it fails, the
relaxation goes on for ``retry_relax_steps`` more Euler steps and Newton starts
again from there, up to ``retries`` times. The flow is the globalisation: z*
is the equilibrium the dynamics relaxes to. Measured case (the character
model's EP run of ``ep-wall`` at training step 999, 64 × 128 states): from 150
relaxation steps Newton wandered at ‖F‖ ≈ 0.08 for 200 iterations; from 300 it
took 27 iterations; from 1,000, 2 — while ρ(I + dt F_z) at z* was 0.975.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx

from ._relax import relax
from ._results import RESULTS
from ._trees import tree_all_finite, tree_norm


class EquilibriumSolver(eqx.Module):
    """Options of :func:`equilibrium`.

    Attributes:
        relax_steps: Euler steps of size ``dt`` taken before Newton (0 for none).
        dt: the relaxation step size.
        rtol, atol: Newton's tolerances (Cauchy termination on the state and on F).
        max_steps: maximum Newton iterations.
        residual_tol: the solve counts as successful only if ‖F(z*)‖₂ ≤ residual_tol.
        retries: how many times a failed Newton solve is restarted after
            ``retry_relax_steps`` more Euler steps of the relaxation (0: never).
        gmres_rtol, gmres_restart, gmres_max_steps: the inner GMRES solve of each
            Newton step. Inexact Newton: a loose inner tolerance costs an extra
            Newton step at most, and the final residual is checked against
            ``residual_tol`` whatever it is. On benchmarks/bench_implicit_vs_bptt.py
            (64×128 asymmetric tanh, T = 150) the oracle took 47.5 ms with rtol 1e-3
            and restart 20, against 110 ms with rtol 1e-4 and restart 50: same z*,
            same 3 Newton steps.
    """

    relax_steps: int = 100
    dt: float = 0.1
    rtol: float = 1e-10
    atol: float = 1e-10
    max_steps: int = 50
    residual_tol: float = 1e-8
    gmres_rtol: float = 1e-3
    gmres_restart: int = 20
    gmres_max_steps: int = 2000
    retries: int = 3
    retry_relax_steps: int = 500


def equilibrium(field, z0, params, x, solver: EquilibriumSolver = EquilibriumSolver()):
    """Solve F(z*; params, x) = 0 starting from a relaxation of ``z0``.

    Returns:
        ``(z_star, info)``: ``info["residual"]`` is ‖F(z*)‖₂, ``info["newton_steps"]``
        the Newton iterations over all attempts, ``info["retries"]`` the restarts,
        ``info["result"]`` a :class:`flowsim.RESULTS` code (``equilibrium_failed``
        if the last Newton attempt failed or its residual is above
        ``solver.residual_tol``; ``nonfinite`` if the relaxation diverged).
    """
    z = z0
    if solver.relax_steps > 0:
        z = relax(field, z0, params, x, steps=solver.relax_steps, dt=solver.dt)
    linear_solver = lx.GMRES(
        rtol=solver.gmres_rtol,
        atol=solver.gmres_rtol,
        restart=solver.gmres_restart,
        max_steps=solver.gmres_max_steps,
    )
    newton = optx.Newton(rtol=solver.rtol, atol=solver.atol, linear_solver=linear_solver)

    def attempt(z_start):
        sol = optx.root_find(
            lambda z, args: field(z, params, x),
            newton,
            z_start,
            max_steps=solver.max_steps,
            throw=False,
        )
        residual = tree_norm(field(sol.value, params, x))
        ok = (sol.result == optx.RESULTS.successful) & (residual <= solver.residual_tol)
        return sol.value, residual, ok, jnp.asarray(sol.stats["num_steps"], jnp.int32)

    def retry(carry):
        z_start, _, _, _, newton_steps, k = carry
        z_start = relax(field, z_start, params, x, steps=solver.retry_relax_steps, dt=solver.dt)
        z_star, residual, ok, n = attempt(z_start)
        return z_start, z_star, residual, ok, newton_steps + n, k + 1

    def failed(carry):
        *_, ok, _, k = carry
        return ~ok & (k < solver.retries)

    z_star, residual, ok, n = attempt(z)
    carry = (z, z_star, residual, ok, n, jnp.asarray(0, jnp.int32))
    if solver.retries > 0:
        carry = jax.lax.while_loop(failed, retry, carry)
    z_start, z_star, residual, ok, newton_steps, retries = carry
    result = RESULTS.where(ok, RESULTS.successful, RESULTS.equilibrium_failed)
    # nonfinite: the dynamics diverged. Newton's own blow-up is a failed solve.
    result = RESULTS.where(tree_all_finite(z_start), result, RESULTS.nonfinite)
    info = {
        "residual": residual,
        "newton_steps": newton_steps,
        "retries": retries,
        "result": result,
    }
    return z_star, info


__all__ = ["EquilibriumSolver", "equilibrium"]
