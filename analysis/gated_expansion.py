r"""gated-expansion: do gates open for a real benefit and stay shut on sampling noise?

Each trial offers K candidate expansions; candidate x is a module η_x ∈ [0, 1]
(adopt x; 0 = shut) with the local cost term and a gate that pays for it,

    F_x(η) = a η² + b η⁴ + c η  −  w σ(k·net_x) η,        (Landau, h = −c; GateBenefit)

the gate's input being the benefit measured outside the system: m samples
Δ_x,1..m ~ N(μ_x, σ²), μ_x = ``mu_real`` for the real candidates (a fraction
``real_fraction`` of each trial) and 0 for the noise ones. Two gate rules:

    naive (the seed's)   net = Δ̂ − c
    separated            net = (Δ̂ − t_{1−α, m−1} · s/√m) − c   (the one-sided lower
                         confidence bound of the benefit, s the sample std:
                         the gate needs the benefit to beat the cost by more
                         than its standard error says noise could)

The gain is a constant, so F_x is convex: relaxed from η = 0 (every gate shut)
the state is its unique minimiser, and x counts as *opened* when η_x > ½, i.e.
when F_x'(½) < 0:  σ(k·net) > (a + b/2 + c)/w, i.e. net > θ_c = logit((a + b/2 + c)/w)/k.
If c ≥ w − a − b/2 no gate can open, whatever the benefit (the seed's "no gate
opens": a cost too high for the gate's reward). Hence the exact open
probabilities, drawn against the measurements:

    naive:      P(Δ̂ > c + θ_c) = Φ((μ − c − θ_c)√m/σ)
    separated:  P(T > t_{1−α, m−1}),  T ~ noncentral t(m − 1, (μ − c − θ_c)√m/σ)

so on pure noise with c + θ_c = 0 the separated rule opens at rate α exactly.

All candidates of all trials are relaxed in one coordinator per (σ, m, cost,
rule); samples are common across the sweep (the first m of one draw).

Decision rule for a gate rule, fixed before the run (95 % Wilson intervals
over candidates):

    supported       at every (σ, m, cost) of the sweep the noise open rate's upper
                    bound is ≤ noise_factor·α, and at the largest m the real open
                    rate's lower bound is ≥ real_target for every (σ, cost)
    not supported   some noise lower bound > noise_factor·α, or some real upper bound
                    at the largest m < real_target
    inconclusive    otherwise

``verdict``: the separated rule; ``verdict_naive``: the seed's. The
``too_costly`` setting (μ > c, yet c > w − a − b/2) reproduces "no gate opens".
"""

from typing import Annotated

import jax
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field, model_validator
from scipy import stats

from flowsim import RESULTS
from flowsim.coordinator import (
    Coordinator,
    GateBenefit,
    Landau,
    ProjectedGradient,
    relax,
)
from flowsim.run import Section, StudyConfig

from .common import save_figure
from .stats import wilson_interval

RULES = ("naive", "separated")
Positive = Annotated[float, Field(gt=0)]
Samples = Annotated[int, Field(ge=2, le=10**5)]  # s/√m needs two samples
Cost = Annotated[float, Field(ge=0)]


class TooCostly(Section):
    cost: float = Field(2.5, ge=0, description="a cost above what the gate can pay (w - a - b/2)")
    mu_real: float = Field(3.5, gt=0, description="a real benefit above that cost")


