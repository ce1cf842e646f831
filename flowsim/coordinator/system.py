r"""A coordinator: n modules and the families of terms over them, one total energy.

    𝓕(η) = Σ_families Σ_t w_t f_t(η),      η ∈ [0, 1]ⁿ,

(the seed's Σ w_local F_i + Σ w_coupling F_ij, with a weight per term). The
gradient is ``jax.grad`` of 𝓕; under jit the whole energy is a few gathers
and reductions, and its gradient a few segment sums, for any n.

:meth:`Coordinator.scaled` multiplies every weight of a family by a factor:
the per-family "term weights" that the seed's balancing heuristics adapt.
A relaxation that takes its steps on a rescaled energy must still report the
user's own 𝓕 (:mod:`flowsim.coordinator.relax` does).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .terms import AbstractTerm


class Coordinator(eqx.Module):
    """n modules and a tuple of term families; calling it gives 𝓕(η)."""

    n: int = eqx.field(static=True)
    terms: tuple

    def __init__(self, n, terms):
        self.n = int(n)
        self.terms = tuple(terms)
        for term in self.terms:
            if not isinstance(term, AbstractTerm):
                raise TypeError(f"a coordinator's terms are flowsim.coordinator terms, "
                                f"got {type(term).__name__}")

    def __call__(self, eta):
        return self.energy(eta)

    def energy(self, eta):
        """𝓕(η)."""
        return sum((term.energy(eta) for term in self.terms), jnp.zeros((), eta.dtype))

    def gradient(self, eta):
        """∇𝓕(η)."""
        return jax.grad(self.energy)(eta)

    def family_energies(self, eta):
        """The weighted energy of each family, in the order of ``terms``."""
        return jnp.stack([term.energy(eta) for term in self.terms])

    def family_gradient_norms(self, eta):
        """‖∇ of each family's weighted energy‖₂ (what GradNorm-style balancing watches)."""
        return jnp.stack([jnp.linalg.norm(jax.grad(term.energy)(eta)) for term in self.terms])

    def scaled(self, factors):
        """A coordinator whose family f has every weight multiplied by ``factors[f]``."""
        terms = tuple(eqx.tree_at(lambda t: t.weight, term, term.weight * factor)
                      for term, factor in zip(self.terms, factors, strict=True))
        return Coordinator(self.n, terms)

    def check(self) -> None:
        """Raise ValueError (one line) on a bad index or coefficient in any family."""
        for term in self.terms:
            term.check(self.n)


def check_state(eta, n: int | None = None) -> None:
    """Raise ValueError (one line) unless ``eta`` is a finite vector in [0, 1]ⁿ."""
    if isinstance(eta, jax.core.Tracer):
        return
    eta = np.asarray(eta)
    if eta.ndim != 1 or (n is not None and eta.shape[0] != n):
        raise ValueError(f"eta0 must be a vector of {n} order parameters, got shape {eta.shape}")
    bad = ~np.isfinite(eta) | (eta < 0) | (eta > 1)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"eta0 must lie in [0, 1]: module {k} has {float(eta[k])}")


def stationarity(gradient, eta, lower=0.0, upper=1.0):
    r"""‖η − clip(η − ∇𝓕, lower, upper)‖₂: zero exactly at the KKT points on the box."""
    return jnp.linalg.norm(eta - jnp.clip(eta - gradient, lower, upper))


class ProjectedResidualField(eqx.Module):
    r"""F(η) = clip(η − ∇_η E(η, θ, x), 0, 1) − η, the engine's view of a box-constrained energy.

    Its zeros are exactly the KKT points of E on [0, 1]ⁿ, and its flow
    η̇ = F(η) descends E (d E/dt ≤ −‖F‖², by the projection's obtuse-angle
    property) and keeps η in the box under Euler steps of size ≤ 1. Where
    the active bounds are strict (the gradient pushes out with nonzero
    force), F is smooth with F_η = −∇²E on the free coordinates and −I on the
    fixed ones, so ``flowsim.equilibrium``, the spectral diagnostics and
    ``flowsim.Implicit`` apply unchanged: the implicit gradient holds the
    bounded modules fixed, which is the exact derivative of the constrained
    minimiser. ``energy(eta, params, x) -> scalar``.
    """

    energy: object

    def __call__(self, z, params, x):
        grad = jax.grad(self.energy)(z, params, x)
        return jnp.clip(z - grad, 0.0, 1.0) - z


__all__ = ["Coordinator", "check_state", "stationarity", "ProjectedResidualField"]
