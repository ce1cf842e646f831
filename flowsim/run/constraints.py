"""Range constraints a study declares for its config keys.

A study module lists them in ``CONSTRAINTS``, keyed by dotted config key::

    CONSTRAINTS = {"dt": positive, "steps": at_least(1),
                   "beta": in_range(-1.0, 1.0), "estimator": one_of("bptt", "ep")}

The CLI checks every resolved value before it creates a run directory. Each
constraint answers ``check(value)`` with ``None`` when the value is fine, or a
message naming the valid range or choices (``"must be > 0"``).
"""

import abc
import dataclasses
import math


class Constraint(abc.ABC):
    """A predicate on one config value, with a message for values it rejects."""

    @abc.abstractmethod
    def check(self, value) -> str | None:
        """Return ``None`` if ``value`` is valid, else what a valid value looks like."""


def _is_number(value) -> bool:
    """True for int and float (bool excluded) values that are not NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not math.isnan(value)


@dataclasses.dataclass(frozen=True)
class GreaterThan(Constraint):
    """``value > bound``."""

    bound: float

    def check(self, value) -> str | None:
        if _is_number(value) and value > self.bound:
            return None
        return f"must be > {self.bound}"


@dataclasses.dataclass(frozen=True)
class AtLeast(Constraint):
    """``value >= bound``."""

    bound: float

    def check(self, value) -> str | None:
        if _is_number(value) and value >= self.bound:
            return None
        return f"must be >= {self.bound}"


@dataclasses.dataclass(frozen=True)
class InRange(Constraint):
    """``low <= value <= high`` (both ends included)."""

    low: float
    high: float

    def check(self, value) -> str | None:
        if _is_number(value) and self.low <= value <= self.high:
            return None
        return f"must be in [{self.low}, {self.high}]"


@dataclasses.dataclass(frozen=True)
class OneOf(Constraint):
    """``value`` equals one of ``choices``."""

    choices: tuple

    def check(self, value) -> str | None:
        if value in self.choices:
            return None
        return "must be one of " + ", ".join(repr(choice) for choice in self.choices)


positive = GreaterThan(0)
"""A value > 0 (step sizes, tolerances, widths)."""

non_negative = AtLeast(0)
"""A value >= 0 (seeds, regularisation weights)."""


def at_least(bound: float) -> Constraint:
    """A value >= ``bound`` (``at_least(1)`` for step counts)."""
    return AtLeast(bound)


def in_range(low: float, high: float) -> Constraint:
    """A value in the closed interval ``[low, high]``."""
    if not low <= high:
        raise ValueError(f"in_range needs low <= high, got [{low}, {high}]")
    return InRange(low, high)


def one_of(*choices) -> Constraint:
    """A value equal to one of ``choices`` (``one_of("bptt", "ep")``)."""
    if not choices:
        raise ValueError("one_of needs at least one choice")
    return OneOf(tuple(choices))
