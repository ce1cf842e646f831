"""An equilibrium the dynamics would not reach is a result code, never a number.

F(z; a) = a·z + 1 has the one root z* = −1/a; L = (z − y)²/2, so in closed form
dL/da = (z* − y)·dz*/da = (z* − y)/a². For a < 0 the root attracts the flow
(F_z = a); for a > 0 it repels it, and Newton finds it all the same.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import flowsim
from flowsim.diagnostics.stability import jacobian_eigenvalues, stability_margin

Y = 1.0


def _problem():
    return flowsim.Problem(lambda z, a, x: a * z + 1.0, lambda z, y: 0.5 * (z - y) ** 2)


def _closed_form(a):
    z_star = -1.0 / a
    return (z_star - Y) / a**2


def _gradient(rule, a):
    return flowsim.gradient(rule, _problem(), jnp.asarray(0.0), jnp.asarray(a), None,
                            jnp.asarray(Y))


def test_the_oracle_at_a_stable_root_is_the_closed_form():
    grad, info = _gradient(flowsim.Implicit(), -0.5)
    assert flowsim.result_name(info["result"]) == "successful"
    assert float(grad) == pytest.approx(_closed_form(-0.5), rel=1e-9)


@pytest.mark.parametrize("rule", [flowsim.Implicit(), flowsim.EP(0.01, 200, 0.1),
                                  flowsim.RBP(200, 0.1)], ids=["implicit", "ep", "rbp"])
def test_every_equilibrium_rule_refuses_a_repelling_root(rule):
    grad, info = _gradient(rule, 0.5)
    assert flowsim.result_name(info["result"]) == "unstable_equilibrium"
    assert bool(jnp.isnan(grad))


def test_the_oracle_at_an_unstable_root_on_request():
    """stability="ignore": L(z*) differentiated at the repelling root, as asked."""
    rule = flowsim.Implicit(equilibrium=flowsim.EquilibriumSolver(stability="ignore"))
    grad, info = _gradient(rule, 0.5)
    assert flowsim.result_name(info["result"]) == "successful"
    assert float(grad) == pytest.approx(_closed_form(0.5), rel=1e-9)  # −12


def test_euler_and_flow_criteria_differ_where_the_step_is_too_long():
    """a = −30, dt = 0.1: the flow contracts (λ = −30), the Euler map does not
    (|1 + dt λ| = 2); "euler" refuses the root, "flow" accepts it."""
    for stability, name in (("euler", "unstable_equilibrium"), ("flow", "successful")):
        solver = flowsim.EquilibriumSolver(relax_steps=0, dt=0.1, stability=stability)
        _, info = flowsim.solve(solver, _problem(), jnp.asarray(0.0), jnp.asarray(-30.0), None)
        assert flowsim.result_name(info["result"]) == name, stability
    assert float(info["stability"]) == pytest.approx(-30.0)


def test_a_saddle_is_found_by_a_few_arnoldi_steps():
    """F(z) = D z + 1 with D = diag(−1, ..., −1, +0.05) in 200 dimensions (beyond the
    dense path): one repelling direction among 199 attracting ones."""
    n = 200
    d = jnp.full(n, -1.0).at[17].set(0.05)
    field = lambda z, d, x: d * z + 1.0
    eigenvalues = jacobian_eigenvalues(field, jnp.zeros(n), d, None, steps=8)
    assert float(stability_margin(eigenvalues, "euler", 0.1)) == pytest.approx(1.005, abs=1e-6)
    problem = flowsim.Problem(field, lambda z, y: jnp.sum(z))
    _, info = flowsim.solve(flowsim.EquilibriumSolver(), problem, jnp.zeros(n), d, None)
    assert flowsim.result_name(info["result"]) == "unstable_equilibrium"


def test_a_batch_leaves_out_only_its_unstable_samples():
    """Per-sample solves: a = (−0.5, 0.5, −1): the middle sample is unstable, the
    estimate is the mean gradient over the other two."""
    field = lambda z, a, x: (a * x) * z + 1.0  # the sample's own a = a·x
    problem = flowsim.Problem(field, lambda z, y: 0.5 * (z - y) ** 2, batched=True)
    xs = jnp.array([-0.5, 0.5, -1.0])
    grad, info = flowsim.gradient(flowsim.Implicit(), problem, jnp.zeros(3), jnp.asarray(1.0),
                                  xs, jnp.full(3, Y))
    assert flowsim.result_name(info["result"]) == "samples_failed"
    assert int(info["failed_samples"]) == 1
    # d/da of L(z*(a·x)) = x · (z* − y)/(a x)², at a = 1, over the two stable samples
    expected = sum(x * _closed_form(x) for x in (-0.5, -1.0)) / 2
    assert float(grad) == pytest.approx(expected, rel=1e-9)


def test_a_jacobian_that_is_a_multiple_of_the_identity_is_stable_at_its_one_eigenvalue():
    """F(z) = −c z in 256 dimensions: F_z = −cI, every Arnoldi step breaks down (A q_1 is in
    span(q_1)). The Ritz values must all be −c (a plain Arnoldi normalises rounding errors
    into a basis that is not orthogonal, whose Ritz values are garbage: with matfree's,
    this test's margin was +0.56 on the FEP Q-flow whose Jacobian is −(1 + α)I)."""
    c = 1.001
    field = lambda z, c, x: -c * z
    eigenvalues = jacobian_eigenvalues(field, jnp.ones(256), c, None, steps=8)
    np.testing.assert_allclose(np.asarray(eigenvalues), -c, rtol=0, atol=1e-12)
    problem = flowsim.Problem(field, lambda z, y: jnp.sum(z))
    solver = flowsim.EquilibriumSolver(relax_steps=0, stability="flow")
    _, info = flowsim.solve(solver, problem, jnp.ones(256), c, None)
    assert flowsim.result_name(info["result"]) == "successful"
    assert float(info["stability"]) == pytest.approx(-c, abs=1e-12)


def test_arnoldi_through_breakdowns_is_a_factorisation_with_exact_ritz_values():
    """A = diag of −1, −2, −3 (each 100 times): the Krylov space of any start has dimension
    3, so 9 steps break down after 3 and 6 and restart: three invariant blocks. Q stays
    orthonormal, A Q = Q H + r e_kᵀ holds, and every Ritz value is one of the three
    eigenvalues, each of them found."""
    from flowsim.diagnostics.spectral import arnoldi_basis

    d = jnp.repeat(jnp.array([-1.0, -2.0, -3.0]), 100)
    Q, H, r = arnoldi_basis(lambda v: d * v, jnp.zeros(300), 9)
    Q, H, r = np.asarray(Q), np.asarray(H), np.asarray(r)
    np.testing.assert_allclose(Q.T @ Q, np.eye(9), atol=1e-12)
    e_k = np.eye(9)[-1]
    np.testing.assert_allclose(np.asarray(d)[:, None] * Q, Q @ H + np.outer(r, e_k), atol=1e-12)
    ritz = np.linalg.eigvals(H)
    nearest = np.min(np.abs(ritz[:, None] - np.array([-1.0, -2.0, -3.0])[None]), axis=1)
    assert np.max(nearest) < 1e-10
    assert {-1.0, -2.0, -3.0} <= set(np.round(ritz.real, 8))
