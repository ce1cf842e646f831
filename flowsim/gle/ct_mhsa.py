r"""Seed 004's cortico-thalamic multi-head self-attention (CT-MHSA) as a diffrax ODE.

R regions (default 8, a diamond 0 → {1,2} → {3,4} → {5,6} → 7, every edge
in both directions; ``diamond_mask``). Region i of one sample holds a
membrane ``u_i ∈ R^d``, a fast memory per head ``M_{i,h} ∈ R^{dh×dh}`` and a
buffer ``B_i`` of its output one micro-step ago. With ``x_i`` its input,

    q_h = ReLU(x W_Q,h),  k_h = ReLU(x W_K,h),  v_h = x W_V,h,  o_h = M_h q_h
    a_i = f_i(x_i, M_i; θ_i) = LayerNorm(Σ_h W_Y,h o_h + x_i)          (the region's map)
    τ_m u̇_i = −u_i + a_i,   y_i = ŭ_i = u_i + τ_r u̇_i                 (GLE lookahead)
    τ_M Ṁ_{i,h} = v_h k_hᵀ − M_{i,h}                                     (delta rule)
    dt · Ḃ_i = y_i − B_i                                                  (one-step delay)
    x_i = Σ_j (C ⊙ mask)_ij B_j  (+ E[c] at region 0),  logits = W_out y_{R−1} + b_out

One Euler step of size dt is then the delta rule M ← M + λ(v kᵀ − M) with
λ = dt/τ_M (``memory_lambda``) and sets B_j = y_j exactly: a delay of one
micro-step that is still an ODE. The character c changes every
``micro_steps`` Euler steps. Each sample starts from zero state.

The CE of step n is CE(logits_n, next character); ``loss_at="last"`` counts
only the last micro-step of each character (the prediction), ``"all"`` every
micro-step. It is accumulated in the state, so one solve (SaveAt t1) gives
the loss; :func:`bptt_loss` is its mean, differentiated by jax.grad through
diffrax's RecursiveCheckpointAdjoint with one checkpoint per step (plain
BPTT: memory linear in the sequence). The GLE solve is in
:mod:`flowsim.gle.ct_mhsa_gle`.

Parameters (a dict): ``E`` (V, d), ``C`` (R, R) (non-edges are exactly zero
and stay so: the mask is applied in the forward map and to every update),
``regions`` {W_Q, W_K, W_V: (R, d, H, dh), W_Y: (R, H, dh, d), ln_g, ln_b:
(R, d)}, ``W_out`` (V, d), ``b_out`` (V,).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

DIAMOND_GROUPS = ((0,), (1, 2), (3, 4), (5, 6), (7,))
LOSS_AT = ("last", "all")
MEMORY_ERRORS = ("prospective", "lag", "none")


def diamond_mask(groups=DIAMOND_GROUPS) -> tuple:
    """``mask[i][j]`` is True where region j feeds region i: consecutive groups fully
    connected, in both directions, no self-edges."""
    n = 1 + max(max(g) for g in groups)
    mask = np.zeros((n, n), bool)
    for lower, upper in itertools.pairwise(groups):
        for i in lower:
            for j in upper:
                mask[i, j] = mask[j, i] = True
    return tuple(tuple(bool(v) for v in row) for row in mask)


@dataclasses.dataclass(frozen=True)
class CTMHSA:
    """The model's static structure (hashable: a jit static argument)."""

    vocab: int
    d_model: int = 64
    heads: int = 4
    micro_steps: int = 5
    dt: float = 1.0
    tau_m: float = 2.0
    tau_r: float = 2.0
    memory_lambda: float = 0.9
    beta: float = 1.0
    loss_at: str = "last"
    memory_error: str = "prospective"
    ln_eps: float = 1.0
    mask: tuple = diamond_mask()

    def __post_init__(self):
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of heads ({self.heads})")
        if not 0.0 < self.memory_lambda <= 1.0:
            raise ValueError(f"memory_lambda must be in (0, 1], got {self.memory_lambda}")
        if not 0.0 < self.dt <= min(self.tau_m, self.tau_r):
            raise ValueError(f"need 0 < dt <= min(tau_m, tau_r) (stable Euler), got dt={self.dt}, "
                             f"tau_m={self.tau_m}, tau_r={self.tau_r}")
        if self.loss_at not in LOSS_AT:
            raise ValueError(f"loss_at must be one of {LOSS_AT}, got {self.loss_at!r}")
        if self.memory_error not in MEMORY_ERRORS:
            raise ValueError(f"memory_error must be one of {MEMORY_ERRORS}, got {self.memory_error!r}")
        if self.micro_steps < 1 or self.vocab < 2:
            raise ValueError("need micro_steps >= 1 and vocab >= 2")

    @property
    def regions(self) -> int:
        return len(self.mask)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    @property
    def tau_M(self) -> float:
        """The memory's time constant: λ = dt/τ_M per micro-step."""
        return self.dt / self.memory_lambda

    def mask_array(self, dtype=jnp.float32):
        return jnp.asarray(np.asarray(self.mask, bool), dtype)

    def n_steps(self, seq_len: int) -> int:
        return seq_len * self.micro_steps

    def n_weighted(self, seq_len: int) -> int:
        """Micro-steps per sequence whose CE enters the loss."""
        return seq_len * (self.micro_steps if self.loss_at == "all" else 1)


