r"""Fast solvers: the family, its contract, and the batched entry point.

A fast solver brings the fast state z to where a learning rule reads it:

    solver.solve(field, z0, params, x, norm) -> (z, info)

for ONE system (one sample, or a whole unbatched state). ``info`` has at
least ``residual`` (``norm(z, F(z))`` at the returned state), ``matvecs``
(evaluations of F and products with F_z or F_zᵀ, counted as the algorithm
performs them) and ``result`` (a :class:`flowsim.RESULTS` code). A failed
solve is a result code, never a silently wrong state.

:func:`solve` applies a solver to a :class:`flowsim.Problem`: once for an
unbatched problem, per sample (``jax.vmap``) for a batched one, so each
sample has its own tolerance and result code.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp

from .._results import RESULTS
from ..problem import euclidean_norm


class AbstractFastSolver(eqx.Module):
    """A way to compute the fast state: relaxation, steady state, equilibrium, trajectory."""

    @abc.abstractmethod
    def solve(self, field, z0, params, x, norm=euclidean_norm):
        """``(z, info)`` for one system; see the module docstring."""
        raise NotImplementedError


def solve(solver: AbstractFastSolver, problem, z0, params, x):
    """``(z, info)`` of ``solver`` on ``problem``: per sample when the problem is batched.

    For a batched problem every value of ``info`` has the batch on its leading
    axis (``info["result"]`` holds one code per sample).
    """
    one = lambda z, p, u: solver.solve(problem.field, z, p, u, problem.norm)
    if not problem.batched:
        return one(z0, params, x)
    return jax.vmap(one, in_axes=(0, problem.params_axes, 0))(z0, params, x)


def summarise(info, batched: bool) -> dict:
    """The batch's ``failed_samples``, ``sample_results``, worst ``residual`` and total ``matvecs``.

    ``result`` is ``successful`` when every sample converged, ``samples_failed``
    when some did, and the first failed sample's code when none did.
    """
    results = info["result"]
    ok = results == RESULTS.successful
    if not batched:
        return {"result": results, "sample_results": results,
                "failed_samples": jnp.asarray(~ok, jnp.int32), "ok": ok,
                "residual": info["residual"], "matvecs": info["matvecs"]}
    first_failed = jax.tree.map(lambda v: v[jnp.argmin(ok)], results)
    result = RESULTS.where(jnp.all(ok), RESULTS.successful,
                           RESULTS.where(jnp.any(ok), RESULTS.samples_failed, first_failed))
    return {"result": result, "sample_results": results,
            "failed_samples": jnp.sum(~ok).astype(jnp.int32), "ok": ok,
            "residual": jnp.max(info["residual"]), "matvecs": jnp.sum(info["matvecs"])}


__all__ = ["AbstractFastSolver", "solve", "summarise"]
