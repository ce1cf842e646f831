"""coordinator-scale's kit: the random graph it builds, its raw floor energy, and the vmapped sweep."""

import jax
import jax.numpy as jnp
import numpy as np

import flowsim
from flowsim.coordinator import ProjectedGradient, relax
from flowsim.coordinator import scaling as cg


def test_random_system_has_the_edges_it_promises():
    n, per = 50, 3
    system = cg.random_system(n, per, seed=4)
    landau, *couplings = system.terms
    assert [type(t).__name__ for t in couplings] == ["Quadratic", "DirectedHinge", "GateBenefit"]
    np.testing.assert_array_equal(landau.index, np.arange(n))
    i = np.concatenate([np.asarray(t.i) for t in couplings])
    j = np.concatenate([np.asarray(t.j) for t in couplings])
    assert i.size == per * n and [t.i.size for t in couplings] == [50, 50, 50]
    assert i.min() >= 0 and i.max() < n and j.min() >= 0 and j.max() < n
    assert not np.any(i == j)  # no self-loops
    for t in couplings:  # dealt in turn from a list sorted by i: each family stays sorted
        assert np.all(np.diff(np.asarray(t.i)) >= 0)
    system.check()
    # the same seed draws the same graph, another seed another one
    np.testing.assert_array_equal(cg.random_system(n, per, seed=4).terms[1].j, couplings[0].j)
    assert not np.array_equal(cg.random_system(n, per, seed=5).terms[1].j, couplings[0].j)


def test_edge_offsets_cover_every_other_module():
    i, j = cg.random_edges(4, 4000, np.random.default_rng(0))
    pairs = set(zip(i.tolist(), j.tolist(), strict=True))
    assert pairs == {(a, b) for a in range(4) for b in range(4) if a != b}


def test_raw_energy_is_the_engine_energy_by_brute_force():
    """The floor's hand-written 𝓕 and the engine's, against a per-term numpy loop."""
    system = cg.random_system(12, 2, seed=1)
    eta = np.asarray(cg.initial_state(12, seed=2))
    landau, quad, hinge, gates = (jax.tree.map(np.asarray, t) for t in system.terms)
    brute = sum(a * x**2 + b * x**4 - h * x
                for a, b, h, x in zip(landau.a, landau.b, landau.h, eta, strict=True))
    brute += sum(w * (eta[i] - eta[j]) ** 2 for i, j, w in zip(quad.i, quad.j, quad.weight,
                                                               strict=True))
    brute += sum(w * max(0.0, eta[j] - eta[i]) ** 2
                 for i, j, w in zip(hinge.i, hinge.j, hinge.weight, strict=True))
    for i, j, w, s, c, k in zip(gates.i, gates.j, gates.weight, gates.slope, gates.cost, gates.k,
                                strict=True):
        brute -= w * eta[i] / (1.0 + np.exp(-k * (s * eta[j] - c)))
    raw = jax.jit(jax.value_and_grad(cg.raw_energy(system)))
    engine = jax.jit(jax.value_and_grad(system))  # jitted: eager dispatch compiles op by op
    (f_raw, g_raw), (f_engine, g_engine) = raw(jnp.asarray(eta)), engine(jnp.asarray(eta))
    assert abs(float(f_engine) - brute) < 1e-12 and abs(float(f_raw) - brute) < 1e-12
    np.testing.assert_allclose(g_raw, g_engine, rtol=0, atol=1e-13)


def test_with_parameters_shifts_a_and_sets_the_cost():
    system = cg.random_system(10, 2, seed=0)
    moved = cg.with_parameters(system, 0.25, 0.9)
    np.testing.assert_allclose(moved.terms[0].a, np.asarray(system.terms[0].a) + 0.25)
    np.testing.assert_array_equal(moved.terms[3].cost, np.full(moved.terms[3].i.shape, 0.9))


def test_vmapped_sweep_equals_separate_public_solves():
    n, points = 40, 2
    solver = ProjectedGradient(tol=1e-7)
    found, together = cg.sweep(n, points, seed=3, repeats=1, solver=solver)
    assert found["sweep_configurations"] == points**3
    base = cg.random_system(n, 2, seed=3)
    shifts, costs, eta0s = cg.sweep_grid(n, points, seed=3)
    for k in range(points**3):
        # through the public relax (host checks, its own jit), not the sweep's program
        alone = relax(cg.with_parameters(base, float(shifts[k]), float(costs[k])), eta0s[k],
                      solver)
        np.testing.assert_allclose(together.eta[k], alone.eta, rtol=0, atol=1e-12)
        assert int(together.steps[k]) == int(alone.steps)
        assert flowsim.result_name(alone.result) == "successful"
    assert found["sweep_same_steps"] == 1.0 and found["sweep_max_abs_diff"] < 1e-12
