"""Seed 003's energy coordinator: Landau modules on [0, 1]ⁿ, couplings and gates, one energy.

Modules carry order parameters η ∈ [0, 1]; families of local terms and
couplings (:mod:`.terms`) are arrays, so the total energy 𝓕 and its
gradient are a few gathers and segment sums under jit at any n
(:mod:`.system`). 𝓕 is relaxed by a monotone projected-gradient solver
(:mod:`.relax`) or by the projected gradient flow as a diffrax ODE
(:mod:`.flow`); the engine's equilibrium, spectral and oracle tools see it
through :class:`ProjectedResidualField`, with :class:`MonotoneRelaxation`
as their warm start.
"""

from .fast import MonotoneRelaxation
from .flow import ProjectedGradientFlow, ProjectedSolver, flow, tangent_field
from .gate import gate, hazard_gate
from .relax import ProjectedGradient, Relaxed, delta_f90, relax
from .system import Coordinator, ProjectedResidualField, check_state, stationarity
from .terms import (
    AbstractTerm,
    AsymmetricHinge,
    DirectedHinge,
    GateBenefit,
    Landau,
    OneSided,
    Quadratic,
)

__all__ = ["AbstractTerm", "AsymmetricHinge", "Coordinator", "DirectedHinge", "GateBenefit",
           "Landau", "MonotoneRelaxation", "OneSided", "ProjectedGradient", "ProjectedGradientFlow",
           "ProjectedResidualField", "ProjectedSolver", "Quadratic", "Relaxed", "check_state",
           "delta_f90", "flow", "gate", "hazard_gate", "relax", "stationarity", "tangent_field"]
