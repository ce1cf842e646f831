"""Fast solvers: how the fast state is computed before a learning rule reads it.

relaxation.py     Relaxation (T Euler steps: the deployed computation), relax, relax_trajectory
steady_state.py   SteadyState (adaptive flow stopped by an event on the vector field)
newton_krylov.py  NewtonKrylov (inexact Newton, an optimistix root finder that counts products)
equilibrium.py    EquilibriumSolver (warm start, Newton–Krylov, retries), equilibrium
_base.py          AbstractFastSolver and solve (per sample for a batched problem)
"""

from ._base import AbstractFastSolver, solve, summarise
from .equilibrium import EquilibriumSolver, equilibrium
from .newton_krylov import NewtonKrylov
from .relaxation import Relaxation, relax, relax_trajectory
from .steady_state import SteadyState

__all__ = ["AbstractFastSolver", "solve", "summarise", "Relaxation", "relax", "relax_trajectory",
           "SteadyState", "NewtonKrylov", "EquilibriumSolver", "equilibrium"]
