"""fep-shakespeare: pure FEP on character-level Tiny Shakespeare at a small K.

Each step draws B random windows of N characters (flowsim.data.shakespeare),
relaxes the beliefs (initialised at the input characters' token priors) by the
Q-flow of the full F -- whose observation term holds the next characters -- and
takes one P-step (variant pure | hybrid | oracle). Validation is a prediction:
the beliefs of `eval_batch` validation windows are relaxed by the Q-flow of F
*without* the observation term for `predict_time` and decoded; that CE is held
against the unigram (3.35) and bigram (2.48) baselines of the 90/10 split. The
CE at the clamped equilibrium (targets inside F) is logged too, as `val_ce_clamped`:
it is not a prediction (the beliefs have seen the answers).
"""

from __future__ import annotations

import jax
import matplotlib.pyplot as plt
import numpy as np

from analysis import fep_common as fc
from flowsim import fep
from flowsim.data import shakespeare

UNIGRAM_CE, BIGRAM_CE = 3.35, 2.48

CONSTRAINTS = {**fc.constraints_without("V", "log_every"),
               "eval_every": fc.at_least(1), "eval_batch": fc.at_least(1)}


def run(config, ctx):
    splits = shakespeare.load_splits()
    V = len(splits.vocab)
    B, N = config["B"], config["N"]
    key_init, key_data, key_val = jax.random.split(jax.random.PRNGKey(config["seed"]), 3)
    priors = fc.init(config, key_init, V=V)
    train_ids, val_ids = jax.numpy.asarray(splits.train), jax.numpy.asarray(splits.val)
    xv, yv = shakespeare.sample_batch(val_ids, key_val, config["eval_batch"], N, sequence=True)
    fe, flow, pflow = fc.free_energy(config), fc.qflow(config), fc.predict_flow(config)
    lrn = fc.learner(config)
    opt_state = lrn.init(priors)

    def batch(i):
        return shakespeare.sample_batch(train_ids, jax.random.fold_in(key_data, i), B, N, sequence=True)

    every = min(config["eval_every"], config["steps"])
    chunk = fc.make_chunk(lrn, fe, flow, every, batch)
    evaluate = jax.jit(lambda p: {**fep.predict(fe, pflow, p, xv, yv, "val"),
                                  **fep.clamped(fe, flow, p, xv, yv, "val_clamped")})
    ctx.log(f"fep-shakespeare: variant={config['variant']} V={V} N={N} K={config['K']} B={B}")
    rows, evals = [], []
    for start in ctx.progress(range(0, config["steps"], every), desc="fep-shakespeare"):
        ev = {k: v.item() for k, v in evaluate(priors).items()}
        evals.append({"step": start, **ev})
        (priors, opt_state), m = chunk(priors, opt_state, start)
        chunk_rows = fc.rows_of(m, start)
        chunk_rows[0].update(ev)
        rows += chunk_rows
        if not fc.finite(priors):
            break
    ev = {k: v.item() for k, v in evaluate(priors).items()}
    evals.append({"step": config["steps"], **ev})
    ctx.write_metrics(rows + [{"step": config["steps"], **ev}])
    plot(rows, evals, ctx.plot_path("shakespeare"))
    summary = {
        "variant": config["variant"], "val_ce": ev["val_ce"], "val_acc": ev["val_acc"],
        "val_ce_clamped": ev["val_clamped_ce"], "initial_val_ce": evals[0]["val_ce"],
        "best_val_ce": min(e["val_ce"] for e in evals),
        "train_ce_clamped": rows[-1]["train_ce"], "unigram_ce": UNIGRAM_CE, "bigram_ce": BIGRAM_CE,
        "beats_unigram": bool(ev["val_ce"] < UNIGRAM_CE), "beats_bigram": bool(ev["val_ce"] < BIGRAM_CE),
        "steps": rows[-1]["step"] + 1,
    }
    if not (fc.finite(priors) and np.isfinite(ev["val_ce"])):
        summary.update(status="diverged", reason="non-finite parameters or validation CE")
    return summary


def plot(rows, evals, path):
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot([r["step"] for r in rows], [r["train_ce"] for r in rows], alpha=0.5,
            label="train CE at q* (targets in F)")
    ax.plot([e["step"] for e in evals], [e["val_ce"] for e in evals], "o-", label="val CE (prediction)")
    ax.plot([e["step"] for e in evals], [e["val_clamped_ce"] for e in evals], "s--",
            label="val CE at q* (targets in F)")
    ax.axhline(UNIGRAM_CE, color="gray", ls="--", label="unigram 3.35")
    ax.axhline(BIGRAM_CE, color="gray", ls=":", label="bigram 2.48")
    ax.set_xlabel("step")
    ax.set_ylabel("CE (nats/char)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
