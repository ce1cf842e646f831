r"""bifurcation-char: the trained character model's equilibrium continued in the gain c.

The family is rho-vs-c's: W → c·W (and W_out → c·W_out when untied) in the model
of an ep-train run's checkpoint (``bif.source``; by default the newest matching
ep-train run in the run store, or one made first for ``bif.source_steps``
steps). Instead of a grid of c it follows each equilibrium. For each of the
first ``bif.samples`` validation windows x_i (its own problem: the 1-D state z
with x_i fixed), F(z, c) = −z + c W_outᵀ tanh(c W z + u(x_i)) + a is continued
by pseudo-arclength (:mod:`flowsim.bifurcation.continuation`) from c_min,
starting from the deployed relaxation's state there (Newton corrects it),
towards c_max. It is the branch through the equilibrium at c_min: where the
model is multistable, the deployed relaxation at a larger c may settle on
another. Along the branch:

* the flow's stability: the eigenvalues of F_z with Re λ > 0 among the
  ``bif.eigenvalues`` rightmost; folds, branch points and Hopf points are
  detected between points and located by Newton on their extended systems
  (the engine's ``converged`` and ``residual`` say whether they were), with the
  first Lyapunov coefficient at a Hopf point;
* the deployed Euler map's stability: ρ(I + dt F_z) = max |1 + dt λ| over the
  whole spectrum (the dense eigenvalues when dim z ≤ ``bif.dense_max``, else
  an Arnoldi factorisation of I + dt F_z), whose eigenvalues near −1 come from
  the leftmost λ ≈ −2/dt that the flow's k rightmost do not see.

Jumps. A step whose corrector lands farther than ``bif.jump_ratio`` × ds from
its predictor (in the engine's θ-norm; on a smooth branch the correction is
O(ds²)) has left the branch for another one nearby: the engine rejects it and
retries with half the step (``ContinuationOptions.max_correction``).

The first crossing of ρ = 1 along the branch is located by bisection in
arclength between the two bracketing points: each trial point is a Newton
correction of the secant's point onto the branch, in the hyperplane
θ-orthogonal to the secant (so it works through a fold), until the bracket's
two points are within ``bif.euler_tol`` in the Euclidean norm of (z, c) (so
within it in c). The crossing is ``euler_flip`` when the eigenvalue μ of
I + dt F_z of largest modulus there is real and negative (λ ≈ −2/dt),
``euler_fold`` when real and positive (λ ≈ 0: the flow's own real eigenvalue
crossing 0), ``euler_complex`` otherwise (|1 + dt λ| = 1 with λ non-real: a
Neimark–Sacker crossing of the map); real means |Im μ| ≤ 1e-6 |μ|.

Decision rules, per sample, in the order along the branch (arclength):

* flow loss: the first point with an unstable eigenvalue; its c and type are
  those of the bifurcation located in that interval (fold, then branch_point,
  then hopf, the first that converged). If nothing converged there, c is
  the linear interpolation of the rightmost real part to 0 between the two
  points and the type is the detection's, or ``unstable_eigenvalue`` when
  nothing was detected (``flow_converged`` false in metrics.csv);
* Euler loss: the located ρ = 1 crossing above;
* the sample's loss is the earlier of the two along the branch. Since ρ ≥ 1
  wherever the flow is unstable, the Euler crossing never comes after the
  flow's; when it is an ``euler_fold`` in the same interval as the flow's
  loss, both are one event (λ = 0 puts 1 + dt λ at 1) and the flow's type is
  kept, with the gap between the two located c as a cross-check
  (``flow_euler_gap_max``). A branch unstable at c_min itself is
  ``unstable_at_start`` with c = c_min. A crossing located beyond c_max (the
  last step may overshoot it) is out of range.

Summary: ``c_loss`` (the smallest over the samples; −1 when no sample loses
stability in [c_min, c_max]) and ``loss_type`` (that sample's; ``none``),
``c_loss_flow`` and ``c_loss_euler`` (smallest over samples, −1 when none),
``c_loss_median`` over the samples that lose stability, counts per type
(``n_not_converged``: located points whose Newton failed, or went to a point
already found), and
``lyapunov_coefficient_first_hopf`` (at the Hopf point of smallest c) when
there is one. For the tied model F_z = −I + c² Wᵀ D W is symmetric with every
eigenvalue ≥ −1, so with dt < 2 the map can lose stability only through +1,
with the flow, and there is no Hopf point.

Writes ``branch.csv`` (every sample's points: ``sample``, the engine's
columns, ``rho_euler`` and the eigenvalue ``euler_re``, ``euler_im`` of largest
modulus), ``bifurcations.csv`` (``sample``, ``type``, ``parameter``,
``lyapunov_coefficient``, ``omega``, ``converged``, ``residual``, ``norm``; the
Euler crossings as rows of type ``euler_*``, their residual the bracket's
length), metrics.csv (one row per sample) and the diagram
``bifurcation_char.png``.
"""

