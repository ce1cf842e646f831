"""Diagnostics against numpy and closed forms; the equilibrium at scale."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsim
from flowsim.systems import AsymmetricTanh, ScalarContraction


def _jacobian_of_map(system, params, z, x, dt):
    n = z.size
    jac = jax.jacfwd(lambda u: system.field(u.reshape(z.shape), params, x).ravel())(z.ravel())
    return np.eye(n) + dt * np.asarray(jac)


def test_spectral_radius_dense_and_arnoldi_match_numpy():
    system = AsymmetricTanh(150, 4)
    params = system.init_params(jax.random.PRNGKey(4), gain=1.3)
    x = jnp.ones(4)
    z = flowsim.relax(system.field, jnp.zeros(150), params, x, steps=100, dt=0.2)
    dt = 0.2
    expected = np.max(np.abs(np.linalg.eigvals(_jacobian_of_map(system, params, z, x, dt))))
    dense = float(flowsim.spectral_radius(system.field, z, params, x, dt))
    assert abs(dense - expected) < 1e-12
    arnoldi = float(flowsim.spectral_radius(system.field, z, params, x, dt, dense_max=10,
                                            krylov_dim=80))
    assert abs(arnoldi - expected) < 1e-6


def test_ritz_bound_is_the_residual_of_the_ritz_pair_and_bounds_the_error():
    """For k Arnoldi steps the bound ‖r‖|e_kᵀ s| equals ‖Φ y − θ y‖ (y = Q s, ‖y‖ = 1),
    computed here from the dense matrix, and shrinks as k grows; on this matrix the
    Ritz value is within it of ρ. Jittable and vmappable over states."""
    from matfree import decomp

    system = AsymmetricTanh(300, 4)
    params = system.init_params(jax.random.PRNGKey(4), gain=1.3)
    x, dt = jnp.ones(4), 0.2
    z = flowsim.relax(system.field, jnp.zeros(300), params, x, steps=100, dt=dt)
    jac = _jacobian_of_map(system, params, z, x, dt)
    exact = np.max(np.abs(np.linalg.eigvals(jac)))
    bounds = []
    for k in (10, 40, 80):
        rho, bound = flowsim.spectral_radius(system.field, z, params, x, dt, dense_max=0,
                                             krylov_dim=k, with_bound=True)
        q, h, _, _ = decomp.hessenberg(k, reortho="full")(
            lambda v: jnp.asarray(jac) @ v, jax.random.normal(jax.random.PRNGKey(0), (300,)))
        values, vectors = np.linalg.eig(np.asarray(h))
        top = np.argmax(np.abs(values))
        y = np.asarray(q).reshape(k, 300).T @ vectors[:, top]
        y = y / np.linalg.norm(y)
        assert float(rho) == pytest.approx(abs(values[top]), rel=1e-10)
        assert float(bound) == pytest.approx(np.linalg.norm(jac @ y - values[top] * y), rel=1e-6)
        assert abs(float(rho) - exact) <= float(bound)
        bounds.append(float(bound))
    assert bounds[0] > bounds[1] > bounds[2] and bounds[2] < 1e-6
    batched = jax.jit(jax.vmap(lambda u: flowsim.spectral_radius(
        system.field, u, params, x, dt, dense_max=0, krylov_dim=80, with_bound=True)))
    rhos, _ = batched(jnp.stack([z, 0.5 * z]))
    assert float(rhos[0]) == pytest.approx(exact, abs=1e-6)


def test_spectral_radius_of_scalar_contraction_is_one_minus_eps_k():
    system = ScalarContraction(z_star=1.0)
    rho = flowsim.spectral_radius(system.field, jnp.array([0.3]), {"k": 0.7}, None, 0.1)
    assert abs(float(rho) - (1 - 0.1 * 0.7)) < 1e-15


def test_cosine_relative_error_residual_closed_forms():
    a = {"u": jnp.array([1.0, 0.0]), "v": jnp.array([[0.0]])}
    b = {"u": jnp.array([1.0, 1.0]), "v": jnp.array([[0.0]])}
    assert abs(float(flowsim.cosine(a, b)) - 1 / np.sqrt(2)) < 1e-15
    assert abs(float(flowsim.relative_error(a, b)) - 1 / np.sqrt(2)) < 1e-15
    assert np.isnan(float(flowsim.cosine(a, {"u": jnp.zeros(2), "v": jnp.zeros((1, 1))})))
    field = lambda z, p, x: -p * z  # noqa: E731
    assert abs(float(flowsim.residual(field, jnp.array([3.0, 4.0]), 2.0, None)) - 10.0) < 1e-14


def test_relax_is_exactly_t_euler_steps():
    system = ScalarContraction(z_star=1.0)
    k, dt, steps, z0 = 0.9, 0.3, 37, -2.0
    z_t = flowsim.relax(system.field, jnp.asarray(z0), {"k": k}, None, steps=steps, dt=dt)
    assert abs(float(z_t) - (1.0 + (1 - dt * k) ** steps * (z0 - 1.0))) < 1e-14


def test_steady_state_relaxation_stops_on_the_field():
    """z(t) = z* + (z0 − z*) e^{−kt}: ‖F‖ = k|z − z*| falls below steady_tol at
    t = ln(k|z0 − z*| / tol)/k; the solve stops there, not at t_final."""
    system = ScalarContraction(z_star=0.5)
    k, tol = 2.0, 1e-8
    z, info = flowsim.relax(system.field, jnp.asarray(3.0), {"k": k}, None, steps=None, dt=0.01,
                            steady_tol=tol, rtol=1e-10, atol=1e-12)
    assert flowsim.result_name(info["result"]) == "successful"
    assert float(info["residual"]) < tol and abs(float(z) - 0.5) < tol / k
    t_stop = np.log(k * 2.5 / tol) / k
    assert t_stop <= float(info["t_final"]) < 1.2 * t_stop  # the step it became true, not 1e4


def test_steady_state_that_is_not_reached_is_a_result():
    system = ScalarContraction(z_star=0.5)
    # the flow needs t ≈ 9.7 to settle; it is given 2
    z, info = flowsim.relax(system.field, jnp.asarray(3.0), {"k": 2.0}, None, steps=None,
                            dt=0.01, steady_tol=1e-8, t_final=2.0)
    assert flowsim.result_name(info["result"]) == "not_steady"
    assert abs(float(info["residual"]) - 2.0 * 2.5 * np.exp(-4.0)) < 1e-5
    # and a step budget that runs out is reported as such
    _, info = flowsim.relax(system.field, jnp.asarray(3.0), {"k": 2.0}, None, steps=None,
                            dt=0.01, steady_tol=1e-8, max_steps=3)
    assert flowsim.result_name(info["result"]) == "max_steps_reached"
    # a finite-time flow reaching t_final is what it was asked for
    flow = flowsim.SteadyState(t_final=2.0, stop_at_steady=False, require_steady=False)
    z, info = flow.solve(system.field, jnp.asarray(3.0), {"k": 2.0}, None)
    assert flowsim.result_name(info["result"]) == "successful"
    assert abs(float(z) - (0.5 + 2.5 * np.exp(-4.0))) < 1e-6


def test_equilibrium_of_a_20000_dimensional_state_stays_matrix_free():
    # A dense Jacobian would be 20,000² float64 = 3.2 GB; the solve must stay far below.
    code = textwrap.dedent("""
        import resource, jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp, flowsim
        from flowsim.systems import AsymmetricTanh
        system = AsymmetricTanh(200, 8)
        params = system.init_params(jax.random.PRNGKey(0), gain=0.9)
        x = jax.random.normal(jax.random.PRNGKey(1), (100, 8))
        z, info = flowsim.equilibrium(system.field, jnp.zeros((100, 200)), params, x)
        print(flowsim.result_name(info["result"]), float(info["residual"]),
              resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "successful"
    assert float(out[1]) < 1e-8  # ‖F(z*)‖ over all 20,000 entries
    assert float(out[2]) < 2048  # peak resident MB of the whole process


def test_failed_newton_is_retried_after_more_relaxation():
    """F(z) = −arctan(z − a): the flow contracts to z* = a from anywhere, but
    undamped Newton, z ← z + arctan(z − a)(1 + (z − a)²), diverges from
    |z − a| > 1.39. From z − a = 3 with no relaxation Newton fails; one retry
    after 100 Euler steps of 0.1 (z − a ≈ 0.05 by then) converges to a."""
    a = jnp.array([0.7, -1.3])
    field = lambda z, params, x: -jnp.arctan(z - params)
    z0 = a + 3.0
    no_retry = flowsim.EquilibriumSolver(relax_steps=0, retries=0)
    _, info = flowsim.equilibrium(field, z0, a, None, no_retry)
    assert flowsim.result_name(info["result"]) != "successful"
    retry = flowsim.EquilibriumSolver(relax_steps=0, retries=2, retry_relax_steps=100)
    z_star, info = flowsim.equilibrium(field, z0, a, None, retry)
    assert flowsim.result_name(info["result"]) == "successful"
    assert int(info["retries"]) == 1
    np.testing.assert_allclose(z_star, a, rtol=0, atol=1e-12)
    # a retry that never relaxes far enough is reported as a failure, not a number
    short = flowsim.EquilibriumSolver(relax_steps=0, retries=2, retry_relax_steps=1)
    _, info = flowsim.equilibrium(field, z0, a, None, short)
    assert flowsim.result_name(info["result"]) == "equilibrium_failed" and int(info["retries"]) == 2
