"""Shared pieces of the fep-* studies: config -> objects, the chunked training loop.

The one place where the studies' strings (variant, transport, optimizer,
ce_reduction) become objects (flowsim.fep Modules, optax transforms).
Config keys are flat (see scenarios/fep-overfit.toml).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import flowsim
from flowsim import fep
from flowsim.run import at_least, one_of, positive

VARIANTS = ("pure", "hybrid", "oracle")

CONSTRAINTS = {
    "variant": one_of(*VARIANTS),
    "optimizer": one_of("sgd", "adam"),
    "ce_reduction": one_of(*fep.CE_REDUCTIONS),
    "transport": one_of("identity", "gauge"),
    "steps": at_least(1),
    "lr": positive,
    "clip": at_least(0),
    "B": at_least(1),
    "N": at_least(1),
    "V": at_least(2),
    "K": at_least(1),
    "token_scale": positive,
    "alpha": positive,
    "lambda_beta": at_least(0),
    "lambda_obs": positive,
    "tau": positive,
    "kappa": positive,
    "hybrid_rate": positive,
    "disc_mult": at_least(0),
    "t1": positive,
    "qflow_tol": positive,
    "steady_tol": positive,
    "max_qflow_steps": at_least(1),
    "predict_time": at_least(0),
    "log_every": at_least(1),
}


def constraints_without(*keys) -> dict:
    """CONSTRAINTS for a study whose config lacks `keys`."""
    return {k: v for k, v in CONSTRAINTS.items() if k not in keys}


def transport(config):
    return fep.GaugeTransport() if config["transport"] == "gauge" else fep.IdentityTransport()


def free_energy(config, lambda_obs=None):
    return fep.FreeEnergy(
        alpha=config["alpha"], lambda_beta=config["lambda_beta"],
        lambda_obs=config["lambda_obs"] if lambda_obs is None else lambda_obs,
        tau=config["tau"], kappa=config["kappa"], ce_reduction=config["ce_reduction"],
        transport=transport(config))


def qflow(config):
    tol = config["qflow_tol"]
    return fep.QFlow(t1=config["t1"], rtol=tol, atol=tol, steady_tol=config["steady_tol"],
                     max_steps=config["max_qflow_steps"])


def predict_flow(config):
    """The prediction's relaxation: F without observations, integrated for predict_time."""
    tol = config["qflow_tol"]
    return fep.QFlow(t1=max(config["predict_time"], 1e-9), rtol=tol, atol=tol,
                     max_steps=config["max_qflow_steps"], steady=False)


def optimizer(config, lr=None):
    """sgd (Euler on the P-flow) or adam, after global-norm clipping when config["clip"] > 0."""
    lr = config["lr"] if lr is None else lr
    opt = optax.adam(lr) if config["optimizer"] == "adam" else optax.sgd(lr)
    if config.get("clip", 0.0) > 0:
        opt = optax.chain(optax.clip_by_global_norm(config["clip"]), opt)
    return opt


def oracle_estimator():
    # Newton polishes the Q-flow's q* (passed as the start), then GMRES on F_z^T.
    return flowsim.Implicit(equilibrium=flowsim.EquilibriumSolver(relax_steps=0))


def learner(config, variant=None, lr=None):
    variant = variant or config["variant"]
    opt = optimizer(config, lr)
    if variant == "hybrid":
        return fep.HybridLearner(opt, rate=config["hybrid_rate"], disc_mult=config["disc_mult"])
    if variant == "oracle":
        return fep.OracleLearner(opt, estimator=oracle_estimator())
    return fep.PureLearner(opt)


def init(config, key, N=None, V=None):
    return fep.init_priors(key, V or config["V"], N or config["N"], config["K"], transport(config),
                           token_scale=config["token_scale"])


def random_batch(config, key):
    """B random sequences of N+1 tokens: inputs x = seq[:, :-1], targets y = seq[:, 1:]."""
    seq = jax.random.randint(key, (config["B"], config["N"] + 1), 0, config["V"])
    return seq[:, :-1], seq[:, 1:]


def make_chunk(lrn, fe, flow, length, batch_fn):
    """A jitted function running `length` learning steps (lax.scan); batch_fn(i) -> (x, y)."""

    @jax.jit
    def chunk(priors, opt_state, start):
        def body(carry, i):
            priors, opt_state = carry
            x, y = batch_fn(i)
            priors, opt_state, m = fep.learning_step(lrn, fe, flow, priors, opt_state, x, y)
            return (priors, opt_state), m

        return jax.lax.scan(body, (priors, opt_state), start + jnp.arange(length))

    return chunk


def rows_of(metrics: dict, start: int) -> list[dict]:
    arrays = {k: np.asarray(v) for k, v in metrics.items()}
    n = len(next(iter(arrays.values())))
    return [{"step": start + t, **{k: a[t].item() for k, a in arrays.items()}} for t in range(n)]


def finite(x) -> bool:
    return all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree_util.tree_leaves(x))
