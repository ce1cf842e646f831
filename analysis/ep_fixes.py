r"""ep-fixes: seed 002's two fixes, from the same pre-drift EP checkpoint as ep-decisive.

1. ``forward``: forward-mode (RTRL) training of the deployed L(z_T).
   ``forward.directions = 0`` is exact forward mode (dim θ tangents: the same
   gradient as BPTT, affordable only at small sizes); k > 0 carries k random
   tangents (an unbiased but noisy estimate).
   ``bptt``: the same objective L(z_T) by reverse mode. Exact RTRL and BPTT
   compute one gradient (tests/test_estimators_linear.py), so this row is the
   trajectory exact RTRL would follow at sizes where its dim θ tangents are
   unaffordable (92k at the default size).
2. ``<ep flavour>+penalty``: the EP estimator of the source run plus the
   contraction penalty λ·E_v Σ_t log(‖Φ_z v_t‖/‖v_t‖) (``penalty.weight``).

Both continue the source's trajectory (its batches and optimiser state). Rows
carry an ``estimator`` column; cosines are against the oracle (``Implicit``).
``fixes.csv`` is the table: one row per fix (status, reason, best and final
validation CE, final ρ and residual, whether it cleared the source's wall
and kept ρ < 1).
"""

import csv
import json
from pathlib import Path

from analysis import char_training as ct
from analysis.ep_decisive import CONSTRAINTS as _DECISIVE
from analysis.ep_decisive import checkpoint_dir, continue_from
from analysis.ep_wall import plot
from flowsim.run import positive

CONSTRAINTS = {**_DECISIVE, "penalty.weight": positive}


def run(config, ctx):
    d = config["decisive"]
    ep_name = d["source_subdir"]
    tag = f"{ep_name}+penalty"
    kept = ct.kept_rows(ctx, {t: checkpoint_dir(ctx, t) for t in ("forward", "bptt", tag)},
                        key="estimator")
    runs = {}
    for name in ("forward", "bptt"):
        runs[name], start, _ = continue_from(config, ctx, d, name, kept,
                                             oracle_estimator=ct.oracle(config))
    runs[tag], _, _ = continue_from(config, ctx, d, ep_name, kept, config["penalty"]["weight"],
                                    oracle_estimator=ct.oracle(config), tag=tag)
    plot({n: o.rows for n, o in runs.items()}, ctx.plot_path("fixes"))
    out = {"status": "ok", "start_step": start}
    wall_ce = json.loads((Path(d["source"]) / "summary.json").read_text())["ep_wall_ce"]
    write_table(Path(ctx.dir) / "fixes.csv", runs, wall_ce - d["margin"])
    for name, o in runs.items():
        key = name.replace("+", "_")
        out.update({f"{key}_status": o.status, f"{key}_best_val_ce": o.best_val_ce,
                    f"{key}_val_ce": o.rows[-1]["val_ce"], f"{key}_rho": o.rows[-1]["rho"],
                    f"{key}_residual": o.rows[-1]["residual"], f"{key}_steps": o.step,
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
            rhos = [r["rho"] for r in o.rows]
            writer.writerow({
                "fix": name, "status": o.status, "reason": o.reason or "", "steps": o.step,
                "best_val_ce": o.best_val_ce, "val_ce": o.rows[-1]["val_ce"],
                "rho": o.rows[-1]["rho"], "residual": o.rows[-1]["residual"],
                "rho_max": max(rhos), "cleared_wall": o.best_val_ce < clear_below,
                "kept_rho_below_1": max(rhos) < 1.0})
