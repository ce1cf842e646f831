"""The coordinator's energy, gate, relaxation and flow against closed forms.

Every expected number is a closed form (Landau minima, the a = 0 flow, a
quadratic pair's linear solve) or an independent computation (a dense grid,
finite differences of the solver itself, the flow's convergence order).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsim
from flowsim.coordinator import (
    AsymmetricHinge,
    Coordinator,
    DirectedHinge,
    GateBenefit,
    Landau,
    OneSided,
    ProjectedGradient,
    ProjectedGradientFlow,
    Quadratic,
    delta_f90,
    flow,
    gate,
    hazard_gate,
    relax,
)
from flowsim.coordinator.relax import TRIAL_STEPS

TIGHT = ProjectedGradient(tol=1e-12)


def test_the_hazard_gate_is_the_logistic_function():
    net = np.linspace(-8.0, 8.0, 161)
    for k in (0.5, 1.0, 3.0):
        logistic = 1.0 / (1.0 + np.exp(-k * net))
        np.testing.assert_allclose(np.asarray(hazard_gate(jnp.asarray(net), k)), logistic,
                                   rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(np.asarray(gate(jnp.asarray(net), k)), logistic, rtol=1e-14)
    assert float(gate(0.0, 7.0)) == 0.5


def test_landau_minima_are_the_closed_form():
    a = jnp.array([-1.5, -0.8, -0.3, -0.05, 0.2, 1.0, -3.0])
    b = 1.0
    system = Coordinator(a.size, [Landau(jnp.arange(a.size), a, b)])
    r = relax(system, jnp.full(a.size, 0.5), TIGHT)
    expected = np.where(np.asarray(a) < 0, np.sqrt(np.maximum(-np.asarray(a), 0) / (2 * b)), 0.0)
    expected = np.minimum(expected, 1.0)  # a = -3: sqrt(1.5) > 1, the bound holds it at 1
    np.testing.assert_allclose(np.asarray(r.eta), expected, atol=1e-9)
    assert flowsim.result_name(r.result) == "successful"


def test_flow_at_a_zero_is_the_closed_form():
    # F = b η⁴: η̇ = −4bη³, so η⁻² grows as 8bt.
    b = 0.7
    system = Coordinator(3, [Landau(jnp.arange(3), 0.0, b)])
    eta0 = jnp.array([0.9, 0.5, 0.2])
    ts = jnp.linspace(0.0, 5.0, 11)
    sol = flow(system, eta0, ts)
    exact = (np.asarray(eta0)[None] ** -2 + 8 * b * np.asarray(ts)[:, None]) ** -0.5
    np.testing.assert_allclose(np.asarray(sol.eta), exact, atol=1e-7)


def test_quadratic_pair_minimum_is_the_linear_solve():
    # α(1 − η0)² + a η1² + w(η0 − η1)² (b = 1e-12 leaves the quartic out to ~1e-12):
    # the stationarity conditions are linear.
    alpha, a, w = 2.0, 0.5, 1.5
    system = Coordinator(2, [OneSided([0], alpha), Landau([1], a, 1e-12), Quadratic([0], [1], w)])
    r = relax(system, jnp.array([0.1, 0.9]), TIGHT)
    matrix = np.array([[alpha + w, -w], [-w, a + w]])
    expected = np.linalg.solve(matrix, np.array([alpha, 0.0]))
    np.testing.assert_allclose(np.asarray(r.eta), expected, atol=1e-9)


def _random_system(n, edges, w_max, seed):
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, n, edges), rng.integers(0, n, edges)
    return Coordinator(n, [
        Landau(jnp.arange(n), rng.normal(size=n), 1.0, 0.2 * rng.normal(size=n)),
        Quadratic(i[: edges // 2], j[: edges // 2], rng.uniform(0, w_max, edges // 2)),
        DirectedHinge(i[edges // 2:], j[edges // 2:], rng.uniform(0, w_max, edges - edges // 2)),
        GateBenefit(j[:5], i[:5], slope=2.0, cost=0.5, k=4.0, weight=1.0),
    ]), jnp.asarray(rng.uniform(size=n))


@pytest.mark.parametrize("trial_step", TRIAL_STEPS)
def test_energy_never_rises_with_stiff_couplings_and_the_best_state_is_returned(trial_step):
    system, eta0 = _random_system(200, 400, 200.0, seed=3)
    # a trial step far too long for w = 200: the line search must cut it every time
    solver = ProjectedGradient(step=10.0, trial_step=trial_step, max_steps=6000)
    r = relax(system, eta0, solver)
    trace = np.asarray(r.energies)[: int(r.steps) + 1]
    assert np.all(np.diff(trace) <= 0.0)
    assert float(r.energy) == trace.min()
    np.testing.assert_allclose(float(system(r.eta)), float(r.energy), rtol=1e-14)
    assert float(jnp.min(r.eta)) >= 0.0 and float(jnp.max(r.eta)) <= 1.0
    assert int(r.evaluations) > int(r.steps)  # it did backtrack
    if trial_step != "fixed":  # it ends at the roundoff floor or the tolerance, close to stationary
        assert float(r.stationarity) < 1e-4


def test_a_step_that_cannot_lower_the_energy_is_refused():
    # At the minimum nothing lowers 𝓕: a zero tolerance forces trials, and each one fails.
    system = Coordinator(1, [Landau([0], -1.0, 1.0)])
    eta_star = jnp.array([np.sqrt(0.5)])
    r = relax(system, eta_star, ProjectedGradient(tol=0.0, max_backtracks=5))
    assert flowsim.result_name(r.result) == "line_search_failed"
    assert int(r.steps) == 0 and int(r.evaluations) == 1 + 6
    assert float(r.energy) == float(r.energy0)
    np.testing.assert_array_equal(np.asarray(r.eta), np.asarray(eta_star))


def test_projected_euler_converges_to_the_flow_at_first_order():
    system, eta0 = _random_system(30, 60, 2.0, seed=0)
    t_end = 0.5
    exact = flow(system, eta0, jnp.array([0.0, t_end]),
                 ProjectedGradientFlow(rtol=1e-11, atol=1e-12)).eta[-1]
    errors = []
    for steps in (50, 100):
        solver = ProjectedGradient(step=t_end / steps, trial_step="fixed", tol=0.0,
                                   max_steps=steps, armijo=0.0)
        r = relax(system, eta0, solver)
        assert int(r.steps) == steps  # every Euler step was accepted (it lowers 𝓕)
        errors.append(float(jnp.max(jnp.abs(r.eta - exact))))
    np.testing.assert_allclose(np.log2(errors[0] / errors[1]), 1.0, atol=0.15)


def test_flow_and_solver_reach_the_same_minimum():
    system, eta0 = _random_system(40, 80, 5.0, seed=1)
    r = relax(system, eta0, TIGHT)
    sol = flow(system, eta0, jnp.array([0.0, 200.0]))
    np.testing.assert_allclose(np.asarray(sol.eta[-1]), np.asarray(r.eta), atol=1e-6)
    assert np.all(np.diff(np.asarray(sol.energies)) <= 1e-12)


def test_asymmetric_hinge_and_gate_terms_against_direct_formulas():
    eta = jnp.array([0.2, 0.7, 0.4])
    hinge = AsymmetricHinge([0, 2], [1, 0], alpha=[1.5, 0.5], beta=[0.8, 2.0], weight=[2.0, 3.0])
    expected = 2.0 * max(0, 0.8 * 0.7 - 1.5 * 0.2) ** 2 + 3.0 * max(0, 2.0 * 0.2 - 0.5 * 0.4) ** 2
    np.testing.assert_allclose(float(hinge.energy(eta)), expected, rtol=1e-14)
    gated = GateBenefit([0], [1], gain=0.1, slope=2.0, cost=0.9, k=3.0, weight=1.5)
    net = 0.1 + 2.0 * 0.7 - 0.9
    np.testing.assert_allclose(float(gated.energy(eta)),
                               -1.5 * 0.2 / (1 + np.exp(-3.0 * net)), rtol=1e-14)
    system = Coordinator(3, [hinge, gated])
    np.testing.assert_allclose(float(jnp.sum(system.family_energies(eta))), float(system(eta)),
                               rtol=1e-14)
    doubled = system.scaled([2.0, 1.0])
    np.testing.assert_allclose(float(doubled(eta)), float(system(eta) + hinge.energy(eta)),
                               rtol=1e-14)


def test_delta_f90_counts_from_the_initial_energy():
    system = Coordinator(1, [Landau([0], 1.0, 1.0)])
    r = relax(system, jnp.array([0.9]), ProjectedGradient(step=0.05, trial_step="fixed",
                                                          tol=1e-10))
    trace = np.asarray(r.energies)[: int(r.steps) + 1]
    target = trace[0] - 0.9 * (trace[0] - trace[-1])
    assert int(delta_f90(r)) == int(np.argmax(trace <= target)) > 1


def test_relaxation_vmaps_over_systems():
    from flowsim.coordinator.relax import relax

    a = jnp.array([-1.0, -0.5, 0.3])

    def one(a_value):
        system = Coordinator(2, [Landau(jnp.arange(2), a_value, 1.0), Quadratic([0], [1], 0.5)])
        return relax(system, jnp.array([0.4, 0.6]), TIGHT).eta

    batched = jax.vmap(one)(a)
    for k in range(a.size):
        np.testing.assert_allclose(np.asarray(batched[k]), np.asarray(one(a[k])), atol=1e-12)


def test_float32_relaxation_matches_float64_to_its_precision():
    system, eta0 = _random_system(50, 100, 3.0, seed=2)
    r64 = relax(system, eta0)
    to32 = lambda t: jax.tree.map(lambda u: u.astype(jnp.float32)
                                  if jnp.issubdtype(u.dtype, jnp.floating) else u, t)
    r32 = relax(to32(system), eta0.astype(jnp.float32))
    assert r32.eta.dtype == jnp.float32
    assert flowsim.result_name(r32.result) in ("successful", "line_search_failed")
    # The solve stops at a projected step ‖·‖∞ ≤ √ε; the state is off by that over the
    # local curvature (here no smaller than about 0.1).
    np.testing.assert_allclose(np.asarray(r32.eta), np.asarray(r64.eta),
                               atol=10 * float(jnp.finfo(jnp.float32).eps) ** 0.5)


@pytest.mark.parametrize("build, message", [
    (lambda: (Coordinator(2, [Landau([0, 1], -1.0, 1.0)]), [0.5, 1.2]), "eta0 must lie in [0, 1]"),
    (lambda: (Coordinator(2, [Landau([0, 1], -1.0, 0.0)]), [0.5, 0.5]), "b must be > 0"),
    (lambda: (Coordinator(2, [Quadratic([0], [2], 1.0)]), [0.5, 0.5]), "index 2 names no module"),
    (lambda: (Coordinator(2, [Quadratic([0], [1], -1.0)]), [0.5, 0.5]),
     "weight must be finite and >= 0"),
])
def test_bad_input_is_one_clear_line(build, message):
    system, eta0 = build()
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        relax(system, jnp.asarray(eta0))
    assert "\n" not in str(err.value)
