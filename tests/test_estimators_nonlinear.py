"""Estimators on nonlinear systems: against the library, finite differences and orders."""

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest

import flowsim
from flowsim.systems import AsymmetricTanh, Hopfield

N, M = 6, 3


def loss(z, y):
    return 0.5 * jnp.sum((z - y) ** 2)


@pytest.fixture(scope="module")
def hopfield():
    system = Hopfield(N, M)
    params = system.init_params(jax.random.PRNGKey(0), gain=0.8)
    x = jnp.linspace(-1.0, 1.0, M)
    y = jnp.linspace(0.8, -0.8, N)
    return system, params, jnp.zeros(N), x, y


@pytest.fixture(scope="module")
def asymmetric():
    system = AsymmetricTanh(N, M)
    params = system.init_params(jax.random.PRNGKey(2), gain=0.9)
    x = jnp.stack([jnp.linspace(-1.0, 1.0, M), jnp.linspace(1.0, 0.0, M)])  # batch of 2
    y = jnp.stack([jnp.linspace(0.5, -0.5, N), jnp.linspace(-0.3, 0.3, N)])
    return system, params, jnp.zeros((2, N)), x, y


def oracle(system, params, z0, x, y):
    grads, info = flowsim.gradient(flowsim.Implicit(), system.field, loss, params, z0, x, y)
    assert flowsim.result_name(info["result"]) == "successful"
    return grads


@pytest.mark.parametrize("name", ["hopfield", "asymmetric"])
def test_implicit_matches_optimistix_implicit_adjoint(name, request):
    # An independent route: differentiate through optimistix's root find with its
    # own ImplicitAdjoint (it solves the adjoint by a different code path).
    system, params, z0, x, y = request.getfixturevalue(name)
    z_start = flowsim.relax(system.field, z0, params, x, steps=200, dt=0.1)

    def equilibrium_loss(p):
        solver = optx.Newton(rtol=1e-12, atol=1e-12)
        z_star = optx.root_find(lambda z, a: system.field(z, p, x), solver, z_start).value
        return loss(z_star, y)

    expected = jax.grad(equilibrium_loss)(params)
    grads = oracle(system, params, z0, x, y)
    assert float(flowsim.relative_error(grads, expected)) < 1e-9


def test_implicit_matches_finite_differences(hopfield):
    system, params, z0, x, y = hopfield
    grads = oracle(system, params, z0, x, y)
    solver = flowsim.EquilibriumSolver(residual_tol=1e-11)

    @jax.jit
    def equilibrium_loss(b):
        z_star, _ = flowsim.equilibrium(system.field, z0, {**params, "b": b}, x, solver)
        return loss(z_star, y)

    h = 1e-6
    for i in range(N):
        e = np.zeros(N)
        e[i] = h
        fd = float(equilibrium_loss(params["b"] + e) - equilibrium_loss(params["b"] - e)) / (2 * h)
        assert abs(fd - float(grads["b"][i])) < 1e-7


def test_ep_error_orders_in_beta(hopfield):
    # Symmetric coupling: EP is exact as β → 0, with error O(β) one-sided and
    # O(β²) symmetric. The nudged phase is long enough to be converged.
    system, params, z0, x, y = hopfield
    reference = oracle(system, params, z0, x, y)
    betas = np.array([0.04, 0.02, 0.01])
    slopes = {}
    for symmetric in (False, True):
        errors = []
        for beta in betas:
            grads, _ = flowsim.gradient(flowsim.EP(beta, 1500, 0.1, symmetric), system.field,
                                        loss, params, z0, x, y)
            errors.append(float(flowsim.relative_error(grads, reference)))
        slopes[symmetric] = np.polyfit(np.log(betas), np.log(errors), 1)[0]
    assert abs(slopes[False] - 1.0) < 0.1
    assert abs(slopes[True] - 2.0) < 0.1


