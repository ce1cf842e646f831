"""flowsim: learning schemes as continuous-time dynamical systems.

Every scheme is an ODE solved by diffrax; equilibria come from optimistix and the
exact equilibrium gradient (the oracle) from a lineax GMRES adjoint solve.
"""

from ._diagnostics import cosine, relative_error, residual
from ._equilibrium import EquilibriumSolver, equilibrium
from ._fields import ParametrisedLoss, gradient_field
from ._relax import relax, relax_to_steady_state, relax_trajectory
from ._results import RESULTS, result_name
from ._spectral import spectral_radius
from .estimators import (
    BPTT,
    EP,
    RBP,
    AbstractEstimator,
    Forward,
    HolomorphicEP,
    Implicit,
    gradient,
)

__version__ = "0.1.0"

__all__ = [
    "relax", "relax_trajectory", "relax_to_steady_state", "equilibrium",
    "EquilibriumSolver", "gradient", "gradient_field", "ParametrisedLoss",
    "AbstractEstimator", "Implicit", "BPTT", "Forward", "RBP", "EP", "HolomorphicEP",
    "residual", "spectral_radius", "cosine", "relative_error", "RESULTS", "result_name",
]
