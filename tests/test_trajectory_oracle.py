"""The trajectory oracle (flowsim.trajectory) against closed forms and an independent loop,
and GLE held against it: exact direction for one frequency, the amplitude off by a closed form."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flowsim.studies import gle_checks

import flowsim
from flowsim.gle import GLENetwork, init_params, simulate
from flowsim.trajectory import TrajectoryOracle, trajectory_gradient


def _decay(t, z, params, drive):
    return -params["k"] * z


def _level(t, z, params, drive):
    return z


@pytest.mark.parametrize("adjoint", ["checkpoint", "forward"])
def test_euler_decay_integral_has_its_closed_form_gradient(adjoint):
    # ż = −k z, z0 = 1: Euler gives L = dt Σ_{n<N} ρ^n = (1 − ρ^N)/k, ρ = 1 − k dt.
    k, dt, steps = 0.8, 0.05, 60
    grads, info = trajectory_gradient(TrajectoryOracle(dt, adjoint=adjoint), _decay, _level,
                                      jnp.asarray(1.0), {"k": jnp.asarray(k)}, None, 0.0,
                                      steps * dt)
    rho = 1 - k * dt
    exact = steps * rho ** (steps - 1) * dt / k - (1 - rho**steps) / k**2
    assert flowsim.result_name(info["result"]) == "successful"
    np.testing.assert_allclose(info["loss"], (1 - rho**steps) / k, rtol=1e-12)
    np.testing.assert_allclose(grads["k"], exact, rtol=1e-11)


def _pendulum(t, z, params, drive):
    return jnp.stack([z[1], -params["w"] ** 2 * jnp.sin(z[0]) - params["c"] * z[1]
                      + params["a"] * jnp.cos(drive * t)])


def _energy(t, z, params, drive):
    return 0.5 * z[1] ** 2 + (1 - jnp.cos(z[0]))


def _raw_loop_gradient(params, z0, drive, dt, steps, window):
    # An independent Euler loop, the parameters perturbed on the window only.
    def total(delta):
        z, loss = z0, 0.0
        for n in range(steps):
            t = n * dt
            inside = float(window[0] <= t + 1e-12 < window[1])
            seen = jax.tree.map(lambda p, d: p + inside * d, params, delta)
            loss = loss + dt * _energy(t, z, seen, drive)
            z = z + dt * _pendulum(t, z, seen, drive)
        return loss
    return jax.grad(total)(jax.tree.map(jnp.zeros_like, params))


@pytest.mark.parametrize("adjoint", ["checkpoint", "forward"])
def test_window_gradient_matches_an_independent_euler_loop(adjoint):
    params = {"w": jnp.asarray(1.3), "c": jnp.asarray(0.2), "a": jnp.asarray(0.5)}
    z0, dt, steps, window = jnp.array([0.4, 0.0]), 0.05, 80, (1.0, 3.0)
    grads, _ = trajectory_gradient(TrajectoryOracle(dt, adjoint=adjoint), _pendulum, _energy,
                                   z0, params, 0.9, 0.0, steps * dt, window=window)
    expected = _raw_loop_gradient(params, z0, 0.9, dt, steps, window)
    for name in params:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-10, atol=1e-13)
    whole = _raw_loop_gradient(params, z0, 0.9, dt, steps, (0.0, steps * dt))
    assert abs(float(whole["w"] - expected["w"])) > 1e-3  # the window matters


def test_backsolve_converges_to_the_discrete_gradient_at_first_order():
    params = {"w": jnp.asarray(1.3), "c": jnp.asarray(0.2), "a": jnp.asarray(0.5)}
    errors = []
    for dt in (0.02, 0.01):
        z0 = jnp.array([0.4, 0.0])
        args = (_pendulum, _energy, z0, params, 0.9, 0.0, 2.0)
        exact, _ = trajectory_gradient(TrajectoryOracle(dt), *args)
        backsolve, _ = trajectory_gradient(TrajectoryOracle(dt, adjoint="backsolve"), *args)
        errors.append(float(flowsim.relative_error(backsolve, exact)))
    assert errors[1] < 0.03  # measured 0.040 and 0.019
    assert 1.6 < errors[0] / errors[1] < 2.5


def test_unknown_adjoint_is_rejected():
    with pytest.raises(ValueError, match="unknown adjoint 'adjoint'"):
        TrajectoryOracle(0.1, adjoint="adjoint")


def _config(**chain):
    return gle_checks.Config(chain=gle_checks.ChainSection(**{"T": 45.0, **chain}))


def test_gle_on_one_frequency_has_the_oracle_direction_and_a_closed_form_amplitude():
    config = _config()
    params = init_params(jax.random.PRNGKey(0), tuple(config.chain.widths))
    sine, *_ = gle_checks.sine_check(config, params)
    for layer in (1, 2, 3):
        assert sine[f"sine_cos_layer{layer}"] > 1 - 1e-9
        np.testing.assert_allclose(sine[f"sine_update_ratio_layer{layer}"],
                                   sine[f"sine_update_ratio_predicted_layer{layer}"], rtol=1e-2)
        np.testing.assert_allclose(sine[f"sine_gain_layer{layer}"],
                                   sine[f"sine_gain_predicted_layer{layer}"], rtol=5e-3)
        np.testing.assert_allclose(sine[f"sine_phase_layer{layer}"],
                                   sine[f"sine_phase_predicted_layer{layer}"], atol=5e-3)


def test_gle_against_the_oracle_on_broadband_input():
    chain = _config(dt=0.02).chain
    params = init_params(jax.random.PRNGKey(0), tuple(chain.widths))
    drive = gle_checks.broadband_drive(chain, 6, (0.1, 5.0), jax.random.PRNGKey(1))
    window = gle_checks._window(chain)
    matched, *_ = gle_checks.broadband_cosine(chain, params, drive, chain.tau_m, window)
    mismatched, *_ = gle_checks.broadband_cosine(chain, params, drive, chain.tau_r, window)
    assert matched > 1 - 1e-12  # τ_r = τ_m: instantaneous backprop, exactly the oracle
    assert mismatched < 0.9


def test_gle_update_is_the_window_oracle_when_lookahead_matches_float32():
    # τ_r = τ_m in float32: the same statement with a tolerance from the dtype.
    chain = _config(dt=0.02, T=20.0, transient=5.0, tail=5.0).chain
    params = init_params(jax.random.PRNGKey(0), tuple(chain.widths), dtype=jnp.float32)
    drive = gle_checks.broadband_drive(chain, 6, (0.1, 5.0), jax.random.PRNGKey(1))
    network = GLENetwork(tau_m=tuple(chain.tau_m), tau_r=tuple(chain.tau_m), activation="tanh",
                         output_activation="tanh")
    state0 = network.init_state(chain.widths[1:], dtype=jnp.float32)
    window = (chain.transient, chain.T - chain.tail)
    solved = simulate(network, params, drive, 0.0, chain.T, chain.dt, state0=state0,
                      window=window)
    grads, _ = trajectory_gradient(TrajectoryOracle(chain.dt), network.field, network.loss_rate,
                                   state0, params, drive, 0.0, chain.T, window=window)
    assert grads[0]["W"].dtype == jnp.float32
    oracle = jax.tree.map(lambda g: -g, grads)
    steps = round((chain.T - 0.0) / chain.dt)
    tolerance = 10 * steps * float(jnp.finfo(jnp.float32).eps)
    assert float(flowsim.relative_error(solved.updates, oracle)) < tolerance
    assert math.isfinite(float(solved.loss))
