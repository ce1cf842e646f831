"""fep-shakespeare: pure FEP on character-level Tiny Shakespeare, held against the oracle.

Each step draws B random windows of N characters (flowsim.data.shakespeare),
relaxes the beliefs by the Q-flow of the clamped F (its [input] term holds the
window's characters, its [obs] term the next ones) and takes one step of the
rule (variant pure | hybrid | oracle), in the one training loop.

The default F (scenarios/fep-shakespeare.toml) is, position by position, the
ELBO of a latent 3-gram model: the belief's one prior is the normalised
product of the priors of x_i, x_{i-1}, x_{i-2} (``input_term="product"``,
``input_lags=3``), its next token is emitted through the expected likelihood,
the widths are learned, the position prior is weak (alpha = 0.001) and there
is no alignment (``lambda_beta=0``); see flowsim/fep/free_energy.py. The
alignment (the seeds' attention, ``lambda_beta > 0``) is an option; with it,
the beliefs of positions 0..N-2 see their next tokens through the later
positions' inputs, in training as at inference.

The same model, from the same initialisation and on the same batches, is then trained
on the oracle gradient of the prediction (``flowsim.Implicit`` on the
prediction problem): the reference of what this architecture can reach.

Every ``eval_every`` steps a row evaluates θ on ``eval_batch`` validation
windows: ``val_ce``, the prediction of each window's next character from its
last position's belief at the inference equilibrium (F without the [obs]
term; with the alignment on, the other positions' beliefs have seen their
targets through it), held against the unigram (3.35) and bigram (2.48) baselines of
the 90/10 split; ``val_input_acc``, how many input characters can be read
back from their positions' equilibrium beliefs; ``val_clamped_ce`` at the
clamped equilibrium (targets inside F: not a prediction). On the P-flow's
rows ``cos_oracle`` = cos(−∂F/∂θ at the clamped q*, −dL_pred/dθ) on the
step's batch, L_pred the prediction of ``predict_positions``:
``cos_pflow_oracle_median`` summarises it.

``bigram_ce`` (2.48) is the bigram's CE over the whole validation split; the
validation windows are a sample of it, whose own CE differs from the split's by
sampling noise. ``bigram_ce_eval_windows`` is the training text's bigram table
(add-one smoothed) on the same windows' last positions: the paired reference
(``beats_bigram_eval_windows``), in which that noise cancels.
"""

from pathlib import Path
from typing import Literal

import jax
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field, model_validator

from flowsim import fep, train
from flowsim.data import shakespeare

from . import fep_common as fc
from .common import CHECKPOINTS, config_hash, kept_rows, save_figure

UNIGRAM_CE, BIGRAM_CE = 3.35, 2.48
REFERENCE = "oracle"


class Config(fc.FEPConfig):
    predicts = True
    steps: int = Field(100, ge=1, le=10**7)
    eval_every: int = Field(20, ge=1)
    eval_batch: int = Field(256, ge=1, le=10**6,
                            description="validation windows per evaluation (one prediction each)")
    max_failed_fraction: float = Field(
        0.25, ge=0, le=1, description="a step is taken over the converged windows when at "
        "most this fraction of its q* failed (per_window)")
    oracle_training: bool = Field(True, description="also train the model on the oracle "
                                  "gradient of the prediction (the reference curve)")
    predict_positions: Literal[fep.POSITIONS] = Field(
        "last", description="the objective (what the oracle differentiates and the oracle "
        "variant learns on): the next token of each window's "
        "last position, or of every position (all: honest only without the alignment, "
        "lambda_beta = 0, and without observe_context, where no belief sees its target at "
        "inference)")

    @model_validator(mode="after")
    def _honest_objective(self):
        if self.predict_positions == "all" and (self.lambda_beta != 0 or self.observe_context):
            raise ValueError("predict_positions = \"all\" needs lambda_beta = 0 and "
                             "observe_context = false: otherwise the beliefs before the last "
                             "see their targets at inference; use \"last\"")
        return self


def _arm(config, variant, priors, windows, fixed_train, val, ctx, oracle, kept):
    task = fc.task(config, windows, fixed_train, val, variant=variant)
    where = _checkpoints(ctx, variant)
    record = lambda row: ctx.append_metrics({"run": variant, **row})
    outcome = train.fit(
        fc.trainer(config, task, variant), priors, steps=config.steps,
        eval_every=config.eval_every, record=record, checkpoint_dir=where,
        checkpoint_every=config.eval_every, config_hash=config_hash(config),
        oracle=oracle, oracle_every=config.eval_every,
        divergence=train.Divergence(monitor="val_ce", factor=1e6, finite=("val_ce",),
                                    max_skipped_steps=config.steps,
                                    max_failed_fraction=config.max_failed_fraction),
        rows=[r for r in kept if r["run"] == variant], log=ctx.log)
    return outcome


def _checkpoints(ctx, variant):
    return Path(ctx.dir) / CHECKPOINTS / variant


