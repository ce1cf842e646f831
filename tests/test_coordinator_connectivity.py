"""connectivity-shift's pieces against independent computations.

The relaxed coordinator against a dense numpy solve of its stationarity
equations, the graph search against hand-made grids, the bisected thresholds
against their defining property, a gate against its open/shut cases, and the
crossing estimator against curves whose crossing is known.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flowsim.studies import connectivity_model as model
from flowsim.studies.connectivity_shift import Config
from pydantic import ValidationError

from flowsim.coordinator import ProjectedGradient, relax

TIGHT = ProjectedGradient(max_steps=20_000, tol=1e-12)


def _none(trials):
    empty = np.zeros((trials, 1), int)
    return empty, empty, np.zeros((trials, 1))


def _dense_solve(n, edges, energy):
    """Solve (w L + a I + α P_left) η = α 1_left, the gate-free 𝓕's stationarity with b = 0."""
    size = n * n
    matrix = energy.leak * np.eye(size)
    for i, j, w in edges:
        matrix[[i, j], [i, j]] += w
        matrix[i, j] -= w
        matrix[j, i] -= w
    rhs = np.zeros(size)
    rhs[model.left_sites(n)] = energy.pin
    matrix[model.left_sites(n), model.left_sites(n)] += energy.pin
    return np.linalg.solve(matrix, rhs)


def test_relaxed_eta_is_the_linear_solve_of_the_resistor_network():
    # A leak large enough that η falls visibly across the grid (0 < η < 1 inside:
    # the box does not bind, so the minimiser is the linear solve); two trials in
    # one block-diagonal coordinator, with a Quadratic shortcut in the second.
    n, energy = 4, model.Energy(leak=0.05, quartic=1e-12, pin=2.0, bond=1.5)
    bi, bj = model.lattice_bonds(n)
    rng = np.random.default_rng(3)
    open_ = rng.uniform(size=(2, bi.size)) < 0.7
    shortcut = (np.array([[0], [5]]), np.array([[3], [15]]), np.array([[0.0], [energy.bond]]))
    system = model.coordinator(n, 2, energy.bond * open_, shortcut, _none(2), energy)
    r = relax(system, jnp.zeros(2 * n * n), TIGHT)
    eta = np.asarray(r.eta).reshape(2, n * n)
    for t in range(2):
        edges = [(i, j, energy.bond) for i, j, o in zip(bi, bj, open_[t], strict=True) if o]
        if t == 1:
            edges.append((5, 15, energy.bond))
        expected = _dense_solve(n, edges, energy)
        assert 0.05 < expected[expected > 1e-12].min() and expected.max() < 1  # interior
        np.testing.assert_allclose(eta[t], expected, atol=1e-8)


def test_graph_spanning_on_hand_made_grids():
    n = 5
    bi, bj = model.lattice_bonds(n)
    col_i, col_j = bi % n, bj % n
    row_i = bi // n
    full = np.ones(bi.size, bool)
    cut = ~((col_i == 2) & (col_j == 3))              # every bond from column 2 to 3 closed
    path = (row_i == 1) & (bj == bi + 1)              # one straight horizontal path on row 1
    broken = path & ~((bi == 1 * n + 2) & (bj == 1 * n + 3))
    open_ = np.stack([full, cut, path, broken, ~full])
    lattice = (np.broadcast_to(bi, open_.shape), np.broadcast_to(bj, open_.shape), open_)
    assert model.spanning(n, 5, [lattice]).tolist() == [True, False, True, False, False]
    # a one-way edge from the left edge to the right edge spans; the reverse does not
    closed = (lattice[0][:2], lattice[1][:2], np.zeros((2, bi.size), bool))
    gate = (np.array([[0], [n - 1]]), np.array([[n - 1], [0]]), np.ones((2, 1), bool))
    assert model.spanning(n, 2, [closed], [gate]).tolist() == [True, False]


