"""The nudged dynamics shared by the EP estimators."""

import jax
import jax.numpy as jnp

from .._fields import loss_gradients


def nudged_field(field, loss, y, beta):
    r"""dz/dt = F(z) − β ∂L/∂z(z): the field pulled toward lower loss.

    ``beta`` may be complex (holomorphic EP); ∂L/∂z is then the holomorphic
    derivative, so the loss must be analytic in z.
    """

    def nudged(z, params, x):
        dldz = loss_gradients(loss, z, params, y)[0]
        return jax.tree.map(lambda f, g: f - jnp.asarray(beta).astype(g.dtype) * g, field(z, params, x), dldz)

    return nudged
