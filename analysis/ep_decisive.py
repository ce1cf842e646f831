r"""ep-decisive: seed 002's decisive experiment, from a pre-drift EP checkpoint.

Take the EP run of an ep-wall run directory (``decisive.source``; by default
the newest matching one in the run store, or one made first at this
config's model size) at the last checkpoint at or before its ``ep_wall_step``
(or ``decisive.source_step``), with its optimiser state, and continue on the
same batches with the exact equilibrium gradient (``Implicit``, GMRES
adjoint, no residual regulariser). Every ``train.eval_every`` steps the rows
record, on the fixed validation batch, the finite-T1 residual and
ρ(I + ε F_z(z_T)), and, on the step's batch,

    cos_oracle      = cos(g_Implicit, g_longEP)   (EP with a ``decisive.long_steps`` nudged phase)
    cos_oracle_bptt = cos(g_BPTT, g_longEP).

Decision rule (the seed's):
  "a" (estimator error): no divergence, ρ stays within ``decisive.rho_tol`` of
      the BPTT run's largest ρ over the same steps, and the best validation CE
      clears EP's wall by ``decisive.margin``;
  "b" (structural): divergence or ρ ≥ 0.999, while the median cos ≥ 0.99;
  otherwise "inconclusive" (always so when the source run hit no wall).
"""

import statistics
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

import flowsim
from flowsim.run import Section
from flowsim.run.runs import read_summary

from . import char_training as ct
from . import ep_wall
from .ep_source import SourceRun, source_run


class DecisiveSection(Section):
    source: SourceRun = Field("", description="an ep-wall run directory; '': found or made")
    source_subdir: Literal["hep", "ep", "rbp", "implicit"] = Field("ep", description="its EP run")
    source_step: int = Field(-1, ge=-1, description="-1: the last checkpoint at or before ep_wall_step")
    source_steps: int = Field(400, ge=1, le=10**7, description="steps of an ep-wall run made here")
    long_steps: int = Field(1000, ge=1, le=10**6, description="nudged phase of the reference EP")
    margin: float = Field(0.02, ge=0, le=10, description="nats below EP's wall that clear it")
    rho_tol: float = Field(0.01, ge=0, le=1, description="how far above BPTT's largest rho is near")

    @field_validator("source")
    @classmethod
    def _a_run(cls, value):
        if value and not ((Path(value) / "config.toml").is_file()
                          and (Path(value) / "summary.json").is_file()):
            raise ValueError(f"{value!r} is not a run directory (config.toml and summary.json); "
                             "give an ep-wall run, or '' to find or make one")
        return value


class Config(ct.CharConfig):
    decisive: DecisiveSection = DecisiveSection()


def wall_config(config, steps):
    """The ep-wall run to make when none is found: this model, EP flavour ``source_subdir``."""
    data = config.model_dump()
    data["train"]["steps"] = steps
    data["wall"] = {"estimator": config.decisive.source_subdir}
    for extra in ("decisive", "fixes"):
        data.pop(extra, None)
    return ep_wall.Config.model_validate(data)


def find_source(config, ctx):
    d = config.decisive
    return source_run(config, ctx, study="ep_wall", named=d.source, subdir=d.source_subdir,
                      steps=d.source_steps, configure=wall_config)


def pick_step(source, subdir, requested):
    """The requested checkpoint, or the last one at or before the source's EP wall step."""
    if requested >= 0:
        return requested
    wall = int(read_summary(source)["ep_wall_step"])
    steps = flowsim.train.checkpoint.steps(Path(source) / ct.CHECKPOINTS / subdir)
    before = [s for s in steps if s <= wall]
    return before[-1] if before else steps[0]


def checkpoint_dir(ctx, tag):
    return Path(ctx.dir) / ct.CHECKPOINTS / tag


