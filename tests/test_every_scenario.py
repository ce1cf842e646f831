"""Every scenario `flowsim list` prints runs through the CLI (at a small size) and ends "ok".

A run that completes is "ok" whatever it found: fep-overfit at 3 steps does not
reach its target and says so in ``target_met``; the continuing studies (ep-decisive,
ep-fixes, rho-vs-c), given no source, make one. Each run directory has its
config, summary, metrics, log and at least one plot.

Scenarios that compile the same programs run in one test (one process): the
character-model studies, which also resume and continue one another there
(:func:`test_char_model_studies_resume_continue_and_find_their_sources`), and the FEP
studies on one random batch.
"""

import csv
import json
import math
import os
from pathlib import Path

import pytest
from test_scenarios import TINY_TRAIN, needs_data

from flowsim.cli import main
from flowsim.run.scenario import load_scenario, scenario_names

FEP_TINY = ["B=2", "N=3", "K=2", "t1=5.0", "max_qflow_steps=200"]
SMALL = {
    "continuation": ["bratu.n=20", "max_points=8", "eigenvalues=2"],
    "continuation-lorenz": ["max_points=6"],
    "landau-pitchfork": ["max_points=8"],
    "landau-imperfect": ["max_points=8"],
    "horizon-counterexample": ["sweep_points=3", "sweep_horizons=[10, 20]"],
    "ep-estimators": ["phase_steps=[10, 20]", "betas=[0.1, 0.05]", "radii=[0.1]",
                      "horizons=[10, 20]", "hopfield.state=6", "asymmetric.state=6",
                      "hopfield.batch=2", "asymmetric.batch=2"],
    "ep-train": TINY_TRAIN,  # 4 steps: checkpoints 2 and 4, for the resume
    "ep-wall": TINY_TRAIN + ["train.steps=2", "hep.steps=10"],
    "ep-decisive": TINY_TRAIN + ["train.steps=2", "decisive.source_steps=2",
                                 "decisive.long_steps=10", "ep.steps=10"],
    "ep-fixes": TINY_TRAIN + ["train.steps=2", "decisive.source_steps=2", "ep.steps=10",
                              "forward.directions=2"],
    "rho-vs-c": TINY_TRAIN + ["rho.points=3", "rho.source_steps=2"],
    "bifurcation-char": TINY_TRAIN + ["bif.samples=2", "bif.source_steps=2", "bif.max_points=40",
                                      "bif.ds_max=0.5"],
    # one system per batch here (per_window = false: a third less compilation); the
    # per-window path (training and evaluation) runs in fep-shakespeare below.
    # fep-overfit's run is fep-oracle's P-flow arm (qflow_tol as in fep-oracle.toml):
    # the same programs, compiled once (test_fep_studies_on_one_random_batch_complete_ok)
    "fep-overfit": FEP_TINY + ["steps=3", "V=5", "per_window=false", "qflow_tol=1e-6"],
    "fep-oracle": FEP_TINY + ["steps=2", "V=5", "oracle_every=1", "per_window=false"],
    "fep-sweep": FEP_TINY + ["steps=2", "V=5", "n_lr=2", "n_lambda=2", "per_window=false"],
    "fep-shakespeare": FEP_TINY + ["steps=1", "eval_every=1", "eval_batch=2",
                                   "oracle_training=false"],
    "fep-bigram": ["K=2", "t1=5.0", "max_qflow_steps=200", "steps=1", "eval_every=1"],
    "gle-checks": ["chain.T=9.0", "chain.transient=1.0", "chain.tail=1.0", "chain.dt=0.05",
                   "chain.widths=[1, 2, 1]", "chain.tau_m=[1.0, 0.5]", "chain.tau_r=[0.3, 0.1]",
                   "static_tau_r_scales=[0.5]", "broadband_modes=2", "backsolve_T=0.5"],
    "gle-abc": ["steps=2", "model.d_model=4", "model.heads=1", "model.micro_steps=3", "batch=2",
                "seq_len=3", "cos_every=1", "text_length=20", 'gle_variants=["lag"]'],
    "gle-mnist1d": ["network.widths=[4]", "train.steps=2", "train.eval_every=1", "train.batch=4",
                    "train.train_eval=8", "train.cos_batch=4", "train.eval_chunk=1000",
                    "sample_interval=0.2"],
    "nash": ["trials=2", "points=11"],
    "landau-sweep": ["sweep.points=4", "sweep.abs_a_min=0.1", "trials=2", "flow.save_points=300",
                     "imperfect.points=21"],
    "lyapunov": ["t_final=20.0", "transient=10.0"],
    "sequence-redemption": ["trials=3", "task.length=8", "task.n_planted=2", "task.n_controls=2"],
    "gated-expansion": ["trials=5", "samples=[2, 4]", "sigmas=[1.0]", "costs=[0.5]"],
    "coordinator-oracle": ["modules=6", "betas=[0.01, 0.001]", "ep_steps=200"],
    "coordinator-learn": ["steps=1", "train_trials=2", "eval_trials=2", "length=12",
                          "relax_steps=100", "bptt_steps=100"],
    "coordinator-scale": ["sizes=[32]", "dtype=float64", "sweep_n=32", "sweep_points=2",
                          "repeats=1"],
    "connectivity-shift": ["sizes=[4]", "trials=4", "p_points=3", "resamples=20"],
    "gle-shakespeare": ["steps=2", "eval_every=1", "cos_every=1", "eval_batch=2", "batch=2",
                        "seq_len=3", "model.d_model=4", "model.heads=1"],
}


