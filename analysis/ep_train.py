"""ep-train: train the equilibrium character model on Tiny Shakespeare with one learning rule.

The model (``flowsim.ep.char_model``) relaxes z for ``model.t1`` Euler steps
of ``model.dt``; the deployed loss is the CE of softmax(V z_T). ``estimator``
chooses the rule (any rule of the equilibrium scheme in the registry); the
data order and the initialisation depend only on ``seed``. Metrics every
``train.eval_every`` steps, checkpoints every ``train.checkpoint_every``; a
run directory with checkpoints resumes where it stopped. Divergence ends the
run with status "diverged" (exit code 3).
"""

from pathlib import Path

import matplotlib.pyplot as plt

from . import char_training as ct
from .common import save_figure

Config = ct.CharConfig


def run(config, ctx):
    setup = ct.CharSetup(config)
    trainer = setup.trainer()
    ctx.log(f"ep-train: estimator={config.estimator} model={setup.model} "
            f"T1={config.model.t1} dt={config.model.dt}")
    outcome = ct.fit(setup, trainer, setup.init_params(), ctx, Path(ctx.dir) / ct.CHECKPOINTS)
    plot(outcome.rows, ctx.plot_path("training"), config.estimator)
    summary = ct.summary_of(outcome)
    summary["bigram_ce"] = ct.BIGRAM_CE
    summary["beats_bigram"] = bool(summary["best_val_ce"] < ct.BIGRAM_CE)
    return summary


def plot(rows, path, label):
    """CE, residual and ρ against step, one panel each (largest over the validation
    batch solid, median dashed)."""
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].plot(steps, [r["train_ce"] for r in rows], label="train")
    axes[0].plot(steps, [r["val_ce"] for r in rows], label="validation")
    axes[0].axhline(ct.BIGRAM_CE, color="gray", ls=":", label=f"bigram {ct.BIGRAM_CE}")
    axes[0].set_ylabel("CE of L(z_T) (nats)")
    axes[1].semilogy(steps, [r["residual_max"] for r in rows], label="largest")
    axes[1].semilogy(steps, [r["residual_median"] for r in rows], "--", label="median")
    axes[1].set_ylabel("residual ||F(z_T)|| over validation")
    axes[2].plot(steps, [r["rho_max"] for r in rows], label="largest")
    axes[2].plot(steps, [r["rho_median"] for r in rows], "--", label="median")
    axes[2].axhline(1.0, color="r", ls=":", label="rho = 1: no contraction")
    axes[2].set_ylabel("rho(I + dt F_z) at z_T")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=7, loc="best")
    save_figure(fig, path, f"ep-train with {label}")
