r"""GLE learning for the CT-MHSA model (:mod:`flowsim.gle.ct_mhsa`): errors in the same ODE.

Every error is local in space and time; each Euler step of the one diffrax
solve computes, for each sample (vmap) and each region i:

* output error at the readout region (R−1), with w_n the step's loss weight:
  δ = w_n β (onehot(next char) − softmax(logits)),  ε_{R−1} += W_outᵀ δ;
* error from the consumers: ε_i += Σ_k (C ⊙ mask)_ki G_k, where G_k is the
  error at consumer k's input of the previous micro-step (a buffer,
  dt·Ġ = g − G, delayed like the forward edge);
* error neuron: τ_r v̇_i = −v_i + ε_i,  ĕ_i = v_i + τ_m v̇_i;
* through the region's map a_i = f_i(x_i, M_i; θ_i), by its local VJP
  (jax.vjp of f_i alone: this is how the error passes LayerNorm and the ReLUs,
  generalising φ'(ŭ) ⊙ Wᵀĕ): (∂f_i/∂x, ∂f_i/∂M, ∂f_i/∂θ)ᵀ ĕ_i;
* memory, a pure-lag GLE unit (τ_M Ṁ = v kᵀ − M, no lookahead):
  e_M = (∂f_i/∂M)ᵀ ĕ_i, prospective ĕ_M = e_M + τ_M ė_M with
  ė_M = (e_M − e_M^prev)/dt (e_M^prev kept in the state, dt·Ė = e_M − E);
  k and v, hence W_K, W_V and x, receive (∂(v kᵀ)/∂(x, θ))ᵀ ĕ_M
  (for one head: ∂/∂v = ĕ_M k, ∂/∂k = ĕ_Mᵀ v, then through ReLU and the
  projections);
* error at the region's input g_i = (∂f_i/∂x)ᵀ ĕ_i + (∂(v kᵀ)/∂x)ᵀ ĕ_M.

Slow-weight update densities (summed over the batch, accumulated over the
sequence as part of the state, dA/dt = Σ_b density): regions
(∂f_i/∂θ_i)ᵀ ĕ_i + (∂(v kᵀ)/∂θ_i)ᵀ ĕ_M; readout δ y_{R−1}ᵀ and δ;
embedding E[c] += g_0; connectome (g_i · B_j) ⊙ mask. The fast memory learns by
its own delta rule (the forward dynamics). Errors do not act on the forward
dynamics (γ = 0), so β only scales the updates. For a static input at the
steady state every density equals −β ∂CE/∂θ of the steady-state map, M* = v kᵀ
(tests/test_gle_ct_mhsa.py). Training hands optax −A/(β dt B n_w), with n_w
the weighted micro-steps per sequence: the same normalisation as the BPTT loss.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from . import ct_mhsa as cm


def gle_terms(model: cm.CTMHSA, params, s, char, target, last, weight):
    """One sample, one micro-step: (d state/dt, update density shaped like ``params``)."""
    mask = model.mask_array(params["C"].dtype)
    C = params["C"] * mask
    x = cm.region_inputs(model, params, s["B"], char)
    amap = jax.vmap(cm.region_map, (0, 0, 0, None))
    a, vjp_a = jax.vjp(lambda p, x, M: amap(p, x, M, model.ln_eps), params["regions"], x, s["M"])
    P, vjp_P = jax.vjp(jax.vmap(cm.memory_target), params["regions"], x)
    du = (a - s["u"]) / model.tau_m
    y = s["u"] + model.tau_r * du
    logits = params["W_out"] @ y[-1] + params["b_out"]
    onehot = jax.nn.one_hot(target, model.vocab, dtype=logits.dtype)
    delta = jnp.where(weight, model.beta, 0.0).astype(logits.dtype) * (
        onehot - jax.nn.softmax(logits))
    eps = C.T @ s["G"]
    eps = eps.at[-1].add(params["W_out"].T @ delta)
    dv = (eps - s["v"]) / model.tau_r
    e_breve = s["v"] + model.tau_m * dv
    g_reg_a, g_x_a, e_M = vjp_a(e_breve)
    if model.memory_error == "prospective":  # GLE's lookahead for a pure-lag unit
        e_M_breve = e_M + model.tau_M * (e_M - s["Ep"]) / model.dt
    elif model.memory_error == "lag":  # the steady-state error, no lookahead
        e_M_breve = e_M
    else:  # "none": k and v learn nothing through the memory
        e_M_breve = jnp.zeros_like(e_M)
    g_reg_P, g_x_P = vjp_P(e_M_breve)
    g_x = g_x_a + g_x_P
    density = {
        "E": jnp.zeros_like(params["E"]).at[char].set(g_x[0].astype(params["E"].dtype)),
        "C": (g_x @ s["B"].T) * mask,
        "regions": jax.tree.map(jnp.add, g_reg_a, g_reg_P),
        "W_out": jnp.outer(delta, y[-1]),
        "b_out": delta,
    }
    ds = {"u": du, "B": (y - s["B"]) / model.dt, "M": (P - s["M"]) / model.tau_M,
          "v": dv, "G": (g_x - s["G"]) / model.dt, "Ep": (e_M - s["Ep"]) / model.dt}
    return ds | cm.readout_records(model, logits, target, last, weight), density


def gle_field(model: cm.CTMHSA):
    def field(t, state, args):
        params, chars, targets = args
        j, last, weight = cm.clock(model, t, chars.shape[1])
        one = lambda s, cs, ts: gle_terms(model, params, s, cs[j], ts[j], last, weight)
        ds, density = jax.vmap(one)(state["s"], chars, targets)
        return {"s": ds, "acc": jax.tree.map(lambda g: jnp.sum(g, axis=0), density)}

    return field


def run_gle(model: cm.CTMHSA, params, chars, targets):
    """One online solve: (accumulated updates A ≈ Σ_n dt Σ_b density_n, final per-sample state)."""
    dtype = params["W_out"].dtype
    y0 = {"s": cm.zero_state(model, chars.shape[0], dtype, errors=True),
          "acc": jax.tree.map(jnp.zeros_like, params)}
    final, _ = cm.solve(model, gle_field(model), y0, (params, chars, targets), chars.shape[1])
    return final["acc"], final["s"]


def gle_gradient(model: cm.CTMHSA, params, chars, targets):
    """(−A/(β dt B n_w), metrics): GLE's update as a gradient for optax (C masked)."""
    batch, seq_len = chars.shape
    acc, final = run_gle(model, params, chars, targets)
    scale = -1.0 / (model.beta * model.dt * batch * model.n_weighted(seq_len))
    grads = jax.tree.map(lambda a: a * scale, acc)
    grads["C"] = grads["C"] * model.mask_array(grads["C"].dtype)
    metrics = {"loss": jnp.sum(final["ce"]) / (batch * model.n_weighted(seq_len)),
               "ce_last": jnp.sum(final["ce_last"]) / (batch * seq_len),
               "acc_last": jnp.sum(final["hit_last"]) / (batch * seq_len)}
    return grads, metrics


