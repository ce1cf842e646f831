r"""Recurrent backpropagation: the adjoint ODE at the equilibrium, for a finite time.

    dλ/dt = F_z(z*)ᵀ λ + ∂L/∂z(z*),     λ(0) = 0,

run for ``steps`` Euler steps of ``dt`` (diffrax). When F_z(z*) is stable,
λ(t) → −F_z^{-T} ∂L/∂z, the oracle's adjoint, so RBP → Implicit as t → ∞.
The estimate is ∂L/∂θ + F_θᵀ λ(T).
"""

import jax

from .._trees import tree_add
from ..solvers import EquilibriumSolver, Relaxation
from ._base import (
    AbstractHorizonRule,
    fast_phase,
    finish,
    loss_gradients,
    vjp_params,
    vjp_state,
)


class RBP(AbstractHorizonRule):
    """Finite-time adjoint ODE at z* (Almeida–Pineda recurrent backprop)."""

    relaxation: Relaxation
    equilibrium: EquilibriumSolver

    def __init__(self, steps, dt, equilibrium=EquilibriumSolver(), *, max_steps=None):
        self.relaxation = Relaxation(steps, dt, max_steps=max_steps)
        self.equilibrium = equilibrium

    def estimate(self, problem, z0, params, x, y, key):
        del key
        phase = fast_phase(self.equilibrium, problem, z0, params, x)
        loss, dldz, dldtheta = loss_gradients(problem, phase.z, params, y, phase.weights)
        transpose = vjp_state(problem, phase.z, params, x)

        def adjoint_field(lam, _params, _x):
            return tree_add(transpose(lam), dldz)

        lam0 = jax.tree.map(lambda g: 0.0 * g, dldz)
        lam = self.relaxation.final_state(adjoint_field, lam0, None, None)
        grads = tree_add(vjp_params(problem, phase.z, params, x, lam), dldtheta)
        n = problem.batch_size(z0)
        matvecs = phase.summary["matvecs"] + self.relaxation.steps * n + 1
        return finish(grads, phase, loss, phase.summary["residual"], matvecs)