def continue_from(config, ctx, source, name, kept, oracle_rule=None, tag=None, penalty=None):
    """Train rule ``name`` from the source checkpoint; rows tagged ``estimator = tag``.

    ``kept``: the rows already on record (``ct.kept_rows`` over every tag of the study).
    The continuation keeps the source's model and data, with this config's
    training, optimiser, solver, rule and penalty options.
    """
    d = config.decisive
    step = pick_step(source, d.source_subdir, d.source_step)
    (params, opt_state), source_config, step = ct.source_checkpoint(source, d.source_subdir, step)
    changes = {key: getattr(config, key) for key in ("train", "optim", "solver", "penalty", "ep",
                                                     "hep", "rbp", "forward")}
    if penalty is not None:
        changes["penalty"] = penalty
    data = {k: v for k, v in source_config.model_dump().items() if k in ct.CharConfig.model_fields}
    data.update({k: v.model_dump() for k, v in changes.items()})
    merged = ct.CharConfig.model_validate(data)
    setup = ct.CharSetup(merged)
    tag = tag or name
    record = lambda row: ctx.append_metrics({"estimator": tag, **row})
    kept = [r for r in kept if r["estimator"] == tag]
    ctx.log(f"{tag}: from {source}/{d.source_subdir} step {step}")
    outcome = ct.fit(setup, setup.trainer(name), params, ctx, checkpoint_dir(ctx, tag),
                     steps=step + config.train.steps, record=record, hash_of=config, rows=kept,
                     oracle_rule=oracle_rule, start_step=step, opt_state=opt_state)
    return outcome, step


def decide(source_wall, ok, cleared, rho_near, blew_up, median_cos):
    """The seed's rule: ``(verdict, note)`` with verdict "a", "b" or "inconclusive"."""
    if not source_wall:
        return "inconclusive", "the source EP run hit no wall, so there is none to clear"
    if ok and cleared and rho_near:
        return "a", "the exact gradient cleared the wall with rho near BPTT's: estimator error"
    if blew_up and median_cos >= 0.99:
        return "b", "rho reached 1 or the run diverged while the gradient was exact: structural"
    return "inconclusive", "neither branch of the rule holds"


def run(config, ctx):
    d = config.decisive
    source, how = find_source(config, ctx)
    long_ep = flowsim.EP(config.ep.beta, d.long_steps, config.model.dt, symmetric=True,
                         equilibrium=ct.equilibrium_solver(config))
    kept = ct.kept_rows(ctx, {"implicit": checkpoint_dir(ctx, "implicit")}, key="estimator")
    outcome, start = continue_from(config, ctx, source, "implicit", kept, oracle_rule=long_ep)
    src = ct.read_rows(Path(source) / "metrics.csv")
    end = outcome.step
    bptt = [r for r in src if r.get("estimator") == "bptt" and start <= r["step"] <= end]
    bptt = bptt or [r for r in src if r.get("estimator") == "bptt"]
    summary = read_summary(source)
    rows = [r for r in outcome.rows if r["step"] > start]
    rhos = [r["rho_max"] for r in outcome.rows]
    cos = [r["cos_oracle"] for r in rows if r["cos_oracle"] == r["cos_oracle"]]
    rho_bptt = max(r["rho_max"] for r in bptt)
    source_wall = bool(summary.get("wall", False))
    improved = outcome.best < summary["ep_wall_ce"] - d.margin
    cleared = source_wall and improved  # no wall, nothing cleared: the two keys cannot disagree
    rho_near = max(rhos) <= rho_bptt + d.rho_tol
    blew = outcome.status == "diverged" or max(rhos) >= 0.999
    median_cos = statistics.median(cos) if cos else float("nan")
    verdict, note = decide(source_wall, outcome.status == "ok", cleared, rho_near, blew, median_cos)
    source_ep = [r for r in src if r.get("estimator") == d.source_subdir]
    ep_wall.plot({"implicit (from the checkpoint)": outcome.rows,
                  f"source {d.source_subdir}": source_ep, "source bptt": bptt},
                 ctx.plot_path("decisive"), "The oracle from EP's checkpoint, against the source runs")
    last = outcome.rows[-1]
    return {"verdict": verdict, "verdict_note": note, "source_run": str(source),
            "source_obtained": how, "source_wall": source_wall, "start_step": start, "steps": end,
            "oracle_status": outcome.status, "oracle_reason": outcome.reason or "",
            "best_val_ce": outcome.best, "val_ce": last["val_ce"], "rho": last["rho_max"],
            "residual": last["residual_max"], "rho_max": max(rhos), "rho_bptt_max": rho_bptt,
            "ep_wall_ce": summary["ep_wall_ce"], "cleared_wall": bool(cleared),
            "improved_on_ep_best": bool(improved),
            "median_cos_oracle_long_ep": median_cos,
            # the names for the rule's inputs
            "rho_bptt": rho_bptt, "rho_final": last["rho_max"], "val_ce_final": last["val_ce"],
            "cos_min": min(cos) if cos else float("nan"), "rho_near_bptt": bool(rho_near),
            "blew_up": bool(blew)}
