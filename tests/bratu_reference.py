r"""An independent dense reference for the fold of flowsim's finite-difference Bratu system.

numpy and scipy only: no JAX and no flowsim code, so that a continuation that
finds the fold of ``flowsim.systems.Bratu(n)`` can be held against it.

The discretisation (the same as ``flowsim/systems/bratu.py``): N interior
points x_i = i h, h = 1/(N + 1), u_0 = u_{N+1} = 0,

    F_i(u, λ) = (u_{i−1} − 2 u_i + u_{i+1}) / h² + λ e^{u_i},
    J(u, λ) = A + λ diag(e^u),   A = tridiag(1, −2, 1) / h².

Two routes to its fold λ_N:

``bratu_fold(n)`` — the standard extended (Moore–Spence) system in 2N + 1
unknowns (u, v, λ),

    F(u, λ) = 0,   J(u, λ) v = 0,   ℓ·v = 1,

solved by Newton's method with its analytic Jacobian

    [ J            0    e^u     ]
    [ λ diag(e^u∘v) J    e^u∘v  ]
    [ 0            ℓᵀ   0       ]

assembled densely and solved with ``numpy.linalg.solve``. The start is the
continuum solution at its fold sampled on the grid,
u(x) = −2 log(cosh((x − ½) θ_c/2) / cosh(θ_c/4)), where θ_c solves
θ tanh(θ/4) = 4 (θ_c = 4.7987…; it maximises λ(θ) = θ²/(2 cosh²(θ/4)) on the
continuum branch, λ_c = λ(θ_c) = 3.5138…), with v = ∂u/∂θ at θ_c (the continuum
null vector: the branch's tangent at its fold has no λ component) and ℓ = v/‖v‖².
It stops when the Newton step's ∞-norm is below ``tol`` (1e-12); the
residual is then at roundoff (‖F‖∞ ≲ ‖A‖ ε ≈ 4ε/h²).

``bratu_fold_by_max(n)`` — a second route that shares nothing but the field:
the branch parameterised by the value s of u at a central node m = n // 2
(F(u, λ) = 0 and u_m = s: N + 1 unknowns, a bordered tridiagonal Newton
system solved with ``scipy.linalg.solve_banded`` plus one rank-one
correction), followed by natural continuation in s from u = 0 (λ = 0) with a
secant predictor until λ(s) decreases, then ``scipy.optimize.minimize_scalar``
(bounded Brent) maximising λ(s) inside the last bracket. λ is flat at its
maximum, so an s accurate to ~1e-9 gives λ_N to roundoff.

    python tests/bratu_reference.py     # λ_N for N = 10 … 400, both routes, observed order
"""

import numpy as np
import scipy.linalg
import scipy.optimize


def continuum_fold():
    """(λ_c, θ_c) of the continuum Bratu problem u'' + λ eᵘ = 0 on (0, 1)."""
    theta = scipy.optimize.brentq(lambda t: t * np.tanh(t / 4) - 4.0, 1.0, 10.0, xtol=1e-15)
    return theta**2 / (2 * np.cosh(theta / 4) ** 2), theta


LAMBDA_C, THETA_C = continuum_fold()


def _grid(n):
    h = 1.0 / (n + 1)
    return h, h * np.arange(1, n + 1)


def _laplacian(n):
    h, _ = _grid(n)
    return (np.diag(-2.0 * np.ones(n)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)) / h**2


def field(u, lam):
    """F(u, λ) of the discretisation (numpy)."""
    h, _ = _grid(u.size)
    padded = np.pad(u, 1)
    return (padded[:-2] - 2 * u + padded[2:]) / h**2 + lam * np.exp(u)


def _continuum_guess(x, theta):
    """(u, ∂u/∂θ) of the continuum branch at θ, sampled at x."""
    a = (x - 0.5) * theta / 2
    u = -2 * np.log(np.cosh(a) / np.cosh(theta / 4))
    du = -2 * (np.tanh(a) * (x - 0.5) / 2 - np.tanh(theta / 4) / 4)
    return u, du