def test_bisected_thresholds_are_where_spanning_starts():
    n, trials = 6, 8
    disorder = model.draw_disorder(np.random.default_rng(0), n, trials, shortcuts=3)
    for arm in ("lattice", "shortcuts", "gated"):
        und, dirs = model.edges(disorder, arm, gates="one")
        p_t = model.thresholds(n, trials, und, dirs)[:, None]
        assert not model.spans_at(n, trials, und, dirs, p_t).any()
        assert model.spans_at(n, trials, und, dirs, np.nextafter(p_t, 1.0)).all()
    # shortcuts only add edges: no trial's threshold rises
    lat = model.thresholds(n, trials, *model.edges(disorder, "lattice"))
    short = model.thresholds(n, trials, *model.edges(disorder, "shortcuts"))
    assert np.all(short <= lat) and np.any(short < lat)


def test_a_gate_opens_only_when_its_source_is_connected():
    # n = 4; row 0's bond (0,0)-(0,1) open and nothing else: site 1 is connected,
    # site 3 (right edge) is isolated. A gate 1 -> 3 lifts site 3 to the bound;
    # the reverse gate 3 -> 1 leaves it at 0 (its source is not connected).
    n, energy = 4, model.Energy()
    bi, bj = model.lattice_bonds(n)
    bonds = np.zeros((2, bi.size))
    bonds[:, (bi == 0) & (bj == 1)] = energy.bond
    gates = (np.array([[1], [3]]), np.array([[3], [1]]), np.ones((2, 1)))
    system = model.coordinator(n, 2, bonds, _none(2), gates, energy)
    eta = np.asarray(relax(system, jnp.zeros(2 * n * n), TIGHT).eta).reshape(2, n * n)
    assert eta[0, 1] > 0.99 and eta[1, 1] > 0.99
    assert eta[0, 3] == 1.0                            # pushed with force w_g against leak 2a
    # the shut gate still pulls its source up (the benefit's derivative in η_src,
    # w_g k σ'(−k c) η_dst ≈ 7e-10) against the source's leak 2a η: a low fixed point
    # near 3.5e-4, far below the 1/2 that would open the gate
    assert eta[1, 3] < 1e-3


def test_crossing_of_known_curves():
    p = np.linspace(0.0, 1.0, 11)
    assert model.crossing(p, 2 * (p - 0.2)) == pytest.approx(0.45, abs=1e-12)  # linear: exact
    fine = np.linspace(0.3, 0.7, 401)
    assert model.crossing(fine, 1 / (1 + np.exp(-(fine - 0.47) / 0.02))) == \
        pytest.approx(0.47, abs=1e-4)
    assert model.crossing(p, np.ones(11)) == -np.inf
    assert model.crossing(p, np.zeros(11)) == np.inf


def test_bootstrap_crossing_of_step_curves_covers_the_median():
    # per-trial step curves with thresholds p_t ~ U(0.4, 0.6): the mean curve is the
    # empirical CDF, which crosses 1/2 near the median 0.5
    rng = np.random.default_rng(1)
    grid = np.linspace(0.3, 0.7, 41)
    p_t = rng.uniform(0.4, 0.6, size=400)
    steps = (p_t[:, None] < grid[None, :]).astype(float)
    index = model.bootstrap_indices(rng, 400, 400)
    low, high = model.percentile_ci(model.crossings(grid, steps, index))
    assert low < 0.5 < high and high - low < 0.04
    assert low <= model.crossing(grid, steps.mean(0)) <= high


def test_config_rejects_bad_grids():
    with pytest.raises(ValidationError, match="strictly increasing"):
        Config(sizes=[16, 8])
    with pytest.raises(ValidationError, match="below p_max"):
        Config(p_min=0.6, p_max=0.4)


def test_inverse_nu_fit_recovers_a_power_law_spread():
    # the same standardised draws scaled by n^(-3/4): the spreads fall exactly as n^(-3/4)
    z = np.random.default_rng(2).standard_normal(64)
    sizes = [8, 16, 32]
    p_t = {n: 0.5 + n ** -0.75 * z for n in sizes}
    point, low, high = model.inverse_nu_fit(sizes, p_t, np.random.default_rng(0), 200)
    assert point == pytest.approx(0.75, abs=1e-12)
    assert low < 0.75 < high