import math
from pathlib import Path
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field, model_validator

from flowsim.bifurcation import (
    Continuable,
    ContinuationOptions,
    Family,
    LinearSolve,
    SpectrumOptions,
    continuation,
)
from flowsim.bifurcation.continuation import correct
from flowsim.diagnostics.spectral import arnoldi, dense_matrix
from flowsim.ep import char_model as cm
from flowsim.ep.char_task import deployed_state

from . import char_training as ct
from .common import save_figure, write_csv
from .continuation import plot_branch
from .ep_source import source_run
from .rho_vs_c import GainSource, scaled, train_config

FLOW_KINDS = ("fold", "branch_point", "hopf")
EULER_KINDS = ("euler_flip", "euler_fold", "euler_complex")
MARKERS = {"fold": ("o", "k"), "branch_point": ("s", "tab:green"), "hopf": ("*", "tab:purple"),
           "euler_flip": ("X", "tab:orange"), "euler_fold": ("x", "tab:orange"),
           "euler_complex": ("P", "tab:orange")}
REAL_TOL = 1e-6  # μ is real when |Im μ| ≤ REAL_TOL |μ|
GAIN = Family(scaled, label="c")  # one object: the jitted engine compiles once for all samples


class BifSection(GainSource):
    table: ClassVar[str] = "bif"
    samples: int = Field(4, ge=1, le=4096, description="validation windows, one branch each")
    ds: float = Field(0.01, gt=0, description="first arclength step")
    ds_max: float = Field(0.2, gt=0, description="largest arclength step")
    max_points: int = Field(300, ge=2, le=10**6, description="points per branch")
    eigenvalues: int = Field(6, ge=1, le=4096, description="rightmost eigenvalues of F_z per point")
    dense_max: int = Field(400, ge=0, le=10**5,
                           description="dense linear algebra and spectra up to this dim z")
    krylov_dim: int = Field(40, ge=2, le=4096, description="Arnoldi steps above dense_max")
    euler_tol: float = Field(1e-9, gt=0, le=1e-6,
                             description="bracket (arclength) of the located rho = 1 crossing")
    jump_ratio: float = Field(1.0, gt=0, description="a step whose corrector moved the point "
                              "more than this times the step is a jump: retried smaller")

    @model_validator(mode="after")
    def _steps(self):
        if self.ds > self.ds_max:
            raise ValueError(f"bif.ds ({self.ds}) must be at most bif.ds_max ({self.ds_max})")
        return self


class Config(ct.CharConfig):
    bif: BifSection = BifSection()

    @model_validator(mode="after")
    def _samples_fit(self):
        if self.bif.samples > self.train.eval_batch:
            raise ValueError(f"bif.samples ({self.bif.samples}) exceeds the validation batch "
                             f"train.eval_batch ({self.train.eval_batch})")
        return self


