r"""The oracle: the exact gradient of L(z*(θ)) by the implicit function theorem.

At the equilibrium F(z*, θ) = 0,

    F_z(z*)ᵀ λ = −∂L/∂z(z*),        dL(z*)/dθ = ∂L/∂θ + F_θ(z*)ᵀ λ.

The adjoint system is solved matrix-free on ``JacobianLinearOperator(F, z*).T``
(a VJP per product), per sample for a batched problem (F is block diagonal
over samples, so λ_i solves its own system, with its own tolerance), by
``lineax.BiCGStab``; where it fails, ``lineax.GMRES`` solves again
(:mod:`flowsim.solvers.krylov`). The relative tolerance
defaults to ε^{2/3} of the state's dtype (float64: 3.7e-11, float32: 2.4e-5).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from .._results import RESULTS
from .._tolerance import linear_tolerance, tree_dtype
from .._trees import tree_add, tree_where
from ..solvers import EquilibriumSolver
from ..solvers.krylov import bicgstab, gmres, krylov_solve
from ._base import AbstractRule, fast_phase, finish, loss_gradients, vjp_params


class Implicit(AbstractRule):
    """Exact equilibrium gradient (see the module docstring).

    Attributes:
        equilibrium: the fast solver that finds z* (default :class:`EquilibriumSolver`).
        rtol: relative tolerance of the adjoint solve (default ε^{2/3}).
        linear_solver: the lineax Krylov template of the adjoint solve (BiCGStab).
        fallback: the template that solves again the samples where it failed
            (GMRES, restart 20); None for none.
    """

    equilibrium: EquilibriumSolver = EquilibriumSolver()
    rtol: float | None = None
    # Templates: static, so the rule passes through jax.jit (lineax solvers hold a norm).
    linear_solver: lx.AbstractLinearSolver = eqx.field(static=True, default=bicgstab())
    fallback: lx.AbstractLinearSolver | None = eqx.field(static=True, default=gmres())

    def estimate(self, problem, z0, params, x, y, key):
        del key
        phase = fast_phase(self.equilibrium, problem, z0, params, x)
        loss, dldz, dldtheta = loss_gradients(problem, phase.z, params, y, phase.weights)
        rtol = linear_tolerance(tree_dtype(phase.z)) if self.rtol is None else self.rtol
        rhs = jax.tree.map(jnp.negative, dldz)

        def adjoint(z, p, u, b):
            operator = lx.JacobianLinearOperator(lambda v, args: problem.field(v, p, u), z).T
            return krylov_solve(self.linear_solver, operator, b, rtol, self.fallback)

        if problem.batched:
            adjoint = jax.vmap(adjoint, in_axes=(0, problem.params_axes, 0, 0))
        lam, linear_ok, products = adjoint(phase.z, params, x, rhs)
        ok = phase.summary["ok"]
        lam = tree_where(ok, lam, jax.tree.map(jnp.zeros_like, lam))
        grads = tree_add(vjp_params(problem, phase.z, params, x, lam), dldtheta)
        # Only the converged samples' adjoints count (the others have weight 0).
        result = RESULTS.where(jnp.any(ok & ~linear_ok), RESULTS.linear_solve_failed,
                               phase.summary["result"])
        matvecs = phase.summary["matvecs"] + jnp.sum(products) + 1
        return finish(grads, phase, loss, phase.summary["residual"], matvecs, result)
