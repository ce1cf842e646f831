r"""The coordinator's Landau module as a flow: η̇ = −f'(η), f = a η² + b η⁴ − h η.

The energy is :class:`flowsim.coordinator.terms.Landau` itself (the term the
coordinator relaxes), without the coordinator's box [0, 1]: continuation
follows the smooth flow. At h = 0 the disordered branch η = 0 meets
η = ±√(−a/2b) in a pitchfork at a = 0; h ≠ 0 unfolds it, and the branch that
is ordered against the field ends in a fold at f' = f'' = 0:
η_f² = −a/6b, a_f = −(3|h|√(6b)/4)^{2/3}.
"""

import equinox as eqx
import jax
import jax.numpy as jnp

from ..coordinator.terms import Landau


class LandauFlow(eqx.Module):
    """Params ``{"a", "b", "h"}``; starts at the disordered η = 0 (exact at h = 0) or,
    with ``branch="ordered"``, at η = √max(−a/2b, 0) (exact at h = 0)."""

    branch: str = eqx.field(static=True, default="disordered")

    def energy(self, eta, params):
        term = Landau(jnp.arange(eta.size), params["a"], params["b"], params["h"])
        return jnp.sum(term.values(eta))

    def field(self, z, params, x=None):
        return -jax.grad(self.energy)(z, params)

    def default_params(self):
        return {"a": 1.0, "b": 1.0, "h": 0.0}

    def start(self, params):
        if self.branch == "ordered":
            return jnp.atleast_1d(jnp.sqrt(jnp.maximum(-params["a"] / (2 * params["b"]), 0.0)))
        return jnp.zeros(1)
