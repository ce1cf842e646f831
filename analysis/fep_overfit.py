"""fep-overfit: seed 001's minimal test (B=4, N=8, V=16 random tokens).

Trains theta by the chosen learner (variant = pure | hybrid | oracle) on one
fixed batch, alternating Q-flow -> P-step (flowsim/fep/pflow.py) until the
train CE at q* is below `target_ce` with accuracy 1.0, or `steps` run out.

"train CE" is the seeds' quantity: the decoder's CE at the Q-flow equilibrium
q* of the full F, whose observation term contains the targets (the beliefs see
what they are scored on). `pred_ce`/`pred_acc` are the honest predictions: the
Q-flow of F with lambda_obs = 0 from the input tokens' priors for
`predict_time`, then decoded. The run is "diverged" when F at q* exceeds
`diverge_factor` times its initial value (or is non-finite).
"""

from __future__ import annotations

import jax
import numpy as np

from analysis import fep_common as fc
from flowsim import fep

CONSTRAINTS = {**fc.CONSTRAINTS, "target_ce": fc.positive, "diverge_factor": fc.at_least(1)}


def run(config, ctx):
    key_init, key_data = jax.random.split(jax.random.PRNGKey(config["seed"]))
    priors = fc.init(config, key_init)
    x, y = fc.random_batch(config, key_data)
    fe, flow = fc.free_energy(config), fc.qflow(config)
    lrn = fc.learner(config)
    opt_state = lrn.init(priors)
    every = min(config["log_every"], config["steps"])
    chunk = fc.make_chunk(lrn, fe, flow, every, lambda i: (x, y))
    ctx.log(f"fep-overfit: variant={config['variant']} B={config['B']} N={config['N']} "
            f"V={config['V']} K={config['K']} ce_reduction={config['ce_reduction']}")
    rows, reached, last = [], None, None
    for start in ctx.progress(range(0, config["steps"], every), desc="fep-overfit"):
        (priors, opt_state), m = chunk(priors, opt_state, start)
        for row in fc.rows_of(m, start):
            ctx.append_metrics(row)
            rows.append(row)
            if reached is None and row["train_ce"] < config["target_ce"] and row["train_acc"] == 1.0:
                reached = row["step"]
        last = rows[-1]
        runaway = last["F"] > config["diverge_factor"] * rows[0]["F"]
        if not fc.finite(priors) or last["F"] != last["F"] or runaway:
            return {"status": "diverged", "variant": config["variant"], "steps": last["step"],
                    "reason": f"F = {last['F']:.4g} at step {last['step']} (F(0) = {rows[0]['F']:.4g})",
                    "train_ce": last["train_ce"], "train_acc": last["train_acc"],
                    "best_train_ce": min(r["train_ce"] for r in rows)}
        if reached is not None:
            break
        if "oracle_ok" in m and not np.any(m["oracle_ok"]):
            return {"status": "failed", "variant": config["variant"], "steps": last["step"],
                    "reason": f"the oracle failed at every step of {start}..{last['step']} "
                              "(theta is not updated on a failed oracle)",
                    "train_ce": last["train_ce"], "train_acc": last["train_acc"]}
    final = rows[reached] if reached is not None else last
    pred = jax.jit(lambda p: fep.predict(fe, fc.predict_flow(config), p, x, y))(priors)
    summary = {
        "variant": config["variant"], "ce_reduction": config["ce_reduction"],
        "train_ce": final["train_ce"], "train_acc": final["train_acc"],
        "steps": final["step"], "initial_train_ce": rows[0]["train_ce"],
        "initial_train_acc": rows[0]["train_acc"],
        "pred_ce": float(pred["pred_ce"]), "pred_acc": float(pred["pred_acc"]),
        "F": final["F"], "ratio_ce_kl": final["ratio_ce_kl"],
    }
    if reached is None:
        summary.update(status="failed", reason=(
            f"train CE {last['train_ce']:.4g}, acc {last['train_acc']:.3g} after "
            f"{config['steps']} steps (target CE < {config['target_ce']}, acc 1.0)"))
    else:
        summary["status"] = "ok"
    return summary
