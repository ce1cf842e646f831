"""The ``flowsim`` command end to end, against a probe study written into a temporary directory.

The probe study's ``behaviour`` key picks how its run ends (ok, raise,
diverge, interrupt, bad_summary), so every exit path is exercised without
depending on the real studies in analysis/.
"""

import csv
import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from flowsim.cli import main

STUDY_PACKAGE = "flowsim_cli_probe"

PROBE_STUDY = '''
"""A study that ends the way config.behaviour says."""
import math
from typing import Literal

from pydantic import Field

from flowsim.run import Section, StudyConfig


class Model(Section):
    width: int = Field(8, ge=1)


class Config(StudyConfig):
    dt: float = Field(0.1, gt=0)
    steps: int = Field(3, ge=1)
    beta: float = Field(0.5, ge=0.0, le=1.0)
    behaviour: Literal["ok", "raise", "diverge", "interrupt", "bad_summary"] = "ok"
    sizes: list[float] = Field([1.0, 2.0], min_length=1)
    verbose: bool = False
    model: Model = Model()


def run(config, ctx):
    behaviour = config.behaviour
    for step in ctx.progress(range(config.steps), desc="probe"):
        ctx.append_metrics({"step": step, "loss": config.dt * step, "seed": ctx.seed})
    if behaviour == "raise":
        raise ValueError("boom")
    if behaviour == "interrupt":
        raise KeyboardInterrupt
    if behaviour == "diverge":
        return {"status": "diverged", "reason": "loss is nan", "loss": math.nan}
    if behaviour == "bad_summary":
        return {"loss": [1.0, 2.0]}
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.plot([0, 1])
    figure.savefig(ctx.plot_path("loss"))
    plt.close(figure)
    ctx.log("probe done")
    return {"loss": 0.25, "steps_run": config.steps}
'''

PROBE_SCENARIO = f'''
description = "a probe of every run ending"
study = "{STUDY_PACKAGE}.probe"

[config]
seed = 0
dt = 0.1
steps = 3
beta = 0.5
behaviour = "ok"
sizes = [1.0, 2.0]
verbose = false

[config.model]
width = 8
'''


@pytest.fixture(scope="session")
def study_root(tmp_path_factory):
    """A directory holding the probe study package, on sys.path for the session."""
    root = tmp_path_factory.mktemp("studies")
    package = root / STUDY_PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "probe.py").write_text(textwrap.dedent(PROBE_STUDY))
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))


