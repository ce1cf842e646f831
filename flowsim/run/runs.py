"""Earlier runs in the run store: read them, find a matching one, or make one.

A study that continues an earlier run (ep-decisive from an ep-wall run's
checkpoint, rho-vs-c from a trained model) takes the run the user names; with
none named it takes the newest matching run under ``runs/`` (the default
output folder, relative to the working directory), and when there is none
it makes one, inside its own run directory, at the size its config gives.
The summary says which run it used.
"""

import json
from pathlib import Path

from flowsim.run import store
from flowsim.run.config import StudyConfig
from flowsim.run.scenario import Scenario, import_study, load_scenario

RUN_STORE = Path("runs")


def read_config(run_dir) -> StudyConfig:
    """The typed config of the run in ``run_dir`` (its study's Config, validated)."""
    from flowsim.run.runner import resolve_config

    scenario = load_scenario(str(Path(run_dir) / store.CONFIG))
    return resolve_config(import_study(scenario).Config, scenario, [], None)


def read_summary(run_dir) -> dict:
    return json.loads((Path(run_dir) / store.SUMMARY).read_text())


def study_of(run_dir) -> str | None:
    """The study a run directory ran, or None when it is not a complete run."""
    try:
        return load_scenario(str(Path(run_dir) / store.CONFIG)).study
    except Exception:  # noqa: BLE001 - anything unreadable is simply not a candidate
        return None


def find_run(study: str, accept, root: Path = RUN_STORE) -> Path | None:
    """The newest run of ``study`` under ``root`` that completed and that ``accept(run_dir)`` takes."""
    if not root.is_dir():
        return None
    candidates = []
    # runs, and the source runs that continuing runs made inside theirs
    found = [*root.glob(f"*/{store.SUMMARY}"), *root.glob(f"*/source/{store.SUMMARY}")]
    for summary in found:
        run_dir = summary.parent
        if study_of(run_dir) != study:
            continue
        try:
            status = read_summary(run_dir).get("status")
        except (OSError, ValueError):
            continue
        if status in ("ok", "diverged") and accept(run_dir):
            candidates.append((summary.stat().st_mtime, run_dir))
    return max(candidates)[1] if candidates else None


def make_run(study: str, config: StudyConfig, directory: Path, name: str) -> dict:
    """Run ``study`` with ``config`` into ``directory`` (a complete run directory); its summary."""
    from flowsim.run.runner import PreparedRun, execute

    scenario = Scenario(name=name, study=study, description=f"made by the run above it ({name})",
                        changes={}, path=directory / store.CONFIG)
    prepared = PreparedRun(scenario, import_study(scenario), config, Path(directory))
    execute(prepared, ["flowsim", "(source run)", name])
    return read_summary(directory)


__all__ = ["RUN_STORE", "read_config", "read_summary", "find_run", "make_run", "study_of"]
