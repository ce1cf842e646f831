r"""connectivity-shift: does sparse non-local connectivity shift the percolation threshold?

Seed 003's "non-local connectivity threshold shift", decided by data. Bond
percolation on the n × n grid: each nearest-neighbour bond is open with
probability p; the lattice threshold is 1/2. Three arms share every trial's
bonds (common random numbers, :mod:`.connectivity_model`):

    lattice      the grid alone;
    shortcuts    + m = max(1, round(s n²)) edges between uniformly drawn site pairs, each
                 open with the same p (bond percolation on a Newman–Watts small world;
                 ``shortcut_open = "always"`` keeps them open);
    gated        the same shortcuts (same ends, same uniforms) as GateBenefit terms: a gate
                 pushes its target up with force w_g σ(k(η_src − c)), which opens when its
                 source is connected. ``gates = "one"`` (default): one gate per shortcut,
                 source → target, so connectivity flows one way and the graph truth is a
                 directed search (a Quadratic coupling could not do this); "both": a gate
                 each way, whose graph truth is the shortcuts arm's, so only the mechanism
                 differs (measured at the default sizes: the same thresholds as the
                 shortcuts arm, trial by trial).

Two measurements of every trial at every p:

    graph        ground truth: the left edge reaches the right edge through the open edges
                 (a breadth-first search, scipy.sparse.csgraph); each trial's exact
                 threshold p_t (it spans iff p > p_t) by bisection over its uniforms;
    coordinator  the relaxed energy of :func:`connectivity_model.coordinator` (left edge
                 pulled to 1, a weak leak a toward 0, open bonds w(η_i − η_j)²): the trial
                 "spans" when the largest right-column η exceeds 1/2. The mean right-column
                 η is reported too: it is the fraction of the right edge connected, a
                 different observable whose 1/2-crossing lies above p_c.

The apparent threshold p_c(n) is where the trial-mean curve (spanning fraction
or mean η) first rises through 1/2, linearly interpolated on the p grid (±inf
where the grid does not bracket it). 95 % CIs are percentile bootstraps over
trials (``resamples`` draws); every quantity of one size is computed on the
same resampled trials, so differences between arms (which share their bonds)
are paired. Spanning fractions carry 95 % Wilson intervals, the mean η a 95 %
t interval, in metrics.csv. With common random numbers an added edge never
disconnects, so Δ ≤ 0 holds trial by trial: the shift rules test whether the
shift is resolved at every n, not its sign.

Decision rules (fixed before the run), n_min and n_max the smallest and largest size:

    lattice_verdict    "approaches_half" if |p_c(n_max) − 1/2| < |p_c(n_min) − 1/2| or the
                       CI of p_c(n_max) contains 1/2 (graph truth); else "does_not".
    shift_verdict      graph truth, Δ(n) = p_c(shortcuts) − p_c(lattice): "supported" if the
                       CI of Δ lies below 0 at every n, "not supported" if it lies above 0 at
                       some n, else "inconclusive".
    coordinator_shift_verdict / gated_shift_verdict: the same rule on the coordinator's
                       thresholds (quadratic shortcuts / gated shortcuts vs lattice).
    coordinator_tracks_truth   "yes" if the paired CI of p_c(coordinator) − p_c(graph)
                       contains 0 for every arm and n, else "no".
    verdict            "supported" if shift_verdict and both coordinator verdicts are
                       "supported"; "not supported" if any is "not supported"; else
                       "inconclusive".

The leak is chosen so the screening length ξ = √(w/a) is far beyond the
backbone scale n^{1.45} (see the model's docstring): a = 1e-6 gives ξ = 1000;
the margin shows in ``eta_min_spanning`` / ``eta_max_not_spanning``. (Checked
the other way: ``energy.leak = 1e-3``, ξ ≈ 32, below 16^{1.45} ≈ 55 but above
8^{1.45} ≈ 20, leaves n = 8 exact and lifts the lattice's p_c(16) from 0.512 to
0.550, paired CI of the bias [0.016, 0.059]: the leak drains long spanning
clusters below 1/2. Gated targets are pushed with a constant force and keep
their exact threshold.) The
finite-size scaling that a statistical physicist expects is reported too: the
spread of the per-trial thresholds p_t shrinks like n^{−1/ν}, 1/ν = 3/4 in 2-d
(``lattice_inverse_nu``, a log-log fit over the sizes, with a percentile
bootstrap CI from trials resampled at each size; a check, not a verdict: at
these small sizes corrections to scaling are large).

All trials of one arm at one (n, p) are one block-diagonal coordinator
(trials·n² modules), relaxed by the engine's projected gradient (Barzilai–
Borwein steps, tol = 1e-5 on the projected step: the decision η ≷ 1/2 needs
far less, and the margin is reported). Every arm's coordinator carries every
family, with weight 0 for closed and absent terms, so one compiled relaxation
serves every arm and p at a size. (One block of all three arms was tried: it
took ~2.5× the steps, as its Barzilai–Borwein steps must suit all three
spectra.) Each p starts from the previous p's state (``warm_start``): the
gate-free energy is convex (one minimiser), and with gates every coupling is
cooperative, so a descent from the previous, lower state reaches the lowest
equilibrium, as a descent from 0 does; the trial-by-trial agreement with the
graph truth checks it. The cost is the relaxation: the slowest mode of a
spanning cluster has a rate ~ 1/(M R) ~ n^{−2.9}, so the default sizes stop
at 16 (n = 32 is ~10× the n = 16 cost; set ``sizes``).
"""

