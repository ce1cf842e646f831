r"""The monotone relaxation as an engine fast solver: a warm start that cannot find a saddle.

:class:`MonotoneRelaxation` runs :func:`flowsim.coordinator.relax` on the
energy behind a :class:`~flowsim.coordinator.ProjectedResidualField`,
E(η) = ``field.energy(η, params, x)``, from ``z0``. Its steps never raise E,
so from almost every start it ends near a local minimum on [0, 1]ⁿ, never
near a maximum or (generically) a saddle. Given to
:class:`flowsim.EquilibriumSolver` as ``warm_start``, Newton then only
polishes a root that is already the right one: on a non-convex energy (the
gated couplings of ``coordinator-learn``) Newton started after a fixed
number of Euler steps can converge to an unstable root or wander, and the
estimator's step is lost.

``info``: ``residual`` is ``norm(z, F(z))`` at the returned state,
``matvecs`` the relaxation's energy-and-gradient evaluations, ``result`` its
code (``line_search_failed`` at the roundoff floor is a state Newton can
still polish, so it is reported as it is and Newton decides).
"""

import equinox as eqx

from ..problem import euclidean_norm
from ..solvers._base import AbstractFastSolver
from .relax import ProjectedGradient, relax


class _Bound(eqx.Module):
    """E(η) = energy(η, params, x) with (params, x) held as pytree leaves, not closed over."""

    energy: object
    params: object
    x: object

    def __call__(self, eta):
        return self.energy(eta, self.params, self.x)


class MonotoneRelaxation(AbstractFastSolver):
    """Relax a :class:`ProjectedResidualField`'s energy monotonically (options: ``solver``)."""

    solver: ProjectedGradient = ProjectedGradient()

    def solve(self, field, z0, params, x, norm=euclidean_norm):
        if not hasattr(field, "energy"):
            raise TypeError("MonotoneRelaxation needs a field with an energy "
                            f"(a ProjectedResidualField), got {type(field).__name__}")
        relaxed = relax(_Bound(field.energy, params, x), z0, self.solver)
        z = relaxed.eta
        return z, {"residual": norm(z, field(z, params, x)), "matvecs": relaxed.evaluations,
                   "result": relaxed.result}


__all__ = ["MonotoneRelaxation"]