# Run together, in one test each (below), since they compile the same programs: the
# character model at one size, and FEP on one random batch. Split into tests of their
# own, each compiled them anew (xdist puts tests on different workers, and the
# compiled code is dropped after each module).
CHAR_STUDIES = ("ep-train", "bifurcation-char", "rho-vs-c", "ep-wall", "ep-decisive",
                "ep-fixes")
FEP_ON_ONE_BATCH = ("fep-oracle", "fep-overfit")
# ep-estimators' small run (its SMALL settings, checked by _completes_ok) is the single run
# that tests/test_sweep.py::test_ep_estimators_sweep_rows_equal_single_runs holds its
# sweep against: run there, not twice.
ELSEWHERE = ("ep-estimators",)


def test_every_listed_scenario_has_a_small_run_here():
    assert set(SMALL) == set(scenario_names())
    assert set(CHAR_STUDIES) | set(FEP_ON_ONE_BATCH) <= set(SMALL)
    assert not set(CHAR_STUDIES) & set(FEP_ON_ONE_BATCH)
    assert set(ELSEWHERE) <= set(SMALL) and not set(ELSEWHERE) & set(CHAR_STUDIES)


def _data_available():
    from flowsim.data import shakespeare

    return (Path(os.environ.get("FLOWSIM_DATA", "")) / shakespeare.FILENAME).is_file()


def _argv(name, out, settings):
    argv = ["run", name, "--out", str(out)]
    for setting in settings:
        argv += ["--set", setting]
    return argv


def _completes_ok(name, out):
    """The run at ``out`` ended "ok" and kept its config, summary, metrics, log and a plot."""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["scenario"] == name
    for kept in ("config.toml", "env.json", "metrics.csv", "log.txt"):
        assert (out / kept).is_file(), kept
    assert list((out / "plots").glob("*.png")), "no plot"
    if name == "fep-overfit":
        assert summary["target_met"] is False and summary["steps"] == 3
    return summary


def _runs_ok(name, out):
    assert main(_argv(name, out, SMALL[name])) == 0
    return _completes_ok(name, out)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(SMALL) - set(CHAR_STUDIES) - set(FEP_ON_ONE_BATCH)
                                         - set(ELSEWHERE)))
def test_scenario_runs_and_completes_ok(name, tmp_path, monkeypatch):
    if "data" in load_scenario(name).needs and not _data_available():
        pytest.skip("needs $FLOWSIM_DATA/tinyshakespeare.txt")
    monkeypatch.chdir(tmp_path)  # the run store (runs/) of this test alone
    _runs_ok(name, tmp_path / "run")


@pytest.mark.slow
def test_fep_studies_on_one_random_batch_complete_ok(tmp_path, monkeypatch):
    """fep-oracle, then fep-overfit: its P-flow arm is fep-overfit's training (the same
    programs, compiled once)."""
    monkeypatch.chdir(tmp_path)
    for name in FEP_ON_ONE_BATCH:
        _runs_ok(name, tmp_path / name)


@pytest.mark.slow
@needs_data
def test_char_model_studies_resume_continue_and_find_their_sources(tmp_path, monkeypatch):
    """The character-model studies at their small sizes (each completes "ok", as above),
    and what ties them together: a run resumed through the CLI continues to the same
    numbers; ep-decisive and ep-fixes continue a named ep-wall run's EP trajectory; given
    no source, they (and rho-vs-c) make one, which the next run finds.

    One test, one process: every run here compiles the character model's programs at
    one size, and a program compiled for one run serves the others."""
    monkeypatch.chdir(tmp_path)  # the run store (runs/) of this test alone
    _runs_ok("ep-train", tmp_path / "ep-train")
    _resume_continues_to_the_same_numbers(tmp_path / "ep-train", tmp_path)
    for name in ("bifurcation-char", "ep-wall"):
        _runs_ok(name, tmp_path / name)
    # given no source (there is no run under runs/ yet), each makes one
    for name in ("rho-vs-c", "ep-decisive", "ep-fixes"):
        summary = _runs_ok(name, tmp_path / name)
        assert summary["source_obtained"] == "made"
        assert summary["source_run"] == str(tmp_path / name / "source")
    decisive = tmp_path / "ep-decisive"
    _the_made_source_is_found_next_time(_argv("ep-decisive", decisive, SMALL["ep-decisive"]),
                                        decisive, tmp_path)
    _wall_then_decisive_then_fixes_continue_the_same_trajectory(tmp_path)


