"""Shared by the ep-* studies: the typed configuration and what it builds.

The configuration is declared once here (:class:`CharConfig`): the model, the
training loop, the optimiser, the equilibrium solver, the contraction penalty,
and one table per learning rule of the equilibrium scheme, taken from the
registry (``flowsim.run.registry``): a rule registered there is a valid
``estimator`` here with no edit to this file.
"""

import functools
import math
from pathlib import Path
from typing import Literal

import jax.numpy as jnp
import optax
from pydantic import Field, model_validator

import flowsim
from flowsim import train
from flowsim.data import shakespeare
from flowsim.ep import char_model as cm
from flowsim.ep import make_task
from flowsim.run import Section, StudyConfig
from flowsim.run.registry import RuleContext, build_rule, with_rules

from .common import CHECKPOINTS, config_hash, kept_rows, read_rows

BIGRAM_CE = 2.48  # nats/char on the 90/10 split (DESIGN.md)
# Newton starts after at least this many Euler steps: at a short deployed horizon
# (T1 = 10, 20) z_T is still far from z* and Newton from there can fail or find a
# saddle; z* is the equilibrium the flow itself relaxes to.
MIN_RELAX_STEPS = 150


class ModelSection(Section):
    """The weight-tied equilibrium character model (flowsim.ep.char_model)."""

    context: int = Field(32, ge=1, le=4096, description="characters in the window")
    embed: int = Field(16, ge=1, le=4096)
    state: int = Field(128, ge=1, le=65536, description="dim z")
    hidden: int = Field(128, ge=1, le=65536, description="rows of W")
    tied: bool = Field(True, description="F = -grad E (symmetric F_z): EP is consistent")
    init_gain: float = Field(0.5, gt=0, le=100)
    attention: int = Field(0, ge=0, le=4096, description="d_a of a light attention (0: none)")
    t1: int = Field(150, ge=1, le=10**6, description="deployed relaxation: T1 Euler steps")
    dt: float = Field(0.1, ge=1e-6, le=1.0)


class TrainSection(Section):
    steps: int = Field(2000, ge=1, le=10**7)
    batch: int = Field(64, ge=1, le=65536)
    eval_every: int = Field(100, ge=1)
    checkpoint_every: int = Field(100, ge=0, description="a multiple of eval_every (0: final only)")
    eval_batch: int = Field(2048, ge=1, le=10**6)
    rho_krylov: int = Field(20, ge=1, le=4096,
                            description="Arnoldi steps of each sample's rho in the rows")
    diverge_factor: float = Field(2.0, ge=1.0, le=1e6, description="diverged if val CE > factor x best")
    rho_max: float = Field(1.0, gt=0, description="diverged if the median over the validation "
                           "samples of rho(I + dt F_z(z_T)) reaches rho_max")
    max_failed_fraction: float = Field(
        0.1, ge=0, le=1, description="a step whose solve failed on at most this fraction of "
        "the batch uses the gradient over the converged samples")
    max_skipped_steps: int = Field(
        10, ge=0, description="steps skipped (too many failed samples) before the run stops")

    @model_validator(mode="after")
    def _checkpoints_on_rows(self):
        if self.checkpoint_every % self.eval_every:
            raise ValueError(f"train.checkpoint_every ({self.checkpoint_every}) must be a multiple "
                             f"of train.eval_every ({self.eval_every})")
        return self


class OptimSection(Section):
    lr: float = Field(0.003, gt=0, le=10)
    clip: float = Field(1.0, ge=0, description="global-norm clip (0: none)")


class SolverSection(Section):
    """The equilibrium z* (EP's free phase, the oracle, L(z*))."""

    retries: int = Field(3, ge=0, le=1000, description="retry a failed Newton solve ...")
    retry_relax_steps: int = Field(500, ge=1, le=10**6, description="... after this many more Euler steps")


class PenaltySection(Section):
    weight: float = Field(0.0, ge=0, description="lambda of the contraction penalty (0: off)")
    directions: int = Field(1, ge=1, le=4096)
    through_states: bool = False
    carried: bool = Field(True, description="carry the probe along the relaxation (false: "
                          "a fresh random direction every step)")


class CharBase(StudyConfig):
    dtype: Literal["float64", "float32"] = Field("float64", description="float32 on a GPU")
    model: ModelSection = ModelSection()
    train: TrainSection = TrainSection()
    optim: OptimSection = OptimSection()
    solver: SolverSection = SolverSection()
    penalty: PenaltySection = PenaltySection()


CharConfig = with_rules(CharBase, "equilibrium", key="estimator", default="bptt",
                        name="CharConfig")


def dtype_of(config):
    return jnp.float64 if config.dtype == "float64" else jnp.float32


def equilibrium_solver(config) -> flowsim.EquilibriumSolver:
    """Newton after max(T1, 150) relaxation steps of dt; tolerances from the state's dtype."""
    m, s = config.model, config.solver
    return flowsim.EquilibriumSolver(relax_steps=max(m.t1, MIN_RELAX_STEPS), dt=m.dt,
                                     retries=s.retries, retry_relax_steps=s.retry_relax_steps)


