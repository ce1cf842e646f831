r"""The coordinator's energy terms, each family held as arrays.

Modules carry order parameters η ∈ [0, 1]ⁿ. A family of terms is one
equinox Module of equal-length arrays (module indices, coefficients and a
weight w ≥ 0 per term); its energy is Σ_t w_t f(η[index_t]), a gather and a
sum, so jit sees a handful of vector operations whatever the number of terms,
and ``jax.grad`` turns every gather into a scatter-add (a segment sum over the
modules). Local terms (seed 003):

    Landau         f = a η² + b η⁴ − h η            b > 0
    OneSided       f = α (1 − η)² + β (1 − η)⁴      α, β ≥ 0  (the seed's sequence,
                                                     connectivity and Nash modules)

Couplings between modules i and j:

    Quadratic        f = (η_i − η_j)²
    DirectedHinge    f = max(0, η_j − η_i)²          (i should not fall below j)
    AsymmetricHinge  f = max(0, β η_j − α η_i)²
    GateBenefit      f = −η_gate · Δ,  η_gate = σ(k·net),  net = gain + s·η_j − cost,
                     Δ = η_i                         (the benefit the gate serves)

The gate–benefit term rewards the served module i for rising, with a force
w·η_gate that the gate opens when its net benefit is positive; the gate's
input may be a constant ``gain`` (evidence measured outside the system) or a
module's own order parameter η_j (``slope`` s), so later evidence can open a
gate for an earlier module. Each family is bounded below on [0, 1]ⁿ.

Validation (:meth:`AbstractTerm.check`) names the first bad entry in one line:
an index outside [0, n), a negative or non-finite weight, b ≤ 0.
"""

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .gate import gate


def _array(x, dtype=None):
    return jnp.asarray(x, dtype=dtype)


def _index(x):
    return jnp.asarray(x, dtype=jnp.int32)


def _concrete(*arrays):
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def _prefix(index):
    """k when ``index`` is concretely 0, 1, …, k − 1 (read by a slice, whose gradient is a pad,
    not a scatter-add), else None."""
    if not _concrete(index):
        return None
    index = np.asarray(index)
    return index.size if np.array_equal(index, np.arange(index.size)) else None


def _positive(d):
    """1[d > 0], held constant under differentiation (max(0, d)² = 1[d > 0]·d², and its
    derivative 2·1[d > 0]·d, is 0 at d = 0 where max(0, d)² is flat)."""
    return jax.lax.stop_gradient((d > 0).astype(d.dtype))


def weighted_squared_positive_part(weight, d):
    """Σ_t w_t max(0, d_t)², as Σ w·1[d > 0]·d·d multiplied left to right.

    Same value, same derivative; the order matters only to XLA's fusion on
    CPU: written this way the energy-and-gradient of a hinge family at 10⁶
    edges cost about half what ``w * jnp.maximum(0, d) ** 2`` or
    ``w * (1[d > 0]·d²)`` did (``benchmarks/bench_coordinator.py``, README).
    """
    return jnp.sum(weight * _positive(d) * d * d)


def _check_indices(name, index, n):
    index = np.asarray(index)
    bad = (index < 0) | (index >= n)
    if bad.any():
        raise ValueError(f"{name}: index {int(index[bad][0])} names no module "
                         f"(the system has modules 0..{n - 1})")


def _check_nonnegative(name, field, values):
    values = np.asarray(values)
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        raise ValueError(f"{name}: {field} must be finite and >= 0, got "
                         f"{float(values[bad][0])} (term {int(np.argmax(bad))})")


class AbstractTerm(eqx.Module):
    """A family of energy terms: ``values(eta)`` per term, ``energy(eta)`` weighted sum."""

    kind: ClassVar[str]  # "local" or "coupling": the seed's term-weight families

    @abc.abstractmethod
    def values(self, eta):
        """f_t(η) for every term t (unweighted), shape (terms,)."""

    @abc.abstractmethod
    def indices(self) -> tuple:
        """The module index arrays this family reads."""

    def energy(self, eta):
        """Σ_t w_t f_t(η)."""
        return jnp.sum(self.weight * self.values(eta))

    def check(self, n: int) -> None:
        """Raise ValueError (one line) on an index outside [0, n) or a bad coefficient."""
        name = type(self).__name__
        for index in self.indices():
            if _concrete(index):
                _check_indices(name, index, n)
        if _concrete(self.weight):
            _check_nonnegative(name, "weight", self.weight)
        self._check_coefficients(name)

    def _check_coefficients(self, name):
        del name


