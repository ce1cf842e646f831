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

from .._equilibrium import EquilibriumSolver, equilibrium
from .._fields import loss_gradients
from .._relax import horizon, relax
from .._trees import tree_add, tree_scale
from ._base import AbstractEstimator, finish, vjp_params
from ._nudge import nudged_field


class HolomorphicEP(AbstractEstimator):
    """Holomorphic EP with ``points`` complex nudges of modulus ``radius``."""

    radius: jax.Array
    points: int = eqx.field(static=True)
    steps: jax.Array
    dt: jax.Array
    equilibrium: EquilibriumSolver
    max_steps: int = eqx.field(static=True)

    def __init__(self, radius, points, steps, dt, equilibrium=EquilibriumSolver(), *,
                 max_steps=None):
        if isinstance(points, bool) or not isinstance(points, int) or points < 2:
            raise ValueError(f"points must be an int >= 2, got {points!r}")
        self.radius = jnp.asarray(radius)
        self.points = points
        self.steps, self.max_steps = horizon(steps, max_steps)
        self.dt = jnp.asarray(dt)
        self.equilibrium = equilibrium

    def estimate(self, field, loss, params, z0, x, y):
        z_star, eq_info = equilibrium(field, z0, params, x, self.equilibrium)
        complex_dtype = jnp.result_type(*jax.tree.leaves(z_star), jnp.complex64)
        z_complex = jax.tree.map(lambda u: u.astype(complex_dtype), z_star)
        phases = jnp.exp(2j * jnp.pi * jnp.arange(self.points) / self.points)

        def nudge(phase):
            beta = (self.radius * phase).astype(complex_dtype)
            return relax(nudged_field(field, loss, y, beta), z_complex, params, x,
                         steps=self.steps, dt=self.dt, max_steps=self.max_steps)

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
        direct = loss_gradients(loss, z_star, params, y)[1]
        grads = tree_add(tree_scale(vjp_params(field, z_star, params, x, derivative), -1.0),
                         direct)
        info = {"loss": loss(z_star, params, y), "residual": eq_info["residual"]}
        return finish(grads, eq_info["result"], info)
