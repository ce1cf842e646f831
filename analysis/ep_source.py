"""The earlier run a continuing study starts from: named, found in the run store, or made.

ep-decisive and ep-fixes continue an ep-wall run's EP trajectory from a
checkpoint; rho-vs-c scales the weights of a trained model. With
``source = ""`` the newest matching run under ``runs/`` is used (same model
and dtype, with the checkpoints needed); when there is none, one is made in
``<run dir>/source`` at this config's model size, for ``source_steps`` steps.
"""

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from flowsim.run import store
from flowsim.run.runs import find_run, make_run, read_config

from . import char_training as ct


def _a_run_or_empty(path: str) -> str:
    if path and not (Path(path) / store.CONFIG).is_file():
        raise ValueError(f"{path!r} is not a run directory (no {store.CONFIG}); "
                         "give a run's directory, or '' to find or make one")
    return path


# A config key naming an earlier run: checked up front, before the run starts.
SourceRun = Annotated[str, AfterValidator(_a_run_or_empty)]


def matches(run_dir, config, subdir) -> bool:
    """Same model and dtype, and checkpoints in ``checkpoints/<subdir>``."""
    try:
        source = read_config(run_dir)
    except Exception:  # noqa: BLE001 - an unreadable run is not a match
        return False
    where = Path(run_dir) / ct.CHECKPOINTS / subdir
    return (source.model == config.model and source.dtype == config.dtype
            and bool(ct.train.checkpoint.steps(where)))


def source_run(config, ctx, *, study, named, subdir, steps, configure) -> tuple[Path, str]:
    """(the source run directory, how it was obtained: "named", "found" or "made").

    ``configure(config, steps)`` gives the config of a run to make.
    """
    if named:
        return Path(named), "named"
    found = find_run(study, lambda d: matches(d, config, subdir))
    if found is not None:
        ctx.log(f"source: the newest matching {study} run in the run store, {found}")
        return found, "found"
    where = Path(ctx.dir) / "source"
    ctx.log(f"source: no matching {study} run under runs/; making one in {where} ({steps} steps)")
    make_run(study, configure(config, steps), where, study.replace("_", "-"))
    return where, "made"
