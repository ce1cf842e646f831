"""Every scenario `flowsim list` prints runs through the CLI (at a small size) and ends "ok".

A run that completes is "ok" whatever it found: fep-overfit at 3 steps does not
reach its target and says so in ``target_met``; the continuing studies (ep-decisive,
ep-fixes, rho-vs-c), given no source, make one. Each run directory has its
config, summary, metrics, log and at least one plot.
"""

import json
import os
from pathlib import Path

import pytest
from test_scenarios import TINY_TRAIN

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
    "ep-train": TINY_TRAIN + ["train.steps=2"],
    "ep-wall": TINY_TRAIN + ["train.steps=2", "hep.steps=10"],
    "ep-decisive": TINY_TRAIN + ["train.steps=2", "decisive.source_steps=2",
                                 "decisive.long_steps=10", "ep.steps=10"],
    "ep-fixes": TINY_TRAIN + ["train.steps=2", "decisive.source_steps=2", "ep.steps=10",
                              "forward.directions=2"],
    "rho-vs-c": TINY_TRAIN + ["rho.points=3", "rho.source_steps=2"],
    "bifurcation-char": TINY_TRAIN + ["bif.samples=2", "bif.source_steps=2", "bif.max_points=40",
                                      "bif.ds_max=0.5"],
    "fep-overfit": FEP_TINY + ["steps=3", "V=5"],
    # one system per batch here (per_window = false: a third less compilation); the
    # per-window path runs in fep-overfit and fep-shakespeare below
    "fep-oracle": FEP_TINY + ["steps=2", "V=5", "oracle_every=1", "per_window=false"],
    "fep-sweep": FEP_TINY + ["steps=2", "V=5", "n_lr=2", "n_lambda=2", "per_window=false"],
    "fep-shakespeare": FEP_TINY + ["steps=1", "eval_every=1", "eval_batch=2",
                                   "oracle_training=false"],
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
    "coordinator-learn": ["steps=2", "train_trials=2", "eval_trials=4", "length=12",
                          "relax_steps=100", "bptt_steps=100"],
    "coordinator-scale": ["sizes=[32]", "dtype=float64", "sweep_n=32", "sweep_points=2",
                          "repeats=1"],
    "connectivity-shift": ["sizes=[4]", "trials=4", "p_points=3", "resamples=20"],
    "gle-shakespeare": ["steps=2", "eval_every=1", "cos_every=1", "eval_batch=2", "batch=2",
                        "seq_len=3", "model.d_model=4", "model.heads=1"],
}


def test_every_listed_scenario_has_a_small_run_here():
    assert set(SMALL) == set(scenario_names())


def _data_available():
    from flowsim.data import shakespeare

    return (Path(os.environ.get("FLOWSIM_DATA", "")) / shakespeare.FILENAME).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_scenario_runs_and_completes_ok(name, tmp_path, monkeypatch):
    if "data" in load_scenario(name).needs and not _data_available():
        pytest.skip("needs $FLOWSIM_DATA/tinyshakespeare.txt")
    monkeypatch.chdir(tmp_path)  # the run store (runs/) of this test alone
    out = tmp_path / "run"
    argv = ["run", name, "--out", str(out)]
    for setting in SMALL[name]:
        argv += ["--set", setting]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["scenario"] == name
    for kept in ("config.toml", "env.json", "metrics.csv", "log.txt"):
        assert (out / kept).is_file(), kept
    assert list((out / "plots").glob("*.png")), "no plot"
    if name == "fep-overfit":
        assert summary["target_met"] is False and summary["steps"] == 3
    if name in ("ep-decisive", "ep-fixes", "rho-vs-c"):
        assert summary["source_obtained"] == "made"
        assert summary["source_run"] == str(out / "source")
    if name == "ep-decisive":
        _the_made_source_is_found_next_time(argv, out, tmp_path)


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