class SampleField(eqx.Module):
    """F(z, params) = −z + block(z, x) for one window x (an array leaf: one compilation)."""

    x: jax.Array

    def __call__(self, z, params):
        return cm.field(z, params, self.x)


def options(b, ds=None, ds_max=None, max_points=None):
    return ContinuationOptions(
        ds=b.ds if ds is None else ds, ds_max=b.ds_max if ds_max is None else ds_max,
        max_points=b.max_points if max_points is None else max_points,
        max_correction=b.jump_ratio, linear=LinearSolve(dense_max=b.dense_max),
        spectrum=SpectrumOptions(k=b.eigenvalues, dense_max=b.dense_max,
                                 krylov_dim=b.krylov_dim))


@eqx.filter_jit
def euler_eigenvalue(cont, u, params, dt, dense_max, krylov_dim):
    """The eigenvalue μ of I + dt F_z at u = (z, c) of largest modulus (ρ = |μ|)."""
    z, p = u[:-1], u[-1]
    jvp = cont.jvp_z(z, p, params)
    apply = lambda v: v + dt * jvp(v)
    if z.size <= dense_max:
        values = jnp.linalg.eigvals(dense_matrix(apply, z))
    else:
        values = jnp.linalg.eigvals(arnoldi(apply, z, min(krylov_dim, z.size))[0])
    return values[jnp.argmax(jnp.abs(values))]


def euler_kind(mu):
    if abs(mu.imag) <= REAL_TOL * abs(mu):
        return "euler_flip" if mu.real < 0 else "euler_fold"
    return "euler_complex"


def locate_euler(cont, branch, i, params, dt, b, opts):
    """Bisection in arclength between points i − 1 (ρ < 1) and i (ρ ≥ 1) for ρ = 1.

    Returns (c, μ, the bracket's arclength ‖u_hi − u_lo‖ (≥ its width in c), converged,
    ‖z‖/√n there)."""
    lo, hi = np.concatenate([branch.z[i - 1], [branch.p[i - 1]]]), \
        np.concatenate([branch.z[i], [branch.p[i]]])
    secant = jnp.asarray(hi - lo)
    direction = secant / jnp.linalg.norm(secant)
    eig = lambda u: complex(euler_eigenvalue(cont, u, params, dt, b.dense_max, b.krylov_dim))
    a, c = 0.0, 1.0
    u_a, u_c = jnp.asarray(lo), jnp.asarray(hi)
    mu = eig(u_c)
    ok = True
    for _ in range(200):
        if float(jnp.linalg.norm(u_c - u_a)) <= b.euler_tol:
            break
        m = 0.5 * (a + c)
        u_m, good, _ = correct(cont, jnp.asarray(lo + m * (hi - lo)), direction, params, opts)
        if not bool(good):
            ok = False
            break
        mu_m = eig(u_m)
        if abs(mu_m) >= 1.0:
            c, u_c, mu = m, u_m, mu_m
        else:
            a, u_a = m, u_m
    width = float(jnp.linalg.norm(u_c - u_a))
    norm = float(jnp.linalg.norm(u_c[:-1]) / math.sqrt(u_c.size - 1))
    return float(u_c[-1]), mu, width, ok and width <= b.euler_tol, norm


def flow_loss(branch, i):
    """(c, type, converged) of the flow's loss of stability between points i − 1 and i."""
    here = [q for q in branch.bifurcations if q.index == i]
    for point in sorted(here, key=lambda q: FLOW_KINDS.index(q.kind)):
        if point.converged:
            return point.p, point.kind, True
    r0, r1 = (float(np.max(np.real(branch.eigenvalues[j]))) for j in (i - 1, i))
    t = r0 / (r0 - r1) if r0 != r1 else 0.5
    c = float(branch.p[i - 1] + t * (branch.p[i] - branch.p[i - 1]))
    return c, here[0].kind if here else "unstable_eigenvalue", False


