"""Result codes shared by every solve in flowsim (the optimistix/lineax pattern)."""

import equinox as eqx


class RESULTS(eqx.Enumeration):
    """Why a fast solve or a learning rule's estimate ended.

    Only ``RESULTS.successful`` means the accompanying number can be trusted
    as it stands; ``samples_failed`` means it holds for the converged samples
    of a batch only (``info["failed_samples"]`` counts the others).
    """

    successful = ""
    max_steps_reached = "The solver reached its maximum number of steps."
    nonfinite = "The state or the gradient became non-finite (the dynamics diverged)."
    equilibrium_failed = "The equilibrium solve did not reach its tolerance."
    linear_solve_failed = (
        "The adjoint linear solve (GMRES) did not converge: breakdown, stagnation "
        "or maximum steps."
    )
    not_steady = (
        "The flow did not reach a steady state: the norm of the vector field is above "
        "its tolerance at the final time."
    )
    unstable_equilibrium = (
        "The equilibrium found is not stable under the relaxation that is deployed "
        "(rho(I + dt F_z) >= 1, or an eigenvalue of F_z with Re >= 0 for the flow): the "
        "dynamics would not reach it. Solve with stability='ignore' to accept it."
    )
    samples_failed = (
        "The solve failed on some samples of the batch; the estimate is over the "
        "converged samples only (see info['failed_samples'])."
    )
    line_search_failed = (
        "The line search found no step that lowers the energy (every halving failed): "
        "the state returned is the best one found, short of the stationarity tolerance."
    )


NAMES = ("successful", "max_steps_reached", "nonfinite", "equilibrium_failed",
         "linear_solve_failed", "not_steady", "unstable_equilibrium", "samples_failed",
         "line_search_failed")


def result_name(code) -> str:
    """The name of a result code (``"successful"``, ``"equilibrium_failed"``, ...)."""
    for name in NAMES:
        if bool(code == getattr(RESULTS, name)):
            return name
    raise ValueError(f"unknown result code {code!r}")


def result_index(name: str) -> int:
    """The integer a result code is stored as (for arrays of per-sample codes)."""
    return NAMES.index(name)
