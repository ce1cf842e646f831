r"""sequence-redemption: does non-local coupling with gating redeem a planted earlier mistake?

Seed 003 claims that non-local couplings plus gating "redeem" earlier
mistakes better than prefix-only scoring. The task (:mod:`.coordinator_tasks`):
sequences of L positions, η_t = belief that position t is consistent, local
evidence α_t(1 − η)² + a_t η² + bη⁴; in the first half, *planted* positions
whose evidence wrongly says 0 (truth 1) and *control* positions rightly at 0;
each has a later *reference* (second half). A planted mistake's reference is
reliable (truth 1, strong evidence 1); a control's reference has truth 0 and
either agrees (evidence 0) or carries weak, wrong evidence for 1 (noise).

Arms (the same sequences in every arm: paired), each relaxed from the
provisional state η₀ = the local-only solution (``start = "local"``: the
decisions already taken, which non-local terms may revise; "half": η₀ = ½):

    prefix          the baseline: η_t is read from the prefix coordinator 0..t
                    (the gated energy below, restricted to positions ≤ t), for
                    every t: a position is decided before its reference exists
    local           local terms only
    quadratic       + w_q (η_p − η_r)² per link (ungated, non-local)
    gated           + GateBenefit(p ← r): −w_g σ(k(η_r − c)) η_p (the seed's gate:
                    its input is the reference's relaxed η_r)
    gated_evidence  + the same term with a constant input: the reference's local
                    belief α_r/(α_r + a_r), measured outside the relaxation, so
                    the relaxation cannot raise the gate's input to open it

With the default strength ranges the later evidence alone separates the two:
a weak reference's local belief s/(s + prior) is at most 1.5/2.5 = 0.6 = c, a
planted reference's at least 2/3 > c. So a gate on the evidence can be
selective, and a false correction by the seed's gate comes from the
relaxation itself: the term rewards its own input (∂/∂η_r = −w_g k σ' η_p),
so η_r rises until the gate opens (``<arm>_weak_ref_above_cost`` counts the
weak references whose η ends above c).

A position counts as decided "consistent" when η_t > ½. Per trial and arm:
planted_wrong (fraction of planted positions with η ≤ ½), false_correction
(fraction of controls with η > ½), reference_wrong, accuracy (all positions),
and of each arm's relaxation ΔF = 𝓕(η₀) − 𝓕(η*) and ΔF90 in the arm's own
energy (the arms minimise different objectives: their ΔF are not compared;
for the prefix arm ΔF and steps are totals over its L solves, ΔF90 their mean).

Decision rule, fixed before the run (95 % Student-t intervals over trials of
the per-trial paired differences arm − prefix; tolerance ε = ``false_tolerance``):

    supported       CI(Δ planted_wrong) lies below 0 and the upper bound of
                    CI(Δ false_correction) is ≤ ε
    not supported   CI(Δ planted_wrong) lies at or above 0, or the lower bound of
                    CI(Δ false_correction) is > ε
    inconclusive    otherwise

``verdict`` applies it to the seed's design (``gated``); ``verdict_<arm>`` to
the others. ``gating_avoids_false_corrections``: the CI of (false_correction,
quadratic − gated) lies above 0, i.e. the ungated arm makes false corrections
that the gated one avoids.
"""

from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field, model_validator

from flowsim import RESULTS
from flowsim.coordinator import ProjectedGradient, delta_f90
from flowsim.run import Section, StudyConfig

from . import coordinator_tasks as tasks
from .common import save_figure
from .stats import t_interval

ARMS = ("prefix", "local", "quadratic", "gated", "gated_evidence")
NONLOCAL = ("quadratic", "gated", "gated_evidence")
METRICS = ("planted_wrong", "false_correction", "reference_wrong", "accuracy", "planted_error")


