"""The contraction penalty: a closed form, and its gradient against central differences (float64)."""

import equinox as eqx
import jax
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


def test_closed_form_linear_decay():
    params = {"k": jnp.asarray(1.5)}
    z0 = jnp.ones((2, 3))
    grads, value = _gradient(ContractionPenalty(0.3, T, DT, directions=3), decay, z0, params,
                             None, jax.random.PRNGKey(1))
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
    params, x, z0 = problem
    pen = ContractionPenalty(0.7, T, DT, directions=2, through_states=through_states)
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