def _resume_continues_to_the_same_numbers(full, tmp_path):
    """An ep-train run cut after checkpoint 2 and resumed ends where the uninterrupted
    run ``full`` did."""
    cut = tmp_path / "cut"
    assert main(_argv("ep-train", cut, SMALL["ep-train"])) == 0
    # Make "cut" look interrupted after checkpoint 2: drop the later checkpoint
    # files and the summary's claim.
    checkpoints = cut / "checkpoints"
    for path in checkpoints.glob("step_00000004*"):
        path.unlink()
    (cut / "summary.json").write_text('{"status": "running", "wall_s": 100.0}')
    kept = {p.name: p.stat().st_mtime_ns for p in checkpoints.glob("step_00000002*")}
    assert kept
    assert main(["resume", str(cut)]) == 0
    # It continued from checkpoint 2 (left untouched) and wrote checkpoint 4 again.
    assert {p.name: p.stat().st_mtime_ns for p in checkpoints.glob("step_00000002*")} == kept
    assert list(checkpoints.glob("step_00000004*"))
    first = json.loads((full / "summary.json").read_text())
    resumed = json.loads((cut / "summary.json").read_text())
    for key in ("val_ce", "best_val_ce", "rho", "residual", "steps"):
        assert resumed[key] == first[key]
    # provenance is appended to, never overwritten: the first command keeps its --set list,
    # the resume is added with its own command, and the time adds up
    env = json.loads((cut / "env.json").read_text())
    assert env["command"][:3] == ["flowsim", "run", "ep-train"] and "--set" in env["command"]
    assert [r["command"][:2] for r in env["resumed"]] == [["flowsim", "resume"]]
    assert resumed["wall_s"] > 100.0


def _the_made_source_is_found_next_time(argv, first, tmp_path):
    """With decisive.source = "", the newest matching run under runs/ is used; a run at
    another model size does not match."""
    from flowsim.studies import ep_source

    from flowsim.run.runs import read_config

    moved = tmp_path / "runs" / "first"
    moved.parent.mkdir()
    first.rename(moved)  # into the run store
    second = tmp_path / "second"
    assert main(argv[:3] + [str(second)] + argv[4:]) == 0
    found = json.loads((second / "summary.json").read_text())
    assert found["source_obtained"] == "found" and not (second / "source").exists()
    assert found["source_run"] == str(Path("runs") / "first" / "source")
    config = read_config(second)
    assert ep_source.matches(moved / "source", config, "ep")
    other = config.model_copy(update={"model": config.model.model_copy(update={"state": 6})})
    assert not ep_source.matches(moved / "source", other, "ep")


def _metrics(path):
    with path.open() as f:
        return [{k: (float(v) if k != "estimator" else v) for k, v in r.items()}
                for r in csv.DictReader(f)]


def _wall_then_decisive_then_fixes_continue_the_same_trajectory(tmp_path):
    """ep-wall (EP held against BPTT), then ep-decisive and ep-fixes named its run: they
    start from its EP checkpoint and continue its numbers. The settings not under test
    are the small runs' (ep.steps, decisive.long_steps): the same programs."""
    tiny = [s for s in TINY_TRAIN if not s.startswith("train.steps")]
    wall = tmp_path / "wall"
    assert main(_argv("ep-wall", wall, tiny + ["train.steps=4", "wall.estimator='ep'",
                                              "ep.steps=10"])) in (0, 3)
    summary = json.loads((wall / "summary.json").read_text())
    assert set(summary) >= {"wall", "ep_wall_ce", "ep_wall_step", "bptt_val_ce_at_wall"}
    ep_rows = {int(r["step"]): r for r in _metrics(wall / "metrics.csv") if r["estimator"] == "ep"}

    source = tiny + [f"decisive.source='{wall}'", "decisive.source_subdir='ep'", "train.steps=2",
                     "decisive.long_steps=10", "ep.steps=10"]
    dec = tmp_path / "decisive"
    assert main(_argv("ep-decisive", dec, source)) == 0
    d = _completes_ok("ep-decisive", dec)
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
    assert main(_argv("ep-fixes", fix, source + ["forward.directions=0",
                                                 "penalty.weight=0.01"])) == 0
    f = _completes_ok("ep-fixes", fix)
    assert f["source_obtained"] == "named" and f["start_step"] == start
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
    assert math.isfinite(last("ep+penalty")["val_ce"])
