r"""Forward mode (RTRL) through the finite relaxation: the gradient of L(z_T).

Tangents e_t = dz_t/dθ are carried forward with the state,

    e_{t+1} = Φ_z(z_t) e_t + ε F_θ(z_t),       dL/dθ = L_z(z_T)ᵀ e_T,

which is the same number as BPTT (diffrax ``ForwardMode``). With
``directions = k`` only k random tangents v ~ N(0, I) in parameter space are
carried: ĝ = (1/k) Σ_i (∇L·v_i) v_i, unbiased since E[v vᵀ] = I, at the cost
of k JVPs instead of dim θ. The tangents are drawn from the ``key`` the rule
is given (a training loop passes a fresh key every step).
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ..solvers import Relaxation
from ._base import AbstractHorizonRule, all_samples, finish


class Forward(AbstractHorizonRule):
    """Forward-mode gradient of L(z_T); optionally k random tangent directions."""

    relaxation: Relaxation
    directions: int | None = eqx.field(static=True)

    def __init__(self, steps, dt, directions=None, *, max_steps=None):
        self.relaxation = Relaxation(steps, dt, max_steps=max_steps,
                                     adjoint=diffrax.ForwardMode())
        if directions is not None and (isinstance(directions, bool)
                                       or not isinstance(directions, int) or directions < 1):
            raise ValueError(f"directions must be None or a positive int, got {directions!r}")
        self.directions = directions

    def estimate(self, problem, z0, params, x, y, key):
        flat, unravel = ravel_pytree(params)

        def objective(flat_params):
            p = unravel(flat_params)
            z_t = self.relaxation.final_state(problem.batch_field, z0, p, x)
            return problem.objective(z_t, p, y), z_t

        if self.directions is None:
            flat_grad, (value, z_t) = _jacfwd_with_value(objective, flat)
            tangents = flat.size
        else:
            if key is None:
                raise ValueError("Forward with random directions needs a PRNG key: "
                                 "flowsim.gradient(..., key=jax.random.PRNGKey(0))")
            vectors = jax.random.normal(key, (self.directions, flat.size), flat.dtype)
            value, z_t = objective(flat)
            slopes = jax.vmap(lambda v: jax.jvp(lambda u: objective(u)[0], (flat,), (v,))[1])(vectors)
            flat_grad = slopes @ vectors / self.directions
            tangents = self.directions
        residual = jnp.max(problem.residuals(z_t, params, x))
        # Each step carries the state and its tangents: (1 + tangents) products.
        matvecs = (1 + tangents) * self.relaxation.steps * problem.batch_size(z0)
        return finish(unravel(flat_grad), all_samples(problem, z0), value, residual, matvecs)


def _jacfwd_with_value(objective, flat):
    """(∇ by forward mode, the objective's value and aux) in one pass."""
    def with_aux(u):
        value, z_t = objective(u)
        return value, (value, z_t)

    return jax.jacfwd(with_aux, has_aux=True)(flat)
