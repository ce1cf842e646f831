"""Small pytree helpers used across the engine."""

import jax
import jax.numpy as jnp


def tree_vdot(a, b):
    """Σ over leaves of ⟨a, b⟩ (real part for complex leaves)."""
    leaves = jax.tree.leaves(jax.tree.map(lambda u, v: jnp.real(jnp.vdot(u, v)), a, b))
    return sum(leaves, jnp.asarray(0.0))


def tree_norm(a):
    """Euclidean norm of all leaves of a pytree taken together."""
    leaves = [jnp.sum(jnp.abs(u) ** 2) for u in jax.tree.leaves(a)]
    return jnp.sqrt(sum(leaves, jnp.asarray(0.0)))


def tree_all_finite(a):
    """True when every entry of every leaf is finite."""
    leaves = [jnp.all(jnp.isfinite(u)) for u in jax.tree.leaves(a)]
    return jnp.all(jnp.asarray(leaves)) if leaves else jnp.asarray(True)


def tree_scale(a, s):
    """a·s, keeping each leaf's dtype (a float64 scalar must not promote float32 leaves)."""
    return jax.tree.map(lambda u: u * jnp.asarray(s).astype(u.dtype), a)


def tree_add(a, b):
    return jax.tree.map(lambda u, v: u + v, a, b)


def tree_sub(a, b):
    return jax.tree.map(lambda u, v: u - v, a, b)


def tree_nan_like(a):
    return jax.tree.map(lambda u: jnp.full_like(u, jnp.nan), a)


def tree_where(pred, a, b):
    """Leafwise ``where(pred, a, b)``; ``pred`` broadcasts against each leaf from the left.

    A per-sample predicate of shape (B,) selects whole samples of leaves of
    shape (B, ...).
    """

    def pick(u, v):
        p = jnp.reshape(pred, jnp.shape(pred) + (1,) * (jnp.ndim(u) - jnp.ndim(pred)))
        return jnp.where(p, u, v)

    return jax.tree.map(pick, a, b)


def cast(tree, dtype):
    """Cast the floating leaves of a pytree to ``dtype`` (others unchanged)."""
    return jax.tree.map(
        lambda u: u.astype(dtype)
        if hasattr(u, "dtype") and jnp.issubdtype(u.dtype, jnp.floating) else u,
        tree,
    )
