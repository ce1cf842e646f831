"""Typed study configurations: defaults, choices and ranges declared once, checked up front.

A study declares its configuration as a pydantic model (a subclass of
:class:`StudyConfig`, built from :class:`Section` tables). A scenario file
holds only what differs from those defaults; ``--set key.sub=value``
changes one key more. :func:`resolve` merges the three and validates the
result; anything wrong is a :class:`BadInput` whose message is the one line
the CLI prints (the key, the value, and the valid choices or range), raised
before any run directory exists.

Values are strict: an int key takes ints, a float key ints and floats, bool,
str and list keys only their own kind; floats must be finite.
"""

from __future__ import annotations

import copy
import difflib
import tomllib

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SEED_LIMIT = 2**63


class BadInput(ValueError):
    """Bad user input: the message names the problem and the valid choices."""


class Section(BaseModel):
    """A table of a study's configuration: strict types, no unknown keys, finite floats."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False,
                              validate_default=True, frozen=True)


class StudyConfig(Section):
    """The root of a study's configuration; every study has a ``seed``."""

    seed: int = Field(0, ge=0, lt=SEED_LIMIT, description="random seed of the whole run")


# --- dotted keys ----------------------------------------------------------------------

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


def set_dotted(config: dict, key: str, value) -> None:
    """``config[a][b] = value`` for ``key = "a.b"`` (tables created on the way)."""
    *tables, last = key.split(".")
    for part in tables:
        config = config.setdefault(part, {})
    config[last] = value


def merge(base: dict, changes: dict) -> dict:
    """A copy of ``base`` with the (nested) ``changes`` applied key by key."""
    out = copy.deepcopy(base)
    for key, value in flatten(changes).items():
        set_dotted(out, key, value)
    return out


def unknown_key_message(key: str, valid: list[str], source: str) -> str:
    """'unknown key' with the nearest valid keys and the full list."""
    valid = sorted(valid)
    tables = [k for k in valid if k.startswith(key + ".")]
    if tables:
        return f"{source}: {key} is a table; set one of its keys: {', '.join(tables)}"
    near = difflib.get_close_matches(key, valid, n=3)
    hint = f" (did you mean {' or '.join(near)}?)" if near else ""
    return f"{source}: unknown config key {key!r}{hint}; valid keys: {', '.join(valid)}"


def check_keys(changes: dict, defaults: dict, source: str) -> None:
    """Every dotted key of ``changes`` must be a key of ``defaults``."""
    valid = flatten(defaults)
    for key in flatten(changes):
        if key not in valid:
            raise BadInput(unknown_key_message(key, list(valid), source))


# --- --set ----------------------------------------------------------------------------

def parse_assignment(text: str) -> tuple[str, str]:
    """Split one ``--set key.sub=value`` argument into ``(key, raw_value)``."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise BadInput(f"--set expects key=value (e.g. --set dt=0.05), got {text!r}")
    return key, raw.strip()


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


def parse_overrides(assignments: list[str], defaults: dict) -> dict:
    """``--set`` texts -> a nested dict of changes, each value read against its key's default."""
    flat = flatten(defaults)
    changes: dict = {}
    for text in assignments:
        key, raw = parse_assignment(text)
        if key not in flat:
            raise BadInput(unknown_key_message(key, list(flat), "--set"))
        set_dotted(changes, key, parse_value(key, raw, flat[key]))
    return changes


def type_name(value) -> str:
    """The name a message uses for a config value's kind."""
    names = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "table"}
    return names.get(type(value), type(value).__name__)


# --- validation -----------------------------------------------------------------------

_TYPES = {"int_type": "int", "float_type": "float", "bool_type": "bool", "string_type": "str",
          "list_type": "list", "model_type": "table", "dict_type": "table", "int_from_float": "int"}


def _dotted(loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_error(error: dict, valid_keys: list[str]) -> str:
    """One line for one pydantic error: the key, the value, and what would be valid."""
    key, kind, value, ctx = _dotted(error["loc"]), error["type"], error.get("input"), error.get("ctx", {})
    if kind == "extra_forbidden":
        return unknown_key_message(key, valid_keys, "config")
    if kind in _TYPES:
        expected = _TYPES[kind]
        article = "an" if expected[0] in "aeiou" else "a"
        return f"{key} must be {article} {expected}, got {value!r} ({type_name(value)})"
    bounds = {"greater_than": ("> ", "gt"), "greater_than_equal": (">= ", "ge"),
              "less_than": ("< ", "lt"), "less_than_equal": ("<= ", "le")}
    if kind in bounds:
        words, name = bounds[kind]
        return f"{key} = {value!r}: must be {words}{ctx[name]}"
    if kind == "literal_error":
        return f"{key} = {value!r}: must be one of {ctx['expected']}"
    if kind == "finite_number":
        return f"{key} = {value!r}: must be a finite number"
    if kind == "too_short":
        return f"{key} = {value!r}: must have at least {ctx['min_length']} item(s)"
    if kind == "too_long":
        return f"{key} = {value!r}: must have at most {ctx['max_length']} item(s)"
    message = error["msg"].removeprefix("Value error, ")
    return f"{key}: {message}" if key else message


def resolve(config_class: type[StudyConfig], changes: dict, overrides: dict | None = None,
            seed: int | None = None, source: str = "config") -> StudyConfig:
    """The validated configuration: defaults, then ``changes`` (a scenario), then ``overrides``.

    Raises :class:`BadInput` with one line for the first problem found.
    """
    defaults = config_class().model_dump()
    check_keys(changes, defaults, source)
    data = merge(defaults, changes)
    if overrides:
        check_keys(overrides, defaults, "--set")
        data = merge(data, overrides)
    if seed is not None:
        data["seed"] = seed
    try:
        return config_class.model_validate(data)
    except ValidationError as error:
        raise BadInput(describe_error(error.errors()[0], list(flatten(defaults)))) from None


__all__ = ["BadInput", "Section", "StudyConfig", "resolve", "flatten", "merge", "parse_overrides",
           "parse_value", "parse_assignment", "describe_error", "SEED_LIMIT"]
