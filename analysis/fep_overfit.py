"""fep-overfit: seed 001's minimal test (B=4, N=8, V=16 random tokens).

Trains θ by the chosen rule (variant = pure | hybrid | oracle) on one fixed
batch with the one training loop (one Q-flow to q*, then one optax step, per
step), until the train CE at q* is below ``target_ce`` with accuracy 1.0
(``target_met``) or ``steps`` run out. Either way the run completed: status
"ok", the finding is ``target_met``.

"train CE" is the seeds' quantity: the decoder's CE at the Q-flow equilibrium
q* of the full F, whose observation term contains the targets (the beliefs see
what they are scored on). ``pred_ce``/``pred_acc`` are the honest predictions
(of random tokens: chance at best): the last position's next token decoded at
the equilibrium of F without its observation term. The run is "diverged" when F at q* exceeds
``diverge_factor`` times its initial value (or is not finite).

``flowsim run fep-overfit --sweep lr=...`` (also over ``lambda_obs`` and
``seed``) trains every configuration in one vectorised program (``SWEEP``):
the same steps, each configuration frozen at the step where its target is
met (where ``run`` stops), so its row of ``sweep.csv`` is ``run``'s summary;
its state is checkpointed every ``checkpoint_every`` steps. A configuration
that diverges is not stopped there: its ``F`` and ``skipped_steps`` say so.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
from pydantic import Field

from flowsim import RESULTS, fep, train
from flowsim.fep.task import _metrics, clamped
from flowsim.run.sweep_core import SweepCore

from . import fep_common as fc
from .common import CHECKPOINTS, config_hash, kept_rows, save_figure


class Config(fc.SyntheticConfig):
    target_ce: float = Field(0.05, gt=0, description="train CE at q* that counts as overfit")
    diverge_factor: float = Field(100.0, ge=1, description="diverged when F(q*) > factor x F(step 0)")
    max_skipped: int = Field(10, ge=0, description="failed estimates (theta kept) before a stop")
    checkpoint_every: int = Field(50, ge=0, description="steps between checkpoints (0: final only)")


def run(config, ctx):
    key_init, key_data = fc.keys(config)
    priors = fc.init(config, key_init)
    x, y = fc.random_batch(config, key_data)
    task = fc.task(config, fep.FixedBatch(x, y), (x, y))
    ctx.log(f"fep-overfit: variant={config.variant} B={config.B} N={config.N} V={config.V} "
            f"K={config.K} ce_reduction={config.ce_reduction}")
    target = lambda row: row["train_ce"] < config.target_ce and row["train_acc"] == 1.0
    where = Path(ctx.dir) / CHECKPOINTS
    outcome = train.fit(
        fc.trainer(config, task), priors, steps=config.steps, eval_every=1,
        record=ctx.append_metrics, checkpoint_dir=where,
        checkpoint_every=config.checkpoint_every, config_hash=config_hash(config),
        divergence=train.Divergence(monitor="F", factor=config.diverge_factor, against="first",
                                    finite=("F", "train_ce"),
                                    max_skipped_steps=config.max_skipped),
        rows=kept_rows(ctx, {None: where}), stop=target, log=ctx.log)
    rows = outcome.rows
    plot(rows, config.target_ce, ctx.plot_path("overfit"))
    final = rows[-1]
    summary = {
        "variant": config.variant, "ce_reduction": config.ce_reduction,
        "target_met": outcome.stopped, "target_ce": config.target_ce,
        "train_ce": final["train_ce"], "train_acc": final["train_acc"], "steps": final["step"],
        "initial_train_ce": rows[0]["train_ce"], "initial_train_acc": rows[0]["train_acc"],
        "pred_ce": final["pred_ce"], "pred_acc": final["pred_acc"], "F": final["F"],
        "ratio_ce_kl": final["ratio_ce_kl"], "skipped_steps": outcome.skipped,
    }
    if outcome.status != "ok":
        summary.update(status="diverged", reason=outcome.reason,
                       best_train_ce=min(r["train_ce"] for r in rows))
    return summary


# --- learning rate, lambda_obs and seed swept as one program (``--sweep``) ---------------

def _sweep_task(config, values):
    """(init key, task, optimizer, rule) of one configuration, from its traced keys."""
    key_init, key_data = jax.random.split(jax.random.PRNGKey(values["seed"]))
    x, y = fc.random_batch(config, key_data)
    task = fc.task(config, fep.FixedBatch(x, y), (x, y), lambda_obs=values["lambda_obs"])
    return key_init, task, fc.optimizer(config, lr=values["lr"]), fc.rule(config, lr=values["lr"])


def _train_metrics(task, params):
    (tokens, targets), _ = task.train_batch
    metrics, _, _ = clamped(task, params, tokens, targets, "train")
    return metrics


def _sweep_init(config, values):
    key_init, task, opt, _ = _sweep_task(config, values)
    params = fc.init(config, key_init)
    first = _train_metrics(task, params)
    return {"params": params, "opt_state": opt.init(params), "steps": jnp.asarray(0),
            "skipped": jnp.asarray(0), "met": _met(config, first),
            "initial_train_ce": first["train_ce"], "initial_train_acc": first["train_acc"]}


def _met(config, metrics):
    return (metrics["train_ce"] < config.target_ce) & (metrics["train_acc"] == 1.0)


def _sweep_advance(config, values, state, start, count):
    """``count`` steps of the loop of :func:`run`, each configuration frozen once its
    target is met (where :func:`run` stops), so its row is :func:`run`'s summary."""
    _, task, opt, rule = _sweep_task(config, values)
    _, data_key, noise_key = train.keys(values["seed"])

    def step(state, k):
        params, opt_state, info = train.run_steps(task, rule, opt, state["params"],
                                                  state["opt_state"], data_key, noise_key, 1,
                                                  start=k)
        live = ~state["met"]
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(live, a, b), new, old)
        params, opt_state = keep(params, state["params"]), keep(opt_state, state["opt_state"])
        metrics = _train_metrics(task, params)
        failed = live & (info["result"] != RESULTS.successful)[0]
        state = {**state, "params": params, "opt_state": opt_state,
                 "steps": state["steps"] + live, "skipped": state["skipped"] + failed,
                 "met": state["met"] | _met(config, metrics)}
        return state, metrics

    return jax.lax.scan(step, state, start + jnp.arange(count))


