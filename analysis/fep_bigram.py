r"""fep-bigram: the P-flow's fixed point on the bigram of Tiny Shakespeare, in exact expectation.

The smallest model of fep-shakespeare that can predict: one position (N = 1,
so no alignment), a belief q held by its input token x through the [input]
term and, in training, by the next token y through the [obs] term. Every
(x, y) pair of the training text is its own system, weighted by its frequency
P(x, y): the expected free energy E_P[F(q*(x, y), θ)] and the expected
prediction loss

    L(θ) = -sum_xy P(x, y) log p_θ(y | q*(x)),   q*(x) the inference equilibrium,

are exact sums (no batches, no sampling noise). The P-flow steps on
∇_θ E_P[F] at the clamped q*(x, y) (envelope theorem); the oracle arm steps on
dL/dθ, by implicit differentiation at q*(x) (``flowsim.Implicit``), from the
same initialisation with the same optimiser. Every ``eval_every`` steps a row
records the validation CE of each arm's θ (the same sum under the validation
text's P), cos(P-flow, oracle) at the P-flow's θ, and the windows whose q*
failed (left out of the sums, counted).

What it answers: with context ruled out, does the P-flow even fit the bigram
that the oracle-trained model fits? ``bigram_ce`` is the validation CE of the
training text's own conditional table (add-one smoothed), the reference any
model of one input token is held against.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from pydantic import Field

import flowsim
from flowsim import fep
from flowsim.data import shakespeare
from flowsim.fep.qflow import fisher_norm
from flowsim.fep.task import OneWindow
from flowsim.problem import ParametrisedLoss, Problem

from . import fep_common as fc
from .common import save_figure


class Config(fc.FEPTraining):
    B: int = Field(1, ge=1, le=1, description="unused: the expectation over every (x, y) "
                   "pair replaces batches")
    N: int = Field(1, ge=1, le=1, description="one position (no alignment)")
    eval_every: int = Field(10, ge=1)


class SoftTargetCE(eqx.Module):
    """-sum_v p_v log softmax(decode(q))_v of one window: the expected CE of the next token
    under the row p = P(x, .) of the joint (sums over windows to L)."""

    fe: fep.FreeEnergy

    def __call__(self, z, priors, p):
        log_probs = jax.nn.log_softmax(self.fe.logits(z, priors)[..., -1, :], axis=-1)
        return -jnp.sum(p * log_probs)


def _inference_problem(fe):
    return Problem(OneWindow(fep.QFlowField(fe, observed=False)),
                   ParametrisedLoss(OneWindow(SoftTargetCE(fe))),
                   energy=OneWindow(fep.FreeEnergyOfInputs(fe, observed=False)),
                   initial_state=fep.initial_beliefs, norm=fisher_norm,
                   batched=True, reduction="sum")


class Expectation(eqx.Module):
    """The study's computations for one free energy, over the pairs of the training text."""

    fe: fep.FreeEnergy
    fast: flowsim.AbstractFastSolver
    x: jax.Array  # (P, 1) input of each pair
    y: jax.Array  # (P, 1) next token of each pair
    w: jax.Array  # (P,) P(x, y)
    p_train: jax.Array  # (V, V)
    p_val: jax.Array  # (V, V)

    def pflow(self, priors):
        """(∇_θ E_P[F] at the clamped q*, windows that failed)."""
        problem = fep.fep_problem(self.fe, per_window=True)
        z, info = flowsim.solve(self.fast, problem, fep.init_beliefs(priors, self.x), priors,
                                (self.x, self.y))
        ok = info["result"] == flowsim.RESULTS.successful
        z = jax.lax.stop_gradient(z)

        def expected_f(p):
            one = lambda z, x, y: self.fe(jax.tree.map(lambda a: a[None], z), p, x[None], y[None])
            per = jax.vmap(one)(z, self.x, self.y)
            return jnp.sum(jnp.where(ok, self.w * per, 0.0))

        return jax.grad(expected_f)(priors), jnp.sum(~ok)

    def oracle(self, priors):
        """(dL/dθ by implicit differentiation at q*(x), result code)."""
        xs = jnp.arange(self.p_train.shape[0])[:, None]
        grads, info = flowsim.gradient(flowsim.Implicit(equilibrium=self.fast),
                                       _inference_problem(self.fe),
                                       fep.init_beliefs(priors, xs), priors, (xs, xs),
                                       self.p_train)
        return grads, info["result"]

    def ce(self, priors):
        """(train CE, val CE, inference windows that failed): L under each text's P."""
        xs = jnp.arange(self.p_train.shape[0])[:, None]
        problem = _inference_problem(self.fe)
        z, info = flowsim.solve(self.fast, problem, fep.init_beliefs(priors, xs), priors, (xs, xs))
        ok = info["result"] == flowsim.RESULTS.successful
        log_probs = jax.nn.log_softmax(self.fe.logits(z, priors)[:, -1, :], axis=-1)
        nan_if_failed = lambda v: jnp.where(jnp.all(ok), v, jnp.nan)
        return (nan_if_failed(-jnp.sum(self.p_train * log_probs)),
                nan_if_failed(-jnp.sum(self.p_val * log_probs)), jnp.sum(~ok))


