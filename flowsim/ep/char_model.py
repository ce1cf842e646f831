r"""A weight-tied equilibrium character model (seed 002's looped block).

A window of c characters is embedded, e_i = E[x_i] + P_i ∈ R^{d_e}, and
projected once into the drive u(x) = U·vec(e) + b ∈ R^h. The state z ∈ R^n
relaxes under

    dz/dt = F(z) = −z + block_θ(z, x),    block_θ(z, x) = W_outᵀ tanh(W z + u(x)) + a,

for T1 explicit-Euler steps of dt (the deployed computation, ``flowsim.relax``),
and the prediction of the next character is softmax(V z_T + c).

With ``tied=True`` (the default) W_out = W, and F is a gradient field,

    F = −∇_z E,   E(z) = ½‖z‖² − aᵀz − Σ_j log cosh((W z + u)_j),

so F_z = −I + Wᵀ diag(1 − tanh²) W is symmetric: equilibrium propagation is
then a consistent estimator of the equilibrium gradient (its (z^β − z*)/β
tends to F_z^{-1} L_z = F_z^{-T} L_z). With ``tied=False`` W_out is its own
matrix and EP is biased, which is what the seed's "transpose adjoint" measures.

Local contraction of the deployed map: ρ(Φ_z) = ρ(I + dt F_z) =
max |1 − dt + dt λ(W_outᵀ D W)|; the relaxation contracts while ρ < 1.

Optional light attention (``attention = d_a > 0``): one head whose query comes
from the state and whose keys and values come from the context,

    q = Q z,  s_i = (K e_i)·q / √d_a,  w = softmax(s),  att(z, x) = Σ_i w_i A e_i ∈ R^h,
    block_θ(z, x) = W_outᵀ tanh(W z + u(x) + att(z, x)) + a,

so the state chooses which characters of the window drive it. F_z gains
W_outᵀ D ∂att/∂z and is no longer symmetric: with attention EP is biased,
tied or not, and only the oracle and BPTT/RTRL/RBP are exact.

Everything is holomorphic in z (tanh, exp, a log-sum-exp shifted by a
constant), so the same functions serve holomorphic EP's complex nudges.
States are batched: z has shape (B, n), x (B, c) ids, y (B,) ids; the loss is
the batch mean of the cross-entropy in nats.
"""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes of the model; every one must be a positive int (checked)."""

    vocab: int = 65
    context: int = 32
    embed: int = 16
    state: int = 128
    hidden: int = 128
    tied: bool = True
    init_gain: float = 0.5
    attention: int = 0  # d_a of the light attention over the context; 0: none

    def __post_init__(self):
        for name in ("vocab", "context", "embed", "state", "hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{name} must be a positive int, got {value!r}")
        a = self.attention
        if isinstance(a, bool) or not isinstance(a, int) or a < 0:
            raise ValueError(f"model.attention must be an int >= 0 (0: none), got {a!r}")
        if not self.init_gain > 0:
            raise ValueError(f"model.init_gain must be > 0, got {self.init_gain!r}")


class CharEquilibrium(eqx.Module):
    """The parameters θ (every leaf an array; the config is static)."""

    embed: jax.Array  # (vocab, d_e)
    pos: jax.Array  # (c, d_e)
    U: jax.Array  # (h, c·d_e)
    b: jax.Array  # (h,)
    W: jax.Array  # (h, n)
    W_out: jax.Array | None  # (h, n) or None when tied
    a: jax.Array  # (n,)
    V: jax.Array  # (vocab, n)
    c: jax.Array  # (vocab,)
    Q: jax.Array | None  # (d_a, n) attention query, or None
    K: jax.Array | None  # (d_a, d_e) attention keys
    A: jax.Array | None  # (h, d_e) attention values
    config: ModelConfig = eqx.field(static=True)

    def drive(self, x):
        """The input's encoding: u(x) = U·vec(E[x] + P) + b, shape (..., h).

        With attention, the tuple (u, keys K e_i (..., c, d_a), values A e_i (..., c, h)).
        """
        e = self.embed[x] + self.pos  # (..., c, d_e)
        flat = e.reshape(e.shape[:-2] + (-1,))
        u = flat @ self.U.T + self.b
        if self.Q is None:
            return u
        return u, e @ self.K.T, e @ self.A.T

    def block(self, z, x):
        """block_θ(z, x) = W_outᵀ tanh(W z + u(x) [+ att(z, x)]) + a."""
        return self.block_of_drive(z, self.drive(x))

    def block_of_drive(self, z, u):
        """W_outᵀ tanh(W z + u [+ att]) + a, for a precomputed encoding (:meth:`drive`)."""
        if self.Q is not None:
            u, keys, values = u
            u = u.astype(z.dtype) + self.attend(z, keys, values)
        pre = z @ self.W.T.astype(z.dtype) + u.astype(z.dtype)
        out = self.W if self.W_out is None else self.W_out
        return jnp.tanh(pre) @ out.astype(z.dtype) + self.a.astype(z.dtype)

    def attend(self, z, keys, values):
        """att = Σ_i softmax_i((K e_i)·(Q z)/√d_a) A e_i, holomorphic in z."""
        q = z @ self.Q.T.astype(z.dtype)  # (..., d_a)
        scores = jnp.einsum("...ca,...a->...c", keys.astype(z.dtype), q) / self.Q.shape[0] ** 0.5
        shift = jax.lax.stop_gradient(jnp.max(jnp.real(scores), axis=-1, keepdims=True))
        weights = jnp.exp(scores - shift)
        weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
        return jnp.einsum("...c,...ch->...h", weights, values.astype(z.dtype))

    def logits(self, z):
        return z @ self.V.T.astype(z.dtype) + self.c.astype(z.dtype)


def init(config: ModelConfig, key, dtype=jnp.float32) -> CharEquilibrium:
    """Random parameters: N(0, g²/fan_in) weights (g = ``init_gain`` for W), zero biases."""
    return _init(config, key, jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init(config: ModelConfig, key, dtype) -> CharEquilibrium:
    k = jax.random.split(key, 6)
    n, h, d = config.state, config.hidden, config.embed
    cd = config.context * d

    def normal(key, shape, scale):
        return (scale * jax.random.normal(key, shape)).astype(dtype)

    g = config.init_gain
    # Attention draws from its own key, so the other leaves do not depend on it.
    ka = jax.random.split(jax.random.fold_in(key, 1), 3)
    d_a = config.attention
    return CharEquilibrium(
        embed=normal(k[0], (config.vocab, d), 1.0),
        pos=normal(k[1], (config.context, d), 0.1),
        U=normal(k[2], (h, cd), 1.0 / cd**0.5),
        b=jnp.zeros((h,), dtype),
        W=normal(k[3], (h, n), g / n**0.5),
        W_out=None if config.tied else normal(k[4], (h, n), g / h**0.5),
        a=jnp.zeros((n,), dtype),
        V=normal(k[5], (config.vocab, n), 1.0 / n**0.5),
        c=jnp.zeros((config.vocab,), dtype),
        Q=normal(ka[0], (d_a, n), 1.0 / n**0.5) if d_a else None,
        K=normal(ka[1], (d_a, d), 1.0 / d**0.5) if d_a else None,
        A=normal(ka[2], (h, d), 1.0 / d**0.5) if d_a else None,
        config=config,
    )


def field(z, params: CharEquilibrium, x):
    """F(z) = −z + block_θ(z, x)."""
    return params.block(z, x) - z


def encode(params: CharEquilibrium, x):
    """The input's whole effect on F: u(x) (and the attention's keys and values)."""
    return params.drive(x)


def core_field(z, params: CharEquilibrium, u):
    """F(z) = −z + W_outᵀ tanh(W z + u) + a, with u = :func:`encode` (params, x)."""
    return params.block_of_drive(z, u) - z


def cross_entropy(z, params: CharEquilibrium, y):
    """Mean over the batch of −log softmax(V z + c)_y, in nats (holomorphic in z)."""
    logits = params.logits(z)
    shift = jax.lax.stop_gradient(jnp.max(jnp.real(logits), axis=-1, keepdims=True))
    lse = jnp.log(jnp.sum(jnp.exp(logits - shift), axis=-1)) + shift[..., 0]
    picked = jnp.take_along_axis(logits, y[..., None], axis=-1)[..., 0]
    return jnp.mean(lse - picked)


def initial_state(params: CharEquilibrium, x, dtype=None):
    """z_0 = 0, shape (batch, n)."""
    dtype = params.V.dtype if dtype is None else dtype
    return jnp.zeros(x.shape[:-1] + (params.config.state,), dtype)


__all__ = ["ModelConfig", "CharEquilibrium", "init", "field", "encode", "core_field",
           "cross_entropy", "initial_state"]
