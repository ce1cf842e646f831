"""A small TOML writer for config files (``tomllib`` only reads).

Handles nested dicts of str, int, float, bool and lists of those (dicts inside
lists become inline tables). Floats are written with ``repr``, the shortest
string that reads back to the same double, so ``tomllib.loads(dumps(d)) == d``
holds exactly (``0.1``, ``1e-300``, ``inf`` and ``nan`` included).
"""

import math
import re

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def dumps(document: dict) -> str:
    """Serialise a nested dict to TOML text: scalars first, then ``[tables]``."""
    lines: list[str] = []
    _write_table(document, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _write_table(table: dict, path: list[str], lines: list[str]) -> None:
    """Append ``table``'s scalar keys, then each sub-table under its own header."""
    subtables = {key: value for key, value in table.items() if isinstance(value, dict)}
    if path:
        lines.append("")
        lines.append("[" + ".".join(_key(part) for part in path) + "]")
    for key, value in table.items():
        if key not in subtables:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in subtables.items():
        _write_table(value, path + [key], lines)


def _key(key: str) -> str:
    """A bare key where TOML allows one, else a quoted key."""
    if not isinstance(key, str):
        raise TypeError(f"TOML keys must be str, got {key!r}")
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _value(value) -> str:
    """The TOML literal of one value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value)  # 'inf', '-inf', '0.1', '1e-300': all valid TOML floats
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} value {value!r} as TOML")


def _string(text: str) -> str:
    """A TOML basic string, escaping quotes, backslashes and control characters."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