from typing import Annotated, Literal

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field, model_validator

import flowsim
from flowsim.coordinator import ProjectedGradient, relax
from flowsim.run import Section, StudyConfig

from . import connectivity_model as model
from .common import save_figure
from .stats import t_interval, wilson_interval

ARMS = ("lattice", "shortcuts", "gated")


class EnergyConfig(Section):
    bond: float = Field(1.0, gt=0, description="w of an open bond: w (eta_i - eta_j)^2")
    pin: float = Field(1.0, gt=0, description="alpha: the left edge's pull alpha (1 - eta)^2")
    leak: float = Field(1e-6, gt=0, description="a: every site's leak a eta^2 toward 0")
    quartic: float = Field(1e-9, gt=0, description="b of the leak's b eta^4 (Landau needs b > 0)")
    gate_weight: float = Field(1.0, gt=0, description="w_g: a gate's push on its target")
    gate_k: float = Field(50.0, gt=0, description="k: the gate's sharpness sigma(k (eta_src - c))")
    gate_cost: float = Field(0.5, gt=0, lt=1, description="c: the source level that opens a gate")


class Config(StudyConfig):
    sizes: list[Annotated[int, Field(ge=3, le=256)]] = Field(
        [8, 12, 16], min_length=1, description="grid sizes n, increasing")
    trials: int = Field(32, ge=2, le=4096, description="seeded trials per size (all p share them)")
    p_min: float = Field(0.32, gt=0, lt=1, description="the p grid's lowest bond probability")
    p_max: float = Field(0.62, gt=0, lt=1, description="the p grid's highest bond probability")
    p_points: int = Field(13, ge=2, le=1000, description="points of the p grid")
    shortcut_density: float = Field(0.05, gt=0, le=10,
                                    description="shortcuts per site: m = max(1, round(s n^2))")
    shortcut_open: Literal["p", "always"] = Field(
        "p", description="a shortcut is open with probability p, or always")
    gates: Literal["both", "one"] = Field(
        "one", description="gated arm: each shortcut gated both ways, or source -> target only")
    energy: EnergyConfig = EnergyConfig()
    max_steps: int = Field(8000, ge=10, le=10**6, description="relaxation steps per (n, p)")
    tol: float = Field(1e-5, gt=0, description="stop at max |eta - clip(eta - grad)| <= tol")
    warm_start: bool = Field(True, description="start each p from the previous p's relaxed state")
    resamples: int = Field(1000, ge=10, le=10**5, description="bootstrap resamples over trials")

    @model_validator(mode="after")
    def _grid(self):
        if not self.p_min < self.p_max:
            raise ValueError(f"p_min ({self.p_min}) must be below p_max ({self.p_max})")
        if list(self.sizes) != sorted(set(self.sizes)):
            raise ValueError(f"sizes must be strictly increasing, got {self.sizes}")
        return self


