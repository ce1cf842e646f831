"""The run directory and the :class:`RunContext` a study writes through.

A run directory holds::

    config.toml    the resolved scenario (rerun it with `flowsim run DIR/config.toml`)
    env.json       versions, devices, x64 flag, git commit, command line
    summary.json   flat final metrics and status: running / ok / diverged / failed
    metrics.csv    time series, one row per append_metrics call
    log.txt        ctx.log messages
    error.log      the traceback of a study that raised
    plots/*.png    figures

``summary.json`` is only ever replaced atomically, so a reader sees either the
old or the new file, never half of one.
"""

import csv
import json
import math
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

SUMMARY = "summary.json"
METRICS = "metrics.csv"
CONFIG = "config.toml"
ENV = "env.json"
LOG = "log.txt"
ERROR_LOG = "error.log"
PLOTS = "plots"


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to a temporary file next to ``path``, then rename it over ``path``."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)


def scalar(value):
    """A JSON/CSV-ready Python scalar from a number, 0-d or 1-element array, str, bool or None.

    Non-finite floats become the strings ``"nan"``, ``"inf"`` and ``"-inf"``
    (strict JSON has no NaN). Anything else raises ``TypeError``.
    """
    if hasattr(value, "shape") and hasattr(value, "item"):
        if math.prod(value.shape) != 1:
            raise TypeError(f"expected a scalar, got an array of shape {tuple(value.shape)}")
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    raise TypeError(f"expected a scalar, got {type(value).__name__}")


class RunContext:
    """What a study's ``run(config, ctx)`` gets to record its results.

    Attributes:
        dir: the run directory (exists; holds config.toml and env.json already).
        seed: the run's integer seed, also ``config["seed"]``.

    ``metrics.csv`` has one header: the keys of the first row appended, in
    order. A later row may leave keys out (empty cells) but may not bring new
    ones: that raises ``ValueError``, so put every column in the first row, or
    collect the rows and call :meth:`write_metrics` once.
    """

    def __init__(self, directory: Path, seed: int):
        self.dir = Path(directory)
        self.seed = seed
        self._columns: list[str] | None = None

    def append_metrics(self, row: dict) -> None:
        """Append one row to metrics.csv (written and flushed before this returns)."""
        row = {key: scalar(value) for key, value in row.items()}
        path = self.dir / METRICS
        if self._columns is None:
            self._columns = list(row)
            with path.open("w", newline="") as file:
                csv.writer(file).writerow(self._columns)
        new = [key for key in row if key not in self._columns]
        if new:
            raise ValueError(
                f"metrics row has new column(s) {new}; the header is {self._columns} "
                "(give every column in the first row, or use write_metrics)"
            )
        with path.open("a", newline="") as file:
            csv.DictWriter(file, self._columns, restval="").writerow(row)

    def write_metrics(self, rows: list[dict]) -> None:
        """Write metrics.csv from all ``rows`` at once (header: every key, in order of first appearance).

        Replaces anything appended before; later :meth:`append_metrics` rows
        continue under this header.
        """
        rows = [{key: scalar(value) for key, value in row.items()} for row in rows]
        columns = list(dict.fromkeys(key for row in rows for key in row))
        with (self.dir / METRICS).open("w", newline="") as file:
            writer = csv.DictWriter(file, columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
        self._columns = columns

    def plot_path(self, name: str) -> Path:
        """``DIR/plots/<name>.png`` (a name with its own suffix keeps it); creates plots/."""
        if not name or Path(name).name != name:
            raise ValueError(f"plot name must be a plain file name, got {name!r}")
        plots = self.dir / PLOTS
        plots.mkdir(exist_ok=True)
        path = plots / name
        return path if path.suffix else path.with_suffix(".png")

    def progress(self, iterable=None, total: int | None = None, desc: str | None = None):
        """Wrap ``iterable`` in a progress bar on stderr (hidden when stderr is not a terminal)."""
        return tqdm(iterable, total=total, desc=desc, file=sys.stderr, disable=None, dynamic_ncols=True)

    def log(self, message: str, echo: bool = True) -> None:
        """Append ``message`` to log.txt and, with ``echo``, print it on stderr (without
        breaking a progress bar)."""
        if echo:
            tqdm.write(message, file=sys.stderr)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with (self.dir / LOG).open("a") as file:
            file.write(f"{stamp} {message}\n")
