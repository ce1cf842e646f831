"""Result codes shared by every solve in flowsim (the optimistix/lineax pattern)."""

import equinox as eqx


class RESULTS(eqx.Enumeration):
    """Why a relaxation, equilibrium solve or gradient estimate ended.

    Only ``RESULTS.successful`` means the accompanying number can be trusted.
    """

    successful = ""
    max_steps_reached = "The solver reached its maximum number of steps."
    nonfinite = "The state or the gradient became non-finite (the dynamics diverged)."
    equilibrium_failed = "The equilibrium solve did not reach its tolerance."
    linear_solve_failed = (
        "The adjoint linear solve (GMRES) did not converge: breakdown, stagnation "
        "or maximum steps."
    )


def result_name(code) -> str:
    """The name of a result code (``"successful"``, ``"equilibrium_failed"``, ...)."""
    for name in ("successful", "max_steps_reached", "nonfinite", "equilibrium_failed",
                 "linear_solve_failed"):
        if bool(code == getattr(RESULTS, name)):
            return name
    raise ValueError(f"unknown result code {code!r}")
