r"""The oracle: the exact gradient of L(z*(θ)) by the implicit function theorem.

At the equilibrium F(z*, θ) = 0,

    F_z(z*)ᵀ λ = −∂L/∂z(z*),        dL(z*)/dθ = ∂L/∂θ + F_θ(z*)ᵀ λ.

The adjoint system is solved by ``lineax.GMRES`` on the matrix-free transpose
``JacobianLinearOperator(F, z*).T`` (a VJP per iteration). Run it in float64:
float32 GMRES breaks down at tight tolerances.
"""

import jax
import lineax as lx

from .._equilibrium import EquilibriumSolver, equilibrium
from .._fields import loss_gradients
from .._results import RESULTS
from .._trees import tree_add, tree_norm
from ._base import AbstractEstimator, finish, vjp_params, vjp_state


class Implicit(AbstractEstimator):
    """Exact equilibrium gradient (GMRES on the transposed Jacobian).

    Attributes:
        rtol, atol: GMRES tolerances on the adjoint residual.
        max_steps: GMRES iteration cap; reaching it is a failure, not an answer.
        restart: GMRES restart length (Krylov dimension between restarts).
        equilibrium: options of the equilibrium solve.
    """

    rtol: float = 1e-10
    atol: float = 1e-12
    max_steps: int = 2000
    restart: int = 20
    equilibrium: EquilibriumSolver = EquilibriumSolver()

    def estimate(self, field, loss, params, z0, x, y):
        z_star, eq_info = equilibrium(field, z0, params, x, self.equilibrium)
        dldz, dldtheta = loss_gradients(loss, z_star, params, y)
        operator = lx.JacobianLinearOperator(lambda z, args: field(z, params, x), z_star).T
        solver = lx.GMRES(rtol=self.rtol, atol=self.atol, max_steps=self.max_steps,
                          restart=self.restart)
        rhs = jax.tree.map(lambda g: -g, dldz)
        sol = lx.linear_solve(operator, rhs, solver, throw=False)
        lam = sol.value
        adjoint_residual = tree_norm(tree_add(vjp_state(field, z_star, params, x)(lam), dldz))
        grads = tree_add(vjp_params(field, z_star, params, x, lam), dldtheta)
        linear_ok = sol.result == lx.RESULTS.successful
        result = RESULTS.where(linear_ok, RESULTS.successful, RESULTS.linear_solve_failed)
        result = RESULTS.where(eq_info["result"] == RESULTS.successful, result,
                               eq_info["result"])
        info = {
            "loss": loss(z_star, params, y),
            "residual": eq_info["residual"],
            "newton_steps": eq_info["newton_steps"],
            "gmres_steps": sol.stats["num_steps"],
            "adjoint_residual": adjoint_residual / tree_norm(dldz),
        }
        return finish(grads, result, info)