def test_holomorphic_ep_is_accurate_at_finite_radius(hopfield):
    system, params, z0, x, y = hopfield
    reference = oracle(system, params, z0, x, y)
    grads, _ = flowsim.gradient(flowsim.HolomorphicEP(0.2, 8, 1500, 0.1), system.field, loss,
                                params, z0, x, y)
    # A real symmetric nudge of the same size is far less accurate.
    real, _ = flowsim.gradient(flowsim.EP(0.2, 1500, 0.1, True), system.field, loss, params,
                               z0, x, y)
    holomorphic_error = float(flowsim.relative_error(grads, reference))
    assert holomorphic_error < 1e-4
    assert holomorphic_error < 0.01 * float(flowsim.relative_error(real, reference))


def test_rbp_converges_to_implicit_on_asymmetric_net(asymmetric):
    system, params, z0, x, y = asymmetric
    reference = oracle(system, params, z0, x, y)
    errors = [float(flowsim.relative_error(
        flowsim.gradient(flowsim.RBP(steps, 0.1, max_steps=600), system.field, loss, params,
                         z0, x, y)[0],
        reference)) for steps in (20, 80, 600)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-8


def test_forward_equals_bptt_on_asymmetric_net(asymmetric):
    system, params, z0, x, y = asymmetric
    reverse, _ = flowsim.gradient(flowsim.BPTT(50, 0.1), system.field, loss, params, z0, x, y)
    forward, _ = flowsim.gradient(flowsim.Forward(50, 0.1), system.field, loss, params, z0, x, y)
    assert float(flowsim.relative_error(forward, reverse)) < 1e-12


def test_bptt_approaches_oracle_as_horizon_grows(asymmetric):
    system, params, z0, x, y = asymmetric
    reference = oracle(system, params, z0, x, y)
    errors = []
    for steps in (20, 80, 400):
        grads, info = flowsim.gradient(flowsim.BPTT(steps, 0.1, max_steps=400), system.field,
                                       loss, params, z0, x, y)
        errors.append(float(flowsim.relative_error(grads, reference)))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-6


def test_gradient_field_is_holomorphic_for_complex_states():
    energy = lambda z, p, x: jnp.sum(p * z**3) / 3.0  # noqa: E731
    z = jnp.array([0.3 + 0.4j, -1.0 + 0.2j])
    field = flowsim.gradient_field(energy)
    np.testing.assert_allclose(np.asarray(field(z, 2.0, None)), -2.0 * np.asarray(z) ** 2,
                               rtol=1e-14)


def test_failed_adjoint_solve_is_reported_and_gives_nan(asymmetric):
    system, params, z0, x, y = asymmetric
    estimator = flowsim.Implicit(rtol=1e-14, atol=1e-16, max_steps=2, restart=1)
    grads, info = flowsim.gradient(estimator, system.field, loss, params, z0, x, y)
    assert flowsim.result_name(info["result"]) == "linear_solve_failed"
    assert all(bool(jnp.all(jnp.isnan(g))) for g in jax.tree.leaves(grads))


def test_missing_equilibrium_is_reported():
    def field(z, params, x):  # no root: dz/dt = z² + c with c > 0
        return z**2 + params

    grads, info = flowsim.gradient(flowsim.Implicit(), field, lambda z, y: jnp.sum(z),
                                   jnp.asarray(1.0), jnp.zeros(1), None, None)
    assert flowsim.result_name(info["result"]) in ("equilibrium_failed", "nonfinite")
    assert bool(jnp.isnan(grads))


def test_ep_sweep_over_beta_compiles_once(hopfield):
    import equinox as eqx

    system, params, z0, x, y = hopfield

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def estimate(estimator):
        return estimator.estimate(system.field, flowsim.ParametrisedLoss(
            lambda z, p, t: loss(z, t)), params, z0, x, y)

    for beta in (0.1, 0.05, 0.01):
        estimate(flowsim.EP(beta, 20, 0.1, True))
