r"""The Brusselator: ẋ = a − (b + 1) x + x² y, ẏ = b x − x² y.

Its one equilibrium (a, b/a) has trace b − 1 − a² and determinant a²; it loses
stability through a Hopf point at b = 1 + a², frequency ω = a, supercritical.
"""

import equinox as eqx
import jax.numpy as jnp


class Brusselator(eqx.Module):
    """Params ``{"a", "b"}``; starts at the equilibrium (a, b/a)."""

    def field(self, z, params, x=None):
        u, v = z[0], z[1]
        a, b = params["a"], params["b"]
        return jnp.stack([a - (b + 1) * u + u**2 * v, b * u - u**2 * v])

    def default_params(self):
        return {"a": 1.0, "b": 1.0}

    def start(self, params):
        return jnp.stack([jnp.asarray(params["a"], float), params["b"] / params["a"]])
