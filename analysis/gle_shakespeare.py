"""gle-shakespeare: seed 004's CT-MHSA on character-level Tiny Shakespeare, GLE against BPTT.

The same model, initialisation, batches (random windows of the 90/10 split's
training text, one key per step) and AdamW for both rules. Every
``eval_every`` steps a row holds the validation CE of the prediction (the
readout at the last micro-step of each character) on a fixed set of
``eval_batch`` held-out windows; every ``cos_every`` steps, cos(GLE update,
BPTT gradient) on that step's batch, at each run's own parameters (overall
and per weight). One figure: both validation curves against unigram 3.35 and
bigram 2.48 nats, and the cosines over training. Keys shared with gle-abc
(the ``model`` table, the training keys) are declared once in
:mod:`flowsim.studies.gle_abc`.
"""

import math

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
from pydantic import Field

from flowsim.data import shakespeare
from flowsim.gle import ct_mhsa as cm

from . import gle_abc as ga
from .common import save_figure

UNIGRAM_CE, BIGRAM_CE = 3.35, 2.48


class Config(ga.GLEStudy):
    # 20 micro-steps per character hold each input longer than the diamond's error round
    # trip (8 micro-steps), and the memory's error path is cut: see README (GLE section).
    model: ga.ModelSection = ga.ModelSection(micro_steps=20, memory_error="none")
    steps: int = Field(400, ge=1, le=10**7, description="training steps of each rule")
    eval_batch: int = Field(64, ge=1, le=10**5, description="held-out windows per evaluation")


def run(config, ctx):
    splits = shakespeare.load_splits()
    runs = ga.arms(config, len(splits.vocab))
    model = runs["bptt"]
    ctx.log(f"gle-shakespeare: {model}")
    train_ids, val_ids = jnp.asarray(splits.train), jnp.asarray(splits.val)
    key_val = jax.random.fold_in(jax.random.PRNGKey(config.seed), 7)
    val_chars, val_targets = shakespeare.sample_batch(val_ids, key_val, config.eval_batch,
                                                      config.seq_len, sequence=True)
    val = jax.jit(lambda p: cm.evaluate(model, p, val_chars, val_targets))

    def evaluate(params):
        out = val(params)
        return {"val_ce": float(out["ce"]), "val_acc": float(out["acc"])}

    rows, stopped = ga.train_both(config, ctx, runs, train_ids, evaluate)
    ctx.write_metrics(rows)
    plot(rows, ctx.plot_path("shakespeare"))
    summary = {}
    for rule in ga.RULES:
        summary[f"val_ce_{rule}"] = ga.last_value(rows, rule, "val_ce")
        summary[f"best_val_ce_{rule}"] = min(
            (r["val_ce"] for r in rows if r["rule"] == rule and "val_ce" in r), default=math.nan)
        summary[f"final_train_ce_{rule}"] = ga.last_value(rows, rule, "train_ce")
        summary[f"{rule}_s_per_step"] = ga.last_value(rows, rule, "wall_s") / config.steps
    summary.update(
        initial_val_ce=next(r["val_ce"] for r in rows if "val_ce" in r),
        cos_gle_bptt_median=ga.median_of(rows, "gle", "cos_gle_bptt"),
        cos_gle_bptt_median_on_bptt=ga.median_of(rows, "bptt", "cos_gle_bptt"),
        unigram_ce=UNIGRAM_CE, bigram_ce=BIGRAM_CE,
        gle_beats_unigram=bool(summary["val_ce_gle"] < UNIGRAM_CE),
        bptt_beats_unigram=bool(summary["val_ce_bptt"] < UNIGRAM_CE),
        gle_beats_bigram=bool(summary["val_ce_gle"] < BIGRAM_CE),
        bptt_beats_bigram=bool(summary["val_ce_bptt"] < BIGRAM_CE),
        memory_lambda=config.model.memory_lambda, memory_error=config.model.memory_error,
        steps=config.steps)
    summary.update(ga.stopped_keys(stopped))
    return summary


def plot(rows, path):
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2))
    for rule in ga.RULES:
        sel = [r for r in rows if r["rule"] == rule and "val_ce" in r]
        ax.plot([r["step"] for r in sel], [r["val_ce"] for r in sel], "o-", ms=3,
                label=f"{rule.upper()} val CE")
        sel = [r for r in rows if r["rule"] == rule and "cos_gle_bptt" in r]
        bx.plot([r["step"] for r in sel], [r["cos_gle_bptt"] for r in sel], "o-", ms=3,
                label=f"all weights, at {rule.upper()}'s parameters")
    sel = [r for r in rows if r["rule"] == "gle" and "cos_W_out" in r]
    for name in ("W_out", "W_Y", "E"):
        bx.plot([r["step"] for r in sel], [r[f"cos_{name}"] for r in sel], "-", lw=0.8,
                alpha=0.6, label=f"{name} (GLE's parameters)")
    ax.axhline(UNIGRAM_CE, color="gray", ls="--", label=f"unigram {UNIGRAM_CE}")
    ax.axhline(BIGRAM_CE, color="gray", ls=":", label=f"bigram {BIGRAM_CE}")
    ax.set_xlabel("step")
    ax.set_ylabel("validation CE (nats/char)")
    ax.legend(fontsize=8)
    bx.axhline(0, color="gray", lw=0.8)
    bx.set_xlabel("step")
    bx.set_ylabel("cos(GLE update, BPTT gradient)")
    bx.legend(fontsize=7)
    save_figure(fig, path, "CT-MHSA on Tiny Shakespeare: GLE vs BPTT")
