r"""lyapunov: the k largest Lyapunov exponents of a shipped system, by the QR method.

The engine is :func:`flowsim.bifurcation.lyapunov.lyapunov_exponents` (its module
docstring has the maths): state and k tangent vectors integrated together
(diffrax Tsit5, PID control, tangents by JVPs), re-orthonormalised by QR every
``interval``, λ_i = (1/T) Σ log|R_ii| over ``t_final`` after a ``transient``.

The start is ``system.start(params)`` plus a random perturbation of norm
``perturbation`` (direction from the seed). Most shipped systems start on an
equilibrium: unperturbed, the run would stay there and return that
equilibrium's exponents, the real parts of the eigenvalues of F_z(z*). Even
perturbed, it leaves an unstable equilibrium only after about
log(1/perturbation)/Re λ_u (Lorenz's C₊ at ρ = 28: Re λ_u = 0.094, so about 50
time units from 0.01): the ``transient`` must cover that, or the exponents
reported are those of the neighbourhood of the equilibrium. Near a stable
equilibrium they are its eigenvalues' real parts, which is the right answer.

Reported: λ_1 … λ_k and their sum; for Lorenz with all three, the divergence
−(σ + 1 + β) that the sum must equal at every T (Liouville) and ``sum_error``,
the test of the integration; ``spread`` ≈ (λ_1 − λ_k)Δ, which must stay far
below log(1/ε) (see the engine's "The interval"). A failed integration is a
completed run: ``result`` names the failure and the exponents are NaN.
Metrics: one row per interval, t and the running estimates λ_i(t).
"""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field, model_validator

from flowsim import RESULTS, result_name
from flowsim.bifurcation.lyapunov import lyapunov_exponents
from flowsim.run import StudyConfig
from flowsim.run.registry import build_system, with_systems

from .common import save_figure

_Base = with_systems(StudyConfig, "system", "lorenz", "LyapunovConfig")


class Config(_Base):
    t_final: float = Field(1000.0, gt=0, le=1e7,
                           description="accumulation time T (after the transient)")
    exponents: int = Field(3, ge=1, le=10**5,
                           description="k: how many of the largest exponents")
    interval: float = Field(0.5, gt=0, description="re-orthonormalisation interval "
                            "(keep (lambda_1 - lambda_k) * interval a few units)")
    transient: float = Field(100.0, ge=0, le=1e7,
                             description="time evolved and discarded first (state and tangents)")
    perturbation: float = Field(0.01, ge=0, description="norm of the random kick added to "
                                "system.start (0: start exactly there)")
    rtol: float = Field(1e-10, gt=0, lt=1, description="diffrax PID controller rtol")
    atol: float = Field(1e-10, gt=0, lt=1, description="diffrax PID controller atol")
    max_steps: int = Field(16384, ge=1, le=10**7, description="solver steps per interval")

    @model_validator(mode="after")
    def _exponents_fit(self):
        n = state_dimension(self)
        if self.exponents > n:
            raise ValueError(f"exponents = {self.exponents} exceeds the state dimension {n} of "
                             f"system {self.system}")
        if self.interval > self.t_final:
            raise ValueError(f"interval = {self.interval} must be <= t_final = {self.t_final}")
        return self


def state_dimension(config) -> int:
    system, params = build_system(config.system, config, config.seed)
    return int(jax.eval_shape(system.start, params).shape[0])


def starting_state(system, params, perturbation, seed):
    """``system.start(params)`` plus a kick of norm ``perturbation`` in a random direction."""
    z = jnp.asarray(system.start(params), float)
    direction = jax.random.normal(jax.random.PRNGKey(seed), z.shape, z.dtype)
    return z + perturbation * direction / jnp.linalg.norm(direction)


def run(config, ctx):
    system, params = build_system(config.system, config, config.seed)
    z0 = starting_state(system, params, config.perturbation, config.seed)
    out = lyapunov_exponents(system.field, z0, params, exponents=config.exponents,
                             t_final=config.t_final, interval=config.interval,
                             transient=config.transient, rtol=config.rtol, atol=config.atol,
                             max_steps=config.max_steps,
                             key=jax.random.fold_in(jax.random.PRNGKey(config.seed), 1))
    result = result_name(out.result)
    lam, running, times = (np.asarray(a, float) for a in (out.exponents, out.running, out.times))
    names = [f"lyapunov_{i}" for i in range(1, config.exponents + 1)]
    ctx.write_metrics([{"t": float(t), **{name: float(v) for name, v in zip(names, row)}}
                       for t, row in zip(times, running)])
    if result != "successful":
        ctx.log(f"integration failed ({result}): {RESULTS[out.result]} The exponents are NaN.")
    summary = {"result": result, "system": config.system, "exponents": config.exponents,
               "t_final": config.t_final, "interval": float(times[0]),
               **{name: float(v) for name, v in zip(names, lam)},
               "lyapunov_sum": float(np.sum(lam)), "spread": float(out.spread)}
    divergence = None
    if config.system == "lorenz" and config.exponents == 3:
        divergence = -(params["sigma"] + 1.0 + params["beta"])
        summary["divergence"] = divergence
        summary["sum_error"] = summary["lyapunov_sum"] - divergence
    ctx.log(f"final state (first 8 of {out.final_state.shape[0]}): "
            f"{np.array2string(np.asarray(out.final_state)[:8], precision=6)}", echo=False)
    _plot(times, running, lam, divergence, config, result, ctx.plot_path("lyapunov"))
    return summary


def _plot(times, running, lam, divergence, config, result, path):
    """One panel per running estimate (all in one when k > 4), then |λ_i(t) − λ_i(T)| on
    log-log axes with, for Lorenz, |Σλ_i(t) − divergence|: the integration error."""
    k = running.shape[1]
    panels = k if k <= 4 else 1
    fig, axes = plt.subplots(1, panels + 1, figsize=(3.6 * (panels + 1) + 1, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    errors = axes[-1]
    for i in range(k):
        color = colors[i % len(colors)]
        ax = axes[i if panels > 1 else 0]
        ax.plot(times, running[:, i], lw=1.1, color=color, label=f"λ_{i + 1}(t)")
        if np.isfinite(lam[i]):
            ax.axhline(lam[i], color="k", ls=":", lw=0.8)
            gap = np.abs(running[:-1, i] - lam[i])
            errors.loglog(times[:-1], np.where(gap > 0, gap, np.nan), lw=0.8, color=color,
                          label=f"λ_{i + 1} = {lam[i]:.4f}")
        ax.set_xscale("log")
        ax.set_xlabel("t (after the transient)")
        if panels > 1:
            ax.set_title(f"λ_{i + 1}(t) = (1/t) Σ log|R_{i + 1}{i + 1}|", fontsize=9)
    if panels == 1:
        axes[0].set_title("running estimates (1/t) Σ log|R_ii|", fontsize=9)
        axes[0].legend(fontsize=7)
    if divergence is not None:
        off = np.abs(running.sum(axis=1) - divergence)
        errors.loglog(times, np.where(off > 0, off, np.nan), "k", lw=0.8,
                      label="|Σλ_i(t) − divergence|")
    errors.set_xlabel("t")
    errors.set_title("|λ_i(t) − λ_i(T)|: 1/t bias, t^-1/2 noise", fontsize=9)
    if errors.lines:
        errors.loglog(times, 1.0 / times, color="0.5", ls="--", lw=0.8, label="1/t")
        errors.legend(fontsize=7)
    save_figure(fig, path, f"Lyapunov exponents of {config.system} (T = {config.t_final:g}, "
                f"interval {config.interval:g}, {result})")
