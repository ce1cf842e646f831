"""A sweep as one run: the grid's configurations, grouped into compiled programs.

:func:`build` validates every grid point as a whole config (one
:class:`BadInput` line, nothing written). :class:`SweepStudy` is what
:func:`flowsim.run.runner.execute` runs in place of the study:

* with the study's :class:`SweepCore`, configurations that differ only in
  traced keys form one group, run by ``flowsim.parallel`` as one vmapped
  program split across every device of every process; its state is
  checkpointed with orbax every ``chunk`` steps, and a resumed sweep restores
  it onto the current device count;
* without one, every configuration is its own ``flowsim run`` in
  ``configs/<i>/`` (a resumed sweep keeps the configurations that ended ok).

The run directory gets ``sweep.csv`` (the swept keys, ``status``, then every
summary key, one row per configuration), ``configs/<i>/`` (per-configuration
metrics) and ``plots/sweep.png``.
"""

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from flowsim.run import store
from flowsim.run.config import (
    BadInput,
    StudyConfig,
    flatten,
    merge,
    resolve,
    set_dotted,
)
from flowsim.run.scenario import Scenario
from flowsim.run.sweep_core import SweepCore
from flowsim.run.sweep_plot import plot_sweep, write_sweep_csv
from flowsim.run.sweep_spec import describe, grid

CONFIGS, CHECKPOINTS, SWEEP_CSV = "configs", "checkpoints", "sweep.csv"


def build(study, scenario: Scenario, base: StudyConfig, changes: dict, overrides: dict,
          seed: int | None, sweep: dict[str, list], directory: Path) -> "SweepStudy":
    """The sweep over ``sweep``'s grid, every point resolved and validated up front."""
    for key in sweep:
        if key in flatten(overrides):
            raise BadInput(f"{key} is both --set and swept; give it in one place")
        if key == "seed" and seed is not None:
            raise BadInput("seed is both --seed and swept; give it in one place")
    configs = []
    for point in grid(sweep):
        nested: dict = {}
        for key, value in point.items():
            set_dotted(nested, key, value)
        try:
            configs.append(resolve(type(base), merge(changes, nested), overrides, seed,
                                   source=str(scenario.path)))
        except BadInput as error:
            raise BadInput(f"sweep point {describe(point)}: {error}") from None
    core = getattr(study, "SWEEP", None)
    if core is not None and not isinstance(core, SweepCore):
        raise BadInput(f"study {scenario.study!r}: SWEEP is not a flowsim.run.SweepCore")
    return SweepStudy(study, scenario, sweep, configs, core, Path(directory))


def _group_key(config: StudyConfig, traced: tuple[str, ...]) -> str:
    flat = flatten(config.model_dump())
    return json.dumps({k: v for k, v in flat.items() if k not in traced}, sort_keys=True)


