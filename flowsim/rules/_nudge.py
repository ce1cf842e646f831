"""The nudged dynamics shared by the EP rules."""

import jax
import jax.numpy as jnp


def state_gradient(problem, z, params, y, weights):
    """∂L/∂z of the weighted batch objective (holomorphic for complex z)."""
    value, vjp = jax.vjp(lambda u: problem.objective(u, params, y, weights), z)
    return vjp(jnp.ones_like(value))[0]


def nudged_field(problem, y, beta, weights):
    r"""dz/dt = F(z) − β ∂L/∂z(z) over the batch: the field pulled toward lower loss.

    ``beta`` may be complex (holomorphic EP); ∂L/∂z is then the holomorphic
    derivative, so the loss must be analytic in z. A sample of weight 0 is not
    nudged.
    """

    def nudged(z, params, x):
        force = state_gradient(problem, z, params, y, weights)
        return jax.tree.map(lambda f, g: f - jnp.asarray(beta).astype(g.dtype) * g,
                            problem.batch_field(z, params, x), force)

    return nudged
