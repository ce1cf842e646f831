"""Shared by the ep-* studies: build the character task, estimators and optimiser from a config.

This is the one place where the config's strings become engine objects
(``estimator = "ep"`` → ``flowsim.EP(...)``); the engine itself takes objects.
"""

import csv
import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

import flowsim
from flowsim import train
from flowsim.data import shakespeare
from flowsim.models import char_equilibrium as cm
from flowsim.run import at_least, in_range, non_negative, one_of, positive

ESTIMATORS = ("bptt", "forward", "implicit", "rbp", "ep", "hep")
BIGRAM_CE = 2.48  # nats/char on the 90/10 split (DESIGN.md)
CHECKPOINTS = "checkpoints"

CONSTRAINTS = {
    "seed": at_least(0),
    "dtype": one_of("float64", "float32"),
    "estimator": one_of(*ESTIMATORS),
    "model.context": at_least(1), "model.embed": at_least(1), "model.state": at_least(1),
    "model.hidden": at_least(1), "model.init_gain": positive, "model.t1": at_least(1),
    "model.attention": at_least(0),
    "model.dt": in_range(1e-6, 1.0),
    "train.steps": at_least(1), "train.batch": at_least(1), "train.eval_every": at_least(1),
    "train.checkpoint_every": at_least(0), "train.eval_batch": at_least(1),
    "train.rho_samples": at_least(1), "train.diverge_factor": in_range(1.0, 1e6),
    "train.rho_max": positive,
    "optim.lr": positive, "optim.clip": non_negative,
    "ep.beta": positive, "ep.steps": at_least(1),
    "hep.radius": positive, "hep.points": at_least(2), "hep.steps": at_least(1),
    "rbp.steps": at_least(1), "forward.directions": at_least(0),
    "penalty.weight": non_negative, "penalty.directions": at_least(1),
    "solver.retries": at_least(0), "solver.retry_relax_steps": at_least(1),
}


def dtype_of(config):
    return jnp.float64 if config["dtype"] == "float64" else jnp.float32


# Newton starts after at least this many Euler steps: at a short deployed horizon
# (T1 = 10, 20) z_T is still far from z* and Newton from there can fail or find a
# saddle; z* is the equilibrium the flow itself relaxes to.
MIN_RELAX_STEPS = 150


def relax_steps(config):
    return max(config["model"]["t1"], MIN_RELAX_STEPS)


def retry_options(config):
    """``solver.retries`` and ``solver.retry_relax_steps`` (engine defaults for older configs)."""
    s = config.get("solver", {})
    default = flowsim.EquilibriumSolver()
    return {"retries": s.get("retries", default.retries),
            "retry_relax_steps": s.get("retry_relax_steps", default.retry_relax_steps)}


def equilibrium_solver(config):
    """Newton after max(T1, 150) relaxation steps of dt; tolerances by precision."""
    dt = config["model"]["dt"]
    retry = retry_options(config)
    if config["dtype"] == "float64":
        return flowsim.EquilibriumSolver(relax_steps=relax_steps(config), dt=dt, **retry)
    return flowsim.EquilibriumSolver(relax_steps=relax_steps(config), dt=dt, rtol=1e-5,
                                     atol=1e-5, residual_tol=1e-3, gmres_rtol=1e-5, **retry)


def estimator(name, config):
    """The estimator called ``name`` with the config's options."""
    m, eq = config["model"], equilibrium_solver(config)
    t1, dt = m["t1"], m["dt"]
    if name == "bptt":
        return flowsim.BPTT(t1, dt)
    if name == "forward":
        k = config["forward"]["directions"]
        return flowsim.Forward(t1, dt, directions=k or None)
    if name == "implicit":
        return flowsim.Implicit(equilibrium=eq)
    if name == "rbp":
        return flowsim.RBP(config["rbp"]["steps"], dt, equilibrium=eq)
    if name == "ep":
        e = config["ep"]
        return flowsim.EP(e["beta"], e["steps"], dt, symmetric=True, equilibrium=eq)
    if name == "hep":
        h = config["hep"]
        return flowsim.HolomorphicEP(h["radius"], h["points"], h["steps"], dt, equilibrium=eq)
    raise ValueError(f"unknown estimator {name!r}; valid: {', '.join(ESTIMATORS)}")


def oracle(config):
    return flowsim.Implicit(equilibrium=flowsim.EquilibriumSolver(
        relax_steps=relax_steps(config), dt=config["model"]["dt"], **retry_options(config)))


def divergence(config):
    t = config["train"]
    return train.Divergence(factor=t["diverge_factor"], rho_max=t["rho_max"])


def optimizer(config):
    o = config["optim"]
    adam = optax.adam(o["lr"])
    return optax.chain(optax.clip_by_global_norm(o["clip"]), adam) if o["clip"] > 0 else adam


def model_config(config, vocab_size):
    m = config["model"]
    return cm.ModelConfig(vocab=vocab_size, context=m["context"], embed=m["embed"],
                          state=m["state"], hidden=m["hidden"], tied=m["tied"],
                          init_gain=m["init_gain"], attention=m.get("attention", 0))


# One Task object per (data, batch, context, T1, dt) in a process. The jitted
# training and diagnostic functions are keyed on the task, so the runs of one
# study (ep-fixes makes three, a resume test three) compile once, not per run.
_TASKS = {}


@functools.cache
def _load_splits():
    """:func:`shakespeare.load_splits`, read once per process (the text never changes)."""
    return shakespeare.load_splits()


