"""The ``flowsim`` command: list scenarios, run one, show a run directory.

    flowsim list
    flowsim run NAME|PATH.toml [--set key.sub=value]... [--sweep key=v1,v2,...]...
                               [--out DIR] [--seed N]
                               [--coordinator HOST:PORT --num-processes N --process-id I]
                               [--distributed]
    flowsim show DIR
    flowsim resume DIR [--coordinator ... | --distributed]

``--sweep`` runs the grid of the given values as one run (``sweep.csv``).
``--coordinator``/``--num-processes``/``--process-id`` start ``jax.distributed``
(``--distributed``: let JAX detect the cluster, e.g. under SLURM); every process
runs the same command and process 0 writes the run directory.

Exit codes: 0 ok, 1 failed, 2 bad input (one ``flowsim: error: ...`` line on
stderr and no run directory), 3 diverged, 130 interrupted (SIGINT), 143 terminated (SIGTERM).
"""

import argparse
import sys
from pathlib import Path

from flowsim.run.config import BadInput
from flowsim.run.runner import EXIT_BAD_INPUT, execute, prepare
from flowsim.run.scenario import describe_scenarios, scenario_dir
from flowsim.run.show import describe_run


class _OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``flowsim: error: ...`` line and exit code 2."""

    def error(self, message: str):
        raise BadInput(message)


def _build_parser() -> argparse.ArgumentParser:
    """The ``flowsim`` argument parser with its three subcommands."""
    parser = _OneLineParser(prog="flowsim", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{list,run,show}")

    commands.add_parser("list", help="scenario names and descriptions")

    run = commands.add_parser("run", help="run a scenario into a new run directory")
    run.add_argument("target", metavar="NAME|PATH.toml", help="scenario name, or a scenario/override file")
    run.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key (value: TOML literal; repeatable)")
    run.add_argument("--out", type=Path, help="run directory (new or empty; default runs/<name>-<time>)")
    run.add_argument("--seed", type=int, help="random seed (sets config.seed)")
    run.add_argument("--sweep", dest="sweeps", action="append", default=[], metavar="KEY=V1,V2",
                     help="run the grid of these values (TOML literals; repeatable: a product)")
    _add_distributed(run)

    resume = commands.add_parser("resume", help="continue an interrupted run from its last checkpoint")
    resume.add_argument("directory", type=Path, metavar="DIR")
    _add_distributed(resume)

    show = commands.add_parser("show", help="print a run directory's summary, config, metrics and plots")
    show.add_argument("directory", type=Path, metavar="DIR")
    return parser


def _add_distributed(command: argparse.ArgumentParser) -> None:
    group = command.add_argument_group("several processes (jax.distributed)")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    group.add_argument("--num-processes", type=int, metavar="N", help="how many processes")
    group.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    group.add_argument("--distributed", action="store_true",
                       help="let JAX detect the cluster (SLURM, Open MPI, ...)")


def _start_processes(args: argparse.Namespace) -> tuple[bool, bool]:
    """Start jax.distributed if asked; returns (this process writes the run, started)."""
    explicit = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and all(value is None for value in explicit):
        return True, False
    if args.distributed and any(value is not None for value in explicit):
        raise BadInput("give --distributed or --coordinator/--num-processes/--process-id, not both")
    if args.command == "run" and args.out is None:
        raise BadInput("a multi-process run needs --out DIR (the same directory in every process)")
    from flowsim.parallel import distributed

    try:
        distributed.initialize(*explicit, auto=args.distributed)
    except ValueError as error:
        raise BadInput(str(error)) from None
    return distributed.is_main_process(), True


def _command_list() -> int:
    """Print ``name  time  needs  description`` for every scenario, one line each."""
    rows = []
    for item in describe_scenarios():
        if isinstance(item, tuple):
            rows.append((item[0], "", "", item[1]))
        else:
            needs = f"needs {item.needs}" if item.needs else ""
            rows.append((item.name, item.time, needs, item.description))
    if not rows:
        print(f"no scenarios in {scenario_dir()}", file=sys.stderr)
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths) if width]
        print("  ".join(cells + [row[3]]).rstrip())
    return 0


def _command_run(args: argparse.Namespace, argv: list[str]) -> int:
    """Validate everything, then execute the run; bad input raises before any file is made."""
    writer, several = _start_processes(args)
    prepared = prepare(args.target, args.assignments, args.seed, args.out, args.sweeps, writer,
                       several)
    return execute(prepared, ["flowsim", *argv])


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flowsim`` console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _build_parser().parse_args(argv)
        if args.command == "list":
            return _command_list()
        if args.command == "run":
            return _command_run(args, argv)
        if args.command == "resume":
            from flowsim.run.resume import resume_run

            writer, several = _start_processes(args)
            return resume_run(args.directory, ["flowsim", *argv], writer, several)
        print(describe_run(args.directory))
        return 0
    except BadInput as error:
        print("flowsim: error: " + " ".join(str(error).splitlines()), file=sys.stderr)
        return EXIT_BAD_INPUT
    except SystemExit as exit_:  # --help and --version end here
        return exit_.code if isinstance(exit_.code, int) else 0
