r"""When a training run stops with status "diverged", and when a step is skipped.

A row (the metrics of θ_k) diverges when

* the monitor, or a metric in ``finite``, is not finite (the reason adds the row's
  counts of failed solves, its ``*_failed`` keys that are not 0: a NaN metric is
  usually the mean over solves that all failed);
* the ``monitor`` metric exceeds ``factor`` × its best value so far
  (``against = "best"``) or its first value (``"first"``);
* a limited metric reaches its limit: ``limits = (("rho", 1.0),)`` stops at ρ ≥ 1.

A step's gradient is applied when the rule's result is ``successful``, or
``samples_failed`` with at most ``max_failed_fraction`` of the batch failed
(the estimate is then over the converged samples). Otherwise the step is
skipped, θ unchanged; more than ``max_skipped_steps`` skips stop the run.
"""

import dataclasses
import math

import numpy as np

from .._results import RESULTS, result_name


@dataclasses.dataclass(frozen=True)
class Divergence:
    """The rules above; see the module docstring."""

    monitor: str = "val_ce"
    factor: float = 2.0
    against: str = "best"
    limits: tuple = ()
    finite: tuple = ()
    max_failed_fraction: float = 0.0
    max_skipped_steps: int = 0

    def __post_init__(self):
        if self.against not in ("best", "first"):
            raise ValueError(f"against must be 'best' or 'first', got {self.against!r}")

    def check(self, row: dict, reference: float) -> str | None:
        """The reason ``row`` diverged (``reference``: the monitor's best or first value), or None."""
        for key in dict.fromkeys((*self.finite, self.monitor)):
            if not math.isfinite(row[key]):
                failed = [f"{k} {row[k]:g}" for k in row if k.endswith("_failed") and row[k]]
                return f"non-finite {key} ({row[key]})" + (
                    f"; failed solves: {', '.join(failed)}" if failed else "")
        value = row[self.monitor]
        if math.isfinite(reference) and value > self.factor * reference:
            return (f"{self.monitor} {value:.4g} above {self.factor:g} x "
                    f"{self.against} {reference:.4g}")
        for key, limit in self.limits:
            if row[key] >= limit:
                return f"{key} {row[key]:.6f} >= {limit:g}"
        return None

    def usable(self, info) -> tuple[bool, str]:
        """(whether the step's gradient is applied, why not)."""
        result = info["result"]
        if bool(result == RESULTS.successful):
            return True, ""
        codes = np.atleast_1d(np.asarray(info["sample_results"]._value))
        failed = int(info["failed_samples"])
        if bool(result == RESULTS.samples_failed) and failed <= self.max_failed_fraction * codes.size:
            return True, ""
        return False, (f"rule result {result_name(result)}, {failed} of {codes.size} "
                       "samples failed")


__all__ = ["Divergence"]