class Config(StudyConfig):
    trials: int = Field(1000, ge=1, le=10**5, description="trials of K candidates")
    candidates: int = Field(8, ge=2, le=4096, description="K: candidate expansions per trial")
    real_fraction: float = Field(0.5, gt=0, lt=1, description="share of real candidates")
    mu_real: float = Field(1.5, gt=0, description="mean benefit of a real candidate")
    sigmas: list[Positive] = Field([1.0, 2.0], min_length=1, description="benefit sample std")
    samples: list[Samples] = Field([2, 4, 8, 16, 32, 64, 128, 256], min_length=1,
                                   description="m: benefit samples per candidate (>= 2)")
    costs: list[Cost] = Field([0.25, 0.5, 1.0], min_length=1, description="expansion costs c")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="one-sided level of the separated gate")
    a: float = Field(0.5, gt=0, description="Landau a of the cost term")
    b: float = Field(0.1, gt=0, description="Landau b of the cost term")
    gate_weight: float = Field(3.0, ge=0, description="w: the gate's reward")
    gate_k: float = Field(50.0, gt=0, description="gate sharpness k")
    too_costly: TooCostly = TooCostly()
    noise_factor: float = Field(2.0, ge=1, description="noise open rate allowed: factor x alpha")
    real_target: float = Field(0.9, gt=0, le=1, description="real open rate at the largest m")
    max_steps: int = Field(2000, ge=10, le=10**6, description="relaxation steps")
    tol: float = Field(1e-6, gt=0, le=0.1, description="stationarity tolerance")

    @model_validator(mode="after")
    def _consistent(self):
        if any(c >= self.mu_real for c in self.costs):
            raise ValueError(f"costs must lie in [0, mu_real = {self.mu_real}) so that the real "
                             f"candidates have a net benefit, got {self.costs}")
        real = round(self.candidates * self.real_fraction)
        if not 1 <= real < self.candidates:
            raise ValueError(f"real_fraction {self.real_fraction} of {self.candidates} "
                             f"candidates leaves no real or no noise candidate")
        return self


def open_threshold(a, b, cost, weight, k):
    """θ_c: the gate net above which the relaxed η exceeds ½ (+inf: no gate can open)."""
    ratio = (a + b / 2 + cost) / weight if weight > 0 else np.inf
    return float(np.log(ratio / (1 - ratio)) / k) if ratio < 1 else np.inf


def gate_input(rule, samples, alpha):
    """The gain the gate reads from samples (..., m): Δ̂, or its one-sided lower bound."""
    m = samples.shape[-1]
    mean = samples.mean(axis=-1)
    if rule == "naive":
        return mean
    return mean - stats.t.ppf(1 - alpha, m - 1) * samples.std(axis=-1, ddof=1) / np.sqrt(m)


def predicted_open_rate(rule, mu, sigma, m, cost, theta, alpha):
    """The exact open probability of a candidate (see the module docstring)."""
    if not np.isfinite(theta):
        return 0.0
    shift = (mu - cost - theta) * np.sqrt(m) / sigma
    if rule == "naive":
        return float(stats.norm.cdf(shift))
    return float(stats.nct.sf(stats.t.ppf(1 - alpha, m - 1), m - 1, shift))


def expansion_coordinator(gain, cost, *, a, b, weight, k):
    """One module per candidate (flattened): cost term and gate, one coordinator."""
    gain = np.ravel(gain)
    index = np.arange(gain.size)
    return Coordinator(gain.size, [Landau(index, a, b, h=-cost),
                                   GateBenefit(index, gain=gain, cost=cost, k=k, weight=weight)])


def relax_expansions(gain, cost, config):
    """Relax every candidate from η = 0; returns (η shaped like ``gain``, Relaxed)."""
    energy = expansion_coordinator(gain, cost, a=config.a, b=config.b, weight=config.gate_weight,
                                   k=config.gate_k)
    solver = ProjectedGradient(max_steps=config.max_steps, tol=config.tol)
    r = relax(energy, np.zeros(energy.n), solver)
    return np.asarray(r.eta).reshape(np.shape(gain)), r


