r"""The variational free energy of seeds 000/001, with inputs that persist, and its parameters.

For a batch of B sequences of N positions with input tokens x_bi and next
tokens y_bi = x_b,i+1, beliefs q_bi = N(mu_bi, diag sigma_bi^2) in K dimensions
(z = (mu, log_sigma), each (B, N, K)), and parameters theta = `Priors`
(position priors p_i, the output bank pi_v, the input bank rho_v, transport
generators phi):

    F = alpha     * sum_bi KL(q_bi || p_i)                                 [self]
      + lambda_b  * sum_b sum_{j<=i} beta_bij KL(q_bi || Omega_ij q_bj)    [align]
      + lambda_in * sum_bi CE(softmax_v(-KL(q_bi || rho_v)/tau_in), x_bi)  [input]
      + lambda_o  * R( sum_bi CE(softmax_v(-KL(q_bi || pi_v)/tau), y_bi) )  [obs]

    beta_bij = softmax over j <= i of -KL(q_bi || Omega_ij q_bj)/kappa

(seed 001, "Architecture Overview"; seed 000, "Token Priors Must Be
Differentiable"). beta is a function of q and is differentiated through;
nothing is detached.

The generative model reads: a latent z_i per position, drawn near its position
prior p_i and near the (transported) latents of the positions before it, emits
its own token x_i through the input bank rho and the next token y_i through
the output bank pi. The [input] term is the input's likelihood: it is present
at inference as in training, so the equilibrium beliefs keep the inputs. The
seeds' F had no [input] term; its inputs entered only through the initial
beliefs, which a Q-flow run to equilibrium forgets (lambda_in = 0 reproduces
it). The [obs] term holds the next tokens: it is present in training (the
"clamped" F) and absent at inference (``targets=None``), where the prediction
is decode(q*) through pi.

Other forms of the [input] term (options, each with its test):

* ``input_term="prior"``: lambda_in * sum_bi KL(q_bi || rho_{x_bi}), the input
  token's prior on its position's belief (the token conditions the latent,
  p(z_i | x_i) = rho_{x_i}, instead of being explained by it). Without the
  alignment the inference equilibrium is the normalised geometric mixture of
  p_i and rho_x.
* lag banks (``Priors.lag_mu``, L-1 banks): the belief at i also holds the
  earlier inputs x_{i-l}, l = 1..L-1, each through its own bank, in the same
  form (CE or prior), for the positions i >= l: context that does not pass
  through the alignment.

* ``input_term="product"``: lambda_in * sum_bi KL(q_bi || r_bi), r_bi the
  normalised product of the priors of x_i (rho) and of the earlier inputs
  x_{i-l} (lag bank l, i >= l): ONE conditional prior per belief, p(z_i | x_i,
  ..., x_{i-L+1}) = r_bi, a product of Gaussian experts (equal to "prior" at
  L = 1). Without the alignment, and with alpha -> 0, lambda_in = lambda_obs =
  1, F is then, position by position, the ELBO of an L-gram latent model:
  F_bi = KL(q || r_bi) + E_q[-log p(y_bi | z)] >= -log p(y_bi | x_bi, ...,
  x_{b,i-L+1}) (with the expected likelihood).

``observe_context=True`` changes what inference observes: the next tokens of
the first N-1 positions are inputs (y_i = x_{i+1}), so F at inference keeps
their [obs] term, and only the last position's next token is unobserved.

``rho`` is the model's own bank when ``Priors.in_mu`` is set and the shared
bank pi otherwise (seed 000's single PriorBank). The log-sigmas of the
position priors and of the banks are parameters when present and fixed at 0
(sigma = 1; the temperatures tau, tau_in set the decoders' precision) when
None: a bank's learned sigmas are per-token temperatures.

``likelihood`` sets how a belief meets a bank in the CE terms ([input] in its
"ce" form and [obs]) and in the prediction. "plugin" (above): the belief's
KL to each token's prior, CE(softmax_v(-KL(q || pi_v)/tau), y), which sees the
belief's mean through a decoder whose scale nothing prices: a point (MAP)
objective, in which shrinking the beliefs' spread against the decoder lets a
clamped belief reach any token at a vanishing KL cost. "expected": the
variational free energy's own term, the expected CE E_q[-log p(y | z)] of a
point likelihood p(y | z) = softmax_v(l_v(z)), l_v(z) = log N(z; pi_v, sigma_v^2)/tau
(up to a constant), bounded by Jensen in closed form (``kl.py``); the
prediction is softmax_v log E_q[exp l_v(z)]. The belief's width now enters:
decoding a wide belief is soft, and the expected CE grows with the belief's
spread against the token's width, so the decoder's scale is no longer free.
With one prior per belief (input_term "prior", a single KL of unit weight per
lambda_obs) F / lambda_obs is a variational bound on -log p(y | x) (tested:
it never falls below the conditional entropy; the plug-in F falls to 0).
Both equal the point decoder's at sigma_q = 0.

R is the CE reduction: "sum" counts every position's CE once, like the other
terms (the consistent choice); "sum_over_BN" divides the summed CE by B*N
while the rest stays summed: the observation force on each belief is then
1/(B N) of its own CE gradient, which is what seed 001 Issue #2 found the
original code doing ("grad_mu + lambda_obs * grad_mu_ce / (B * N)" on a
sum-reduced CE).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array

from .kl import (
    expected_cross_entropy,
    expected_likelihood_logits,
    kl_log_sigma,
    kl_logits,
)
from .transport import AbstractTransport, IdentityTransport

CE_REDUCTIONS = ("sum", "sum_over_BN")
INPUT_BANKS = ("own", "shared")
INPUT_TERMS = ("ce", "prior", "product")
LIKELIHOODS = ("plugin", "expected")


class Priors(eqx.Module):
    """theta: everything the P-flow learns. pos_*: (N, K); tok_* (output bank) and in_*
    (input bank): (V, K); phi: (N, K, K); lag_* (the banks of the earlier inputs, lags
    1..L-1): (L-1, V, K). A None log-sigma is fixed at 0; in_mu None: the input term uses
    the output bank; lag_mu None: each belief holds its own input only (L = 1)."""

    pos_mu: Array
    pos_log_sigma: Array | None
    tok_mu: Array
    tok_log_sigma: Array | None
    phi: Array | None = None
    in_mu: Array | None = None
    in_log_sigma: Array | None = None
    lag_mu: Array | None = None
    lag_log_sigma: Array | None = None


def _log_sigma(log_sigma, mu):
    return jnp.zeros_like(mu) if log_sigma is None else log_sigma


def position_prior(priors: Priors):
    """(mu, log_sigma) of the position priors, (N, K) each."""
    return priors.pos_mu, _log_sigma(priors.pos_log_sigma, priors.pos_mu)


def output_bank(priors: Priors):
    """(mu, log_sigma) of pi, the bank that decodes the next token, (V, K) each."""
    return priors.tok_mu, _log_sigma(priors.tok_log_sigma, priors.tok_mu)


def input_bank(priors: Priors):
    """(mu, log_sigma) of rho, the bank the input term uses: its own, or pi."""
    if priors.in_mu is None:
        return output_bank(priors)
    return priors.in_mu, _log_sigma(priors.in_log_sigma, priors.in_mu)


def init_priors(key, V: int, N: int, K: int, transport: AbstractTransport, *,
                token_scale: float = 1.0, input_bank: str = "own", learn_sigma: bool = True,
                input_lags: int = 1, dtype=jnp.float64) -> Priors:
    """Token means ~ N(0, token_scale^2) (each bank its own draw), sigmas 1, position means 0,
    phi 0; ``learn_sigma=False`` leaves the log-sigmas out of theta (fixed at 0);
    ``input_lags`` L > 1 adds the banks of lags 1..L-1."""
    if int(V) < 2:
        raise ValueError(f"vocabulary size V must be >= 2, got {V}")
    if int(K) < 1:
        raise ValueError(f"belief dimension K must be >= 1, got {K}")
    if int(N) < 1:
        raise ValueError(f"sequence length N must be >= 1, got {N}")
    if input_bank not in INPUT_BANKS:
        raise ValueError(f"input_bank must be one of {INPUT_BANKS}, got {input_bank!r}")
    if int(input_lags) < 1:
        raise ValueError(f"input_lags must be >= 1, got {input_lags}")
    k_out, k_in, k_lag = jax.random.split(key, 3)
    lags = (int(input_lags) - 1, V, K)
    sigma = (lambda shape: jnp.zeros(shape, dtype)) if learn_sigma else (lambda shape: None)
    own = input_bank == "own"
    return Priors(
        pos_mu=jnp.zeros((N, K), dtype),
        pos_log_sigma=sigma((N, K)),
        tok_mu=token_scale * jax.random.normal(k_out, (V, K), dtype),
        tok_log_sigma=sigma((V, K)),
        phi=transport.init_generators(N, K, dtype),
        in_mu=token_scale * jax.random.normal(k_in, (V, K), dtype) if own else None,
        in_log_sigma=sigma((V, K)) if own else None,
        lag_mu=token_scale * jax.random.normal(k_lag, lags, dtype) if lags[0] else None,
        lag_log_sigma=sigma(lags) if lags[0] else None,
    )


def init_beliefs(priors: Priors, tokens):
    """q(0) at the input tokens' priors in the input bank: z0 = (rho_mu[x], rho_log_sigma[x])."""
    mu, log_sigma = input_bank(priors)
    return (mu[tokens], log_sigma[tokens])


