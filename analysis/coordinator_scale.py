r"""coordinator-scale: per-step cost and time to stationarity of the coordinator, n = 32 … 10⁶.

For each n in ``sizes`` and each dtype, one seeded random sparse system
(:func:`flowsim.coordinator.scaling.random_system`: n Landau modules, ``edges_per_module``·n
edges dealt to Quadratic, DirectedHinge and GateBenefit couplings) is
relaxed from a seeded η₀ ~ U(0, 1)ⁿ by the engine's projected gradient
(``flowsim.coordinator.relax``'s jitted solver, compiled ahead) until

    ‖η − clip(η − ∇𝓕(η), 0, 1)‖_∞ ≤ tol       (``tol_float64``, ``tol_float32``).

The tolerances are fixed, not the engine's √ε: a monotone line search sees a
step's decrease (about s‖g‖₂² ≥ s·tol²) only above the energy's roundoff
ε|𝓕|, and |𝓕| grows with n (7·10⁴ at n = 10⁶, so ε|𝓕| ≈ 2·10⁻¹¹ in float64):
float64's 10⁻⁵ stays resolvable up to 10⁶ modules, where 10⁻⁶ is at the edge
(a solve may end ``line_search_failed`` there, and did after a change of
roundoff). In float32 ε|𝓕| ≈ 10⁻² at 10⁶ modules: no useful tolerance is
resolvable there, and the float32 column says so in its result code.

A row of metrics.csv is one (n, dtype): the wall time of the whole solve
(``seconds_to_stationarity``, compilation excluded), that time over the
accepted steps (``ms_per_step``) and over the energy-and-gradient evaluations
(``ms_per_evaluation``), the raw-JAX floor (one ``value_and_grad`` of the same
𝓕 written directly with jnp plus a projection, per step; ``floor_ms``),
``ratio`` = ms_per_step / floor_ms, and the solve's steps, stationarity
(2-norm) and result code. Each time is the median of up to ``repeats``
calls, fewer once a program's calls took ``repeat_budget_s``.

The anchor is the seed's coordinator as measured by the issue's author (not
run here): 1.7 ms per step at n = 32, 54 ms at 1,024, 234 ms at 4,096.
Decision rules, fixed before the numbers: ``target_met`` is true if the
headline dtype's ms per step at n = 1,024 is at least 1,000× below 54 ms
(≤ 0.054 ms); ``target_met_scale`` is true if the 10⁶-module solve ends
``successful`` in under ``scale_seconds`` seconds. The headline dtype is
float64 (the oracle dtype) when it is measured, else float32; headline keys
whose size is not in ``sizes`` are null. Timings are single measurements on
a shared machine: no confidence interval is claimed; rerun the benchmark on
a quiet machine for README numbers.

The sweep: ``sweep_points``³ configurations (Landau shift × gate cost ×
initial-state seed) of the n = ``sweep_n`` system, relaxed by ``jax.vmap`` of
the jitted solver in one compiled program, against the same configurations
solved one by one (``sweep_ratio`` = vmapped / one by one; the vmapped loop
runs until its slowest configuration stops), with the largest difference of
their states and the fraction with equal step counts.
"""

from typing import Annotated, Literal

import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field, model_validator

from flowsim.coordinator import ProjectedGradient
from flowsim.coordinator.scaling import measure_size, sweep
from flowsim.run import StudyConfig

from .common import save_figure

SEED_MS_PER_STEP = {32: 1.7, 1024: 54.0, 4096: 234.0}  # the issue author's measurement
TARGET_SPEEDUP = 1000.0
DTYPES = {"float64": np.float64, "float32": np.float32}
SWEEP_STATES = 10**7  # sweep_points³ · sweep_n at most: the vmapped solve holds a few copies


class Config(StudyConfig):
    sizes: list[Annotated[int, Field(ge=2, le=10**7)]] = Field(
        [32, 1024, 100_000, 1_000_000], min_length=1, description="numbers of modules n")
    edges_per_module: int = Field(2, ge=2, le=64, description="random edges per module")
    repeats: int = Field(3, ge=1, le=1000, description="timed calls per program (median)")
    repeat_budget_s: float = Field(
        10.0, gt=0, description="no further calls of a program once its calls took this long")
    dtype: Literal["float64", "float32", "both"] = Field("both", description="state dtype")
    tol_float64: float = Field(1e-5, gt=0, le=1, description="stationarity tolerance (inf-norm)")
    tol_float32: float = Field(1e-2, gt=0, le=1, description="stationarity tolerance (inf-norm)")
    max_steps: int = Field(10_000, ge=1, le=10**6, description="relaxation steps at most")
    sweep_n: int = Field(1024, ge=2, le=10**6, description="modules of the vmapped sweep")
    sweep_points: int = Field(4, ge=0, le=10,
                              description="points per sweep axis (points^3 solves; 0: no sweep)")
    scale_seconds: float = Field(10.0, gt=0, description="target_met_scale threshold (seconds)")

    @model_validator(mode="after")
    def _sweep_fits(self):
        if self.sweep_points**3 * self.sweep_n > SWEEP_STATES:
            raise ValueError(f"sweep_points^3 * sweep_n = {self.sweep_points**3 * self.sweep_n} "
                             f"order parameters; at most {SWEEP_STATES}")
        return self


