"""The equilibrium character model: gradient field when tied, holomorphic readout, bad sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowsim.models import char_equilibrium as cm


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