class Task(Section):
    length: int = Field(32, ge=4, le=4096, description="positions per sequence")
    n_planted: int = Field(4, ge=1, description="planted mistakes per sequence")
    n_controls: int = Field(4, ge=1, description="controls (rightly low) per sequence")
    weak_fraction: float = Field(0.5, ge=0, le=1,
                                 description="controls whose reference carries weak wrong evidence")
    p_one: float = Field(0.7, ge=0, le=1, description="P(truth 1) at ordinary positions")
    strong_low: float = Field(2.0, gt=0, description="strength range of evidence for 1")
    strong_high: float = Field(6.0, gt=0)
    against_low: float = Field(1.0, gt=0, description="strength range of evidence for 0")
    against_high: float = Field(3.0, gt=0)
    weak_low: float = Field(0.25, gt=0, description="strength range of weak wrong evidence")
    weak_high: float = Field(1.5, gt=0)

    @model_validator(mode="after")
    def _consistent(self):
        links = self.n_planted + self.n_controls
        if links > self.length // 2:
            raise ValueError(f"n_planted + n_controls = {links} links need as many early "
                             f"positions; length {self.length} has {self.length // 2}")
        for name in ("strong", "against", "weak"):
            low, high = getattr(self, f"{name}_low"), getattr(self, f"{name}_high")
            if not low < high:
                raise ValueError(f"{name}_low ({low}) must be below {name}_high ({high})")
        return self


class Energy(Section):
    prior: float = Field(1.0, gt=0, description="pull toward 0 of every position (Landau a)")
    b: float = Field(0.05, gt=0, description="quartic coefficient of every Landau term")
    quadratic_weight: float = Field(8.0, ge=0, description="w_q of the ungated coupling")
    gate_weight: float = Field(8.0, ge=0, description="w_g of both gated couplings")
    gate_cost: float = Field(0.6, ge=0, description="c: the gate opens when its input exceeds c")
    gate_k: float = Field(20.0, gt=0, description="gate sharpness k")


class Config(StudyConfig):
    trials: int = Field(64, ge=2, le=10**5, description="sequences (paired across arms)")
    task: Task = Task()
    energy: Energy = Energy()
    start: Literal["local", "half"] = Field("local", description="eta0 of every non-local arm")
    max_steps: int = Field(2000, ge=10, le=10**6, description="relaxation steps per solve")
    tol: float = Field(1e-6, gt=0, le=0.1, description="stationarity tolerance of the solves")
    false_tolerance: float = Field(0.05, ge=0, le=1,
                                   description="allowed rise of the false-correction rate")
    example_trial: int = Field(0, ge=0, description="the trial drawn in the example plot")

    @model_validator(mode="after")
    def _example(self):
        if self.example_trial >= self.trials:
            raise ValueError(f"example_trial ({self.example_trial}) must be below trials "
                             f"({self.trials})")
        return self


def decide(planted_diff, false_diff, tolerance):
    """The docstring's rule on the (mean, low, high) of the two paired differences."""
    if planted_diff[2] < 0 and false_diff[2] <= tolerance:
        return "supported"
    if planted_diff[1] >= 0 or false_diff[1] > tolerance:
        return "not supported"
    return "inconclusive"


def trial_metrics(eta, seqs):
    """Per-trial rates of one arm's decisions η (T, L)."""
    kind, decided = seqs.kind, eta > 0.5
    refs = np.isin(kind, (tasks.PLANTED_REF, tasks.AGREE_REF, tasks.WEAK_REF))

    def rate(mask, wrong):
        return np.sum(mask & wrong, axis=1) / np.maximum(np.sum(mask, axis=1), 1)

    return {"planted_wrong": rate(kind == tasks.PLANTED, ~decided),
            "false_correction": rate(kind == tasks.CONTROL, decided),
            "reference_wrong": rate(refs, decided != (seqs.truth == 1)),
            "accuracy": np.mean(decided == (seqs.truth == 1), axis=1),
            # |η − truth| at planted positions (truth 1 there)
            "planted_error": np.sum(np.where(kind == tasks.PLANTED, 1 - eta, 0), axis=1)
            / np.sum(kind == tasks.PLANTED, axis=1)}


