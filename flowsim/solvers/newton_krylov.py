r"""Inexact Newton–Krylov: an optimistix root finder that counts its matrix-vector products.

Each step linearises F at z (``jax.linearize``: F_z is never materialised),
solves the Newton system F_z δ = −F(z) by a lineax Krylov solver
(:mod:`flowsim.solvers.krylov`, BiCGStab by default) to a relative tolerance η
(the forcing term), and moves z ← z + δ:

    η_k = clip(‖F(z_k)‖ / (1 + ‖z_k‖), η_min, forcing),

loose far from the root (where an exact Newton step is wasted) and tight
near it, so the convergence stays superlinear (Eisenstat & Walker 1996, in
its simplest form). The iteration stops with success when

    ‖F(z)‖ ≤ atol + rtol ‖z_0‖          (``norm(z, F)``, the problem's norm),

z_0 the starting point (the scale is fixed at the start: a diverging iterate
must not loosen its own test), and with failure (optimistix's
``nonlinear_divergence``) when ‖F(z)‖ is not finite or ‖z‖ exceeds
10⁸ (1 + ‖z_0‖), or after ``max_steps`` (optimistix's own bound). The
defaults are rtol = atol = ε^{3/4} of the state's dtype.

Why not ``optimistix.Newton``: it terminates on the size of the step (a
Cauchy test), not on the residual, and it does not report how many products
with F_z its inner solves made. This solver lives in optimistix's framework
(``optimistix.root_find`` drives it and returns its state) and reports
``sol.stats["matvecs"]``: one product per evaluation of F and per product of
the inner Krylov solves (:func:`~flowsim.solvers.krylov.products`).
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx

from .._tolerance import linear_tolerance, residual_tolerance, tree_dtype
from .._trees import tree_all_finite, tree_norm
from ..problem import euclidean_norm
from .krylov import bicgstab, gmres, krylov_solve

DIVERGED = 1e8  # ‖z‖ beyond this many times the start's scale: Newton has left


class _State(eqx.Module):
    f: Any
    f_norm: jax.Array
    scale: jax.Array
    matvecs: jax.Array
    diverged: jax.Array


class NewtonKrylov(optx.AbstractRootFinder):
    """Inexact Newton with a GMRES inner solve (see the module docstring).

    Attributes:
        rtol, atol: the residual test ‖F(z)‖ ≤ atol + rtol‖z_0‖ (default ε^{3/4}).
        norm: ``norm(z, f)``, the norm of the residual (the problem's metric).
        forcing: the largest relative tolerance η of the inner solve.
        linear_solver: the lineax Krylov template of the inner solve (BiCGStab).
        fallback: the template that solves again where it failed (GMRES(5)).
    """

    rtol: float | None = None
    atol: float | None = None
    norm: Callable = eqx.field(static=True, default=euclidean_norm)
    forcing: float = 0.1
    linear_solver: lx.AbstractLinearSolver = eqx.field(static=True, default=bicgstab())
    fallback: lx.AbstractLinearSolver | None = eqx.field(static=True, default=gmres(5, 100))

    def tolerances(self, y):
        default = residual_tolerance(tree_dtype(y))
        rtol = default if self.rtol is None else self.rtol
        atol = default if self.atol is None else self.atol
        return rtol, atol

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        del options, f_struct, aux_struct, tags
        f, _ = fn(y, args)
        f_norm = self.norm(y, f)
        return _State(f=f, f_norm=f_norm, scale=tree_norm(y), matvecs=jnp.asarray(1),
                      diverged=~jnp.isfinite(f_norm))

    def step(self, fn, y, args, options, state, tags):
        del options
        f, linear = jax.linearize(lambda u: fn(u, args)[0], y)
        operator = lx.FunctionLinearOperator(linear, jax.eval_shape(lambda: y), tags=tags)
        dtype = tree_dtype(y)
        floor = linear_tolerance(dtype)
        eta = jnp.clip(tree_norm(f) / (1.0 + tree_norm(y)), floor, self.forcing).astype(dtype)
        step, _, products = krylov_solve(self.linear_solver, operator, f, eta, self.fallback)
        new_y = jax.tree.map(lambda u, d: u - d, y, step)
        new_f, aux = fn(new_y, args)
        f_norm = self.norm(new_y, new_f)
        matvecs = state.matvecs + 2 + products
        bounded = tree_norm(new_y) <= DIVERGED * (1.0 + state.scale)
        diverged = ~(jnp.isfinite(f_norm) & tree_all_finite(new_y) & bounded)
        return new_y, _State(f=new_f, f_norm=f_norm, scale=state.scale, matvecs=matvecs,
                             diverged=diverged), aux

    def terminate(self, fn, y, args, options, state, tags):
        del fn, args, options, tags
        rtol, atol = self.tolerances(y)
        converged = (state.f_norm <= atol + rtol * state.scale) & ~state.diverged
        result = optx.RESULTS.where(state.diverged, optx.RESULTS.nonlinear_divergence,
                                    optx.RESULTS.successful)
        return converged | state.diverged, result

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        del fn, args, options, tags, result
        return y, aux, {"matvecs": state.matvecs, "residual": state.f_norm}


__all__ = ["NewtonKrylov"]
