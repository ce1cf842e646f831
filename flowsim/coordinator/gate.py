r"""The gate: a smooth open/shut decision from a net benefit.

Seed 003 opens a gate with the hazard form

    η_gate = 1 − exp(−softplus(k·net)),      net = gain − cost.

This is the logistic function exactly: with s = softplus(x) = log(1 + eˣ),

    1 − e^{−s} = 1 − 1/(1 + eˣ) = eˣ/(1 + eˣ) = σ(x),

so η_gate = σ(k·net). The gate is ½ at net = 0, tends to 1 for a benefit far
above its cost and to 0 below it; k sets how sharp the decision is (a step
as k → ∞). It is computed here as ``jax.nn.sigmoid`` (stable for any x), and
:func:`hazard_gate` keeps the seed's form for the test that they agree.
"""

import jax
import jax.numpy as jnp


def gate(net, k=1.0):
    """η_gate = σ(k·net) = 1 − exp(−softplus(k·net)) (see the module docstring)."""
    return jax.nn.sigmoid(k * net)


def hazard_gate(net, k=1.0):
    """The seed's hazard form 1 − exp(−softplus(k·net)), as written (for comparison)."""
    return 1.0 - jnp.exp(-jax.nn.softplus(k * net))
