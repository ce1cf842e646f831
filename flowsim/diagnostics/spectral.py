r"""Spectral radius of the relaxation map's Jacobian, ρ(Φ_z) = ρ(I + ε F_z), with a bound.

ρ < 1 is local contraction of the deployed Euler relaxation; ρ → 1 is the loss
of contraction that makes the finite-horizon gradient blow up (seed 002).

Small states (dim z ≤ ``dense_max``): the dense Jacobian of the map, one JVP
per column (vmapped), and all its eigenvalues; the bound is 0.

Large states: an Arnoldi factorisation Φ_z Q = Q H + r e_kᵀ of ``krylov_dim``
steps (:func:`arnoldi`: classical Gram–Schmidt twice, one JVP per step, F_z
never materialised). The Ritz values θ_j of H approximate the
outermost eigenvalues, the ones that set ρ, and the Ritz pair (θ, y = Q s) of
largest modulus has the residual

    ‖Φ_z y − θ y‖ = ‖r‖ |e_kᵀ s|,

returned as the bound: θ is an exact eigenvalue of Φ_z + E with ‖E‖ ≤ that
residual (and lies within it of an eigenvalue of Φ_z when Φ_z is normal).
With ``krylov_dim ≥ dim z`` the factorisation is exact.

Both paths are jittable and vmappable (``jnp.linalg.eigvals`` of a small
matrix runs on the CPU backend).
"""

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


def field_jvp(field, z, params, x):
    """``(flat z, v ↦ F_z(z) v)`` on the flattened state (one linearisation, reused)."""
    flat_z, unravel = ravel_pytree(z)
    _, jvp = jax.linearize(lambda u: ravel_pytree(field(unravel(u), params, x))[0], flat_z)
    return flat_z, jvp


def dense_matrix(apply, flat_z):
    """The matrix of the linear map ``apply``, one vmapped product per column."""
    return jax.vmap(apply, out_axes=1)(jnp.eye(flat_z.size, dtype=flat_z.dtype))


def arnoldi(apply, flat_z, k, key=None):
    """``(H, r)`` of a ``k``-step Arnoldi factorisation A Q = Q H + r e_kᵀ of ``apply``
    from a random start (``key``, default ``PRNGKey(0)``); see :func:`arnoldi_basis`."""
    _, hessenberg, residual = arnoldi_basis(apply, flat_z, k, key)
    return hessenberg, residual


def arnoldi_basis(apply, flat_z, k, key=None):
    """``(Q, H, r)``: A Q = Q H + r e_kᵀ, Q (n, k) orthonormal, H (k, k) upper Hessenberg.

    Each step orthogonalises A q_j against Q twice (classical Gram–Schmidt with full
    reorthogonalisation, as ``matfree.decomp.hessenberg``). Unlike matfree's, it
    survives a breakdown: when A q_j lies in span(Q) (to √ε of ‖A q_j‖) the space is
    invariant and its Ritz values are eigenvalues, but normalising what is left, a
    rounding error, would give a q_{j+1} that is not orthogonal to Q and an H whose
    eigenvalues are garbage (on A = cI every step breaks down). Here the subdiagonal
    entry is set to 0 and q_{j+1} is a fresh random vector orthogonalised against Q:
    H is then block upper triangular and every eigenvalue of H is a Ritz value of A
    on span(Q), an exact one of each invariant block.
    """
    key = jax.random.PRNGKey(0) if key is None else key
    n, dtype = flat_z.size, flat_z.dtype
    tol = jnp.sqrt(jnp.finfo(dtype).eps)

    def orthogonalise(Q, v):
        h = Q.T @ v
        v = v - Q @ h
        again = Q.T @ v
        return v - Q @ again, h + again

    def step(j, carry):
        Q, H, q, _ = carry
        Q = Q.at[:, j].set(q)
        w = apply(q)
        v, h = orthogonalise(Q, w)
        length = jnp.linalg.norm(v)
        broke = length <= tol * jnp.linalg.norm(w)

        def restart():  # drawn only at a breakdown (under vmap both sides run)
            fresh, _ = orthogonalise(Q, jax.random.normal(jax.random.fold_in(key, j), (n,), dtype))
            return fresh / jnp.linalg.norm(fresh)

        H = H.at[:, j].set(h).at[j + 1, j].set(jnp.where(broke, 0.0, length), mode="drop")
        return Q, H, jax.lax.cond(broke, restart, lambda: v / length), v

    start = jax.random.normal(key, flat_z.shape, dtype)
    init = (jnp.zeros((n, k), dtype), jnp.zeros((k, k), dtype), start / jnp.linalg.norm(start),
            jnp.zeros_like(start))
    # r: what the last step's A q_k left outside span(Q)
    Q, H, _, residual = jax.lax.fori_loop(0, k, step, init)
    return Q, H, residual


def spectral_radius(field, z, params, x, dt, *, dense_max=256, krylov_dim=40, key=None,
                    with_bound=False):
    """ρ(I + dt·F_z(z)) for the state pytree ``z`` (see the module docstring).

    Args:
        dense_max: states of at most this dimension use the dense eigenvalues.
        krylov_dim: Arnoldi steps for larger states (at most dim z).
        key: PRNG key of the Arnoldi start vector (default ``PRNGKey(0)``).
        with_bound: also return the Ritz residual bound, ``(rho, bound)``.
    """
    flat_z, jvp = field_jvp(field, z, params, x)
    apply = lambda v: v + dt * jvp(v)
    n = flat_z.size
    if n <= dense_max:
        rho = jnp.max(jnp.abs(jnp.linalg.eigvals(dense_matrix(apply, flat_z))))
        bound = jnp.zeros((), flat_z.dtype)
    else:
        rho, bound = _arnoldi(apply, flat_z, min(krylov_dim, n), key)
    return (rho, bound) if with_bound else rho


def _arnoldi(apply, flat_z, k, key):
    H, residual = arnoldi(apply, flat_z, k, key)
    values, vectors = jnp.linalg.eig(H)
    top = jnp.argmax(jnp.abs(values))
    bound = jnp.linalg.norm(residual) * jnp.abs(vectors[-1, top])
    return jnp.abs(values[top]), bound.astype(flat_z.dtype)


__all__ = ["arnoldi", "arnoldi_basis", "spectral_radius"]
