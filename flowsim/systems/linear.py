"""Linear dynamics F(z) = A z + W x: every estimator has a closed form."""

import equinox as eqx
import jax
import jax.numpy as jnp


class Linear(eqx.Module):
    r"""F(z) = A z + W x with params ``{"A": (n, n), "W": (n, m)}``.

    z* = −A⁻¹ W x; stable when every eigenvalue of A has negative real part.
    """

    n: int = eqx.field(static=True)
    m: int = eqx.field(static=True)

    def field(self, z, params, x):
        return params["A"] @ z + params["W"] @ x

    def init_params(self, key, *, symmetric=False, scale=0.3):
        """A = −I + scale·G (symmetrised if asked), W Gaussian / √m."""
        ka, kw = jax.random.split(key)
        g = scale * jax.random.normal(ka, (self.n, self.n)) / jnp.sqrt(self.n)
        if symmetric:
            g = (g + g.T) / 2
        a = -jnp.eye(self.n) + g
        w = jax.random.normal(kw, (self.n, self.m)) / jnp.sqrt(self.m)
        return {"A": a, "W": w}
