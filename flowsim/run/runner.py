"""A run's lifecycle: prepare (validate everything), then execute in a new run directory.

:func:`prepare` reads the scenario, imports its study and resolves the
config; it raises :class:`BadInput` and creates nothing. :func:`execute`
creates the directory, records config and environment, marks the run
``running``, calls ``study.run(config, ctx)`` and writes the final summary.
A study returns its findings with ``status`` "ok" (it completed, whatever
it found: findings are keys such as ``verdict`` or ``target_met``) or
"diverged" (a training run that diverged). ``failed`` is for a program
failure: a study that raises or is interrupted leaves ``status = "failed"``,
never a summary that claims success.
"""

import dataclasses
import json
import signal
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType

from flowsim.run import store
from flowsim.run.config import (
    BadInput,
    StudyConfig,
    flatten,
    merge,
    parse_overrides,
    resolve,
)
from flowsim.run.env import environment
from flowsim.run.interrupts import Interrupted, interruptible
from flowsim.run.scenario import Scenario, import_study, load_scenario
from flowsim.run.toml_writer import dumps

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = {"ok": EXIT_OK, "failed": EXIT_FAILED, "diverged": EXIT_DIVERGED}
STUDY_STATUSES = ("ok", "diverged")


@dataclasses.dataclass(frozen=True)
class PreparedRun:
    """A validated run, ready to execute: nothing is on disk yet."""

    scenario: Scenario
    study: ModuleType
    config: StudyConfig
    out: Path
    sweep: dict = dataclasses.field(default_factory=dict)


def prepare(target: str, assignments: list[str], seed: int | None, out: Path | None,
            sweeps: list[str] = (), writer: bool = True, several: bool = False) -> PreparedRun:
    """Validate a ``flowsim run``: scenario, ``--set`` assignments, seed, study, ranges, output
    directory, and the sweep (the scenario's ``[sweep]`` table, then ``--sweep``).

    ``writer=False`` (a process other than 0 of a multi-process run) computes into a
    scratch directory; process 0 writes ``out``. ``several`` processes need a sweep of a
    study with a vectorised core (the only work they can share).
    """
    scenario = load_scenario(target)
    if out is not None and writer:
        _check_out(out)
    _enable_float64_and_agg()
    study = import_study(scenario)
    config = resolve_config(study.Config, scenario, assignments, seed)
    out = out or _default_out(scenario.name)
    sweep = resolve_sweep(study, scenario, sweeps)
    if several and not (sweep and getattr(study, "SWEEP", None) is not None):
        raise BadInput(f"several processes share only a sweep of a study with a vectorised core "
                       f"(SWEEP); scenario {scenario.name!r} gives "
                       f"{'a sweep of a study without one' if sweep else 'no sweep'}")
    if not sweep:
        return PreparedRun(scenario, study, config, out if writer else _scratch())
    from flowsim.run.sweep_runner import build

    defaults = study.Config().model_dump()
    known = merge(defaults, scenario.changes)
    sweeping = build(study, scenario, config, scenario.changes,
                     parse_overrides(assignments, known), seed, sweep, out)
    return PreparedRun(scenario, sweeping, config, out if writer else _scratch(), sweep)


def resolve_sweep(study, scenario: Scenario, sweeps) -> dict:
    """``{dotted key: values}``: the scenario's ``[sweep]`` table, then ``--sweep`` on top."""
    from flowsim.run.sweep_spec import check_table, parse_sweep_args

    defaults = study.Config().model_dump()
    sweep = check_table(scenario.sweep, defaults, str(scenario.path)) if scenario.sweep else {}
    sweep.update(parse_sweep_args(list(sweeps), defaults))
    return sweep


def _scratch() -> Path:
    """A throwaway directory for a process that computes but does not write the run."""
    import atexit
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="flowsim-process-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def resolve_config(config_class, scenario: Scenario, assignments: list[str], seed: int | None):
    """The study's typed config: its defaults, the scenario's changes, then ``--set``."""
    defaults = config_class().model_dump()
    known = merge(defaults, scenario.changes) if _keys_known(scenario.changes, defaults) else defaults
    overrides = parse_overrides(assignments, known)
    return resolve(config_class, scenario.changes, overrides, seed, source=str(scenario.path))


def _keys_known(changes: dict, defaults: dict) -> bool:
    return set(flatten(changes)) <= set(flatten(defaults))


def _check_out(out: Path) -> None:
    """An explicit output directory must be new or empty: nothing is ever overwritten."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file; give a new directory")
    if out.is_dir() and any(out.iterdir()):
        raise BadInput(f"--out {out} exists and is not empty; give a new directory")


def _default_out(name: str) -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>``, with ``-2``, ``-3``... if that exists already."""
    base = Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, count = base, 1
    while candidate.exists():
        count += 1
        candidate = base.with_name(f"{base.name}-{count}")
    return candidate


def _enable_float64_and_agg() -> None:
    """Studies run with float64 available and draw off-screen; set both before the study imports."""
    import jax
    import matplotlib

    jax.config.update("jax_enable_x64", True)
    matplotlib.use("Agg")


