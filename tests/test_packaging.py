"""Packaging and the import surface: what a user gets from `pip install .` and `import flowsim`."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _python(code, **kwargs):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, **kwargs).stdout.split()


def test_subpackages_are_attributes_and_jax_waits_until_needed():
    out = _python("import sys, flowsim, flowsim.cli\n"
                  "print('jax' in sys.modules)\n"
                  "print(flowsim.fep.kl_logits.__name__, flowsim.rules.EP.__name__, "
                  "flowsim.solvers.EquilibriumSolver.__name__)\n"
                  "print(sorted(set(flowsim.__all__) - set(dir(flowsim))))")
    assert out[0] == "False"  # `flowsim --help` does not pay for JAX
    assert out[1:4] == ["kl_logits", "EP", "EquilibriumSolver"]
    assert out[4] == "[]"


def test_every_package_directory_is_in_the_package_list():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "flowsim").rglob("__init__.py")}
    assert found <= listed, f"add to pyproject.toml's packages: {sorted(found - listed)}"
    assert {"flowsim.studies", "flowsim.scenarios"} <= listed


@pytest.mark.slow
def test_pip_install_ships_scenarios_and_studies_and_no_generic_names(tmp_path):
    """`pip install .` (not editable): scenarios and studies inside flowsim, run from elsewhere."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                    str(site), str(REPO)], check=True, capture_output=True, text=True)
    importable = {p.name for p in site.iterdir() if not p.name.endswith(".dist-info")}
    assert importable - {"bin"} == {"flowsim"}  # bin: the console script
    assert (site / "flowsim" / "scenarios" / "horizon-counterexample.toml").is_file()
    assert (site / "flowsim" / "studies" / "ep_train.py").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("FLOWSIM_SCENARIOS", None)
    listed = subprocess.run([sys.executable, "-m", "flowsim", "list"], capture_output=True,
                            text=True, cwd=elsewhere, env=env, check=True).stdout
    assert "horizon-counterexample" in listed and "fep-overfit" in listed
    where = subprocess.run([sys.executable, "-c", "import flowsim; print(flowsim.__file__)"],
                           capture_output=True, text=True, cwd=elsewhere, env=env,
                           check=True).stdout.strip()
    assert where.startswith(str(site))
    ran = subprocess.run([sys.executable, "-m", "flowsim", "run", "horizon-counterexample",
                          "--set", "sweep_points=3", "--set", "sweep_horizons=[10]"],
                         capture_output=True, text=True, cwd=elsewhere, env=env, timeout=300)
    assert ran.returncode == 0, ran.stderr
    (run_dir,) = (elsewhere / "runs").iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "ok"


def test_a_folder_named_flowsim_beside_a_script_does_not_shadow_the_install(tmp_path):
    """A script saved beside the clone (a folder named flowsim, no __init__.py) imports
    the installed package, not that folder as a namespace package. The Quickstart's
    strict editable install (a link tree on sys.path) is what makes this hold."""
    (tmp_path / "flowsim" / "scenarios").mkdir(parents=True)  # the clone's shape
    (tmp_path / "example.py").write_text(
        "import flowsim\nprint(flowsim.__file__ is not None, flowsim.gradient.__name__)\n")
    out = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-400:]
    assert out.stdout.split() == ["True", "gradient"]
