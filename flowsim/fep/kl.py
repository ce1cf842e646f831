"""Kullback-Leibler divergences between diagonal Gaussians.

For q = N(mu_q, diag sigma_q^2) and p = N(mu_p, diag sigma_p^2) in K dimensions
(sigma are standard deviations throughout this subpackage)

    KL(q || p) = 1/2 sum_k [ sigma_q^2/sigma_p^2 + (mu_q - mu_p)^2/sigma_p^2
                             - 1 + log sigma_p^2 - log sigma_q^2 ].

`kl_logits` evaluates -KL(q || pi_v)/tau against a whole prior bank pi (V, K)
(seed 000, "p(y=v|q) = softmax(-KL(q||pi_v)/tau)"). Expanding the square,

    2 KL(q || pi_v) = (sigma_q^2 + mu_q^2) . (1/sigma_v^2) - 2 mu_q . (mu_v/sigma_v^2)
                      + sum_k (mu_vk^2/sigma_vk^2 + log sigma_vk^2)
                      - K - sum_k log sigma_qk^2,

which is ONE matrix product [sigma_q^2 + mu_q^2, mu_q] (..., 2K) x
[1/sigma^2 ; -2 mu/sigma^2] (2K, V) plus a per-token constant and a per-belief
constant. No (..., V, K) tensor is built (seed 000/001: "two (BN x K)(K x V)
matmuls plus per-token constants"); peak memory is O(... x V + V x K).
The expansion loses relative precision when KL << |mu|^2/sigma^2 (cancellation);
use float64 where that matters.

The decoder above plugs the belief into each token's log-density. The
expected likelihood instead averages over the belief: with the token
log-likelihoods of a point z,

    l_v(z) = -sum_k [ (z_k - mu_vk)^2 / (2 sigma_vk^2) + log sigma_vk ] / tau,

(softmax_v l_v(mu) is kl_logits at sigma_q -> 0), the Gaussian integral gives

    log E_q[exp l_v(z)] = sum_k [ -(mu_qk - mu_vk)^2 / (2 (tau sigma_vk^2 + sigma_qk^2))
                                  - 1/2 log(1 + sigma_qk^2 / (tau sigma_vk^2))
                                  - log sigma_vk / tau ],

and, by Jensen (E log X <= log E X for X = sum_v exp l_v(z)), the expected
cross-entropy of the token y is bounded by

    -E_q[log softmax_v(l_v(z))_y] <= -E_q[l_y(z)] + logsumexp_v log E_q[exp l_v(z)],
    E_q[l_y(z)] = -sum_k [ (sigma_qk^2 + (mu_qk - mu_yk)^2) / (2 sigma_yk^2) + log sigma_yk ] / tau.

Both equal the point decoder's at sigma_q = 0. Unlike the plug-in, they see the
belief's width: a wide belief decodes softly, and sharpening the decoder costs
the width's spread (-E_q[l_y] grows with sigma_q^2/sigma_y^2). These build a
(..., V, K) tensor: the denominators mix the belief's and the token's widths.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike


def kl(mu_q: ArrayLike, sigma_q: ArrayLike, mu_p: ArrayLike, sigma_p: ArrayLike) -> Array:
    """KL(q || p) for diagonal Gaussians, summed over the last axis (broadcasting)."""
    mu_q, sigma_q, mu_p, sigma_p = map(jnp.asarray, (mu_q, sigma_q, mu_p, sigma_p))
    ratio = (sigma_q / sigma_p) ** 2
    maha = ((mu_q - mu_p) / sigma_p) ** 2
    return 0.5 * jnp.sum(ratio + maha - 1.0 - jnp.log(ratio), axis=-1)


def kl_log_sigma(mu_q, log_sigma_q, mu_p, log_sigma_p) -> Array:
    """KL(q || p) in the (mu, log sigma) coordinates the flows use (exact, no cancellation)."""
    d = log_sigma_q - log_sigma_p
    maha = (mu_q - mu_p) ** 2 * jnp.exp(-2.0 * log_sigma_p)
    return 0.5 * jnp.sum(jnp.exp(2.0 * d) + maha - 1.0 - 2.0 * d, axis=-1)


def kl_logits(
    mu_q: ArrayLike, sigma_q: ArrayLike, mu_pi: ArrayLike, sigma_pi: ArrayLike, tau
) -> Array:
    """Logits -KL(q || pi_v)/tau of beliefs q (..., K) against a bank pi (V, K).

    Returns shape (..., V). One (..., 2K) x (2K, V) matrix product plus constants.
    """
    mu_q, sigma_q = jnp.asarray(mu_q), jnp.asarray(sigma_q)
    mu_pi, sigma_pi = jnp.asarray(mu_pi), jnp.asarray(sigma_pi)
    K = mu_q.shape[-1]
    inv_var = 1.0 / sigma_pi**2  # (V, K)
    features = jnp.concatenate([sigma_q**2 + mu_q**2, mu_q], axis=-1)  # (..., 2K)
    bank = jnp.concatenate([inv_var, -2.0 * mu_pi * inv_var], axis=-1)  # (V, 2K)
    token_const = jnp.sum(mu_pi**2 * inv_var + jnp.log(sigma_pi**2), axis=-1)  # (V,)
    belief_const = -K - jnp.sum(jnp.log(sigma_q**2), axis=-1, keepdims=True)  # (..., 1)
    two_kl = features @ bank.T + token_const + belief_const
    return -0.5 * two_kl / tau


def expected_likelihood_logits(
    mu_q: ArrayLike, sigma_q: ArrayLike, mu_pi: ArrayLike, sigma_pi: ArrayLike, tau
) -> Array:
    """log E_q[exp l_v(z)] of beliefs q (..., K) against a bank pi (V, K): (..., V).
    softmax over v is the decode E_q[exp l_y] / sum_v E_q[exp l_v] (module docstring)."""
    mu_q, sigma_q = jnp.asarray(mu_q)[..., None, :], jnp.asarray(sigma_q)[..., None, :]
    mu_pi, sigma_pi = jnp.asarray(mu_pi), jnp.asarray(sigma_pi)
    spread = tau * sigma_pi**2 + sigma_q**2  # (..., V, K)
    per_k = (-0.5 * (mu_q - mu_pi) ** 2 / spread - 0.5 * jnp.log(spread / (tau * sigma_pi**2))
             - jnp.log(sigma_pi) / tau)
    return jnp.sum(per_k, axis=-1)


def expected_cross_entropy(
    mu_q: ArrayLike, sigma_q: ArrayLike, mu_pi: ArrayLike, sigma_pi: ArrayLike, tau, targets
) -> Array:
    """The Jensen bound on -E_q[log softmax_v(l_v(z))_y] (module docstring), (...,)."""
    mu_q, sigma_q = jnp.asarray(mu_q), jnp.asarray(sigma_q)
    mu_pi, sigma_pi = jnp.asarray(mu_pi), jnp.asarray(sigma_pi)
    mu_y, sigma_y = mu_pi[targets], sigma_pi[targets]  # (..., K)
    expected_target = -jnp.sum((sigma_q**2 + (mu_q - mu_y) ** 2) / (2.0 * sigma_y**2)
                               + jnp.log(sigma_y), axis=-1) / tau
    log_partition = jax.nn.logsumexp(
        expected_likelihood_logits(mu_q, sigma_q, mu_pi, sigma_pi, tau), axis=-1)
    return log_partition - expected_target