def _task(splits, batch, context, t1, dt):
    key = (id(splits), batch, context, t1, dt)
    if key not in _TASKS or _TASKS[key][0] is not splits:
        train_ids = jnp.asarray(splits.train)
        task = train.Task(
            field=cm.field, loss=flowsim.ParametrisedLoss(cm.cross_entropy),
            initial_state=cm.initial_state,
            sample=lambda key: shakespeare.sample_batch(train_ids, key, batch, context),
            steps=t1, dt=dt, encode=cm.encode, core_field=cm.core_field)
        _TASKS[key] = (splits, task, train_ids)  # splits kept alive: its id stays unique
    return _TASKS[key][1], _TASKS[key][2]


class CharSetup:
    """Data, task, initial parameters and evaluation batches for one config."""

    def __init__(self, config, splits=None):
        self.config = config
        self.splits = _load_splits() if splits is None else splits
        self.dtype = dtype_of(config)
        self.model = model_config(config, len(self.splits.vocab))
        t, m = config["train"], config["model"]
        batch, context = t["batch"], m["context"]
        self.task, train_ids = _task(self.splits, batch, context, m["t1"], m["dt"])
        eval_key = jax.random.fold_in(jax.random.PRNGKey(config["seed"]), 7919)
        k_tr, k_va = jax.random.split(eval_key)
        n = t["eval_batch"]
        self.eval_batches = (shakespeare.sample_batch(train_ids, k_tr, n, context),
                             shakespeare.sample_batch(self.splits.val, k_va, n, context))

    def init_params(self):
        return cm.init(self.model, train.init_key(self.config["seed"]), self.dtype)

    def trainer(self, name=None, penalty_weight=None):
        """A Trainer for estimator ``name`` (default: the config's), with the config's penalty."""
        config = self.config
        p = config["penalty"]
        weight = p["weight"] if penalty_weight is None else penalty_weight
        penalty = None
        if weight > 0:
            penalty = train.ContractionPenalty(weight, config["model"]["t1"], config["model"]["dt"],
                                               directions=p["directions"],
                                               through_states=p["through_states"])
        return train.Trainer(self.task, estimator(name or config["estimator"], config),
                             optimizer(config), config["seed"], penalty=penalty)


def fit(setup, trainer, params, ctx, checkpoint_dir, *, steps=None, oracle_on=True,
        record=None, config_hash=None, rows=None, oracle_estimator=None):
    """Run :func:`flowsim.train.fit` with the config's options, resuming from ``checkpoint_dir``."""
    t = setup.config["train"]
    if rows is None:
        rows = kept_rows(ctx, {None: checkpoint_dir})
    if oracle_estimator is None and oracle_on:
        oracle_estimator = oracle(setup.config)
    return train.fit(
        trainer, params, steps=t["steps"] if steps is None else steps,
        eval_every=t["eval_every"], eval_batches=setup.eval_batches,
        record=record or ctx.append_metrics, checkpoint_dir=checkpoint_dir,
        checkpoint_every=t["checkpoint_every"],
        config_hash=config_hash or train.config_hash(setup.config),
        oracle=oracle_estimator, divergence=divergence(setup.config),
        rho_samples=t["rho_samples"], rows=rows, log=ctx.log)


def kept_rows(ctx, checkpoint_dirs: dict, key=None):
    """On resume: the metrics rows up to each run's last checkpoint, rewritten to metrics.csv.

    ``checkpoint_dirs`` maps the value of column ``key`` (None: one run) to its
    checkpoint directory; rows of a run without checkpoints are dropped.
    """
    path = Path(ctx.dir) / "metrics.csv"
    lasts = {name: (train.checkpoint.latest(d) if d else None) for name, d in checkpoint_dirs.items()}
    if all(v is None for v in lasts.values()) or not path.is_file():
        return []
    with path.open() as f:
        rows = [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(f)]
    kept = []
    for r in rows:
        last = lasts.get(r[key] if key else None)
        if last is not None and r["step"] <= last:
            kept.append(r)
    ctx.write_metrics(kept)
    return kept


def _number(text):
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def summary_of(outcome):
    """The flat summary of a :class:`flowsim.train.Outcome`."""
    last = outcome.rows[-1] if outcome.rows else {}
    out = {"status": outcome.status, "steps": outcome.step,
           "val_ce": last.get("val_ce", math.nan), "best_val_ce": outcome.best_val_ce,
           "rho": last.get("rho", math.nan), "residual": last.get("residual", math.nan),
           "train_ce": last.get("train_ce", math.nan),
           "last_checkpoint": -1 if outcome.last_checkpoint is None else outcome.last_checkpoint}
    if outcome.reason:
        out["reason"] = outcome.reason
        out["diverged_step"] = outcome.step
    return out


def source_checkpoint(run_dir, subdir="", step=-1):
    """``((params, opt_state), source_config, step)`` from a checkpoint of an earlier ep-* run.

    ``run_dir`` is that run's directory (its config.toml gives the structure);
    checkpoints are in ``run_dir/checkpoints[/subdir]``; ``step = -1`` takes
    the last one.
    """
    import tomllib

    run_dir = Path(run_dir)
    with (run_dir / "config.toml").open("rb") as f:
        source_config = tomllib.load(f)["config"]
    where = run_dir / CHECKPOINTS / subdir if subdir else run_dir / CHECKPOINTS
    available = train.checkpoint.steps(where)
    if not available:
        raise train.CheckpointError(f"no checkpoints in {where}")
    if step < 0:
        step = available[-1]
    elif step not in available:
        raise train.CheckpointError(f"no checkpoint at step {step} in {where}; have {available}")
    setup = CharSetup(source_config)
    params = setup.init_params()
    like = (params, setup.trainer("bptt").init_opt_state(params))
    state, _ = train.checkpoint.load(where, step, like)
    return state, source_config, step
