r"""continuation: any shipped system's equilibria followed in one parameter, bifurcations located.

The system (``system``, its constants in its own table, e.g. ``bratu.n`` or
``lorenz.sigma``) starts from its documented state at ``p_start`` (which
overrides the table's value of ``parameter``; Newton corrects the state) and is continued by
pseudo-arclength (:mod:`flowsim.bifurcation.continuation`) towards ``p_stop``.
Along the branch: the stability (eigenvalues of F_z with Re λ > 0 among the
``eigenvalues`` rightmost), folds, branch points and Hopf points, each located
by Newton on its extended system; at a Hopf point the first Lyapunov
coefficient (l₁ < 0 supercritical); for every name in ``gradients`` the
derivative of every located point's parameter value by it (implicit function
theorem, exact). With ``switch = true`` the other branch through each simple
branch point is continued too (both directions), marked by ``branch`` in the
tables.

Writes ``branch.csv`` (one row per point: branch, p, ‖z‖/√n, stability, the
rightmost eigenvalues), ``bifurcations.csv`` (``type``, ``parameter``,
``lyapunov_coefficient``, one ``d_parameter_d_<name>`` per gradient, ``omega``,
``converged``, ``residual``) and the diagram ``bifurcation_diagram.png``
(solid: stable; dashed: unstable; located points marked).
"""

from pathlib import Path

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field, model_validator

from flowsim.bifurcation import (
    ContinuationOptions,
    LinearSolve,
    SpectrumOptions,
    continuation,
)
from flowsim.bifurcation.gradients import bifurcation_gradient
from flowsim.bifurcation.switching import switch_branch
from flowsim.run import StudyConfig
from flowsim.run.registry import SYSTEMS, build_system, with_systems

from .common import save_figure, write_csv

KINDS = ("fold", "branch_point", "hopf")
MARKERS = {"fold": ("o", "k"), "branch_point": ("s", "tab:green"), "hopf": ("*", "tab:purple")}


class _Base(StudyConfig):
    parameter: str = Field("lambda", description="the continued parameter (the system's)")
    p_start: float = Field(0.0, description="the parameter's start (it overrides the table's)")
    p_stop: float = Field(4.0, description="continue towards this value")
    gradients: list[str] = Field([], description="differentiate every located point by these")
    ds: float = Field(0.05, gt=0, description="first arclength step")
    ds_max: float = Field(0.5, gt=0, description="largest arclength step")
    max_points: int = Field(200, ge=2, le=10**6, description="points per branch")
    eigenvalues: int = Field(6, ge=1, le=1000, description="rightmost eigenvalues per point")
    dense_max: int = Field(4000, ge=0, le=10**5,
                           description="dense LU up to this many unknowns, GMRES/LSMR above")
    spectrum_dense_max: int = Field(400, ge=0, le=10**5,
                                    description="all eigenvalues up to this dimension")
    spectrum_factor_max: int = Field(4000, ge=0, le=10**5,
                                     description="shift-invert Arnoldi by one LU up to this dimension")
    switch: bool = Field(False, description="continue the other branch at branch points")


class Config(with_systems(_Base, "system", "bratu", "ContinuationBase")):
    @model_validator(mode="after")
    def _names(self):
        valid = SYSTEMS[self.system].parameters
        if self.parameter not in valid:
            raise ValueError(f"parameter {self.parameter!r} is not one of {self.system}'s: "
                             f"choose one of {list(valid)}")
        for name in self.gradients:
            if name not in valid or name == self.parameter:
                others = [v for v in valid if v != self.parameter]
                raise ValueError(f"gradients: {name!r} is not another parameter of "
                                 f"{self.system}: choose among {others}")
        if self.p_start == self.p_stop:
            raise ValueError("p_start and p_stop must differ")
        return self


def options(config):
    return ContinuationOptions(
        ds=config.ds, ds_max=config.ds_max, max_points=config.max_points,
        linear=LinearSolve(dense_max=config.dense_max),
        spectrum=SpectrumOptions(k=config.eigenvalues, dense_max=config.spectrum_dense_max,
                                 factor_max=config.spectrum_factor_max))


