r"""ep-decisive: seed 002's decisive experiment, from a pre-drift EP checkpoint.

Take the EP run of an ep-wall run directory (``decisive.source``) at the last
checkpoint at or before its ``ep_wall_step`` (or ``decisive.source_step``),
with its optimiser state, and continue on the same batches with the exact
equilibrium gradient (``Implicit``, GMRES adjoint, no residual regulariser).
Every ``train.eval_every`` steps the rows record, on the fixed validation
batch, the finite-T1 residual and ρ(I + ε F_z(z_T)), and, on the step's batch,

    cos_oracle      = cos(g_Implicit, g_longEP)   (EP with a ``decisive.long_steps`` nudged phase)
    cos_oracle_bptt = cos(g_BPTT, g_longEP).

Decision rule (the seed's):
  "a" (estimator error): no divergence, ρ stays within ``decisive.rho_tol`` of
      the BPTT run's largest ρ over the same steps, and the best validation CE
      clears EP's wall by ``decisive.margin``;
  "b" (structural): divergence or ρ ≥ 0.999, while the median cos ≥ 0.99;
  otherwise "inconclusive" (always so when the source run hit no wall).
"""

import csv
import json
import statistics
from pathlib import Path

import flowsim
from analysis import char_training as ct
from flowsim.run import Constraint, at_least, in_range


class RunDirectory(Constraint):
    """A path to an existing run directory (one holding config.toml and summary.json)."""

    def check(self, value):
        if isinstance(value, str) and value and (Path(value) / "config.toml").is_file() \
                and (Path(value) / "summary.json").is_file():
            return None
        return "must be an ep-wall run directory (with config.toml and summary.json)"


CONSTRAINTS = {**ct.CONSTRAINTS, "decisive.source": RunDirectory(), "decisive.long_steps": at_least(1),
               "decisive.source_step": at_least(-1), "decisive.margin": in_range(0.0, 10.0),
               "decisive.rho_tol": in_range(0.0, 1.0)}


def source_rows(source):
    with (Path(source) / "metrics.csv").open() as f:
        return [{k: ct._number(v) for k, v in r.items()} for r in csv.DictReader(f)]


def pick_step(source, subdir, requested):
    """The requested checkpoint, or the last one at or before the source's EP wall step."""
    if requested >= 0:
        return requested
    summary = json.loads((Path(source) / "summary.json").read_text())
    wall = int(summary["ep_wall_step"])
    steps = flowsim.train.checkpoint.steps(Path(source) / ct.CHECKPOINTS / subdir)
    before = [s for s in steps if s <= wall]
    return before[-1] if before else steps[0]


def checkpoint_dir(ctx, tag):
    return Path(ctx.dir) / ct.CHECKPOINTS / tag


def continue_from(config, ctx, d, name, kept, penalty_weight=None, oracle_estimator=None,
                  tag=None):
    """Train ``name`` from the source checkpoint; rows tagged ``estimator = tag``.

    ``kept``: the rows already on record (``ct.kept_rows`` over every tag of the study).
    """
    subdir = d["source_subdir"]
    step = pick_step(d["source"], subdir, d["source_step"])
    (params, opt_state), source_config, step = ct.source_checkpoint(d["source"], subdir, step)
    keys = ("train", "penalty", "forward", "ep", "hep", "solver")
    config = {**source_config, **{k: config[k] for k in keys if k in config}}
    setup = ct.CharSetup(config)
    tag = tag or name
    where = checkpoint_dir(ctx, tag)
    record = lambda row: ctx.append_metrics({"estimator": tag, **row})
    kept = [r for r in kept if r["estimator"] == tag]
    ctx.log(f"{tag}: from {d['source']}/{subdir} step {step}")
    outcome = flowsim.train.fit(
        setup.trainer(name, penalty_weight), params, steps=step + config["train"]["steps"],
        eval_every=config["train"]["eval_every"], eval_batches=setup.eval_batches,
        record=record, checkpoint_dir=where, checkpoint_every=config["train"]["checkpoint_every"],
        config_hash=flowsim.train.config_hash(config), oracle=oracle_estimator,
        divergence=ct.divergence(config),
        rho_samples=config["train"]["rho_samples"], rows=kept, start_step=step,
        opt_state=opt_state, log=ctx.log)
    return outcome, step, setup


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
    d = config["decisive"]
    long_ep = flowsim.EP(config["ep"]["beta"], d["long_steps"], config["model"]["dt"],
                         symmetric=True, equilibrium=ct.equilibrium_solver(config))
    kept = ct.kept_rows(ctx, {"implicit": checkpoint_dir(ctx, "implicit")}, key="estimator")
    outcome, start, _ = continue_from(config, ctx, d, "implicit", kept, oracle_estimator=long_ep)
    src = source_rows(d["source"])
    end = outcome.step
    bptt = [r for r in src if r.get("estimator") == "bptt" and start <= r["step"] <= end]
    bptt = bptt or [r for r in src if r.get("estimator") == "bptt"]
    summary = json.loads((Path(d["source"]) / "summary.json").read_text())
    rows = [r for r in outcome.rows if r["step"] > start]
    rhos = [r["rho"] for r in outcome.rows]
    cos = [r["cos_oracle"] for r in rows if r["cos_oracle"] == r["cos_oracle"]]
    rho_bptt = max(r["rho"] for r in bptt)
    cleared = outcome.best_val_ce < summary["ep_wall_ce"] - d["margin"]
    rho_near = max(rhos) <= rho_bptt + d["rho_tol"]
    blew = outcome.status == "diverged" or max(rhos) >= 0.999
    median_cos = statistics.median(cos) if cos else float("nan")
    verdict, note = decide(bool(summary.get("wall", False)), outcome.status == "ok", cleared,
                           rho_near, blew, median_cos)
    last = outcome.rows[-1]
    return {"status": "ok", "verdict": verdict, "verdict_note": note,
            "source_wall": bool(summary.get("wall", False)), "start_step": start, "steps": end,
            "oracle_status": outcome.status, "oracle_reason": outcome.reason or "",
            "best_val_ce": outcome.best_val_ce, "val_ce": last["val_ce"], "rho": last["rho"],
            "residual": last["residual"], "rho_max": max(rhos), "rho_bptt_max": rho_bptt,
            "ep_wall_ce": summary["ep_wall_ce"], "cleared_wall": bool(cleared),
            "median_cos_oracle_long_ep": median_cos,
            # the names for the rule's inputs
            "rho_bptt": rho_bptt, "rho_final": last["rho"], "val_ce_final": last["val_ce"],
            "cos_min": min(cos) if cos else float("nan"), "rho_near_bptt": bool(rho_near),
            "blew_up": bool(blew)}