# --- training -------------------------------------------------------------------------------

def optimizer(lr: float, weight_decay: float = 1e-4, clip: float = 0.0):
    """AdamW (optionally after a global-norm clip): the same for GLE and BPTT."""
    adamw = optax.adamw(lr, weight_decay=weight_decay)
    return optax.chain(optax.clip_by_global_norm(clip), adamw) if clip > 0 else adamw


def make_step(model: cm.CTMHSA, opt, rule: str):
    """A jitted ``step(params, opt_state, chars, targets) -> (params, opt_state, grads, metrics)``.

    ``rule``: "gle" or "bptt". The connectome mask is applied to C's gradient and to
    its optax update (AdamW's decay included), so non-edges stay exactly 0.
    """
    gradient = {"gle": gle_gradient, "bptt": cm.bptt_gradient}[rule]

    @jax.jit
    def step(params, opt_state, chars, targets):
        grads, metrics = gradient(model, params, chars, targets)
        updates, opt_state = opt.update(grads, opt_state, params)
        updates["C"] = updates["C"] * model.mask_array(updates["C"].dtype)
        return optax.apply_updates(params, updates), opt_state, grads, metrics

    return step


@functools.partial(jax.jit, static_argnums=0)
def both_gradients(model: cm.CTMHSA, params, chars, targets):
    """GLE's and BPTT's gradients on one batch (for their cosine)."""
    return gle_gradient(model, params, chars, targets)[0], cm.bptt_gradient(
        model, params, chars, targets)[0]


__all__ = [
    "both_gradients",
    "gle_field",
    "gle_gradient",
    "gle_terms",
    "make_step",
    "optimizer",
    "run_gle",
]
