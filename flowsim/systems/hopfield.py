"""A continuous Hopfield network: an energy with symmetric coupling and tanh rates."""

import equinox as eqx
import jax
import jax.numpy as jnp

from ..problem import gradient_field


class Hopfield(eqx.Module):
    r"""E(z) = ½‖z‖² − ½ ρ(z)ᵀ W_s ρ(z) − (b + U x)ᵀ ρ(z),  ρ = tanh,  F = −∇_z E.

    W_s = (W + Wᵀ)/2 keeps the coupling symmetric whatever ``params["W"]`` is, so
    F_z = −∇²E is symmetric and EP is exact in the limit (Scellier & Bengio 2017).
    params ``{"W": (n, n), "U": (n, m), "b": (n,)}``; z of shape (n,) or (batch, n).
    """

    n: int = eqx.field(static=True)
    m: int = eqx.field(static=True)

    def energy(self, z, params, x):
        rate = jnp.tanh(z)
        coupling = (params["W"] + params["W"].T) / 2
        drive = params["b"] if x is None else params["b"] + x @ params["U"].T
        return (0.5 * jnp.sum(z**2) - 0.5 * jnp.sum((rate @ coupling) * rate)
                - jnp.sum(drive * rate))

    def field(self, z, params, x):
        return gradient_field(self.energy)(z, params, x)

    def init_params(self, key, *, gain=0.5):
        kw, ku, kb = jax.random.split(key, 3)
        w = gain * jax.random.normal(kw, (self.n, self.n)) / jnp.sqrt(self.n)
        return {
            "W": (w + w.T) / 2,
            "U": jax.random.normal(ku, (self.n, self.m)) / jnp.sqrt(self.m),
            "b": 0.1 * jax.random.normal(kb, (self.n,)),
        }
