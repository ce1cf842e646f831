r"""A task, a learning rule and an optax optimiser: one training step, jitted.

Randomness is a pure function of ``(seed, step)``: the batch of step k is
``task.sample(fold_in(data_key, k))`` whatever the rule, so two rules see the
same data in the same order and a resumed run sees the batches an
uninterrupted one would; a rule that draws random numbers gets
``fold_in(noise_key, k)``.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .._results import RESULTS
from ..rules import AbstractRule
from ..rules._base import _gradient
from .task import AbstractTask


def keys(seed: int):
    """(init, data, noise) keys of a run."""
    return tuple(jax.random.split(jax.random.PRNGKey(seed), 3))


def init_key(seed: int):
    """The key that initialises the parameters (the same for every rule)."""
    return keys(seed)[0]


class Trainer:
    """:meth:`gradient` and :meth:`update` of one step, compiled once per (task, rule).

    The compiled code is keyed on (task, rule), not on the trainer, so trainers
    that differ only in the optimiser or the seed share it.
    """

    def __init__(self, task: AbstractTask, rule: AbstractRule, optimizer, seed: int):
        if not isinstance(rule, AbstractRule):
            raise TypeError(f"rule must be a flowsim learning rule, got {type(rule).__name__}")
        if not isinstance(task, AbstractTask):
            raise TypeError(f"task must be a flowsim task, got {type(task).__name__}")
        self.task, self.rule, self.optimizer, self.seed = task, rule, optimizer, seed
        _, self.data_key, self.noise_key = keys(seed)

    def batch(self, step):
        """The batch (x, y) of training step ``step``."""
        return batch(self.task, self.data_key, step)

    def gradient(self, params, step):
        """The rule's ``(grads, info)`` on the batch of ``step``."""
        return _step_gradient(self.task, self.rule, self.data_key, self.noise_key, params,
                              jnp.asarray(step, jnp.int32))

    def update(self, params, opt_state, grads):
        """One optax step: ``(params, opt_state)``."""
        return _update(self.optimizer, params, opt_state, grads)

    def init_opt_state(self, params):
        return self.optimizer.init(params)


def batch(task, data_key, step):
    """The batch of step ``step``: ``task.sample(fold_in(data_key, step))``."""
    return task.sample(jax.random.fold_in(data_key, step))


@eqx.filter_jit
def _step_gradient(task, rule, data_key, noise_key, params, step):
    x, y = batch(task, data_key, step)
    z0 = task.initial_state(params, x)
    return _gradient(rule, task.problem, z0, params, x, y, jax.random.fold_in(noise_key, step))


@eqx.filter_jit
def _update(optimizer, params, opt_state, grads):
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state




def run_steps(task, rule, optimizer, params, opt_state, data_key, noise_key, steps: int,
              start: int = 0):
    """``steps`` training steps as one ``lax.scan``: the loop's steps without its rows.

    Jittable and vmappable (a sweep over learning rates or weights is one
    program). A step whose estimate failed leaves θ and the optimiser state
    unchanged (the loop's default, with no stop). Returns ``(params, opt_state,
    info)`` with the rule's info stacked over the steps.
    """
    def body(carry, k):
        params, opt_state = carry
        grads, info = _step_gradient(task, rule, data_key, noise_key, params, k)
        new_params, new_state = _update(optimizer, params, opt_state, grads)
        ok = info["result"] == RESULTS.successful
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
        return (keep(new_params, params), keep(new_state, opt_state)), info

    (params, opt_state), info = jax.lax.scan(body, (params, opt_state),
                                             start + jnp.arange(steps))
    return params, opt_state, info


__all__ = ["Trainer", "batch", "keys", "init_key", "run_steps"]
