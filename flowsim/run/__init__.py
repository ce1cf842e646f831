"""The run store: what studies use to declare constraints and record results.

A study module (``analysis/<name>.py``) imports from here::

    from flowsim.run import RunContext, at_least, one_of, positive

    CONSTRAINTS = {"dt": positive, "steps": at_least(1), "estimator": one_of("bptt", "ep")}

    def run(config: dict, ctx: RunContext) -> dict: ...

Scenario loading, config resolution and the run lifecycle live in the
submodules (``scenario``, ``config``, ``runner``) that the CLI uses.
"""

from flowsim.run.config import BadInput
from flowsim.run.constraints import Constraint, at_least, in_range, non_negative, one_of, positive
from flowsim.run.store import RunContext

__all__ = [
    "BadInput",
    "Constraint",
    "RunContext",
    "at_least",
    "in_range",
    "non_negative",
    "one_of",
    "positive",
]
