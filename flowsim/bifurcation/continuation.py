r"""Pseudo-arclength continuation of F(z, p) = 0 in one scalar parameter p.

On u = (z, p) ∈ ℝⁿ⁺¹ a branch is a curve G(u) = F(z, p) = 0, followed by
arclength s (Keller 1977) in the weighted inner product

    ⟨u, v⟩_θ = (θ/n) z·z' + (1 − θ) p p'      (θ = ``theta``, 0.5 by default),

in which a step moves the state's root-mean-square and p alike, whatever n
(in the plain Euclidean norm a step of a large system would move z alone):

* tangent: t solves the bordered system [G_u; ⟨t_prev, ·⟩_θ] t = [0; 1], then
  t ← t/‖t‖_θ; the border keeps the orientation (⟨t, t_prev⟩_θ > 0) through
  folds, where p turns back and natural continuation in p fails;
* predictor: u_pred = u + ds t;
* corrector: Newton (``optimistix.Newton``) on [G(u); ⟨t, u − u_pred⟩_θ] = 0,
  the point on the branch in the hyperplane through u_pred normal to t. Its
  linear solves are dense LU below ``linear.dense_max`` unknowns, matrix-free
  lineax GMRES on JVPs above (:class:`~flowsim.bifurcation.extended.LinearSolve`);
* step size: ×1.5 (up to ``ds_max``) when the corrector took at most
  ``target_steps`` iterations, ×0.7 when it took more; halved and retried when
  it fails, down to ``ds_min``, and when its correction is longer than
  ``max_correction`` · ds (‖u − u_pred‖_θ): a corrector that travels farther
  than the step has usually converged onto another branch (seen on a trained
  character model's equilibrium, a correction 6.9 times the step).

At every point the k rightmost eigenvalues of F_z (:mod:`.spectrum`) give the
stability: the number with Re λ > 0. Between consecutive points a sign change
of the tangent's p-component t_p is a **fold**; with no fold, a change in the
number of unstable real eigenvalues is a **branch point** and a change in the
number of unstable complex ones (a pair) is a **Hopf** point. Each is then
located by Newton on its extended system (:mod:`.locate`) to ``locate_tol``.

The continuation stops at ``p_stop``, when p leaves [min(p_start, p_stop),
max(p_start, p_stop)], after ``max_points`` points, or when the corrector
fails at ``ds_min``; ``Branch.end`` says which (one of :data:`ENDS`).
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from .extended import Continuable, LinearSolve
from .newton import StepNewton
from .parameter import as_parameter
from .spectrum import SpectrumOptions, rightmost

ENDS = ("p_stop", "bounds", "max_points", "corrector_failed", "start_failed")


class ContinuationOptions(eqx.Module):
    """Step control, tolerances, the linear solve and the spectrum of each point.

    ``tol``: Newton's tolerance on its step (absolute and relative,
    :class:`~flowsim.bifurcation.newton.StepNewton`) for the corrector and the location; ``None`` derives
    it from the dtype (eps^0.75: 1.8e-12 in float64, 6.5e-6 in float32).
    """

    ds: float = 0.01
    theta: float = 0.5
    ds_min: float = 1e-7
    ds_max: float = 0.2
    max_points: int = 500
    tol: float | None = None
    max_corrector_steps: int = 10
    max_correction: float = 1.0
    target_steps: int = 3
    linear: LinearSolve = LinearSolve()
    spectrum: SpectrumOptions = SpectrumOptions()
    detect: bool = True
    max_locate_steps: int = 40


@dataclasses.dataclass
class BifurcationPoint:
    """A located bifurcation: ``kind`` (fold, branch_point, hopf), ``p``, ``z``.

    ``solution``: the extended system's solution (:mod:`.locate`); ``index``:
    the branch point after it; ``converged``: Newton met its tolerance;
    ``residual``: ‖extended system‖∞ there; ``omega`` (Hopf): the frequency;
    ``lyapunov_coefficient`` (Hopf): the first Lyapunov coefficient l₁;
    ``gradients``: dp/dθ by name, when asked.
    """

    kind: str
    p: float
    z: np.ndarray
    solution: np.ndarray
    index: int
    converged: bool
    residual: float
    ell: np.ndarray
    omega: float = float("nan")
    lyapunov_coefficient: float = float("nan")
    gradients: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Branch:
    """A continued branch, one row per point (numpy arrays).

    ``unstable``: eigenvalues with Re λ > 0 among the k computed (``saturated``
    where all k are, so the true count may be larger); ``eigenvalues`` (m, k)
    sorted by real part; ``eigen_residuals`` the largest ‖F_z y − λ y‖ per point;
    ``tangents`` (m, n + 1) the unit tangents.
    """

    parameter: str
    p: np.ndarray
    z: np.ndarray
    tangents: np.ndarray
    unstable: np.ndarray
    saturated: np.ndarray
    eigenvalues: np.ndarray
    eigen_residuals: np.ndarray
    corrector_steps: np.ndarray
    ds: np.ndarray
    end: str
    bifurcations: list = dataclasses.field(default_factory=list)

    @property
    def tangent_p(self):
        """The tangent's p-component at each point (its sign flips at a fold)."""
        return self.tangents[:, -1] if self.tangents.size else np.zeros(0)

    @property
    def norm(self):
        """‖z‖₂ / √n at each point (the diagram's ordinate)."""
        return np.linalg.norm(self.z, axis=1) / np.sqrt(self.z.shape[1])

    def rows(self):
        """branch.csv's rows: p, the norm, stability and the rightmost eigenvalues."""
        rows = []
        for i in range(len(self.p)):
            row = {self.parameter: float(self.p[i]), "norm": float(self.norm[i]),
                   "z_max": float(np.max(self.z[i])), "z_min": float(np.min(self.z[i])),
                   "unstable": int(self.unstable[i]), "stable": int(self.unstable[i] == 0),
                   "saturated": int(self.saturated[i]), "tangent_p": float(self.tangent_p[i])}
            for j, value in enumerate(self.eigenvalues[i]):
                row[f"re_{j + 1}"] = float(np.real(value))
                row[f"im_{j + 1}"] = float(np.imag(value))
            row["eigen_residual"] = float(self.eigen_residuals[i])
            rows.append(row)
        return rows