def run(config, ctx):
    task, e = config.task, config.energy
    seqs = tasks.make_sequences(
        config.seed, config.trials, task.length, n_planted=task.n_planted,
        n_controls=task.n_controls, weak_fraction=task.weak_fraction, p_one=task.p_one,
        strong=(task.strong_low, task.strong_high), against=(task.against_low, task.against_high),
        weak=(task.weak_low, task.weak_high))
    solver = ProjectedGradient(max_steps=config.max_steps, tol=config.tol)
    common = dict(gate_cost=e.gate_cost, gate_k=e.gate_k, prior=e.prior, b=e.b)
    off = dict(quadratic_weight=0.0, gate_weight=0.0, evidence_gate_weight=0.0)
    weights = {"local": off, "quadratic": {**off, "quadratic_weight": e.quadratic_weight},
               "gated": {**off, "gate_weight": e.gate_weight},
               "gated_evidence": {**off, "evidence_gate_weight": e.gate_weight}}

    local = tasks.relax_sequences(seqs, solver, 0.5, **weights["local"], **common)
    eta0 = np.asarray(local.eta) if config.start == "local" else 0.5
    etas, solves = {}, {}
    for arm in ctx.progress(ARMS, desc="arms"):
        if arm == "prefix":
            p = tasks.prefix_decisions(seqs, solver, eta0, **weights["gated"], **common)
            etas[arm] = p["eta"]
            solves[arm] = {"delta_f": np.sum(p["energy0"] - p["energy"], axis=1),
                           "df90": np.mean(p["df90"], axis=1),
                           "steps": np.sum(p["steps"], axis=1),
                           "unconverged": np.sum(~p["successful"], axis=1)}
            continue
        r = local if arm == "local" else tasks.relax_sequences(seqs, solver, eta0, **weights[arm],
                                                               **common)
        etas[arm] = np.asarray(r.eta)
        energy0, energy = np.asarray(r.energy0), np.asarray(r.energy)
        solves[arm] = {"delta_f": energy0 - energy,
                       "df90": np.asarray(delta_f90(r)),
                       "steps": np.asarray(r.steps),
                       "unconverged": (~np.asarray(r.result == RESULTS.successful)).astype(int)}

    per_arm = {arm: trial_metrics(etas[arm], seqs) for arm in ARMS}
    rows = [{"trial": i, "arm": arm, **{m: float(per_arm[arm][m][i]) for m in METRICS},
             **{k: float(solves[arm][k][i]) for k in solves[arm]}}
            for arm in ARMS for i in range(config.trials)]
    ctx.write_metrics(rows)

    summary = {}
    for arm in ARMS:
        for m in METRICS:
            summary[f"{arm}_{m}"], summary[f"{arm}_{m}_lo"], summary[f"{arm}_{m}_hi"] = \
                t_interval(per_arm[arm][m])
        summary[f"{arm}_delta_f"] = float(np.mean(solves[arm]["delta_f"]))
        summary[f"{arm}_df90"] = float(np.mean(solves[arm]["df90"]))
        summary[f"{arm}_steps"] = float(np.mean(solves[arm]["steps"]))
        summary[f"{arm}_unconverged"] = int(np.sum(solves[arm]["unconverged"]))
    diffs = {}
    for arm in NONLOCAL:
        for m in ("planted_wrong", "false_correction"):
            d = t_interval(per_arm[arm][m] - per_arm["prefix"][m])
            diffs[arm, m] = d
            summary[f"diff_{m}_{arm}"], summary[f"diff_{m}_{arm}_lo"], \
                summary[f"diff_{m}_{arm}_hi"] = d
        verdict = decide(diffs[arm, "planted_wrong"], diffs[arm, "false_correction"],
                         config.false_tolerance)
        summary["verdict" if arm == "gated" else f"verdict_{arm}"] = verdict
    avoid = t_interval(per_arm["quadratic"]["false_correction"]
                       - per_arm["gated"]["false_correction"])
    summary["false_quadratic_minus_gated"], summary["false_quadratic_minus_gated_lo"], \
        summary["false_quadratic_minus_gated_hi"] = avoid
    summary["gating_avoids_false_corrections"] = bool(avoid[1] > 0)
    # the mechanism: the share of weak (noise) references whose η ends above the gate's
    # cost, i.e. whose gate is open, per arm (local: their evidence alone)
    weak = seqs.kind == tasks.WEAK_REF
    summary["weak_references"] = int(np.sum(weak))
    for arm in ARMS:
        summary[f"{arm}_weak_ref_above_cost"] = float(np.mean(etas[arm][weak] > e.gate_cost))
    summary["interval"] = "student-t 95% over trials"
    _plot(summary, diffs, etas, seqs, config, ctx.plot_path("redemption"))
    ctx.log(f"verdict {summary['verdict']}: planted wrong gated "
            f"{summary['gated_planted_wrong']:.3f} vs prefix "
            f"{summary['prefix_planted_wrong']:.3f}; false corrections gated "
            f"{summary['gated_false_correction']:.3f} vs prefix "
            f"{summary['prefix_false_correction']:.3f}")
    return summary


