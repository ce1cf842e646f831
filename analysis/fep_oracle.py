"""fep-oracle: the P-flow's learning signal against the exact gradient of the prediction loss.

At the Q-flow equilibrium q*(theta) the P-flow follows dF/dtheta, which is the
total derivative dF(q*(theta), theta)/dtheta (envelope theorem). The prediction
loss L = lambda_obs * CE(decode(q*), y) has the exact gradient
dL(q*(theta), theta)/dtheta = L_theta + F_theta^T lambda from the engine's implicit
oracle (`flowsim.Implicit` with `flowsim.ParametrisedLoss`; the token priors
enter L directly through the decoder). Every `oracle_every` steps of pure
P-flow training we record cos_pflow_oracle = cos(dF/dtheta, dL/dtheta); then
we train again from the same initialisation with the oracle gradient itself
(same optimiser and learning rate) and plot train CE at q* for both.
"""

from __future__ import annotations

import jax
import matplotlib.pyplot as plt

import flowsim
from analysis import fep_common as fc
from flowsim import fep

CONSTRAINTS = {**fc.constraints_without("variant", "hybrid_rate", "disc_mult", "predict_time",
                                         "log_every"),
               "oracle_every": fc.at_least(1)}


def _compare(fe, flow, est, x, y):
    @jax.jit
    def compare(priors):
        z_star, _ = flow.solve(fe, fep.init_beliefs(priors, x), priors, y)
        signal = fep.pflow_signal(fe, z_star, priors, y)
        oracle, info = fep.oracle_gradient(fe, est, priors, z_star, y)
        return {"cos_pflow_oracle": flowsim.cosine(signal, oracle),
                "compare_ok": info["result"] == flowsim.RESULTS.successful,
                "compare_residual": info["residual"], "compare_gmres_steps": info["gmres_steps"]}

    return compare


def _train(config, variant, priors, x, y, fe, flow, ctx, compare=None):
    lrn = fc.learner(config, variant)
    opt_state = lrn.init(priors)
    every = min(config["oracle_every"], config["steps"])
    chunk = fc.make_chunk(lrn, fe, flow, every, lambda i: (x, y))
    rows = []
    for start in ctx.progress(range(0, config["steps"], every), desc=f"fep-oracle {variant}"):
        extra = {k: v.item() for k, v in compare(priors).items()} if compare else {}
        (priors, opt_state), m = chunk(priors, opt_state, start)
        chunk_rows = fc.rows_of(m, start)
        chunk_rows[0].update(extra)
        rows += [{"run": variant, **r} for r in chunk_rows]
    return rows


def run(config, ctx):
    key_init, key_data = jax.random.split(jax.random.PRNGKey(config["seed"]))
    priors = fc.init(config, key_init)
    x, y = fc.random_batch(config, key_data)
    fe, flow = fc.free_energy(config), fc.qflow(config)
    compare = _compare(fe, flow, fc.oracle_estimator(), x, y)
    pure = _train(config, "pure", priors, x, y, fe, flow, ctx, compare)
    oracle = _train(config, "oracle", priors, x, y, fe, flow, ctx)
    ctx.write_metrics(pure + oracle)
    cos = [r["cos_pflow_oracle"] for r in pure if "cos_pflow_oracle" in r]
    plot(pure, oracle, ctx.plot_path("oracle"))
    bad_compare = sum(not r["compare_ok"] for r in pure if "compare_ok" in r)
    bad_steps = sum(not r["oracle_ok"] for r in oracle)
    summary = {
        "cos_min": min(cos), "cos_max": max(cos), "cos_first": cos[0], "cos_last": cos[-1],
        "pure_train_ce": pure[-1]["train_ce"], "oracle_train_ce": oracle[-1]["train_ce"],
        "pure_train_acc": pure[-1]["train_acc"], "oracle_train_acc": oracle[-1]["train_acc"],
        "compare_failures": bad_compare, "oracle_step_failures": bad_steps,
        "steps": config["steps"],
    }
    if not all(map(fc.finite, (pure[-1]["train_ce"], oracle[-1]["train_ce"]))):
        summary.update(status="diverged", reason="non-finite train CE")
    return summary


def plot(pure, oracle, path):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    cos_rows = [r for r in pure if "cos_pflow_oracle" in r]
    axes[0].plot([r["step"] for r in cos_rows], [r["cos_pflow_oracle"] for r in cos_rows], "o-")
    axes[0].set_ylabel("cos(dF/dtheta, dCE(q*)/dtheta)")
    axes[0].set_title("P-flow signal vs oracle, along P-flow training")
    for rows, label in ((pure, "P-flow (-dF/dtheta)"), (oracle, "oracle (-dCE(q*)/dtheta)")):
        axes[1].semilogy([r["step"] for r in rows], [r["train_ce"] for r in rows], label=label)
    axes[1].set_ylabel("train CE at q* (nats)")
    axes[1].legend()
    for ax in axes:
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
