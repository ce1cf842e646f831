r"""The oracle: the exact gradient of L(z*(θ)) by the implicit function theorem.

At the equilibrium F(z*, θ) = 0,

    F_z(z*)ᵀ λ = −∂L/∂z(z*),        dL(z*)/dθ = ∂L/∂θ + F_θ(z*)ᵀ λ.

The adjoint system is solved by ``lineax.GMRES`` on the matrix-free transpose
``JacobianLinearOperator(F, z*).T`` (a VJP per iteration), per sample for a
batched problem (F is block diagonal over samples, so λ_i solves its own
system, with its own tolerance). The GMRES tolerance defaults to ε^{2/3} of
the state's dtype (float64: 3.7e-11, float32: 2.4e-5).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from .._results import RESULTS
from .._tolerance import linear_tolerance, tree_dtype
from .._trees import tree_add, tree_where
from ..solvers import EquilibriumSolver
from ..solvers.newton_krylov import gmres_matvecs
from ._base import AbstractRule, fast_phase, finish, loss_gradients, vjp_params


def adjoint_solve(field, z_star, params, x, rhs, rtol, restart, max_steps):
    """λ with F_z(z*)ᵀ λ = rhs for one system; ``(λ, ok, GMRES cycles)``."""
    operator = lx.JacobianLinearOperator(lambda z, args: field(z, params, x), z_star).T
    dtype = tree_dtype(z_star)
    rtol = linear_tolerance(dtype) if rtol is None else rtol
    # lineax tests |r_j| ≤ atol + rtol |b_j| entry by entry: an atol on the scale of
    # the largest entry keeps entries where the right-hand side is 0 from stalling it.
    scale = jnp.max(jnp.asarray([jnp.max(jnp.abs(u)) for u in jax.tree.leaves(rhs)]))
    atol = jnp.maximum(rtol * scale, jnp.finfo(dtype).tiny)
    solver = lx.GMRES(rtol=rtol, atol=atol, max_steps=max_steps, restart=restart)
    sol = lx.linear_solve(operator, rhs, solver, throw=False)
    return sol.value, sol.result == lx.RESULTS.successful, sol.stats["num_steps"]


class Implicit(AbstractRule):
    """Exact equilibrium gradient (GMRES on the transposed Jacobian).

    Attributes:
        equilibrium: the fast solver that finds z* (default :class:`EquilibriumSolver`).
        rtol: GMRES relative tolerance on the adjoint residual (default ε^{2/3}).
        restart: GMRES restart length (Krylov vectors per cycle).
        max_steps: GMRES restart cycles; reaching the bound is a failure, not an answer.
    """

    equilibrium: EquilibriumSolver = EquilibriumSolver()
    rtol: float | None = None
    restart: int = eqx.field(static=True, default=20)
    max_steps: int = eqx.field(static=True, default=100)

    def estimate(self, problem, z0, params, x, y, key):
        del key
        phase = fast_phase(self.equilibrium, problem, z0, params, x)
        loss, dldz, dldtheta = loss_gradients(problem, phase.z, params, y, phase.weights)
        rhs = jax.tree.map(jnp.negative, dldz)
        solve = lambda z, p, u, b: adjoint_solve(problem.field, z, p, u, b, self.rtol,
                                                 self.restart, self.max_steps)
        if problem.batched:
            solve = jax.vmap(solve, in_axes=(0, problem.params_axes, 0, 0))
        lam, linear_ok, cycles = solve(phase.z, params, x, rhs)
        ok = phase.summary["ok"]
        lam = tree_where(ok, lam, jax.tree.map(jnp.zeros_like, lam))
        grads = tree_add(vjp_params(problem, phase.z, params, x, lam), dldtheta)
        # The adjoint of a sample whose equilibrium failed is not needed: only the
        # converged samples' adjoint solves count.
        result = RESULTS.where(jnp.any(ok & ~linear_ok), RESULTS.linear_solve_failed,
                               phase.summary["result"])
        matvecs = phase.summary["matvecs"] + jnp.sum(gmres_matvecs(cycles, self.restart)) + 1
        return finish(grads, phase, loss, phase.summary["residual"], matvecs, result)