def run(config, ctx):
    system, params = build_system(config.system, config, config.seed)
    params = {k: jnp.asarray(v) for k, v in params.items()}
    p_start = config.p_start
    params = {**params, config.parameter: jnp.asarray(p_start)}
    opts = options(config)
    main = continuation(system.field, system.start(params), params, config.parameter,
                        config.p_stop, options=opts)
    ctx.log(f"{config.system}: {len(main.p)} points, ended by {main.end}")
    branches = [main]
    if config.switch:
        for point in main.bifurcations:
            if point.kind == "branch_point" and point.converged:
                for direction in (1.0, -1.0):
                    branches.append(switch_branch(system.field, main, point, params,
                                                  config.parameter, config.p_stop,
                                                  direction=direction, options=opts))
    rows, points = [], []
    for number, branch in enumerate(branches):
        rows += [{"branch": number, **row} for row in branch.rows()]
        for point in branch.bifurcations:
            if number and point.index == 1 and point.kind == "branch_point":
                continue  # the switched branch starts on its own branch point
            gradients = {}
            if config.gradients and point.converged:
                gradients = bifurcation_gradient(system.field, point, params, config.parameter,
                                                 config.gradients, opts)
            points.append((number, point, gradients))
    for number, point, _ in points:
        ctx.log(f"branch {number}: {point.kind} at {config.parameter} = {point.p:.12g} "
                f"(converged {point.converged}, residual {point.residual:.2e})")
    write_csv(Path(ctx.dir) / "branch.csv", rows)
    write_csv(Path(ctx.dir) / "bifurcations.csv", bifurcation_rows(config, points))
    ctx.write_metrics([{"branch": number, "point": i, config.parameter: float(branch.p[i]),
                        "corrector_steps": int(branch.corrector_steps[i]),
                        "ds": float(branch.ds[i]),
                        "eigen_residual": float(branch.eigen_residuals[i])}
                       for number, branch in enumerate(branches) for i in range(len(branch.p))])
    diagram(branches, points, config, ctx.plot_path("bifurcation_diagram"))
    return summary(config, main, branches, points, p_start)


def bifurcation_rows(config, points):
    rows = []
    for number, point, gradients in points:
        row = {"branch": number, "type": point.kind, "parameter": point.p,
               "lyapunov_coefficient": point.lyapunov_coefficient if point.kind == "hopf" else "",
               **{f"d_parameter_d_{name}": gradients.get(name, float("nan"))
                  for name in config.gradients},
               "omega": point.omega if point.kind == "hopf" else "",
               "norm": float(np.linalg.norm(point.z) / np.sqrt(point.z.size)),
               "converged": int(point.converged), "residual": point.residual}
        rows.append(row)
    return rows


def summary(config, main, branches, points, p_start):
    out = {"system": config.system, "parameter": config.parameter, "p_start": p_start,
           "p_stop": config.p_stop, "dimension": int(main.z.shape[1]) if main.z.size else 0,
           "points": int(sum(len(b.p) for b in branches)), "branches": len(branches),
           "end": main.end, "located_all": all(point.converged for _, point, _ in points),
           "max_eigen_residual": float(max((np.max(b.eigen_residuals) for b in branches
                                            if len(b.p)), default=0.0)),
           "stable_at_start": bool(len(main.p) and main.unstable[0] == 0)}
    for kind in KINDS:
        found = [(point, grads) for number, point, grads in points if point.kind == kind]
        out[f"n_{kind}"] = len(found)
        for j, (point, grads) in enumerate(found, 1):
            out[f"{kind}_{j}"] = point.p
            if kind == "hopf":
                out[f"lyapunov_coefficient_{kind}_{j}"] = point.lyapunov_coefficient
                out[f"omega_{kind}_{j}"] = point.omega
            for name, value in grads.items():
                out[f"d_{kind}_{j}_d_{name}"] = value
    first = min((point for number, point, _ in points if number == 0), key=lambda q: q.index,
                default=None)
    out["first_bifurcation"] = first.kind if first else "none"
    out["first_bifurcation_parameter"] = first.p if first else float("nan")
    return out


def signed_norm(z):
    """‖z‖/√n with the sign of Σz: the two halves of a pitchfork apart."""
    return np.sign(np.sum(z, axis=-1)) * np.linalg.norm(z, axis=-1) / np.sqrt(z.shape[-1])


def plot_branch(ax, p, y, stable):
    """The curve (p, y): solid blue where ``stable``, dashed red where not; a segment
    whose ends differ is drawn half in each style."""
    for i in range(len(p) - 1):
        mid_p, mid_y = (p[i] + p[i + 1]) / 2, (y[i] + y[i + 1]) / 2
        for j, (ps, ys) in enumerate((([p[i], mid_p], [y[i], mid_y]),
                                      ([mid_p, p[i + 1]], [mid_y, y[i + 1]]))):
            good = stable[i + j]
            ax.plot(ps, ys, "-" if good else "--", color="tab:blue" if good else "tab:red",
                    lw=1.6 if good else 1.2)


def diagram(branches, points, config, path):
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for branch in branches:
        if len(branch.p) < 2:
            continue
        plot_branch(ax, branch.p, signed_norm(branch.z), branch.unstable == 0)
    for kind in KINDS:
        found = [point for _, point, _ in points if point.kind == kind]
        if found:
            marker, colour = MARKERS[kind]
            ax.plot([q.p for q in found], [float(signed_norm(q.z)) for q in found], marker,
                    color=colour, ms=9, ls="none", label=kind.replace("_", " "))
    ax.plot([], [], "-", color="tab:blue", label="stable")
    ax.plot([], [], "--", color="tab:red", label="unstable")
    ax.set_xlabel(config.parameter)
    ax.set_ylabel("sign(sum z) ||z|| / sqrt(n)")
    ax.legend(fontsize=8)
    save_figure(fig, path, f"{config.system}: continuation in {config.parameter}")
