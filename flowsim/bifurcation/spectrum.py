r"""The k rightmost eigenvalues of F_z at an equilibrium, with their residuals.

Dense (dim z ≤ ``dense_max``): F_z is formed, one JVP per column, and all its
eigenpairs computed; the k with the largest real parts are kept.

Factored (dim z ≤ ``factor_max``): F_z is formed and F_z − σI LU-factorised
once (σ = ``shift``, 0 by default); Arnoldi runs on (F_z − σI)⁻¹, each product
two triangular solves. Far cheaper than all the eigenpairs (the LU is a
fraction of a dense eigensolve), and right for stiff systems, whose
rightmost eigenvalues are the ones nearest 0.

Matrix-free (larger): an Arnoldi factorisation A Q = Q H + r e_mᵀ of m steps
(:func:`flowsim.diagnostics.spectral.arnoldi_basis`, full reorthogonalisation, which
survives a breakdown), on

* ``shift=None``: A = F_z itself (one JVP per step). Ritz values converge to
  the spectrum's outer edge first: right when the rightmost eigenvalues are
  outermost or isolated (a network whose unstable mode leaves the bulk);
* ``shift=σ``: A = (F_z − σ I)⁻¹, each product a GMRES solve. Its dominant
  eigenvalues 1/(λ − σ) belong to the λ nearest σ: right for stiff systems
  (a discretised PDE, whose rightmost eigenvalues are the smallest in modulus).

A Ritz value θ of A with Ritz vector y = Q s gives λ = θ (or σ + 1/θ). Each
returned pair carries its residual ‖F_z y − λ y‖ / ‖y‖, evaluated with one
more JVP, not estimated: λ is an exact eigenvalue of F_z + E with
‖E‖ ≤ that residual. Everything is jittable and vmappable (the small
eigenproblem runs on the CPU backend).

Stability of the flow ż = F: the number of eigenvalues with Re λ > 0; of the
deployed Euler map z ← z + dt F: ρ(I + dt F_z) = max |1 + dt λ|, whose
eigenvalues near −1 (λ ≈ −2/dt, the leftmost) are the other edge
(:func:`flowsim.diagnostics.spectral_radius`).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from ..diagnostics.spectral import arnoldi_basis, dense_matrix


class SpectrumOptions(eqx.Module):
    """k eigenvalues; all of them up to ``dense_max``; up to ``factor_max``
    ``krylov_dim`` Arnoldi steps on (F_z − shift·I)⁻¹ by one LU (shift None: 0);
    above, Arnoldi on F_z (``shift=None``) or on (F_z − shift·I)⁻¹ by GMRES."""

    k: int = eqx.field(static=True, default=6)
    dense_max: int = eqx.field(static=True, default=400)
    factor_max: int = eqx.field(static=True, default=4000)
    krylov_dim: int = eqx.field(static=True, default=40)
    shift: float | None = eqx.field(static=True, default=None)
    solve_rtol: float = eqx.field(static=True, default=1e-10)


class Spectrum(eqx.Module):
    """Eigenvalues sorted by real part (largest first), unit eigenvectors (rows) and
    residuals ‖F_z y − λ y‖."""

    values: jax.Array
    vectors: jax.Array
    residuals: jax.Array

    def unstable(self, tol=0.0):
        """How many have Re λ > tol."""
        return jnp.sum(jnp.real(self.values) > tol)


def rightmost(jvp, z, options: SpectrumOptions = SpectrumOptions(), key=None) -> Spectrum:
    """The ``options.k`` rightmost eigenpairs of the linear map ``jvp`` (F_z) at state ``z``."""
    n = z.size
    k = min(options.k, n)
    if n <= options.dense_max:
        values, vectors = jnp.linalg.eig(dense_matrix(jvp, z))
        vectors = vectors.T
    elif n <= options.factor_max:
        values, vectors = _factored(jvp, z, options, key)
    else:
        values, vectors = _arnoldi(jvp, z, options, key)
    order = jnp.argsort(-jnp.real(values))[:k]
    values, vectors = values[order], vectors[order]
    vectors = vectors / jnp.linalg.norm(vectors, axis=1, keepdims=True)
    return Spectrum(values, vectors, _residuals(jvp, values, vectors))


def _arnoldi(jvp, z, options, key):
    m = min(options.krylov_dim, z.size)
    if options.shift is None:
        apply = jvp
    else:
        shifted = lx.FunctionLinearOperator(lambda v: jvp(v) - options.shift * v,
                                            jax.ShapeDtypeStruct(z.shape, z.dtype))
        solver = lx.GMRES(rtol=options.solve_rtol, atol=options.solve_rtol, restart=m,
                          max_steps=100)
        apply = lambda v: lx.linear_solve(shifted, v, solver, throw=False).value
    return _ritz(apply, z, m, options.shift, key)


def _factored(jvp, z, options, key):
    shift = 0.0 if options.shift is None else options.shift
    matrix = dense_matrix(jvp, z) - shift * jnp.eye(z.size, dtype=z.dtype)
    operator = lx.MatrixLinearOperator(matrix)
    solver = lx.LU()
    state = solver.init(operator, {})
    apply = lambda v: lx.linear_solve(operator, v, solver, state=state, throw=False).value
    return _ritz(apply, z, min(options.krylov_dim, z.size), shift, key)


def _ritz(apply, z, m, shift, key):
    """Ritz pairs of ``apply`` mapped back: λ = θ (shift None) or shift + 1/θ."""
    Q, H, _ = arnoldi_basis(apply, z, m, key)
    theta, s = jnp.linalg.eig(H)
    vectors = (Q.astype(s.dtype) @ s).T
    return (theta if shift is None else shift + 1.0 / theta), vectors


def _residuals(jvp, values, vectors):
    def one(value, vector):
        applied = jvp(jnp.real(vector)) + 1j * jvp(jnp.imag(vector))
        return jnp.linalg.norm(applied - value * vector)

    return jax.vmap(one)(values, vectors)


__all__ = ["SpectrumOptions", "Spectrum", "rightmost"]
