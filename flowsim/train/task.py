r"""What one training loop needs to know about a scheme: a task.

A task is a :class:`flowsim.Problem` with data and an evaluation:

    sample(key) -> (x, y)          the training batch of a step (a pure function of the key)
    initial_state(params, x) -> z0 where the fast state starts (default: the problem's)
    evaluate(params) -> dict       the metrics of a row (on fixed evaluation batches)
    oracle_problem                 the problem whose exact gradient the loop's cosines
                                   compare with (default: ``problem``; a scheme whose
                                   rule learns on one objective and is judged on
                                   another, like FEP's P-flow, says which)

Each scheme has its own (``flowsim.ep.CharTask``, ``flowsim.fep.FEPTask``, ...);
the loop (:func:`flowsim.train.fit`), the rules and the optimisers are shared.
"""

import abc

import equinox as eqx

from ..problem import Problem


class AbstractTask(eqx.Module):
    """A scheme's problem, its training data and its evaluation (see the module docstring)."""

    problem: eqx.AbstractVar[Problem]

    @abc.abstractmethod
    def sample(self, key):
        """The batch ``(x, y)`` drawn with ``key`` (jittable)."""

    @abc.abstractmethod
    def evaluate(self, params) -> dict:
        """Metrics of the parameters, as Python floats (one row of metrics.csv)."""

    @property
    def oracle_problem(self) -> Problem:
        """The problem the oracle differentiates (see the module docstring)."""
        return self.problem

    def initial_state(self, params, x):
        """z0 for the batch ``x``."""
        return self.problem.z0(params, x)


__all__ = ["AbstractTask"]