def continue_sample(k, x, z0, params, b, dt, opts):
    """One sample's branch, its Euler radii, and what it found."""
    cont = Continuable(SampleField(x), GAIN)
    branch = continuation(cont.field, z0, params, GAIN, b.c_max, p_start=b.c_min, options=opts)
    m = len(branch.p)
    mus = np.array([complex(euler_eigenvalue(cont, jnp.concatenate([branch.z[j],
                                                                    branch.p[j:j + 1]]),
                                             params, dt, b.dense_max, b.krylov_dim))
                    for j in range(m)], complex)
    rho = np.abs(mus)
    found = {"sample": k, "points": m, "end": branch.end, "c_end": float(branch.p[-1]) if m else
             math.nan, "rho_at_start": float(rho[0]) if m else math.nan,
             "c_loss": -1.0, "loss_type": "none", "c_loss_flow": -1.0, "flow_type": "none",
             "flow_converged": True, "c_loss_euler": -1.0, "euler_type": "none",
             "euler_re": math.nan, "euler_im": math.nan, "euler_bracket": math.nan,
             "euler_converged": True, "flow_euler_gap": math.nan}
    for kind in FLOW_KINDS:
        found[f"n_{kind}"] = sum(q.kind == kind for q in branch.bifurcations)
    euler_rows = []
    if not m:
        return branch, rho, mus, found, euler_rows
    i_flow = next((j for j in range(m) if branch.unstable[j] > 0), None)
    i_euler = next((j for j in range(m) if rho[j] >= 1.0), None)
    if i_flow == 0 or i_euler == 0:
        found.update(c_loss=float(branch.p[0]), loss_type="unstable_at_start",
                     euler_re=mus[0].real, euler_im=mus[0].imag)
        if i_flow == 0:
            found.update(c_loss_flow=float(branch.p[0]), flow_type="unstable_at_start")
        if i_euler == 0:
            found.update(c_loss_euler=float(branch.p[0]), euler_type="unstable_at_start")
        return branch, rho, mus, found, euler_rows
    # the last point may overshoot c_max: a crossing located beyond c_max is out of range
    if i_flow is not None:
        c, kind, ok = flow_loss(branch, i_flow)
        if c <= b.c_max:
            found.update(c_loss_flow=c, flow_type=kind, flow_converged=ok)
        else:
            i_flow = None
    if i_euler is not None:
        c, mu, width, ok, norm = locate_euler(cont, branch, i_euler, params, dt, b, opts)
        kind = euler_kind(mu)
        euler_rows.append({"sample": k, "type": kind, "parameter": c, "lyapunov_coefficient": "",
                           "omega": "", "converged": int(ok), "residual": width,
                           "norm": norm})
        if c <= b.c_max:
            found.update(c_loss_euler=c, euler_type=kind, euler_re=mu.real, euler_im=mu.imag,
                         euler_bracket=width, euler_converged=ok)
        else:
            i_euler = None
    # which comes first along the branch (see the module docstring): ρ ≥ 1 wherever the
    # flow is unstable, so i_euler ≤ i_flow
    if i_flow is not None and i_euler == i_flow and found["euler_type"] == "euler_fold":
        found.update(c_loss=found["c_loss_flow"], loss_type=found["flow_type"],
                     flow_euler_gap=abs(found["c_loss_flow"] - found["c_loss_euler"]))
    elif i_euler is not None:
        found.update(c_loss=found["c_loss_euler"], loss_type=found["euler_type"])
    elif i_flow is not None:  # only when the Euler crossing lies beyond c_max
        found.update(c_loss=found["c_loss_flow"], loss_type=found["flow_type"])
    return branch, rho, mus, found, euler_rows


