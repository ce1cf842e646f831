r"""Extended systems whose regular roots are the bifurcation points, and Newton on them.

Fold (limit point), unknowns (z, v, p) ∈ ℝ²ⁿ⁺¹:

    F(z, p) = 0,   F_z(z, p) v = 0,   ℓ·v − 1 = 0,

regular at a quadratic fold with a simple zero eigenvalue and F_p ∉ range F_z.

Hopf, unknowns (z, a, b, ω, p) ∈ ℝ³ⁿ⁺² (q = a + i b, F_z q = iω q):

    F = 0,   F_z a + ω b = 0,   F_z b − ω a = 0,   ℓ·a − 1 = 0,   ℓ·b = 0,

regular when ±iω is a simple pair crossing transversally.

Branch point (Moore 1980), unknowns (z, p, ψ, μ) ∈ ℝ²ⁿ⁺²:

    F(z, p) + μ ψ = 0,   F_zᵀ ψ = 0,   ψ·F_p = 0,   ψ·ψ − 1 = 0,

whose solution has μ = 0, ψ the left null vector; regular at a simple
branch point (two branches crossing transversally), where the fold system is
singular.

Every Jacobian comes from JAX (the fold and Hopf systems hold F_z v, so their
Newton matrices hold second derivatives, exact). ``ℓ`` is a fixed vector from
the initial guess. The Newton is :class:`~flowsim.bifurcation.newton.StepNewton`
through ``optimistix.root_find``, whose implicit adjoint differentiates the
located point (:mod:`.gradients`).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx


class AbstractExtended(eqx.Module):
    """An extended system on a flat vector x with ``p_index``; ``z(x, n)`` the state."""

    cont: eqx.Module

    def __call__(self, x, args):
        raise NotImplementedError

    def p(self, x, n):
        raise NotImplementedError

    def z(self, x, n):
        return x[:n]


class FoldSystem(AbstractExtended):
    def __call__(self, x, args):
        params, ell = args
        n = ell.size
        z, v, p = x[:n], x[n:2 * n], x[-1]
        f, jv = jax.jvp(lambda w: self.cont(w, p, params), (z,), (v,))
        return jnp.concatenate([f, jv, jnp.atleast_1d(ell @ v - 1.0)])

    def p(self, x, n):
        return x[-1]


class HopfSystem(AbstractExtended):
    def __call__(self, x, args):
        params, ell = args
        n = ell.size
        z, a, b, omega, p = x[:n], x[n:2 * n], x[2 * n:3 * n], x[-2], x[-1]
        f, jvp = jax.linearize(lambda w: self.cont(w, p, params), z)
        return jnp.concatenate([f, jvp(a) + omega * b, jvp(b) - omega * a,
                                jnp.stack([ell @ a - 1.0, ell @ b])])

    def p(self, x, n):
        return x[-1]


class BranchPointSystem(AbstractExtended):
    def __call__(self, x, args):
        params, ell = args
        n = ell.size
        z, p, psi, mu = x[:n], x[n], x[n + 1:2 * n + 1], x[-1]
        f, vjp = jax.vjp(lambda w, q: self.cont(w, q, params), z, p)
        jt_psi, fp_psi = vjp(psi)
        return jnp.concatenate([f + mu * psi, jt_psi, jnp.stack([fp_psi, psi @ psi - 1.0])])

    def p(self, x, n):
        return x[n]


SYSTEMS = {"fold": FoldSystem, "hopf": HopfSystem, "branch_point": BranchPointSystem}


@eqx.filter_jit
def solve_extended(system, x0, params, ell, solver, max_steps):
    """Newton on ``system`` from x0: (x, converged, ‖system(x)‖∞)."""
    sol = optx.root_find(system, solver, x0, args=(params, ell), max_steps=max_steps,
                         throw=False)
    residual = jnp.max(jnp.abs(system(sol.value, (params, ell))))
    ok = (sol.result == optx.RESULTS.successful) & jnp.all(jnp.isfinite(sol.value))
    return sol.value, ok, residual


def fold_guess(z, p, v):
    """x0 and ℓ of the fold system from a state and an approximate null vector v."""
    v = v / jnp.linalg.norm(v)
    return jnp.concatenate([z, v, jnp.atleast_1d(p)]), v


def hopf_guess(z, p, value, vector):
    """x0 and ℓ of the Hopf system from an eigenpair (λ ≈ iω, q) with Im λ > 0."""
    real, imag = jnp.real(vector), jnp.imag(vector)
    ell = jnp.where(jnp.linalg.norm(real) >= jnp.linalg.norm(imag), real, imag)
    ell = ell / jnp.linalg.norm(ell)
    q = vector / (ell @ vector)
    x0 = jnp.concatenate([z, jnp.real(q), jnp.imag(q), jnp.stack([jnp.imag(value), p])])
    return x0, ell


def branch_point_guess(z, p, psi):
    """x0 of Moore's system from a state and an approximate left null vector ψ."""
    psi = psi / jnp.linalg.norm(psi)
    x0 = jnp.concatenate([z, jnp.atleast_1d(p), psi, jnp.zeros(1, z.dtype)])
    return x0, psi


__all__ = ["FoldSystem", "HopfSystem", "BranchPointSystem", "SYSTEMS", "solve_extended",
           "fold_guess", "hopf_guess", "branch_point_guess"]