def _is_number(x):
    return isinstance(x, (int, float))


class FreeEnergy(eqx.Module):
    """F(z, theta; x, y) with its weights and options. Scalars may be arrays (vmap over them).

    ``fe(z, priors, tokens, targets)`` is the clamped F of training; with
    ``targets=None`` it is F at inference: without the [obs] term, or, with
    ``observe_context``, with the [obs] term of the next tokens that are known
    (every position's but the last; see the module docstring).
    """

    alpha: float = 1.0
    lambda_beta: float = 1.0
    lambda_obs: float = 1.0
    tau: float = 1.0
    kappa: float = 1.0
    ce_reduction: str = eqx.field(static=True, default="sum")
    transport: AbstractTransport = IdentityTransport()
    lambda_in: float = 1.0
    tau_in: float = 1.0
    observe_context: bool = eqx.field(static=True, default=False)
    input_term: str = eqx.field(static=True, default="ce")
    likelihood: str = eqx.field(static=True, default="plugin")

    def __check_init__(self):
        if self.ce_reduction not in CE_REDUCTIONS:
            raise ValueError(f"ce_reduction must be one of {CE_REDUCTIONS}, got {self.ce_reduction!r}")
        if self.input_term not in INPUT_TERMS:
            raise ValueError(f"input_term must be one of {INPUT_TERMS}, got {self.input_term!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        for name in ("tau", "tau_in", "kappa"):
            v = getattr(self, name)
            if _is_number(v) and not v > 0:
                raise ValueError(f"{name} must be > 0, got {v}")

    # --- the pieces -------------------------------------------------------------
    def _decode(self, z, bank_mu, bank_log_sigma, tau) -> Array:
        """Logits of a bank's tokens: -KL(q || bank_v)/tau (plug-in) or log E_q[exp l_v(z)]
        (expected), (..., V)."""
        mu, log_sigma = z
        decode = kl_logits if self.likelihood == "plugin" else expected_likelihood_logits
        return decode(mu, jnp.exp(log_sigma), bank_mu, jnp.exp(bank_log_sigma), tau)

    def _cross_entropy(self, z, bank_mu, bank_log_sigma, tau, tokens) -> Array:
        """Per-position CE of tokens under a bank: of the decode (plug-in), or the Jensen
        bound on the expected CE E_q[-log p(token | z)] (expected), (...,)."""
        if self.likelihood == "plugin":
            return optax.softmax_cross_entropy_with_integer_labels(
                self._decode(z, bank_mu, bank_log_sigma, tau), tokens)
        mu, log_sigma = z
        return expected_cross_entropy(mu, jnp.exp(log_sigma), bank_mu, jnp.exp(bank_log_sigma),
                                      tau, tokens)

    def logits(self, z, priors: Priors) -> Array:
        """Next-token logits through pi, (B, N, V): the prediction is their softmax."""
        return self._decode(z, *output_bank(priors), self.tau)

    def input_logits(self, z, priors: Priors) -> Array:
        """Own-token logits through rho, (B, N, V)."""
        return self._decode(z, *input_bank(priors), self.tau_in)

    def ce_per_position(self, z, priors: Priors, targets) -> Array:
        return self._cross_entropy(z, *output_bank(priors), self.tau, targets)

    def reduce_ce(self, ce_bn: Array) -> Array:
        total = jnp.sum(ce_bn)
        if self.ce_reduction == "sum_over_BN":
            return total / ce_bn.size
        return total

    def self_kl(self, z, priors: Priors) -> Array:
        mu, log_sigma = z
        return jnp.sum(kl_log_sigma(mu, log_sigma, *position_prior(priors)))

    def alignment(self, z, priors: Priors) -> Array:
        mu, log_sigma = z
        kl_ij = self.transport.pairwise_kl(mu, log_sigma, priors.phi)  # (B, N, N)
        N = kl_ij.shape[-1]
        causal = jnp.tril(jnp.ones((N, N), bool))
        beta = jax.nn.softmax(-kl_ij / self.kappa, axis=-1, where=causal)
        return jnp.sum(jnp.where(causal, beta * kl_ij, 0.0))

    def _held(self, z, bank_mu, bank_log_sigma, tokens, tau) -> Array:
        """sum over positions of CE(decode(q_bi), tokens_bi) or KL(q_bi || bank[tokens_bi])."""
        mu, log_sigma = z
        if self.input_term == "prior":
            return jnp.sum(kl_log_sigma(mu, log_sigma, bank_mu[tokens], bank_log_sigma[tokens]))
        return jnp.sum(self._cross_entropy(z, bank_mu, bank_log_sigma, tau, tokens))

    def input_ce(self, z, priors: Priors, tokens) -> Array:
        """The [input] term, unweighted. ``input_term="ce"``: sum_bi CE(decode_rho(q_bi), x_bi),
        how well each belief explains its own token; ``"prior"``: sum_bi KL(q_bi || rho_{x_bi}),
        the input token's prior on its position's belief. With lag banks, the same for each
        lag l = 1..L-1: the belief at i holds x_{i-l} through bank l (positions i >= l).
        ``"product"``: sum_bi KL(q_bi || r_bi), r_bi the normalised product of the priors of
        x_i, x_{i-1}, ..., x_{i-L+1} (:meth:`context_prior`)."""
        if self.input_term == "product":
            mu, log_sigma = z
            return jnp.sum(kl_log_sigma(mu, log_sigma, *self.context_prior(priors, tokens)))
        total = self._held(z, *input_bank(priors), tokens, self.tau_in)
        if priors.lag_mu is not None:
            lag_log_sigma = _log_sigma(priors.lag_log_sigma, priors.lag_mu)
            for lag in range(1, priors.lag_mu.shape[0] + 1):
                if lag >= tokens.shape[-1]:
                    break
                later = jax.tree.map(lambda a: a[..., lag:, :], z)
                total = total + self._held(later, priors.lag_mu[lag - 1],
                                           lag_log_sigma[lag - 1], tokens[..., :-lag],
                                           self.tau_in)
        return total

    @staticmethod
    def context_prior(priors: Priors, tokens):
        """(mean, log_sigma) of r_bi = N(m, s^2), the normalised product of the Gaussians
        rho_{x_bi} and, for each lag l = 1..L-1 with i >= l, bank_l[x_{b,i-l}]:

            1/s^2 = sum_l 1/s_l^2,    m = s^2 sum_l m_l / s_l^2   (per coordinate),

        each (B, N, K). A product of experts that is a distribution: one prior per belief
        (the "prior" form's sum of KLs to L priors also pays -log of the product's
        normaliser, which rewards banks that agree and so forgets the inputs)."""
        mu, log_sigma = input_bank(priors)
        precision = jnp.exp(-2.0 * log_sigma[tokens])
        weighted = precision * mu[tokens]
        if priors.lag_mu is not None:
            lag_log_sigma = _log_sigma(priors.lag_log_sigma, priors.lag_mu)
            N = tokens.shape[-1]
            for lag in range(1, min(priors.lag_mu.shape[0] + 1, N)):
                earlier = jnp.roll(tokens, lag, axis=-1)  # x_{i-lag}; wrapped for i < lag
                present = (jnp.arange(N) >= lag)[:, None]
                p = jnp.where(present, jnp.exp(-2.0 * lag_log_sigma[lag - 1][earlier]), 0.0)
                precision = precision + p
                weighted = weighted + p * priors.lag_mu[lag - 1][earlier]
        return weighted / precision, -0.5 * jnp.log(precision)

    def context_ce(self, z, priors: Priors, tokens) -> Array:
        """The [obs] term at inference under ``observe_context``: every position but the
        last explains its next token, which is an input (y_i = x_{i+1})."""
        head = jax.tree.map(lambda a: a[..., :-1, :], z)
        return self.reduce_ce(self.ce_per_position(head, priors, tokens[..., 1:]))

    def terms(self, z, priors: Priors, tokens, targets=None) -> dict:
        """Unweighted terms: self-KL, alignment, input CE and the reduced CE (with targets;
        at inference under ``observe_context``, of the known next tokens)."""
        out = {"self_kl": self.self_kl(z, priors), "align": self.alignment(z, priors),
               "input": self.input_ce(z, priors, tokens)}
        if targets is not None:
            out["ce"] = self.reduce_ce(self.ce_per_position(z, priors, targets))
        elif self.observe_context and tokens.shape[-1] > 1:
            out["ce"] = self.context_ce(z, priors, tokens)
        return out

    def weighted(self, terms: dict) -> Array:
        total = (self.alpha * terms["self_kl"] + self.lambda_beta * terms["align"]
                 + self.lambda_in * terms["input"])
        if "ce" in terms:
            total = total + self.lambda_obs * terms["ce"]
        return total

    def __call__(self, z, priors: Priors, tokens, targets=None) -> Array:
        return self.weighted(self.terms(z, priors, tokens, targets))
