r"""The training loop: estimator gradients, optax updates, metrics, checkpoints, divergence.

Step k (k = 0, …, S−1) takes the gradient of the estimator on batch k at
θ_k and applies the optax update, θ_{k+1} = θ_k + update. Every ``eval_every``
steps, and at k = S, a row describes θ_k:

    step, train_ce, val_ce, val_ce_star, residual, rho, cos_oracle, cos_oracle_bptt, wall_s

(``train_ce``/``val_ce`` are the deployed L(z_T) on fixed train and validation
batches; ``val_ce_star`` is L(z*) at the equilibrium on the validation batch,
NaN without an oracle; ``residual`` and ``rho`` are on the validation batch; the cosines use
batch k; see :mod:`flowsim.train.diagnostics`). After a row is recorded, and
when k is a multiple of ``checkpoint_every``, (θ_k, optimiser state) is
checkpointed. A resumed run restarts from the last checkpoint with the rows
after it dropped, and since everything is a function of (seed, k) it ends with
the same numbers as an uninterrupted one.

Divergence stops the run with status ``"diverged"``: a non-finite gradient
(including an estimator whose solve failed: its result code is in the reason),
a non-finite CE, a validation CE above ``factor`` × its best, or ρ ≥ ``rho_max``.
The last good checkpoint stays on disk.
"""

import dataclasses
import math
import time
from typing import Callable


from .._results import result_name
from . import checkpoint as ckpt
from .task import Trainer

COLUMNS = ("step", "train_ce", "val_ce", "val_ce_star", "residual", "rho", "cos_oracle",
           "cos_oracle_bptt", "wall_s")


@dataclasses.dataclass(frozen=True)
class Divergence:
    """When a run counts as diverged (see module docstring)."""

    factor: float = 2.0
    rho_max: float = 1.0

    def check(self, row: dict, best_val: float) -> str | None:
        for key in ("train_ce", "val_ce", "residual"):
            if not math.isfinite(row[key]):
                return f"non-finite {key} ({row[key]})"
        if math.isfinite(best_val) and row["val_ce"] > self.factor * best_val:
            return f"val_ce {row['val_ce']:.4g} above {self.factor:g} x best {best_val:.4g}"
        if row["rho"] >= self.rho_max:
            return f"rho {row['rho']:.6f} >= {self.rho_max:g}"
        return None


@dataclasses.dataclass
class Outcome:
    """How :func:`fit` ended."""

    status: str  # "ok" or "diverged"
    step: int  # the last step whose parameters were evaluated (or the failing step)
    rows: list
    best_val_ce: float
    reason: str | None = None
    last_checkpoint: int | None = None
    params: object = None


def _ceil_multiple(k, n):
    return -(-k // n) * n


def fit(trainer: Trainer, params, *, steps: int, eval_every: int, eval_batches,
        record: Callable[[dict], None], checkpoint_dir=None, checkpoint_every: int = 0,
        config_hash: str = "", oracle=None, divergence: Divergence = Divergence(),
        rho_samples: int = 8, resume: bool = True, rows: list | None = None,
        start_step: int = 0, opt_state=None,
        log: Callable[[str], None] = lambda m: None) -> Outcome:
    """Train for ``steps`` steps; see the module docstring.

    Args:
        eval_batches: ``((x_train, y_train), (x_val, y_val))``, fixed evaluation batches.
        record: called with each metrics row (e.g. ``ctx.append_metrics``).
        checkpoint_dir: where checkpoints go (None: no checkpoints, no resume).
        checkpoint_every: checkpoint period in steps (a multiple of ``eval_every``; 0: final only).
        config_hash: stored with each checkpoint; resuming requires it to match.
        oracle: the estimator the cosines compare with (None: cosines are NaN).
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
    diag = trainer.diagnostics(oracle, rho_samples)
    (xt, yt), (xv, yv) = eval_batches
    opt_state = trainer.init_opt_state(params) if opt_state is None else opt_state
    start, best, last_ckpt, resumed_at = start_step, math.inf, None, None
    rows = list(rows or [])
    if resume and checkpoint_dir is not None and ckpt.latest(checkpoint_dir) is not None:
        last_ckpt = ckpt.latest(checkpoint_dir)
        (params, opt_state), meta = ckpt.load(checkpoint_dir, last_ckpt, (params, opt_state),
                                              expected_hash=config_hash)
        # Row ``last_ckpt`` is on record already; redo its gradient, then update.
        start, best, resumed_at = last_ckpt, float(meta["best_val_ce"]), last_ckpt
        log(f"resumed from checkpoint at step {last_ckpt}")
    t0 = time.perf_counter()
    k = start
    while k <= steps:
        grads, info = trainer.gradient(params, k)
        if not bool(info["finite"]):
            reason = f"non-finite gradient at step {k} (estimator result: {result_name(info['result'])})"
            log(f"diverged: {reason}")
            return Outcome("diverged", k, rows, best, reason, last_ckpt, params)
        if (k % eval_every == 0 or k == steps) and k != resumed_at:
            row, failed = _row(diag, params, grads, k, (xt, yt), (xv, yv), time.perf_counter() - t0)
            if failed:
                log(f"step {k}: the equilibrium solve failed on {failed} of {len(yv)} validation "
                    "samples, so val_ce_star is NaN")
            rows.append(row)
            record(row)
            log("step {step}: train_ce {train_ce:.4f} val_ce {val_ce:.4f} val_ce_star {val_ce_star:.4f} "
                "residual {residual:.3g} "
                "rho {rho:.4f} cos_oracle {cos_oracle:.4f} cos_oracle_bptt {cos_oracle_bptt:.4f}"
                .format(**row))
            reason = divergence.check(row, best)
            if reason is not None:
                log(f"diverged: {reason} at step {k}")
                return Outcome("diverged", k, rows, best, f"{reason} at step {k}", last_ckpt, params)
            best = min(best, row["val_ce"])
            if checkpoint_dir is not None and (
                    k == steps or (checkpoint_every and k % checkpoint_every == 0)):
                ckpt.save(checkpoint_dir, k, (params, opt_state),
                          {"config_hash": config_hash, "best_val_ce": best})
                last_ckpt = k
        if k == steps:
            break
        params, opt_state = trainer.update(params, opt_state, grads)
        k += 1
    return Outcome("ok", steps, rows, best, None, last_ckpt, params)


def _row(diag, params, grads, k, train, val, wall):
    tr = diag.deployed(params, *train)
    va = diag.deployed(params, *val)
    ce_star, failed = diag.equilibrium_ce(params, *val)
    row = {"step": k, "train_ce": tr["ce"], "val_ce": va["ce"],
           "val_ce_star": ce_star, "residual": va["residual"],
           "rho": va["rho"], **diag.cosines(params, grads, k), "wall_s": round(wall, 3)}
    return {key: row[key] for key in COLUMNS}, failed


__all__ = ["COLUMNS", "Divergence", "Outcome", "fit"]
