r"""What a training run needs to know about a problem, and its jitted pieces.

A :class:`Task` is the problem: the field F(z; θ, x), a
:class:`flowsim.ParametrisedLoss` L(z, θ, y), the initial state z_0(θ, x), a
batch sampler ``sample(key) -> (x, y)`` that is a pure function of the key,
and the deployed horizon (T1 Euler steps of ε). Every leaf of z and x carries
the batch on its leading axis (for per-sample residuals and ρ).

A task whose field is core(z, θ, u(θ, x)) with an input encoding u that does
not depend on z may give ``encode`` and ``core_field``: the estimator then
differentiates with respect to (θ, u) and the chain rule adds u's part,
dL/dθ = ĝ_θ + (∂u/∂θ)ᵀ ĝ_u. It is exact for every estimator (u is just more
parameters of the dynamics) and keeps the encoding out of the relaxation's
loop, so reverse mode does not revisit it at every step.

:class:`Trainer` binds a task to an estimator, an optax optimiser and an
optional :class:`ContractionPenalty`. Randomness is a pure function of
``(seed, step)``: the batch of step k is ``sample(fold_in(data_key, k))``
whatever the estimator, so two estimators see the same data in the same
order, and a resumed run sees the batches an uninterrupted one would.
"""

import dataclasses
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .. import estimators as est
from .._fields import ParametrisedLoss
from .._trees import tree_add, tree_all_finite
from .contraction import ContractionPenalty


@dataclasses.dataclass(frozen=True)
class Task:
    """A learning problem over batched pytrees (see module docstring)."""

    field: Callable
    loss: ParametrisedLoss
    initial_state: Callable  # (params, x) -> z0
    sample: Callable  # key -> (x, y)
    steps: int  # T1, the deployed relaxation
    dt: float
    encode: Callable | None = None  # (params, x) -> u, optional (see below)
    core_field: Callable | None = None  # (z, params, u) -> dz/dt, with field = core(z, p, encode(p, x))


def _augmented(core_field):
    """The field of the augmented parameters (θ, u): F(z; (θ, u)) = core(z, θ, u)."""
    return lambda z, pu, _x: core_field(z, pu[0], pu[1])


def _augmented_loss(loss):
    return ParametrisedLoss(lambda z, pu, y: loss(z, pu[0], y))


def _keys(seed: int):
    init, data, noise = jax.random.split(jax.random.PRNGKey(seed), 3)
    return init, data, noise


def init_key(seed: int):
    """The key that initialises the parameters (the same for every estimator)."""
    return _keys(seed)[0]


class Trainer:
    """A task, an estimator and an optimiser; :meth:`gradient` and :meth:`update` are jitted.

    Args:
        task: the :class:`Task`.
        estimator: any :class:`flowsim.AbstractEstimator`; a ``Forward`` with
            random ``directions`` gets a fresh key every step.
        optimizer: an ``optax.GradientTransformation``.
        seed: fixes the data order and all noise.
        penalty: optional :class:`ContractionPenalty`, added to every gradient.

    The compiled code is keyed on (task, estimator, penalty), not on the
    trainer, so trainers that differ only in the optimiser or seed share it.
    """

    def __init__(self, task: Task, estimator, optimizer, seed: int, penalty=None):
        if not isinstance(estimator, est.AbstractEstimator):
            raise TypeError(f"estimator must be a flowsim estimator, got {type(estimator).__name__}")
        if penalty is not None and not isinstance(penalty, ContractionPenalty):
            raise TypeError("penalty must be a ContractionPenalty or None")
        self.task, self.estimator, self.optimizer = task, estimator, optimizer
        self.penalty, self.seed = penalty, seed
        _, self.data_key, self.noise_key = _keys(seed)

    def batch(self, step):
        """The batch (x, y) of training step ``step``."""
        return batch(self.task, self.data_key, step)

    def gradient(self, params, step):
        """The estimator's gradient on batch ``step`` (+ λ∇R) and its info (with ``finite``)."""
        return _gradient(self.task, self.estimator, self.penalty, self.data_key,
                         self.noise_key, params, jnp.asarray(step, jnp.int32))

    def update(self, params, opt_state, grads):
        """One optax step: ``(params, opt_state)``."""
        return _update(self.optimizer, params, opt_state, grads)

    def init_opt_state(self, params):
        return self.optimizer.init(params)

    def diagnostics(self, oracle, rho_samples: int = 8):
        """The :class:`~flowsim.train.diagnostics.Diagnostics` of this trainer."""
        from .diagnostics import Diagnostics

        return Diagnostics(self, oracle, rho_samples)


def batch(task: Task, data_key, step):
    """The batch of step ``step``: ``task.sample(fold_in(data_key, step))``."""
    return task.sample(jax.random.fold_in(data_key, step))


@eqx.filter_jit
def _gradient(task, estimator, penalty, data_key, noise_key, params, step):
    x, y = batch(task, data_key, step)
    z0 = task.initial_state(params, x)
    noise = jax.random.fold_in(noise_key, step)
    if isinstance(estimator, est.Forward) and estimator.directions is not None:
        estimator = eqx.tree_at(lambda e: e.key, estimator, jax.random.fold_in(noise, 0),
                                is_leaf=lambda u: u is None)
    if task.encode is None:
        grads, info = estimator.estimate(task.field, task.loss, params, z0, x, y)
    else:
        u, encode_vjp = jax.vjp(lambda p: task.encode(p, x), params)
        (g_params, g_u), info = estimator.estimate(
            _augmented(task.core_field), _augmented_loss(task.loss), (params, u), z0, None, y)
        grads = tree_add(g_params, encode_vjp(g_u)[0])
    info = dict(info)
    if penalty is not None:
        extra, value = penalty.gradient(task.field, params, z0, x, jax.random.fold_in(noise, 1))
        grads = tree_add(grads, extra)
        info["penalty"] = value
    info["finite"] = tree_all_finite(grads)
    return grads, info


@eqx.filter_jit
def _update(optimizer, params, opt_state, grads):
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def cast(tree, dtype):
    """Cast the floating leaves of a pytree to ``dtype``."""
    return jax.tree.map(
        lambda u: u.astype(dtype) if eqx.is_array(u) and jnp.issubdtype(u.dtype, jnp.floating) else u,
        tree,
    )


__all__ = ["Task", "Trainer", "batch", "init_key", "cast"]