def execute(run: PreparedRun, command: list[str], resume: bool = False) -> int:
    """Create the run directory, run the study, write the summary; return the exit code.

    With ``resume`` the directory exists: config.toml stays, env.json keeps its
    first command and gains this one under ``resumed``, and ``wall_s`` adds up.
    """
    directory = run.out
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadInput(f"cannot create run directory {directory}: {error.strerror}") from None
    scenario_record = {
        "scenario": run.scenario.name,
        "study": run.scenario.study,
        "description": run.scenario.description,
        "config": run.config.model_dump(),
    }
    if run.sweep:
        scenario_record["sweep"] = merge({}, run.sweep)  # nested tables, like [config]
    previous_wall = 0.0
    resume = resume and (directory / store.ENV).is_file()  # a scratch directory starts anew
    if resume:
        env = json.loads((directory / store.ENV).read_text())
        env.setdefault("resumed", []).append(
            {"command": command, "time": time.strftime("%Y-%m-%d %H:%M:%S")})
        store.write_json_atomic(directory / store.ENV, env)
        previous = json.loads((directory / store.SUMMARY).read_text())
        previous_wall = previous.get("wall_s", 0.0) if isinstance(previous, dict) else 0.0
    else:
        (directory / store.CONFIG).write_text(dumps(scenario_record))
        store.write_json_atomic(directory / store.ENV, environment(command))
    store.write_json_atomic(directory / store.SUMMARY, {"status": "running", "scenario": run.scenario.name})

    ctx = store.RunContext(directory, run.config.seed)
    ctx.log(f"{' '.join(command)}: {'resumed' if resume else 'started'} in {directory}",
            echo=False)
    start = time.perf_counter()

    def stuck(error: Interrupted) -> None:  # from the watcher thread, inside a compiled loop
        reason = f"{error} (inside a compiled loop; the process was ended)"
        store.write_json_atomic(directory / store.SUMMARY, {
            "status": "failed", "reason": reason, "scenario": run.scenario.name,
            "wall_s": round(previous_wall + time.perf_counter() - start, 3)})
        ctx.log(f"{reason}; {directory / store.SUMMARY} says failed")

    interrupted_by = None
    try:
        with interruptible(stuck):
            summary = _summary_from(run.study.run(run.config, ctx))
    except (KeyboardInterrupt, Interrupted) as error:
        interrupted_by = error if isinstance(error, Interrupted) else Interrupted(signal.SIGINT)
        summary = {"status": "failed", "reason": str(interrupted_by)}
        ctx.log(f"{interrupted_by}; {directory / store.SUMMARY} says failed", echo=False)
        ending = "interrupted"
    except BaseException as error:  # noqa: BLE001 - any crash must end as "failed"
        (directory / store.ERROR_LOG).write_text(traceback.format_exc())
        summary = {"status": "failed", "reason": f"{type(error).__name__}: {error}"}
        ending = "raised"
    else:
        ending = "returned"
    summary.update(scenario=run.scenario.name,
                   wall_s=round(previous_wall + time.perf_counter() - start, 3))
    store.write_json_atomic(directory / store.SUMMARY, summary)
    code = _report(summary, directory, ending)
    return interrupted_by.exit_code if interrupted_by is not None else code


NONFINITE = ("nan", "inf", "-inf")


def _summary_from(returned) -> dict:
    """The summary from what ``study.run`` returned: status first, values made JSON scalars."""
    if not isinstance(returned, dict):
        return {"status": "failed", "reason": f"study.run returned {type(returned).__name__}, not a dict"}
    status = returned.get("status", "ok")
    if status not in STUDY_STATUSES:
        return {"status": "failed",
                "reason": f"study.run returned status {status!r}; valid: {', '.join(STUDY_STATUSES)}"}
    summary, nonfinite = {"status": status}, {}
    for key, value in returned.items():
        if key == "status":
            continue
        try:
            summary[key] = store.scalar(value)
        except TypeError as error:
            return {"status": "failed", "reason": f"summary value {key!r}: {error}"}
        if summary[key] in NONFINITE and not isinstance(value, str):
            # numbers stay numbers: a non-finite one is null, and "nonfinite" says which it was
            nonfinite[key], summary[key] = summary[key], None
    if nonfinite:
        summary["nonfinite"] = nonfinite
    return summary


def _report(summary: dict, directory: Path, ending: str) -> int:
    """One line on how the run ended (``ending``: returned, raised, interrupted); its exit code."""
    status = summary["status"]
    reason = str(summary.get("reason") or "no reason given").splitlines()[0]
    if ending == "interrupted":
        _say(f"flowsim: interrupted; {directory / store.SUMMARY} says failed ({reason})")
        return EXIT_INTERRUPTED
    if ending == "raised":
        _say(f"flowsim: run failed: {reason} (traceback in {directory / store.ERROR_LOG})")
    elif status != "ok":
        _say(f"flowsim: run {status}: {reason} ({directory})")
    else:
        print(f"flowsim: ok: {directory}")
    return EXIT_CODES[status]


def _say(message: str) -> None:
    """One line on stderr."""
    print(message, file=sys.stderr, flush=True)