def bratu_fold(n, tol=1e-12, max_iter=50):
    """(λ_N, u) at the fold of the N-point Bratu discretisation (extended system, dense Newton)."""
    _, x = _grid(n)
    u, v = _continuum_guess(x, THETA_C)
    ell = v / (v @ v)
    v = v / (ell @ v)
    lam = LAMBDA_C
    a = _laplacian(n)
    eye = np.eye(n)
    for _ in range(max_iter):
        e = np.exp(u)
        jac = a + lam * np.diag(e)
        residual = np.concatenate([a @ u + lam * e, jac @ v, [ell @ v - 1.0]])
        ext = np.zeros((2 * n + 1, 2 * n + 1))
        ext[:n, :n] = jac
        ext[:n, 2 * n] = e
        ext[n:2 * n, :n] = lam * eye * (e * v)
        ext[n:2 * n, n:2 * n] = jac
        ext[n:2 * n, 2 * n] = e * v
        ext[2 * n, n:2 * n] = ell
        step = np.linalg.solve(ext, residual)
        u = u - step[:n]
        v = v - step[n:2 * n]
        lam = lam - step[2 * n]
        if np.max(np.abs(step)) < tol:
            return float(lam), u
    raise RuntimeError(f"bratu_fold({n}): Newton did not converge in {max_iter} iterations "
                       f"(last step {np.max(np.abs(step)):.1e})")


def _solve_at(n, s, u, lam, tol=1e-13, max_iter=30):
    """(u, λ) on the branch with u[n // 2] = s, by Newton from (u, λ)."""
    h, _ = _grid(n)
    m = n // 2
    for _ in range(max_iter):
        e = np.exp(u)
        f = field(u, lam)
        g = u[m] - s
        # Bordered system [[J, e], [e_mᵀ, 0]] (δu, δλ) = (f, g): J banded, by block elimination.
        banded = np.zeros((3, n))
        banded[0, 1:] = 1.0 / h**2
        banded[1] = -2.0 / h**2 + lam * e
        banded[2, :-1] = 1.0 / h**2
        y, z = scipy.linalg.solve_banded((1, 1), banded, np.stack([f, e], axis=1)).T
        dlam = (y[m] - g) / z[m]
        du = y - dlam * z
        u = u - du
        lam = lam - dlam
        if max(np.max(np.abs(du)), abs(dlam)) < tol:
            return u, lam
    raise RuntimeError(f"Newton at u[m] = {s} did not converge")


def bratu_fold_by_max(n, ds=0.05):
    """(λ_N, u) at the fold by maximising λ over the branch parameterised by u at node n // 2."""
    u, lam, s = np.zeros(n), 0.0, 0.0
    points = [(s, u, lam)]
    while True:
        s_new = s + ds
        if len(points) > 1:  # secant predictor in s
            (s0, u0, l0), (s1, u1, l1) = points[-2], points[-1]
            guess_u, guess_l = u1 + (u1 - u0) / (s1 - s0) * ds, l1 + (l1 - l0) / (s1 - s0) * ds
        else:
            guess_u, guess_l = u, lam
        u_new, lam_new = _solve_at(n, s_new, guess_u, guess_l)
        points.append((s_new, u_new, lam_new))
        if lam_new < lam:
            break
        s, u, lam = s_new, u_new, lam_new
    # The maximum lies in [s − ds, s + ds] around the largest λ seen.
    (s_a, u_a, _), (s_b, u_b, _) = points[-3], points[-1]
    cache = {}

    def negative_lambda(s_trial):
        w = (s_trial - s_a) / (s_b - s_a)
        u_t, lam_t = _solve_at(n, s_trial, (1 - w) * u_a + w * u_b, lam)
        cache[s_trial] = u_t
        return -lam_t

    best = scipy.optimize.minimize_scalar(negative_lambda, bounds=(s_a, s_b), method="bounded",
                                          options={"xatol": 1e-10})
    return float(-best.fun), cache[best.x]


def main():
    sizes = [10, 50, 100, 200, 400]
    print(f"continuum fold λ_c = {LAMBDA_C:.15f} (θ_c = {THETA_C:.12f})")
    print("| N | h | λ_N (extended system) | λ_N (max over u_m) | difference | λ_N − λ_c | observed order |")
    print("|---|---|---|---|---|---|---|")
    previous = None
    for n in sizes:
        h = 1.0 / (n + 1)
        lam, u = bratu_fold(n)
        lam2, _ = bratu_fold_by_max(n)
        error = lam - LAMBDA_C
        order = ""
        if previous is not None:
            order = f"{np.log(abs(previous[1] / error)) / np.log(previous[0] / h):.4f}"
        print(f"| {n} | {h:.5f} | {lam:.15f} | {lam2:.15f} | {lam - lam2:.1e} | {error:.6e} | "
              f"{order} |  (‖F‖∞ {np.max(np.abs(field(u, lam))):.1e}, u_max {u.max():.6f})")
        previous = (h, error)


if __name__ == "__main__":
    main()
