"""Diagnostics of the free energy (seed 001, "Test 3: Gradient Magnitude Monitoring").

`term_gradient_norms` gives the Frobenius norm over the batch of the gradient,
with respect to the belief means mu, of each *weighted* term of F: alpha *
self-KL, lambda_beta * alignment, lambda_in * input CE and lambda_obs * CE,
and the ratio |CE| / |self-KL| that seed 001 reads as "healthy between 1 and
10, too weak below 0.1". It is meant at the start of the Q-flow (the forces
the beliefs start with): at q* the forces cancel.

`input_recovery` measures how much of the input survives in beliefs z: the
accuracy (and CE) of reading each position's own token back from its belief
through the input bank. At the inference equilibrium of a formulation that
forgets its inputs it falls to chance, whatever the beliefs started from.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from .free_energy import FreeEnergy


def _norm(x):
    return jnp.sqrt(jnp.sum(x**2))


def term_gradient_norms(fe: FreeEnergy, z, priors, tokens, targets) -> dict:
    mu, log_sigma = z

    def grad_mu(term):
        return _norm(jax.grad(lambda m: term((m, log_sigma)))(mu))

    g_kl = fe.alpha * grad_mu(lambda q: fe.self_kl(q, priors))
    g_al = fe.lambda_beta * grad_mu(lambda q: fe.alignment(q, priors))
    g_in = fe.lambda_in * grad_mu(lambda q: fe.input_ce(q, priors, tokens))
    g_ce = fe.lambda_obs * grad_mu(lambda q: fe.reduce_ce(fe.ce_per_position(q, priors, targets)))
    return {"grad_mu_kl": g_kl, "grad_mu_align": g_al, "grad_mu_in": g_in, "grad_mu_ce": g_ce,
            "ratio_ce_kl": g_ce / g_kl}


def prediction_metrics(fe: FreeEnergy, z, priors, targets, prefix="train") -> dict:
    """Mean CE per position (nats) and accuracy of the next-token decoder at beliefs z."""
    logits = fe.logits(z, priors)
    ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, targets))
    acc = jnp.mean(jnp.argmax(logits, -1) == targets)
    return {f"{prefix}_ce": ce, f"{prefix}_acc": acc}


def input_recovery(fe: FreeEnergy, z, priors, tokens, prefix="train") -> dict:
    """Accuracy and mean CE (nats) of decoding each position's own token from its belief."""
    logits = fe.input_logits(z, priors)
    ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, tokens))
    acc = jnp.mean(jnp.argmax(logits, -1) == tokens)
    return {f"{prefix}_input_acc": acc, f"{prefix}_input_ce": ce}


def free_energy_metrics(fe: FreeEnergy, z, priors, tokens, targets) -> dict:
    t = fe.terms(z, priors, tokens, targets)
    return {"F": fe.weighted(t), "F_self_kl": t["self_kl"], "F_align": t["align"],
            "F_input": t["input"], "F_ce": t["ce"]}
