r"""Holomorphic equilibrium propagation: complex nudges and a Fourier coefficient.

With N nudges β_k = r·e^{2πik/N} on a circle of radius r, the nudged states
z(β_k) (``steps`` Euler steps of dz/dt = F(z) − β_k L_z(z) from z*, in complex
arithmetic) give the derivative by the first Fourier coefficient

    z'(0) ≈ (1/(N r)) Σ_k z(β_k) e^{−2πik/N},

exact up to O(r^N) aliasing (Cauchy's integral formula, trapezoid rule), so the
radius need not be small. The estimate is ∂L/∂θ − F_θ(z*)ᵀ Re z'(0). F and L
must be holomorphic in z (tanh, polynomials, exp, log(Σ exp) are).
"""

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp

from .._trees import tree_add, tree_scale, tree_where
from ..solvers import EquilibriumSolver, Relaxation
from ._base import AbstractHorizonRule, fast_phase, finish, loss_gradients, vjp_params
from ._nudge import nudged_field


class HolomorphicEP(AbstractHorizonRule):
    """Holomorphic EP with ``points`` complex nudges of modulus ``radius``."""

    radius: jax.Array
    points: int = eqx.field(static=True)
    relaxation: Relaxation
    equilibrium: EquilibriumSolver

    def __init__(self, radius, points, steps, dt, equilibrium=EquilibriumSolver(), *,
                 max_steps=None):
        if isinstance(points, bool) or not isinstance(points, int) or points < 2:
            raise ValueError(f"points must be an int >= 2, got {points!r}")
        self.radius = jnp.asarray(radius)
        self.points = points
        self.relaxation = Relaxation(steps, dt, max_steps=max_steps)
        self.equilibrium = equilibrium

    def estimate(self, problem, z0, params, x, y, key):
        del key
        phase = fast_phase(self.equilibrium, problem, z0, params, x)
        z_star = phase.z
        complex_dtype = jnp.result_type(*jax.tree.leaves(z_star), jnp.complex64)
        z_complex = jax.tree.map(lambda u: u.astype(complex_dtype), z_star)
        phases = jnp.exp(2j * jnp.pi * jnp.arange(self.points) / self.points)

        def nudge(angle):
            beta = (self.radius * angle).astype(complex_dtype)
            field = nudged_field(problem, y, beta, phase.weights)
            return self.relaxation.final_state(field, z_complex, params, x)

        with warnings.catch_warnings():
            # diffrax warns on complex states in general; an explicit Euler step
            # z + εF(z) is plain complex arithmetic, and the tests check it against
            # closed forms.
            warnings.filterwarnings("ignore", "Complex dtype support in Diffrax")
            nudged = jax.vmap(nudge)(phases)
        weights = jnp.conj(phases).astype(complex_dtype) / (self.points * self.radius)
        derivative = jax.tree.map(
            lambda u, ref: jnp.real(jnp.tensordot(weights, u, axes=1)).astype(ref.dtype),
            nudged, z_star,
        )
        derivative = tree_where(phase.summary["ok"], derivative,
                                jax.tree.map(jnp.zeros_like, derivative))
        loss, _, direct = loss_gradients(problem, z_star, params, y, phase.weights)
        grads = tree_add(tree_scale(vjp_params(problem, z_star, params, x, derivative), -1.0),
                         direct)
        n = problem.batch_size(z0)
        matvecs = phase.summary["matvecs"] + self.points * self.relaxation.steps * n + 1
        return finish(grads, phase, loss, phase.summary["residual"], matvecs)
