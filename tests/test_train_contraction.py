"""The contraction penalty: a closed form, and its gradient against central differences (float64)."""

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from flowsim import ContractionPenalty
from flowsim.ep import char_model as cm

T, DT = 6, 0.2

# one compiled function per distinct penalty (its options are static), shared by the tests
_gradient = eqx.filter_jit(lambda pen, *args: pen.gradient(*args))
_value = eqx.filter_jit(lambda pen, *args: pen.value(*args))
_stretch = eqx.filter_jit(lambda pen, *args: pen.stretch(*args))


def decay(z, params, x):
    """F(z) = −k z: Φ_z = (1 − εk) I, so every log stretch is log|1 − εk|."""
    return -params["k"] * z


@pytest.mark.parametrize("carried", [True, False])
def test_closed_form_linear_decay(carried):
    params = {"k": jnp.asarray(1.5)}
    z0 = jnp.ones((2, 3))
    pen = ContractionPenalty(0.3, T, DT, directions=3, carried=carried)
    grads, value = _gradient(pen, decay, z0, params, None, jax.random.PRNGKey(1))
    assert value == pytest.approx(T * np.log(1 - DT * 1.5), rel=1e-12)
    # dR/dk = −T ε / (1 − εk), times the weight λ = 0.3
    assert grads["k"] == pytest.approx(0.3 * -T * DT / (1 - DT * 1.5), rel=1e-10)


@pytest.fixture(scope="module")
def problem():
    config = cm.ModelConfig(vocab=7, context=3, embed=2, state=5, hidden=4, init_gain=2.0)
    params = cm.init(config, jax.random.PRNGKey(0), jnp.float64)
    x = jax.random.randint(jax.random.PRNGKey(1), (3, 3), 0, 7)
    return params, x, cm.initial_state(params, x) + 0.3


def _directional_fd(f, params, direction, h=1e-5):
    plus = jax.tree.map(lambda p, d: p + h * d, params, direction)
    minus = jax.tree.map(lambda p, d: p - h * d, params, direction)
    return (f(plus) - f(minus)) / (2 * h)


@pytest.mark.parametrize("through_states", [False, True])
def test_gradient_against_finite_differences(problem, through_states):
    """The random-probe penalty (fresh directions each step) against central differences."""
    params, x, z0 = problem
    pen = ContractionPenalty(0.7, T, DT, directions=2, through_states=through_states,
                             carried=False)
    key = jax.random.PRNGKey(5)
    grads, _ = _gradient(pen, cm.field, z0, params, x, key)
    if through_states:  # R(θ) re-relaxes at every θ
        f = lambda p: 0.7 * _value(pen, cm.field, z0, p, x, key)
    else:  # the local rule: states held at those of θ
        states = eqx.filter_jit(pen.states)(cm.field, z0, params, x)
        f = lambda p: 0.7 * _stretch(pen, cm.field, states, p, x, key)
    leaves, treedef = jax.tree.flatten(params)
    for i in range(2):  # two random directions in parameter space
        dirs = [jax.random.normal(jax.random.PRNGKey(10 + 7 * i + j), u.shape, u.dtype)
                for j, u in enumerate(leaves)]
        direction = jax.tree.unflatten(treedef, dirs)
        analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads), dirs))
        numeric = _directional_fd(f, params, direction)
        assert float(analytic) == pytest.approx(float(numeric), rel=1e-6)
    # the two variants differ: the state dependence is a real term
    _SEEN[through_states] = grads
    if len(_SEEN) == 2:
        assert float(jnp.abs(_SEEN[True].W - _SEEN[False].W).max()) > 1e-6


_SEEN = {}


