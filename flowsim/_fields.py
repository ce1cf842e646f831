"""Fields built from energies, and losses that depend on the parameters."""

import equinox as eqx
import jax
import jax.numpy as jnp


def gradient_field(energy):
    r"""The field F(z) = −∇_z E(z, params, x) of an energy.

    For complex states (holomorphic EP) the derivative is the holomorphic one,
    E'(z), so the same energy serves real and complex nudges: the VJP of a
    holomorphic function with unit cotangent is its complex derivative.
    """

    def field(z, params, x):
        e, vjp = jax.vjp(lambda u: energy(u, params, x), z)
        (grad,) = vjp(jnp.ones_like(e))
        return jax.tree.map(jnp.negative, grad)

    return field


class ParametrisedLoss(eqx.Module):
    """A readout loss that depends on the parameters: ``fn(z, params, y)``.

    Pass it as the ``loss`` of :func:`flowsim.gradient`; every estimator then adds
    the direct term ∂L/∂θ to its estimate of the indirect one.
    """

    fn: callable = eqx.field(static=True)

    def __call__(self, z, params, y):
        return self.fn(z, params, y)


class _StateLoss(eqx.Module):
    # A Module (not a lambda) so that wrapping the same loss twice compares equal
    # and jit does not retrace.
    loss: callable = eqx.field(static=True)

    def __call__(self, z, params, y):
        return self.loss(z, y)


def as_parametrised(loss):
    """Normalise a loss to the signature ``(z, params, y)``."""
    if isinstance(loss, ParametrisedLoss):
        return loss
    return ParametrisedLoss(_StateLoss(loss))


def loss_gradients(loss, z, params, y):
    """(∂L/∂z, ∂L/∂θ) of a :class:`ParametrisedLoss` at (z, params), one VJP.

    For complex z the z-derivative is the holomorphic one (unit cotangent).
    """
    value, vjp = jax.vjp(lambda u, p: loss(u, p, y), z, params)
    dz, dparams = vjp(jnp.ones_like(value))
    return dz, dparams


__all__ = ["gradient_field", "ParametrisedLoss", "as_parametrised", "loss_gradients"]
