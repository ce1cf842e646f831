r"""Seed 001's hybrid learning rules, as a learning rule of the engine.

Seed 000 "Current (HYBRID)" / seed 001 "Fix 3": at the Q-flow's beliefs q*,

* position priors by an EMA, p <- (1 - r) p + r mean_b(q);
* token means by hand-made rules on the decoder's argmax: attract
  pi_y <- (1 - a) pi_y + a q where the prediction is right, discriminate
  pi_y <- pi_y + a (pi_y - pi_pred) where it is wrong, a = disc_mult * r;
* token sigmas fixed; transport generators by -dF/dphi; the input bank (when
  the model has its own) and the lag banks by -dF/dtheta, like the generators:
  the seed has no rule for them.

These are updates, not gradients. The rule returns the pseudo-gradient g with
θ - lr·g equal to the seed's update for the EMA-managed leaves (g = -Δθ/lr),
so the one training loop with ``optax.sgd(lr)`` applies exactly the seed's
rules; with another optimiser it applies a rescaled version of them.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ..rules._base import AbstractRule, fast_phase, finish
from ..solvers import AbstractFastSolver
from .free_energy import Priors


def _segment_mean(values, segment_ids, num, mask):
    w = mask.astype(values.dtype)
    total = jax.ops.segment_sum(values * w[:, None], segment_ids, num)
    count = jax.ops.segment_sum(w, segment_ids, num)
    return total / jnp.maximum(count, 1.0)[:, None], count > 0


def hybrid_update(fe, priors: Priors, z_star, targets, rate, disc_mult) -> Priors:
    """The seed's new (pos_mu, pos_log_sigma, tok_mu); other leaves unchanged."""
    mu, log_sigma = z_star
    r, a = rate, disc_mult * rate
    V, K = priors.tok_mu.shape
    pred = jnp.argmax(fe.logits(z_star, priors), axis=-1).reshape(-1)
    y = targets.reshape(-1)
    correct = pred == y
    attract, has_c = _segment_mean(mu.reshape(-1, K), y, V, correct)
    push, has_w = _segment_mean(priors.tok_mu[y] - priors.tok_mu[pred], y, V, ~correct)
    tok_mu = jnp.where(has_c[:, None], (1 - a) * priors.tok_mu + a * attract, priors.tok_mu)
    tok_mu = tok_mu + jnp.where(has_w[:, None], a * push, 0.0)
    pos_log_sigma = (None if priors.pos_log_sigma is None
                     else (1 - r) * priors.pos_log_sigma + r * log_sigma.mean(0))
    return dataclasses.replace(priors, pos_mu=(1 - r) * priors.pos_mu + r * mu.mean(0),
                               pos_log_sigma=pos_log_sigma, tok_mu=tok_mu)


class HybridRule(AbstractRule):
    """The seed's hybrid rules at the beliefs ``solver`` reaches (see the module docstring)."""

    solver: AbstractFastSolver
    rate: float = 0.01
    disc_mult: float = 0.5
    lr: float = 1.0

    def estimate(self, problem, z0, params, x, y, key):
        del key
        phase = fast_phase(self.solver, problem, z0, params, x)
        fe = problem.field.fe
        new = hybrid_update(fe, params, phase.z, x[1], self.rate, self.disc_mult)
        by_f = jax.grad(lambda p: problem.energy(phase.z, p, x))(params)
        pseudo = jax.tree.map(lambda old, upd: (old - upd) / self.lr, params, new)
        zeros = None if params.tok_log_sigma is None else jnp.zeros_like(params.tok_log_sigma)
        grads = dataclasses.replace(by_f, pos_mu=pseudo.pos_mu,
                                    pos_log_sigma=pseudo.pos_log_sigma, tok_mu=pseudo.tok_mu,
                                    tok_log_sigma=zeros)
        loss = problem.objective(phase.z, params, y, phase.weights)
        return finish(grads, phase, loss, phase.summary["residual"], phase.summary["matvecs"])


__all__ = ["HybridRule", "hybrid_update"]
