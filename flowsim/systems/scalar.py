"""The scalar contraction F_k(z) = −k (z − z*) of seed 002's counterexample."""

import equinox as eqx
import jax.numpy as jnp


class ScalarContraction(eqx.Module):
    r"""F_k(z) = −k (z − z*), params ``{"k": k}``.

    The fixed point z* does not depend on k, so dL(z*)/dk = 0, while
    z_T − z* = (1 − εk)^T (z_0 − z*) makes dL(z_T)/dk carry T(1 − εk)^{T−1}.
    """

    z_star: float = 1.0

    def field(self, z, params, x):
        return -params["k"] * (z - self.z_star)

    def init_params(self, k=0.5):
        return {"k": jnp.asarray(k, dtype=float)}
