r"""The map (z, p) ↦ F(z, params(p)) on one flat vector u = (z, p), and its linear algebra.

Every continuation and location step solves a linear system with a Jacobian of
F (bordered, or of an extended system). Below ``dense_max`` unknowns the
Jacobian is formed (one JVP per column) and LU-factorised; above it the solve
is matrix-free: lineax GMRES on JVPs, F_z never formed, and where GMRES fails
lineax LSMR (a least-squares Krylov method on JVPs and VJPs). The fallback is
needed: the extended systems couple F_z with F_zᵀ (Moore's branch-point
system) or with ±iω (Hopf), and their spectra can surround the origin, where
restarted GMRES stagnates however well conditioned the matrix is (measured: a
branch-point system of a 500-unit ring, condition number 2.6, eigenvalues with
real parts from −1.2 to 1.2, stagnated in lineax's and scipy's GMRES); LSMR's
convergence depends on the singular values only.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from .parameter import AbstractParameter


class Continuable(eqx.Module):
    """F(z, p; params) of ``field(z, params)`` with ``parameter`` set to p."""

    field: callable
    parameter: AbstractParameter

    def __call__(self, z, p, params):
        return self.field(z, self.parameter.set(params, p))

    def flat(self, u, params):
        return self(u[:-1], u[-1], params)

    def jvp_z(self, z, p, params):
        """v ↦ F_z(z, p) v (linearised once)."""
        return jax.linearize(lambda w: self(w, p, params), z)[1]

    def vjp_z(self, z, p, params):
        """w ↦ F_zᵀ(z, p) w."""
        return jax.vjp(lambda y: self(y, p, params), z)[1]


class Fallback(lx.AbstractLinearSolver):
    """``first``; where it fails or returns a non-finite solution, ``second``."""

    first: lx.AbstractLinearSolver
    second: lx.AbstractLinearSolver

    def init(self, operator, options):
        return self.first.init(operator, options), self.second.init(operator, options)

    def compute(self, state, vector, options):
        first_state, second_state = state
        solution, result, _ = self.first.compute(first_state, vector, options)
        failed = (result != lx.RESULTS.successful) | ~jnp.all(jnp.isfinite(solution))

        def again(_):
            value, res, _ = self.second.compute(second_state, vector, options)
            return value, res

        solution, result = jax.lax.cond(failed, again, lambda _: (solution, result), None)
        return solution, result, {}

    def transpose(self, state, options):
        (first, first_options), (second, _) = (self.first.transpose(state[0], options),
                                               self.second.transpose(state[1], options))
        return (first, second), first_options

    def conj(self, state, options):
        (first, first_options), (second, _) = (self.first.conj(state[0], options),
                                               self.second.conj(state[1], options))
        return (first, second), first_options

    def assume_full_rank(self):
        return True


class LinearSolve(eqx.Module):
    """Dense LU up to ``dense_max`` unknowns, else GMRES(``restart``) to ``rtol`` with
    LSMR as the fallback."""

    dense_max: int = eqx.field(static=True, default=4000)
    rtol: float = eqx.field(static=True, default=1e-12)
    restart: int = eqx.field(static=True, default=60)
    max_steps: int = eqx.field(static=True, default=200)

    def solver(self, size: int) -> lx.AbstractLinearSolver:
        if size <= self.dense_max:
            return lx.LU()
        gmres = lx.GMRES(rtol=self.rtol, atol=self.rtol, restart=self.restart,
                         max_steps=self.max_steps)
        lsmr = lx.LSMR(rtol=self.rtol, atol=self.rtol, max_steps=self.max_steps * self.restart,
                       conlim=1e12)
        return Fallback(gmres, lsmr)

    def operator(self, apply, like, size):
        """A lineax operator for the linear map ``apply`` on vectors shaped like ``like``;
        materialised when the solve is dense."""
        op = lx.FunctionLinearOperator(apply, jax.ShapeDtypeStruct(like.shape, like.dtype))
        return lx.MatrixLinearOperator(op.as_matrix()) if size <= self.dense_max else op

    def __call__(self, apply, rhs):
        """x with apply(x) = rhs, and whether the solve succeeded."""
        size = rhs.size
        sol = lx.linear_solve(self.operator(apply, rhs, size), rhs, self.solver(size),
                              throw=False)
        ok = (sol.result == lx.RESULTS.successful) & jnp.all(jnp.isfinite(sol.value))
        return sol.value, ok
