r"""The 1-D Bratu problem u'' + λ eᵘ = 0 on (0, 1), u(0) = u(1) = 0, by finite differences.

On N interior points x_i = i h, h = 1/(N + 1), the field is the semi-discrete
parabolic flow

    u̇_i = (u_{i−1} − 2 u_i + u_{i+1}) / h² + λ e^{u_i},   u_0 = u_{N+1} = 0,

whose equilibria are the discrete Bratu solutions. From u = 0 at λ = 0 the
lower (stable) branch rises to a fold at λ_N, which tends to the continuum's
λ_c = 3.51383… as N grows (error O(h²)); past it the upper branch has one
unstable eigenvalue. At u = 0, λ = 0 the Jacobian is the discrete Laplacian,
eigenvalues −(4/h²) sin²(kπh/2), k = 1..N. The tridiagonal product is a
stencil: the field and its JVPs cost O(N), and no matrix is formed.
"""

import equinox as eqx
import jax.numpy as jnp


class Bratu(eqx.Module):
    """Params ``{"lambda"}``; ``n`` interior points; starts at u = 0 (exact at λ = 0)."""

    n: int = eqx.field(static=True, default=100)

    @property
    def h(self):
        return 1.0 / (self.n + 1)

    def field(self, z, params, x=None):
        padded = jnp.pad(z, 1)
        laplacian = (padded[:-2] - 2 * z + padded[2:]) / self.h**2
        return laplacian + params["lambda"] * jnp.exp(z)

    def default_params(self):
        return {"lambda": 0.0}

    def start(self, params):
        del params
        return jnp.zeros(self.n)