def _relax_size(n, disorder, grid, config, ctx):
    """Right-column η (arm, T, P, n) and solver records (arm, P), one relaxation per arm and p.

    Every arm's coordinator carries every family (the others' weights 0), so
    one compiled relaxation serves all arms and p at this size; the arms are
    relaxed apart because one block of all three converges slower (its
    Barzilai–Borwein steps must suit every arm's spectrum at once).
    """
    e, t = config.energy, disorder.trials
    src, dst = disorder.short_src, disorder.short_dst
    g_src, g_dst = (np.concatenate([src, dst], 1), np.concatenate([dst, src], 1)) \
        if config.gates == "both" else (src, dst)
    right = model.right_sites(n)
    solver = ProjectedGradient(max_steps=config.max_steps, tol=config.tol)
    out, records = np.zeros((3, t, len(grid), n)), [[], [], []]
    for a, arm in enumerate(ARMS):
        eta = jnp.zeros(t * n * n)
        for k, p in enumerate(ctx.progress(grid, desc=f"n = {n}, {arm}")):
            short_open = np.ones(src.shape, bool) if config.shortcut_open == "always" \
                else disorder.short_u < p
            gate_open = np.concatenate([short_open] * (g_src.shape[1] // src.shape[1]), 1)
            system = model.coordinator(
                n, t, e.bond * (disorder.bond_u < p),
                (src, dst, e.bond * short_open * (arm == "shortcuts")),
                (g_src, g_dst, e.gate_weight * gate_open * (arm == "gated")), e)
            r = relax(system, eta if config.warm_start else jnp.zeros_like(eta), solver)
            eta = r.eta
            out[a, :, k] = np.asarray(r.eta).reshape(t, n * n)[:, right]
            records[a].append({"steps": int(r.steps), "result": flowsim.result_name(r.result),
                               "stationarity": float(r.stationarity)})
    return out, records


SHIFTS = (("graph", "shortcuts", "graph"), ("coord_shortcuts", "shortcuts", "coord"),
          ("coord_gated", "gated", "coord"))  # (summary key, arm, measurement)


def _measure_size(n, grid, config, ctx):
    """One size: every arm's curves, thresholds with bootstrap samples, metrics rows."""
    rng = np.random.default_rng([ctx.seed, n])  # a size's disorder does not depend on the others
    m = max(1, round(config.shortcut_density * n * n))
    disorder = model.draw_disorder(rng, n, config.trials, m)
    eta_right, records = _relax_size(n, disorder, grid, config, ctx)
    index = model.bootstrap_indices(rng, config.trials, config.resamples)  # paired: all arms
    size = {"rows": [], "boot": {}, "pc": {}, "curves": {}, "p_t": {}, "eta_max": {},
            "records": records}
    for a, arm in enumerate(ARMS):
        und, dirs = model.edges(disorder, arm, config.gates, config.shortcut_open == "always")
        p_t = model.thresholds(n, config.trials, und, dirs)
        eta_max = eta_right[a].max(axis=2)                            # (T, P)
        measured = {"graph": (p_t[:, None] < grid[None, :]).astype(float),
                    "coord": (eta_max > 0.5).astype(float),
                    "mean_eta": eta_right[a].mean(axis=2)}
        for name, values in measured.items():
            size["boot"][arm, name] = model.crossings(grid, values, index)
            size["pc"][arm, name] = (model.crossing(grid, values.mean(0)),
                                     *model.percentile_ci(size["boot"][arm, name]))
        size["curves"][arm] = measured
        size["p_t"][arm] = p_t
        size["eta_max"][arm] = eta_max
        for k, p in enumerate(grid):
            size["rows"].append(_row(arm, n, p, *(v[:, k] for v in measured.values()),
                                     records[a][k], config.trials))
    return size


def _difference_ci(first, second):
    with np.errstate(invalid="ignore"):  # inf − inf (both unbracketed): undefined, dropped
        return model.percentile_ci(first - second)


def run(config, ctx):
    grid = np.linspace(config.p_min, config.p_max, config.p_points)
    sizes = {n: _measure_size(n, grid, config, ctx) for n in config.sizes}
    ctx.write_metrics([row for size in sizes.values() for row in size["rows"]])
    summary, tracks, shift_cis = {}, [], {key: [] for key, _, _ in SHIFTS}
    for n, size in sizes.items():
        pc, boot = size["pc"], size["boot"]
        for arm in ARMS:
            for name in ("graph", "coord", "mean_eta"):
                key = f"pc_{name}_{arm}_n{n}"
                summary |= dict(zip((key, key + "_low", key + "_high"), pc[arm, name],
                                    strict=True))
            diff = _difference_ci(boot[arm, "coord"], boot[arm, "graph"])
            tracks.append(diff[0] <= 0 <= diff[1])
            summary |= {f"coord_minus_graph_{arm}_n{n}_low": diff[0],
                        f"coord_minus_graph_{arm}_n{n}_high": diff[1],
                        f"pt_mean_{arm}_n{n}": float(size["p_t"][arm].mean()),
                        f"pt_std_{arm}_n{n}": float(size["p_t"][arm].std(ddof=1))}
        for key, arm, name in SHIFTS:
            ci = _difference_ci(boot[arm, name], boot["lattice", name])
            shift_cis[key].append(ci)
            summary |= {f"shift_{key}_n{n}": pc[arm, name][0] - pc["lattice", name][0],
                        f"shift_{key}_n{n}_low": ci[0], f"shift_{key}_n{n}_high": ci[1]}

    first, last = sizes[config.sizes[0]]["pc"], sizes[config.sizes[-1]]["pc"]
    p_first, (p_last, low_last, high_last) = first["lattice", "graph"][0], last["lattice", "graph"]
    lattice_ok = abs(p_last - 0.5) < abs(p_first - 0.5) or low_last <= 0.5 <= high_last
    verdicts = {key: _shift_rule(cis) for key, cis in shift_cis.items()}
    verdict = ("supported" if all(v == "supported" for v in verdicts.values()) else
               "not supported" if "not supported" in verdicts.values() else "inconclusive")
    inverse_nu = model.inverse_nu_fit(config.sizes,
                                      {n: s["p_t"]["lattice"] for n, s in sizes.items()},
                                      np.random.default_rng([ctx.seed, 0]), config.resamples)
    # the margin of the coordinator's decision: right-column max η of spanning / other trials
    eta_max = np.concatenate([s["eta_max"][arm].ravel() for s in sizes.values() for arm in ARMS])
    spans = np.concatenate([s["curves"][arm]["graph"].ravel()
                            for s in sizes.values() for arm in ARMS]) == 1
    agreement = {f"agreement_{arm}": float(np.mean(np.concatenate(
        [(s["curves"][arm]["graph"] == s["curves"][arm]["coord"]).ravel()
         for s in sizes.values()]))) for arm in ARMS}
    _plot_curves(sizes, grid, config, ctx.plot_path("spanning"))
    _plot_thresholds(sizes, summary, config, ctx.plot_path("thresholds"))
    e = config.energy
    return {
        "verdict": verdict, "lattice_verdict": "approaches_half" if lattice_ok else "does_not",
        "shift_verdict": verdicts["graph"],
        "coordinator_shift_verdict": verdicts["coord_shortcuts"],
        "gated_shift_verdict": verdicts["coord_gated"],
        "coordinator_tracks_truth": "yes" if all(tracks) else "no",
        **agreement,
        "eta_min_spanning": float(eta_max[spans].min()) if spans.any() else float("nan"),
        "eta_max_not_spanning": float(eta_max[~spans].max()) if (~spans).any() else float("nan"),
        "screening_length": float(np.sqrt(e.bond / e.leak)),
        "shut_gate_force": float(e.gate_weight / (1 + np.exp(e.gate_k * e.gate_cost))),
        "lattice_inverse_nu": inverse_nu[0], "lattice_inverse_nu_low": inverse_nu[1],
        "lattice_inverse_nu_high": inverse_nu[2], "inverse_nu_2d": 0.75,
        "relaxations_failed": sum(r["result"] != "successful" for s in sizes.values()
                                  for arm in s["records"] for r in arm),
        "trials": config.trials, "sizes": ",".join(map(str, config.sizes)),
        "shortcuts_per_size": ",".join(str(max(1, round(config.shortcut_density * n * n)))
                                       for n in config.sizes),
        **summary,
    }


def _shift_rule(cis):
    if all(high < 0 for _, high in cis):
        return "supported"
    if any(low > 0 for low, _ in cis):
        return "not supported"
    return "inconclusive"


def _row(arm, n, p, graph, coord, mean_eta, record, trials):
    g_low, g_high = wilson_interval(int(graph.sum()), trials)
    c_low, c_high = wilson_interval(int(coord.sum()), trials)
    _, e_low, e_high = t_interval(mean_eta)
    return {"arm": arm, "n": n, "p": float(p), "span_graph": float(graph.mean()),
            "span_graph_low": g_low, "span_graph_high": g_high,
            "span_coord": float(coord.mean()), "span_coord_low": c_low, "span_coord_high": c_high,
            "eta_right_mean": float(mean_eta.mean()), "eta_right_mean_low": float(e_low),
            "eta_right_mean_high": float(e_high), "agreement": float(np.mean(graph == coord)),
            "relax_steps": record["steps"], "relax_result": record["result"],
            "stationarity": record["stationarity"]}


def _plot_curves(sizes, grid, config, path):
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.3), sharey=True)
    colours = plt.cm.viridis(np.linspace(0.0, 0.85, len(config.sizes)))
    for ax, arm in zip(axes, ARMS, strict=True):
        for colour, n in zip(colours, config.sizes, strict=True):
            curves = sizes[n]["curves"][arm]
            ax.plot(grid, curves["graph"].mean(0), "-", color=colour, lw=1.8,
                    label=f"n = {n}: graph truth")
            ax.plot(grid, curves["coord"].mean(0), "o", color=colour, mfc="none", ms=5,
                    label=f"n = {n}: coordinator, max right eta > 1/2")
            ax.plot(grid, curves["mean_eta"].mean(0), "--", color=colour, lw=1,
                    label=f"n = {n}: coordinator, mean right eta")
        ax.axhline(0.5, color="gray", lw=0.8)
        ax.axvline(0.5, color="gray", lw=0.8, ls=":")
        ax.set_title(f"{arm} ({config.gates}-way gates)" if arm == "gated" else arm)
        ax.set_xlabel("bond probability p")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("spanning fraction / mean right-column eta")
    axes[0].legend(fontsize=6)
    save_figure(fig, path, "Left-right spanning: graph truth (lines) and the coordinator (circles)")


