r"""Is an equilibrium z* one the dynamics reaches? A cheap test of its linear stability.

Newton finds any root of F, attracting or not; a relaxation started near a
repelling or saddle z* runs away from it, so a gradient "at z*" there is a
gradient of a state the deployed dynamics never reaches. Near z*,
δz' = F_z δz, and z* attracts

* the Euler relaxation z ← z + dt F(z) iff ρ(I + dt F_z) = max |1 + dt λ| < 1
  (``criterion="euler"``);
* the flow ż = F(z) iff max Re λ < 0 (``criterion="flow"``),

λ over the eigenvalues of F_z(z*). States of dimension ≤ ``dense_max`` use
all the eigenvalues (one JVP per column); larger states the Ritz values of
``steps`` Arnoldi steps on F_z (:func:`arnoldi`; one JVP per step; the Krylov
space of I + dt F_z is the same, so one factorisation serves both criteria).
Ritz values approximate the outermost eigenvalues first: the test finds an
unstable mode that dominates the spectrum's edge (for the Euler map, the
largest |1 + dt λ|, the one that matters), and can miss an interior one. It is
a necessary test, cheap enough to run after every solve: ``steps`` JVPs
against the Newton solve's hundreds.
"""

import jax.numpy as jnp

from .spectral import arnoldi, dense_matrix, field_jvp

CRITERIA = ("euler", "flow")


def jacobian_eigenvalues(field, z, params, x, *, steps=8, dense_max=64, key=None):
    """The eigenvalues of F_z(z) (dense), or the Ritz values of ``steps`` Arnoldi steps."""
    flat_z, jvp = field_jvp(field, z, params, x)
    if flat_z.size <= dense_max:
        return jnp.linalg.eigvals(dense_matrix(jvp, flat_z))
    return jnp.linalg.eigvals(arnoldi(jvp, flat_z, min(steps, flat_z.size), key)[0])


def jacobian_products(size, *, steps=8, dense_max=64):
    """The JVPs :func:`jacobian_eigenvalues` spends on a state of ``size`` numbers."""
    return size if size <= dense_max else min(steps, size)


def stability_margin(eigenvalues, criterion, dt):
    """ρ(I + dt F_z) for "euler" (stable below 1), max Re λ for "flow" (stable below 0)."""
    if criterion == "euler":
        return jnp.max(jnp.abs(1 + dt * eigenvalues))
    if criterion == "flow":
        return jnp.max(jnp.real(eigenvalues))
    raise ValueError(f"stability criterion must be one of {CRITERIA}, got {criterion!r}")


def is_stable(margin, criterion):
    """The margin of :func:`stability_margin` on the stable side of its threshold."""
    return margin < (1.0 if criterion == "euler" else 0.0)


__all__ = ["CRITERIA", "jacobian_eigenvalues", "jacobian_products", "stability_margin", "is_stable"]