def _plot(summary, diffs, etas, seqs, config, path):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), gridspec_kw={"width_ratios": [1, 1, 1.6]})
    x = np.arange(len(ARMS))
    for offset, m, color in ((-0.18, "planted_wrong", "C3"), (0.18, "false_correction", "C0")):
        mean = np.array([summary[f"{a}_{m}"] for a in ARMS])
        err = np.array([[mean[i] - summary[f"{a}_{m}_lo"], summary[f"{a}_{m}_hi"] - mean[i]]
                        for i, a in enumerate(ARMS)]).T
        axes[0].bar(x + offset, mean, 0.36, yerr=err, color=color, capsize=3,
                    label=m.replace("_", " "))
    axes[0].set_xticks(x, ARMS, rotation=20, fontsize=8)
    axes[0].set_ylabel("rate per trial (95 % t CI)")
    axes[0].set_title("planted mistakes left / controls flipped", fontsize=10)
    axes[0].legend(fontsize=8)

    for k, m in enumerate(("planted_wrong", "false_correction")):
        for i, arm in enumerate(NONLOCAL):
            mean, lo, hi = diffs[arm, m]
            axes[1].errorbar(i + 0.15 * (2 * k - 1), mean, yerr=[[mean - lo], [hi - mean]],
                             fmt="os"[k], color=("C3", "C0")[k], capsize=3,
                             label=f"Δ {m.replace('_', ' ')}" if i == 0 else None)
    axes[1].axhline(0, color="gray", lw=0.8)
    axes[1].axhline(config.false_tolerance, color="C0", lw=0.8, ls="--", label="tolerance ε")
    axes[1].set_xticks(range(len(NONLOCAL)), NONLOCAL, fontsize=8)
    axes[1].set_title(f"arm − prefix (paired); verdict (gated): {summary['verdict']}",
                      fontsize=10)
    axes[1].legend(fontsize=7)

    # the example trial's links: sources (left), their references (right), planted first
    i, ax = config.example_trial, axes[2]
    order = np.argsort(~seqs.planted[i], kind="stable")
    columns = np.concatenate([seqs.source[i][order], seqs.reference[i][order]])
    links = len(order)
    xs = np.concatenate([np.arange(links), links + 1 + np.arange(links)])
    short = {tasks.PLANTED: "P", tasks.CONTROL: "C", tasks.PLANTED_REF: "R",
             tasks.AGREE_REF: "A", tasks.WEAK_REF: "W"}
    ax.scatter(xs, seqs.truth[i][columns], marker="_", s=300, color="k", label="truth")
    for k, (arm, marker) in enumerate(zip(ARMS, "v^osD", strict=True)):
        ax.plot(xs + 0.12 * (k - 2), etas[arm][i][columns], marker, ms=5, alpha=0.85, label=arm)
    ax.axhline(0.5, color="gray", lw=0.6, ls=":")
    ax.axvline(links, color="gray", lw=0.6)
    ax.set_xticks(xs, [f"{short[seqs.kind[i][c]]}\n{c}" for c in columns], fontsize=7)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("sources: P planted, C control | references: R reliable, A agreeing, W weak")
    ax.set_ylabel("η")
    ax.set_title(f"example sequence (trial {i}): η at the linked positions", fontsize=10)
    ax.legend(fontsize=7, ncol=3, loc="center left")
    save_figure(fig, path)