def run(config, ctx):
    splits = shakespeare.load_splits()
    V = len(splits.vocab)
    B, N = config.B, config.N
    key_init, _, key_val = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    priors = fc.init(config, key_init, V=V)
    train_ids, val_ids = jax.numpy.asarray(splits.train), jax.numpy.asarray(splits.val)
    windows = fep.TextWindows(train_ids, B, N)
    val = fep.TextWindows(val_ids, config.eval_batch, N).sample(key_val)
    fixed_train = windows.sample(jax.random.fold_in(key_val, 1))
    _, bigram = shakespeare.pair_tables(splits.train, V)
    (val_tokens, _), val_targets = val
    bigram_on_val = float(-np.mean(np.log(
        bigram[np.asarray(val_tokens)[:, -1], np.asarray(val_targets)[:, -1]])))
    ctx.log(f"fep-shakespeare: variant={config.variant} V={V} N={N} K={config.K} B={B}; "
            f"bigram table on the validation windows {bigram_on_val:.4f}")
    names = [config.variant]
    if config.oracle_training and config.variant != REFERENCE:
        names.append(REFERENCE)
    kept = kept_rows(ctx, {name: _checkpoints(ctx, name) for name in names}, key="run")
    main = _arm(config, config.variant, priors, windows, fixed_train, val, ctx,
                fc.oracle(config), kept)
    arms = {config.variant: main}
    if REFERENCE in names:
        arms[REFERENCE] = _arm(config, REFERENCE, priors, windows, fixed_train, val, ctx, None,
                               kept)
    plot(arms, ctx.plot_path("shakespeare"))
    rows = main.rows
    last = rows[-1]
    cos = [r["cos_oracle"] for r in rows if np.isfinite(r["cos_oracle"])]
    finite = [r["val_ce"] for r in rows if np.isfinite(r["val_ce"])]
    summary = {
        "variant": config.variant, "val_ce": last["val_ce"], "val_acc": last["val_acc"],
        "best_val_ce": min(finite) if finite else float("nan"),
        "initial_val_ce": rows[0]["val_ce"], "val_converged": bool(last["val_converged"]),
        "val_failed_windows": int(last["val_failed"]),
        "val_input_acc": last["val_input_acc"], "val_ce_clamped": last["val_clamped_ce"],
        # a CE at a q* that did not converge is not reported as one
        "train_ce_clamped": last["train_ce"] if last["qflow_converged"] else float("nan"),
        "train_qflow_converged": bool(last["qflow_converged"]),
        "cos_pflow_oracle_median": float(np.median(cos)) if cos else float("nan"),
        "cos_pflow_oracle_min": min(cos) if cos else float("nan"),
        "unigram_ce": UNIGRAM_CE, "bigram_ce": BIGRAM_CE,
        "bigram_ce_eval_windows": bigram_on_val,
        "beats_bigram_eval_windows": bool(last["val_ce"] < bigram_on_val),
        "beats_unigram": bool(last["val_ce"] < UNIGRAM_CE),
        "beats_bigram": bool(last["val_ce"] < BIGRAM_CE), "target_met": bool(
            last["val_ce"] < BIGRAM_CE), "steps": last["step"], "skipped_steps": main.skipped,
        "status_" + config.variant: main.status,
    }
    if REFERENCE in arms and config.variant != REFERENCE:
        ref = arms[REFERENCE]
        ref_ce = [r["val_ce"] for r in ref.rows if np.isfinite(r["val_ce"])]
        summary.update({
            "val_ce_oracle_training": ref.rows[-1]["val_ce"],
            "best_val_ce_oracle_training": min(ref_ce) if ref_ce else float("nan"),
            "val_input_acc_oracle_training": ref.rows[-1]["val_input_acc"],
            "skipped_steps_oracle_training": ref.skipped,
            "status_oracle_training": ref.status})
    if main.status != "ok" or not np.isfinite(last["val_ce"]):
        summary.update(status="diverged", reason=main.reason or "non-finite validation CE")
    return summary


def plot(arms, path):
    """Prediction CE of every arm against step; the P-flow's cosine with the oracle."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for name, outcome in arms.items():
        rows = outcome.rows
        label = "P-flow (-dF/dtheta)" if name == "pure" else f"{name}"
        axes[0].plot([r["step"] for r in rows], [r["val_ce"] for r in rows], "o-",
                     label=f"{label}: val CE (prediction)")
    axes[0].axhline(UNIGRAM_CE, color="gray", ls="--", label=f"unigram {UNIGRAM_CE}")
    axes[0].axhline(BIGRAM_CE, color="gray", ls=":", label=f"bigram {BIGRAM_CE}")
    axes[0].set_ylabel("val CE, last position at inference (nats/char)")
    axes[0].legend(fontsize=8)
    first = next(iter(arms.values())).rows
    cos = [r for r in first if np.isfinite(r["cos_oracle"])]
    axes[1].plot([r["step"] for r in cos], [r["cos_oracle"] for r in cos], "s-")
    axes[1].axhline(0.0, color="gray", lw=0.5)
    axes[1].set_ylabel("cos(rule, oracle of the prediction)")
    for ax in axes:
        ax.set_xlabel("step")
    save_figure(fig, path, "Pure FEP on Tiny Shakespeare: P-flow against oracle-gradient training")
