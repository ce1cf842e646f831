r"""Test functions between consecutive branch points, and the location of what they find.

Between points i − 1 and i of a branch:

* **fold**: the tangent's p-component t_p changes sign;
* **branch point** (no fold): the number of unstable eigenvalues changes and
  the change is in the real ones (a real eigenvalue crosses 0 while p keeps
  its direction);
* **Hopf** (no fold): the number of unstable eigenvalues changes and the change
  is in the non-real ones (a complex pair crosses the imaginary axis).

A complex pair that splits into two real eigenvalues on one side of the axis
changes neither count's sum and is not reported.

An eigenvalue counts as real when |Im λ| ≤ ``imag_tol`` · max(1, |λ|). A
count is taken only among the k computed eigenvalues; at a saturated point
(all k unstable) a crossing can be missed, and the branch says so.

Each detection starts Newton on its extended system (:mod:`.locate`) from the
bracketing point nearer the crossing: for a fold, the state and the tangent's
z-part (at a fold the tangent is (v, 0), v the null vector); for a Hopf point,
the eigenpair nearest the imaginary axis; for a branch point, ψ from the
bordered solve [F_zᵀ φ; φᵀ 0][ψ; s] = [0; 1], φ the eigenvector of the
eigenvalue nearest 0 (ψ ⟂ range F_z, up to the distance to the point).
"""

import jax.numpy as jnp
import numpy as np

from .continuation import BifurcationPoint, newton
from .locate import SYSTEMS, branch_point_guess, fold_guess, hopf_guess, solve_extended

IMAG_TOL = 1e-8


def counts(values, imag_tol=IMAG_TOL):
    """(unstable real, unstable non-real) among ``values``."""
    values = np.asarray(values)
    real = np.abs(np.imag(values)) <= imag_tol * np.maximum(1.0, np.abs(values))
    unstable = np.real(values) > 0
    return int(np.sum(unstable & real)), int(np.sum(unstable & ~real))


def detections(before, after):
    """The kinds whose test function changes between two consecutive points.

    A crossing changes the number of unstable eigenvalues; a complex pair that
    becomes two real ones (or the reverse) on one side of the axis changes the
    composition but not the number, and is no bifurcation.
    """
    if before["t"][-1] * after["t"][-1] < 0:
        return ["fold"]
    real_before, complex_before = counts(before["values"])
    real_after, complex_after = counts(after["values"])
    if real_before + complex_before == real_after + complex_after:
        return []
    if complex_before == complex_after:
        return ["branch_point"]
    if real_before == real_after:
        return ["hopf"]
    # both changed: the eigenvalue nearest the axis on either side says which crossed
    nearest = min((v for pt in (before, after) for v in pt["values"]), key=lambda v: abs(v.real))
    return ["hopf" if abs(np.imag(nearest)) > IMAG_TOL * max(1.0, abs(nearest)) else
            "branch_point"]


def detect_and_locate(cont, before, after, index, params, options, found=()):
    """Every detection between the points ``before`` and ``after`` (``index``), located.

    Newton starts from the nearer of the two points; if it lands on a point already
    ``found`` (two bifurcations closer than a step), it starts again from the other."""
    from .normal_form import first_lyapunov_coefficient

    points = []
    for kind in detections(before, after):
        point = None
        for order in (0, 1):
            point = locate(cont, before, after, index, kind, params, options, order)
            if not (point.converged and any(same(point, other) for other in found)):
                break
        if point.converged and any(same(point, other) for other in found):
            point.converged = False  # both starts found the earlier point: not located
        if kind == "hopf" and point.converged:
            point.lyapunov_coefficient = float(first_lyapunov_coefficient(
                cont, jnp.asarray(point.solution), params, options))
        points.append(point)
    return points


def same(point, other, rtol=1e-8):
    """Two located points of one kind at the same p and state."""
    scale = max(1.0, abs(other.p))
    return (point.kind == other.kind and abs(point.p - other.p) <= rtol * scale
            and np.max(np.abs(point.z - other.z)) <= rtol * max(1.0, np.max(np.abs(other.z))))


def locate(cont, before, after, index, kind, params, options, order=0):
    """Newton on ``kind``'s extended system from the better of the two points
    (``order=1``: from the other one)."""
    n = before["u"].size - 1
    dtype = before["u"].dtype
    pick = lambda candidates, key: sorted(candidates, key=key)[min(order, len(candidates) - 1)]
    if kind == "fold":
        q = pick([before, after], lambda pt: abs(pt["t"][-1]))
        x0, ell = fold_guess(jnp.asarray(q["u"][:-1]), q["u"][-1], jnp.asarray(q["t"][:-1]))
    elif kind == "hopf":
        q, j = pick([(pt, j) for pt in (before, after) for j in range(pt["values"].size)
                     if np.imag(pt["values"][j]) > IMAG_TOL],
                    lambda c: abs(np.real(c[0]["values"][c[1]])))
        x0, ell = hopf_guess(jnp.asarray(q["u"][:-1]), jnp.asarray(q["u"][-1]),
                             jnp.asarray(q["values"][j]), jnp.asarray(q["vectors"][j]))
    else:
        q, j = pick([(pt, j) for pt in (before, after) for j in range(pt["values"].size)
                     if abs(np.imag(pt["values"][j])) <= IMAG_TOL],
                    lambda c: abs(np.real(c[0]["values"][c[1]])))
        psi = left_null_vector(cont, jnp.asarray(q["u"]), params,
                               jnp.real(jnp.asarray(q["vectors"][j])), options)
        x0, ell = branch_point_guess(jnp.asarray(q["u"][:-1]), q["u"][-1], psi)
    system = SYSTEMS[kind](cont)
    x0, ell = x0.astype(dtype), ell.astype(dtype)
    x, ok, residual = solve_extended(system, x0, params, ell,
                                     newton(options, x0.size, x0.dtype),
                                     options.max_locate_steps)
    point = BifurcationPoint(kind=kind, p=float(system.p(x, n)), z=np.asarray(x[:n]),
                             solution=np.asarray(x), index=index, converged=bool(ok),
                             residual=float(residual), ell=np.asarray(ell))
    if kind == "hopf":
        point.omega = float(x[-2])
        # ω = 0 solves the Hopf system at a fold too (F_z a = 0, b = 0): not a Hopf point
        point.converged = point.converged and abs(point.omega) > 1e-8 * max(1.0, abs(point.p))
    return point


def left_null_vector(cont, u, params, phi, options):
    """ψ with F_zᵀψ ≈ 0: [F_zᵀ φ; φᵀ 0][ψ; s] = [0; 1] at u = (z, p)."""
    z, p = u[:-1], u[-1]
    vjp = cont.vjp_z(z, p, params)
    apply = lambda x: jnp.concatenate([vjp(x[:-1])[0] + x[-1] * phi,
                                       jnp.atleast_1d(phi @ x[:-1])])
    rhs = jnp.zeros(z.size + 1, z.dtype).at[-1].set(1.0)
    x, _ = options.linear(apply, rhs)
    return x[:-1]


__all__ = ["counts", "detections", "detect_and_locate", "locate", "left_null_vector"]
