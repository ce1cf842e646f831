"""Scenario files: finding them, reading them and importing their study.

A scenario is a TOML file with top-level keys

* ``study``: the module that runs it: a bare name is ``flowsim.studies.<name>``
  (the repository's ``analysis/`` folder), a dotted name is imported as written;
* ``base``: instead of ``study``, the scenario this one changes (its study and
  its changes come first, this file's ``[config]`` on top);
* ``description``: one line for ``flowsim list``: what the scenario answers;
* ``time``: roughly how long it takes on 2 cores; ``needs``: what it needs
  (data, an earlier run), both shown by ``flowsim list``;
* ``[config]``: only what differs from the study's typed defaults (its
  ``Config``); every key there and every ``--set`` is checked against them;
* ``[sweep]``: config keys with lists of values; ``flowsim run`` runs their
  grid as one sweep (``--sweep key=v1,v2`` adds or replaces entries);
* ``scenario``: the scenario's name (default: the file's stem).

A run's ``config.toml`` is a complete scenario file, so ``flowsim run
runs/<dir>/config.toml`` repeats that run.
"""

import copy
import dataclasses
import difflib
import importlib
import importlib.resources
import os
import tomllib
from pathlib import Path

from flowsim.run.config import BadInput, StudyConfig, merge

SCENARIO_KEYS = ("scenario", "description", "study", "base", "time", "needs", "config", "sweep")
STUDIES = "flowsim.studies"


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A scenario read from disk: its study, what it changes, and how it presents itself."""

    name: str
    study: str
    description: str
    changes: dict
    path: Path
    time: str = ""
    needs: str = ""
    sweep: dict = dataclasses.field(default_factory=dict)


def scenario_dir() -> Path:
    """``$FLOWSIM_SCENARIOS`` if set, else the scenarios shipped with flowsim."""
    override = os.environ.get("FLOWSIM_SCENARIOS")
    if override:
        return Path(override)
    return Path(str(importlib.resources.files("flowsim.scenarios")))


def scenario_names() -> list[str]:
    """The names of the scenarios in :func:`scenario_dir`, sorted."""
    directory = scenario_dir()
    if not directory.is_dir():
        raise BadInput(f"scenario directory {directory} does not exist (set FLOWSIM_SCENARIOS)")
    return sorted(path.stem for path in directory.glob("*.toml"))


def load_scenario(name_or_path: str) -> Scenario:
    """Read a named scenario, or a ``.toml`` file (a scenario, or one with a ``base``)."""
    return _load(name_or_path, frozenset())


def _load(name_or_path: str, visiting: frozenset) -> Scenario:
    if name_or_path.endswith(".toml") or os.sep in name_or_path or "/" in name_or_path:
        return _load_file(Path(name_or_path), visiting)
    names = scenario_names()
    if name_or_path not in names:
        raise BadInput(_unknown_scenario_message(name_or_path, names))
    return _load_file(scenario_dir() / f"{name_or_path}.toml", visiting)


def _unknown_scenario_message(name: str, names: list[str]) -> str:
    near = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" (did you mean {' or '.join(near)}?)" if near else ""
    valid = ", ".join(names) if names else f"none: {scenario_dir()} holds no .toml files"
    return f"unknown scenario {name!r}{hint}; valid scenarios: {valid}"


def _read_toml(path: Path) -> dict:
    """Parse a TOML file, turning every failure into a one-line :class:`BadInput`."""
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise BadInput(f"no such scenario file: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BadInput(f"cannot read {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise BadInput(f"malformed TOML in {path}: {error}") from None


def _load_file(path: Path, visiting: frozenset) -> Scenario:
    document = _read_toml(path)
    unknown = sorted(set(document) - set(SCENARIO_KEYS))
    if unknown:
        raise BadInput(f"{path}: unknown top-level key(s) {', '.join(unknown)}; "
                       f"valid: {', '.join(SCENARIO_KEYS)}")
    for key in SCENARIO_KEYS[:-2]:
        if key in document and not isinstance(document[key], str):
            raise BadInput(f"{path}: {key} must be a string")
    changes = document.get("config", {})
    if not isinstance(changes, dict):
        raise BadInput(f"{path}: config must be a table ([config])")
    sweep = document.get("sweep", {})
    if not isinstance(sweep, dict):
        raise BadInput(f"{path}: sweep must be a table ([sweep])")
    name = document.get("scenario", path.stem)
    shown = {key: document.get(key, "") for key in ("description", "time", "needs")}
    if "study" in document:
        if "base" in document:
            raise BadInput(f"{path}: give study or base, not both")
        return Scenario(name, document["study"], changes=copy.deepcopy(changes), path=path,
                        sweep=copy.deepcopy(sweep), **shown)
    if "base" not in document:
        raise BadInput(f"{path}: a scenario file needs study = \"module\", or base = \"name\" "
                       "to change another scenario")
    if path.resolve() in visiting:
        raise BadInput(f"{path}: base scenarios form a cycle (base = {document['base']!r})")
    base = _load(document["base"], visiting | {path.resolve()})
    shown = {key: value or getattr(base, key) for key, value in shown.items()}
    return Scenario(path.stem if "scenario" not in document else name, base.study,
                    changes=merge(base.changes, changes), path=path,
                    sweep=merge(base.sweep, sweep), **shown)


def describe_scenarios() -> list[Scenario | tuple[str, str]]:
    """Every scenario; a broken file is ``(name, why)`` instead."""
    rows = []
    for name in scenario_names():
        try:
            rows.append(load_scenario(name))
        except BadInput as error:
            rows.append((name, f"<broken: {error}>"))
    return rows


def study_module_name(study: str) -> str:
    return study if "." in study else f"{STUDIES}.{study}"


def import_study(scenario: Scenario):
    """Import the scenario's study module and check it defines ``Config`` and ``run``."""
    module_name = study_module_name(scenario.study)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is None or not (module_name + ".").startswith(error.name + "."):
            raise  # the study itself imports something missing: a bug, not bad input
        raise BadInput(f"scenario {scenario.name!r}: study module {module_name!r} not found") from None
    if not callable(getattr(module, "run", None)):
        raise BadInput(f"study module {module_name!r} defines no run(config, ctx)")
    config = getattr(module, "Config", None)
    if not (isinstance(config, type) and issubclass(config, StudyConfig)):
        raise BadInput(f"study module {module_name!r} defines no Config (a flowsim.run.StudyConfig)")
    return module
