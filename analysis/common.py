"""Pieces the studies share: rows kept on resume, metrics read back, config hashes, figures."""

import csv
from pathlib import Path

from flowsim.train import checkpoint

CHECKPOINTS = "checkpoints"


def config_hash(config) -> str:
    """The hash a run's checkpoints carry: its whole typed config (``flowsim resume`` checks it)."""
    return checkpoint.config_hash(config.model_dump())


def kept_rows(ctx, checkpoint_dirs: dict, key=None):
    """On resume: the metrics rows up to each run's last checkpoint, rewritten to metrics.csv.

    ``checkpoint_dirs`` maps the value of column ``key`` (None: one run) to its
    checkpoint directory; rows of a run without checkpoints are dropped.
    """
    path = Path(ctx.dir) / "metrics.csv"
    lasts = {name: (checkpoint.latest(d) if d else None) for name, d in checkpoint_dirs.items()}
    if all(v is None for v in lasts.values()) or not path.is_file():
        return []
    kept = []
    for r in read_rows(path):
        last = lasts.get(r[key] if key else None)
        if last is not None and r["step"] <= last:
            kept.append(r)
    ctx.write_metrics(kept)
    return kept


def read_rows(path):
    """metrics.csv as dicts of numbers (strings where a cell is not a number)."""
    with Path(path).open() as f:
        return [{k: number(v) for k, v in r.items()} for r in csv.DictReader(f)]


def number(text):
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def write_csv(path, rows, columns=None):
    """``rows`` under one header: ``columns``, default every key in order of appearance
    (a row without a key leaves its cell empty)."""
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def save_figure(fig, path, title=None):
    """Give ``fig`` its title, lay it out, write it to ``path`` (110 dpi) and release it."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
