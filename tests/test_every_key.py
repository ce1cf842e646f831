"""Every key of every scenario is checked before anything is created.

For each scenario `flowsim list` prints, each key of its resolved config is set
to a value of the wrong kind (and each list to an empty list or a list with a
bad element): the CLI must answer exit 2 with one line naming the key, and leave
the working directory empty. Then the cases seen by a new user (issue 10).
"""

import pytest

from flowsim.cli import main
from flowsim.run.config import flatten
from flowsim.run.runner import resolve_config
from flowsim.run.scenario import import_study, load_scenario, scenario_names


def _bad_values(value):
    """TOML texts that no key of this default's kind may take."""
    if isinstance(value, bool):
        return ["2", "'yes'"]
    if isinstance(value, int | float):
        return ["'x'", "[1]", "nan" if isinstance(value, float) else "1.5"]
    if isinstance(value, str):
        return ["1", "[1]"]
    if isinstance(value, list):
        bad_element = "[1]" if value and isinstance(value[0], str) else "['x']"
        return ["3", bad_element, "[nan]" if value and isinstance(value[0], float) else bad_element]
    return ["{}"]


def _cases():
    for name in scenario_names():
        scenario = load_scenario(name)
        config = resolve_config(import_study(scenario).Config, scenario, [], None)
        for key, value in flatten(config.model_dump()).items():
            for bad in dict.fromkeys(_bad_values(value)):
                yield name, key, bad


CASES = list(_cases())


def _one_line_exit_2_nothing_made(argv, tmp_path, capsys):
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert list(tmp_path.iterdir()) == [], argv
    return err[0]


def test_every_key_of_every_scenario_rejects_values_of_the_wrong_kind(tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert len({(name, key) for name, key, _ in CASES}) > 100
    for name, key, bad in CASES:
        line = _one_line_exit_2_nothing_made(["run", name, "--set", f"{key}={bad}"], tmp_path,
                                             capsys)
        assert key.split(".")[-1] in line, (name, key, bad, line)


@pytest.mark.parametrize("name, settings, message", [
    ("ep-estimators", ["betas=[]"], "betas = []: must have at least 1"),
    ("ep-estimators", ["betas=[0.0]"], "betas[0] = 0.0: must be > 0"),
    ("ep-estimators", ["phase_steps=[0]"], "phase_steps[0] = 0: must be >= 1"),
    ("ep-estimators", ["horizons=[-10]"], "horizons[0] = -10: must be >= 1"),
    ("horizon-counterexample", ["sweep_horizons=[0]"], "sweep_horizons[0] = 0: must be >= 1"),
    ("horizon-counterexample", ["rho_min=1.5", "rho_max=0.5"], "rho_min (1.5) must be below"),
    ("horizon-counterexample", ["steps=1000000000000"], "steps = 1000000000000: must be <="),
])
def test_values_inside_lists_and_across_keys_are_checked_up_front(tmp_path, capsys, monkeypatch,
                                                                  name, settings, message):
    monkeypatch.chdir(tmp_path)
    argv = ["run", name] + [arg for s in settings for arg in ("--set", s)]
    assert message in _one_line_exit_2_nothing_made(argv, tmp_path, capsys)
