"""``flowsim run --sweep``: specs, the vectorised and the one-run-each paths, devices,
processes and checkpoints, against the quadratic's closed form.

The study (``tests/sweep_fixture``) descends f(x) = a/2 |x|^2 from
x0 = (1 + seed)(1, ..., d) with step lr: f(x_k) = a/2 (1 - lr a)^(2k) |x0|^2.
Several devices are XLA's emulated CPU devices, several processes are two
``flowsim`` processes on localhost (jax.distributed over gloo): nothing here
needs a GPU or a second machine.
"""

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_every_scenario import SMALL, _completes_ok

from flowsim.cli import main
from flowsim.run.config import BadInput
from flowsim.run.sweep_spec import grid, parse_sweep_args, split_values

FIXTURE = Path(__file__).parent / "sweep_fixture"
FLOWSIM = [sys.executable, "-m", "flowsim"]


@pytest.fixture
def probe(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOWSIM_SCENARIOS", str(FIXTURE / "scenarios"))
    monkeypatch.syspath_prepend(str(FIXTURE))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _env(devices: int = 1) -> dict:
    env = dict(os.environ, FLOWSIM_SCENARIOS=str(FIXTURE / "scenarios"),
               PYTHONPATH=os.pathsep.join([str(FIXTURE), os.environ.get("PYTHONPATH", "")]),
               JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _table(directory: Path) -> list[dict]:
    with (directory / "sweep.csv").open() as file:
        return list(csv.DictReader(file))


def _closed_form(seed, lr, a=2.0, dim=3, steps=6):
    x0 = (1 + seed) * np.arange(1, dim + 1)
    return 0.5 * a * (1 - lr * a) ** (2 * steps) * (x0 @ x0)


# --- specs ------------------------------------------------------------------------------

def test_values_split_on_top_level_commas_and_the_grid_varies_the_last_key_fastest():
    assert split_values("1, [2, 3], 'a,b', {x = 1, y = 2}") == ["1", "[2, 3]", "'a,b'",
                                                                  "{x = 1, y = 2}"]
    sweep = parse_sweep_args(["lr=0.1,0.2", "seed=0,1,2"], {"lr": 0.5, "seed": 0})
    assert sweep == {"lr": [0.1, 0.2], "seed": [0, 1, 2]}
    assert [tuple(p.values()) for p in grid(sweep)] == [
        (0.1, 0), (0.1, 1), (0.1, 2), (0.2, 0), (0.2, 1), (0.2, 2)]


@pytest.mark.parametrize("spec, message", [
    ("lr=", "has no values"),
    ("lr=0.1,,0.2", "empty value"),
    ("lr", "expects key=v1,v2"),
    ("nope=1,2", "nope"),
])
def test_malformed_sweep_texts_are_bad_input(spec, message):
    with pytest.raises(BadInput, match=message):
        parse_sweep_args([spec], {"lr": 0.5})


@pytest.mark.parametrize("argv, message", [
    (["--sweep", "nope=1,2"], "unknown config key 'nope'; valid keys: a, chunk"),
    (["--sweep", "lr="], "has no values"),
    (["--sweep", "lr=fast,slow"], "lr"),
    (["--sweep", "dim=2.5,3"], "dim"),
    (["--sweep", "lr=0.1", "--sweep", "lr=0.2"], "twice"),
    (["--sweep", "lr=0.1,-0.2"], "sweep point lr=-0.2"),
    (["--sweep", "lr=0.1,0.2", "--set", "lr=0.3"], "both --set and swept"),
    (["--sweep", "seed=1,2", "--seed", "3"], "both --seed and swept"),
])
def test_bad_sweeps_exit_2_with_one_line_and_write_nothing(probe, capsys, argv, message):
    out = probe / "run"
    assert main(["run", "quadratic-descent", "--out", str(out), *argv]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0] and "Traceback" not in error[0], error
    assert not out.exists()


def test_a_bad_sweep_table_in_a_scenario_file_is_bad_input(probe, capsys):
    path = probe / "bad.toml"
    path.write_text('study = "flowsim_sweep_probe.quadratic_descent"\n'
                    'description = "x"\n[sweep]\nlr = []\n')
    assert main(["run", str(path), "--out", str(probe / "run")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "[sweep] lr must be a non-empty list" in error[0]
    assert not (probe / "run").exists()


# --- one process, one device ------------------------------------------------------------

def test_a_vectorised_sweep_is_one_program_and_meets_the_closed_form(probe):
    out = probe / "run"
    assert main(["run", "quadratic-grid", "--out", str(out)]) == 0  # [sweep] lr x seed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["configurations"] == 6
    assert summary["programs"] == 1 and summary["vectorised"] is True
    assert summary["swept_keys"] == "lr,seed" and summary["failed_configurations"] == 0
    rows = _table(out)
    assert list(rows[0])[:3] == ["lr", "seed", "status"]
    for row in rows:
        expected = _closed_form(int(row["seed"]), float(row["lr"]))
        assert float(row["loss"]) == pytest.approx(expected, rel=1e-13)
    # per-configuration metrics: every step's loss, chunked by the checkpoints
    with (out / "configs" / "0004" / "metrics.csv").open() as file:  # lr 0.2, seed 1
        losses = [float(r["loss"]) for r in csv.DictReader(file)]
    assert losses == pytest.approx([_closed_form(1, 0.2, steps=k) for k in range(1, 7)],
                                   rel=1e-13)
    assert (out / "plots" / "sweep.png").stat().st_size > 0
    record = (out / "config.toml").read_text()
    assert "[sweep]" in record and "lr = [0.1, 0.2]" in record


def test_show_describes_the_sweep_table(probe, capsys):
    assert main(["run", "quadratic-grid", "--out", "run"]) == 0
    capsys.readouterr()
    assert main(["show", "run"]) == 0
    shown = capsys.readouterr().out
    assert "sweep:\n  columns: lr, seed, status, loss, x_sum\n  rows: 6" in shown
    last = shown.split("last: lr=0.2, seed=2, status=ok, loss=")[1].split(",")[0]
    assert float(last) == pytest.approx(_closed_form(2, 0.2), rel=1e-13)


def test_the_sweep_row_equals_the_single_run(probe):
    assert main(["run", "quadratic-descent", "--out", "one", "--seed", "2",
                 "--set", "lr=0.2"]) == 0
    assert main(["run", "quadratic-descent", "--out", "many", "--sweep", "seed=1,2",
                 "--sweep", "lr=0.1,0.2"]) == 0
    single = json.loads((probe / "one" / "summary.json").read_text())
    row = _table(probe / "many")[3]
    assert (row["seed"], row["lr"]) == ("2", "0.2")
    assert float(row["loss"]) == pytest.approx(single["loss"], rel=1e-13)
    assert float(row["x_sum"]) == pytest.approx(single["x_sum"], rel=1e-13)


def test_shapes_that_differ_run_as_separate_programs_and_a_study_without_a_core_runs_each(probe):
    assert main(["run", "quadratic-descent", "--out", "dims", "--sweep", "dim=2,3",
                 "--sweep", "lr=0.1,0.3"]) == 0
    summary = json.loads((probe / "dims" / "summary.json").read_text())
    assert summary["configurations"] == 4 and summary["programs"] == 2
    for row in _table(probe / "dims"):
        expected = _closed_form(0, float(row["lr"]), dim=int(row["dim"]))
        assert float(row["loss"]) == pytest.approx(expected, rel=1e-13)

    assert main(["run", "quadratic-alone", "--out", "alone", "--sweep", "lr=0.1,0.3"]) == 0
    summary = json.loads((probe / "alone" / "summary.json").read_text())
    assert summary["vectorised"] is False and summary["programs"] == 2
    for index, row in enumerate(_table(probe / "alone")):
        assert float(row["loss"]) == pytest.approx(_closed_form(0, float(row["lr"])), rel=1e-13)
        own = json.loads((probe / "alone" / "configs" / f"{index:04d}" / "summary.json").read_text())
        assert own["loss"] == pytest.approx(float(row["loss"]), rel=1e-15)


# --- several devices, several processes, checkpoints across device counts --------------

def _run(args, devices=1, cwd=None, check=True):
    result = subprocess.run([*FLOWSIM, *args], env=_env(devices), cwd=cwd, capture_output=True,
                            text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


SWEEP = ["quadratic-descent", "--sweep", "lr=0.1,0.2,0.3", "--sweep", "seed=0,1,2",
         "--set", "steps=6", "--set", "chunk=2"]  # 9 configurations: 12 rows on 4 devices


def test_four_devices_equal_one_and_a_checkpoint_from_four_resumes_on_one(probe):
    _run(["run", *SWEEP, "--out", str(probe / "one")], devices=1)
    _run(["run", *SWEEP, "--out", str(probe / "four")], devices=4)
    one, four = _table(probe / "one"), _table(probe / "four")
    assert json.loads((probe / "four" / "summary.json").read_text())["devices"] == 4
    assert [r["loss"] for r in four] == [r["loss"] for r in one]  # the same digits
    for row in one:
        assert float(row["loss"]) == pytest.approx(
            _closed_form(int(row["seed"]), float(row["lr"])), rel=1e-13)

    # interrupted after step 2: the newer checkpoint and the results are gone
    group = probe / "four" / "checkpoints" / "group_000"
    assert sorted(p.name for p in group.iterdir()) == ["step_00000002", "step_00000004"]
    shutil.rmtree(group / "step_00000004")
    (probe / "four" / "sweep.csv").unlink()
    _run(["resume", str(probe / "four")], devices=1)
    log = (probe / "four" / "log.txt").read_text()
    assert "group 0: resumed at step 2 of 6" in log and "1 device(s)" in log
    resumed = json.loads((probe / "four" / "summary.json").read_text())
    assert resumed["status"] == "ok" and resumed["devices"] == 1
    assert [r["loss"] for r in _table(probe / "four")] == [r["loss"] for r in one]
    with (probe / "four" / "configs" / "0005" / "metrics.csv").open() as file:
        steps = [int(r["step"]) for r in csv.DictReader(file)]
    assert steps == [1, 2, 3, 4, 5, 6]  # rows before the checkpoint kept, the rest rewritten


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_share_one_sweep_and_process_0_writes_the_table(probe):
    _run(["run", *SWEEP, "--out", str(probe / "single")], devices=1)
    port, out = _free_port(), probe / "double"
    processes = [subprocess.Popen(
        [*FLOWSIM, "run", *SWEEP, "--out", str(out), "--coordinator", f"localhost:{port}",
         "--num-processes", "2", "--process-id", str(i)],
        env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["devices"] == 2
    assert [r["loss"] for r in _table(out)] == [r["loss"] for r in _table(probe / "single")]


def test_several_processes_need_a_vectorised_sweep(probe):
    # a subprocess: jax.distributed, once initialised, stays for the process
    result = _run(["run", "quadratic-alone", "--out", "x", "--sweep", "lr=0.1,0.2",
                   "--coordinator", f"localhost:{_free_port()}", "--num-processes", "1",
                   "--process-id", "0"], cwd=probe, check=False)
    assert result.returncode == 2 and "vectorised core" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (probe / "x").exists()


# --- a real study's core ----------------------------------------------------------------

EP_SMALL = [arg for setting in SMALL["ep-estimators"] for arg in ("--set", setting)]


@pytest.mark.slow
def test_ep_estimators_sweep_rows_equal_single_runs(tmp_path, monkeypatch):
    """The vectorised headline (one traced function over seed and gain) against the
    study's own run, which computes each estimate separately.

    The single run is also ep-estimators' small run of tests/test_every_scenario.py (its
    settings, there in ``SMALL``; it completes "ok" and keeps its files): one run of the
    study's twelve gradient programs instead of two."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", "ep-estimators", "--out", "one", "--seed", "1",
                 "--set", "hopfield.gain=0.7", *EP_SMALL]) == 0
    _completes_ok("ep-estimators", tmp_path / "one")
    assert main(["run", "ep-estimators", "--out", "many", "--seed", "1",
                 "--sweep", "hopfield.gain=0.5,0.7", *EP_SMALL]) == 0
    single = json.loads((tmp_path / "one" / "summary.json").read_text())
    summary = json.loads((tmp_path / "many" / "summary.json").read_text())
    assert summary["programs"] == 1 and summary["configurations"] == 2
    rows = _table(tmp_path / "many")
    row = rows[1]
    assert row["hopfield.gain"] == "0.7"
    keys = [k for k in row if k not in ("hopfield.gain", "status")]
    assert len(keys) == 11 and all(k in single for k in keys)
    for key in keys:
        assert float(row[key]) == pytest.approx(single[key], rel=1e-9, abs=1e-12), key
    # the other gain is another system: its symmetric cosines differ
    assert float(rows[0]["cos_ep_oracle_symmetric"]) != float(row["cos_ep_oracle_symmetric"])


FEP_SMALL = ["--set", "B=2", "--set", "N=3", "--set", "K=2", "--set", "t1=5.0", "--set",
             "max_qflow_steps=200", "--set", "V=5", "--set", "steps=2", "--set",
             "checkpoint_every=1", "--set", "per_window=false"]  # two chunks of one step


@pytest.mark.slow
def test_fep_overfit_sweep_rows_equal_single_runs_and_keep_per_step_metrics(tmp_path,
                                                                            monkeypatch):
    """The stateful core (the training loop, chunked and checkpointed) against the study's
    own loop (``train.fit``, one jitted step at a time)."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", "fep-overfit", "--out", "one", "--set", "lr=0.1", *FEP_SMALL]) == 0
    assert main(["run", "fep-overfit", "--out", "many", "--sweep", "lr=0.02,0.1",
                 *FEP_SMALL]) == 0
    single = json.loads((tmp_path / "one" / "summary.json").read_text())
    rows = _table(tmp_path / "many")
    row = rows[1]
    for key in ("train_ce", "train_acc", "pred_ce", "F", "initial_train_ce", "steps",
                "skipped_steps"):
        assert float(row[key]) == pytest.approx(single[key], rel=1e-9), key
    assert float(rows[0]["train_ce"]) > float(row["train_ce"])  # the smaller step learns less
    with (tmp_path / "one" / "metrics.csv").open() as file:
        alone = [float(r["train_ce"]) for r in csv.DictReader(file)][1:]  # after step 0
    with (tmp_path / "many" / "configs" / "0001" / "metrics.csv").open() as file:
        swept = [float(r["train_ce"]) for r in csv.DictReader(file)]
    assert swept == pytest.approx(alone, rel=1e-9)
    assert len(swept) == 2  # both steps' metrics, across the two chunks
    assert (tmp_path / "many" / "checkpoints" / "group_000" / "step_00000001").is_dir()


@pytest.mark.parametrize("flags, message", [
    (["--distributed"], "JAX found no cluster to join"),
    (["--coordinator", "localhost:1", "--num-processes", "2"], "give all of --coordinator"),
    (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "2"],
     "--process-id 2 must be in [0, 2)"),
])
def test_bad_process_flags_exit_2_with_one_line(probe, flags, message):
    result = _run(["run", "quadratic-descent", "--out", "x", "--sweep", "lr=0.1,0.2", *flags],
                  cwd=probe, check=False)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (probe / "x").exists()