def run(config, ctx):
    b = config.bif
    source, how = source_run(config, ctx, study="ep_train", named=b.source,
                             subdir=b.source_subdir, steps=b.source_steps, configure=train_config)
    (params, _), source_config, step = ct.source_checkpoint(source, b.source_subdir,
                                                            b.source_step)
    setup = ct.CharSetup(source_config)
    task = setup.task
    xv, yv = task.eval_batches[1]
    if b.samples > xv.shape[0]:
        raise ValueError(f"bif.samples ({b.samples}) exceeds the source run's validation batch "
                         f"({xv.shape[0]})")
    xv, yv = xv[:b.samples], yv[:b.samples]
    dt = source_config.model.dt
    ctx.log(f"bifurcation-char: parameters of {source} at step {step}; state "
            f"{source_config.model.state}, tied={source_config.model.tied}, dt={dt}; "
            f"{b.samples} samples from c={b.c_min} towards c={b.c_max}")
    _, _, z_start = deployed_state(task, scaled(params, b.c_min), xv, yv)
    opts = options(b)
    branch_rows, bif_rows, metrics, results = [], [], [], []
    for k in range(b.samples):
        branch, rho, mus, found, euler_rows = continue_sample(k, xv[k], z_start[k], params, b,
                                                              dt, opts)
        results.append((branch, rho, found))
        for row, r, mu in zip(branch.rows(), rho, mus):
            branch_rows.append({"sample": k, **row, "rho_euler": float(r),
                                "euler_re": float(mu.real), "euler_im": float(mu.imag)})
        for q in branch.bifurcations:
            hopf = q.kind == "hopf"
            bif_rows.append({"sample": k, "type": q.kind, "parameter": q.p,
                             "lyapunov_coefficient": q.lyapunov_coefficient if hopf else "",
                             "omega": q.omega if hopf else "", "converged": int(q.converged),
                             "residual": q.residual,
                             "norm": float(np.linalg.norm(q.z) / np.sqrt(q.z.size))})
            ctx.log(f"sample {k}: {q.kind} at c = {q.p:.12g} (converged {q.converged}, "
                    f"residual {q.residual:.2e})")
        bif_rows += euler_rows
        found["max_eigen_residual"] = float(np.max(branch.eigen_residuals)) if len(branch.p) \
            else math.nan
        metrics.append(found)
        ctx.log(f"sample {k}: {found['points']} points, ended by {found['end']} at c = "
                f"{found['c_end']:.6g}; flow loss {found['flow_type']} at c = "
                f"{found['c_loss_flow']:.12g}; Euler {found['euler_type']} at c = "
                f"{found['c_loss_euler']:.12g} (mu = {found['euler_re']:.6g}"
                f"{found['euler_im']:+.3g}i, bracket {found['euler_bracket']:.2g})")
    ctx.write_metrics(metrics)
    write_csv(Path(ctx.dir) / "branch.csv", branch_rows)
    write_csv(Path(ctx.dir) / "bifurcations.csv", bif_rows,
              ["sample", "type", "parameter", "lyapunov_coefficient", "omega", "converged",
               "residual", "norm"])
    plot(results, bif_rows, ctx.plot_path("bifurcation_char"), b, dt)
    return summary(metrics, bif_rows, results, b, source, how, step, source_config)


