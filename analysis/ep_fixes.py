r"""ep-fixes: seed 002's two fixes, from the same pre-drift EP checkpoint as ep-decisive.

1. ``forward``: forward-mode (RTRL) training of the deployed L(z_T).
   ``forward.directions = 0`` is exact forward mode (dim θ tangents: the same
   gradient as BPTT, affordable only at small sizes); k > 0 carries k random
   tangents (an unbiased but noisy estimate).
   ``bptt``: the same objective L(z_T) by reverse mode. Exact RTRL and BPTT
   compute one gradient (tests/test_estimators_linear.py), so this row is the
   trajectory exact RTRL would follow at sizes where its dim θ tangents are
   unaffordable (92k at the default size).
2. ``<ep flavour>+penalty``: the EP rule of the source run plus the
   contraction penalty λ·E_v Σ_t log(‖Φ_z v_t‖/‖v_t‖) (``penalty.weight``).

All three continue the source's trajectory (its batches and optimiser state);
the source is found or made as in ep-decisive. Rows carry an ``estimator``
column; cosines are against the oracle (``Implicit``). ``fixes.csv`` is the
table: one row per fix (status, reason, best and final validation CE, final
ρ and residual, whether it cleared the source's wall and kept ρ < 1).
"""

import csv
from pathlib import Path

from pydantic import Field

from flowsim.run.registry import ForwardOptions
from flowsim.run.runs import read_summary

from . import char_training as ct
from .ep_decisive import Config as DecisiveConfig
from .ep_decisive import checkpoint_dir, continue_from, find_source
from .ep_wall import plot


class Config(DecisiveConfig):
    penalty: ct.PenaltySection = ct.PenaltySection(weight=0.01)
    forward: ForwardOptions = Field(default_factory=lambda: ForwardOptions(directions=16))


def run(config, ctx):
    d = config.decisive
    source, how = find_source(config, ctx)
    ep_name = d.source_subdir
    tag = f"{ep_name}+penalty"
    kept = ct.kept_rows(ctx, {t: checkpoint_dir(ctx, t) for t in ("forward", "bptt", tag)},
                        key="estimator")
    no_penalty = ct.PenaltySection()
    runs = {}
    for name in ("forward", "bptt"):
        runs[name], start = continue_from(config, ctx, source, name, kept,
                                          oracle_rule=ct.oracle(config), penalty=no_penalty)
    runs[tag], _ = continue_from(config, ctx, source, ep_name, kept, oracle_rule=ct.oracle(config),
                                 tag=tag, penalty=config.penalty)
    plot({n: o.rows for n, o in runs.items()}, ctx.plot_path("fixes"),
         "Fixes trained from the same EP checkpoint")
    out = {"start_step": start, "source_run": str(source), "source_obtained": how}
    wall_ce = read_summary(source)["ep_wall_ce"]
    write_table(Path(ctx.dir) / "fixes.csv", runs, wall_ce - d.margin)
    for name, o in runs.items():
        key = name.replace("+", "_")
        out.update({f"{key}_status": o.status, f"{key}_best_val_ce": o.best,
                    f"{key}_val_ce": o.rows[-1]["val_ce"], f"{key}_rho": o.rows[-1]["rho_max"],
                    f"{key}_residual": o.rows[-1]["residual_max"], f"{key}_steps": o.step,
                    f"{key}_reason": o.reason or ""})
    return out


def write_table(path, runs, clear_below):
    """One row per fix: does it clear the wall (best val CE below ``clear_below``) with ρ < 1?"""
    fields = ("fix", "status", "reason", "steps", "best_val_ce", "val_ce", "rho", "residual",
              "rho_max", "cleared_wall", "kept_rho_below_1")
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for name, o in runs.items():
            rhos = [r["rho_max"] for r in o.rows]
            writer.writerow({
                "fix": name, "status": o.status, "reason": o.reason or "", "steps": o.step,
                "best_val_ce": o.best, "val_ce": o.rows[-1]["val_ce"],
                "rho": o.rows[-1]["rho_max"], "residual": o.rows[-1]["residual_max"],
                "rho_max": max(rhos), "cleared_wall": o.best < clear_below,
                "kept_rho_below_1": max(rhos) < 1.0})
