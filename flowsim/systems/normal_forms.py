r"""The normal forms of the codimension-one bifurcations of equilibria, with exact answers.

* :class:`SaddleNode`: ż = μ + a z − z². Equilibria z = a/2 ± √(μ + a²/4) meet in a
  fold at μ = −a²/4, z = a/2 (F_z = a − 2z = 0); dμ_fold/da = −a/2.
* :class:`Pitchfork`: ż = μ z − z³ + h. At h = 0 the trivial branch z = 0 meets
  z = ±√μ in a branch point at μ = 0; h ≠ 0 unfolds it into a fold.
* :class:`HopfNormalForm`: ż = (μ + iω) z + s |z|² z on z = x + i y. The origin
  loses stability at μ = 0 through a Hopf point of frequency ω with first
  Lyapunov coefficient l₁ = 2s/ω in Kuznetsov's normalisation (*Elements of
  Applied Bifurcation Theory*, §3.5: x = wq + w̄q̄ with ⟨q, q⟩ = 1, so
  z = √2 w and ẇ = (μ + iω) w + 2s|w|²w, l₁ = Re c₁/ω): supercritical for
  s < 0, subcritical for s > 0.

Each holds no numbers; ``default_params()`` gives the constants and ``start``
the documented starting equilibrium at those parameters.
"""

import equinox as eqx
import jax.numpy as jnp


class SaddleNode(eqx.Module):
    """ż = μ + a z − z², params ``{"mu", "a"}``; starts on the upper branch z₊."""

    def field(self, z, params, x=None):
        return params["mu"] + params["a"] * z - z**2

    def default_params(self):
        return {"mu": 1.0, "a": 0.0}

    def start(self, params):
        a = params["a"]
        return jnp.atleast_1d(a / 2 + jnp.sqrt(params["mu"] + a**2 / 4))


class Pitchfork(eqx.Module):
    """ż = μ z − z³ + h, params ``{"mu", "h"}``; starts at z = 0 (h = 0) or the root near it."""

    def field(self, z, params, x=None):
        return params["mu"] * z - z**3 + params["h"]

    def default_params(self):
        return {"mu": -1.0, "h": 0.0}

    def start(self, params):
        # the real root of z³ − μz − h = 0 nearest 0 for μ < 0 (the only one): from z = h/(−μ)
        z = jnp.atleast_1d(jnp.asarray(params["h"] / -params["mu"], float))
        for _ in range(50):
            z = z - (z**3 - params["mu"] * z - params["h"]) / (3 * z**2 - params["mu"])
        return z


class HopfNormalForm(eqx.Module):
    """ẋ = μx − ωy + s x r², ẏ = ωx + μy + s y r², params ``{"mu", "omega", "s"}``; starts at 0."""

    def field(self, z, params, x=None):
        u, v = z[0], z[1]
        r2 = u**2 + v**2
        mu, omega, s = params["mu"], params["omega"], params["s"]
        return jnp.stack([mu * u - omega * v + s * u * r2, omega * u + mu * v + s * v * r2])

    def default_params(self):
        return {"mu": -1.0, "omega": 1.0, "s": -1.0}

    def start(self, params):
        return jnp.zeros(2)
