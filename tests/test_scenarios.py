"""Named scenarios end to end through the CLI, checked against closed forms."""

import json
import os
from pathlib import Path

import pytest

from flowsim.cli import main
from flowsim.data import shakespeare

needs_data = pytest.mark.skipif(
    not (Path(os.environ.get("FLOWSIM_DATA", "")) / shakespeare.FILENAME).is_file(),
    reason="no $FLOWSIM_DATA/tinyshakespeare.txt (CI points it at ../shared/data)",
)


def test_horizon_counterexample_matches_closed_form(tmp_path):
    out = tmp_path / "run"
    k, dt, steps, z0, z_star, y = 0.3, 0.2, 40, -1.0, 0.5, 2.0
    code = main(["run", "horizon-counterexample", "--out", str(out),
                 "--set", f"k={k}", "--set", f"dt={dt}", "--set", f"steps={steps}",
                 "--set", f"z0={z0}", "--set", f"z_star={z_star}", "--set", f"y={y}",
                 "--set", "sweep_horizons=[10, 30]", "--set", "sweep_points=4"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    rho = 1 - dt * k
    z_t = z_star + rho**steps * (z0 - z_star)
    expected = (z_t - y) * steps * rho ** (steps - 1) * (-dt) * (z0 - z_star)
    assert summary["status"] == "ok"
    assert summary["grad_equilibrium"] == 0.0
    assert abs(summary["grad_finite_horizon"] - expected) < 1e-14
    assert summary["max_rel_error_sweep"] < 1e-10
    assert (out / "plots" / "grad_vs_rho.png").stat().st_size > 1000
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 2 * 4


@pytest.mark.parametrize("setting, message", [
    ("dt=0", "dt"), ("steps=0", "steps"), ("dt=nan", "dt"), ("kk=1", "valid keys"),
    ("steps=1.5", "steps"), ("dt", "="),
])
def test_counterexample_rejects_bad_settings(tmp_path, capsys, setting, message):
    out = tmp_path / "run"
    assert main(["run", "horizon-counterexample", "--out", str(out), "--set", setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not out.exists()


def test_fep_shakespeare_refuses_an_objective_that_sees_its_targets(tmp_path, capsys):
    """Its default objective scores every position, honest only when no belief sees its target
    at inference: with the alignment (lambda_beta > 0) or observe_context the run stops
    before it starts, naming the key to change."""
    out = tmp_path / "run"
    assert main(["run", "fep-shakespeare", "--out", str(out), "--set", "lambda_beta=1.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "predict_positions" in err[0] and "lambda_beta" in err[0]
    assert not out.exists()
    assert main(["run", "fep-shakespeare", "--out", str(out), "--set", "observe_context=true"]) == 2
    assert "observe_context" in capsys.readouterr().err
    assert main(["run", "fep-shakespeare", "--out", str(out), "--set", "lambda_beta=1.0",
                 "--set", 'predict_positions="every"']) == 2
    assert "predict_positions" in capsys.readouterr().err
    assert not out.exists()


def test_unknown_scenario_suggests_the_nearest(capsys):
    assert main(["run", "ep-estimator"]) == 2
    err = capsys.readouterr().err
    assert "ep-estimators" in err and len(err.strip().splitlines()) == 1


TINY_TRAIN = ["model.context=4", "model.embed=3", "model.state=8", "model.hidden=8",
              "model.t1=10", "model.dt=0.2", "train.steps=4", "train.batch=8",
              "train.eval_every=2", "train.checkpoint_every=2", "train.eval_batch=16"]


# ep-train resumed through the CLI: tests/test_every_scenario.py (with the other
# character-model studies, which compile the same programs)


def test_resume_of_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run directory" in err[0]
