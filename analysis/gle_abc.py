"""gle-abc: seed 004's CT-MHSA on "abcabc…", trained by GLE and by BPTT.

The model (flowsim.gle.ct_mhsa) and both rules start from the same
parameters, see the same batches (random windows of the periodic text) and
use the same AdamW. Each step records the batch's training CE of the
prediction (last micro-step of each character, before the update) and, every
``cos_every`` steps, cos(GLE update, BPTT gradient) at the run's parameters.
The summary gives the steps each run needs to bring the training CE below
``target_ce`` (0.05; null if never) and the final CEs: ``gle`` with the
configured ``model.memory_error`` (default ``none``, with 20 micro-steps per
character: the setting in which GLE learns, see README), one further GLE run
per ``gle_variants`` entry (``gle_<variant>_steps_to_ce``, ...), and ``bptt``.
A GLE run whose parameters become non-finite is a finding (``gle_diverged``);
only the BPTT reference diverging makes the run ``diverged``.

This module also declares what gle-shakespeare shares: the model's keys
(:class:`ModelSection`, the ``model`` table), the training keys
(:class:`GLEStudy`) and the training loop (:func:`train_both`).
"""

import dataclasses
import math
import time
from typing import Literal

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field, model_validator

import flowsim
from flowsim.data import shakespeare
from flowsim.gle import ct_mhsa as cm
from flowsim.gle import ct_mhsa_gle as cg
from flowsim.run import Section, StudyConfig

from .common import save_figure

RULES = ("gle", "bptt")


class ModelSection(Section):
    """CT-MHSA: 8 regions in a diamond, fast-weight attention, Euler micro-steps of dt."""

    d_model: int = Field(64, ge=1, le=4096)
    heads: int = Field(4, ge=1, le=512)
    micro_steps: int = Field(5, ge=1, le=1000, description="Euler steps per character")
    dt: float = Field(1.0, gt=0, le=1e3, description="Euler step (one micro-step)")
    tau_m: float = Field(2.0, gt=0, le=1e6, description="membrane time constant")
    tau_r: float = Field(2.0, gt=0, le=1e6, description="lookahead (= tau_m: no lag)")
    memory_lambda: float = Field(0.9, gt=0, le=1, description="delta-rule rate per micro-step, "
                                 "lambda = dt / tau_M")
    beta: float = Field(1.0, gt=0, le=1e6, description="output error weight (scales GLE's "
                        "updates only: they are normalised by it)")
    loss_at: Literal["last", "all"] = Field(
        "last", description="CE of the last micro-step of each character (the prediction) or "
        "of every micro-step")
    memory_error: Literal["prospective", "lag", "none"] = Field(
        "prospective", description="error reaching v k^T: e_M + tau_M de_M/dt (GLE), e_M, or 0")
    ln_eps: float = Field(1.0, gt=0, le=100, description="LayerNorm epsilon (1: a soft floor; "
                          "1e-5 makes LayerNorm of the near-zero early inputs ill-conditioned)")
    connectome_scale: float = Field(0.5, gt=0, le=100, description="initial C = scale / "
                                    "sqrt(in-degree) on edges (1: chaotic forward dynamics)")

    @model_validator(mode="after")
    def _consistent(self):
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of heads "
                             f"({self.heads})")
        if self.dt > min(self.tau_m, self.tau_r):
            raise ValueError(f"dt ({self.dt}) must be <= min(tau_m, tau_r) "
                             "(stable Euler)")
        return self


class GLEStudy(StudyConfig):
    """The keys gle-abc and gle-shakespeare share: the model and one training run per rule."""

    dtype: Literal["float32", "float64"] = "float32"
    model: ModelSection = ModelSection()
    lr: float = Field(3e-3, gt=0, le=10, description="AdamW learning rate")
    weight_decay: float = Field(1e-4, ge=0, le=10)
    clip: float = Field(0.0, ge=0, description="global-norm clip before AdamW (0: none)")
    batch: int = Field(8, ge=1, le=65536, description="windows per step")
    seq_len: int = Field(32, ge=1, le=10**5, description="characters per window")
    steps: int = Field(600, ge=1, le=10**7, description="training steps of each rule")
    eval_every: int = Field(50, ge=1)
    cos_every: int = Field(20, ge=1, description="cos(GLE, BPTT) every this many steps")


