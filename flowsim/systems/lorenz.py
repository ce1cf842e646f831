r"""The Lorenz system: ẋ = σ(y − x), ẏ = x(ρ − z) − y, ż = xy − βz.

Equilibria: the origin, and for ρ > 1 the pair C± = (±√(β(ρ−1)), ±√(β(ρ−1)), ρ−1)
born at the pitchfork ρ = 1. C± lose stability through a (subcritical) Hopf
point at ρ_H = σ(σ + β + 3)/(σ − β − 1) (σ > β + 1). The divergence is the
constant −(σ + 1 + β), so the Lyapunov exponents sum to it exactly; at
σ = 10, β = 8/3, ρ = 28 the largest is ≈ 0.906.
"""

from typing import Literal

import equinox as eqx
import jax.numpy as jnp


class Lorenz(eqx.Module):
    """Params ``{"sigma", "rho", "beta"}``; starts on C₊ (x, y > 0) or, with
    ``branch="origin"``, at the origin."""

    branch: Literal["nontrivial", "origin"] = eqx.field(static=True, default="nontrivial")

    def field(self, z, params, x=None):
        u, v, w = z[0], z[1], z[2]
        sigma, rho, beta = params["sigma"], params["rho"], params["beta"]
        return jnp.stack([sigma * (v - u), u * (rho - w) - v, u * v - beta * w])

    def default_params(self):
        return {"sigma": 10.0, "rho": 28.0, "beta": 8.0 / 3.0}

    def start(self, params):
        if self.branch == "origin":
            return jnp.zeros(3)
        r = jnp.sqrt(params["beta"] * (params["rho"] - 1))
        return jnp.stack([r, r, params["rho"] - 1.0])