def rule_context(config) -> RuleContext:
    return RuleContext(dt=config.model.dt, t1=config.model.t1,
                       equilibrium=equilibrium_solver(config))


def rule(name, config):
    """The learning rule ``name`` with the config's options (and penalty, if any)."""
    made = build_rule(name, config, rule_context(config))
    p = config.penalty
    if p.weight > 0:
        penalty = flowsim.ContractionPenalty(p.weight, config.model.t1, config.model.dt,
                                             directions=p.directions,
                                             through_states=p.through_states,
                                             carried=p.carried)
        made = flowsim.Penalized(made, penalty)
    return made


def oracle(config) -> flowsim.Implicit:
    return flowsim.Implicit(equilibrium=equilibrium_solver(config))


def references(config) -> dict:
    """The reference rules whose cosine with the oracle each row records: BPTT (L(z_T))."""
    return {"bptt": flowsim.BPTT(config.model.t1, config.model.dt)}


def divergence(config) -> train.Divergence:
    t = config.train
    return train.Divergence(monitor="val_ce", factor=t.diverge_factor,
                            limits=(("rho_median", t.rho_max),),
                            finite=("train_ce", "val_ce", "residual_max"),
                            max_failed_fraction=t.max_failed_fraction,
                            max_skipped_steps=t.max_skipped_steps)


def optimizer(config):
    o = config.optim
    adam = optax.adam(o.lr)
    return optax.chain(optax.clip_by_global_norm(o.clip), adam) if o.clip > 0 else adam


def model_config(config, vocab_size):
    m = config.model
    return cm.ModelConfig(vocab=vocab_size, context=m.context, embed=m.embed, state=m.state,
                          hidden=m.hidden, tied=m.tied, init_gain=m.init_gain,
                          attention=m.attention)


@functools.cache
def _load_splits():
    """:func:`shakespeare.load_splits`, read once per process (the text never changes)."""
    return shakespeare.load_splits()


class CharSetup:
    """Data, task, initial parameters and trainers for one config."""

    def __init__(self, config, splits=None):
        self.config = config
        self.splits = _load_splits() if splits is None else splits
        self.dtype = dtype_of(config)
        self.model = model_config(config, len(self.splits.vocab))
        m, t = config.model, config.train
        self.task = make_task(self.splits, batch=t.batch, context=m.context, t1=m.t1, dt=m.dt,
                              eval_batch=t.eval_batch, seed=config.seed,
                              equilibrium=equilibrium_solver(config), krylov_dim=t.rho_krylov)

    def init_params(self):
        return cm.init(self.model, train.init_key(self.config.seed), self.dtype)

    def trainer(self, name=None):
        """A Trainer for rule ``name`` (default: the config's ``estimator``)."""
        return train.Trainer(self.task, rule(name or self.config.estimator, self.config),
                             optimizer(self.config), self.config.seed)


def fit(setup, trainer, params, ctx, checkpoint_dir, *, steps=None, oracle_on=True, record=None,
        hash_of=None, rows=None, oracle_rule=None, start_step=0, opt_state=None):
    """:func:`flowsim.train.fit` with the config's options, resuming from ``checkpoint_dir``.

    ``hash_of``: the config whose hash the checkpoints carry (default: the setup's).
    """
    t = setup.config.train
    if rows is None:
        rows = kept_rows(ctx, {None: checkpoint_dir})
    if oracle_rule is None and oracle_on:
        oracle_rule = oracle(setup.config)
    return train.fit(
        trainer, params, steps=t.steps if steps is None else steps, eval_every=t.eval_every,
        record=record or ctx.append_metrics, checkpoint_dir=checkpoint_dir,
        checkpoint_every=t.checkpoint_every,
        config_hash=config_hash(hash_of or setup.config), oracle=oracle_rule,
        references=references(setup.config) if oracle_rule is not None else None,
        divergence=divergence(setup.config), rows=rows, start_step=start_step,
        opt_state=opt_state, log=ctx.log)


def summary_of(outcome):
    """The flat summary of a :class:`flowsim.train.Outcome`."""
    last = outcome.rows[-1] if outcome.rows else {}
    out = {"status": outcome.status, "steps": outcome.step,
           "val_ce": last.get("val_ce", math.nan), "best_val_ce": outcome.best,
           "rho": last.get("rho_max", math.nan), "residual": last.get("residual_max", math.nan),
           "train_ce": last.get("train_ce", math.nan), "skipped_steps": outcome.skipped,
           "steps_with_failed_samples": outcome.partial,
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
    from flowsim.run.runs import read_config

    run_dir = Path(run_dir)
    source_config = read_config(run_dir)
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
    like = (params, optimizer(source_config).init(params))
    state, _ = train.checkpoint.load(where, step, like)
    return state, source_config, step


__all__ = ["CharConfig", "CharBase", "CharSetup", "fit", "rule", "oracle", "summary_of",
           "source_checkpoint", "kept_rows", "read_rows", "BIGRAM_CE", "CHECKPOINTS"]
