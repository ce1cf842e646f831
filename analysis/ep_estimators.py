r"""ep-estimators: every estimator held against the oracle, and why they differ.

Two systems at fixed random parameters: a continuous Hopfield net (gradient
field, symmetric F_z: EP is consistent) and an asymmetric tanh net
(non-symmetric F_z: vector-field EP converges to −F_θᵀF_z⁻¹L_z, not the
gradient). For each, the oracle (``Implicit``) and four sweeps:

* nudged/adjoint phase length: EP (symmetric, one-sided), holomorphic EP, RBP;
* β at the longest phase (EP error O(β) one-sided, O(β²) symmetric);
* holomorphic radius at the longest phase;
* BPTT horizon T, with the free-phase residual ‖F(z_T)‖: BPTT differentiates
  L(z_T), which meets the equilibrium gradient only as the residual vanishes.
"""

from typing import Annotated

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field

import flowsim
from flowsim.run import Section, StudyConfig
from flowsim.run.sweep_core import SweepCore
from flowsim.systems import AsymmetricTanh, Hopfield

from .common import save_figure

SYSTEMS = {"hopfield": Hopfield, "asymmetric": AsymmetricTanh}
Steps = Annotated[int, Field(ge=1, le=10**6)]
Positive = Annotated[float, Field(gt=0)]


class SystemSection(Section):
    state: int = Field(32, ge=1, le=65536)
    inputs: int = Field(8, ge=1, le=65536)
    batch: int = Field(4, ge=1, le=65536)
    gain: float = Field(0.9, gt=0, le=100)


class Config(StudyConfig):
    dt: float = Field(0.2, gt=0, le=1, description="Euler step of every relaxation")
    phase_steps: list[Steps] = Field([10, 20, 40, 80, 160, 320], min_length=1,
                                     description="nudged / adjoint phase lengths")
    betas: list[Positive] = Field([0.2, 0.1, 0.05, 0.02, 0.01], min_length=1,
                                  description="EP nudges (the smallest is used in the phase sweep)")
    radii: list[Positive] = Field([0.05, 0.1, 0.2, 0.4, 0.8], min_length=1,
                                  description="holomorphic EP radii")
    radius: float = Field(0.2, gt=0, description="holomorphic radius in the phase sweep")
    points: int = Field(4, ge=2, le=64, description="holomorphic EP nudges on the circle")
    horizons: list[Steps] = Field([10, 20, 40, 80, 160, 320, 640], min_length=1,
                                  description="BPTT horizons T")
    hopfield: SystemSection = SystemSection(gain=0.8)
    asymmetric: SystemSection = SystemSection(gain=0.9)


def _loss(z, y):
    return 0.5 * jnp.sum((z - y) ** 2)


def make_problem(name, options, key, gain=None):
    """(problem, params, z0, x, y): the batch is solved as one system, as in seed 002.

    ``gain`` (default ``options.gain``) may be traced: a sweep over it is one program.
    """
    system = SYSTEMS[name](options.state, options.inputs)
    k_params, k_x, k_y = jax.random.split(key, 3)
    params = system.init_params(k_params, gain=options.gain if gain is None else gain)
    shape = (options.batch,)
    x = jax.random.normal(k_x, shape + (options.inputs,))
    y = 0.5 * jax.random.normal(k_y, shape + (options.state,))
    problem = flowsim.Problem(system.field, _loss)
    return problem, params, jnp.zeros(shape + (options.state,)), x, y


def jobs(config):
    """(sweep, label, estimator) for every estimate the study makes."""
    dt, longest, beta_min = config.dt, max(config.phase_steps), min(config.betas)
    # One static loop bound per sweep: every length under it shares a compilation.
    bound = {"max_steps": longest}
    for steps in config.phase_steps:
        yield "phase", "ep_symmetric", flowsim.EP(beta_min, steps, dt, True, **bound)
        yield "phase", "ep_one_sided", flowsim.EP(beta_min, steps, dt, False, **bound)
        yield "phase", "holomorphic_ep", flowsim.HolomorphicEP(
            config.radius, config.points, steps, dt, **bound)
        yield "phase", "rbp", flowsim.RBP(steps, dt, **bound)
    for beta in config.betas:
        yield "beta", "ep_symmetric", flowsim.EP(beta, longest, dt, True, **bound)
        yield "beta", "ep_one_sided", flowsim.EP(beta, longest, dt, False, **bound)
    for radius in config.radii:
        yield "radius", "holomorphic_ep", flowsim.HolomorphicEP(
            radius, config.points, longest, dt, **bound)
    for steps in config.horizons:
        yield "horizon", "bptt", flowsim.BPTT(steps, dt, max_steps=max(config.horizons))


def _row(sweep, label, estimator, name):
    return {
        "sweep": sweep, "system": name, "estimator": label,
        "steps": int(estimator.steps) if hasattr(estimator, "steps") else "",
        "beta": float(estimator.beta) if hasattr(estimator, "beta") else "",
        "radius": float(estimator.radius) if hasattr(estimator, "radius") else "",
    }


