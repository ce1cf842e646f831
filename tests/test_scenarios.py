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


def test_unknown_scenario_suggests_the_nearest(capsys):
    assert main(["run", "ep-estimator"]) == 2
    err = capsys.readouterr().err
    assert "ep-estimators" in err and len(err.strip().splitlines()) == 1


TINY_TRAIN = ["model.context=4", "model.embed=3", "model.state=8", "model.hidden=8",
              "model.t1=10", "model.dt=0.2", "train.steps=4", "train.batch=8",
              "train.eval_every=2", "train.checkpoint_every=2", "train.eval_batch=16"]


@pytest.mark.slow
@needs_data
def test_resume_through_the_cli_continues_to_the_same_numbers(tmp_path):
    def run(out):
        argv = ["run", "ep-train", "--out", str(out)]
        for setting in TINY_TRAIN:
            argv += ["--set", setting]
        return main(argv)

    assert run(tmp_path / "full") == 0
    assert run(tmp_path / "cut") == 0
    # Make "cut" look interrupted after checkpoint 2: drop the later checkpoint
    # files and the summary's claim.
    checkpoints = tmp_path / "cut" / "checkpoints"
    for path in checkpoints.glob("step_00000004*"):
        path.unlink()
    (tmp_path / "cut" / "summary.json").write_text('{"status": "running", "wall_s": 100.0}')
    kept = {p.name: p.stat().st_mtime_ns for p in checkpoints.glob("step_00000002*")}
    assert kept
    assert main(["resume", str(tmp_path / "cut")]) == 0
    # It continued from checkpoint 2 (left untouched) and wrote checkpoint 4 again.
    assert {p.name: p.stat().st_mtime_ns for p in checkpoints.glob("step_00000002*")} == kept
    assert list(checkpoints.glob("step_00000004*"))
    full = json.loads((tmp_path / "full" / "summary.json").read_text())
    resumed = json.loads((tmp_path / "cut" / "summary.json").read_text())
    for key in ("val_ce", "best_val_ce", "rho", "residual", "steps"):
        assert resumed[key] == full[key]
    # provenance is appended to, never overwritten: the first command keeps its --set list,
    # the resume is added with its own command, and the time adds up
    env = json.loads((tmp_path / "cut" / "env.json").read_text())
    assert env["command"][:3] == ["flowsim", "run", "ep-train"] and "--set" in env["command"]
    assert [r["command"][:2] for r in env["resumed"]] == [["flowsim", "resume"]]
    assert resumed["wall_s"] > 100.0


def test_resume_of_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run directory" in err[0]
