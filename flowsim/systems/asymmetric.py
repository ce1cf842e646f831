"""An asymmetric tanh network: F = −z + tanh(z W + x U + b), W not symmetric."""

import equinox as eqx
import jax
import jax.numpy as jnp


class AsymmetricTanh(eqx.Module):
    r"""F(z) = −z + tanh(z W + x U + b), params ``{"W": (n, n), "U": (m, n), "b": (n,)}``.

    Row-vector convention so a batch of states (batch, n) is one matrix product.
    F_z = −I + diag(1 − tanh²)·Wᵀ is not symmetric: vector-field EP is biased here.
    Contracting when the gain of W is below 1.
    """

    n: int = eqx.field(static=True)
    m: int = eqx.field(static=True)

    def field(self, z, params, x):
        pre = z @ params["W"] + params["b"]
        if x is not None:
            pre = pre + x @ params["U"]
        return -z + jnp.tanh(pre)

    def init_params(self, key, *, gain=0.5):
        kw, ku, kb = jax.random.split(key, 3)
        return {
            "W": gain * jax.random.normal(kw, (self.n, self.n)) / jnp.sqrt(self.n),
            "U": jax.random.normal(ku, (self.m, self.n)) / jnp.sqrt(self.m),
            "b": 0.1 * jax.random.normal(kb, (self.n,)),
        }
