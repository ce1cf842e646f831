r"""A network with a gain c on its recurrent weights: W → c W, the family rho-vs-c scans.

``Gain(model)`` turns any engine system whose params hold a recurrent matrix
``"W"`` (:class:`~flowsim.systems.Hopfield`, :class:`~flowsim.systems.AsymmetricTanh`)
into an autonomous system with params ``{"c", **model_params}`` and a fixed input
``x`` (default none), so that continuation in ``c`` follows its equilibrium.
"""

import equinox as eqx
import jax
import jax.numpy as jnp


class Gain(eqx.Module):
    model: eqx.Module
    x: jax.Array | None = None

    def field(self, z, params, x=None):
        inner = {k: v for k, v in params.items() if k != "c"}
        inner["W"] = params["c"] * params["W"]
        return self.model.field(z, inner, self.x if x is None else x)

    def default_params(self, key=None, gain=1.0):
        key = jax.random.PRNGKey(0) if key is None else key
        return {"c": 0.0, **self.model.init_params(key, gain=gain)}

    def start(self, params):
        del params
        return jnp.zeros(self.model.n)
