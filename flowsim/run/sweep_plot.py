"""``sweep.csv`` and ``plots/sweep.png`` of a sweep run."""

import csv
from pathlib import Path

from flowsim.run import store


def write_sweep_csv(path: Path, table: list[dict]) -> None:
    """One row per configuration; columns in order of first appearance (the swept keys,
    then ``status``, then the summary keys)."""
    columns = list(dict.fromkeys(key for row in table for key in row))
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, columns, restval="")
        writer.writeheader()
        for row in table:
            writer.writerow({key: _cell(value) for key, value in row.items()})


def _cell(value):
    try:
        return store.scalar(value)
    except TypeError:
        return str(value)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def plot_sweep(table: list[dict], swept: list[str], headline: list[str], path: Path,
               title: str) -> None:
    """Each headline key against the first swept key, one line per value of the others."""
    import matplotlib.pyplot as plt

    headline = [key for key in headline if any(_number(row.get(key)) for row in table)]
    if not headline:
        headline = ["status_ok"]
        table = [{**row, "status_ok": float(row.get("status") == "ok")} for row in table]
    x_key, others = swept[0], swept[1:]
    xs = [row[x_key] for row in table]
    categorical = not all(_number(x) for x in xs)
    positions = {x: i for i, x in enumerate(dict.fromkeys(map(str, xs)))}
    columns = min(len(headline), 2)
    rows_ = (len(headline) + columns - 1) // columns
    fig, axes = plt.subplots(rows_, columns, figsize=(5.2 * columns, 3.6 * rows_), squeeze=False)
    lines: dict[tuple, list[dict]] = {}
    for row in table:
        lines.setdefault(tuple(row[key] for key in others), []).append(row)
    for ax, key in zip(axes.flat, headline):
        for label, members in lines.items():
            points = [(positions[str(r[x_key])] if categorical else r[x_key], r.get(key))
                      for r in members if _number(r.get(key))]
            if points:
                ax.plot(*zip(*points), "o-", ms=4,
                        label=", ".join(f"{k}={v}" for k, v in zip(others, label)) or None)
        if categorical:
            ax.set_xticks(list(positions.values()), list(positions), rotation=30, fontsize=7)
        ax.set_xlabel(x_key)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if others and len(lines) <= 12:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(headline):]:
        ax.axis("off")
    fig.suptitle(f"{title}: {len(table)} configurations", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["write_sweep_csv", "plot_sweep"]
