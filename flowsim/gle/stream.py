r"""The drive of a GLE network: the input x(t) and the target y*(t) over time.

A drive is any object with ``evaluate(t) -> (x, y_target)``; the network's
field calls it at every solver step. Three kinds:

* :class:`Stream`: data sampled at times ``ts``, linearly interpolated between
  them (``diffrax.LinearInterpolation``), e.g. a time series streamed into the
  network sample by sample;
* :class:`Constant`: a static input and target (the steady-state checks);
* :class:`Function`: ``t ↦ (x, y*)`` in closed form (the sine checks).

Targets are what the output error compares with: values for a squared error,
probability vectors (one-hot labels) for a cross-entropy.
"""

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax.numpy as jnp


class Stream(eqx.Module):
    """Inputs ``xs`` and targets ``ys`` sampled at ``ts`` (leading axis time), interpolated."""

    inputs: diffrax.LinearInterpolation
    targets: diffrax.LinearInterpolation

    def __init__(self, ts, xs, ys):
        ts = jnp.asarray(ts)
        self.inputs = diffrax.LinearInterpolation(ts, jnp.asarray(xs))
        self.targets = diffrax.LinearInterpolation(ts, jnp.asarray(ys))

    def evaluate(self, t):
        return self.inputs.evaluate(t), self.targets.evaluate(t)


class Constant(eqx.Module):
    """A static input and target."""

    x: jnp.ndarray
    y: jnp.ndarray

    def evaluate(self, t):
        del t
        return self.x, self.y


class Function(eqx.Module):
    """``fn(t) -> (x, y*)`` in closed form."""

    fn: Callable = eqx.field(static=True)

    def evaluate(self, t):
        return self.fn(t)