def run(config, ctx):
    key = jax.random.PRNGKey(ctx.seed)
    rows, reasons = [], []
    work = [(name, job) for name in SYSTEMS for job in jobs(config)]
    problems, oracles = {}, {}
    for name, key_system in zip(SYSTEMS, jax.random.split(key, len(SYSTEMS))):
        problems[name] = make_problem(name, getattr(config, name), key_system)
        problem, params, z0, x, y = problems[name]
        oracles[name], info = flowsim.gradient(flowsim.Implicit(), problem, z0, params, x, y)
        if flowsim.result_name(info["result"]) != "successful":
            reasons.append(f"{name} oracle: {flowsim.result_name(info['result'])}")
        ctx.log(f"{name}: oracle {int(info['matvecs'])} products with F, F_z or F_z^T; "
                f"equilibrium residual {float(info['residual']):.1e}")
    for name, (sweep, label, estimator) in ctx.progress(work, desc="estimators"):
        problem, params, z0, x, y = problems[name]
        grads, info = flowsim.gradient(estimator, problem, z0, params, x, y)
        rows.append({
            **_row(sweep, label, estimator, name),
            "cos": float(flowsim.cosine(grads, oracles[name])),
            "rel_error": float(flowsim.relative_error(grads, oracles[name])),
            "residual": float(info["residual"]),
            "result": flowsim.result_name(info["result"]),
        })
    ctx.write_metrics(rows)
    _plot_phase(rows, ctx.plot_path("cos_vs_phase_length"))
    _plot_horizon(rows, ctx.plot_path("bptt_vs_residual"))
    _plot_nudge(rows, ctx.plot_path("error_vs_nudge"))
    summary = _headline(rows, config)
    failed = [r for r in rows if r["result"] != "successful"]
    if failed:
        reasons.append(f"{len(failed)} estimates failed")
    summary["failed_estimates"] = len(failed)
    summary["failures"] = "; ".join(reasons)
    return summary


# --- the headline as one vectorisable computation (``flowsim run ep-estimators --sweep``) ---

def _headline_core(config, values, state=None):
    """The summary's cosines and residuals for one configuration, as arrays.

    Reads ``seed``, ``dt``, the gains and ``radius`` from ``values`` (so a sweep over them
    is one program); the phase lengths, nudges and horizons stay static. The same
    estimates as :func:`run`'s rows, computed in one traced function: the sweep's rows are
    held against the single run's summary (tests/test_sweep.py).
    """
    dt, longest, beta_min = values["dt"], max(config.phase_steps), min(config.betas)
    bound = {"max_steps": longest}
    keys = dict(zip(SYSTEMS, jax.random.split(jax.random.PRNGKey(values["seed"]), len(SYSTEMS))))
    out, failures = {}, 0
    for name in SYSTEMS:
        problem, params, z0, x, y = make_problem(name, getattr(config, name), keys[name],
                                                 gain=values[f"{name}.gain"])
        oracle, info = flowsim.gradient(flowsim.Implicit(), problem, z0, params, x, y)
        failures += info["result"] != flowsim.RESULTS.successful

        def estimate(estimator):
            grads, info = flowsim.gradient(estimator, problem, z0, params, x, y)
            return (flowsim.cosine(grads, oracle), info["residual"],
                    info["result"] != flowsim.RESULTS.successful)

        ep = lambda steps: estimate(flowsim.EP(beta_min, steps, dt, True, **bound))
        picked = {"ep": ep(longest), "ep_first": ep(config.phase_steps[0])}
        if name == "asymmetric":
            picked["rbp"] = estimate(flowsim.RBP(longest, dt, **bound))
        else:
            picked["hep"] = estimate(flowsim.HolomorphicEP(values["radius"], config.points,
                                                           longest, dt, **bound))
        horizon = [estimate(flowsim.BPTT(t, dt, max_steps=max(config.horizons)))
                   for t in config.horizons]
        cos_t, residual_t, failed_t = (jnp.stack(column) for column in zip(*horizon))
        failures += sum(failed for _, _, failed in picked.values()) + jnp.sum(failed_t)
        best = jnp.argmin(residual_t)
        suffix = "" if name == "asymmetric" else f"_{name}"
        out[f"cos_bptt_oracle_at_min_residual{suffix}"] = cos_t[best]
        out[f"min_residual{suffix}"] = residual_t[best]
        out[f"cos_ep_oracle_shortest_phase_{name}"] = picked["ep_first"][0]
        out[f"cos_ep_oracle_{'symmetric' if name == 'hopfield' else 'asymmetric'}"] = picked["ep"][0]
        if name == "asymmetric":
            out["cos_rbp_oracle_asymmetric"] = picked["rbp"][0]
        else:
            out["cos_hep_oracle_symmetric"] = picked["hep"][0]
    out["failed_estimates"] = failures
    return out


