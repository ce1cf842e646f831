r"""rho-vs-c: contraction of the deployed relaxation along a one-parameter family.

The family scales the recurrent weights of a trained model, W → c·W (and
W_out → c·W_out when untied): the model of an ep-train run's checkpoint
(``rho.source``; by default the newest matching ep-train run in the run
store, or one made first with BPTT for ``rho.source_steps`` steps). For each
c, on the fixed validation batch: ρ(I + ε F_z) at z_T and the finite-T1
residual ‖F(z_T)_i‖ (the largest over the samples, and the median), and the
deployed CE; ``c_rho_ge_1`` and ``c_rho_median_ge_1`` are the first grid
points (of ``rho.points``) where they reach 1. Since
F_z = −I + c² Wᵀ D W (tied), ρ grows with c and passes 1 where the relaxation
stops contracting; ρ^T1 says how much of z_0's error survives T1 steps.
"""

from typing import ClassVar, Literal

import equinox as eqx
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field, model_validator

from flowsim.ep.char_task import deployed_state, per_sample_spectral_radius
from flowsim.run import Section
from flowsim.run.registry import rule_names

from . import char_training as ct
from . import ep_train
from .common import save_figure
from .ep_source import SourceRun, source_run


class GainSource(Section):
    """A range of the gain c and the ep-train checkpoint whose W it scales (shared by the
    studies of that family: rho-vs-c's grid, bifurcation-char's continuation)."""

    table: ClassVar[str] = "rho"  # the config table's name, for messages
    c_min: float = Field(0.25, gt=0, description="smallest c")
    c_max: float = Field(3.0, gt=0, description="largest c")
    source: SourceRun = Field("", description="an ep-train run directory; '': found or made")
    source_subdir: Literal[("",) + rule_names("equilibrium")] = Field(
        "", description="its checkpoint folder: '' for ep-train, a rule's name for ep-wall")
    source_step: int = Field(-1, ge=-1, description="-1: the last checkpoint")
    source_steps: int = Field(300, ge=1, le=10**7, description="steps of an ep-train run made here")

    @model_validator(mode="after")
    def _range(self):
        if not self.c_min < self.c_max:
            raise ValueError(f"{self.table}.c_min ({self.c_min}) must be below "
                             f"{self.table}.c_max ({self.c_max})")
        return self


class RhoSection(GainSource):
    points: int = Field(12, ge=2, le=10**5)


class Config(ct.CharConfig):
    rho: RhoSection = RhoSection()


def scaled(params, c):
    params = eqx.tree_at(lambda p: p.W, params, c * params.W)
    if params.W_out is not None:
        params = eqx.tree_at(lambda p: p.W_out, params, c * params.W_out)
    return params


def train_config(config, steps):
    data = {k: v for k, v in config.model_dump().items() if k in ep_train.Config.model_fields}
    data["train"]["steps"] = steps
    return ep_train.Config.model_validate(data)


def run(config, ctx):
    r = config.rho
    source, how = source_run(config, ctx, study="ep_train", named=r.source,
                             subdir=r.source_subdir, steps=r.source_steps, configure=train_config)
    (params, _), source_config, step = ct.source_checkpoint(source, r.source_subdir,
                                                            r.source_step)
    ctx.log(f"rho-vs-c: parameters of {source} at step {step}")
    setup = ct.CharSetup(source_config)
    task = setup.task
    xv, yv = task.eval_batches[1]
    rows = []
    for c in np.linspace(r.c_min, r.c_max, r.points):
        p = scaled(params, float(c))
        ce, residuals, z_t = deployed_state(task, p, xv, yv)
        rhos = np.asarray(per_sample_spectral_radius(task, p, z_t, xv)[0])
        rho, residual = float(np.max(rhos)), float(np.max(residuals))
        rows.append({"c": float(c), "rho": rho, "rho_median": float(np.median(rhos)),
                     "residual": residual, "residual_median": float(np.median(residuals)),
                     "val_ce": float(ce), "rho_pow_t1": rho ** source_config.model.t1})
        ctx.log(f"c={c:.3f} rho max {rho:.5f} median {rows[-1]['rho_median']:.5f} "
                f"residual max {residual:.3g} val_ce={float(ce):.4f}")
    ctx.write_metrics(rows)
    plot(rows, ctx.plot_path("rho_vs_c"), source_config.model.t1)
    crossing = [row["c"] for row in rows if row["rho"] >= 1.0]
    median_crossing = [row["c"] for row in rows if row["rho_median"] >= 1.0]
    at_one = min(rows, key=lambda row: abs(row["c"] - 1.0))
    return {"c_rho_ge_1": crossing[0] if crossing else -1.0,
            "c_rho_median_ge_1": median_crossing[0] if median_crossing else -1.0,
            "grid_points": r.points, "source_run": str(source),
            "source_obtained": how, "source_step": step, "c_nearest_1": at_one["c"],
            "rho_at_c_nearest_1": at_one["rho"], "residual_at_c_nearest_1": at_one["residual"],
            "val_ce_at_c_nearest_1": at_one["val_ce"]}


def plot(rows, path, t1):
    c = [row["c"] for row in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot(c, [row["rho"] for row in rows], "o-", label="largest over the samples")
    axes[0].plot(c, [row["rho_median"] for row in rows], "s--", label="median")
    axes[0].axhline(1.0, color="r", ls=":", label="rho = 1")
    axes[0].set_ylabel("rho(I + dt F_z) at z_T")
    axes[0].legend(fontsize=8)
    axes[1].semilogy(c, [row["residual"] for row in rows], "o-", label="largest over the samples")
    axes[1].semilogy(c, [row["residual_median"] for row in rows], "s--", label="median")
    axes[1].set_ylabel(f"finite-T1 residual ||F(z_T)||, T1 = {t1}")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("c (W -> c W)")
    save_figure(fig, path, "Contraction of the deployed relaxation as W -> c W")