def default_tol(dtype):
    return float(jnp.finfo(dtype).eps) ** 0.75


def newton(options, size, dtype):
    tol = default_tol(dtype) if options.tol is None else options.tol
    return StepNewton(rtol=tol, atol=tol, linear_solver=options.linear.solver(size))


@eqx.filter_jit
def correct_state(cont, z, p, params, options):
    """Newton on F(·, p) = 0 from z: the starting point."""
    sol = optx.root_find(lambda w, a: cont(w, p, a), newton(options, z.size, z.dtype), z,
                         args=params, max_steps=options.max_locate_steps, throw=False)
    return sol.value, sol.result == optx.RESULTS.successful


def inner(options, u, v):
    """⟨u, v⟩_θ = (θ/n) z·z' + (1 − θ) p p'."""
    n = u.size - 1
    return options.theta / n * (u[:-1] @ v[:-1]) + (1 - options.theta) * u[-1] * v[-1]


def unit(options, t):
    return t / jnp.sqrt(inner(options, t, t))


@eqx.filter_jit
def tangent(cont, u, previous, params, options):
    """The unit tangent at u oriented along ``previous``: [G_u; ⟨previous, ·⟩_θ] t = [0; 1]."""
    _, jvp = jax.linearize(lambda w: cont.flat(w, params), u)
    apply = lambda v: jnp.concatenate([jvp(v), jnp.atleast_1d(inner(options, previous, v))])
    rhs = jnp.zeros_like(u).at[-1].set(1.0)
    t, ok = options.linear(apply, rhs)
    return unit(options, t), ok


@eqx.filter_jit
def correct(cont, predicted, direction, params, options):
    """Newton on [G(u); ⟨direction, u − predicted⟩_θ] = 0 from ``predicted``."""

    def residual(u, args):
        params, direction, predicted = args
        return jnp.concatenate([cont.flat(u, params),
                                jnp.atleast_1d(inner(options, direction, u - predicted))])

    sol = optx.root_find(residual, newton(options, predicted.size, predicted.dtype), predicted,
                         args=(params, direction, predicted),
                         max_steps=options.max_corrector_steps, throw=False)
    ok = (sol.result == optx.RESULTS.successful) & jnp.all(jnp.isfinite(sol.value))
    return sol.value, ok, sol.stats["num_steps"]


@eqx.filter_jit
def spectrum_at(cont, u, params, options):
    z, p = u[:-1], u[-1]
    return rightmost(cont.jvp_z(z, p, params), z, options.spectrum)


