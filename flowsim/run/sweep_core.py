"""What a study offers ``flowsim run --sweep``: its computation, vectorisable over keys.

A study that defines ``SWEEP = SweepCore(...)`` runs a sweep as compiled
programs over the configuration axis (``flowsim.parallel``): every
configuration that differs from another only in ``traced`` keys shares one
program, vmapped and split across devices and processes. A study without
one runs each configuration as its own ``flowsim run`` (separate programs,
one run directory each under ``configs/``).

The core reads the traced keys from ``values`` (a dict ``key -> 0-d
array``), never from ``config``: within a group, ``config`` is the group's
first configuration and only its other keys are the group's.
"""

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class SweepCore:
    """A study's computation as a function of its configuration.

    Attributes:
        traced: config keys (int or float) that may differ inside one program.
        summary: ``(config, values, state) -> {key: 0-d array}``, the configuration's
            row of ``sweep.csv``.
        init: ``(config, values) -> state``, a pytree of arrays (default: no state).
        advance: ``(config, values, state, start, count) -> (state, metrics)``: ``count``
            steps (a Python int) from step ``start`` (a 0-d int array); ``metrics`` maps
            names to arrays of shape ``(count,)``, the rows of the configuration's
            ``metrics.csv``. ``None`` for a one-shot computation.
        steps: ``config -> int``, the steps ``advance`` runs in all.
        chunk: ``config -> int``, steps between checkpoints of the sharded state
            (0: none).
        headline: summary keys plotted against the swept keys (default: every numeric
            key that varies, at most four).
    """

    traced: tuple[str, ...]
    summary: Callable
    init: Callable | None = None
    advance: Callable | None = None
    steps: Callable = lambda config: 0
    chunk: Callable = lambda config: 0
    headline: tuple[str, ...] = ()


__all__ = ["SweepCore"]
