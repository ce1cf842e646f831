r"""Backpropagation through the finite relaxation: the gradient of L(z_T).

z_T = Φ^T(z_0) with Φ(z) = z + εF(z); reverse mode through every diffrax Euler
step (``RecursiveCheckpointAdjoint``). This is the gradient of the deployed
computation, including the finite-horizon (contraction) term that the
equilibrium gradient lacks (seed 002).
"""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._diagnostics import residual
from .._relax import horizon, relax
from .._results import RESULTS
from ._base import AbstractEstimator, finish


class BPTT(AbstractEstimator):
    """Reverse-mode gradient of L(z_T) after ``steps`` Euler steps of size ``dt``.

    ``max_steps`` (default ``steps``) is the static loop bound: estimators with
    different ``steps`` under one bound share a compilation.
    """

    steps: jax.Array
    dt: jax.Array
    max_steps: int = eqx.field(static=True)

    def __init__(self, steps, dt, *, max_steps=None):
        self.steps, self.max_steps = horizon(steps, max_steps)
        self.dt = jnp.asarray(dt)

    def estimate(self, field, loss, params, z0, x, y):
        def objective(p):
            z_t = relax(field, z0, p, x, steps=self.steps, dt=self.dt,
                        max_steps=self.max_steps)
            return loss(z_t, p, y), z_t

        (value, z_t), grads = jax.value_and_grad(objective, has_aux=True)(params)
        info = {"loss": value, "residual": residual(field, z_t, params, x)}
        return finish(grads, RESULTS.successful, info)
