r"""A ring of tanh units with a mean field and nearest-neighbour coupling: large, matrix-free.

    ż_i = −z_i + c ⟨tanh z⟩ + κ (tanh z_{i−1} + tanh z_{i+1}) / 2 + b,   indices mod n,

⟨·⟩ the mean over the ring. Every product costs O(n) (a mean and a stencil; no
n×n matrix). On a uniform state z_i = η (η = (c + κ) tanh η + b) the Jacobian
is −I + s (c 𝟙𝟙ᵀ/n + κ K), s = sech² η, K the ring's averaging operator
(eigenvalues cos 2πk/n): the uniform mode has eigenvalue −1 + s(c + κ), every
other mode one in [−1 − sκ, −1 + sκ]. The uniform mode is therefore isolated
(gap s c), and it alone decides stability:

* b = 0: the origin loses stability at c + κ = 1, a branch point (η = ±η₀);
* b ≠ 0: continued in b at fixed c + κ = g > 1, the branch folds where
  s g = 1: η_f = ∓arccosh √g, b_f = η_f − g tanh η_f.
"""

import equinox as eqx
import jax.numpy as jnp


class TanhRing(eqx.Module):
    """Params ``{"c", "kappa", "b"}``; starts at the uniform state z = b (exact at c = κ = 0)."""

    n: int = eqx.field(static=True, default=20_000)

    def field(self, z, params, x=None):
        rate = jnp.tanh(z)
        neighbours = (jnp.roll(rate, 1) + jnp.roll(rate, -1)) / 2
        return -z + params["c"] * jnp.mean(rate) + params["kappa"] * neighbours + params["b"]

    def default_params(self):
        return {"c": 0.0, "kappa": 0.2, "b": 0.0}

    def start(self, params):
        return jnp.full(self.n, params["b"], dtype=float)
