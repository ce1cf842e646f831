"""The variational free energy of seeds 000/001 and the parameters it depends on.

For a batch of B sequences of N positions, beliefs q_bi = N(mu_bi, diag sigma_bi^2)
in K dimensions (z = (mu, log_sigma), each (B, N, K)), and parameters theta =
`Priors` (position priors p_i, token priors pi_v, transport generators phi):

    F = alpha    * sum_bi KL(q_bi || p_i)                               [self]
      + lambda_b * sum_b sum_{j<=i} beta_bij KL(q_bi || Omega_ij q_bj)  [align]
      + lambda_o * R( sum_bi CE(softmax_v(-KL(q_bi || pi_v)/tau), y_bi) )  [obs]

    beta_bij = softmax over j <= i of -KL(q_bi || Omega_ij q_bj)/kappa

(seed 001, "Architecture Overview"; seed 000, "Token Priors Must Be Differentiable").
beta is a function of q and is differentiated through; nothing is detached.

R is the CE reduction: "sum" counts every position's CE once, like the two KL
terms (the consistent choice); "sum_over_BN" divides the summed CE by B*N while
the KL terms stay summed: the observation force on each belief is then 1/(B N)
of its own CE gradient, which is what seed 001 Issue #2 found the original code
doing ("grad_mu + lambda_obs * grad_mu_ce / (B * N)" on a sum-reduced CE).

Inputs enter only through the initial beliefs, q_bi(0) = pi_{x_bi} (`init_beliefs`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array

from .kl import kl_log_sigma, kl_logits
from .transport import AbstractTransport, IdentityTransport

CE_REDUCTIONS = ("sum", "sum_over_BN")


class Priors(eqx.Module):
    """theta: everything the P-flow learns. pos_*: (N, K); tok_*: (V, K); phi: (N, K, K) or None."""

    pos_mu: Array
    pos_log_sigma: Array
    tok_mu: Array
    tok_log_sigma: Array
    phi: Array | None = None


def init_priors(key, V: int, N: int, K: int, transport: AbstractTransport, *,
                token_scale: float = 1.0, dtype=jnp.float64) -> Priors:
    """Token means ~ N(0, token_scale^2), all sigmas 1, position means 0, phi 0."""
    if int(V) < 2:
        raise ValueError(f"vocabulary size V must be >= 2, got {V}")
    if int(K) < 1:
        raise ValueError(f"belief dimension K must be >= 1, got {K}")
    if int(N) < 1:
        raise ValueError(f"sequence length N must be >= 1, got {N}")
    return Priors(
        pos_mu=jnp.zeros((N, K), dtype),
        pos_log_sigma=jnp.zeros((N, K), dtype),
        tok_mu=token_scale * jax.random.normal(key, (V, K), dtype),
        tok_log_sigma=jnp.zeros((V, K), dtype),
        phi=transport.init_generators(N, K, dtype),
    )


def init_beliefs(priors: Priors, tokens):
    """q(0) at the input tokens' priors: z0 = (pi_mu[x], pi_log_sigma[x])."""
    return (priors.tok_mu[tokens], priors.tok_log_sigma[tokens])


def _is_number(x):
    return isinstance(x, (int, float))


class FreeEnergy(eqx.Module):
    """F(z, theta; y) with its weights and options. Scalars may be arrays (vmap over them)."""

    alpha: float = 1.0
    lambda_beta: float = 1.0
    lambda_obs: float = 1.0
    tau: float = 1.0
    kappa: float = 1.0
    ce_reduction: str = eqx.field(static=True, default="sum")
    transport: AbstractTransport = IdentityTransport()

    def __check_init__(self):
        if self.ce_reduction not in CE_REDUCTIONS:
            raise ValueError(f"ce_reduction must be one of {CE_REDUCTIONS}, got {self.ce_reduction!r}")
        for name in ("tau", "kappa"):
            v = getattr(self, name)
            if _is_number(v) and not v > 0:
                raise ValueError(f"{name} must be > 0, got {v}")

    # --- the pieces -------------------------------------------------------------
    def logits(self, z, priors: Priors) -> Array:
        """Decoder logits -KL(q || pi_v)/tau, (B, N, V)."""
        mu, log_sigma = z
        return kl_logits(mu, jnp.exp(log_sigma), priors.tok_mu, jnp.exp(priors.tok_log_sigma), self.tau)

    def ce_per_position(self, z, priors: Priors, targets) -> Array:
        return optax.softmax_cross_entropy_with_integer_labels(self.logits(z, priors), targets)

    def reduce_ce(self, ce_bn: Array) -> Array:
        total = jnp.sum(ce_bn)
        if self.ce_reduction == "sum_over_BN":
            return total / ce_bn.size
        return total

    def self_kl(self, z, priors: Priors) -> Array:
        mu, log_sigma = z
        return jnp.sum(kl_log_sigma(mu, log_sigma, priors.pos_mu, priors.pos_log_sigma))

    def alignment(self, z, priors: Priors) -> Array:
        mu, log_sigma = z
        kl_ij = self.transport.pairwise_kl(mu, log_sigma, priors.phi)  # (B, N, N)
        N = kl_ij.shape[-1]
        causal = jnp.tril(jnp.ones((N, N), bool))
        beta = jax.nn.softmax(-kl_ij / self.kappa, axis=-1, where=causal)
        return jnp.sum(jnp.where(causal, beta * kl_ij, 0.0))

    def terms(self, z, priors: Priors, targets) -> dict:
        """Unweighted terms: self-KL, alignment, CE (reduced)."""
        return {
            "self_kl": self.self_kl(z, priors),
            "align": self.alignment(z, priors),
            "ce": self.reduce_ce(self.ce_per_position(z, priors, targets)),
        }

    def weighted(self, terms: dict) -> Array:
        return (self.alpha * terms["self_kl"] + self.lambda_beta * terms["align"]
                + self.lambda_obs * terms["ce"])

    def __call__(self, z, priors: Priors, targets) -> Array:
        return self.weighted(self.terms(z, priors, targets))

    def without_observations(self) -> "FreeEnergy":
        """The same F with lambda_obs = 0: the Q-flow of a prediction (targets unseen)."""
        return eqx.tree_at(lambda f: f.lambda_obs, self, 0.0 * jnp.asarray(self.lambda_obs))
