"""The ep-wall / ep-decisive / ep-fixes studies: their rules.

The chain end to end (ep-wall, then ep-decisive and ep-fixes from its EP checkpoint)
runs in tests/test_every_scenario.py, in one process with the studies' small runs,
which compile the same programs.
"""

import math

import pytest
from flowsim.studies import ep_decisive, ep_wall

from flowsim.train import Outcome


@pytest.mark.parametrize("args, verdict", [
    ((False, True, True, True, False, 1.0), "inconclusive"),  # no wall: nothing to clear
    ((True, True, True, True, False, 1.0), "a"),  # cleared with rho near BPTT's
    ((True, True, True, False, False, 1.0), "inconclusive"),  # cleared, but rho drifted
    ((True, False, False, False, True, 0.999), "b"),  # blew up with an exact gradient
    ((True, False, False, False, True, 0.95), "inconclusive"),  # blew up, gradient not exact
])
def test_decision_rule(args, verdict):
    assert ep_decisive.decide(*args)[0] == verdict


def _rows(ces, rhos):
    return [{"step": 100 * i, "val_ce": ce, "rho_max": rho, "residual_max": 1e-3}
            for i, (ce, rho) in enumerate(zip(ces, rhos))]


def test_wall_summary_finds_the_best_step_and_bptt_there():
    bptt = Outcome("ok", 400, _rows([4.0, 3.0, 2.8, 2.6, 2.5], [0.9, 0.91, 0.92, 0.93, 0.94]), 2.5)
    ep = Outcome("ok", 400, _rows([4.0, 3.1, 2.7, 2.9, 3.0], [0.9, 0.95, 0.97, 0.99, 0.995]), 2.7)
    out = ep_wall.summarise({"bptt": bptt, "ep": ep}, ("bptt", "ep"), tolerance=0.05)
    assert out["wall"] and out["ep_wall_step"] == 200 and out["ep_wall_ce"] == 2.7
    assert out["bptt_val_ce_at_wall"] == 2.8 and out["bptt_rho_at_wall"] == 0.92
    assert out["ep_rho_final"] == 0.995 and out["val_ce"] == 2.5
    # still improving within the tolerance: no wall
    ep = Outcome("ok", 400, _rows([4.0, 3.1, 2.7, 2.72, 2.74], [0.9] * 5), 2.7)
    assert not ep_wall.summarise({"bptt": bptt, "ep": ep}, ("bptt", "ep"), 0.05)["wall"]
    # a diverged EP run is a wall wherever BPTT is
    ep = Outcome("diverged", 300, _rows([4.0, 3.1, 2.7, math.nan], [0.9] * 4), 2.7, "rho 1.01 >= 1")
    out = ep_wall.summarise({"bptt": bptt, "ep": ep}, ("bptt", "ep"), 0.05)
    assert out["wall"] and out["ep_wall_step"] == 200 and out["ep_reason"] == "rho 1.01 >= 1"
