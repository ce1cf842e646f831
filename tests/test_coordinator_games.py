"""2×2 games and replicator dynamics (flowsim.coordinator.games), against numbers worked by hand.

Both payoff matrices are indexed [row action, column action], action 1 = defect;
p, q = P(defect) of the row and the column player.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowsim.cli import main
from flowsim.coordinator import games

PD_ROW = [[3.0, 0.0], [5.0, 1.0]]
PD_COL = [[3.0, 5.0], [0.0, 1.0]]
# Row: D dominant (Δ_row ≡ 1). Column, read correctly ([row action, col action]): C dominant
# (col[a, 0] − col[a, 1] = 2 for both a); read transposed (col[b, a]): D dominant.
ASYM_ROW = [[1.0, 0.0], [2.0, 1.0]]
ASYM_COL = [[2.0, 0.0], [3.0, 1.0]]
POINTS = 41  # one saved-times shape for every path here: one compilation


def _path(game, p0, q0, t1):
    return games.replicator(game, p0, q0, t1, ts=jnp.linspace(0.0, t1, POINTS))


def _logit(p):
    return math.log(p / (1 - p))


def test_prisoners_dilemma_ends_in_mutual_defection_with_regrets_falling_like_e_minus_t():
    game = games.Game2x2(PD_ROW, PD_COL)
    path = _path(game, 0.1, 0.2, 40.0)
    assert games.RESULTS.successful == path.result
    assert float(path.p[-1]) > 1 - 1e-15 and float(path.q[-1]) > 1 - 1e-15
    assert 0 < float(path.regret_row[-1]) < 1e-15 and 0 < float(path.regret_col[-1]) < 1e-15
    # Δ_row(q) = 2 − q ≥ 1, so x(t) ≥ x0 + t and regret_row ≤ 2 e^{−x0 − t} (module docstring)
    t = np.asarray(path.ts)
    assert np.all(np.asarray(path.regret_row) <= 2 * np.exp(-_logit(0.1) - t) * (1 + 1e-8))
    assert np.all(np.asarray(path.regret_col) <= 2 * np.exp(-_logit(0.2) - t) * (1 + 1e-8))
    # asymptotic rate Δ_row(1) = 1: ten time units later the regret is e^{−10} smaller
    i30, i40 = POINTS * 3 // 4, POINTS - 1
    assert float(t[i30]) == pytest.approx(30.0)
    ratio = float(jnp.log(path.regret_row[i40] / path.regret_row[i30]))
    assert ratio == pytest.approx(-10.0, abs=1e-6)
    assert games.nash_equilibria(game) == [(1.0, 1.0)]


def test_asymmetric_game_catches_a_transposed_column_matrix():
    game = games.Game2x2(ASYM_ROW, ASYM_COL)
    path = _path(game, 0.3, 0.6, 30.0)
    assert float(path.p[-1]) > 1 - 1e-9 and float(path.q[-1]) < 1e-9  # (D, C)
    assert float(path.regret_row[-1]) < 1e-9 and float(path.regret_col[-1]) < 1e-9
    assert games.nash_equilibria(game) == [(1.0, 0.0)]

    transposed = games.Game2x2(ASYM_ROW, np.asarray(ASYM_COL).T)
    wrong = _path(transposed, 0.3, 0.6, 30.0)
    assert float(wrong.p[-1]) > 1 - 1e-9 and float(wrong.q[-1]) > 1 - 1e-9  # (D, D)
    # scored under the true game, the column player there regrets col[1,0] − col[1,1] = 2
    regret_row, regret_col = games.regrets_logodds(game, wrong.x[-1], wrong.y[-1])
    assert float(regret_row) < 1e-9 and float(regret_col) == pytest.approx(2.0, abs=1e-9)


@pytest.mark.parametrize(("row", "col", "expected"), [
    # PD at p = 1/4, q = 1/2: u_row = (1.5, 3), mix 1.875; u_col = (2.25, 4), mix 3.125
    (PD_ROW, PD_COL, (1.125, 0.875)),
    # u_row = (0.5, 1.5), mix 0.75; u_col = (0.75·2 + 0.25·3, 0.75·0 + 0.25·1) = (2.25, 0.25),
    # mix 1.25
    (ASYM_ROW, ASYM_COL, (0.75, 1.0)),
])
def test_regret_at_a_mixed_profile_by_hand(row, col, expected):
    game = games.Game2x2(row, col)
    got = games.regrets(game, 0.25, 0.5)
    assert [float(r) for r in got] == pytest.approx(expected, abs=1e-14)
    stable = games.regrets_logodds(game, _logit(0.25), 0.0)
    assert [float(r) for r in stable] == pytest.approx(expected, abs=1e-14)


def test_regret_is_zero_exactly_at_the_pure_equilibrium_and_not_elsewhere():
    game = games.Game2x2(ASYM_ROW, ASYM_COL)
    assert [float(r) for r in games.regrets(game, 1.0, 0.0)] == [0.0, 0.0]
    assert [float(r) for r in games.regrets(game, 1.0, 1.0)] == [0.0, 2.0]
    assert [float(r) for r in games.regrets(game, 0.0, 0.0)] == [1.0, 0.0]


def test_matching_pennies_cycles_on_a_level_set_of_the_first_integral():
    game = games.Game2x2([[1.0, -1.0], [-1.0, 1.0]], [[-1.0, 1.0], [1.0, -1.0]])
    assert games.nash_equilibria(game) == [(0.5, 0.5)]
    # here H = −2 Σ softplus(±x) + softplus(±y): −8 log 2 at the centre
    assert float(games.first_integral(game, 0.0, 0.0)) == pytest.approx(-8 * math.log(2))
    path = _path(game, 0.1, 0.2, 50.0)
    H = jax.vmap(games.first_integral, in_axes=(None, 0, 0))(game, path.x, path.y)
    assert float(jnp.max(jnp.abs(H - H[0]))) < 1e-7 * abs(float(H[0]))
    other = _path(game, 0.3, 0.4, 1.0)
    assert abs(float(games.first_integral(game, other.x[0], other.y[0])) - float(H[0])) > 1
    # no convergence: over the last ~two periods (2π near the centre) a regret stays large
    late = np.asarray(path.ts) > 38
    assert np.max(np.asarray(path.regret_row)[late] + np.asarray(path.regret_col)[late]) > 0.5
    assert 0.01 < float(jnp.min(path.p)) and float(jnp.max(path.p)) < 0.99


def test_first_integral_holds_for_a_general_sum_game_too():
    game = games.Game2x2(ASYM_ROW, [[0.0, -1.0], [0.0, 2.0]])
    path = _path(game, 0.6, 0.3, 20.0)
    H = jax.vmap(games.first_integral, in_axes=(None, 0, 0))(game, path.x, path.y)
    assert float(jnp.max(jnp.abs(H - H[0]))) < 1e-8 * (1 + float(jnp.max(jnp.abs(H))))


def test_logodds_path_matches_the_closed_form():
    # Δ_row ≡ c, so x(t) = x0 + c t; Δ_col(p) = (1 − p) a0 + p a1 with p = σ(x0 + c s), so
    # y(t) = y0 + a0 t + (a1 − a0)/c · [softplus(x0 + c t) − softplus(x0)].
    c, a0, a1 = 0.7, -1.0, 2.0
    game = games.Game2x2([[0.0, 0.0], [c, c]], [[0.0, a0], [0.0, a1]])
    x0, y0 = _logit(0.2), _logit(0.9)
    path = _path(game, 0.2, 0.9, 12.0)
    t = np.asarray(path.ts)
    y = y0 + a0 * t + (a1 - a0) / c * (np.logaddexp(0.0, x0 + c * t) - np.logaddexp(0.0, x0))
    np.testing.assert_allclose(np.asarray(path.x), x0 + c * t, rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(path.y), y, rtol=0, atol=1e-8)
    np.testing.assert_allclose(np.asarray(path.p), 1 / (1 + np.exp(-(x0 + c * t))), atol=1e-12)


@pytest.mark.parametrize(("row", "col", "expected"), [
    ([[1.0, 2.0]], PD_COL, "row payoffs must be a 2x2 matrix"),
    (PD_ROW, [[1.0, 2.0], [3.0]], "col payoffs must be a 2x2 matrix of numbers"),
    (PD_ROW, [[1.0, 2.0], [3.0, math.inf]], "col payoffs must be finite"),
    (np.zeros((2, 2, 1)), PD_COL, "got shape (2, 2, 1)"),
])
def test_bad_games_are_one_line_value_errors(row, col, expected):
    with pytest.raises(ValueError, match=None) as error:
        games.Game2x2(row, col)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_pure_starts_are_refused():
    with pytest.raises(ValueError, match=r"p0 must be in the open interval \(0, 1\)"):
        games.replicator(games.Game2x2(PD_ROW, PD_COL), 1.0, 0.5, 1.0)


def test_default_config_is_the_prisoners_dilemma_with_col_the_transpose_of_row():
    from flowsim.studies.nash import Config

    payoff = Config().payoff
    assert payoff.row == PD_ROW and payoff.col == PD_COL
    assert np.array_equal(np.asarray(payoff.col), np.asarray(payoff.row).T)


@pytest.mark.parametrize(("setting", "expected"), [
    ("payoff.row=[[1,2]]", "payoff.row: row payoffs must be a 2x2 matrix"),
    ("payoff.col=[[1,2],[3]]", "payoff.col: col payoffs must be a 2x2 matrix"),
    ("p0=1.0", "p0 = 1.0: must be < 1"),
    ("q0=0", "q0 = 0: must be > 0"),
])
def test_bad_nash_config_is_one_line_exit_2(tmp_path, capsys, setting, expected):
    out = tmp_path / "out"
    assert main(["run", "nash", "--set", setting, "--out", str(out)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("flowsim: error: ") and expected in lines[0]
    assert not out.exists()
