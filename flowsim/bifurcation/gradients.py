r"""Gradients of bifurcation points, dp*/dθ, by the implicit function theorem.

A located point is a regular root x*(θ) of its extended system E(x; θ) = 0
(:mod:`.locate`), θ the params other than the continued one. Then

    dx*/dθ = −E_x⁻¹ E_θ,

and dp*/dθ is its p-row. ``optimistix.root_find`` with ``ImplicitAdjoint``
applies exactly this when ``jax.grad`` passes through the solve, so the
gradient below is the Newton solve of :mod:`.locate` differentiated by JAX:
one linear solve with E_xᵀ (dense, or GMRES above the size limit), second
derivatives of F exact (the fold and Hopf systems contain F_z v). The
established continuation packages difference their augmented systems instead.
"""

import jax
import jax.numpy as jnp
import optimistix as optx

from .continuation import ContinuationOptions, newton
from .extended import Continuable
from .locate import SYSTEMS
from .parameter import as_parameter


def bifurcation_gradient(field, point, params, parameter, names,
                         options: ContinuationOptions = ContinuationOptions()) -> dict:
    """``{name: dp*/dθ_name}`` for the located ``point`` (a ``BifurcationPoint``).

    ``names``: keys of the dict ``params`` (not the continued parameter itself).
    """
    parameter = as_parameter(parameter)
    bad = [name for name in names if name not in params or name == parameter.name]
    if bad:
        valid = sorted(k for k in params if k != parameter.name)
        raise ValueError(f"cannot differentiate by {bad[0]!r}: choose among {valid}")
    cont = Continuable(field, parameter)
    system = SYSTEMS[point.kind](cont)
    x0 = jnp.asarray(point.solution)
    ell = jnp.asarray(point.ell)
    n = point.z.size
    solver = newton(options, x0.size, x0.dtype)
    adjoint = optx.ImplicitAdjoint(linear_solver=options.linear.solver(x0.size))

    def located(theta):
        sol = optx.root_find(system, solver, x0, args=({**params, **theta}, ell),
                             adjoint=adjoint, max_steps=options.max_locate_steps, throw=False)
        return system.p(sol.value, n)

    theta = {name: jnp.asarray(params[name], x0.dtype) for name in names}
    grads = jax.jit(jax.grad(located))(theta)
    return {name: float(value) if jnp.ndim(value) == 0 else value for name, value in grads.items()}


__all__ = ["bifurcation_gradient"]
