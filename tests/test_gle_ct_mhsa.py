"""Seed 004's CT-MHSA (flowsim.gle.ct_mhsa, ct_mhsa_gle): GLE and BPTT against independent computations.

(i) steady state: GLE's update densities = −β dCE/dθ of the steady-state map, written
    out here on its own (M* = v kᵀ) and differentiated by jax.grad;
(ii) BPTT (diffrax, RecursiveCheckpointAdjoint) = jax.grad of a plain Python loop of
    the same Euler steps, and = central finite differences;
(iii) training keeps every non-edge of C at exactly 0.0; (iv) GLE updates every slow
    weight (the seed prototype's zero updates); (v) float32 end to end.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsim
from flowsim.gle import ct_mhsa as cm
from flowsim.gle import ct_mhsa_gle as cg


def _batch(key, batch, seq_len, vocab):
    k1, k2 = jax.random.split(key)
    return (jax.random.randint(k1, (batch, seq_len), 0, vocab),
            jax.random.randint(k2, (batch, seq_len), 0, vocab))


# --- (i) steady state ---------------------------------------------------------------------

def _steady_ce(params, char, target, eps):
    """CE of the one-region map at its steady state, written independently of the model."""
    p = params["regions"]
    x = params["E"][char]
    q = jax.nn.relu(jnp.einsum("d,dhk->hk", x, p["W_Q"][0]))
    k = jax.nn.relu(jnp.einsum("d,dhk->hk", x, p["W_K"][0]))
    v = jnp.einsum("d,dhk->hk", x, p["W_V"][0])
    o = v * jnp.sum(k * q, axis=1, keepdims=True)          # M* q = v (kᵀ q)
    z = jnp.einsum("hv,hvd->d", o, p["W_Y"][0]) + x
    zc = z - z.mean()
    a = p["ln_g"][0] * zc / jnp.sqrt(jnp.mean(zc**2) + eps) + p["ln_b"][0]
    logits = params["W_out"] @ a + params["b_out"]
    return jax.nn.logsumexp(logits) - logits[target]


@pytest.mark.parametrize("memory_error", ["prospective", "lag"])
def test_steady_state_updates_are_minus_beta_gradient(memory_error):
    beta = 0.7
    model = cm.CTMHSA(vocab=5, d_model=8, heads=2, micro_steps=300, dt=0.5, tau_m=2.0,
                      tau_r=1.5, memory_lambda=0.5, beta=beta, loss_at="all",
                      memory_error=memory_error, ln_eps=1e-3, mask=((False,),))
    params = cm.init_params(model, jax.random.PRNGKey(3), jnp.float64)
    char, target = 2, 4
    chars, targets = jnp.array([[char]]), jnp.array([[target]])
    _, final = jax.jit(lambda p: cg.run_gle(model, p, chars, targets))(params)
    state = jax.tree.map(lambda leaf: leaf[0], final)
    _, density = cg.gle_terms(model, params, state, char, target, True, True)
    exact = jax.grad(_steady_ce)(params, char, target, model.ln_eps)
    for name in ("W_Q", "W_K", "W_V", "W_Y", "ln_g", "ln_b"):
        ref = -beta * exact["regions"][name]
        assert float(jnp.max(jnp.abs(ref))) > 1e-3, name  # a comparison that could fail
        np.testing.assert_allclose(density["regions"][name], ref, atol=1e-8, rtol=0, err_msg=name)
    for name in ("W_out", "b_out", "E"):
        np.testing.assert_allclose(density[name], -beta * exact[name], atol=1e-8, rtol=0,
                                   err_msg=name)
    assert float(jnp.max(jnp.abs(density["E"][char]))) > 1e-3
    assert float(jnp.max(jnp.abs(density["E"].at[char].set(0.0)))) == 0.0


# --- (ii) BPTT ------------------------------------------------------------------------------

SMALL = {"vocab": 6, "d_model": 8, "heads": 2, "micro_steps": 3, "dt": 0.5, "tau_m": 1.0,
         "tau_r": 0.6, "memory_lambda": 0.4}


def _raw_loss(model, params, chars, targets):
    """The same Euler steps as a plain loop (no diffrax), mean CE at the last micro-steps."""
    R, d, H, dh = model.regions, model.d_model, model.heads, model.head_dim
    mask = jnp.asarray(np.asarray(model.mask, float))
    lam, a_m, r = model.memory_lambda, model.dt / model.tau_m, model.tau_r / model.tau_m

    @jax.vmap
    def one(cs, ts):
        u, B, M = jnp.zeros((R, d)), jnp.zeros((R, d)), jnp.zeros((R, H, dh, dh))
        total = 0.0
        for j in range(chars.shape[1]):
            for micro in range(model.micro_steps):
                x = (params["C"] * mask) @ B
                x = x.at[0].add(params["E"][cs[j]])
                a = jax.vmap(cm.region_map, (0, 0, 0, None))(params["regions"], x, M,
                                                               model.ln_eps)
                P = jax.vmap(cm.memory_target)(params["regions"], x)
                y = u + r * (a - u)
                if micro == model.micro_steps - 1:
                    logits = params["W_out"] @ y[-1] + params["b_out"]
                    total = total + jax.nn.logsumexp(logits) - logits[ts[j]]
                u, B, M = u + a_m * (a - u), y, M + lam * (P - M)
        return total / chars.shape[1]

    return jnp.mean(one(chars, targets))


def test_bptt_matches_a_raw_loop_and_finite_differences():
    model = cm.CTMHSA(**SMALL)
    params = cm.init_params(model, jax.random.PRNGKey(0), jnp.float64, connectome_scale=1.0)
    chars, targets = _batch(jax.random.PRNGKey(1), 2, 3, model.vocab)
    grads, metrics = jax.jit(lambda p: cm.bptt_gradient(model, p, chars, targets))(params)
    raw_loss, raw = jax.jit(jax.value_and_grad(lambda p: _raw_loss(model, p, chars, targets)))(
        params)
    np.testing.assert_allclose(metrics["loss"], raw_loss, rtol=1e-12)
    raw["C"] = raw["C"] * model.mask_array(jnp.float64)
    for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(raw)):
        np.testing.assert_allclose(g, r, atol=1e-11, rtol=1e-9, err_msg=jax.tree_util.keystr(path))
    # central differences along a random direction (edges of C only)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    direction = jax.tree.unflatten(tree, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])
    direction["C"] = direction["C"] * model.mask_array(jnp.float64)
    loss = jax.jit(lambda p: cm.bptt_loss(model, p, chars, targets)[0])
    h = 1e-5
    shift = lambda s: jax.tree.map(lambda p, v: p + s * v, params, direction)
    fd = (loss(shift(h)) - loss(shift(-h))) / (2 * h)
    ad = sum(jnp.vdot(g, v) for g, v in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
    np.testing.assert_allclose(ad, fd, rtol=1e-6)


def test_one_euler_step_per_micro_step_and_bad_lambda():
    model = cm.CTMHSA(**SMALL)
    params = cm.init_params(model, jax.random.PRNGKey(0), jnp.float64)
    chars, targets = _batch(jax.random.PRNGKey(1), 2, 4, model.vocab)
    y0 = cm.zero_state(model, 2, jnp.float64)
    _, steps = cm.solve(model, cm.forward_field(model), y0, (params, chars, targets), 4)
    assert int(steps) == 4 * model.micro_steps
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="memory_lambda"):
            cm.CTMHSA(**(SMALL | {"memory_lambda": bad}))


# --- (iii)-(v) training ---------------------------------------------------------------------

def _train(model, rule, params, steps, dtype):
    opt = cg.optimizer(0.05)
    step = cg.make_step(model, opt, rule)
    state = opt.init(params)
    for k in range(steps):
        chars, targets = _batch(jax.random.PRNGKey(10 + k), 2, 3, model.vocab)
        params, state, grads, metrics = step(params, state, chars, targets)
        assert cm.non_edges_zero(model, params), (rule, k)
        assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(params))
    return params, grads, metrics


@pytest.mark.parametrize("rule", ["gle", "bptt"])
def test_training_keeps_non_edges_exactly_zero(rule):
    model = cm.CTMHSA(**(SMALL | {"vocab": 4}))
    params0 = cm.init_params(model, jax.random.PRNGKey(0), jnp.float64)
    params, _, _ = _train(model, rule, params0, 4, jnp.float64)
    off = ~np.asarray(model.mask, bool)
    assert np.all(np.asarray(params["C"])[off] == 0.0)
    assert np.any(np.asarray(params["C"])[~off] != np.asarray(params0["C"])[~off])  # C learns


def test_gle_updates_every_slow_weight():
    model = cm.CTMHSA(**(SMALL | {"micro_steps": 4}))  # 8 regions: errors reach region 0
    params = cm.init_params(model, jax.random.PRNGKey(0), jnp.float64)
    chars, targets = _batch(jax.random.PRNGKey(1), 2, 5, model.vocab)
    grads, _ = jax.jit(lambda p: cg.gle_gradient(model, p, chars, targets))(params)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        name = jax.tree_util.keystr(path)
        assert bool(jnp.all(jnp.isfinite(g))), name
        assert float(jnp.max(jnp.abs(g))) > 1e-6, name
        if "W_" in name or "ln_" in name:  # every region's weights, not just the readout's
            per_region = jnp.max(jnp.abs(g.reshape(g.shape[0], -1)), axis=1)
            if name not in ("['W_out']",):
                assert bool(jnp.all(per_region > 0)), name
    off = ~np.asarray(model.mask, bool)
    assert np.all(np.asarray(grads["C"])[off] == 0.0)


def test_float32_end_to_end():
    model = cm.CTMHSA(**(SMALL | {"vocab": 4}))
    p64 = cm.init_params(model, jax.random.PRNGKey(0), jnp.float64)
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), p64)
    chars, targets = _batch(jax.random.PRNGKey(1), 2, 3, model.vocab)
    for fn in (cg.gle_gradient, cm.bptt_gradient):
        g32, m32 = jax.jit(fn, static_argnums=0)(model, p32, chars, targets)
        g64, _ = jax.jit(fn, static_argnums=0)(model, p64, chars, targets)
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(g32))
        assert m32["loss"].dtype == jnp.float32
        assert float(flowsim.cosine(g32, g64)) > 0.9999
    _train(model, "gle", p32, 2, jnp.float32)
