"""fep-oracle: the P-flow's learning signal against the exact gradient of the prediction loss.

At the Q-flow equilibrium q*(θ) the P-flow follows ∂F/∂θ, which is the total
derivative dF(q*(θ), θ)/dθ (envelope theorem). The prediction loss
L = λ_obs · CE(decode(q*), y) has the exact gradient
dL(q*(θ), θ)/dθ = L_θ + F_θᵀ λ from the engine's oracle (``flowsim.Implicit``,
Newton polishing the Q-flow's q*). The training loop records, every
``oracle_every`` steps of pure P-flow training, cos_oracle = cos(∂F/∂θ,
dL/dθ); then it trains again from the same initialisation with the oracle
gradient itself (same optimiser and learning rate), and the plot shows the
train CE at q* of both.

Either arm may stop early (a Q-flow with no finite equilibrium, F non-finite):
that is a finding of the comparison, reported as ``pure_status`` /
``oracle_status`` with the reason and the last step whose q* was finite; the
run itself completes (``ok``).
"""

from pydantic import Field

from flowsim import fep, train

from . import fep_common as fc
from .common import save_figure


class Config(fc.SyntheticConfig):
    oracle_every: int = Field(5, ge=1, description="steps between cos_oracle samples")


def _train(config, variant, priors, x, y, ctx, oracle_every):
    task = fc.task(config, fep.FixedBatch(x, y), (x, y), variant=variant)
    record = lambda row: ctx.append_metrics({"run": variant, **row})
    return train.fit(
        fc.trainer(config, task, variant), priors, steps=config.steps, eval_every=1,
        record=record, oracle=fc.oracle(config) if oracle_every else None,
        oracle_every=oracle_every or 1,
        divergence=train.Divergence(monitor="F", factor=1e6, against="first",
                                    finite=("F", "train_ce"), max_skipped_steps=config.steps),
        log=ctx.log)


def run(config, ctx):
    key_init, key_data = fc.keys(config)
    priors = fc.init(config, key_init)
    x, y = fc.random_batch(config, key_data)
    pure = _train(config, "pure", priors, x, y, ctx, config.oracle_every)
    oracle = _train(config, "oracle", priors, x, y, ctx, 0)
    plot(pure.rows, oracle.rows, ctx.plot_path("oracle"))
    cos = [r["cos_oracle"] for r in pure.rows if r["cos_oracle"] == r["cos_oracle"]]
    summary = {"cos_min": min(cos), "cos_max": max(cos), "cos_first": cos[0], "cos_last": cos[-1],
               "steps": config.steps}
    for name, outcome in (("pure", pure), ("oracle", oracle)):
        finite = [r for r in outcome.rows if r["train_ce"] == r["train_ce"]]
        summary.update({
            f"{name}_status": outcome.status, f"{name}_reason": outcome.reason or "",
            f"{name}_last_finite_step": finite[-1]["step"],
            f"{name}_train_ce": finite[-1]["train_ce"], f"{name}_train_acc": finite[-1]["train_acc"],
            f"{name}_skipped_steps": outcome.skipped})
    return summary


def plot(pure, oracle, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    cos_rows = [r for r in pure if r["cos_oracle"] == r["cos_oracle"]]
    axes[0].plot([r["step"] for r in cos_rows], [r["cos_oracle"] for r in cos_rows], "o-")
    axes[0].set_ylabel("cos(dF/dtheta, dCE(q*)/dtheta)")
    axes[0].set_title("P-flow signal vs oracle, along P-flow training")
    for rows, label in ((pure, "P-flow (-dF/dtheta)"), (oracle, "oracle (-dCE(q*)/dtheta)")):
        axes[1].semilogy([r["step"] for r in rows], [r["train_ce"] for r in rows], label=label)
    axes[1].set_ylabel("train CE at q* (nats)")
    axes[1].legend()
    for ax in axes:
        ax.set_xlabel("step")
    save_figure(fig, path)