def build_model(config, vocab: int) -> cm.CTMHSA:
    m = config.model
    return cm.CTMHSA(vocab=vocab, d_model=m.d_model, heads=m.heads, micro_steps=m.micro_steps,
                     dt=m.dt, tau_m=m.tau_m, tau_r=m.tau_r, memory_lambda=m.memory_lambda,
                     beta=m.beta, loss_at=m.loss_at, memory_error=m.memory_error,
                     ln_eps=m.ln_eps)


def dtype_of(config):
    return jnp.float64 if config.dtype == "float64" else jnp.float32


def _cosines(gle, bptt) -> dict:
    out = {"cos_gle_bptt": float(flowsim.cosine(gle, bptt))}
    for name in ("E", "C", "W_out"):
        out[f"cos_{name}"] = float(flowsim.cosine(gle[name], bptt[name]))
    for name, value in gle["regions"].items():
        out[f"cos_{name}"] = float(flowsim.cosine(value, bptt["regions"][name]))
    return out


def arms(config, vocab, variants=()):
    """The runs to compare: ``{"gle": model, "gle_<v>": model with memory_error v, "bptt": model}``.

    ``"gle"`` uses the configured ``model.memory_error``; each further variant is the
    same model with another treatment of the memory's error.
    """
    model = build_model(config, vocab)
    out = {"gle": model}
    for variant in variants:
        if variant != model.memory_error:
            out[f"gle_{variant}"] = dataclasses.replace(model, memory_error=variant)
    return out | {"bptt": model}


def train_both(config, ctx, runs, ids, evaluate=None):
    """Train every run of ``runs`` (see :func:`arms`) from the same θ_0 on the same batches.

    Returns (rows, stopped): ``stopped`` maps a run whose parameters became
    non-finite to the reason (that run ends there; the others still run).

    ``ids``: the training text (device array); ``evaluate(params) -> dict`` adds
    validation columns every ``eval_every`` steps (and at the end). Non-edges
    of C are checked to be exactly 0 after every step (a RuntimeError if not).
    Every ``cos_every`` steps a row holds cos(GLE update, BPTT gradient) at that
    run's parameters (for the BPTT run, with the ``"gle"`` run's rule).
    """
    model = runs["bptt"]
    key_init, key_data = jax.random.split(jax.random.PRNGKey(config.seed))
    params0 = cm.init_params(model, key_init, dtype_of(config), config.model.connectome_scale)
    opt = cg.optimizer(config.lr, config.weight_decay, config.clip)
    bptt_grad = jax.jit(lambda p, c, t: cm.bptt_gradient(model, p, c, t)[0])
    gle_grad = jax.jit(lambda p, c, t: cg.gle_gradient(runs["gle"], p, c, t)[0])
    sample = jax.jit(lambda key: shakespeare.sample_batch(ids, key, config.batch, config.seq_len,
                                                          sequence=True))
    rows, stopped = [], {}
    for name, run_model in runs.items():
        rule = "bptt" if name == "bptt" else "gle"
        step_fn = cg.make_step(run_model, opt, rule)
        params, opt_state = params0, opt.init(params0)
        start = time.perf_counter()
        for k in ctx.progress(range(config.steps + 1), desc=name):
            chars, targets = sample(jax.random.fold_in(key_data, k))
            row = {"rule": name, "step": k}
            if k < config.steps:
                new, opt_state, grads, metrics = step_fn(params, opt_state, chars, targets)
                row.update(train_ce=float(metrics["ce_last"]), train_loss=float(metrics["loss"]),
                           train_acc=float(metrics["acc_last"]))
                if k % config.cos_every == 0:
                    other = bptt_grad(params, chars, targets) if rule == "gle" else gle_grad(
                        params, chars, targets)
                    row.update(_cosines(*((grads, other) if rule == "gle" else (other, grads))))
            if evaluate is not None and (k % config.eval_every == 0 or k == config.steps):
                row.update(evaluate(params))
            row["wall_s"] = time.perf_counter() - start
            rows.append(row)
            if k < config.steps:
                params = new
                if not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(params)):
                    stopped[name] = f"{name}: non-finite parameters after step {k} (update overflowed)"
                    ctx.log(stopped[name] + "; stopped")
                    break
                if not cm.non_edges_zero(run_model, params):
                    raise RuntimeError(f"{name} step {k}: a non-edge of C is not 0")
        ctx.log(f"{name}: {k} steps in {time.perf_counter() - start:.1f} s")
    return rows, stopped