@dataclasses.dataclass
class SweepStudy:
    """The sweep, run by ``execute`` like a study (``run(config, ctx)`` returns the summary)."""

    study: object
    scenario: Scenario
    sweep: dict
    configs: list
    core: SweepCore | None
    directory: Path  # the real run directory (checkpoints are shared by every process)

    def groups(self) -> list[list[int]]:
        """Configuration indices per compiled program."""
        if self.core is None:
            return [[i] for i in range(len(self.configs))]
        found: dict[str, list[int]] = {}
        for i, config in enumerate(self.configs):
            found.setdefault(_group_key(config, self.core.traced), []).append(i)
        return list(found.values())

    def run(self, config, ctx) -> dict:
        import jax

        from flowsim import parallel

        points = grid(self.sweep)
        groups = self.groups()
        mesh = parallel.config_mesh()
        ctx.log(f"sweep: {len(points)} configurations of {', '.join(self.sweep)} in "
                f"{len(groups)} program(s); {mesh.size} device(s), "
                f"{jax.process_count()} process(es)")
        rows: list[dict] = [{} for _ in points]
        start = time.perf_counter()
        for number, indices in enumerate(groups):
            if self.core is None:
                self._run_alone(indices[0], ctx, rows)
            else:
                self._run_group(number, indices, ctx, rows, mesh)
        wall = time.perf_counter() - start
        table = [{**point, **row} for point, row in zip(points, rows)]
        write_sweep_csv(ctx.dir / SWEEP_CSV, table)
        plot_sweep(table, list(self.sweep), self._headline(table),
                   ctx.plot_path("sweep"), self.scenario.name)
        failed = sum(row.get("status") not in ("ok", "diverged") for row in rows)
        return {"configurations": len(points), "programs": len(groups),
                "vectorised": self.core is not None, "devices": mesh.size,
                "processes": jax.process_count(), "failed_configurations": failed,
                "diverged_configurations": sum(row.get("status") == "diverged" for row in rows),
                "swept_keys": ",".join(self.sweep), "sweep_wall_s": round(wall, 3)}

    # --- one configuration as its own run -------------------------------------------------

    def _run_alone(self, index: int, ctx, rows) -> None:
        from flowsim.run.runner import PreparedRun, execute

        where = ctx.dir / CONFIGS / f"{index:04d}"
        summary_path = where / store.SUMMARY
        if summary_path.is_file():  # resumed: keep a configuration that ended
            done = json.loads(summary_path.read_text())
            if done.get("status") in ("ok", "diverged"):
                rows[index].update(done)
                return
            resume = any((where / CHECKPOINTS).glob("**/*"))
        else:
            resume = False
        prepared = PreparedRun(self.scenario, self.study, self.configs[index], where)
        execute(prepared, ["flowsim", "sweep", self.scenario.name, f"configuration {index}"],
                resume=resume)
        rows[index].update(json.loads(summary_path.read_text()))

    # --- a group as one vectorised, sharded program --------------------------------------

    def _values(self, indices) -> dict:
        """The traced keys' values of a group's configurations, one array per key."""
        out = {}
        for key in self.core.traced:
            column = [flatten(self.configs[i].model_dump())[key] for i in indices]
            out[key] = np.asarray(column, dtype=np.float64 if isinstance(column[0], float)
                                  else np.int64)
        return out

    def _run_group(self, number: int, indices: list[int], ctx, rows, mesh) -> None:
        from flowsim import parallel

        core, first = self.core, self.configs[indices[0]]
        values = parallel.place(
            parallel.pad(self._values(indices), parallel.padded_size(len(indices), mesh)), mesh)
        init = core.init or (lambda config, v: {})
        state = parallel.sharded_vmap(lambda v: init(first, v), mesh)(values)
        total, chunk = core.steps(first), core.chunk(first)
        where = self.directory / CHECKPOINTS / f"group_{number:03d}"
        done = (parallel.latest_step(where) or 0) if core.advance else 0
        if done:
            state = parallel.restore(where, done, state, mesh, len(indices))
            ctx.log(f"group {number}: resumed at step {done} of {total}")
        recorders = [_Metrics(ctx.dir / CONFIGS / f"{i:04d}", done) for i in indices] \
            if core.advance else []
        programs = {}
        while core.advance and done < total:
            count = min(chunk or total, total - done)
            if count not in programs:
                programs[count] = parallel.sharded_vmap(
                    lambda v, s, t, count=count: core.advance(first, v, s, t, count), mesh)
            starts = parallel.place(np.full(jax_size(values), done, dtype=np.int64), mesh)
            state, metrics = programs[count](values, state, starts)
            metrics = parallel.gather(metrics, len(indices))
            for k, recorder in enumerate(recorders):
                recorder.add(done, {name: series[k] for name, series in metrics.items()})
            done += count
            if chunk and done < total:
                parallel.save(where, done, state)
                ctx.log(f"group {number}: checkpoint at step {done} of {total}")
        summary = parallel.gather(
            parallel.sharded_vmap(lambda v, s: core.summary(first, v, s), mesh)(values, state),
            len(indices))
        for k, i in enumerate(indices):
            rows[i].update({"status": "ok"}, **{name: np.asarray(column[k]).item()
                                                for name, column in summary.items()})
            where = ctx.dir / CONFIGS / f"{i:04d}"
            where.mkdir(parents=True, exist_ok=True)
            store.write_json_atomic(where / store.SUMMARY, {k: store.scalar(v) for k, v in rows[i].items()})

    def _headline(self, table) -> list[str]:
        if self.core is not None and self.core.headline:
            return list(self.core.headline)
        numeric = [key for key in dict.fromkeys(k for row in table for k in row)
                   if key not in self.sweep and key != "wall_s"
                   and all(isinstance(row.get(key), int | float) and not isinstance(row.get(key), bool)
                           for row in table)
                   and len({row[key] for row in table}) > 1]
        return numeric[:4]


def jax_size(tree) -> int:
    """The (padded) configuration count of placed values."""
    import jax

    return jax.tree.leaves(tree)[0].shape[0]


class _Metrics:
    """A configuration's ``metrics.csv`` under a vectorised sweep (process 0 writes it; a
    resumed sweep keeps the rows before its checkpoint)."""

    def __init__(self, directory: Path, start: int):
        directory.mkdir(parents=True, exist_ok=True)
        self.context = store.RunContext(directory, 0)
        kept = []
        path = directory / store.METRICS
        if start and path.is_file():
            import csv

            with path.open() as file:
                kept = [row for row in csv.DictReader(file) if int(row["step"]) <= start]
        if kept:
            self.context.write_metrics(kept)
        elif path.exists():
            path.unlink()

    def add(self, start: int, series: dict) -> None:
        count = len(next(iter(series.values())))
        for t in range(count):
            self.context.append_metrics(
                {"step": start + t + 1, **{name: values[t] for name, values in series.items()}})


__all__ = ["build", "SweepStudy", "CONFIGS", "CHECKPOINTS", "SWEEP_CSV"]
