r"""The contraction penalty (seed 002's homeostat), estimated with JVPs.

Along the deployed relaxation z_0, …, z_{T−1} of Φ(z) = z + ε F(z), with K
probe directions v_{t,k},

    R(θ) = (1/K) Σ_k Σ_{t<T} log( ‖Φ_z(z_t) v_{t,k}‖ / ‖v_{t,k}‖ ),
    Φ_z v = v + ε F_z(z_t) v          (one JVP of the field).

How the probes are drawn decides what R measures:

* carried (default): v_{t+1} = Φ_z(z_t) v_t / ‖Φ_z(z_t) v_t‖ from a random v_0,
  the way a largest Lyapunov exponent is estimated: the probe turns toward
  the least contracting direction, so R → Σ_t log ρ(Φ_z(z_t)) and a single
  mode with ρ → 1 dominates it, and its gradient;
* random (``carried=False``): a fresh v_{t,k} ~ N(0, I) at every step: R is
  the mean log stretch of the bulk of the spectrum, to which one marginal mode
  among n contributes O(1/n).

Adding λ ∇_θ R to any rule's gradient (:class:`flowsim.Penalized`) pushes the
dynamics to keep contracting. Norms are taken over the whole state pytree (for
a batch of states, one norm over the batch: the probe finds the least
contracting direction of any sample).

``through_states=False`` (default) holds the states z_t (and the carried
probes) fixed and differentiates only the explicit θ-dependence of F_z: the
local rule a physical system could apply with a second nearby trajectory.
With ``through_states=True`` the gradient also flows through z_t(θ) (reverse
mode through the relaxation).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ..solvers import relax_trajectory


class ContractionPenalty(eqx.Module):
    """λ·R(θ) with R the summed log stretch rate along T steps of ε (see module docstring)."""

    weight: float
    steps: int = eqx.field(static=True)
    dt: float
    directions: int = eqx.field(static=True, default=1)
    through_states: bool = eqx.field(static=True, default=False)
    carried: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if self.directions < 1 or self.steps < 1:
            raise ValueError("ContractionPenalty needs steps >= 1 and directions >= 1")

    def states(self, field, z0, params, x):
        """z_0, …, z_{T−1} (leading axis T), with gradients cut unless ``through_states``."""
        trajectory = relax_trajectory(field, z0, params, x, steps=self.steps, dt=self.dt)
        states = jax.tree.map(lambda u: u[:-1], trajectory)
        return states if self.through_states else jax.lax.stop_gradient(states)

    def stretch(self, field, states, params, x, key):
        """R given the states: (1/K) Σ_k Σ_t log(‖Φ_z(z_t) v‖/‖v‖)."""
        first = jax.tree.map(lambda u: u[0], states)
        flat0, unravel = ravel_pytree(first)
        flat_states = jax.vmap(lambda s: ravel_pytree(s)[0])(states)

        def stretched(z_flat, v):
            f = lambda u: ravel_pytree(field(unravel(u), params, x))[0]
            return v + self.dt * jax.jvp(f, (z_flat,), (v,))[1]

        if self.carried:
            v0 = jax.random.normal(key, (self.directions, flat0.size), flat0.dtype)
            v0 = v0 / jnp.linalg.norm(v0, axis=1, keepdims=True)

            def step(v, z_flat):
                w = jax.vmap(lambda u: stretched(z_flat, u))(v)
                norms = jnp.linalg.norm(w, axis=1)
                return jax.lax.stop_gradient(w / norms[:, None]), jnp.log(norms)

            _, logs = jax.lax.scan(step, v0, flat_states)
        else:
            probes = jax.random.normal(key, (self.steps, self.directions, flat0.size),
                                       flat0.dtype)

            def ratio(z_flat, v):
                return jnp.log(jnp.linalg.norm(stretched(z_flat, v))) - jnp.log(jnp.linalg.norm(v))

            logs = jax.vmap(lambda z, vs: jax.vmap(lambda v: ratio(z, v))(vs))(flat_states, probes)
        return jnp.sum(jnp.mean(logs, axis=1))

    def value(self, field, z0, params, x, key):
        """R(θ) (without the weight λ) for the field ``field`` (a batch is one state)."""
        return self.stretch(field, self.states(field, z0, params, x), params, x, key)

    def gradient(self, field, z0, params, x, key):
        """(λ ∇_θ R shaped like ``params``, R)."""
        value, grads = jax.value_and_grad(lambda p: self.value(field, z0, p, x, key))(params)
        return jax.tree.map(lambda g: self.weight * g, grads), value

    def matvecs(self, batch_size):
        """Products per evaluation: T states, K JVPs each, per sample."""
        return self.steps * (1 + self.directions) * batch_size
