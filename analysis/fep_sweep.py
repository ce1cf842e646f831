"""fep-sweep: learning rate × λ_obs grid for the pure (or hybrid) rule, vectorised.

The whole grid is ONE compiled function: ``jax.vmap`` over (lr, λ_obs) of the
training loop's own steps (:func:`flowsim.train.run_steps`: a Q-flow to q*,
then the rule's optax step), on seed 001's minimal batch. λ_obs is a leaf of
the free energy (in the task) and lr a leaf of the optax state
(``optax.inject_hyperparams``), so nothing retraces. Heat maps of the final
train CE at q* (targets clamped, as in fep-overfit) and of the prediction CE
(the last position's next token at the equilibrium without observations).
"""

from typing import Literal

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from pydantic import Field, model_validator

import flowsim
from flowsim import fep, train
from flowsim.fep.task import _metrics
from flowsim.run.registry import HybridOptions

from . import fep_common as fc
from .common import save_figure


class Config(fc.FEPModel, fc.RandomTokens):
    steps: int = Field(30, ge=1, le=10**6, description="learning steps per grid point")
    lr_min: float = Field(0.005, gt=0)
    lr_max: float = Field(0.1, gt=0)
    n_lr: int = Field(4, ge=1, le=1024)
    lambda_min: float = Field(0.1, gt=0)
    lambda_max: float = Field(10.0, gt=0)
    n_lambda: int = Field(4, ge=1, le=1024)
    variant: Literal["pure", "hybrid"] = Field("pure", description="the P-step is SGD")
    hybrid: HybridOptions = HybridOptions()

    @model_validator(mode="after")
    def _ranges(self):
        for low, high in (("lr_min", "lr_max"), ("lambda_min", "lambda_max")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) must not exceed {high} "
                                 f"({getattr(self, high)})")
        return self


def run(config, ctx):
    key_init, key_data = fc.keys(config)
    priors = fc.init(config, key_init)
    x, y = fc.random_batch(config, key_data)
    lrs = np.geomspace(config.lr_min, config.lr_max, config.n_lr)
    lams = np.geomspace(config.lambda_min, config.lambda_max, config.n_lambda)
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=1.0)
    data_key, noise_key = train.keys(config.seed)[1:]

    def train_one(lr, lam):
        task = fc.task(config, fep.FixedBatch(x, y), (x, y), lambda_obs=lam)
        rule = fc.rule(config, lr=lr)
        state = opt.init(priors)
        state.hyperparams["learning_rate"] = jnp.asarray(lr, priors.tok_mu.dtype)
        params, _, info = train.run_steps(task, rule, opt, priors, state, data_key, noise_key,
                                          config.steps)
        skipped = jnp.sum(info["result"]._value != flowsim.RESULTS.successful._value)
        return {**_metrics(task, params), "skipped_steps": skipped}

    grid = jax.jit(jax.vmap(jax.vmap(train_one, in_axes=(None, 0)), in_axes=(0, None)))
    ctx.log(f"fep-sweep: {len(lrs)} x {len(lams)} grid, {config.steps} steps each, one jit")
    out = jax.tree.map(np.asarray, grid(jnp.asarray(lrs), jnp.asarray(lams)))
    rows = []
    for a, lr in enumerate(lrs):
        for b, lam in enumerate(lams):
            rows.append({"lr": lr, "lambda_obs": lam, "train_ce": out["train_ce"][a, b],
                         "train_acc": out["train_acc"][a, b], "pred_ce": out["pred_ce"][a, b],
                         "pred_acc": out["pred_acc"][a, b],
                         "skipped_steps": out["skipped_steps"][a, b],
                         "qflow_converged": bool(out["qflow_converged"][a, b])})
    ctx.write_metrics(rows)
    plot(lrs, lams, out, ctx.plot_path("final_ce"))
    ce = out["train_ce"]
    finite = np.isfinite(ce)
    # best and worst over the cells whose final q* converged: elsewhere CE is not at a q*
    usable = finite & out["qflow_converged"]
    best = np.unravel_index(np.nanargmin(np.where(usable, ce, np.nan)), ce.shape) if usable.any() else (0, 0)
    summary = {"variant": config.variant, "grid": f"{len(lrs)}x{len(lams)}",
               "best_train_ce": ce[best], "best_lr": lrs[best[0]], "best_lambda_obs": lams[best[1]],
               "worst_train_ce": np.nanmax(np.where(usable, ce, np.nan)) if usable.any() else float("nan"),
               # a cell counts only where its final q* converged (its CE is at a q*)
               "n_reached_0.05": int(np.sum((ce < 0.05) & (out["train_acc"] == 1.0)
                                            & out["qflow_converged"])),
               "n_unconverged": int(np.sum(~out["qflow_converged"])),
               "n_nonfinite": int(np.sum(~finite)), "steps": config.steps}
    if not usable.any():
        summary.update(status="diverged", reason="no grid point ended at a finite, converged q*")
    return summary


def plot(lrs, lams, out, path):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "train_ce", "final train CE at q* (targets in F)"),
                           (axes[1], "pred_ce", "prediction CE (no targets)")):
        im = ax.imshow(np.log10(out[key]), origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(lams)), [f"{v:.2g}" for v in lams])
        ax.set_yticks(range(len(lrs)), [f"{v:.2g}" for v in lrs])
        ax.set_xlabel("lambda_obs")
        ax.set_ylabel("learning rate")
        ax.set_title(title, fontsize=9)
        for a in range(len(lrs)):
            for b in range(len(lams)):
                shade = im.norm(np.log10(out[key][a, b]))
                mark = "" if out["qflow_converged"][a, b] else "*"
                ax.text(b, a, f"{out[key][a, b]:.2g}{mark}", ha="center", va="center",
                        color="k" if shade > 0.6 else "w", fontsize=7)
        fig.colorbar(im, ax=ax, label="log10 CE")
    save_figure(fig, path, "fep-sweep after the last step (* : that cell's final q* did not converge)")