@pytest.fixture
def workdir(tmp_path, monkeypatch, study_root):
    """A fresh working directory with scenarios/probe.toml and scenarios/prob_other.toml."""
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "probe.toml").write_text(PROBE_SCENARIO)
    (scenarios / "prob_other.toml").write_text(PROBE_SCENARIO.replace("a probe of", "another probe of"))
    monkeypatch.setenv("FLOWSIM_SCENARIOS", str(scenarios))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _files_in(directory: Path) -> set[str]:
    return {str(path.relative_to(directory)) for path in directory.rglob("*")}


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_list_shows_names_and_descriptions(workdir, capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["prob_other  another probe of every run ending", "probe       a probe of every run ending"]


def test_run_ok_writes_the_full_run_directory(workdir, capsys):
    out = workdir / "r"
    code = main(["run", "probe", "--set", "dt=1", "--set", "model.width=64", "--seed", "7", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary)[0] == "status"
    assert summary["status"] == "ok" and summary["scenario"] == "probe"
    assert summary["loss"] == 0.25 and summary["steps_run"] == 3 and summary["wall_s"] >= 0
    record = tomllib.loads((out / "config.toml").read_text())
    assert record["scenario"] == "probe" and record["study"] == f"{STUDY_PACKAGE}.probe"
    assert record["config"]["dt"] == 1.0 and type(record["config"]["dt"]) is float
    assert record["config"]["model"] == {"width": 64} and record["config"]["seed"] == 7
    env = json.loads((out / "env.json").read_text())
    assert env["x64"] is True and env["command"][:3] == ["flowsim", "run", "probe"]
    with (out / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert rows == [{"step": str(i), "loss": str(1.0 * i), "seed": "7"} for i in range(3)]
    assert (out / "plots" / "loss.png").stat().st_size > 0
    assert "probe done" in (out / "log.txt").read_text()
    assert capsys.readouterr().out.strip() == f"flowsim: ok: {out}"


def test_run_default_directory_is_under_runs(workdir):
    assert main(["run", "probe"]) == 0
    (run_dir,) = (workdir / "runs").iterdir()
    assert run_dir.name.startswith("probe-") and len(run_dir.name) == len("probe-20260101-120000")
    assert main(["run", "probe"]) == 0
    assert len(list((workdir / "runs").iterdir())) == 2


BAD_INPUTS = [
    (["run", "prob"], "unknown scenario 'prob' (did you mean probe"),
    (["run", "nothing_like_it"], "valid scenarios: prob_other, probe"),
    (["run", "probe", "--set", "model.widht=3"], "did you mean model.width?"),
    (["run", "probe", "--set", "nope=3"], "valid keys: behaviour, beta, dt, model.width, seed, sizes, steps, verbose"),
    (["run", "probe", "--set", "steps=1.5"], "steps must be an int"),
    (["run", "probe", "--set", "verbose=1"], "verbose must be a bool"),
    (["run", "probe", "--set", "sizes=2"], "sizes must be a list"),
    (["run", "probe", "--set", "dt=-0.1"], "dt = -0.1: must be > 0"),
    (["run", "probe", "--set", "dt=0"], "must be > 0"),
    (["run", "probe", "--set", "steps=0"], "steps = 0: must be >= 1"),
    (["run", "probe", "--set", "beta=1.5"], "beta = 1.5: must be <= 1.0"),
    (["run", "probe", "--set", "sizes=[]"], "sizes = []: must have at least 1"),
    (["run", "probe", "--set", "dt=nan"], "dt = nan: must be a finite number"),
    (["run", "probe", "--set", "dt=inf"], "must be a finite number"),
    (["run", "probe", "--set", "behaviour=fly"], "must be one of 'ok', 'raise'"),
    (["run", "probe", "--set", "dt"], "--set expects key=value"),
    (["run", "probe", "--seed", "x"], "argument --seed: invalid int value: 'x'"),
    (["run", "probe", "--seed", "-1"], "seed = -1: must be >= 0"),
    (["run", "missing.toml"], "no such scenario file: missing.toml"),
    (["run", "probe", "--bogus"], "unrecognized arguments: --bogus"),
    (["fly"], "invalid choice: 'fly'"),
    ([], "required"),
]


@pytest.mark.parametrize(("argv", "expected"), BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_creates_nothing(workdir, capsys, argv, expected):
    before = _files_in(workdir)
    out = workdir / "out"
    code = main(argv + (["--out", str(out)] if argv[:1] == ["run"] else []))
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2
    assert line.startswith("flowsim: error: ") and expected in line
    assert not out.exists() and _files_in(workdir) == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("description = 'x'\nstudy = ", "malformed TOML in"),
        ("study = 'x'\nextra = 1\n[config]\n", "unknown top-level key(s) extra"),
        ("description = 'x'\n[config]\n", 'needs study = "module"'),
        ("study = 'x'\nbase = 'probe'\n", "give study or base, not both"),
        ("study = 'not_a_study_anywhere'\n[config]\n", "study module 'flowsim.studies.not_a_study_anywhere' not found"),
        ("base = 'probe'\n[config]\ndt = 'fast'\n", "dt must be a float, got 'fast' (str)"),
        ("base = 'probe'\n[config.model]\nwidth = 0\n", "model.width = 0: must be >= 1"),
        ("base = 'probe'\n[config]\nwidht = 0\n", "unknown config key 'widht'"),
        ("base = 'prbe'\n", "did you mean probe"),
        ("base = 'mine.toml'\n", "base scenarios form a cycle"),
    ],
)
def test_bad_scenario_files_are_bad_input(workdir, capsys, text, expected):
    path = workdir / "mine.toml"
    path.write_text(text)
    assert main(["run", str(path), "--out", str(workdir / "out")]) == 2
    assert expected in _one_error_line(capsys.readouterr().err)
    assert not (workdir / "out").exists()


def test_existing_non_empty_out_is_bad_input_and_untouched(workdir, capsys):
    out = workdir / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert main(["run", "probe", "--out", str(out)]) == 2
    assert "exists and is not empty" in _one_error_line(capsys.readouterr().err)
    assert _files_in(out) == {"keep.txt"} and (out / "keep.txt").read_text() == "precious"


def test_empty_existing_out_is_used(workdir):
    (workdir / "empty").mkdir()
    assert main(["run", "probe", "--out", str(workdir / "empty")]) == 0


@pytest.mark.parametrize(
    ("behaviour", "code", "status", "reason", "message"),
    [
        ("raise", 1, "failed", "ValueError: boom", "flowsim: run failed: ValueError: boom (traceback in"),
        ("interrupt", 130, "failed", "interrupted", "flowsim: interrupted;"),
        ("diverge", 3, "diverged", "loss is nan", "flowsim: run diverged: loss is nan"),
        ("bad_summary", 1, "failed", "summary value 'loss'", "flowsim: run failed: summary value 'loss'"),
    ],
)
def test_runs_that_do_not_succeed_never_claim_ok(workdir, capsys, behaviour, code, status, reason, message):
    out = workdir / "r"
    assert main(["run", "probe", "--set", f"behaviour={behaviour}", "--out", str(out)]) == code
    assert _one_error_line(capsys.readouterr().err).startswith(message)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == status and summary["reason"].startswith(reason)
    assert summary["scenario"] == "probe" and "wall_s" in summary
    assert len(list(csv.reader((out / "metrics.csv").open()))) == 4  # rows streamed before the end survive
    if behaviour == "raise":
        log = (out / "error.log").read_text()
        assert "Traceback" in log and "ValueError: boom" in log
    if behaviour == "diverge":
        # a number stays a number: null, with what it was under "nonfinite"
        assert summary["loss"] is None and summary["nonfinite"] == {"loss": "nan"}


def test_override_file_and_rerun_from_config_toml(workdir):
    overrides = workdir / "fast.toml"
    overrides.write_text("base = 'probe'\n[config]\ndt = 1\n[config.model]\nwidth = 2\n")
    assert main(["run", str(overrides), "--out", "first"]) == 0
    first = tomllib.loads((workdir / "first" / "config.toml").read_text())
    assert first["scenario"] == "fast" and first["config"]["dt"] == 1.0 and first["config"]["model"]["width"] == 2
    assert main(["run", "first/config.toml", "--out", "second"]) == 0
    second = tomllib.loads((workdir / "second" / "config.toml").read_text())
    assert second == first


def test_show_prints_summary_config_metrics_and_plots(workdir, capsys):
    main(["run", "probe", "--out", "r"])
    capsys.readouterr()
    assert main(["show", "r"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[:2] == ["run r", "status: ok"]
    assert "  loss: 0.25" in lines and "  columns: step, loss, seed" in lines and "  rows: 3" in lines
    assert "  last: step=2, loss=0.2, seed=0" in lines
    assert "  dt = 0.1" in lines and lines[-1] == "plots: loss.png"


@pytest.mark.parametrize("target", ["nowhere", "."])
def test_show_of_a_non_run_directory_is_bad_input(workdir, capsys, target):
    assert main(["show", target]) == 2
    assert "run directory" in _one_error_line(capsys.readouterr().err)


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "flowsim" in capsys.readouterr().out


def test_python_dash_m_flowsim_in_a_subprocess(workdir, study_root):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(study_root), os.environ.get("PYTHONPATH", "")])}

    def flowsim(*argv):
        return subprocess.run([sys.executable, "-m", "flowsim", *argv], capture_output=True, text=True,
                              env=env, cwd=workdir, timeout=120)

    bad = flowsim("run", "probe", "--set", "estimator=ep", "--out", "bad")
    assert bad.returncode == 2 and "unknown config key 'estimator'" in _one_error_line(bad.stderr)
    assert not (workdir / "bad").exists()
    ok = flowsim("run", "probe", "--set", "dt=0.05", "--out", "good")
    assert ok.returncode == 0, ok.stderr
    assert json.loads((workdir / "good" / "summary.json").read_text())["status"] == "ok"
