"""The ep-wall / ep-decisive / ep-fixes studies: their rules, and one chain end to end."""

import csv
import json
import math

import pytest
from flowsim.studies import ep_decisive, ep_wall
from test_scenarios import TINY_TRAIN, needs_data

from flowsim.cli import main
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


def _metrics(path):
    with path.open() as f:
        return [{k: (float(v) if k != "estimator" else v) for k, v in r.items()}
                for r in csv.DictReader(f)]


@pytest.mark.slow
@needs_data
def test_wall_then_decisive_then_fixes_continue_the_same_trajectory(tmp_path):
    tiny = [s for s in TINY_TRAIN if not s.startswith("train.steps")]
    sets = lambda extra: [arg for s in tiny + extra for arg in ("--set", s)]
    wall = tmp_path / "wall"
    assert main(["run", "ep-wall", "--out", str(wall)] + sets(
        ["train.steps=4", "wall.estimator='ep'", "ep.steps=20"])) in (0, 3)
    summary = json.loads((wall / "summary.json").read_text())
    assert set(summary) >= {"wall", "ep_wall_ce", "ep_wall_step", "bptt_val_ce_at_wall"}
    ep_rows = {int(r["step"]): r for r in _metrics(wall / "metrics.csv") if r["estimator"] == "ep"}

    source = [f"decisive.source='{wall}'", "decisive.source_subdir='ep'", "train.steps=2",
              "decisive.long_steps=40"]
    dec = tmp_path / "decisive"
    assert main(["run", "ep-decisive", "--out", str(dec)] + sets(source)) == 0
    d = json.loads((dec / "summary.json").read_text())
    start = d["start_step"]
    assert d["source_obtained"] == "named" and d["source_run"] == str(wall)
    assert start == max(s for s in range(0, 5, 2) if s <= summary["ep_wall_step"])
    rows = _metrics(dec / "metrics.csv")
    first = [r for r in rows if int(r["step"]) == start][0]
    # the oracle run starts from EP's checkpoint: the same parameters, the same numbers
    for key in ("val_ce", "train_ce", "residual_max", "rho_max"):
        assert first[key] == pytest.approx(ep_rows[start][key], rel=1e-12)
    # the summary's inputs of the rule, against the files they come from
    assert d["rho_max"] == max(r["rho_max"] for r in rows)
    assert d["best_val_ce"] == min(r["val_ce"] for r in rows)
    assert d["improved_on_ep_best"] == (d["best_val_ce"] < summary["ep_wall_ce"] - 0.02)
    assert d["cleared_wall"] == (summary["wall"] and d["improved_on_ep_best"])
    assert d["source_wall"] == summary["wall"]
    if not summary["wall"]:  # a source with no wall decides nothing
        assert d["verdict"] == "inconclusive"

    fix = tmp_path / "fixes"
    assert main(["run", "ep-fixes", "--out", str(fix)] + sets(
        source + ["forward.directions=0", "penalty.weight=0.01"])) == 0
    f = json.loads((fix / "summary.json").read_text())
    with (fix / "fixes.csv").open() as handle:
        table = {r["fix"]: r for r in csv.DictReader(handle)}
    assert set(table) == {"forward", "bptt", "ep+penalty"}
    assert float(table["forward"]["val_ce"]) == f["forward_val_ce"]
    assert float(table["ep+penalty"]["best_val_ce"]) == f["ep_penalty_best_val_ce"]
    rows = _metrics(fix / "metrics.csv")
    # exact forward mode (RTRL) from the same start has the same first row as the source
    forward_first = [r for r in rows if r["estimator"] == "forward" and int(r["step"]) == start][0]
    assert forward_first["val_ce"] == pytest.approx(ep_rows[start]["val_ce"], rel=1e-12)
    # exact RTRL and BPTT follow the same trajectory (one gradient, two modes)
    last = lambda name: [r for r in rows if r["estimator"] == name][-1]
    assert last("forward")["step"] == last("bptt")["step"] == start + 2
    assert last("forward")["val_ce"] == pytest.approx(last("bptt")["val_ce"], rel=1e-9)
    # the penalty changes EP's trajectory: its last row differs from the source EP's next ones
    assert last("ep+penalty")["val_ce"] != pytest.approx(last("bptt")["val_ce"], rel=1e-9)
