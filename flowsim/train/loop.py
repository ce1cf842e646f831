r"""The training loop of every scheme: rule gradients, optax updates, metrics, checkpoints.

Step k (k = 0, …, S−1) takes the rule's gradient on batch k at θ_k and
applies the optax update, θ_{k+1} = θ_k + update (or skips it: see
:class:`~flowsim.train.Divergence`). Every ``eval_every`` steps, and at k = S,
a row describes θ_k:

    step, <task.evaluate(θ_k)>, loss, failed_samples, matvecs, cos_oracle,
    cos_oracle_<reference>..., wall_s

``loss``, ``failed_samples`` and ``matvecs`` are the step's rule ``info`` on
batch k; ``cos_oracle`` = cos(ĝ_k, g*_k) against the oracle's gradient on the
same batch (of the task's ``oracle_problem``), and ``cos_oracle_<name>`` = cos(g_name, g*_k) for each reference
rule (NaN without an oracle). After a row is recorded, and when k is a
multiple of ``checkpoint_every`` (or S), (θ_k, optimiser state) is
checkpointed. A resumed run restarts from the last checkpoint with the rows
after it dropped; since everything is a function of (seed, k) it ends with
the same numbers as an uninterrupted one.

``stop(row) -> bool`` ends the run early with status "ok" (a target met).
"""

import dataclasses
import math
import time
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from .._trees import cast
from ..diagnostics import cosine
from ..rules._base import _gradient
from . import checkpoint as ckpt
from .divergence import Divergence
from .trainer import Trainer, batch


@dataclasses.dataclass
class Outcome:
    """How :func:`fit` ended."""

    status: str  # "ok" or "diverged"
    step: int  # the last step whose parameters were evaluated (or the failing step)
    rows: list
    best: float  # the best value of the divergence monitor
    reason: str | None = None
    last_checkpoint: int | None = None
    params: object = None
    skipped: int = 0  # steps whose gradient was not applied
    stopped: bool = False  # ended early by ``stop``
    partial: int = 0  # steps applied with the gradient over the converged samples only


