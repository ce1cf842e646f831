r"""rho-vs-c: contraction of the deployed relaxation along a one-parameter family.

The family scales the recurrent weights of a model, W → c·W (and W_out → c·W_out
when untied), at its initialisation or at a checkpoint of an ep-* run. For each
c, on the fixed validation batch: ρ(I + ε F_z) at z_T (max over samples), the
finite-T1 residual mean_i ‖F(z_T)_i‖ and the deployed CE. Since
F_z = −I + c² Wᵀ D W (tied), ρ grows with c and passes 1 where the relaxation
stops contracting; ρ^T1 says how much of z_0's error survives T1 steps.
"""

import equinox as eqx
import matplotlib.pyplot as plt
import numpy as np

from analysis import char_training as ct
from flowsim.run import at_least, positive
from flowsim.train import Diagnostics

CONSTRAINTS = {**ct.CONSTRAINTS, "rho.c_min": positive, "rho.c_max": positive,
               "rho.points": at_least(2), "rho.source_step": at_least(-1)}


def scaled(params, c):
    params = eqx.tree_at(lambda p: p.W, params, c * params.W)
    if params.W_out is not None:
        params = eqx.tree_at(lambda p: p.W_out, params, c * params.W_out)
    return params


def run(config, ctx):
    r = config["rho"]
    if r["source"]:
        (params, _), source_config, step = ct.source_checkpoint(r["source"], r["source_subdir"],
                                                           r["source_step"])
        config = {**source_config, "train": {**source_config["train"],
                                             "rho_samples": config["train"]["rho_samples"]}}
        ctx.log(f"rho-vs-c: parameters of {r['source']} at step {step}")
    setup = ct.CharSetup(config)
    if not r["source"]:
        params = setup.init_params()
    diag = Diagnostics(setup.trainer("bptt"), None, config["train"]["rho_samples"])
    xv, yv = setup.eval_batches[1]
    rows = []
    for c in np.linspace(r["c_min"], r["c_max"], r["points"]):
        d = diag.deployed(scaled(params, float(c)), xv, yv)
        rows.append({"c": float(c), "rho": d["rho"], "residual": d["residual"], "val_ce": d["ce"],
                     "rho_pow_t1": d["rho"] ** config["model"]["t1"]})
        ctx.log(f"c={c:.3f} rho={d['rho']:.5f} residual={d['residual']:.3g} val_ce={d['ce']:.4f}")
    ctx.write_metrics(rows)
    plot(rows, ctx.plot_path("rho_vs_c"), config["model"]["t1"])
    crossing = [row["c"] for row in rows if row["rho"] >= 1.0]
    at_one = min(rows, key=lambda row: abs(row["c"] - 1.0))
    return {"status": "ok", "c_rho_ge_1": crossing[0] if crossing else -1.0,
            "rho": at_one["rho"], "residual": at_one["residual"], "val_ce": at_one["val_ce"]}


def plot(rows, path, t1):
    c = [row["c"] for row in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot(c, [row["rho"] for row in rows], "o-")
    axes[0].axhline(1.0, color="r", ls=":")
    axes[0].set_ylabel("rho(I + dt F_z) at z_T")
    axes[1].semilogy(c, [row["residual"] for row in rows], "o-", label=f"||F(z_T)||, T1={t1}")
    axes[1].set_ylabel("finite-T1 residual")
    axes[1].legend()
    for ax in axes:
        ax.set_xlabel("c (W -> c W)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