def test_carried_probe_with_fixed_probes_against_finite_differences(problem):
    """The carried penalty's local rule: d/dθ Σ_t log‖Φ_z(z_t; θ) v_t‖ with the states and
    the carried unit probes v_t held at their values for θ, computed here independently."""
    params, x, z0 = problem
    pen = ContractionPenalty(1.0, T, DT, directions=1, carried=True)
    key = jax.random.PRNGKey(5)
    grads, value = _gradient(pen, cm.field, z0, params, x, key)
    states = eqx.filter_jit(pen.states)(cm.field, z0, params, x)
    flat = jax.vmap(lambda s: jax.flatten_util.ravel_pytree(s)[0])(states)
    _, unravel = jax.flatten_util.ravel_pytree(z0)

    def stretch(p, z, v):
        f = lambda u: jax.flatten_util.ravel_pytree(cm.field(unravel(u), p, x))[0]
        return v + DT * jax.jvp(f, (z,), (v,))[1]

    v = jax.random.normal(key, (1, flat.shape[1]), flat.dtype)[0]
    probes = []
    for t in range(T):  # the probes of θ, by the recurrence written out
        v = v / jnp.linalg.norm(v)
        probes.append(v)
        v = stretch(params, flat[t], v)
    fixed = jax.jit(lambda p: sum(jnp.log(jnp.linalg.norm(stretch(p, flat[t], probes[t])))
                                  for t in range(T)))
    assert float(value) == pytest.approx(float(fixed(params)), rel=1e-12)
    leaves, treedef = jax.tree.flatten(params)
    dirs = [jax.random.normal(jax.random.PRNGKey(30 + j), u.shape, u.dtype)
            for j, u in enumerate(leaves)]
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads), dirs))
    numeric = _directional_fd(fixed, params, jax.tree.unflatten(treedef, dirs))
    assert float(analytic) == pytest.approx(float(numeric), rel=1e-6)


def test_carried_probe_follows_the_marginal_mode_and_random_misses_it():
    """F(z) = −k ⊙ z with n = 2,000 modes: Φ_z = diag(ρ_i), ρ_i = 1 − ε k_i. Every mode
    contracts fast (k_i = 1, ρ_i = 0.8) but one (k_0 = 0.02: ρ_0 = 0.996, near 1).

    Carried: v_t ∝ Φ^t v_0, so dR/dk_0 = −(ε/ρ_0) Σ_t f_t with f_t = ρ_0^{2t+2} v_{0,0}² /
    Σ_i ρ_i^{2t+2} v_{0,i}², the weight of mode 0 in Φ v_t; f_t → 1 within ~20 steps,
    and the marginal mode takes the gradient. Random: a fresh probe sees mode 0 with
    weight ~1/n at every step, dR/dk_0 is O(Tε/n) and the bulk takes the gradient."""
    n, steps, dt = 2000, 200, 0.2
    k = jnp.ones(n).at[0].set(0.02)
    rho = np.asarray(1 - dt * k)
    z0 = jnp.ones(n)
    key = jax.random.PRNGKey(0)
    carried = ContractionPenalty(1.0, steps, dt, carried=True)
    random = ContractionPenalty(1.0, steps, dt, carried=False, directions=4)
    g_c, r_c = _gradient(carried, decay, z0, {"k": k}, None, key)
    g_r, r_r = _gradient(random, decay, z0, {"k": k}, None, key)
    v0 = np.asarray(jax.random.normal(key, (1, n), jnp.float64))[0] ** 2
    weight = [rho[0] ** (2 * t + 2) * v0[0] / np.sum(rho ** (2 * t + 2) * v0) for t in range(steps)]
    exact = -dt / rho[0] * sum(weight)
    assert float(g_c["k"][0]) == pytest.approx(exact, rel=1e-9)
    aligned = -steps * dt / rho[0]
    assert exact / aligned > 0.85  # the probe is on the marginal mode for most of the run
    assert float(jnp.abs(g_c["k"][0]) / jnp.linalg.norm(g_c["k"])) > 0.95
    # the random probe: the marginal mode gets O(1/n) of it, the bulk the rest
    assert abs(float(g_r["k"][0])) < 20 * abs(aligned) / n
    assert float(jnp.abs(g_r["k"][0]) / jnp.linalg.norm(g_r["k"])) < 0.05
    assert float(r_r) == pytest.approx(steps * np.log(1 - dt), rel=0.05)
