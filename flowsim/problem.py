r"""The problem: fast dynamics, a readout loss, an optional energy, an initial state.

A :class:`Problem` holds plain functions over pytrees,

    field(z, params, x) -> dz/dt          the fast dynamics F_θ(z; x)
    loss(z, params, y)  -> scalar         the readout loss L(z, θ; y)
    energy(z, params, x) -> scalar        optional: E with F = −∇_z E (or a
                                          natural gradient of E, as in FEP)
    initial_state(params, x) -> z0        optional: where relaxations start

and says how a batch is laid out. With ``batched=False`` (the default) the
whole state is one system: one equilibrium, one tolerance. With
``batched=True`` every leaf of z, x and y carries the samples on its leading
axis, ``field``, ``loss`` and ``energy`` are written for ONE sample, and the
engine vmaps them: each sample's equilibrium is solved on its own, with its
own tolerance and result code, and the batch objective is

    L(z, θ; y) = Σ_i w_i ℓ(z_i, θ; y_i),   w_i = 1/B ("mean") or 1 ("sum").

A sample whose solve failed gets w_i = 0: estimates are over the converged
samples, and the count is reported (``info["failed_samples"]``).

``encode(params, x) -> u`` (optional) splits off the part of the input's
effect that does not depend on z: the field is then ``field(z, params, u)``
and learning rules differentiate with respect to (θ, u), adding u's part by
the chain rule, dL/dθ = ĝ_θ + (∂u/∂θ)ᵀ ĝ_u. That is exact for every rule (u
is more parameters of the dynamics) and keeps the encoding out of the
relaxation's loop, so reverse mode does not revisit it at every step.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ._trees import tree_norm

REDUCTIONS = ("mean", "sum")


class ParametrisedLoss(eqx.Module):
    """A readout loss that depends on the parameters: ``fn(z, params, y)``.

    Give it as a :class:`Problem`'s ``loss`` when the readout has parameters;
    every rule then adds the direct term ∂L/∂θ to its estimate of the indirect one.
    """

    fn: Callable

    def __call__(self, z, params, y):
        return self.fn(z, params, y)


class _StateLoss(eqx.Module):
    # A Module (not a lambda) so that wrapping the same loss twice compares equal
    # and jit does not retrace.
    loss: Callable

    def __call__(self, z, params, y):
        return self.loss(z, y)


def as_parametrised(loss) -> ParametrisedLoss:
    """Normalise a loss to the signature ``(z, params, y)``: ``loss(z, y)`` is wrapped."""
    if isinstance(loss, ParametrisedLoss):
        return loss
    return ParametrisedLoss(_StateLoss(loss))


class GradientField(eqx.Module):
    r"""The field F(z) = −∇_z E(z, params, x) of an energy E.

    For complex states (holomorphic EP) the derivative is the holomorphic one,
    E'(z), so the same energy serves real and complex nudges: the VJP of a
    holomorphic function with unit cotangent is its complex derivative.

    A Module, not a closure: two fields of the same energy compare equal, so
    jitted functions that take them compile once.
    """

    energy: Callable

    def __call__(self, z, params, x):
        value, vjp = jax.vjp(lambda u: self.energy(u, params, x), z)
        (grad,) = vjp(jnp.ones_like(value))
        return jax.tree.map(jnp.negative, grad)


def gradient_field(energy) -> GradientField:
    """F = −∇_z ``energy``, as a hashable, stable object (see :class:`GradientField`)."""
    return GradientField(energy)


def euclidean_norm(z, f):
    """‖f‖₂ over the whole pytree (the metric does not depend on the state z)."""
    del z
    return tree_norm(f)


class Problem(eqx.Module):
    """A learning problem: see the module docstring.

    Attributes:
        field: ``field(z, params, x) -> dz/dt`` (``x`` is ``encode``'s u when given).
        loss: ``loss(z, y)`` or a :class:`ParametrisedLoss` ``fn(z, params, y)``.
        energy: optional ``energy(z, params, x) -> scalar`` whose descent is the field.
        initial_state: optional ``initial_state(params, x) -> z0``.
        encode: optional ``encode(params, x) -> u`` (see the module docstring).
        batched: leaves carry samples on their leading axis; functions are per sample.
        reduction: ``"mean"`` or ``"sum"`` over the samples of a batch.
        norm: ``norm(z, f) -> scalar``, the norm in which a state's residual F(z)
            is measured (the metric of the flow; Euclidean by default).
        params_axes: vmap axes of ``params`` over samples (None: shared by all).
    """

    field: Callable
    loss: ParametrisedLoss
    energy: Callable | None = None
    initial_state: Callable | None = None
    encode: Callable | None = None
    batched: bool = eqx.field(static=True, default=False)
    reduction: str = eqx.field(static=True, default="mean")
    norm: Callable = euclidean_norm
    params_axes: Any = eqx.field(static=True, default=None)

    def __init__(self, field, loss, *, energy=None, initial_state=None, encode=None,
                 batched=False, reduction="mean", norm=euclidean_norm, params_axes=None):
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.field = field
        self.loss = as_parametrised(loss)
        self.energy = energy
        self.initial_state = initial_state
        self.encode = encode
        self.batched = bool(batched)
        self.reduction = reduction
        self.norm = norm
        self.params_axes = params_axes

    # --- batching -----------------------------------------------------------------
    def per_sample(self, fn):
        """``fn(z, params, x_or_y)`` over the batch: vmapped when ``batched``."""
        if not self.batched:
            return fn
        return jax.vmap(fn, in_axes=(0, self.params_axes, 0))

    def batch_field(self, z, params, x):
        """F over the batch (the field vmapped when ``batched``)."""
        return self.per_sample(self.field)(z, params, x)

    def batch_size(self, z) -> int:
        """Number of samples (1 for an unbatched problem)."""
        return jax.tree.leaves(z)[0].shape[0] if self.batched else 1

    def weights(self, ok):
        """Per-sample weights w_i of the batch objective; failed samples get 0."""
        ok = jnp.asarray(ok)
        if self.reduction == "sum":
            return ok.astype(float)
        return ok / jnp.maximum(jnp.sum(ok), 1)

    def objective(self, z, params, y, weights=None):
        """L(z, θ; y) = Σ_i w_i ℓ(z_i, θ; y_i) (all samples when ``weights`` is None)."""
        losses = self.per_sample(self.loss)(z, params, y)
        if weights is None:
            return losses if not self.batched else (
                jnp.sum(losses) if self.reduction == "sum" else jnp.mean(losses))
        return jnp.sum(weights.astype(losses.dtype) * losses)

    def residuals(self, z, params, x):
        """Per-sample ‖F(z_i)‖ in the problem's norm (a scalar when unbatched)."""
        return self.per_sample(lambda u, p, v: self.norm(u, self.field(u, p, v)))(z, params, x)

    def inputs(self, params, x):
        """What the field takes as its third argument: ``encode(params, x)`` or ``x``."""
        if self.encode is None:
            return x
        return self.per_sample_params(self.encode)(params, x)

    def per_sample_params(self, fn):
        """``fn(params, x)`` over the batch (vmapped over x when ``batched``)."""
        if not self.batched:
            return fn
        return jax.vmap(fn, in_axes=(self.params_axes, 0))

    def z0(self, params, x):
        """The initial state ``initial_state(params, x)``, per sample when ``batched``."""
        if self.initial_state is None:
            raise ValueError("this problem has no initial_state; pass z0 explicitly")
        return self.per_sample_params(self.initial_state)(params, x)

    def augmented(self) -> "Problem":
        """The problem in the augmented parameters (θ, u) with u = ``encode(θ, x)``.

        Its field is ``field(z, (θ, u), _) = self.field(z, θ, u)``; u varies per
        sample (vmap axis 0) when the problem is batched.
        """
        field, loss, energy = self.field, self.loss, self.energy
        return Problem(
            _Augmented(field),
            ParametrisedLoss(_AugmentedLoss(loss)),
            energy=None if energy is None else _Augmented(energy),
            batched=self.batched,
            reduction=self.reduction,
            norm=self.norm,
            params_axes=(self.params_axes, 0 if self.batched else None),
        )


class _Augmented(eqx.Module):
    fn: Callable

    def __call__(self, z, pu, x):
        del x
        params, u = pu
        return self.fn(z, params, u)


class _AugmentedLoss(eqx.Module):
    loss: Callable

    def __call__(self, z, pu, y):
        return self.loss(z, pu[0], y)


__all__ = ["Problem", "ParametrisedLoss", "GradientField", "gradient_field", "as_parametrised",
           "euclidean_norm", "REDUCTIONS"]
