"""Diagnostics of the free energy (seed 001, "Test 3: Gradient Magnitude Monitoring").

`term_gradient_norms` gives the Frobenius norm over the batch of the gradient,
with respect to the belief means mu, of each *weighted* term of F: alpha * self-KL,
lambda_beta * alignment and lambda_obs * CE, and the ratio |CE| / |self-KL| that
seed 001 reads as "healthy between 1 and 10, too weak below 0.1". It is meant at
the start of the Q-flow (the forces the beliefs start with): at q* the three
forces cancel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .free_energy import FreeEnergy


def _norm(x):
    return jnp.sqrt(jnp.sum(x**2))


def term_gradient_norms(fe: FreeEnergy, z, priors, targets) -> dict:
    mu, log_sigma = z

    def grad_mu(term):
        return jax.grad(lambda m: term((m, log_sigma)))(mu)

    g_kl = _norm(fe.alpha * grad_mu(lambda q: fe.self_kl(q, priors)))
    g_al = _norm(fe.lambda_beta * grad_mu(lambda q: fe.alignment(q, priors)))
    g_ce = _norm(fe.lambda_obs * grad_mu(
        lambda q: fe.reduce_ce(fe.ce_per_position(q, priors, targets))))
    return {"grad_mu_kl": g_kl, "grad_mu_align": g_al, "grad_mu_ce": g_ce,
            "ratio_ce_kl": g_ce / g_kl}


def prediction_metrics(fe: FreeEnergy, z, priors, targets, prefix="train") -> dict:
    """Mean CE per position (nats) and accuracy of the decoder at beliefs z."""
    logits = fe.logits(z, priors)
    ce = jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, targets[..., None], -1)[..., 0])
    acc = jnp.mean(jnp.argmax(logits, -1) == targets)
    return {f"{prefix}_ce": ce, f"{prefix}_acc": acc}


def free_energy_metrics(fe: FreeEnergy, z, priors, targets) -> dict:
    t = fe.terms(z, priors, targets)
    return {"F": fe.weighted(t), "F_self_kl": t["self_kl"], "F_align": t["align"], "F_ce": t["ce"]}
