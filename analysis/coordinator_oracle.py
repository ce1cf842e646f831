r"""coordinator-oracle: the engine's tools applied unchanged to the coordinator.

A coordinator 𝓕(η; θ) on [0, 1]ⁿ is handed to the engine as the field
F(η) = clip(η − ∇𝓕, 0, 1) − η (:class:`flowsim.coordinator.ProjectedResidualField`)
and the readout L = ½‖η − y‖². On a random system (Landau modules, quadratic
and hinge couplings, gates; seeded) with θ its per-family weights:

* **equilibrium**: ``flowsim.equilibrium`` (Newton–Krylov on F) against the
  monotone projected-gradient solver: ``max_abs_equilibrium_gap``.
* **stability**: the spectral diagnostics at η*: the eigenvalues of F_η on
  the free modules are those of −∇²𝓕 there (a dense ``jax.hessian``,
  independently): ``max_eigenvalue_gap``, ``stable`` (all negative).
* **oracle**: ``flowsim.Implicit`` against central finite differences of
  L(η*(θ ± h)), each η* solved to Newton's tolerance from the monotone
  solver's state: ``implicit_vs_fd_rel_error``.
* **EP**: the coordinator is a gradient system, so EP (symmetric, nudged by
  β ∂L/∂η) is unbiased: cos(EP, oracle) → 1 as β → 0 with an O(β²) error,
  ``ep_cos`` per β in metrics.csv and ``ep_error_order`` the fitted slope
  of log‖EP − oracle‖ against log β (2 for symmetric EP).

Decision rule, stated before the numbers: ``verdict = "tools agree"`` when the
equilibrium gap ≤ 1e-6, the eigenvalue gap ≤ 1e-6, the oracle's relative
error against finite differences ≤ 1e-5, and 1 − cos(EP, oracle) decreases
with β and is ≤ 1e-6 at the smallest β; otherwise "tools disagree". The
system is built with interior minima (so the bounds do not bind; where they
bind, the nudge of vector-field EP moves a bounded module off its bound and
biases it, see README).
"""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field

import flowsim
from flowsim.coordinator import (
    Coordinator,
    DirectedHinge,
    GateBenefit,
    Landau,
    ProjectedGradient,
    ProjectedResidualField,
    Quadratic,
    relax,
)
from flowsim.run import StudyConfig

from .common import save_figure

FAMILIES = ("landau", "quadratic", "hinge", "gate")


class Config(StudyConfig):
    modules: int = Field(24, ge=3, le=4096, description="modules of the random system")
    edges_per_module: float = Field(2.0, gt=0, le=16)
    betas: list[float] = Field([0.1, 0.03, 0.01, 0.003, 0.001], min_length=2,
                               description="EP nudges (each > 0)")
    fd_step: float = Field(1e-4, gt=0, le=0.1, description="central finite-difference step")
    ep_steps: int = Field(1500, ge=10, le=10**6, description="Euler steps of each nudged phase")
    ep_dt: float = Field(0.1, gt=0, le=1.0)


def random_system(n, edges_per_module, seed):
    """Arrays of a seeded random coordinator whose minima are interior (h ∈ (0.3, 0.9), a > 0)."""
    rng = np.random.default_rng(seed)
    m = max(1, int(edges_per_module * n / 3))
    edge = lambda: (rng.integers(0, n, m), rng.integers(0, n, m))
    return {"a": rng.uniform(0.5, 1.5, n), "h": rng.uniform(0.3, 0.9, n),
            "quadratic": edge(), "w_quadratic": rng.uniform(0.1, 0.5, m),
            "hinge": edge(), "w_hinge": rng.uniform(0.1, 0.5, m),
            "gate": edge(), "w_gate": rng.uniform(0.05, 0.2, m)}


def build(arrays, theta):
    """The coordinator with family weights exp(θ) (θ: one log-weight per family)."""
    n = arrays["a"].size
    scale = jnp.exp(theta)
    return Coordinator(n, [
        Landau(jnp.arange(n), arrays["a"], 1.0, arrays["h"], weight=scale[0]),
        Quadratic(*arrays["quadratic"], weight=scale[1] * arrays["w_quadratic"]),
        DirectedHinge(*arrays["hinge"], weight=scale[2] * arrays["w_hinge"]),
        GateBenefit(*arrays["gate"], slope=2.0, cost=0.6, k=4.0,
                    weight=scale[3] * arrays["w_gate"]),
    ])