def _errorbars(values):
    """(3, k) → yerr for matplotlib; an infinite end (unbracketed crossing) drawn as none."""
    values = np.asarray(values, float)
    with np.errstate(invalid="ignore"):  # inf − inf: both ends unbracketed, drawn as none
        return np.abs(np.nan_to_num(values[1:] - values[:1], nan=0.0, posinf=0.0, neginf=0.0))


def _plot_thresholds(sizes, summary, config, path):
    fig, (left, mid, right) = plt.subplots(1, 3, figsize=(15, 4.4))
    ns = np.asarray(config.sizes, float)
    colour = {"lattice": "tab:blue", "shortcuts": "tab:orange", "gated": "tab:green"}
    for i, arm in enumerate(ARMS):
        for j, (name, marker) in enumerate((("graph", "s-"), ("coord", "o"), ("mean_eta", "^"))):
            pc = np.array([sizes[n]["pc"][arm, name] for n in config.sizes]).T   # (3, sizes)
            x = ns * (1 + 0.015 * (3 * i + j - 4))  # side by side, not on top of each other
            left.errorbar(x, pc[0], yerr=_errorbars(pc), fmt=marker, color=colour[arm],
                          mfc=colour[arm] if name == "graph" else "none", capsize=2,
                          label=f"{arm}: {name}")
    left.axhline(0.5, color="gray", ls="--", lw=1, label="lattice p_c = 1/2")
    left.set(xlabel="n", ylabel="apparent threshold (95 % bootstrap CI)", xticks=ns)
    left.legend(fontsize=6)
    # the graph truth wide and pale underneath: where the coordinator agrees it hides it
    for key, c, lw, alpha in (("graph", "tab:orange", 6, 0.35),
                              ("coord_shortcuts", "tab:red", 1.5, 1),
                              ("coord_gated", "tab:green", 1.5, 1)):
        d = np.array([[summary[f"shift_{key}_n{n}{s}"] for n in config.sizes]
                      for s in ("", "_low", "_high")])
        mid.errorbar(ns, d[0], yerr=_errorbars(d), fmt="o-", color=c, lw=lw, alpha=alpha,
                     capsize=3, label=f"shift: {key}")
    mid.axhline(0.0, color="gray", ls="--", lw=1)
    mid.set(xlabel="n", ylabel="p_c(arm) - p_c(lattice) (paired 95 % CI)", xticks=ns)
    mid.legend(fontsize=7, loc="best")
    for arm in ARMS:
        right.loglog(ns, [sizes[n]["p_t"][arm].std(ddof=1) for n in config.sizes], "o-",
                     color=colour[arm], label=f"{arm}: std of per-trial p_t")
    first = sizes[config.sizes[0]]["p_t"]["lattice"].std(ddof=1)
    right.loglog(ns, first * (ns / ns[0]) ** -0.75, "k:", label="n^(-3/4) (1/nu = 3/4)")
    right.set(xlabel="n", ylabel="std of the trials' thresholds p_t")
    right.set_xticks(ns, [str(n) for n in config.sizes])
    right.xaxis.set_minor_locator(plt.NullLocator())
    right.legend(fontsize=7)
    save_figure(fig, path, "Apparent thresholds, shifts and finite-size spread")