def continuation(field, z0, params, parameter, p_stop, *, p_start=None,
                 options: ContinuationOptions = ContinuationOptions()) -> Branch:
    """Continue the equilibrium near ``z0`` of ``field(z, params)`` in ``parameter``
    from ``p_start`` (default: its value in params) towards ``p_stop``.

    Args:
        field: the vector field ``field(z, params)`` on 1-D states z.
        parameter: a dict key, a ``where`` callable or an
            :class:`~flowsim.bifurcation.parameter.AbstractParameter`.
    """
    parameter = as_parameter(parameter)
    cont = Continuable(field, parameter)
    p0 = parameter.get(params) if p_start is None else p_start
    z0 = jnp.asarray(z0)
    p0 = jnp.asarray(p0, z0.dtype)
    z, ok = correct_state(cont, z0, p0, params, options)
    u = jnp.concatenate([z, p0[None]])
    if not bool(ok):
        return _branch(parameter.name, [], "start_failed")
    along = jnp.zeros_like(u).at[-1].set(jnp.sign(p_stop - p0) or 1.0)
    t, _ = tangent(cont, u, along, params, options)
    return follow(cont, u, t, params, p_stop, options, p_start=float(p0))


def follow(cont, u, t, params, p_stop, options, *, p_start):
    """Continue from the point u (on the branch) along the unit tangent t.

    Detection and location run as the points come (:mod:`.detect`), so only the
    last two points keep their eigenvectors (memory stays O(n) per point)."""
    from .detect import detect_and_locate

    lo, hi = sorted((p_start, float(p_stop)))
    sign = 1.0 if p_stop >= p_start else -1.0
    points = [_point(cont, u, t, params, options, steps=0, ds=0.0)]
    found = []
    ds, end = options.ds, "max_points"
    while len(points) < options.max_points:
        predicted = u + ds * t
        new, ok, steps = correct(cont, predicted, t, params, options)
        moved = inner(options, new - predicted, new - predicted) ** 0.5
        ok = bool(ok) and float(moved) <= options.max_correction * ds
        new_t, t_ok = tangent(cont, new, t, params, options) if ok else (t, False)
        if not (bool(ok) and bool(t_ok)):
            ds /= 2
            if ds < options.ds_min:
                end = "corrector_failed"
                break
            continue
        u, t = new, new_t
        points.append(_point(cont, u, t, params, options, steps=int(steps), ds=ds))
        if options.detect:
            found += detect_and_locate(cont, points[-2], points[-1], len(points) - 1, params,
                                       options, found)
        points[-2]["vectors"] = None
        p = float(u[-1])
        if sign * (p - p_stop) >= 0:
            end = "p_stop"
            break
        if p < lo - 1e-12 * max(1.0, abs(lo)) or p > hi + 1e-12 * max(1.0, abs(hi)):
            end = "bounds"
            break
        grow = int(steps) <= options.target_steps
        ds = min(ds * 1.5, options.ds_max) if grow else max(ds * 0.7, options.ds_min)
    branch = _branch(cont.parameter.name, points, end)
    branch.bifurcations = found
    return branch


def _point(cont, u, t, params, options, *, steps, ds):
    spectrum = spectrum_at(cont, u, params, options)
    return {"u": np.asarray(u), "t": np.asarray(t), "values": np.asarray(spectrum.values),
            "vectors": np.asarray(spectrum.vectors),
            "residual": float(jnp.max(spectrum.residuals)), "steps": steps, "ds": ds}


def _branch(name, points, end):
    if not points:
        empty = np.zeros(0)
        return Branch(name, empty, np.zeros((0, 0)), np.zeros((0, 0)), np.zeros(0, int),
                      np.zeros(0, bool), np.zeros((0, 0), complex), empty, np.zeros(0, int),
                      empty, end)
    k = points[0]["values"].size
    values = np.array([q["values"] for q in points]).reshape(len(points), k)
    unstable = np.sum(np.real(values) > 0, axis=1)
    return Branch(
        parameter=name,
        p=np.array([q["u"][-1] for q in points]),
        z=np.array([q["u"][:-1] for q in points]).reshape(len(points), -1),
        tangents=np.array([q["t"] for q in points]),
        unstable=unstable, saturated=(unstable == k) & (k > 0),
        eigenvalues=values, eigen_residuals=np.array([q["residual"] for q in points]),
        corrector_steps=np.array([q["steps"] for q in points]),
        ds=np.array([q["ds"] for q in points]), end=end)


__all__ = ["ENDS", "ContinuationOptions", "BifurcationPoint", "Branch", "continuation", "follow"]
