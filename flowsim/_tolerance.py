r"""Tolerances derived from the floating-point type, never fixed numbers.

A fixed ``1e-8`` is out of reach in float32 (ε = 1.2e-7), and needlessly
loose in float64 (ε = 2.2e-16). Every default tolerance in flowsim is a power
of the dtype's machine epsilon:

    equilibrium residual   ‖F(z*)‖ ≤ ε^{3/4} (1 + ‖z‖)     float64: 1.8e-12, float32: 6.4e-6
    adjoint GMRES          rtol = ε^{2/3}                   float64: 3.7e-11, float32: 2.4e-5

(ε^{3/4} leaves a factor ε^{-1/4} ≈ 8,000 in float64 and 50 in float32 above
the roundoff floor ε‖z‖‖F_z‖ of an evaluation of F, so a Newton solve of a
well-conditioned problem reaches it.)
"""

import jax
import jax.numpy as jnp


def tree_dtype(tree):
    """The floating dtype of a pytree's leaves (the widest; complex counts as its real part)."""
    dtypes = [jnp.real(jnp.zeros((), leaf.dtype)).dtype for leaf in jax.tree.leaves(tree)
              if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    return jnp.result_type(*dtypes) if dtypes else jnp.dtype(float)


def eps(dtype) -> float:
    """Machine epsilon of a floating dtype."""
    return float(jnp.finfo(dtype).eps)


def residual_tolerance(dtype) -> float:
    """Default relative and absolute tolerance on ‖F(z*)‖: ε^{3/4}."""
    return eps(dtype) ** 0.75


def linear_tolerance(dtype) -> float:
    """Default relative tolerance of an adjoint (GMRES) solve: ε^{2/3}."""
    return eps(dtype) ** (2.0 / 3.0)