def run(config, ctx):
    rng = np.random.default_rng(config.seed)
    n_real = round(config.candidates * config.real_fraction)
    real = np.arange(config.candidates) < n_real
    # one standard-normal draw, shared by every σ, m and cost (m takes the first m samples)
    z = rng.standard_normal((config.trials, config.candidates, max(config.samples)))
    settings = [("sweep", config.mu_real, c) for c in config.costs]
    settings.append(("too_costly", config.too_costly.mu_real, config.too_costly.cost))
    jobs = [(s, sigma, m, rule) for s in settings for sigma in config.sigmas
            for m in config.samples for rule in RULES]
    rows = []
    for (setting, mu, cost), sigma, m, rule in ctx.progress(jobs, desc="gates"):
        samples = np.where(real[:, None], mu, 0.0) + sigma * z[:, :, :m]
        eta, r = relax_expansions(gate_input(rule, samples, config.alpha), cost, config)
        theta = open_threshold(config.a, config.b, cost, config.gate_weight, config.gate_k)
        opened = eta > 0.5
        row = {"setting": setting, "rule": rule, "sigma": sigma, "m": m, "cost": cost,
               "mu_real": mu, "theta": theta}
        for name, mask, mean in (("real", real, mu), ("noise", ~real, 0.0)):
            count, n = int(opened[:, mask].sum()), int(mask.sum()) * config.trials
            lo, hi = wilson_interval(count, n)
            row |= {f"{name}_opened": count, f"{name}_n": n, f"{name}_rate": count / n,
                    f"{name}_lo": float(lo), f"{name}_hi": float(hi),
                    f"{name}_predicted": predicted_open_rate(rule, mean, sigma, m, cost, theta,
                                                             config.alpha)}
        row |= {"steps": int(r.steps), "delta_f": float(r.energy0 - r.energy),
                "successful": bool(r.result == RESULTS.successful),
                "stationarity": float(r.stationarity)}
        rows.append(row)
    ctx.write_metrics(rows)
    summary = _summarise(rows, config)
    _plot(rows, summary, config, ctx.plot_path("open_rates"))
    ctx.log(f"verdict (separated) {summary['verdict']}, naive {summary['verdict_naive']}; "
            f"noise open max: naive {summary['naive_noise_open_max']:.3f}, separated "
            f"{summary['separated_noise_open_max']:.3f}")
    return summary


def _decide(rows, config):
    limit = config.noise_factor * config.alpha
    largest = [r for r in rows if r["m"] == max(config.samples)]
    noise_ok = all(r["noise_hi"] <= limit for r in rows)
    real_ok = all(r["real_lo"] >= config.real_target for r in largest)
    if noise_ok and real_ok:
        return "supported"
    if any(r["noise_lo"] > limit for r in rows) or any(r["real_hi"] < config.real_target
                                                       for r in largest):
        return "not supported"
    return "inconclusive"