# --- parameters -------------------------------------------------------------------------

def init_params(model: CTMHSA, key, dtype=jnp.float32, connectome_scale: float = 0.5) -> dict:
    """Gaussian weights at 1/√fan-in, LayerNorm at identity, C = scale · mask/√(in-degree).

    At ``ln_eps`` 1 and scale 0.5 the forward dynamics contract (a tangent of the
    Euler map shrinks by a factor 0.88 per micro-step at d 32, geometric mean over
    micro-steps 100–300 of a random text); at scale 1 they are chaotic (it grows by
    1.10), and so do BPTT's gradients and, faster, GLE's errors."""
    R, d, H, dh, V = model.regions, model.d_model, model.heads, model.head_dim, model.vocab
    k = jax.random.split(key, 6)
    normal = lambda key, shape, scale: (scale * jax.random.normal(key, shape)).astype(dtype)
    mask = np.asarray(model.mask, bool)
    degree = np.maximum(mask.sum(axis=1, keepdims=True), 1)
    return {
        "E": normal(k[0], (V, d), 1.0),
        "C": jnp.asarray(connectome_scale * mask / np.sqrt(degree), dtype),
        "regions": {
            "W_Q": normal(k[1], (R, d, H, dh), 1 / math.sqrt(d)),
            "W_K": normal(k[2], (R, d, H, dh), 1 / math.sqrt(d)),
            "W_V": normal(k[3], (R, d, H, dh), 1 / math.sqrt(d)),
            "W_Y": normal(k[4], (R, H, dh, d), 1 / math.sqrt(d)),
            "ln_g": jnp.ones((R, d), dtype),
            "ln_b": jnp.zeros((R, d), dtype),
        },
        "W_out": normal(k[5], (V, d), 1 / math.sqrt(d)),
        "b_out": jnp.zeros((V,), dtype),
    }


def masked_connectome(model: CTMHSA, params):
    return params["C"] * model.mask_array(params["C"].dtype)


def non_edges_zero(model: CTMHSA, params) -> bool:
    """Every non-edge of C is exactly 0.0."""
    off = ~np.asarray(model.mask, bool)
    return bool(np.all(np.asarray(params["C"])[off] == 0.0))


# --- one region ---------------------------------------------------------------------------

def layer_norm(z, gain, bias, eps):
    mean = jnp.mean(z)
    centred = z - mean
    return gain * centred * jax.lax.rsqrt(jnp.mean(centred**2) + eps) + bias


