"""fep-sweep: learning rate x lambda_obs grid for the pure (or hybrid) variant, vectorised.

The whole grid is ONE compiled function: `jax.vmap` over (lr, lambda_obs) of a
`lax.scan` of `steps` learning steps (Q-flow to q* by diffrax, then the P-step),
on seed 001's minimal batch. lambda_obs is a leaf of the FreeEnergy Module and
lr a leaf of the optax state (`optax.inject_hyperparams`), so nothing retraces.
Heat maps of the final train CE at q* (targets clamped, as in fep-overfit) and
of the prediction CE (Q-flow without observations for `predict_time`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from analysis import fep_common as fc
from flowsim import fep

CONSTRAINTS = {
    **fc.constraints_without("lr", "lambda_obs", "clip", "log_every", "optimizer"),
    "lr_min": fc.positive, "lr_max": fc.positive, "n_lr": fc.at_least(1),
    "lambda_min": fc.positive, "lambda_max": fc.positive, "n_lambda": fc.at_least(1),
    "variant": fc.one_of("pure", "hybrid"),
}


def run(config, ctx):
    key_init, key_data = jax.random.split(jax.random.PRNGKey(config["seed"]))
    priors = fc.init(config, key_init)
    x, y = fc.random_batch(config, key_data)
    lrs = np.geomspace(config["lr_min"], config["lr_max"], config["n_lr"])
    lams = np.geomspace(config["lambda_min"], config["lambda_max"], config["n_lambda"])
    flow, pflow = fc.qflow(config), fc.predict_flow(config)
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=1.0)
    lrn = (fep.HybridLearner(opt, rate=config["hybrid_rate"], disc_mult=config["disc_mult"])
           if config["variant"] == "hybrid" else fep.PureLearner(opt))

    def train_one(lr, lam):
        fe = fc.free_energy(config, lambda_obs=lam)
        state = lrn.init(priors)
        state.hyperparams["learning_rate"] = jnp.asarray(lr, priors.tok_mu.dtype)

        def body(carry, _):
            p, s = carry
            p, s, m = fep.learning_step(lrn, fe, flow, p, s, x, y)
            return (p, s), (m["train_ce"], m["train_acc"])

        (p, _), (ce, acc) = jax.lax.scan(body, (priors, state), None, length=config["steps"])
        final = fep.clamped(fe, flow, p, x, y, "train")
        pred = fep.predict(fe, pflow, p, x, y)
        return {**final, **pred, "ce_curve": ce}

    grid = jax.jit(jax.vmap(jax.vmap(train_one, in_axes=(None, 0)), in_axes=(0, None)))
    ctx.log(f"fep-sweep: {len(lrs)} x {len(lams)} grid, {config['steps']} steps each, one jit")
    out = jax.tree_util.tree_map(np.asarray, grid(jnp.asarray(lrs), jnp.asarray(lams)))
    rows = []
    for a, lr in enumerate(lrs):
        for b, lam in enumerate(lams):
            rows.append({"lr": lr, "lambda_obs": lam, "train_ce": out["train_ce"][a, b],
                         "train_acc": out["train_acc"][a, b], "pred_ce": out["pred_ce"][a, b],
                         "pred_acc": out["pred_acc"][a, b]})
    ctx.write_metrics(rows)
    plot(lrs, lams, out, ctx.plot_path("final_ce"))
    ce = out["train_ce"]
    finite = np.isfinite(ce)
    best = np.unravel_index(np.nanargmin(np.where(finite, ce, np.nan)), ce.shape) if finite.any() else (0, 0)
    summary = {"variant": config["variant"], "grid": f"{len(lrs)}x{len(lams)}",
               "best_train_ce": ce[best], "best_lr": lrs[best[0]], "best_lambda_obs": lams[best[1]],
               "worst_train_ce": np.nanmax(ce) if finite.any() else float("nan"),
               "n_reached_0.05": int(np.sum((ce < 0.05) & (out["train_acc"] == 1.0))),
               "n_nonfinite": int(np.sum(~finite)), "steps": config["steps"]}
    if not finite.any():
        summary.update(status="diverged", reason="every grid point non-finite")
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
                ax.text(b, a, f"{out[key][a, b]:.2g}", ha="center", va="center",
                        color="k" if shade > 0.6 else "w", fontsize=7)
        fig.colorbar(im, ax=ax, label="log10 CE")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
