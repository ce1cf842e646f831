r"""Recurrent backpropagation: the adjoint ODE at the equilibrium, for a finite time.

    dλ/dt = F_z(z*)ᵀ λ + ∂L/∂z(z*),     λ(0) = 0,

run for ``steps`` Euler steps of ``dt`` (diffrax). When F_z(z*) is stable,
λ(t) → −F_z^{-T} ∂L/∂z, the oracle's adjoint, so RBP → Implicit as t → ∞.
The estimate is ∂L/∂θ + F_θᵀ λ(T).
"""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._equilibrium import EquilibriumSolver, equilibrium
from .._fields import loss_gradients
from .._relax import horizon, relax
from .._trees import tree_add, tree_norm
from ._base import AbstractEstimator, finish, vjp_params, vjp_state


class RBP(AbstractEstimator):
    """Finite-time adjoint ODE at z* (Almeida–Pineda recurrent backprop)."""

    steps: jax.Array
    dt: jax.Array
    equilibrium: EquilibriumSolver
    max_steps: int = eqx.field(static=True)

    def __init__(self, steps, dt, equilibrium=EquilibriumSolver(), *, max_steps=None):
        self.steps, self.max_steps = horizon(steps, max_steps)
        self.dt = jnp.asarray(dt)
        self.equilibrium = equilibrium

    def estimate(self, field, loss, params, z0, x, y):
        z_star, eq_info = equilibrium(field, z0, params, x, self.equilibrium)
        dldz, dldtheta = loss_gradients(loss, z_star, params, y)
        transpose = vjp_state(field, z_star, params, x)

        def adjoint_field(lam, _params, _x):
            return tree_add(transpose(lam), dldz)

        lam0 = jax.tree.map(lambda g: 0.0 * g, dldz)
        lam = relax(adjoint_field, lam0, None, None, steps=self.steps, dt=self.dt,
                    max_steps=self.max_steps)
        grads = tree_add(vjp_params(field, z_star, params, x, lam), dldtheta)
        info = {
            "loss": loss(z_star, params, y),
            "residual": eq_info["residual"],
            "adjoint_residual": tree_norm(adjoint_field(lam, None, None)) / tree_norm(dldz),
        }
        return finish(grads, eq_info["result"], info)
