"""flowsim: learning schemes as continuous-time dynamical systems.

Every scheme is an ODE solved by diffrax; equilibria come from optimistix and
the exact gradient (the oracle) from a lineax adjoint solve. The public names
below, and the subpackages (``flowsim.fep``, ``flowsim.ep``, ``flowsim.rules``,
``flowsim.solvers``, ``flowsim.train``, ``flowsim.systems``, ``flowsim.data``, ``flowsim.bifurcation``,
``flowsim.diagnostics``, ``flowsim.gle``, ``flowsim.trajectory``, ``flowsim.parallel``), are
imported on first use, so that ``import flowsim`` (and the ``flowsim`` command) does not
pay for JAX until it needs it.
"""

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "Problem": "problem", "ParametrisedLoss": "problem", "GradientField": "problem",
    "gradient_field": "problem",
    "RESULTS": "_results", "result_name": "_results",
    "AbstractFastSolver": "solvers", "solve": "solvers", "Relaxation": "solvers",
    "relax": "solvers", "relax_trajectory": "solvers", "SteadyState": "solvers",
    "EquilibriumSolver": "solvers", "equilibrium": "solvers", "NewtonKrylov": "solvers",
    "AbstractRule": "rules", "gradient": "rules", "Implicit": "rules", "BPTT": "rules",
    "Forward": "rules", "RBP": "rules", "EP": "rules", "HolomorphicEP": "rules",
    "EnergyGradient": "rules", "Penalized": "rules", "ContractionPenalty": "rules",
    "residual": "diagnostics", "spectral_radius": "diagnostics", "cosine": "diagnostics",
    "relative_error": "diagnostics",
}
_SUBPACKAGES = ("bifurcation", "data", "diagnostics", "ep", "fep", "gle", "parallel", "problem",
                "rules", "solvers", "systems", "train", "trajectory")

__all__ = sorted(_EXPORTS) + list(_SUBPACKAGES)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'flowsim' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
