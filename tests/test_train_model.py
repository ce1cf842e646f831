"""The equilibrium character model: gradient field when tied, holomorphic readout, bad sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowsim.ep import char_model as cm


@pytest.fixture(scope="module")
def small():
    config = cm.ModelConfig(vocab=9, context=3, embed=2, state=6, hidden=5, init_gain=1.5)
    params = cm.init(config, jax.random.PRNGKey(0), jnp.float64)
    x = jax.random.randint(jax.random.PRNGKey(1), (1, 3), 0, 9)
    z = 0.3 * jax.random.normal(jax.random.PRNGKey(2), (1, 6))
    return config, params, x, z


@jax.jit
def _jacobian(params, x, z):
    return jax.jacfwd(lambda u: cm.field(u[None], params, x)[0])(z[0])


def test_tied_field_is_a_gradient_field(small):
    config, params, x, z = small
    jac = _jacobian(params, x, z)
    np.testing.assert_allclose(jac, jac.T, atol=1e-14)  # F_z symmetric
    # F = −∇E with E = ½|z|² − aᵀz − Σ log cosh(Wz + u)
    u = params.drive(x)[0]
    energy = lambda v: 0.5 * v @ v - params.a @ v - jnp.sum(jnp.log(jnp.cosh(params.W @ v + u)))
    np.testing.assert_allclose(cm.field(z, params, x)[0], -jax.jit(jax.grad(energy))(z[0]),
                               atol=1e-14)


def test_untied_field_is_not_symmetric(small):
    config, _, x, z = small
    params = cm.init(cm.ModelConfig(**{**config.__dict__, "tied": False}), jax.random.PRNGKey(0),
                     jnp.float64)
    jac = _jacobian(params, x, z)
    assert np.abs(jac - jac.T).max() > 1e-3


def test_core_field_with_encoding_is_the_field(small):
    _, params, x, z = small
    np.testing.assert_array_equal(cm.core_field(z, params, cm.encode(params, x)),
                                  cm.field(z, params, x))


def test_cross_entropy_is_log_softmax_and_holomorphic(small):
    _, params, x, _ = small
    z = jax.random.normal(jax.random.PRNGKey(3), (4, 6))
    y = jnp.array([0, 3, 8, 5])
    ref = -jnp.mean(jax.nn.log_softmax(params.logits(z))[jnp.arange(4), y])
    assert float(cm.cross_entropy(z, params, y)) == pytest.approx(float(ref), rel=1e-13)
    # a complex nudge: the first-order Taylor term matches the real gradient
    v = jax.random.normal(jax.random.PRNGKey(4), z.shape)
    h = 1e-20j
    slope = jnp.imag(cm.cross_entropy(z + h * v, params, y)) / 1e-20
    grad = jax.grad(lambda u: cm.cross_entropy(u, params, y))(z)
    assert float(slope) == pytest.approx(float(jnp.vdot(grad, v)), rel=1e-10)


@pytest.mark.parametrize("field", ["context", "state", "hidden", "embed", "vocab"])
def test_non_positive_sizes_are_refused(field):
    with pytest.raises(ValueError, match=f"model.{field} must be a positive int"):
        cm.ModelConfig(**{field: 0})


def _attention_model():
    config = cm.ModelConfig(vocab=9, context=3, embed=2, state=6, hidden=5, init_gain=1.5,
                            attention=4)
    return config, cm.init(config, jax.random.PRNGKey(0), jnp.float64)


def test_attention_field_against_a_loop_over_the_window(small):
    """F with attention, written out position by position in plain numpy."""
    _, params = _attention_model()
    _, _, x, z = small
    p = jax.tree.map(np.asarray, params)
    e = [p.embed[int(x[0, i])] + p.pos[i] for i in range(3)]
    zz = np.asarray(z[0])
    u = p.U @ np.concatenate(e) + p.b
    q = p.Q @ zz
    scores = np.array([(p.K @ e_i) @ q / 2.0 for e_i in e])  # √d_a = 2
    w = np.exp(scores) / np.exp(scores).sum()
    att = sum(w_i * (p.A @ e_i) for w_i, e_i in zip(w, e))
    expected = -zz + p.W.T @ np.tanh(p.W @ zz + u + att) + p.a
    np.testing.assert_allclose(cm.field(z, params, x)[0], expected, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(cm.core_field(z, params, cm.encode(params, x)),
                               cm.field(z, params, x), rtol=0, atol=0)


def test_attention_breaks_the_symmetry_and_leaves_the_other_weights_alone(small):
    _, params = _attention_model()
    _, plain, x, z = small
    jac = _jacobian(params, x, z)
    assert np.abs(jac - jac.T).max() > 1e-3  # F_z no longer symmetric: EP is biased
    for name in ("embed", "pos", "U", "W", "V"):  # the same draws with or without attention
        np.testing.assert_array_equal(getattr(params, name), getattr(plain, name))
    assert plain.Q is None and params.Q.shape == (4, 6) and params.A.shape == (5, 2)
    with pytest.raises(ValueError, match="model.attention must be an int >= 0"):
        cm.ModelConfig(attention=-1)


def test_attention_model_implicit_gradient_against_finite_differences(small):
    """The oracle through the (θ, encoding) split, attention keys and values included."""
    import equinox as eqx

    import flowsim

    _, params = _attention_model()
    x = jax.random.randint(jax.random.PRNGKey(5), (2, 3), 0, 9)
    y = jnp.array([1, 7])
    z0 = jnp.zeros((2, 6))
    solver = flowsim.EquilibriumSolver(relax_steps=300, dt=0.2)
    loss = flowsim.ParametrisedLoss(cm.cross_entropy)

    @eqx.filter_jit
    def solve(p):
        z, info = flowsim.equilibrium(cm.field, z0, p, x, solver)
        return cm.cross_entropy(z, p, y), info["result"]

    def l_star(p):
        value, result = solve(p)
        assert flowsim.result_name(result) == "successful"
        return float(value)

    # the oracle on the problem with its encoding split off: F = core(z, θ, u(θ, x))
    problem = flowsim.Problem(cm.core_field, loss, encode=cm.encode)
    grads, info = flowsim.gradient(flowsim.Implicit(equilibrium=solver), problem, z0, params, x, y)
    assert flowsim.result_name(info["result"]) == "successful"
    h = 1e-5
    for name in ("Q", "K", "A", "W", "embed"):
        direction = jax.random.normal(jax.random.PRNGKey(6), getattr(params, name).shape)
        shift = lambda t, name=name, direction=direction: eqx_set(params, name, direction, t)
        fd = (l_star(shift(h)) - l_star(shift(-h))) / (2 * h)
        analytic = float(jnp.vdot(getattr(grads, name), direction))
        assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-10), name


def eqx_set(params, name, direction, t):
    import equinox as eqx

    return eqx.tree_at(lambda p: getattr(p, name), params, getattr(params, name) + t * direction)
