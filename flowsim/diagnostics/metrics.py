"""Diagnostics that explain why two gradients differ: residual, cosine, relative error."""

import jax.numpy as jnp

from .._trees import tree_norm, tree_sub, tree_vdot


def residual(field, z, params, x):
    """‖F(z)‖₂ over the whole state pytree: how far z is from an equilibrium."""
    return tree_norm(field(z, params, x))


def cosine(a, b):
    """Cosine of the angle between two pytrees of the same structure, taken as vectors.

    NaN when either is zero (the angle is undefined), never a silent 0 or 1.
    """
    denominator = tree_norm(a) * tree_norm(b)
    return jnp.where(denominator > 0, tree_vdot(a, b) / denominator, jnp.nan)


def relative_error(estimate, reference):
    """‖estimate − reference‖ / ‖reference‖ over pytrees."""
    return tree_norm(tree_sub(estimate, reference)) / tree_norm(reference)


__all__ = ["residual", "cosine", "relative_error"]
