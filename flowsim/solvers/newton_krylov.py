r"""Inexact Newton–Krylov: an optimistix root finder that counts its matrix-vector products.

Each step linearises F at z (``jax.linearize``: F_z is never materialised),
solves the Newton system F_z δ = −F(z) by ``lineax.GMRES`` to a relative
tolerance η (the forcing term), and moves z ← z + δ:

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
with F_z its inner GMRES made. This solver lives in optimistix's framework
(``optimistix.root_find`` drives it and returns its state) and reports
``sol.stats["matvecs"]``: one product per evaluation of F, per Arnoldi
vector and per residual of lineax's restarted GMRES.
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

DIVERGED = 1e8  # ‖z‖ beyond this many times the start's scale: Newton has left


def gmres_matvecs(num_steps, restart: int):
    """Products with the operator in a lineax GMRES solve of ``num_steps`` restart cycles.

    lineax's first cycle only forms the initial residual (one product); each
    later cycle builds ``restart`` Arnoldi vectors and one new residual.
    """
    return 1 + jnp.maximum(num_steps - 1, 0) * (restart + 1)


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
        forcing: the largest GMRES relative tolerance η.
        restart: GMRES restart length (Krylov vectors per cycle).
        gmres_max_steps: GMRES restart cycles per Newton step.
    """

    rtol: float | None = None
    atol: float | None = None
    norm: Callable = eqx.field(static=True, default=euclidean_norm)
    forcing: float = 1e-2
    restart: int = eqx.field(static=True, default=20)
    gmres_max_steps: int = eqx.field(static=True, default=50)

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
        # lineax tests |r_i| ≤ atol + rtol |b_i| entry by entry: an atol on the scale
        # of the largest entry keeps entries where F is near 0 from stalling it.
        atol = eta * jnp.max(jnp.asarray([jnp.max(jnp.abs(u)) for u in jax.tree.leaves(f)]))
        gmres = lx.GMRES(rtol=eta, atol=atol, restart=self.restart,
                         max_steps=self.gmres_max_steps)
        sol = lx.linear_solve(operator, f, gmres, throw=False)
        new_y = jax.tree.map(lambda u, d: u - d, y, sol.value)
        new_f, aux = fn(new_y, args)
        f_norm = self.norm(new_y, new_f)
        matvecs = state.matvecs + 2 + gmres_matvecs(sol.stats["num_steps"], self.restart)
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


__all__ = ["NewtonKrylov", "gmres_matvecs"]
