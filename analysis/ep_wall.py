"""ep-wall: BPTT and an EP flavour from the same initialisation and data order (seed 002's wall).

Both runs use the ep-train config; ``wall.estimator`` picks the rule held
against BPTT (``hep``: the seed's holomorphic EP with a finite nudged phase
of ``hep.steps``; ``ep``; ``rbp``; ``implicit``). Rows of both go to one
metrics.csv with an ``estimator`` column; checkpoints to
``checkpoints/<estimator>/`` (ep-decisive starts from these).

The wall: EP's validation CE (of the deployed L(z_T)) stops improving or the
run diverges. ``ep_wall_step`` is the step of EP's best validation CE,
``ep_wall_ce`` that CE; ``wall`` is true when EP diverged or ended more than
``wall.tolerance`` above its best while BPTT ended below EP's best. BPTT's
``val_ce`` and ``rho`` are reported at ``ep_wall_step``.

EP's gradient depends on z* alone, and its free phase relaxes max(T1, 150)
steps before Newton, so EP's training trajectory is the same for every
T1 ≤ 150: the horizon changes only the deployed L(z_T) it is judged on
(``val_ce``), not the L(z*) it descends (``val_ce_star``).
"""

from pathlib import Path
from typing import Literal

import matplotlib.pyplot as plt
from pydantic import Field

from flowsim.run import Section

from . import char_training as ct
from .common import save_figure


class WallSection(Section):
    estimator: Literal["hep", "ep", "rbp", "implicit"] = Field(
        "hep", description="the rule held against BPTT")
    tolerance: float = Field(0.05, ge=0, le=10, description="nats above its best: stopped improving")


class Config(ct.CharConfig):
    wall: WallSection = WallSection()


def run(config, ctx):
    setup = ct.CharSetup(config)
    names = ("bptt", config.wall.estimator)
    dirs = {name: Path(ctx.dir) / ct.CHECKPOINTS / name for name in names}
    kept = ct.kept_rows(ctx, dirs, key="estimator")
    outcomes = {}
    for name in names:
        ctx.log(f"ep-wall: training with {name}")
        record = lambda row, name=name: ctx.append_metrics({"estimator": name, **row})
        outcomes[name] = ct.fit(setup, setup.trainer(name), setup.init_params(), ctx, dirs[name],
                                record=record, rows=[r for r in kept if r["estimator"] == name])
    plot({n: o.rows for n, o in outcomes.items()}, ctx.plot_path("wall"))
    return summarise(outcomes, names, config.wall.tolerance)


def summarise(outcomes, names, tolerance):
    bptt, ep = outcomes[names[0]], outcomes[names[1]]
    ep_rows = [r for r in ep.rows if r["val_ce"] == r["val_ce"]]
    best = min(ep_rows, key=lambda r: r["val_ce"])
    at = [r for r in bptt.rows if r["step"] <= best["step"]][-1]
    final_ep = ep_rows[-1]["val_ce"]
    wall = ep.status == "diverged" or (
        final_ep > best["val_ce"] + tolerance and bptt.rows[-1]["val_ce"] < best["val_ce"])
    out = {
        "wall": bool(wall), "ep_estimator": names[1],
        "ep_status": ep.status, "ep_reason": ep.reason or "",
        "ep_wall_ce": best["val_ce"], "ep_wall_step": best["step"],
        "ep_final_val_ce": final_ep, "ep_steps": ep.step,
        "bptt_val_ce_at_wall": at["val_ce"], "bptt_rho_at_wall": at["rho_max"],
        "ep_rho_at_wall": best["rho_max"], "ep_rho_final": ep.rows[-1]["rho_max"],
        "bptt_status": bptt.status, "val_ce": bptt.rows[-1]["val_ce"],
        "best_val_ce": bptt.best, "rho": bptt.rows[-1]["rho_max"],
        "residual": bptt.rows[-1]["residual_max"], "steps": bptt.step,
    }
    if bptt.status != "ok":
        out.update(status="diverged", reason=f"the BPTT reference diverged: {bptt.reason}")
    return out


def plot(rows, path, title="Each rule from the same initialisation"):
    """CE, residual and ρ against step for each run (ρ and residual: the largest over
    the validation batch solid, the median dotted)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for i, (name, rs) in enumerate(rows.items()):
        steps, color = [r["step"] for r in rs], f"C{i}"
        axes[0].plot(steps, [r["val_ce"] for r in rs], color=color, label=f"{name} val")
        axes[0].plot(steps, [r["train_ce"] for r in rs], color=color, ls="--", alpha=0.6,
                     label=f"{name} train")
        axes[1].semilogy(steps, [r["residual_max"] for r in rs], color=color, label=name)
        axes[2].plot(steps, [r["rho_max"] for r in rs], color=color, label=name)
        if rs and "rho_median" in rs[0]:
            axes[1].semilogy(steps, [r["residual_median"] for r in rs], color=color, ls=":")
            axes[2].plot(steps, [r["rho_median"] for r in rs], color=color, ls=":")
    axes[0].axhline(ct.BIGRAM_CE, color="gray", ls=":", label="bigram")
    axes[0].set_ylabel("CE of L(z_T) (nats)")
    axes[1].set_ylabel("residual ||F(z_T)|| (val; dotted: median)")
    axes[2].axhline(1.0, color="r", ls=":", label="rho = 1")
    axes[2].set_ylabel("rho(I + dt F_z) at z_T (dotted: median)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=6, loc="best", framealpha=0.6)
    save_figure(fig, path, title)
