"""A rule plus a penalty's gradient: ĝ + λ∇R (e.g. EP with the contraction penalty)."""

import jax

from .._trees import tree_add
from ._base import AbstractRule
from .contraction import ContractionPenalty


class Penalized(AbstractRule):
    """``rule``'s estimate plus ``penalty.weight`` × ∇R of a :class:`ContractionPenalty`.

    The key is split: ``fold_in(key, 0)`` for the rule, ``fold_in(key, 1)`` for
    the penalty's random directions (a key is required).
    """

    rule: AbstractRule
    penalty: ContractionPenalty

    def estimate(self, problem, z0, params, x, y, key):
        if key is None:
            raise ValueError("Penalized draws random directions: pass a PRNG key")
        grads, info = self.rule.estimate(problem, z0, params, x, y, jax.random.fold_in(key, 0))
        extra, _ = self.penalty.gradient(problem.batch_field, z0, params, x,
                                         jax.random.fold_in(key, 1))
        info = {**info, "matvecs": info["matvecs"]
                + self.penalty.matvecs(problem.batch_size(z0))}
        return tree_add(grads, extra), info
