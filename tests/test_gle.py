"""GLE's closed forms (flowsim.gle): static backprop, lag-free lookahead, delays, sine transfer.

Every expectation is computed independently of the network's code: a plain
MLP and jax.grad for backpropagation, the Euler recursion's own transfer
function in closed form, and the continuous transfer (1 + iωτ_r)/(1 + iωτ_m).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsim
from flowsim.gle import Constant, Function, GLENetwork, init_params, simulate

SIZES = (3, 4, 5, 2)


def _mlp(params, x):
    rate = x
    for weights in params:
        rate = jnp.tanh(rate @ weights["W"].T + weights["b"])
    return rate


def _params(seed=0, sizes=SIZES, gain=1.5):
    return init_params(jax.random.PRNGKey(seed), sizes, gain=gain)


def test_static_steady_state_error_times_rate_is_backprop():
    params = _params()
    x, y = jnp.array([0.3, -0.7, 1.1]), jnp.array([0.5, -0.2])
    beta, tau_m = 0.7, (1.0, 2.0, 0.5)
    drive = Constant(x, y)
    grads = jax.grad(lambda p: 0.5 * jnp.sum((y - _mlp(p, x)) ** 2))(params)

    @jax.jit
    def steady_density(scale):  # one compilation for every τ_r = s τ_m
        network = GLENetwork(tau_m=tau_m, tau_r=tuple(scale * t for t in tau_m), beta=beta,
                             activation="tanh", output_activation="tanh")
        state, info = flowsim.equilibrium(lambda z, p, _: network.field(0.0, z, p, drive),
                                          network.init_state(SIZES[1:]), params, None)
        return network.update_density(network.observe(0.0, state, params, drive)), info

    for scale in (0.2, 0.5, 3.0):
        density, info = steady_density(jnp.asarray(scale))
        assert flowsim.result_name(info["result"]) == "successful"
        for got, want in zip(density, grads):
            np.testing.assert_allclose(got["W"], -beta * want["W"], atol=1e-10, rtol=0)
            np.testing.assert_allclose(got["b"], -beta * want["b"], atol=1e-10, rtol=0)


def _broadband(n_in=3, n_out=2):
    def fn(t):
        x = jnp.sin(jnp.array([1.3, 0.4, 2.9])[:n_in] * t + jnp.arange(n_in))
        return x, 0.3 * jnp.cos(jnp.array([0.7, 1.9])[:n_out] * t)
    return Function(fn)


def test_matched_time_constants_follow_the_input_without_lag():
    params, drive, dt = _params(), _broadband(), 0.01
    network = GLENetwork(tau_m=(1.0, 2.0, 0.5), tau_r=(1.0, 2.0, 0.5), output_activation="tanh")
    ts = dt * np.arange(1, 400)
    solved = simulate(network, params, drive, 0.0, 4.0, dt,
                      state0=network.init_state(SIZES[1:]), save_ts=ts)
    inputs = jax.vmap(lambda t: drive.evaluate(t)[0])(solved.ts)
    np.testing.assert_allclose(solved.observed.r[-1], _mlp(params, inputs), atol=1e-12)


def test_delayed_coupling_is_one_step_per_layer():
    # τ_r = τ_m and Euler steps of the buffers' own time constant: layer l sees
    # layer l-1's rate of the previous step, so r_L(t_n) = f_L(f_{L-1}(f_1(x(t_{n-2})))).
    params, drive, dt = _params(), _broadband(), 0.05
    network = GLENetwork(tau_m=(1.0, 2.0, 0.5), tau_r=(1.0, 2.0, 0.5), coupling="delayed",
                         delay=dt, output_activation="tanh")
    steps = 60
    ts = dt * np.arange(steps)
    solved = simulate(network, params, drive, 0.0, steps * dt, dt,
                      state0=network.init_state(SIZES[1:]), save_ts=ts)
    inputs = jax.vmap(lambda t: drive.evaluate(t)[0])(solved.ts)
    rate = inputs
    for layer, weights in enumerate(params):
        rate = jnp.tanh(rate @ weights["W"].T + weights["b"])
        if layer < len(params) - 1:
            rate = jnp.concatenate([jnp.zeros_like(rate[:1]), rate[:-1]])  # one step late
    late = len(params) - 1  # the zero buffers' start-up is over after L-1 steps
    np.testing.assert_allclose(solved.observed.r[-1][late:], rate[late:], atol=1e-12)


def _trajectory(network, dt, T=3.0):
    ts = np.linspace(0.5, T, 6)
    solved = simulate(network, _params(), _broadband(), 0.0, T, dt,
                      state0=network.init_state(SIZES[1:]), save_ts=ts)
    return np.concatenate([np.asarray(solved.observed.r[-1]),
                           np.asarray(solved.observed.e_breve[0])], axis=1)


def test_delayed_tends_to_instantaneous_at_first_order():
    # γ = 0.1 keeps the loop's gain below 1; at γ = 0.3 this network's delayed loop
    # oscillates and moves away from the instantaneous solution as dt -> 0 (measured:
    # max error 0.22, 0.63, 0.78, 2.0 at dt = 0.04 ... 0.005).
    taus = dict(tau_m=(1.0, 2.0, 0.5), tau_r=(0.3, 1.5, 0.2), gamma=0.1, beta=0.5)
    reference = _trajectory(GLENetwork(**taus), 1e-3)
    errors = [np.max(np.abs(_trajectory(GLENetwork(**taus, coupling="delayed", delay=dt), dt)
                            - reference)) for dt in (0.01, 0.005)]
    assert errors[1] < 0.06
    assert 1.6 < errors[0] / errors[1] < 2.5  # first order in the delay


def test_gamma_feedback_closes_the_loop_exactly():
    network = GLENetwork(tau_m=(1.0, 2.0, 0.5), tau_r=(0.3, 1.5, 0.2), gamma=0.4)
    params = _params()
    key = jax.random.PRNGKey(3)
    state = jax.tree.map(lambda a: jax.random.normal(key, a.shape),
                         network.init_state(SIZES[1:]))
    observed = network.observe(0.7, state, params, _broadband())
    # independently: with the solved ĕ fed back, each layer's own equations hold
    for layer, weights in enumerate(params):
        seen = observed.pre[layer]
        current = seen @ weights["W"].T + weights["b"] + 0.4 * observed.e_breve[layer]
        np.testing.assert_allclose(observed.u_dot[layer],
                                   (current - state["u"][layer]) / network.tau_m[layer],
                                   atol=1e-11)
        if layer < len(params) - 1:
            above = observed.e_breve[layer + 1] @ params[layer + 1]["W"]
            slope = 1 - jnp.tanh(observed.u_breve[layer]) ** 2
            np.testing.assert_allclose(observed.eps[layer], slope * above, atol=1e-11)


def _euler_transfer(omega, dt, tau_m, tau_r):
    # u_{n+1} = u_n + (dt/τ_m)(I_n − u_n), ŭ_n = u_n + (τ_r/τ_m)(I_n − u_n), z = e^{iωdt}
    a = dt / tau_m
    membrane = a / (np.exp(1j * omega * dt) - 1 + a)
    return (1 - tau_r / tau_m) * membrane + tau_r / tau_m


def test_sine_transfer_matches_the_euler_recursion_and_tends_to_the_continuous_form():
    omega, tau_m, tau_r = 1.0, (1.0, 0.5, 2.0), (0.3, 1.5, 0.2)
    sizes = (1, 1, 1, 1)
    params = _params(1, sizes, 1.0)
    network = GLENetwork(tau_m=tau_m, tau_r=tau_r, activation="identity")
    drive = Function(lambda t: (jnp.sin(omega * t)[None], jnp.zeros(1)))
    for dt, continuous_tol in ((2 * math.pi / 400, 1e-2), (2 * math.pi / 1600, 2.5e-3)):
        ts = 40 * math.pi + dt * np.arange(round(4 * math.pi / dt))  # two whole periods
        solved = simulate(network, params, drive, 0.0, float(ts[-1]) + dt, dt,
                          state0=network.init_state(sizes[1:]), save_ts=ts)
        phasor = np.exp(-1j * omega * np.asarray(solved.ts))
        for layer, weights in enumerate(params):
            current = np.asarray(solved.observed.pre[layer] @ weights["W"].T + weights["b"])[:, 0]
            transfer = (np.sum(np.asarray(solved.observed.u_breve[layer])[:, 0] * phasor)
                        / np.sum(current * phasor))
            exact = _euler_transfer(omega, dt, tau_m[layer], tau_r[layer])
            continuous = (1 + 1j * omega * tau_r[layer]) / (1 + 1j * omega * tau_m[layer])
            assert abs(transfer - exact) < 1e-9
            assert abs(transfer - continuous) < continuous_tol


def test_bad_time_constants_and_steps_are_rejected():
    with pytest.raises(ValueError, match="tau_r of layer 2 must be > 0"):
        GLENetwork(tau_m=(1.0, 1.0), tau_r=(1.0, 0.0))
    with pytest.raises(ValueError, match="tau_m of layer 1 must be > 0"):
        GLENetwork(tau_m=(-1.0,), tau_r=(1.0,))
    with pytest.raises(ValueError, match="coupling"):
        GLENetwork(tau_m=(1.0,), tau_r=(1.0,), coupling="lagged")
    network = GLENetwork(tau_m=(1.0, np.array([0.5, 0.05])), tau_r=(1.0, 1.0))
    with pytest.raises(ValueError, match="exceeds the smallest time constant 0.05"):
        simulate(network, _params(0, (1, 1, 2)), Constant(jnp.ones(1), jnp.ones(2)), 0.0, 1.0,
                 0.1, state0=network.init_state((1, 2)))


def test_online_plasticity_learns_a_static_target_and_float32_works():
    for dtype, tol in ((jnp.float64, 1e-3), (jnp.float32, 1e-3)):
        sizes = (3, 6, 2)
        params = init_params(jax.random.PRNGKey(2), sizes, dtype=dtype)
        x, y = jnp.array([0.3, -0.7, 1.1], dtype), jnp.array([0.5, -0.2], dtype)
        network = GLENetwork(tau_m=(1.0, 0.5), tau_r=(0.5, 0.2), output_activation="tanh")
        drive = Constant(x, y)
        before = 0.5 * float(jnp.sum((y - _mlp(params, x)) ** 2))
        solved = simulate(network, params, drive, 0.0, 40.0, 0.1, eta=0.2,
                          state0=network.init_state(sizes[1:], dtype=dtype))
        assert solved.params[0]["W"].dtype == dtype
        after = 0.5 * float(jnp.sum((y - _mlp(solved.params, x)) ** 2))
        assert after < tol * before


@pytest.mark.parametrize(("assignment", "expected"), [
    ("chain.dt=0.5", "chain: dt = 0.5 exceeds the smallest time constant 0.2"),
    ("chain.tau_r=[0.3, 0.0, 0.2]", "time constants must be > 0"),
    ("chain.tau_m=[1.0]", "tau_m and tau_r need one value per layer (3 for widths"),
])
def test_gle_checks_rejects_bad_time_constants_in_one_line(tmp_path, capsys, assignment, expected):
    from flowsim.cli import main

    out = tmp_path / "out"
    assert main(["run", "gle-checks", "--set", assignment, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]
    assert not out.exists()


def test_cross_entropy_error_is_backprop_of_a_weighted_target():
    # A target of total mass w weights the instant: GLE's error must be −β ∂(w·CE)/∂W
    # at a static steady state, and vanish with w = 0.
    sizes, beta = (3, 4, 3), 0.8
    params = _params(4, sizes)
    x, label = jnp.array([0.3, -0.7, 1.1]), jnp.array([0.0, 1.0, 0.0])
    network = GLENetwork(tau_m=(1.0, 0.5), tau_r=(0.4, 1.5), beta=beta, output="ce")

    @jax.jit
    def steady_density(mass):
        drive = Constant(x, mass * label)
        state, _ = flowsim.equilibrium(lambda z, p, _: network.field(0.0, z, p, drive),
                                       network.init_state(sizes[1:]), params, None)
        return network.update_density(network.observe(0.0, state, params, drive))

    for mass in (0.0, 0.3, 1.0):
        def weighted_ce(p):
            logits = jnp.tanh(x @ p[0]["W"].T + p[0]["b"]) @ p[1]["W"].T + p[1]["b"]
            return -mass * jnp.sum(label * jax.nn.log_softmax(logits))

        grads = jax.grad(weighted_ce)(params)
        density = steady_density(jnp.asarray(mass))
        for got, want in zip(density, grads):
            np.testing.assert_allclose(got["W"], -beta * want["W"], atol=1e-10, rtol=0)
        if mass == 0.0:
            assert all(float(jnp.max(jnp.abs(d["W"]))) == 0.0 for d in density)
