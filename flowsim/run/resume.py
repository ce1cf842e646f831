"""``flowsim resume DIR``: continue an interrupted run from its last checkpoints.

A study that trains through :func:`flowsim.train.fit` with checkpoints under
``DIR/checkpoints`` (one directory per training run, e.g.
``checkpoints/bptt``) resumes by itself when they exist; this module checks
that it may (the run directory is complete, checkpoints exist, and each was
written under the config in ``DIR/config.toml``) before anything is touched,
then re-executes the study in the same directory. Every problem is a
one-line :class:`BadInput` (exit 2) and leaves the directory as it was.
"""

import dataclasses
from pathlib import Path

from ..train import checkpoint as ckpt
from . import store
from .config import BadInput
from .runner import (
    PreparedRun,
    _enable_float64_and_agg,
    execute,
    prepare,
    resolve_config,
)
from .scenario import import_study, load_scenario

CHECKPOINTS = "checkpoints"


def checkpoint_dirs(directory) -> list[Path]:
    """Every directory under ``DIR/checkpoints`` (itself included) that holds a checkpoint."""
    root = Path(directory) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(d for d in [root, *root.rglob("*")] if d.is_dir() and ckpt.latest(d) is not None)


def check_resumable(directory, config) -> list[Path]:
    """The checkpoint directories a resume continues; :class:`BadInput` if none fits."""
    found = checkpoint_dirs(directory)
    if not found:
        raise BadInput(f"{directory} holds no checkpoint to resume from "
                       f"(looked under {Path(directory) / CHECKPOINTS})")
    expected = ckpt.config_hash(config.model_dump())
    for where in found:
        step = ckpt.latest(where)
        written = ckpt.read_meta(where, step).get("config_hash")
        if written != expected:
            raise BadInput(
                f"checkpoint step {step} in {where} was written by another config "
                f"(hash {written}, {store.CONFIG} says {expected}); start a new run instead")
    return found


def prepare_resume(directory, writer: bool = True, several: bool = False) -> PreparedRun:
    """Validate a ``flowsim resume DIR`` without writing anything."""
    directory = Path(directory)
    if not (directory / store.CONFIG).is_file():
        raise BadInput(f"{directory} is not a run directory (no {store.CONFIG})")
    scenario = load_scenario(str(directory / store.CONFIG))
    _enable_float64_and_agg()
    study = import_study(scenario)
    config = resolve_config(study.Config, scenario, [], None)
    if scenario.sweep:
        return _prepare_sweep_resume(directory, scenario, writer, several)
    if several:
        raise BadInput("several processes resume only a sweep")
    check_resumable(directory, config)
    return PreparedRun(scenario, study, config, directory)


def _prepare_sweep_resume(directory: Path, scenario, writer: bool, several: bool) -> PreparedRun:
    """A sweep resumes from its groups' sharded checkpoints and keeps the configurations
    that ended; it needs at least one of them."""
    from flowsim.run.sweep_runner import CONFIGS

    groups = sorted((directory / CHECKPOINTS).glob("group_*/step_*"))
    ended = [p for p in (directory / CONFIGS).glob("*/" + store.SUMMARY)]
    if not groups and not ended:
        raise BadInput(f"{directory} holds no sweep checkpoint or finished configuration to "
                       f"resume from (looked under {directory / CHECKPOINTS} and "
                       f"{directory / CONFIGS})")
    prepared = prepare(str(directory / store.CONFIG), [], None, None, writer=writer,
                       several=several)
    prepared.study.directory = directory  # where every process finds the checkpoints
    return dataclasses.replace(prepared, out=directory if writer else prepared.out)


def resume_run(directory, command: list[str] | None = None, writer: bool = True,
               several: bool = False) -> int:
    """Resume the run in ``directory``; returns the exit code (0 ok, 3 diverged, ...).

    Raises :class:`BadInput` (nothing written) when the directory cannot be resumed.
    """
    prepared = prepare_resume(directory, writer, several)
    return execute(prepared, command or ["flowsim", "resume", str(directory)], resume=True)


__all__ = ["check_resumable", "checkpoint_dirs", "prepare_resume", "resume_run"]