SWEEP = SweepCore(traced=("seed", "dt", "hopfield.gain", "asymmetric.gain", "radius"),
                  summary=_headline_core,
                  headline=("cos_ep_oracle_symmetric", "cos_ep_oracle_asymmetric",
                            "cos_rbp_oracle_asymmetric", "cos_bptt_oracle_at_min_residual"))


def _pick(rows, **match):
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def _headline(rows, config):
    longest, beta_min = max(config.phase_steps), min(config.betas)

    def at_longest(system, estimator):
        (row,) = _pick(rows, sweep="phase", system=system, estimator=estimator, steps=longest)
        return row["cos"]

    summary = {
        "cos_ep_oracle_symmetric": at_longest("hopfield", "ep_symmetric"),
        "cos_ep_oracle_asymmetric": at_longest("asymmetric", "ep_symmetric"),
        "cos_rbp_oracle_asymmetric": at_longest("asymmetric", "rbp"),
        "cos_hep_oracle_symmetric": at_longest("hopfield", "holomorphic_ep"),
        "ep_beta": beta_min,
        "phase_steps": longest,
    }
    for system in SYSTEMS:
        horizon = _pick(rows, sweep="horizon", system=system)
        best = min(horizon, key=lambda r: r["residual"])
        suffix = "" if system == "asymmetric" else f"_{system}"
        summary[f"cos_bptt_oracle_at_min_residual{suffix}"] = best["cos"]
        summary[f"min_residual{suffix}"] = best["residual"]
        first = _pick(rows, sweep="phase", system=system, estimator="ep_symmetric")[0]
        summary[f"cos_ep_oracle_shortest_phase_{system}"] = first["cos"]
    return summary


FLOOR = float(np.finfo(np.float64).eps)  # 1 − cos below this is rounding


def _gap(ax, xs, cosines, label, offset=None):
    """1 − cos on a log axis; values at rounding level are drawn at FLOOR as open markers
    (said in the legend), never silently clipped."""
    gaps = np.asarray([1.0 - c for c in cosines])
    shown = np.maximum(gaps, FLOOR)
    line, = ax.plot(xs, shown, "o-", label=label)
    low = gaps <= FLOOR
    if low.any():
        ax.plot(np.asarray(xs)[low], shown[low], "o", mfc="white", color=line.get_color())
    return shown


def _rounding_line(ax):
    ax.axhline(FLOOR, color="grey", ls=":", lw=1, label="float64 rounding (open: at or below)")


def _plot_phase(rows, path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, system in zip(axes, SYSTEMS):
        for estimator in ("ep_symmetric", "ep_one_sided", "holomorphic_ep", "rbp"):
            sel = _pick(rows, sweep="phase", system=system, estimator=estimator)
            _gap(ax, [r["steps"] for r in sel], [r["cos"] for r in sel], estimator)
        _rounding_line(ax)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(system)
        ax.set_xlabel("nudged / adjoint phase length (Euler steps)")
        ax.set_ylabel("1 - cos(estimate, oracle)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="best")
    save_figure(fig, path, "Distance of each estimate from the oracle as its phase grows")


def _plot_horizon(rows, path):
    fig, ax = plt.subplots(figsize=(6.5, 4.6))
    for system, dy in zip(SYSTEMS, (7, -11)):
        sel = _pick(rows, sweep="horizon", system=system)
        xs = [r["residual"] for r in sel]
        shown = _gap(ax, xs, [r["cos"] for r in sel], system)
        for r, x, y in zip(sel, xs, shown):  # one system's labels above, the other's below
            ax.annotate(f"T={r['steps']}", (x, y), textcoords="offset points", xytext=(3, dy),
                        fontsize=6)
    _rounding_line(ax)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"free-phase residual $\|F(z_T)\|$")
    ax.set_ylabel(r"$1 - \cos(\mathrm{oracle}, \mathrm{BPTT}_T)$")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, path, "BPTT meets the equilibrium gradient as the residual vanishes")


def _plot_nudge(rows, path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for system in SYSTEMS:
        for estimator in ("ep_symmetric", "ep_one_sided"):
            sel = _pick(rows, sweep="beta", system=system, estimator=estimator)
            axes[0].loglog([r["beta"] for r in sel], [r["rel_error"] for r in sel], "o-",
                           label=f"{system} {estimator}")
        sel = _pick(rows, sweep="radius", system=system)
        axes[1].loglog([r["radius"] for r in sel], [r["rel_error"] for r in sel], "o-",
                       label=f"{system} holomorphic_ep")
    for ax, key, label, title in ((axes[0], "beta", r"nudge $\beta$", "real nudges"),
                                  (axes[1], "radius", "holomorphic radius r",
                                   "complex nudges on a circle")):
        values = sorted({r[key] for r in rows if r["sweep"] == key})
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.minorticks_off()
        ax.set_xlabel(label)
        ax.set_title(title)
        ax.set_ylabel("relative error vs oracle")
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3, which="both")
    save_figure(fig, path, "Error of EP against the oracle: O(beta^2) symmetric, O(beta) one-sided")
