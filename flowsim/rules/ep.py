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

from .._trees import tree_add, tree_scale, tree_sub, tree_where
from ..solvers import EquilibriumSolver, Relaxation
from ._base import AbstractHorizonRule, fast_phase, finish, loss_gradients, vjp_params
from ._nudge import nudged_field


class EP(AbstractHorizonRule):
    """Equilibrium propagation with nudge ``beta`` and a nudged phase of ``steps``."""

    beta: jax.Array
    relaxation: Relaxation
    symmetric: bool = eqx.field(static=True)
    equilibrium: EquilibriumSolver

    def __init__(self, beta, steps, dt, symmetric=True, equilibrium=EquilibriumSolver(), *,
                 max_steps=None):
        self.beta = jnp.asarray(beta)
        self.relaxation = Relaxation(steps, dt, max_steps=max_steps)
        self.symmetric = bool(symmetric)
        self.equilibrium = equilibrium

    def estimate(self, problem, z0, params, x, y, key):
        del key
        phase = fast_phase(self.equilibrium, problem, z0, params, x)

        def nudge(beta):
            field = nudged_field(problem, y, beta, phase.weights)
            return self.relaxation.final_state(field, phase.z, params, x)

        z_plus = nudge(self.beta)
        if self.symmetric:
            z_minus, width, phases = nudge(-self.beta), 2 * self.beta, 2
        else:
            z_minus, width, phases = phase.z, self.beta, 1
        response = tree_scale(tree_sub(z_plus, z_minus), 1.0 / width)
        response = tree_where(phase.summary["ok"], response,
                              jax.tree.map(jnp.zeros_like, response))
        loss, _, direct = loss_gradients(problem, phase.z, params, y, phase.weights)
        grads = tree_add(tree_scale(vjp_params(problem, phase.z, params, x, response), -1.0),
                         direct)
        n = problem.batch_size(z0)
        matvecs = phase.summary["matvecs"] + phases * self.relaxation.steps * n + 1
        return finish(grads, phase, loss, phase.summary["residual"], matvecs)