def _sweep_summary(config, values, state):
    _, task, _, _ = _sweep_task(config, values)
    final = _metrics(task, state["params"])
    return {"target_met": state["met"], "train_ce": final["train_ce"],
            "train_acc": final["train_acc"], "steps": state["steps"],
            "initial_train_ce": state["initial_train_ce"],
            "initial_train_acc": state["initial_train_acc"], "pred_ce": final["pred_ce"],
            "pred_acc": final["pred_acc"], "F": final["F"], "ratio_ce_kl": final["ratio_ce_kl"],
            "skipped_steps": state["skipped"]}


SWEEP = SweepCore(traced=("seed", "lr", "lambda_obs"), init=_sweep_init, advance=_sweep_advance,
                  summary=_sweep_summary, steps=lambda config: config.steps,
                  chunk=lambda config: config.checkpoint_every,
                  headline=("train_ce", "steps", "pred_ce"))


def plot(rows, target, path):
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].semilogy(steps, [r["train_ce"] for r in rows], label="train CE at q* (targets in F)")
    axes[0].semilogy(steps, [r["pred_ce"] for r in rows], label="prediction CE (no targets)")
    axes[0].axhline(target, color="gray", ls=":", label=f"target {target:g}")
    axes[0].set_ylabel("CE (nats)")
    axes[0].legend(fontsize=8)
    axes[1].plot(steps, [r["F"] for r in rows])
    axes[1].set_ylabel("F at q*")
    for ax in axes:
        ax.set_xlabel("step")
    save_figure(fig, path, "Pure FEP on seed 001's minimal batch")
