"""The estimator family: an abstract base and the functional entry point."""

import abc

import equinox as eqx
import jax

from .._fields import as_parametrised, loss_gradients
from .._results import RESULTS
from .._trees import tree_all_finite, tree_nan_like


class AbstractEstimator(eqx.Module):
    """An estimate of dL/dθ with the oracle's sign and scale, shaped like ``params``.

    Subclasses implement :meth:`estimate` for a loss of signature
    ``loss(z, params, y)`` (see :class:`flowsim.ParametrisedLoss`) and return
    ``(grads, info)``, ``info`` a flat dict of scalars with a ``"result"`` code.
    """

    @abc.abstractmethod
    def estimate(self, field, loss, params, z0, x, y):
        raise NotImplementedError


@eqx.filter_jit
def _estimate(estimator, field, loss, params, z0, x, y):
    return estimator.estimate(field, loss, params, z0, x, y)


def gradient(estimator: AbstractEstimator, field, loss, params, z0, x, y):
    """Estimate dL/dθ of ``loss`` for the dynamics ``field`` with ``estimator``.

    Args:
        estimator: e.g. ``flowsim.Implicit()``, ``flowsim.BPTT(steps, dt)``.
        field: ``field(z, params, x) -> dz/dt``.
        loss: ``loss(z, y) -> scalar``, or a :class:`flowsim.ParametrisedLoss`
            ``fn(z, params, y)`` when the readout has parameters.
        params, z0, x, y: pytrees (``x`` and ``y`` may be None).

    Returns:
        ``(grads, info)``: ``grads`` has the structure of ``params``. When
        ``info["result"]`` is not ``RESULTS.successful`` the gradients are NaN:
        a failed estimate is never returned as a plausible number.
    """
    if not isinstance(estimator, AbstractEstimator):
        raise TypeError(f"estimator must be a flowsim estimator, got {type(estimator).__name__}")
    return _estimate(estimator, field, as_parametrised(loss), params, z0, x, y)


def vjp_params(field, z, params, x, cotangent):
    """F_θᵀ c: the parameter VJP of the field at the state ``z``."""
    _, vjp = jax.vjp(lambda p: field(z, p, x), params)
    (grads,) = vjp(cotangent)
    return grads


def vjp_state(field, z, params, x):
    """The function c ↦ F_zᵀ c at ``z`` (one linearisation, reused)."""
    _, vjp = jax.vjp(lambda u: field(u, params, x), z)
    return lambda c: vjp(c)[0]


def direct_term(loss, z, params, y):
    """∂L/∂θ at fixed z (zero for a loss without parameters)."""
    return loss_gradients(loss, z, params, y)[1]


def finish(grads, result, info):
    """Attach the result code; NaN-out the gradient unless it can be trusted."""
    result = RESULTS.where(tree_all_finite(grads), result, RESULTS.nonfinite)
    ok = result == RESULTS.successful
    grads = jax.tree.map(lambda g, n: jax.numpy.where(ok, g, n), grads, tree_nan_like(grads))
    return grads, {**info, "result": result}


__all__ = ["AbstractEstimator", "gradient"]