def region_map(p, x, M, eps=1e-5):
    """a = LayerNorm(Σ_h W_Y,h M_h ReLU(x W_Q,h) + x) for one region (no R axis)."""
    q = jax.nn.relu(jnp.einsum("d,dhk->hk", x, p["W_Q"]))
    o = jnp.einsum("hvk,hk->hv", M, q)
    z = jnp.einsum("hv,hvd->d", o, p["W_Y"]) + x
    return layer_norm(z, p["ln_g"], p["ln_b"], eps)


def memory_target(p, x):
    """v_h k_hᵀ per head, (H, dh, dh): where the delta rule drives M."""
    k = jax.nn.relu(jnp.einsum("d,dhk->hk", x, p["W_K"]))
    v = jnp.einsum("d,dhk->hk", x, p["W_V"])
    return jnp.einsum("hv,hk->hvk", v, k)


# --- one sample, one micro-step ----------------------------------------------------------

def region_inputs(model: CTMHSA, params, B, char):
    """x_i = Σ_j (C ⊙ mask)_ij B_j, plus the embedding of ``char`` at region 0."""
    x = masked_connectome(model, params) @ B
    return x.at[0].add(params["E"][char])


def forward_terms(model: CTMHSA, params, s, char):
    """d(u, B, M)/dt of one sample and what the readout needs: (ds, x, y, logits)."""
    x = region_inputs(model, params, s["B"], char)
    a = jax.vmap(region_map, (0, 0, 0, None))(params["regions"], x, s["M"], model.ln_eps)
    P = jax.vmap(memory_target)(params["regions"], x)
    du = (a - s["u"]) / model.tau_m
    y = s["u"] + model.tau_r * du
    logits = params["W_out"] @ y[-1] + params["b_out"]
    ds = {"u": du, "B": (y - s["B"]) / model.dt, "M": (P - s["M"]) / model.tau_M}
    return ds, x, y, logits


def clock(model: CTMHSA, t, seq_len: int):
    """At solver time t: (character index, is-last-micro-step, loss weight of this step)."""
    n = jnp.round(t / model.dt).astype(jnp.int32)
    j = jnp.minimum(n // model.micro_steps, seq_len - 1)
    last = (n - j * model.micro_steps) == model.micro_steps - 1
    weight = jnp.ones((), bool) if model.loss_at == "all" else last
    return j, last, weight


def readout_records(model: CTMHSA, logits, target, last, weight):
    """d/dt of the accumulated (weighted CE, CE at last micro-steps, hits at last micro-steps).

    Divided by dt so that one Euler step adds the value itself."""
    ce = jax.nn.logsumexp(logits) - logits[target]
    hit = (jnp.argmax(logits) == target).astype(logits.dtype)
    zero = jnp.zeros((), logits.dtype)
    return {"ce": jnp.where(weight, ce, zero) / model.dt,
            "ce_last": jnp.where(last, ce, zero) / model.dt,
            "hit_last": jnp.where(last, hit, zero) / model.dt}


def zero_state(model: CTMHSA, batch: int, dtype, errors: bool = False) -> dict:
    """The batched initial state (everything 0); ``errors`` adds GLE's v, G, Ep."""
    R, d, H, dh = model.regions, model.d_model, model.heads, model.head_dim
    z = lambda *shape: jnp.zeros((batch, *shape), dtype)
    s = {"u": z(R, d), "B": z(R, d), "M": z(R, H, dh, dh), "ce": z(), "ce_last": z(),
         "hit_last": z()}
    if errors:
        s.update(v=z(R, d), G=z(R, d), Ep=z(R, H, dh, dh))
    return s


# --- the forward solve and BPTT -------------------------------------------------------------

def forward_field(model: CTMHSA):
    def field(t, state, args):
        params, chars, targets = args
        j, last, weight = clock(model, t, chars.shape[1])

        def one(s, cs, ts):
            ds, _, _, logits = forward_terms(model, params, s, cs[j])
            return ds | readout_records(model, logits, ts[j], last, weight)

        return jax.vmap(one)(state, chars, targets)

    return field


def solve(model: CTMHSA, field, y0, args, seq_len: int, adjoint=None):
    """One Euler solve over the sequence (``seq_len × micro_steps`` steps of dt): the final state
    and the number of steps taken."""
    n = model.n_steps(seq_len)
    dtype = jax.tree.leaves(y0)[0].dtype

    # Solver time s = t/dt counts micro-steps: integer times, exact in float32 too, in
    # the state's dtype (diffrax would promote a float32 state to a float64 time).
    def in_micro_steps(s, y, args):
        return jax.tree.map(lambda v: model.dt * v, field(s * model.dt, y, args))

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(in_micro_steps), diffrax.Euler(), t0=jnp.zeros((), dtype),
        t1=jnp.asarray(n, dtype), dt0=jnp.ones((), dtype), y0=y0, args=args,
        saveat=diffrax.SaveAt(t1=True), max_steps=n,
        adjoint=adjoint if adjoint is not None else diffrax.RecursiveCheckpointAdjoint())
    return jax.tree.map(lambda leaf: leaf[-1], sol.ys), sol.stats["num_steps"]


