"""Describe a finished (or running, or crashed) run directory for ``flowsim show``."""

import csv
import json
from pathlib import Path

from flowsim.run import store
from flowsim.run.config import BadInput


def describe_run(directory: Path) -> str:
    """Summary (status first), config, metrics columns with row count and last row, plots."""
    summary = _read_summary(directory)
    lines = [f"run {directory}", f"status: {summary.get('status', '<missing>')}"]
    lines += [f"  {key}: {value}" for key, value in summary.items() if key != "status"]
    if (directory / store.ERROR_LOG).is_file():
        lines.append(f"traceback: {directory / store.ERROR_LOG}")

    config = directory / store.CONFIG
    lines.append("config:")
    if config.is_file():
        lines += ["  " + line if line else "" for line in config.read_text().splitlines()]
    else:
        lines.append("  <no config.toml>")

    lines.append("metrics:")
    lines += ["  " + line for line in _describe_metrics(directory / store.METRICS)]
    if (directory / "sweep.csv").is_file():  # a sweep: one row per configuration
        lines.append("sweep:")
        lines += ["  " + line for line in _describe_metrics(directory / "sweep.csv")]

    plots = sorted(path.name for path in (directory / store.PLOTS).glob("*") if path.is_file())
    lines.append("plots: " + (", ".join(plots) if plots else "none"))
    return "\n".join(lines)


def _read_summary(directory: Path) -> dict:
    """summary.json, or :class:`BadInput` if ``directory`` is not a run directory."""
    path = directory / store.SUMMARY
    if not directory.is_dir():
        raise BadInput(f"{directory} is not a directory; give a run directory (runs/<name>-<time>)")
    if not path.is_file():
        raise BadInput(f"{directory} is not a run directory (no {store.SUMMARY})")
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadInput(f"cannot read {path}: {error}") from None
    if not isinstance(summary, dict):
        raise BadInput(f"{path} is not a JSON object")
    return summary


def _describe_metrics(path: Path) -> list[str]:
    """Columns, row count and the last row of a CSV (metrics.csv, sweep.csv)."""
    if not path.is_file():
        return ["none"]
    with path.open(newline="") as file:
        rows = list(csv.reader(file))
    if not rows:
        return [f"empty {path.name}"]
    header, body = rows[0], rows[1:]
    lines = [f"columns: {', '.join(header)}", f"rows: {len(body)}"]
    if body:
        lines.append("last: " + ", ".join(f"{key}={value}" for key, value in zip(header, body[-1])))
    return lines