def run(config, ctx):
    arrays = random_system(config.modules, config.edges_per_module, config.seed)
    theta = jnp.zeros(len(FAMILIES))
    n = config.modules
    y = jnp.asarray(np.random.default_rng(config.seed + 1).uniform(0.2, 0.8, n))
    eta0 = jnp.full(n, 0.5)
    field = ProjectedResidualField(lambda z, p, x: build(arrays, p)(z))
    problem = flowsim.Problem(field, lambda z, y: 0.5 * jnp.sum((z - y) ** 2))
    tight = ProjectedGradient(tol=1e-11)

    relaxed = relax(build(arrays, theta), eta0, tight)
    solver = flowsim.EquilibriumSolver(relax_steps=200, dt=0.2, retries=0)  # one Newton compiled
    z_star, info = flowsim.equilibrium(field, eta0, theta, None, solver)
    free = (np.asarray(z_star) > 1e-9) & (np.asarray(z_star) < 1 - 1e-9)

    hessian = np.asarray(jax.hessian(build(arrays, theta))(z_star))[np.ix_(free, free)]
    jacobian = np.asarray(jax.jacfwd(lambda z: field(z, theta, None))(z_star))[np.ix_(free, free)]
    eig_h = np.sort(np.linalg.eigvalsh(hessian))
    eig_f = np.sort(np.linalg.eigvals(jacobian).real)[::-1]

    oracle, oracle_info = flowsim.gradient(flowsim.Implicit(equilibrium=solver), problem, eta0,
                                           theta, None, y)

    @jax.jit
    def loss_at(t):  # Newton's η*(θ ± h): the monotone solver stops at its √ε floor
        eta, _ = flowsim.equilibrium(field, relaxed.eta, t, None, solver)
        return 0.5 * jnp.sum((eta - y) ** 2)

    @jax.jit
    def ep_gradient(beta):
        rule = flowsim.EP(beta, config.ep_steps, config.ep_dt, equilibrium=solver)
        return flowsim.gradient(rule, problem, eta0, theta, None, y)[0]

    fd = np.array([float(loss_at(theta.at[f].add(config.fd_step))
                    - loss_at(theta.at[f].add(-config.fd_step))) / (2 * config.fd_step)
                   for f in range(len(FAMILIES))])
    fd_error = float(np.linalg.norm(np.asarray(oracle) - fd) / np.linalg.norm(fd))

    rows = []
    for beta in ctx.progress(config.betas, desc="EP nudges"):
        ep = ep_gradient(jnp.asarray(beta))
        cos = float(flowsim.cosine(ep, oracle))
        rows.append({"beta": beta, "ep_cos": cos, "one_minus_cos": 1.0 - cos,
                     "ep_rel_error": float(jnp.linalg.norm(ep - oracle) / jnp.linalg.norm(oracle))})
    ctx.write_metrics(rows)
    betas = np.array([r["beta"] for r in rows])
    errors = np.array([max(r["ep_rel_error"], 1e-300) for r in rows])
    order = float(np.polyfit(np.log(betas), np.log(errors), 1)[0])
    _plot(rows, ctx.plot_path("ep_vs_beta"))

    equilibrium_gap = float(jnp.max(jnp.abs(z_star - relaxed.eta)))
    eigen_gap = float(np.max(np.abs(eig_f + eig_h))) if free.any() else 0.0  # both sorted
    smallest = rows[int(np.argmin(betas))]
    ep_ok = smallest["one_minus_cos"] <= 1e-6 and rows[0]["one_minus_cos"] >= smallest[
        "one_minus_cos"]
    agree = (equilibrium_gap <= 1e-6 and eigen_gap <= 1e-6 and fd_error <= 1e-5 and ep_ok)
    return {
        "verdict": "tools agree" if agree else "tools disagree",
        "equilibrium_result": flowsim.result_name(info["result"]),
        "max_abs_equilibrium_gap": equilibrium_gap,
        "free_modules": int(free.sum()),
        "max_eigenvalue_gap": eigen_gap,
        "rightmost_eigenvalue": float(eig_f[0]) if free.any() else None,
        "stable": bool(free.any() and eig_f[0] < 0),
        "implicit_vs_fd_rel_error": fd_error,
        "oracle_result": flowsim.result_name(oracle_info["result"]),
        "ep_cos_smallest_beta": smallest["ep_cos"],
        "ep_error_order": order,
    }


def _plot(rows, path):
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    betas = [r["beta"] for r in rows]
    ax.loglog(betas, [r["ep_rel_error"] for r in rows], "o-", label="‖EP − oracle‖ / ‖oracle‖")
    ax.loglog(betas, [max(r["one_minus_cos"], 1e-17) for r in rows], "s--", label="1 − cos")
    ref = np.array(betas)
    ax.loglog(ref, rows[0]["ep_rel_error"] * (ref / ref[0]) ** 2, ":", color="gray",
              label="β² (symmetric EP)")
    ax.set_xlabel("β")
    ax.set_title("Coordinator: EP against the implicit oracle", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, path)