def run_forward(model: CTMHSA, params, chars, targets):
    """Forward only: per-sample final state (``ce``, ``ce_last``, ``hit_last`` sums)."""
    dtype = params["W_out"].dtype
    y0 = zero_state(model, chars.shape[0], dtype)
    final, _ = solve(model, forward_field(model), y0, (params, chars, targets), chars.shape[1])
    return final


def bptt_loss(model: CTMHSA, params, chars, targets):
    """Mean CE over the batch and the weighted micro-steps (``loss_at``): BPTT's objective."""
    dtype = params["W_out"].dtype
    batch, seq_len = chars.shape
    y0 = zero_state(model, batch, dtype)
    n = model.n_steps(seq_len)
    final, _ = solve(model, forward_field(model), y0, (params, chars, targets), seq_len,
                     adjoint=diffrax.RecursiveCheckpointAdjoint(checkpoints=n))
    loss = jnp.sum(final["ce"]) / (batch * model.n_weighted(seq_len))
    aux = {"ce_last": jnp.sum(final["ce_last"]) / (batch * seq_len),
           "acc_last": jnp.sum(final["hit_last"]) / (batch * seq_len)}
    return loss, aux


def bptt_gradient(model: CTMHSA, params, chars, targets):
    """(grads, metrics): jax.grad of :func:`bptt_loss`; C's gradient is masked."""
    (loss, aux), grads = jax.value_and_grad(bptt_loss, argnums=1, has_aux=True)(
        model, params, chars, targets)
    grads["C"] = grads["C"] * model.mask_array(grads["C"].dtype)
    return grads, {"loss": loss} | aux


def evaluate(model: CTMHSA, params, chars, targets):
    """Validation metrics: CE and accuracy of the prediction (last micro-step), and the
    weighted CE (the training objective)."""
    batch, seq_len = chars.shape
    final = run_forward(model, params, chars, targets)
    return {"ce": jnp.sum(final["ce_last"]) / (batch * seq_len),
            "acc": jnp.sum(final["hit_last"]) / (batch * seq_len),
            "loss": jnp.sum(final["ce"]) / (batch * model.n_weighted(seq_len))}


__all__ = [
    "CTMHSA",
    "bptt_gradient",
    "bptt_loss",
    "clock",
    "diamond_mask",
    "evaluate",
    "forward_terms",
    "init_params",
    "masked_connectome",
    "memory_target",
    "non_edges_zero",
    "region_map",
    "run_forward",
    "solve",
    "zero_state",
]