class Landau(AbstractTerm):
    """a η² + b η⁴ − h η on modules ``index`` (b > 0)."""

    kind: ClassVar[str] = "local"
    index: jax.Array
    a: jax.Array
    b: jax.Array
    h: jax.Array
    weight: jax.Array
    prefix: int | None = eqx.field(static=True)

    def __init__(self, index, a, b, h=0.0, weight=1.0):
        self.index = _index(index)
        self.prefix = _prefix(index)
        shape = self.index.shape
        self.a, self.b, self.h, self.weight = (jnp.broadcast_to(_array(v), shape)
                                               for v in (a, b, h, weight))

    def values(self, eta):
        x = eta[self.index] if self.prefix is None else eta[: self.prefix]
        x2 = x * x
        return self.a * x2 + self.b * x2 * x2 - self.h * x

    def indices(self):
        return (self.index,)

    def _check_coefficients(self, name):
        if _concrete(self.b):
            b = np.asarray(self.b)
            bad = ~(b > 0)
            if bad.any():
                raise ValueError(f"{name}: b must be > 0 (the quartic bounds the energy), "
                                 f"got {float(b[bad][0])} (term {int(np.argmax(bad))})")


class OneSided(AbstractTerm):
    """α (1 − η)² + β (1 − η)⁴ on modules ``index`` (α, β ≥ 0): a pull toward η = 1."""

    kind: ClassVar[str] = "local"
    index: jax.Array
    alpha: jax.Array
    beta: jax.Array
    weight: jax.Array

    def __init__(self, index, alpha, beta=0.0, weight=1.0):
        self.index = _index(index)
        shape = self.index.shape
        self.alpha, self.beta, self.weight = (jnp.broadcast_to(_array(v), shape)
                                              for v in (alpha, beta, weight))

    def values(self, eta):
        d2 = (1.0 - eta[self.index]) ** 2
        return self.alpha * d2 + self.beta * d2 * d2

    def indices(self):
        return (self.index,)

    def _check_coefficients(self, name):
        for field in ("alpha", "beta"):
            if _concrete(getattr(self, field)):
                _check_nonnegative(name, field, getattr(self, field))


class _Pairwise(AbstractTerm):
    kind: ClassVar[str] = "coupling"
    i: jax.Array
    j: jax.Array
    weight: jax.Array

    def indices(self):
        return (self.i, self.j)


class Quadratic(_Pairwise):
    """w (η_i − η_j)²: modules i and j agree."""

    def __init__(self, i, j, weight=1.0):
        self.i, self.j = _index(i), _index(j)
        self.weight = jnp.broadcast_to(_array(weight), self.i.shape)

    def values(self, eta):
        return (eta[self.i] - eta[self.j]) ** 2


class _Hinge(_Pairwise):
    """w max(0, d)² with d = ``_difference(η)`` per term."""

    @abc.abstractmethod
    def _difference(self, eta):
        """d of every term."""

    def values(self, eta):
        d = self._difference(eta)
        return _positive(d) * d * d

    def energy(self, eta):
        return weighted_squared_positive_part(self.weight, self._difference(eta))


class DirectedHinge(_Hinge):
    """w max(0, η_j − η_i)²: module i is penalised only for falling below j."""

    def __init__(self, i, j, weight=1.0):
        self.i, self.j = _index(i), _index(j)
        self.weight = jnp.broadcast_to(_array(weight), self.i.shape)

    def _difference(self, eta):
        return eta[self.j] - eta[self.i]


class AsymmetricHinge(_Hinge):
    """w max(0, β η_j − α η_i)²."""

    alpha: jax.Array
    beta: jax.Array

    def __init__(self, i, j, alpha=1.0, beta=1.0, weight=1.0):
        self.i, self.j = _index(i), _index(j)
        shape = self.i.shape
        self.alpha, self.beta, self.weight = (jnp.broadcast_to(_array(v), shape)
                                              for v in (alpha, beta, weight))

    def _difference(self, eta):
        return self.beta * eta[self.j] - self.alpha * eta[self.i]


class GateBenefit(_Pairwise):
    """−w η_gate η_i with η_gate = σ(k (gain + slope·η_j − cost)) (see the module docstring)."""

    gain: jax.Array
    slope: jax.Array
    cost: jax.Array
    k: jax.Array

    def __init__(self, i, j=None, *, gain=0.0, slope=0.0, cost=0.0, k=1.0, weight=1.0):
        self.i = _index(i)
        self.j = self.i if j is None else _index(j)
        shape = self.i.shape
        self.gain, self.slope, self.cost, self.k, self.weight = (
            jnp.broadcast_to(_array(v), shape) for v in (gain, slope, cost, k, weight))

    def net(self, eta):
        """gain + slope·η_j − cost for every term."""
        return self.gain + self.slope * eta[self.j] - self.cost

    def gates(self, eta):
        """η_gate of every term."""
        return gate(self.net(eta), self.k)

    def values(self, eta):
        return -self.gates(eta) * eta[self.i]

    def energy(self, eta):
        # w·η_i first: the same sum, but XLA on CPU fuses this order into one loop around the
        # gathers (half the time of w·(−η_gate·η_i) at 10⁶ edges; README, Performance)
        return -jnp.sum(self.weight * eta[self.i] * self.gates(eta))

    def _check_coefficients(self, name):
        if _concrete(self.k):
            _check_nonnegative(name, "k", self.k)


__all__ = ["AbstractTerm", "Landau", "OneSided", "Quadratic", "DirectedHinge",
           "AsymmetricHinge", "GateBenefit"]
