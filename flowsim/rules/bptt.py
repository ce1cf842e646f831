r"""Backpropagation through the finite relaxation: the gradient of L(z_T).

z_T = Φ^T(z_0) with Φ(z) = z + εF(z); reverse mode through every diffrax Euler
step (``RecursiveCheckpointAdjoint``). This is the gradient of the deployed
computation, including the finite-horizon (contraction) term that the
equilibrium gradient lacks (seed 002).
"""

import jax
import jax.numpy as jnp

from ..solvers import Relaxation
from ._base import AbstractHorizonRule, all_samples, finish


class BPTT(AbstractHorizonRule):
    """Reverse-mode gradient of L(z_T) after ``steps`` Euler steps of size ``dt``.

    ``max_steps`` (default ``steps``) is the static loop bound: rules with
    different ``steps`` under one bound share a compilation.
    """

    relaxation: Relaxation

    def __init__(self, steps, dt, *, max_steps=None):
        self.relaxation = Relaxation(steps, dt, max_steps=max_steps)

    def estimate(self, problem, z0, params, x, y, key):
        del key

        def objective(p):
            z_t = self.relaxation.final_state(problem.batch_field, z0, p, x)
            return problem.objective(z_t, p, y), z_t

        (value, z_t), grads = jax.value_and_grad(objective, has_aux=True)(params)
        residual = jnp.max(problem.residuals(z_t, params, x))
        # T evaluations of F forward and T VJPs back, per sample.
        matvecs = 2 * self.relaxation.steps * problem.batch_size(z0)
        return finish(grads, all_samples(problem, z0), value, residual, matvecs)
