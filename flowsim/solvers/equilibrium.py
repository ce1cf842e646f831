r"""The equilibrium z* with F(z*) = 0, matrix-free.

A warm start (by default ``relax_steps`` Euler steps of ``dt``) brings the
state into the basin; an inexact Newton–Krylov solve
(:class:`~flowsim.solvers.newton_krylov.NewtonKrylov`, driven by
``optimistix.root_find``) then solves F(z) = 0 to ‖F(z*)‖ ≤ atol + rtol‖z_N‖
(z_N where Newton starts), with F_z applied by JVPs only (memory O(dim z)).

Newton has no globalisation: started too far from z* it can wander without
converging even where the flow itself contracts to z*. If it fails, the
relaxation goes on for ``retry_relax_steps`` more Euler steps from where the
last attempt started, and Newton starts again, up to ``retries`` times. The
flow is the globalisation: z* is the equilibrium the dynamics relaxes to.
Measured case (the character model's EP run of ``ep-wall`` at training step
999, 64 × 128 states, solved as one system): from 150 relaxation steps
Newton wandered at ‖F‖ ≈ 0.08 for 200 iterations; from 300 it took 27
iterations; from 1,000, 2, while ρ(I + dt F_z) at z* was 0.975.

Newton converges to repelling and saddle roots as readily as to attracting
ones. After a successful solve the stability of z* under the relaxation is
tested (:mod:`flowsim.diagnostics.stability`: ρ(I + dt F_z) < 1 for the Euler
relaxation of step ``dt``, or max Re λ(F_z) < 0 for the flow; a few Arnoldi
steps); a z* that fails it is ``unstable_equilibrium``, with the margin in
``info["stability"]``. ``stability="ignore"`` accepts any root (e.g. to take
the oracle's L(z*) at an unstable z* on purpose).

Solve a batch per sample (:func:`flowsim.solve` with a batched
:class:`flowsim.Problem`): one tolerance on the norm of a whole batch, and one
Krylov space for all of it, let one slow sample fail every sample.
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx

from .._results import RESULTS
from .._trees import tree_all_finite
from ..diagnostics.stability import (
    CRITERIA,
    is_stable,
    jacobian_eigenvalues,
    jacobian_products,
    stability_margin,
)
from ..problem import euclidean_norm
from ._base import AbstractFastSolver
from .krylov import bicgstab
from .newton_krylov import NewtonKrylov
from .relaxation import Relaxation


class EquilibriumSolver(AbstractFastSolver):
    """Options of :func:`equilibrium` (see the module docstring).

    Args:
        relax_steps: Euler steps of size ``dt`` before Newton (0: Newton from z0).
        dt: the relaxation step size.
        retries: how many times a failed Newton solve is restarted after
            ``retry_relax_steps`` more Euler steps (0: never).
        newton_max_steps: Newton iterations per attempt.
        rtol, atol: the residual test ‖F(z*)‖ ≤ atol + rtol‖z_N‖, z_N where Newton
            starts (default ε^{3/4}).
        forcing: the loosest relative tolerance of Newton's inner linear solve.
        linear_solver: that solve's lineax Krylov template (default BiCGStab).
        warm_start: any fast solver to start Newton from instead of the
            relaxation (e.g. a natural-gradient flow to a steady state).
        stability: the test z* must pass: "euler" (ρ(I + dt F_z) < 1, the
            relaxation of step ``dt``), "flow" (max Re λ(F_z) < 0), or "ignore".
        stability_steps: Arnoldi steps of that test (states of dimension ≤ 64
            use every eigenvalue).
    """

    warm_start: AbstractFastSolver | None
    retry: Relaxation
    retries: int = eqx.field(static=True)
    newton: NewtonKrylov
    newton_max_steps: int = eqx.field(static=True)
    stability: str = eqx.field(static=True)
    stability_steps: int = eqx.field(static=True)

    def __init__(self, relax_steps=100, dt=0.1, *, retries=3, retry_relax_steps=500,
                 newton_max_steps=50, rtol=None, atol=None, forcing=0.1, linear_solver=None,
                 warm_start=None, stability="euler", stability_steps=8):
        if stability not in CRITERIA + ("ignore",):
            raise ValueError(f"stability must be one of {CRITERIA + ('ignore',)}, got {stability!r}")
        self.stability, self.stability_steps = stability, stability_steps
        if warm_start is None and relax_steps:
            warm_start = Relaxation(relax_steps, dt)
        self.warm_start = warm_start
        self.retry = Relaxation(retry_relax_steps, dt)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        self.retries = retries
        self.newton = NewtonKrylov(rtol=rtol, atol=atol, forcing=forcing,
                                   linear_solver=bicgstab() if linear_solver is None else linear_solver)
        self.newton_max_steps = newton_max_steps

    def solve(self, field, z0, params, x, norm=euclidean_norm):
        """``(z*, info)``; ``info`` adds ``newton_steps`` and ``retries`` to the common keys.

        ``result`` is ``equilibrium_failed`` when the last Newton attempt failed,
        ``nonfinite`` when the relaxation itself diverged.
        """
        start, matvecs = z0, jnp.asarray(0)
        if self.warm_start is not None:
            start, warm = self.warm_start.solve(field, z0, params, x, norm)
            matvecs = matvecs + warm["matvecs"]
        newton = dataclasses.replace(self.newton, norm=norm)

        def attempt(z_start):
            sol = optx.root_find(lambda z, args: field(z, params, x), newton, z_start,
                                 max_steps=self.newton_max_steps, throw=False)
            ok = sol.result == optx.RESULTS.successful
            return (sol.value, sol.stats["residual"], ok, sol.stats["num_steps"],
                    sol.stats["matvecs"])

        def retry(carry):
            z_start, _, _, _, steps, count, k = carry
            z_start, more = self.retry.solve(field, z_start, params, x, norm)
            z, residual, ok, n, m = attempt(z_start)
            return z_start, z, residual, ok, steps + n, count + more["matvecs"] + m, k + 1

        def failed(carry):
            ok, k = carry[3], carry[6]
            return ~ok & (k < self.retries)

        z, residual, ok, n, m = attempt(start)
        carry = (start, z, residual, ok, jnp.asarray(n), matvecs + m, jnp.asarray(0))
        if self.retries > 0:
            carry = jax.lax.while_loop(failed, retry, carry)
        start, z, residual, ok, newton_steps, matvecs, retries = carry
        result = RESULTS.where(ok, RESULTS.successful, RESULTS.equilibrium_failed)
        # nonfinite: the dynamics diverged. Newton's own blow-up is a failed solve.
        result = RESULTS.where(tree_all_finite(start), result, RESULTS.nonfinite)
        margin = jnp.asarray(jnp.nan, residual.dtype)
        if self.stability != "ignore":
            eigenvalues = jacobian_eigenvalues(field, z, params, x, steps=self.stability_steps)
            margin = stability_margin(eigenvalues, self.stability, self.retry.dt).astype(
                residual.dtype)
            unstable = (result == RESULTS.successful) & ~is_stable(margin, self.stability)
            result = RESULTS.where(unstable, RESULTS.unstable_equilibrium, result)
            size = sum(leaf.size for leaf in jax.tree.leaves(z))
            matvecs = matvecs + jacobian_products(size, steps=self.stability_steps)
        info = {"residual": residual, "matvecs": matvecs, "result": result,
                "newton_steps": newton_steps, "retries": retries, "stability": margin}
        return z, info


def equilibrium(field, z0, params, x, solver: EquilibriumSolver = EquilibriumSolver()):
    """Solve F(z*; params, x) = 0 from ``z0``: ``(z_star, info)`` (see :class:`EquilibriumSolver`).

    ``info["residual"]`` is ‖F(z*)‖₂, ``info["newton_steps"]`` the Newton
    iterations over all attempts, ``info["retries"]`` the restarts,
    ``info["matvecs"]`` the products with F and F_z, ``info["result"]`` a
    :class:`flowsim.RESULTS` code. The whole of ``z0`` is one system; for a
    batch solved per sample, use :func:`flowsim.solve` with a batched problem.
    """
    return solver.solve(field, z0, params, x)


__all__ = ["EquilibriumSolver", "equilibrium"]