def _summarise(rows, config):
    summary = {"interval": "wilson 95% over candidates",
               "noise_limit": config.noise_factor * config.alpha,
               "max_payable_cost": config.gate_weight - config.a - config.b / 2}
    sweep = [r for r in rows if r["setting"] == "sweep"]
    for rule in RULES:
        mine = [r for r in sweep if r["rule"] == rule]
        summary["verdict" if rule == "separated" else "verdict_naive"] = _decide(mine, config)
        worst = max(mine, key=lambda r: r["noise_rate"])
        summary |= {f"{rule}_noise_open_max": worst["noise_rate"],
                    f"{rule}_noise_open_max_lo": worst["noise_lo"],
                    f"{rule}_noise_open_max_hi": worst["noise_hi"],
                    f"{rule}_noise_open_max_at_m": worst["m"],
                    f"{rule}_noise_open_max_at_cost": worst["cost"],
                    f"{rule}_noise_open_max_at_sigma": worst["sigma"]}
        largest = [r for r in mine if r["m"] == max(config.samples)]
        low = min(largest, key=lambda r: r["real_rate"])
        summary |= {f"{rule}_real_open_at_max_m_min": low["real_rate"],
                    f"{rule}_real_open_at_max_m_min_lo": low["real_lo"],
                    f"{rule}_real_open_at_max_m_min_hi": low["real_hi"]}
        smallest = [r for r in mine if r["m"] == min(config.samples)]
        summary[f"{rule}_real_open_at_min_m_mean"] = float(np.mean([r["real_rate"]
                                                                    for r in smallest]))
    small = [r for r in sweep if r["rule"] == "naive" and r["m"] == min(config.samples)]
    summary["naive_noise_opens_above_limit_at_min_m"] = any(
        r["noise_lo"] > summary["noise_limit"] for r in small)
    costly = [r for r in rows if r["setting"] == "too_costly"]
    summary["too_costly_opened"] = sum(r["real_opened"] + r["noise_opened"] for r in costly)
    summary["too_costly_real_open_max"] = max(r["real_rate"] for r in costly)
    summary["no_gate_opens_reproduced"] = summary["too_costly_opened"] == 0
    # the measurements against the exact open probabilities: worst |z| over every cell
    zs = [(r[f"{s}_rate"] - r[f"{s}_predicted"])
          / np.sqrt(max(r[f"{s}_predicted"] * (1 - r[f"{s}_predicted"]), 0.25 / r[f"{s}_n"])
                    / r[f"{s}_n"]) for r in rows for s in ("real", "noise")]
    summary["max_abs_z_vs_prediction"] = float(np.max(np.abs(zs)))
    summary["unconverged"] = sum(not r["successful"] for r in rows)
    summary["max_stationarity"] = max(r["stationarity"] for r in rows)
    summary["x64"] = bool(jax.config.read("jax_enable_x64"))
    return summary


def _plot(rows, summary, config, path):
    sigmas = config.sigmas
    columns = [("sweep", c) for c in config.costs] + [("too_costly", config.too_costly.cost)]
    fig, axes = plt.subplots(len(sigmas), len(columns), squeeze=False, sharey=True,
                             figsize=(3.6 * len(columns), 3.2 * len(sigmas)))
    styles = {("naive", "real"): ("C1", "o-"), ("naive", "noise"): ("C1", "x--"),
              ("separated", "real"): ("C2", "o-"), ("separated", "noise"): ("C2", "x--")}
    for i, sigma in enumerate(sigmas):
        for j, (setting, cost) in enumerate(columns):
            ax = axes[i, j]
            for (rule, kind), (color, fmt) in styles.items():
                sel = sorted((r for r in rows if r["setting"] == setting and r["cost"] == cost
                              and r["sigma"] == sigma and r["rule"] == rule),
                             key=lambda r: r["m"])
                m = np.array([r["m"] for r in sel])
                rate = np.array([r[f"{kind}_rate"] for r in sel])
                lo, hi = (np.array([r[f"{kind}_{e}"] for r in sel]) for e in ("lo", "hi"))
                err = np.clip([rate - lo, hi - rate], 0, None)  # roundoff at rates 0 and 1
                ax.plot(m, [r[f"{kind}_predicted"] for r in sel], "-", lw=5, alpha=0.2,
                        color=color)
                ax.errorbar(m, rate, yerr=err, fmt=fmt, ms=3, color=color, capsize=2,
                            label=f"{rule}, {kind}")
            ax.axhline(config.alpha, color="gray", lw=0.7, ls=":")
            ax.axhline(summary["noise_limit"], color="gray", lw=0.7, ls="--")
            ax.set_xscale("log", base=2)
            label = (f"too costly (μ = {config.too_costly.mu_real}): " if setting == "too_costly"
                     else "")
            ax.set_title(f"{label}c = {cost}, σ = {sigma}", fontsize=9)
            if i == len(sigmas) - 1:
                ax.set_xlabel("samples m")
            if j == 0:
                ax.set_ylabel("open rate (Wilson 95 %)")
    axes[0, 0].legend(fontsize=7)
    save_figure(fig, path, title=f"gates: separated {summary['verdict']}, naive "
                                 f"{summary['verdict_naive']} (pale: exact prediction; "
                                 f"dotted α, dashed limit)")