def stopped_keys(stopped) -> dict:
    """Which rule's parameters became non-finite, as findings.

    GLE failing is what the comparison measures, so the run stays ``ok`` and says
    so in ``gle_diverged`` / ``gle_reason``; only the BPTT reference failing
    makes the run ``diverged``.
    """
    out = {}
    for name in ("gle", "bptt"):
        out[f"{name}_diverged"] = name in stopped
    for name, reason in stopped.items():
        out[f"{name}_reason"] = reason
    if "bptt" in stopped:
        out.update(status="diverged", reason=f"the BPTT reference diverged: {stopped['bptt']}")
    return out


def steps_to(rows, rule, key, target):
    """The first step whose ``key`` is below ``target`` (None if never)."""
    for r in rows:
        if r["rule"] == rule and key in r and r[key] < target:
            return r["step"]
    return None


def last_value(rows, rule, key):
    values = [r[key] for r in rows if r["rule"] == rule and key in r]
    return values[-1] if values else float("nan")


def median_of(rows, rule, key):
    values = [r[key] for r in rows if r["rule"] == rule and key in r and math.isfinite(r[key])]
    return float(np.median(values)) if values else float("nan")


# --- gle-abc ----------------------------------------------------------------------------------

MEMORY_ERRORS = Literal["prospective", "lag", "none"]


class Config(GLEStudy):
    model: ModelSection = ModelSection(d_model=16, heads=2, micro_steps=20, memory_error="none")
    gle_variants: list[MEMORY_ERRORS] = Field(
        ["prospective", "lag"], description="further GLE runs with these memory_error values")
    batch: int = Field(4, ge=1, le=65536)
    seq_len: int = Field(12, ge=1, le=10**5)
    lr: float = Field(0.01, gt=0, le=10, description="AdamW learning rate")
    steps: int = Field(300, ge=1, le=10**7)
    eval_every: int = Field(50, ge=1)
    cos_every: int = Field(10, ge=1)
    target_ce: float = Field(0.05, gt=0, description="steps to a training CE below this")
    text_length: int = Field(3000, ge=16, le=10**7, description="characters of abcabc...")

    @model_validator(mode="after")
    def _windows_fit(self):
        if self.seq_len + 1 >= self.text_length:
            raise ValueError(f"seq_len ({self.seq_len}) must be below text_length - 1 "
                             f"({self.text_length - 1})")
        return self


def run(config, ctx):
    ids = jnp.asarray(np.arange(config.text_length, dtype=np.int32) % 3)
    runs = arms(config, 3, config.gle_variants)
    ctx.log(f"gle-abc: {runs['gle']}")
    rows, stopped = train_both(config, ctx, runs, ids)
    ctx.write_metrics(rows)
    plot(rows, config, ctx.plot_path("abc"))
    summary = {}
    for name in runs:
        summary[f"{name}_steps_to_ce"] = steps_to(rows, name, "train_ce", config.target_ce)
        summary[f"final_ce_{name}"] = last_value(rows, name, "train_ce")
        if name != "bptt":
            summary[f"cos_{name}_bptt_median"] = median_of(rows, name, "cos_gle_bptt")
    summary.update(
        target_ce=config.target_ce,
        gle_reached=summary["gle_steps_to_ce"] is not None,
        bptt_reached=summary["bptt_steps_to_ce"] is not None,
        cos_gle_bptt_median_on_bptt=median_of(rows, "bptt", "cos_gle_bptt"),
        memory_error=config.model.memory_error, micro_steps=config.model.micro_steps,
        memory_lambda=config.model.memory_lambda, steps=config.steps)
    summary.update(stopped_keys(stopped))
    return summary


def plot(rows, config, path):
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    for name in dict.fromkeys(r["rule"] for r in rows):
        label = {"gle": f"GLE (memory error: {config.model.memory_error})", "bptt": "BPTT"}.get(
            name, f"GLE (memory error: {name.removeprefix('gle_')})")
        sel = [r for r in rows if r["rule"] == name and "train_ce" in r]
        ax.plot([r["step"] for r in sel], [r["train_ce"] for r in sel], label=label)
        sel = [r for r in rows if r["rule"] == name and "cos_gle_bptt" in r]
        bx.plot([r["step"] for r in sel], [r["cos_gle_bptt"] for r in sel], "o-", ms=3,
                label=f"at {label}'s parameters")
    ax.axhline(config.target_ce, color="gray", ls="--", label=f"target {config.target_ce}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training CE of the prediction (nats/char)")
    ax.legend(fontsize=8)
    bx.axhline(0, color="gray", lw=0.8)
    bx.set_xlabel("step")
    bx.set_ylabel("cos(GLE update, BPTT gradient)")
    bx.legend(fontsize=8)
    save_figure(fig, path, "CT-MHSA on abcabc...: GLE vs BPTT")
