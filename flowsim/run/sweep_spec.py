"""Sweep specifications: ``--sweep key=v1,v2,...`` and a scenario's ``[sweep]`` table.

A sweep maps config keys to non-empty lists of values; the grid is their
Cartesian product, in the order the keys were given (the last key varies
fastest). Every value is read against its key's default like ``--set``
(TOML literals; a bare word for a str key), and every grid point is
validated as a whole config before anything runs: a bad spec is one
:class:`BadInput` line.
"""

import itertools

from flowsim.run.config import BadInput, flatten, parse_value, unknown_key_message

_OPEN, _CLOSE = "[{(", "]})"


def split_values(text: str) -> list[str]:
    """``"1, [2, 3], 'a,b'"`` -> ``["1", "[2, 3]", "'a,b'"]``: commas outside brackets and
    quotes separate values."""
    parts, depth, quote, current = [], 0, None, []
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts


def parse_sweep_args(texts: list[str], defaults: dict) -> dict[str, list]:
    """``--sweep`` texts -> ``{dotted key: [values]}``, each value read against its default."""
    flat = flatten(defaults)
    sweep: dict[str, list] = {}
    for text in texts:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(f"--sweep expects key=v1,v2,... (e.g. --sweep dt=0.1,0.2), got {text!r}")
        if key not in flat:
            raise BadInput(unknown_key_message(key, list(flat), "--sweep"))
        if key in sweep:
            raise BadInput(f"--sweep {key} is given twice; give all its values in one list")
        raws = split_values(raw)
        if not any(raws):
            raise BadInput(f"--sweep {key}= has no values; give at least one (e.g. {key}=v1,v2)")
        if not all(raws):
            raise BadInput(f"--sweep {key}={raw}: an empty value between commas")
        sweep[key] = [parse_value(key, item, flat[key]) for item in raws]
    return sweep


def check_table(table: dict, defaults: dict, source: str) -> dict[str, list]:
    """A scenario's ``[sweep]`` table -> ``{dotted key: [values]}``; every key known and
    every entry a non-empty list."""
    flat = flatten(defaults)
    sweep = {}
    for key, values in flatten(table).items():
        if key not in flat:
            raise BadInput(unknown_key_message(key, list(flat), f"{source} [sweep]"))
        if not isinstance(values, list) or not values:
            raise BadInput(f"{source} [sweep] {key} must be a non-empty list of values, "
                           f"got {values!r}")
        sweep[key] = values
    return sweep


def grid(sweep: dict[str, list]) -> list[dict]:
    """Every combination of the swept values, ``{key: value}`` each."""
    keys = list(sweep)
    return [dict(zip(keys, point)) for point in itertools.product(*sweep.values())]


def describe(point: dict) -> str:
    """``"dt=0.1, hopfield.gain=0.5"``: a grid point in a message."""
    return ", ".join(f"{key}={value!r}" for key, value in point.items())


__all__ = ["split_values", "parse_sweep_args", "check_table", "grid", "describe"]
