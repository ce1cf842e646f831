"""Resolve a scenario's config: overrides, type checks, finiteness and ranges.

A config is a nested dict read from TOML; its dotted keys (``model.width``)
are what ``--set`` and override files change. Every key's type is the type
of its default: an int key takes ints, a float key takes floats and ints
(converted), bool, str and list keys take their own kind. Every float must be
finite, and each study's ``CONSTRAINTS`` must hold. Any violation raises
:class:`BadInput`, whose message is the one line the CLI prints.
"""

import copy
import difflib
import math
import tomllib

from flowsim.run.constraints import Constraint

SEED_KEY = "seed"
_SEED_LIMIT = 2**63


class BadInput(ValueError):
    """Bad user input: the message names the problem and the valid choices."""


def parse_assignment(text: str) -> tuple[str, str]:
    """Split one ``--set key.sub=value`` argument into ``(key, raw_value)``."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise BadInput(f"--set expects key=value (e.g. --set dt=0.05), got {text!r}")
    return key, raw.strip()


def parse_overrides(assignments: list[str], config: dict) -> dict:
    """``--set`` texts -> ``{dotted_key: value}``, each value read against its key's default."""
    defaults = flatten(config)
    overrides = {}
    for text in assignments:
        key, raw = parse_assignment(text)
        if key not in defaults:
            raise BadInput(_unknown_key_message(key, defaults, "--set"))
        overrides[key] = parse_value(key, raw, defaults[key])
    return overrides


def parse_value(key: str, raw: str, default):
    """Read ``raw`` as a TOML literal; for a str key, a bare word is the string itself."""
    try:
        parsed = tomllib.loads(f"value = {raw}")
    except tomllib.TOMLDecodeError:
        parsed = None
    if parsed is not None and list(parsed) == ["value"]:
        if not isinstance(default, str) or isinstance(parsed["value"], str):
            return parsed["value"]
    if isinstance(default, str):
        return raw
    raise BadInput(f"{key}: {raw!r} is not a valid {type_name(default)} (values are TOML literals)")


def type_name(value) -> str:
    """The name a message uses for a config value's kind."""
    names = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "table"}
    return names.get(type(value), type(value).__name__)


def flatten(config: dict, prefix: str = "") -> dict:
    """``{"model": {"width": 3}}`` -> ``{"model.width": 3}`` (tables recurse, lists are leaves)."""
    flat = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def coerce(key: str, value, default):
    """Check ``value`` against the type of ``default``; return it (ints become floats for float keys)."""
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise BadInput(f"{key} = {value}: too large for a float") from None
    if isinstance(default, list) and isinstance(value, list):
        element_types = {type(item) for item in default}
        if len(element_types) != 1:
            return value
        return [coerce(f"{key}[{index}]", item, default[0]) for index, item in enumerate(value)]
    if type(value) is not type(default):
        expected = type_name(default)
        article = "an" if expected[0] in "aeiou" else "a"
        raise BadInput(f"{key} must be {article} {expected}, got {value!r} ({type_name(value)})")
    return value


def apply_overrides(config: dict, overrides: dict, source: str) -> dict:
    """A copy of ``config`` with ``{dotted_key: value}`` applied, each type-checked.

    ``source`` says where the overrides came from (``"--set"``, a file name),
    for the messages.
    """
    resolved = copy.deepcopy(config)
    defaults = flatten(config)
    for key, value in overrides.items():
        if key not in defaults:
            raise BadInput(_unknown_key_message(key, defaults, source))
        parts = key.split(".")
        table = resolved
        for part in parts[:-1]:
            table = table[part]
        table[parts[-1]] = coerce(key, value, defaults[key])
    return resolved


def _unknown_key_message(key: str, defaults: dict, source: str) -> str:
    """'unknown key' with the nearest valid keys and the full list."""
    valid = sorted(defaults)
    tables = sorted(k for k in valid if k.startswith(key + "."))
    if tables:
        return f"{source}: {key} is a table; set one of its keys: {', '.join(tables)}"
    near = difflib.get_close_matches(key, valid, n=3)
    hint = f" (did you mean {' or '.join(near)}?)" if near else ""
    return f"{source}: unknown config key {key!r}{hint}; valid keys: {', '.join(valid)}"


def set_seed(config: dict, seed: int | None) -> dict:
    """Put ``seed`` (or the config's own, default 0) into ``config["seed"]`` and check it."""
    if seed is not None:
        config[SEED_KEY] = seed
    config.setdefault(SEED_KEY, 0)
    value = config[SEED_KEY]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _SEED_LIMIT:
        raise BadInput(f"seed must be an integer in [0, 2**63), got {value!r}")
    return config


def validate(config: dict, constraints: dict[str, Constraint]) -> None:
    """Check every value is a TOML type, every float finite and every constraint holds."""
    flat = flatten(config)
    for key, value in flat.items():
        _check_finite(key, value)
    for key, constraint in constraints.items():
        if not isinstance(constraint, Constraint):
            raise BadInput(f"CONSTRAINTS[{key!r}] is not a flowsim.run constraint: {constraint!r}")
        if key not in flat:
            raise BadInput(f"CONSTRAINTS names {key!r}, which the config lacks; keys: {', '.join(sorted(flat))}")
        message = constraint.check(flat[key])
        if message is not None:
            raise BadInput(f"{key} = {flat[key]!r}: {message}")


def _check_finite(key: str, value) -> None:
    """Reject NaN/inf floats and values TOML cannot hold, recursing into lists and tables."""
    if isinstance(value, float) and not math.isfinite(value):
        raise BadInput(f"{key} = {value}: must be a finite number")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_finite(f"{key}[{index}]", item)
    elif isinstance(value, dict):
        for sub, item in value.items():
            _check_finite(f"{key}.{sub}", item)
    elif not isinstance(value, bool | int | float | str):
        raise BadInput(f"{key} = {value!r}: {type_name(value)} values are not supported in a config")