@eqx.filter_jit
def _pflow(study, priors):
    return study.pflow(priors)


@eqx.filter_jit
def _oracle(study, priors):
    return study.oracle(priors)


@eqx.filter_jit
def _ce(study, priors):
    return study.ce(priors)


def _cosine(a, b):
    dot = lambda u, v: sum(jnp.vdot(p, q) for p, q in zip(jax.tree.leaves(u), jax.tree.leaves(v)))
    return float(dot(a, b) / jnp.sqrt(dot(a, a) * dot(b, b)))


def _train(config, study, priors, arm, ctx):
    opt = fc.optimizer(config)
    state = opt.init(priors)
    rows = []
    for step in range(config.steps + 1):
        g_oracle, oracle_result = _oracle(study, priors)
        g_pflow, failed = _pflow(study, priors) if arm == "pure" else (None, 0)
        if step % config.eval_every == 0 or step == config.steps:
            train_ce, val_ce, failed_inference = _ce(study, priors)
            row = {"run": arm, "step": step, "train_ce": float(train_ce), "val_ce": float(val_ce),
                   "failed_windows": int(failed), "failed_inference": int(failed_inference),
                   "oracle_ok": bool(oracle_result == flowsim.RESULTS.successful),
                   "cos_pflow_oracle": _cosine(g_pflow, g_oracle) if arm == "pure" else
                   float("nan")}
            rows.append(row)
            ctx.append_metrics(row)
            ctx.log(f"{arm} step {step}: val CE {row['val_ce']:.4f} "
                    f"cos {row['cos_pflow_oracle']:.3f}")
        if step == config.steps:
            break
        grads = g_pflow if arm == "pure" else g_oracle
        updates, state = opt.update(grads, state, priors)
        priors = optax.apply_updates(priors, updates)
    return rows


def run(config, ctx):
    splits = shakespeare.load_splits()
    V = len(splits.vocab)
    p_train, smoothed = shakespeare.pair_tables(splits.train, V)
    p_val, _ = shakespeare.pair_tables(splits.val, V)
    xs, ys = np.nonzero(p_train)
    study = Expectation(fc.free_energy(config), fc.qflow(config), jnp.asarray(xs)[:, None],
                        jnp.asarray(ys)[:, None], jnp.asarray(p_train[xs, ys]),
                        jnp.asarray(p_train), jnp.asarray(p_val))
    bigram_ce = float(-np.sum(p_val * np.log(smoothed)))
    ctx.log(f"fep-bigram: V={V} K={config.K} pairs={len(xs)} bigram val CE {bigram_ce:.4f}")
    priors = fc.init(config, jax.random.PRNGKey(config.seed), V=V)
    arms = {arm: _train(config, study, priors, arm, ctx) for arm in ("pure", "oracle")}
    plot(arms, bigram_ce, ctx.plot_path("bigram"))
    pure, oracle = arms["pure"][-1], arms["oracle"][-1]
    cos = [r["cos_pflow_oracle"] for r in arms["pure"] if np.isfinite(r["cos_pflow_oracle"])]
    return {
        "val_ce": pure["val_ce"], "val_ce_oracle_training": oracle["val_ce"],
        "best_val_ce": min(r["val_ce"] for r in arms["pure"]),
        "train_ce": pure["train_ce"], "train_ce_oracle_training": oracle["train_ce"],
        "bigram_ce": bigram_ce, "pairs": int(len(xs)),
        "gap_to_oracle": pure["val_ce"] - oracle["val_ce"],
        "cos_pflow_oracle_median": float(np.median(cos)) if cos else float("nan"),
        "cos_pflow_oracle_last": cos[-1] if cos else float("nan"),
        "failed_windows_max": max(r["failed_windows"] for r in arms["pure"]),
        "failed_inference_max": max(r["failed_inference"] for rows in arms.values()
                                    for r in rows),
        "steps": config.steps,
    }


def plot(arms, bigram_ce, path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for arm, rows in arms.items():
        label = "P-flow (-dE[F]/dtheta)" if arm == "pure" else "oracle (-dL/dtheta)"
        axes[0].plot([r["step"] for r in rows], [r["val_ce"] for r in rows], "o-", label=label)
    axes[0].axhline(bigram_ce, color="gray", ls=":", label=f"bigram table {bigram_ce:.3f}")
    axes[0].set_ylabel("val CE of the prediction (nats/char)")
    axes[0].legend(fontsize=8)
    rows = arms["pure"]
    axes[1].plot([r["step"] for r in rows], [r["cos_pflow_oracle"] for r in rows], "s-")
    axes[1].axhline(0.0, color="gray", lw=0.5)
    axes[1].set_ylabel("cos(P-flow, oracle) at the P-flow's theta")
    for ax in axes:
        ax.set_xlabel("step")
    save_figure(fig, path, "FEP on the bigram, in exact expectation: P-flow against the oracle")
