"""P-flow: learning theta = (position priors, token priors, generators) (seed 000).

Two timescales, taken in their adiabatic limit (alternation): for each batch the
beliefs start at the input tokens' priors and the Q-flow is solved to its
equilibrium q*(theta) (qflow.py); then theta takes one optax step. With
`optax.sgd(eta)` the step is the explicit-Euler step (dt = 1) of the P-flow ODE

    d theta/dt = -eta dF/dtheta (q*(theta), theta).

Why alternation rather than one joint ODE with a timescale ratio: the beliefs
are per-batch state re-initialised from every new batch's inputs, theta persists
across batches; and at q* the envelope theorem holds, dF(q*(theta), theta)/dtheta
= dF/dtheta, so the P-flow signal is an exact gradient of something (the
equilibrium free energy) that can be held against the engine's oracle.

Learners (each an option of the same training step, not a fork):

* `PureLearner` -- every parameter by -dF/dtheta at q* (seed 000, "Should Be (PURE)").
* `HybridLearner` -- seed 000 "Current (HYBRID)" / seed 001 "Fix 3": position
  priors by EMA p <- (1-r) p + r q (q averaged over the batch), token means by the
  hand-made rules on the decoder's argmax at q*: attract pi_y <- (1-a) pi_y + a q
  where the prediction is right, discriminate pi_y <- pi_y + a (pi_y - pi_pred)
  where it is wrong, a = disc_mult * r; token sigmas fixed; generators by -dF/dphi.
* `OracleLearner` -- theta by the exact gradient dL(q*(theta), theta)/dtheta of the
  prediction loss L = lambda_obs * CE (the engine's implicit oracle).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import flowsim

from .free_energy import FreeEnergy, Priors
from .qflow import qflow_field


def pflow_signal(fe: FreeEnergy, z_star, priors: Priors, targets) -> Priors:
    """dF/dtheta at fixed beliefs z_star (= the total derivative at q*, envelope theorem)."""
    return jax.grad(fe, argnums=1)(z_star, priors, targets)


def prediction_loss(fe: FreeEnergy):
    """L(z, theta, y) = lambda_obs * CE(decode(q), y), reduced as in F."""

    def loss(z, priors, y):
        return fe.lambda_obs * fe.reduce_ce(fe.ce_per_position(z, priors, y))

    return loss


def oracle_gradient(fe: FreeEnergy, estimator, priors, z_start, targets):
    """dL(q*(theta), theta)/dtheta by the engine (`flowsim.Implicit`), and its info.

    The engine finds q* itself (Newton), starting from z_start (pass the Q-flow's q*)."""
    loss = flowsim.ParametrisedLoss(prediction_loss(fe))
    return flowsim.gradient(estimator, qflow_field(fe), loss, priors, z_start, targets, targets)


class AbstractLearner(eqx.Module):
    optimizer: optax.GradientTransformation = eqx.field(static=True)

    def init(self, priors):
        return self.optimizer.init(eqx.filter(priors, eqx.is_inexact_array))

    def _apply(self, grads, opt_state, priors):
        updates, opt_state = self.optimizer.update(grads, opt_state, priors)
        return optax.apply_updates(priors, updates), opt_state

    @abc.abstractmethod
    def update(self, fe, priors, opt_state, z0, z_star, targets):
        """(priors, opt_state, info) from the equilibrium beliefs z_star; info: a flat dict."""


class PureLearner(AbstractLearner):
    def update(self, fe, priors, opt_state, z0, z_star, targets):
        return (*self._apply(pflow_signal(fe, z_star, priors, targets), opt_state, priors), {})


class OracleLearner(AbstractLearner):
    """Steps along the oracle gradient. The engine's equilibrium solve starts from the
    Q-flow's z_star. A failed oracle (NaN gradient, flowsim.RESULTS code) is not
    applied: theta and the optimiser state stay, and info["oracle_ok"] says so."""

    estimator: eqx.Module = None  # a flowsim.Implicit

    def update(self, fe, priors, opt_state, z0, z_star, targets):
        grads, info = oracle_gradient(fe, self.estimator, priors, z_star, targets)
        ok = info["result"] == flowsim.RESULTS.successful
        new, new_state = self._apply(grads, opt_state, priors)
        keep = lambda a, b: jax.tree_util.tree_map(lambda u, v: jnp.where(ok, u, v), a, b)
        return keep(new, priors), keep(new_state, opt_state), {
            "oracle_ok": ok, "oracle_newton_steps": info["newton_steps"],
            "oracle_residual": info["residual"]}


def _segment_mean(values, segment_ids, num, mask):
    w = mask.astype(values.dtype)
    total = jax.ops.segment_sum(values * w[:, None], segment_ids, num)
    count = jax.ops.segment_sum(w, segment_ids, num)
    return total / jnp.maximum(count, 1.0)[:, None], count > 0


class HybridLearner(AbstractLearner):
    rate: float = 0.01  # r, seed 001's base_blend
    disc_mult: float = 0.5  # a = disc_mult * r (seed 001 Fix 1 / Fix 3)

    def update(self, fe, priors, opt_state, z0, z_star, targets):
        mu, log_sigma = z_star
        r, a = self.rate, self.disc_mult * self.rate
        V, K = priors.tok_mu.shape
        # Generators (if any) still follow the gradient.
        g = pflow_signal(fe, z_star, priors, targets)
        zero = jnp.zeros_like
        grads = Priors(zero(g.pos_mu), zero(g.pos_log_sigma), zero(g.tok_mu),
                       zero(g.tok_log_sigma), g.phi)
        new, opt_state = self._apply(grads, opt_state, priors)
        pred = jnp.argmax(fe.logits(z_star, priors), axis=-1).reshape(-1)
        y = targets.reshape(-1)
        flat_mu = mu.reshape(-1, K)
        correct = pred == y
        attract, has_c = _segment_mean(flat_mu, y, V, correct)
        push, has_w = _segment_mean(priors.tok_mu[y] - priors.tok_mu[pred], y, V, ~correct)
        tok_mu = jnp.where(has_c[:, None], (1 - a) * priors.tok_mu + a * attract, priors.tok_mu)
        tok_mu = tok_mu + jnp.where(has_w[:, None], a * push, 0.0)
        new = eqx.tree_at(
            lambda p: (p.pos_mu, p.pos_log_sigma, p.tok_mu),
            new,
            ((1 - r) * priors.pos_mu + r * mu.mean(0),
             (1 - r) * priors.pos_log_sigma + r * log_sigma.mean(0), tok_mu),
        )
        return new, opt_state, {}
