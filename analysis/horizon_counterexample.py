r"""horizon-counterexample: the finite-horizon gradient that the equilibrium lacks.

F_k(z) = −k (z − z*), L = ½ (z − y)². The fixed point does not depend on k,
so dL(z*)/dk = 0 (the oracle), while the deployed z_T = z* + ρ^T (z_0 − z*)
with ρ = 1 − εk gives (seed 002)

    dL(z_T)/dk = (z_T − y) · T ρ^{T−1} · (−ε) (z_0 − z*).

The study computes both with the engine (Implicit, BPTT), checks BPTT against
the closed form, and sweeps ρ and T to show |dL(z_T)/dk| growing as ρ → 1.
"""

from typing import Annotated

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field, model_validator

import flowsim
from flowsim.run import StudyConfig
from flowsim.systems import ScalarContraction

from .common import save_figure

MAX_STEPS = 10**6  # a horizon beyond this is a typo, not a study (one compiled loop per T)


class Config(StudyConfig):
    k: float = Field(0.5, description="contraction rate of F_k(z) = -k (z - z_star)")
    dt: float = Field(0.1, gt=0, description="Euler step: rho = 1 - dt k")
    steps: int = Field(150, ge=1, le=MAX_STEPS, description="the deployed horizon T")
    z0: float = 0.0
    z_star: float = 1.0
    y: float = Field(2.0, description="L = (z - y)^2 / 2")
    sweep_horizons: list[Annotated[int, Field(ge=1, le=MAX_STEPS)]] = Field(
        [10, 50, 150, 600], min_length=1)
    sweep_points: int = Field(60, ge=2, le=10**4, description="values of rho in the plot")
    rho_min: float = Field(0.8, gt=0)
    rho_max: float = Field(1.02, gt=0)

    @model_validator(mode="after")
    def _rho_range(self):
        if not self.rho_min < self.rho_max:
            raise ValueError(f"rho_min ({self.rho_min}) must be below rho_max ({self.rho_max})")
        return self


def closed_form(k, dt, steps, z0, z_star, y):
    rho = 1.0 - dt * k
    z_t = z_star + rho**steps * (z0 - z_star)
    return (z_t - y) * steps * rho ** (steps - 1) * (-dt) * (z0 - z_star)


def _loss(z, y):
    return 0.5 * (z - y) ** 2


def finite_horizon_gradient(k, dt, steps, z0, z_star, y, max_steps=None):
    system = ScalarContraction(z_star=z_star)
    grads, info = flowsim.gradient(flowsim.BPTT(steps, dt, max_steps=max_steps),
                                   flowsim.Problem(system.field, _loss), jnp.asarray(z0),
                                   system.init_params(k), None, jnp.asarray(y))
    return float(grads["k"]), info


def run(config, ctx):
    k, dt, steps = config.k, config.dt, config.steps
    z0, z_star, y = config.z0, config.z_star, config.y
    system = ScalarContraction(z_star=z_star)
    oracle, oracle_info = flowsim.gradient(flowsim.Implicit(), flowsim.Problem(system.field, _loss),
                                           jnp.asarray(z0), system.init_params(k), None,
                                           jnp.asarray(y))
    bptt, bptt_info = finite_horizon_gradient(k, dt, steps, z0, z_star, y)
    exact = closed_form(k, dt, steps, z0, z_star, y)

    rows, relative_errors = [], []
    rhos = np.linspace(config.rho_min, config.rho_max, config.sweep_points)
    jobs = [(horizon, rho) for horizon in config.sweep_horizons for rho in rhos]
    bound = max(config.sweep_horizons)  # one compiled loop for the whole sweep
    for horizon, rho in ctx.progress(jobs, desc="rho x T sweep"):
        k_sweep = (1.0 - rho) / dt
        grad, _ = finite_horizon_gradient(k_sweep, dt, int(horizon), z0, z_star, y, bound)
        reference = closed_form(k_sweep, dt, int(horizon), z0, z_star, y)
        # Relative where the gradient is not vanishingly small (ρ^T underflows at
        # small ρ and large T: roundoff leaves ~1e-15 there), absolute below 1e-9.
        relative_errors.append(abs(grad - reference) / max(abs(reference), 1e-9))
        rows.append({"T": int(horizon), "rho": float(rho), "k": k_sweep, "grad_bptt": grad,
                     "grad_closed_form": reference, "abs_error": abs(grad - reference)})
    ctx.write_metrics(rows)
    _plot(rows, config, ctx.plot_path("grad_vs_rho"))
    summary = {
        "rho": 1.0 - dt * k,
        "grad_equilibrium": float(oracle["k"]),
        "grad_finite_horizon": bptt,
        "grad_closed_form": exact,
        "residual_at_T": float(bptt_info["residual"]),
        "max_abs_error": abs(bptt - exact),
        "max_rel_error_sweep": max(relative_errors),
        "oracle_result": flowsim.result_name(oracle_info["result"]),
    }
    return summary


def _plot(rows, config, path):
    fig, ax = plt.subplots(figsize=(6.6, 4.4))
    for horizon in config.sweep_horizons:
        sel = [r for r in rows if r["T"] == horizon]
        rho = [r["rho"] for r in sel]
        # the closed form wide and pale underneath, the measured gradient as points on it
        (line,) = ax.semilogy(rho, [abs(r["grad_closed_form"]) for r in sel], "-", lw=6,
                              alpha=0.3)
        ax.semilogy(rho, [abs(r["grad_bptt"]) for r in sel], "o", ms=2.5,
                    color=line.get_color(), label=f"T = {horizon}")
    ax.axvline(1.0, color="gray", lw=0.8, ls="--", label="rho = 1 (no contraction)")
    ax.plot([], [], "-", lw=6, alpha=0.3, color="gray", label="closed form (pale band)")
    ax.set_ylim(bottom=1e-10)  # below this the curves are roundoff
    ax.set_xlabel(r"$\rho = 1 - \varepsilon k$")
    ax.set_ylabel(r"$|dL(z_T)/dk|$ (BPTT, points)")
    ax.set_title("Finite-horizon gradient vs contraction; dL(z*)/dk = 0", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, path)