def summary(metrics, bif_rows, results, b, source, how, step, source_config):
    def smallest(key):
        values = [m[key] for m in metrics if m[key] >= 0]
        return min(values) if values else -1.0

    lost = [m for m in metrics if m["loss_type"] != "none"]
    first = min(lost, key=lambda m: m["c_loss"], default=None)
    located = [r for r in bif_rows if r["type"] in FLOW_KINDS]
    gaps = [m["flow_euler_gap"] for m in metrics if np.isfinite(m["flow_euler_gap"])]
    brackets = [m["euler_bracket"] for m in metrics if np.isfinite(m["euler_bracket"])]
    out = {"c_loss": first["c_loss"] if first else -1.0,
           "loss_type": first["loss_type"] if first else "none",
           "loss_sample": first["sample"] if first else -1,
           "c_loss_flow": smallest("c_loss_flow"), "c_loss_euler": smallest("c_loss_euler"),
           "c_loss_median": float(np.median([m["c_loss"] for m in lost])) if lost else -1.0,
           "samples": b.samples, "samples_lost": len(lost), "c_min": b.c_min, "c_max": b.c_max,
           "source_run": str(source), "source_obtained": how, "source_step": step,
           "state_dim": source_config.model.state, "tied": source_config.model.tied,
           "dt": source_config.model.dt,
           "points_total": int(sum(len(branch.p) for branch, _, _ in results)),
           "branch_ends": ",".join(m["end"] for m in metrics),
           "located_all": all(r["converged"] for r in located),
           "flow_converged_all": all(m["flow_converged"] for m in metrics),
           "euler_converged_all": all(m["euler_converged"] for m in metrics),
           "euler_bracket_max": max(brackets) if brackets else -1.0,
           "flow_euler_gap_max": max(gaps) if gaps else -1.0,
           "max_eigen_residual": float(np.nanmax([m["max_eigen_residual"] for m in metrics])),
           "rho_at_c_min_max": float(np.nanmax([m["rho_at_start"] for m in metrics]))}
    for kind in FLOW_KINDS + EULER_KINDS:
        out[f"n_{kind}"] = sum(r["type"] == kind for r in bif_rows)
    out["n_not_converged"] = sum(not r["converged"] for r in bif_rows)
    hopfs = [r for r in bif_rows if r["type"] == "hopf" and r["converged"]]
    if hopfs:
        h = min(hopfs, key=lambda r: r["parameter"])
        out["c_first_hopf"] = h["parameter"]
        out["lyapunov_coefficient_first_hopf"] = h["lyapunov_coefficient"]
        out["omega_first_hopf"] = h["omega"]
    return out


def plot(results, bif_rows, path, b, dt):
    """‖z‖/√n against c (solid blue: stable flow; dashed red: unstable), located points
    marked by type; and ρ(I + dt F_z) against c with ρ = 1."""
    fig, (ax, ax_rho) = plt.subplots(1, 2, figsize=(12, 4.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (branch, rho, _) in enumerate(results):
        if len(branch.p) < 2:
            continue
        y, c = branch.norm, branch.p
        plot_branch(ax, c, y, branch.unstable == 0)
        ax.annotate(str(k), (c[-1], y[-1]), fontsize=7, color="0.3")
        ax_rho.plot(c, rho, "-", color=colours[k % len(colours)], lw=1.2, label=f"sample {k}")
    for kind, (marker, colour) in MARKERS.items():
        rows = [r for r in bif_rows if r["type"] == kind]
        if not rows:
            continue
        ax.plot([r["parameter"] for r in rows], [r["norm"] for r in rows], marker, color=colour,
                ms=9, ls="none", mfc="none" if kind in FLOW_KINDS else colour,
                label=kind.replace("_", " "))
        if kind in EULER_KINDS:
            ax_rho.plot([r["parameter"] for r in rows], [1.0] * len(rows), marker, color=colour,
                        ms=9, ls="none", label=kind.replace("_", " "))
    ax.plot([], [], "-", color="tab:blue", label="stable (flow)")
    ax.plot([], [], "--", color="tab:red", label="unstable (flow)")
    ax.set_xlabel("c (W -> c W)")
    ax.set_ylabel("||z*|| / sqrt(n)")
    ax.legend(fontsize=7)
    ax_rho.axhline(1.0, color="r", ls=":", label="rho = 1")
    ax_rho.set_xlabel("c (W -> c W)")
    ax_rho.set_ylabel(f"rho(I + dt F_z) at z*, dt = {dt:g}")
    ax_rho.legend(fontsize=7)
    save_figure(fig, path, f"Equilibria of the character model in the gain c "
                f"({len(results)} samples, c from {b.c_min:g})")
