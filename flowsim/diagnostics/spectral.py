r"""Spectral radius of the relaxation map's Jacobian, ρ(Φ_z) = ρ(I + ε F_z).

ρ < 1 is local contraction of the deployed Euler relaxation; ρ → 1 is the loss
of contraction that makes the finite-horizon gradient blow up (seed 002).

Small states: the dense Jacobian (``jax.jacfwd``) and all its eigenvalues.
Large states: Arnoldi iteration on v ↦ v + ε F_z v (one JVP per step, F_z never
materialised); the Ritz values of the Krylov space approximate the outermost
eigenvalues, the ones that set ρ. With ``krylov_dim ≥ dim z`` it is exact.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree


def _map_jvp(field, z, params, x, dt):
    flat_z, unravel = ravel_pytree(z)

    def flat_field(u):
        return ravel_pytree(field(unravel(u), params, x))[0]

    _, jvp = jax.linearize(flat_field, flat_z)
    return flat_z, lambda v: v + dt * jvp(v)


def spectral_radius(field, z, params, x, dt, *, dense_max=1024, krylov_dim=60, key=None):
    """ρ(I + dt·F_z(z)) for the state pytree ``z``.

    Args:
        dense_max: states of at most this dimension use the dense eigenvalues.
        krylov_dim: Arnoldi steps for larger states.
        key: PRNG key of the Arnoldi start vector (default ``PRNGKey(0)``).
    """
    flat_z, apply = _map_jvp(field, z, params, x, dt)
    n = flat_z.size
    if n <= dense_max:
        # Columns by vmapped JVPs: the Jacobian of the map in one pass.
        jac = jax.vmap(apply, out_axes=1)(jnp.eye(n, dtype=flat_z.dtype))
        return jnp.max(jnp.abs(jnp.linalg.eigvals(np.asarray(jac))))
    return _arnoldi_radius(apply, n, flat_z.dtype, min(krylov_dim, n), key)


def _arnoldi_radius(apply, n, dtype, m, key):
    key = jax.random.PRNGKey(0) if key is None else key
    v0 = jax.random.normal(key, (n,), dtype=dtype)
    basis = jnp.zeros((m + 1, n), dtype=dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    hessenberg = jnp.zeros((m + 1, m), dtype=dtype)

    def body(j, carry):
        basis, hessenberg = carry
        w = apply(basis[j])
        # Two passes of classical Gram–Schmidt against the basis built so far.
        mask = (jnp.arange(m + 1) <= j).astype(dtype)
        for _ in range(2):
            coeffs = (basis @ w) * mask
            w = w - coeffs @ basis
            hessenberg = hessenberg.at[:, j].add(coeffs)
        norm = jnp.linalg.norm(w)
        hessenberg = hessenberg.at[j + 1, j].set(norm)
        basis = basis.at[j + 1].set(jnp.where(norm > 0, w / norm, 0.0))
        return basis, hessenberg

    basis, hessenberg = jax.lax.fori_loop(0, m, body, (basis, hessenberg))
    ritz = np.linalg.eigvals(np.asarray(hessenberg[:m, :m]))
    return jnp.asarray(np.max(np.abs(ritz)))


__all__ = ["spectral_radius"]
