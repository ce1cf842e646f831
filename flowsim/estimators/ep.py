r"""Equilibrium propagation (vector-field form), one-sided or symmetric.

From the free equilibrium z*, relax the nudged dynamics dz/dt = F(z) − β L_z(z)
for ``steps`` Euler steps of ``dt`` to z^β, and estimate

    ĝ = ∂L/∂θ − F_θ(z*)ᵀ (z^β − z^{−β}) / (2β)     (symmetric)
    ĝ = ∂L/∂θ − F_θ(z*)ᵀ (z^β − z*) / β             (one-sided).

As steps → ∞ and β → 0, (z^β − z*)/β → F_z^{-1} L_z, so ĝ → ∂L/∂θ − F_θᵀ F_z^{-1} L_z.
That is the oracle exactly when F_z is symmetric (a gradient field, where this
is classic EP: F = −∇E gives −F_θᵀ Δz = ∂²E/∂θ∂z Δz); for a non-symmetric F_z it
is biased (F_z^{-1} in place of F_z^{-T}), a result to measure. The
finite-difference error is O(β) one-sided and O(β²) symmetric.
"""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._equilibrium import EquilibriumSolver, equilibrium
from .._fields import loss_gradients
from .._relax import horizon, relax
from .._trees import tree_add, tree_scale, tree_sub
from ._base import AbstractEstimator, finish, vjp_params
from ._nudge import nudged_field


class EP(AbstractEstimator):
    """Equilibrium propagation with nudge ``beta`` and a nudged phase of ``steps``."""

    beta: jax.Array
    steps: jax.Array
    dt: jax.Array
    symmetric: bool = eqx.field(static=True)
    equilibrium: EquilibriumSolver
    max_steps: int = eqx.field(static=True)

    def __init__(self, beta, steps, dt, symmetric=True, equilibrium=EquilibriumSolver(), *,
                 max_steps=None):
        self.beta = jnp.asarray(beta)
        self.steps, self.max_steps = horizon(steps, max_steps)
        self.dt = jnp.asarray(dt)
        self.symmetric = bool(symmetric)
        self.equilibrium = equilibrium

    def estimate(self, field, loss, params, z0, x, y):
        z_star, eq_info = equilibrium(field, z0, params, x, self.equilibrium)

        def nudge(beta):
            return relax(nudged_field(field, loss, y, beta), z_star, params, x,
                         steps=self.steps, dt=self.dt, max_steps=self.max_steps)

        z_plus = nudge(self.beta)
        if self.symmetric:
            z_minus, width = nudge(-self.beta), 2 * self.beta
        else:
            z_minus, width = z_star, self.beta
        response = tree_scale(tree_sub(z_plus, z_minus), 1.0 / width)
        direct = loss_gradients(loss, z_star, params, y)[1]
        grads = tree_add(tree_scale(vjp_params(field, z_star, params, x, response), -1.0),
                         direct)
        info = {"loss": loss(z_star, params, y), "residual": eq_info["residual"]}
        return finish(grads, eq_info["result"], info)
