"""``flowsim resume DIR``: continue an interrupted run from its last checkpoint.

A study that trains through :func:`flowsim.train.fit` with
``checkpoint_dir = DIR/checkpoints`` resumes by itself when that directory
holds checkpoints; this module checks that it may (the run directory is
complete, a checkpoint exists, and it was written under the config in
``DIR/config.toml``) before anything is touched, then re-executes the study in
the same directory. Every problem is a one-line :class:`BadInput` (exit 2)
and leaves the directory as it was.
"""

from pathlib import Path

from ..run import store
from ..run.config import BadInput, validate
from ..run.runner import PreparedRun, _enable_float64_and_agg, execute
from ..run.scenario import import_study, load_scenario
from . import checkpoint as ckpt

CHECKPOINTS = "checkpoints"


def check_resumable(directory, config: dict) -> int:
    """The step of the checkpoint a resume would start from; :class:`BadInput` if none fits."""
    where = Path(directory) / CHECKPOINTS
    step = ckpt.latest(where)
    if step is None:
        raise BadInput(f"{directory} holds no checkpoint to resume from (looked in {where})")
    written = ckpt.read_meta(where, step).get("config_hash")
    expected = ckpt.config_hash(config)
    if written != expected:
        raise BadInput(
            f"checkpoint step {step} in {where} was written by another config "
            f"(hash {written}, {store.CONFIG} says {expected}); start a new run instead"
        )
    return step


def prepare_resume(directory) -> PreparedRun:
    """Validate a ``flowsim resume DIR`` without writing anything."""
    directory = Path(directory)
    if not (directory / store.CONFIG).is_file():
        raise BadInput(f"{directory} is not a run directory (no {store.CONFIG})")
    scenario = load_scenario(str(directory / store.CONFIG))
    _enable_float64_and_agg()
    study = import_study(scenario)
    config = scenario.config
    validate(config, getattr(study, "CONSTRAINTS", {}))
    check_resumable(directory, config)
    return PreparedRun(scenario, study, config, directory)


def resume_run(directory, command: list[str] | None = None) -> int:
    """Resume the run in ``directory``; returns the exit code (0 ok, 3 diverged, ...).

    Raises :class:`BadInput` (nothing written) when the directory cannot be resumed.
    """
    prepared = prepare_resume(directory)
    return execute(prepared, command or ["flowsim", "resume", str(directory)])


__all__ = ["check_resumable", "prepare_resume", "resume_run"]
