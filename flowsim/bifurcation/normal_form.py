r"""The first Lyapunov coefficient l₁ at a Hopf point: super- (l₁ < 0) or subcritical (l₁ > 0).

At a Hopf point (z₀, p₀) with A = F_z, A q = iω q, Aᵀ p = −iω p, normalised
⟨q, q⟩ = 1 and ⟨p, q⟩ = 1 (⟨x, y⟩ = x̄ᵀ y), and the multilinear forms of the
Taylor expansion F(z₀ + x) = A x + ½ B(x, x) + ⅙ C(x, x, x) + …,

    l₁ = (1/2ω) Re[ ⟨p, C(q, q, q̄)⟩ − 2 ⟨p, B(q, A⁻¹ B(q, q̄))⟩
                     + ⟨p, B(q̄, (2iω I − A)⁻¹ B(q, q))⟩ ]

(Kuznetsov, *Elements of Applied Bifurcation Theory*, 3rd ed., eq. (3.20)).
For ż = (μ + iω) z + s|z|²z it is s/ω. B and C are nested JVPs of F (exact),
extended to complex arguments by multilinearity. The left eigenvector solves
the real bordered system [M U; Uᵀ 0][p_r; p_i; s] = [0; e₁], M the real form
of Aᵀ + iω I, U = [(a, b), (b, −a)] its left null space (q = a + i b), whose
last rows are the normalisation ⟨p, q⟩ = 1; the complex solve with
2iω I − A is done in real form too. Dense or matrix-free, by the same
:class:`~flowsim.bifurcation.extended.LinearSolve` as the continuation.
"""

import itertools

import jax
import jax.numpy as jnp


def multilinear(form, *args):
    """``form`` (real-multilinear) at complex ``args``: expand each into its real and
    imaginary parts (2^k real evaluations)."""
    total = 0.0
    for parts in itertools.product((0, 1), repeat=len(args)):
        real_args = [jnp.imag(a) if part else jnp.real(a) for a, part in zip(args, parts)]
        total = total + (1j ** sum(parts)) * form(*real_args)
    return total


def first_lyapunov_coefficient(cont, solution, params, options):
    """l₁ at the Hopf system's solution (z, a, b, ω, p) (see the module docstring)."""
    n = (solution.size - 2) // 3
    z, a, b = solution[:n], solution[n:2 * n], solution[2 * n:3 * n]
    omega, p = solution[-2], solution[-1]
    f = lambda w: cont(w, p, params)
    jvp = jax.linearize(f, z)[1]
    vjp = jax.vjp(f, z)[1]

    def second(x, y):
        return jax.jvp(lambda w: jax.jvp(f, (w,), (x,))[1], (z,), (y,))[1]

    def third(x, y, w):
        return jax.jvp(lambda s: jax.jvp(lambda r: jax.jvp(f, (r,), (x,))[1], (s,), (y,))[1],
                       (z,), (w,))[1]

    q = a + 1j * b
    q = q / jnp.linalg.norm(q)
    a, b = jnp.real(q), jnp.imag(q)
    left = _left_eigenvector(vjp, a, b, omega, options)
    bracket = lambda x: jnp.vdot(left, x)  # ⟨p, x⟩ = p̄ᵀ x

    c_qqq = multilinear(third, q, q, jnp.conj(q))
    b_qqbar = jnp.real(multilinear(second, q, jnp.conj(q)))
    r1, _ = options.linear(jvp, b_qqbar)
    b_qq = multilinear(second, q, q)
    r2 = _solve_2iw_minus_a(jvp, b_qq, omega, options)
    inner = (bracket(c_qqq) - 2 * bracket(multilinear(second, q, r1))
             + bracket(multilinear(second, jnp.conj(q), r2)))
    return jnp.real(inner) / (2 * omega)


def _left_eigenvector(vjp, a, b, omega, options):
    n = a.size
    u1, u2 = jnp.concatenate([a, b]), jnp.concatenate([b, -a])

    def apply(x):
        pr, pi, s = x[:n], x[n:2 * n], x[2 * n:]
        top = jnp.concatenate([vjp(pr)[0] - omega * pi, vjp(pi)[0] + omega * pr])
        pp = x[:2 * n]
        return jnp.concatenate([top + s[0] * u1 + s[1] * u2, jnp.stack([u1 @ pp, u2 @ pp])])

    rhs = jnp.zeros(2 * n + 2, a.dtype).at[2 * n].set(1.0)
    x, _ = options.linear(apply, rhs)
    return x[:n] + 1j * x[n:2 * n]


def _solve_2iw_minus_a(jvp, rhs, omega, options):
    """x with (2iω I − A) x = rhs, in real form [−A, −2ω; 2ω, −A]."""
    n = rhs.size

    def apply(x):
        xr, xi = x[:n], x[n:]
        return jnp.concatenate([-jvp(xr) - 2 * omega * xi, 2 * omega * xr - jvp(xi)])

    x, _ = options.linear(apply, jnp.concatenate([jnp.real(rhs), jnp.imag(rhs)]))
    return x[:n] + 1j * x[n:]


__all__ = ["first_lyapunov_coefficient", "multilinear"]
