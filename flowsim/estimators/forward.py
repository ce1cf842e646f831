r"""Forward mode (RTRL) through the finite relaxation: the gradient of L(z_T).

Tangents e_t = dz_t/dθ are carried forward with the state,

    e_{t+1} = Φ_z(z_t) e_t + ε F_θ(z_t),       dL/dθ = L_z(z_T)ᵀ e_T,

which is the same number as BPTT (diffrax ``ForwardMode``). With
``directions = k`` only k random tangents v ~ N(0, I) in parameter space are
carried: ĝ = (1/k) Σ_i (∇L·v_i) v_i, unbiased since E[v vᵀ] = I, at the cost
of k JVPs instead of dim θ.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .._diagnostics import residual
from .._relax import horizon, relax
from .._results import RESULTS
from ._base import AbstractEstimator, finish


class Forward(AbstractEstimator):
    """Forward-mode gradient of L(z_T); optionally k random tangent directions."""

    steps: jax.Array
    dt: jax.Array
    directions: int | None = eqx.field(static=True)
    key: jax.Array | None
    max_steps: int = eqx.field(static=True)

    def __init__(self, steps, dt, directions=None, key=None, *, max_steps=None):
        self.steps, self.max_steps = horizon(steps, max_steps)
        self.dt = jnp.asarray(dt)
        if directions is not None and (isinstance(directions, bool) or directions < 1):
            raise ValueError(f"directions must be None or a positive int, got {directions!r}")
        self.directions = directions
        self.key = key

    def estimate(self, field, loss, params, z0, x, y):
        flat, unravel = ravel_pytree(params)

        def objective(flat_params):
            p = unravel(flat_params)
            z_t = relax(field, z0, p, x, steps=self.steps, dt=self.dt,
                        adjoint=diffrax.ForwardMode(), max_steps=self.max_steps)
            return loss(z_t, p, y)

        if self.directions is None:
            flat_grad = jax.jacfwd(objective)(flat)
        else:
            key = jax.random.PRNGKey(0) if self.key is None else self.key
            tangents = jax.random.normal(key, (self.directions, flat.size), flat.dtype)
            slopes = jax.vmap(lambda v: jax.jvp(objective, (flat,), (v,))[1])(tangents)
            flat_grad = slopes @ tangents / self.directions
        z_t = relax(field, z0, params, x, steps=self.steps, dt=self.dt,
                    max_steps=self.max_steps)
        info = {"loss": loss(z_t, params, y), "residual": residual(field, z_t, params, x)}
        return finish(unravel(flat_grad), RESULTS.successful, info)
