"""Scenario files: finding them, reading them and importing their study.

A scenario is a TOML file with top-level keys

* ``study``: the module that runs it: a bare name is ``analysis.<name>``, a
  dotted name (``mylab.decay``) is imported as written;
* ``description``: one line for ``flowsim list``;
* ``[config]``: every key a ``--set`` can change, its TOML type the key's type;
* ``scenario``: the scenario's name (default: the file's stem).

A file without ``study`` but with ``scenario = "name"`` is an *override
file*: its ``[config]`` table changes the named scenario's config, each key
checked like a ``--set``. A run's ``config.toml`` is a complete scenario
file, so ``flowsim run runs/<dir>/config.toml`` repeats that run.
"""

import dataclasses
import difflib
import importlib
import os
import tomllib
from pathlib import Path

from flowsim.run.config import BadInput, apply_overrides, flatten

SCENARIO_KEYS = ("scenario", "description", "study", "config")


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A scenario read from disk: its name, study module, description and config."""

    name: str
    study: str
    description: str
    config: dict
    path: Path


def scenario_dir() -> Path:
    """``$FLOWSIM_SCENARIOS`` if set, else ``scenarios/`` next to the flowsim package."""
    override = os.environ.get("FLOWSIM_SCENARIOS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "scenarios"


def scenario_names() -> list[str]:
    """The names of the scenarios in :func:`scenario_dir`, sorted."""
    directory = scenario_dir()
    if not directory.is_dir():
        raise BadInput(f"scenario directory {directory} does not exist (set FLOWSIM_SCENARIOS)")
    return sorted(path.stem for path in directory.glob("*.toml"))


def load_scenario(name_or_path: str) -> Scenario:
    """Read a named scenario, or a ``.toml`` file (scenario or override file)."""
    return _load(name_or_path, frozenset())


def _load(name_or_path: str, overriding: frozenset[Path]) -> Scenario:
    """:func:`load_scenario`, remembering the override files on the way to catch cycles."""
    if name_or_path.endswith(".toml") or os.sep in name_or_path or "/" in name_or_path:
        return _load_file(Path(name_or_path), overriding)
    names = scenario_names()
    if name_or_path not in names:
        raise BadInput(_unknown_scenario_message(name_or_path, names))
    return _load_file(scenario_dir() / f"{name_or_path}.toml", overriding)


def _unknown_scenario_message(name: str, names: list[str]) -> str:
    """'unknown scenario' with the nearest names and the full list."""
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


def _load_file(path: Path, overriding: frozenset[Path]) -> Scenario:
    """Read a scenario file, resolving an override file against its named scenario."""
    document = _read_toml(path)
    unknown = sorted(set(document) - set(SCENARIO_KEYS))
    if unknown:
        raise BadInput(f"{path}: unknown top-level key(s) {', '.join(unknown)}; valid: {', '.join(SCENARIO_KEYS)}")
    for key in ("scenario", "description", "study"):
        if key in document and not isinstance(document[key], str):
            raise BadInput(f"{path}: {key} must be a string")
    config = document.get("config", {})
    if not isinstance(config, dict):
        raise BadInput(f"{path}: config must be a table ([config])")
    if "study" in document:
        return Scenario(
            name=document.get("scenario", path.stem),
            study=document["study"],
            description=document.get("description", ""),
            config=config,
            path=path,
        )
    if "scenario" not in document:
        raise BadInput(f"{path}: a scenario file needs study = \"module\", or scenario = \"name\" to override one")
    if path.resolve() in overriding:
        raise BadInput(f"{path}: override files form a cycle (scenario = {document['scenario']!r})")
    base = _load(document["scenario"], overriding | {path.resolve()})
    return Scenario(
        name=path.stem,
        study=base.study,
        description=document.get("description", base.description),
        config=apply_overrides(base.config, flatten(config), source=str(path)),
        path=path,
    )


def describe_scenarios() -> list[tuple[str, str]]:
    """``(name, description)`` for every scenario; a broken file's description says why."""
    rows = []
    for name in scenario_names():
        try:
            rows.append((name, load_scenario(name).description))
        except BadInput as error:
            rows.append((name, f"<broken: {error}>"))
    return rows


def import_study(scenario: Scenario):
    """Import the scenario's study module and check it defines ``run``."""
    module_name = scenario.study if "." in scenario.study else f"analysis.{scenario.study}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is None or not (module_name + ".").startswith(error.name + "."):
            raise  # the study itself imports something missing: a bug, not bad input
        raise BadInput(f"scenario {scenario.name!r}: study module {module_name!r} not found") from None
    if not callable(getattr(module, "run", None)):
        raise BadInput(f"study module {module_name!r} defines no run(config, ctx)")
    constraints = getattr(module, "CONSTRAINTS", {})
    if not isinstance(constraints, dict):
        raise BadInput(f"study module {module_name!r}: CONSTRAINTS must be a dict")
    return module