def fit(trainer: Trainer, params, *, steps: int, eval_every: int,
        record: Callable[[dict], None], checkpoint_dir=None, checkpoint_every: int = 0,
        config_hash: str = "", oracle=None, references: dict | None = None,
        oracle_every: int = 1, divergence: Divergence = Divergence(), resume: bool = True,
        rows: list | None = None,
        start_step: int = 0, opt_state=None, stop: Callable[[dict], bool] | None = None,
        log: Callable[[str], None] = lambda m: None) -> Outcome:
    """Train for ``steps`` steps; see the module docstring.

    Args:
        record: called with each metrics row (e.g. ``ctx.append_metrics``).
        checkpoint_dir: where checkpoints go (None: no checkpoints, no resume).
        checkpoint_every: checkpoint period in steps (a multiple of ``eval_every``; 0: final only).
        config_hash: stored with each checkpoint; resuming requires it to match.
        oracle: the rule the cosines compare with (None: cosines are NaN).
        references: ``{name: rule}`` whose cosines with the oracle are recorded too.
        oracle_every: the cosines are taken on rows whose step is a multiple of this
            (NaN on the others).
        resume: continue from the last checkpoint in ``checkpoint_dir`` if there is one.
        rows: the rows recorded before the resume point (kept in the outcome).
        start_step, opt_state: continue another run's trajectory from its step
            ``start_step`` (its batches, ``steps`` counted from 0 as there) and
            optimiser state; default: a fresh run from step 0.
    """
    if steps < 0 or eval_every < 1:
        raise ValueError("steps must be >= 0 and eval_every >= 1")
    if checkpoint_every and checkpoint_every % eval_every:
        raise ValueError("checkpoint_every must be a multiple of eval_every")
    references = dict(references or {})
    opt_state = trainer.init_opt_state(params) if opt_state is None else opt_state
    start, best, last_ckpt, resumed_at, skipped, partial = start_step, math.inf, None, None, 0, 0
    rows = list(rows or [])
    if resume and checkpoint_dir is not None and ckpt.latest(checkpoint_dir) is not None:
        last_ckpt = ckpt.latest(checkpoint_dir)
        (params, opt_state), meta = ckpt.load(checkpoint_dir, last_ckpt, (params, opt_state),
                                              expected_hash=config_hash)
        # Row ``last_ckpt`` is on record already; redo its gradient, then update.
        start, best, resumed_at = last_ckpt, float(meta["best"]), last_ckpt
        skipped, partial = int(meta.get("skipped", 0)), int(meta.get("partial", 0))
        log(f"resumed from checkpoint at step {last_ckpt}")
    t0 = time.perf_counter()
    k = start
    while k <= steps:
        grads, info = trainer.gradient(params, k)
        # The last step's gradient only fills its row: it is never applied.
        usable, why = divergence.usable(info) if k < steps else (True, "")
        if usable and k < steps and int(info["failed_samples"]) > 0:
            partial += 1
            log(f"step {k}: {int(info['failed_samples'])} samples failed; the gradient is over "
                "the others")
        if not usable:
            skipped += 1
            log(f"step {k}: gradient not applied ({why})")
            if skipped > divergence.max_skipped_steps:
                reason = f"unusable gradient at step {k} ({why})"
                return Outcome("diverged", k, rows, best, reason, last_ckpt, params, skipped,
                               partial=partial)
        if (k % eval_every == 0 or k == steps) and k != resumed_at:
            row = _row(trainer, params, grads, info, k,
                       oracle if k % oracle_every == 0 else None, references,
                       time.perf_counter() - t0)
            rows.append(row)
            record(row)
            log(f"step {k}: " + " ".join(f"{key} {_fmt(value)}" for key, value in row.items()
                                         if key not in ("step", "wall_s")))
            if divergence.against == "first" and not rows[:-1]:
                best = row[divergence.monitor]
            reason = divergence.check(row, best)
            if reason is not None:
                log(f"diverged: {reason} at step {k}")
                return Outcome("diverged", k, rows, best, f"{reason} at step {k}", last_ckpt,
                               params, skipped, partial=partial)
            if divergence.against == "best":
                best = min(best, row[divergence.monitor])
            done = stop is not None and stop(row)
            if checkpoint_dir is not None and (
                    k == steps or done or (checkpoint_every and k % checkpoint_every == 0)):
                ckpt.save(checkpoint_dir, k, (params, opt_state),
                          {"config_hash": config_hash, "best": best, "skipped": skipped,
                           "partial": partial})
                last_ckpt = k
            if done:
                return Outcome("ok", k, rows, best, None, last_ckpt, params, skipped, True,
                               partial)
        if k == steps:
            break
        if usable:
            params, opt_state = trainer.update(params, opt_state, grads)
        k += 1
    return Outcome("ok", steps, rows, best, None, last_ckpt, params, skipped, partial=partial)


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _row(trainer, params, grads, info, k, oracle, references, wall):
    row = {"step": k, **trainer.task.evaluate(params), "loss": float(info["loss"]),
           "failed_samples": int(info["failed_samples"]), "matvecs": int(info["matvecs"])}
    row.update(cosines(trainer, params, grads, k, oracle, references))
    row["wall_s"] = round(wall, 3)
    return row


def cosines(trainer, params, grads, step, oracle, references) -> dict:
    """cos(ĝ, oracle) and cos(reference, oracle) on the batch of ``step``."""
    names = ["cos_oracle"] + [f"cos_oracle_{name}" for name in references]
    if oracle is None:
        return dict.fromkeys(names, math.nan)
    g_star, *g_refs = reference_gradients(trainer.task, (oracle, *references.values()),
                                          trainer.data_key, params, jnp.asarray(step, jnp.int32))
    grads = cast(grads, jax.tree.leaves(g_star)[0].dtype)
    values = [cosine(grads, g_star)] + [cosine(g, g_star) for g in g_refs]
    return {name: float(value) for name, value in zip(names, values)}


@eqx.filter_jit
def reference_gradients(task, rules, data_key, params, step):
    """The gradients of ``rules`` on the batch of ``step`` (in float64 when x64 is on): the
    first, the oracle, of the task's ``oracle_problem``, the others of its ``problem``."""
    x, y = batch(task, data_key, step)
    if jax.config.jax_enable_x64:
        params = cast(params, jnp.float64)
    z0 = task.initial_state(params, x)
    problems = [task.oracle_problem] + [task.problem] * (len(rules) - 1)
    return [_gradient(rule, problem, z0, params, x, y, None)[0]
            for rule, problem in zip(rules, problems)]


__all__ = ["Outcome", "fit", "cosines", "reference_gradients"]