def _dtypes(config):
    return ["float64", "float32"] if config.dtype == "both" else [config.dtype]


def _solver(config, dtype):
    tol = config.tol_float64 if dtype == "float64" else config.tol_float32
    return ProjectedGradient(max_steps=config.max_steps, tol=tol)


def run(config, ctx):
    rows = []
    jobs = [(n, dtype) for n in sorted(set(config.sizes)) for dtype in _dtypes(config)]
    for n, dtype in ctx.progress(jobs, desc="sizes"):
        row = measure_size(n, config.edges_per_module, config.seed, DTYPES[dtype],
                           config.repeats, _solver(config, dtype), config.repeat_budget_s)
        rows.append(row)
        ctx.log(f"n={n} {dtype}: {row['ms_per_step']:.4g} ms/step (floor {row['floor_ms']:.4g}), "
                f"{row['seconds_to_stationarity']:.3g} s, {row['steps']} steps, {row['result']}")
    ctx.write_metrics(rows)
    headline = _dtypes(config)[0]
    summary = _headline(rows, headline, config)
    if config.sweep_points:
        found, _ = sweep(config.sweep_n, config.sweep_points, config.edges_per_module, config.seed,
                         DTYPES[headline], config.repeats, _solver(config, headline),
                         config.repeat_budget_s)
        ctx.log(f"sweep: {found}")
        summary.update(found)
    _plot(rows, config, ctx.plot_path("ms_per_step_vs_n"))
    return summary


def _headline(rows, dtype, config):
    by_n = {r["n"]: r for r in rows if r["dtype"] == dtype}
    mid, big = by_n.get(1024), by_n.get(1_000_000)
    ms = mid["ms_per_step"] if mid else None
    speedup = SEED_MS_PER_STEP[1024] / ms if mid else None
    seconds = big["seconds_to_stationarity"] if big else None
    return {
        "ms_per_step_n1024": ms,
        "seconds_to_stationarity_n1000000": seconds,
        "speedup_vs_seed_n1024": speedup,
        "target_met": None if speedup is None else bool(speedup >= TARGET_SPEEDUP),
        "target_met_scale": None if big is None else bool(
            big["result"] == "successful" and seconds < config.scale_seconds),
        "scale_seconds": config.scale_seconds,
        "headline_dtype": dtype,
        "floor_ms_n1024": mid["floor_ms"] if mid else None,
        "ratio_n1024": mid["ratio"] if mid else None,
        "result_n1024": mid["result"] if mid else None,
        "steps_n1000000": big["steps"] if big else None,
        "stationarity_n1000000": big["stationarity"] if big else None,
        "result_n1000000": big["result"] if big else None,
        "tol": _solver(config, dtype).tol,
    }


def _plot(rows, config, path):
    fig, (cost, wall) = plt.subplots(1, 2, figsize=(11, 4.4))
    for dtype, colour in (("float64", "C0"), ("float32", "C1")):
        sel = sorted((r for r in rows if r["dtype"] == dtype), key=lambda r: r["n"])
        if not sel:
            continue
        n = [r["n"] for r in sel]
        cost.loglog(n, [r["ms_per_step"] for r in sel], "o-", color=colour,
                    label=f"flowsim relax, {dtype}")
        cost.loglog(n, [r["floor_ms"] for r in sel], "--", color=colour, alpha=0.6,
                    label=f"raw-JAX floor (1 value_and_grad), {dtype}")
        # a solve that did not end successful is drawn hollow: its time is not "to stationarity"
        for r in sel:
            done = r["result"] == "successful"
            wall.loglog(r["n"], r["seconds_to_stationarity"], "o", color=colour,
                        mfc=colour if done else "none")
        wall.loglog(n, [r["seconds_to_stationarity"] for r in sel], "-", color=colour,
                    label=f"{dtype} (tol {_solver(config, dtype).tol:g}; hollow: not successful)")
    seed_n, seed_ms = zip(*SEED_MS_PER_STEP.items(), strict=True)
    cost.loglog(seed_n, seed_ms, "rx", ms=9, mew=2, label="seed 003 (issue author's numbers)")
    cost.loglog([1024], [SEED_MS_PER_STEP[1024] / TARGET_SPEEDUP], "r*", ms=12,
                label="target: 1000x below the seed at n = 1024")
    cost.set_xlabel("modules n (about 2n edges)")
    cost.set_ylabel("ms per accepted step")
    cost.set_title("Per-step cost (median, compile excluded)", fontsize=10)
    cost.legend(fontsize=7)
    cost.grid(alpha=0.3, which="both")
    wall.loglog([1_000_000], [config.scale_seconds], "r*", ms=14, mfc="none", zorder=1,
                label=f"target: 10^6 modules in < {config.scale_seconds:g} s")
    wall.set_xlabel("modules n")
    wall.set_ylabel("seconds to stationarity")
    wall.set_title("Wall time of a whole relaxation", fontsize=10)
    wall.legend(fontsize=7)
    wall.grid(alpha=0.3, which="both")
    save_figure(fig, path)
