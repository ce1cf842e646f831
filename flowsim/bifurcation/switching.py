r"""Branch switching at a simple branch point: the tangent of the other branch.

At a simple branch point u* = (z*, p*) of G(u) = F(z, p) = 0 the kernel of
G_u = [F_z F_p] is two-dimensional: with φ the null vector of F_z, ψ the left
one, and w the solution of F_z w = −F_p with ψ·w = 0, it is spanned by
e₀ = (φ, 0) and e₁ = (w, 1). The tangents of the two branches through u* are
the directions αe₀ + βe₁ that solve the algebraic bifurcation equation

    a α² + 2 b αβ + c β² = 0,   a = ψ·G_uu[e₀, e₀],  b = ψ·G_uu[e₀, e₁],  c = ψ·G_uu[e₁, e₁]

(Keller 1977; Kuznetsov §10.2), with two real roots when b² − ac > 0. The
second derivatives are nested JVPs (exact). Of the two, the one farther from
the incoming branch's tangent starts the new branch. φ and w come from the
bordered matrix [F_z ψ; ψᵀ 0], regular at a simple branch point.
"""

import jax
import jax.numpy as jnp
import numpy as np

from .continuation import ContinuationOptions, follow, inner, unit
from .extended import Continuable
from .parameter import as_parameter


def branch_tangents(cont, point, params, options):
    """The two unit tangents (rows, in ``options``' weighted norm) of the branches
    through the located branch ``point``."""
    x = jnp.asarray(point.solution)
    n = point.z.size
    z, p, psi = x[:n], x[n], x[n + 1:2 * n + 1]
    u = jnp.concatenate([z, p[None]])
    jvp = cont.jvp_z(z, p, params)
    f_p = jax.jvp(lambda q: cont(z, q, params), (p,), (jnp.ones_like(p),))[1]
    bordered = lambda y: jnp.concatenate([jvp(y[:n]) + y[n] * psi, jnp.atleast_1d(psi @ y[:n])])
    phi, _ = options.linear(bordered, jnp.zeros(n + 1, z.dtype).at[n].set(1.0))
    w, _ = options.linear(bordered, jnp.concatenate([-f_p, jnp.zeros(1, z.dtype)]))
    e0 = jnp.concatenate([phi[:n], jnp.zeros(1, z.dtype)])
    e1 = jnp.concatenate([w[:n], jnp.ones(1, z.dtype)])

    def second(v1, v2):
        g = lambda y: cont.flat(y, params)
        return psi @ jax.jvp(lambda y: jax.jvp(g, (y,), (v1,))[1], (u,), (v2,))[1]

    form = np.array([[second(e0, e0), second(e0, e1)], [second(e0, e1), second(e1, e1)]],
                    dtype=float)
    values, vectors = np.linalg.eigh(form)  # values[0] ≤ 0 ≤ values[1] at a simple point
    if values[0] * values[1] > 0:
        raise ValueError("not a simple branch point: the bifurcation equation has no "
                         f"real roots (eigenvalues of its form {values})")
    roots = [np.sqrt(abs(values[1])) * vectors[:, 0] + s * np.sqrt(abs(values[0])) * vectors[:, 1]
             for s in (1.0, -1.0)]
    tangents = [alpha * e0 + beta * e1 for alpha, beta in roots]
    return jnp.stack([unit(options, t) for t in tangents]), u


def switch_branch(field, branch, point, params, parameter, p_stop, *, direction=1.0,
                  options: ContinuationOptions = ContinuationOptions()):
    """Continue the other branch through the simple branch ``point`` of ``branch``,
    along ``direction`` (±1) of its tangent, towards ``p_stop``."""
    if point.kind != "branch_point":
        raise ValueError(f"branch switching starts at a branch_point, not a {point.kind}")
    cont = Continuable(field, as_parameter(parameter))
    tangents, u = branch_tangents(cont, point, params, options)
    incoming = jnp.asarray(branch.tangents[point.index])
    overlap = [abs(float(inner(options, t, incoming))) for t in tangents]
    new = tangents[int(np.argmin(overlap))]
    if new[-1] != 0 and np.sign(float(new[-1])) != np.sign(p_stop - float(u[-1])):
        new = -new  # towards p_stop where the new branch moves in p
    return follow(cont, u, direction * new, params, p_stop, options, p_start=float(u[-1]))


__all__ = ["branch_tangents", "switch_branch"]
