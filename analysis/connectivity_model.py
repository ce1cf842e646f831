r"""Bond percolation on an n × n grid, by graph and by the coordinator's energy.

Sites are (r, c) ↦ r·n + c; the left edge is column 0, the right edge column
n − 1. The grid has 2n(n − 1) nearest-neighbour bonds; a trial draws one
uniform u_b per bond and opens the bond at p iff u_b < p (the standard
coupling of all p in one sample: a trial's open set grows with p, so its
spanning indicator is a step in p and the trial has one threshold p_t).
Shortcuts are m extra edges between uniformly drawn distinct sites, each with
its own uniform (open iff u < p) or always open.

Ground truth (:func:`spanning`): the left edge reaches the right edge through
the open edges. For undirected edges this is "one connected cluster touches
both edges"; a gate is one-way (it serves its target), so the graph search is
a breadth-first search from a super-source joined to every left-edge site,
on a directed graph holding each undirected edge both ways (scipy.sparse.csgraph).

The coordinator (:func:`coordinator`): one module per site, η_i = "connected
to the left edge", with

    𝓕(η) = Σ_left α(1 − η_i)²  +  Σ_i (a η_i² + b η_i⁴)  +  Σ_open w (η_i − η_j)²
           − Σ_gates w_g σ(k (η_src − c)) η_dst .

Without gates 𝓕 is convex and, b aside, quadratic: its minimiser solves
(w L + a I + α P_left) η = α 1_left (L the graph Laplacian of the open edges),
a resistor network in which every site leaks to ground through a conductance
a and the left edge is held near 1 through α. By the maximum principle η
stays in [0, 1], so the box never binds. A cluster cut off from the left edge
relaxes to η = 0 (it only leaks); a cluster joined to it sits near 1, lowered
by the current its M sites leak through the backbone's resistance R:
1 − η ≈ a M R / w. At the threshold of the 2-d lattice M ~ n^{91/48} and
R ~ n^{0.98}, so the leak stays harmless only while the screening length
ξ = √(w/a) exceeds n^{1.45} — not merely n (a = 1e-6 gives ξ = 1000 ≫ 32^{1.45} ≈ 150).

A gate (GateBenefit) pushes its target up with force w_g once its source is
above c. Its residual force when shut, w_g σ(−k c), must stay below the leak
of the smallest cluster (2a), or shut gates would lift isolated clusters: k c
= 25 gives σ = 1.4e-11. The benefit −w_g σ η_dst also pulls the gate's
source up, by w_g k σ'(k(η_src − c)) η_dst (the energy would like the gate
open): shut, that is ~7e-10, and a source cut off from the left edge rests
near 3.5e-4 (one isolated site) or lower, while its leak 2aη outgrows the
pull up to η ≈ 0.12: far from the 1/2 that opens the gate. With gates 𝓕 is
not convex (two gated clusters can hold each other up); every coupling is
cooperative (∂²𝓕/∂η_i∂η_j ≤ 0), so a relaxation started from η = 0, below
every equilibrium, descends to the lowest one: the set reached from the left
edge, which is what a gate that "opens when its source is connected" means.

The statistics live here too: the 1/2-crossing of a trial-mean curve
(:func:`crossing`), its bootstrap over trials, percentile intervals, and the
finite-size exponent 1/ν from the spread of the trials' thresholds.

All trials of an (n, p) point and arm are one block-diagonal coordinator of T n²
modules; every trial carries every lattice bond, shortcut and gate as a term,
closed ones with weight 0, so the array shapes depend on n only and one
compiled relaxation serves every p and arm at that n.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from flowsim.coordinator import Coordinator, GateBenefit, Landau, OneSided, Quadratic


def lattice_bonds(n: int):
    """The 2n(n − 1) bonds of the n × n grid: n(n − 1) horizontal, then n(n − 1) vertical."""
    r, c = np.meshgrid(np.arange(n), np.arange(n - 1), indexing="ij")
    h_i, h_j = (r * n + c).ravel(), (r * n + c + 1).ravel()
    v_i, v_j = (c * n + r).ravel(), ((c + 1) * n + r).ravel()  # (c, r) -> (c + 1, r), c < n - 1
    return np.concatenate([h_i, v_i]), np.concatenate([h_j, v_j])


def left_sites(n: int):
    return np.arange(n) * n


def right_sites(n: int):
    return np.arange(n) * n + n - 1


@dataclasses.dataclass(frozen=True)
class Disorder:
    """One size's quenched randomness, shared by every p and arm (common random numbers)."""

    n: int
    bond_u: np.ndarray      # (T, E) uniforms: bond b of trial t is open at p iff u < p
    short_src: np.ndarray   # (T, m) shortcut endpoints (the gate's source)
    short_dst: np.ndarray   # (T, m)                      (the gate's served module)
    short_u: np.ndarray     # (T, m) uniforms of the shortcuts

    @property
    def trials(self):
        return self.bond_u.shape[0]


def draw_disorder(rng, n: int, trials: int, shortcuts: int) -> Disorder:
    """Uniforms for every bond and shortcut, and shortcut endpoints (distinct sites)."""
    edges = 2 * n * (n - 1)
    bond_u = rng.uniform(size=(trials, edges))
    src = rng.integers(0, n * n, size=(trials, shortcuts))
    # a second site drawn among the other n² − 1: no self-loops
    dst = (src + rng.integers(1, n * n, size=(trials, shortcuts))) % (n * n)
    return Disorder(n, bond_u, src, dst, rng.uniform(size=(trials, shortcuts)))


def _offsets(trials, n):
    return (np.arange(trials) * n * n)[:, None]


def spanning(n: int, trials: int, undirected=(), directed=()):
    """Whether the left edge reaches the right edge, per trial (a bool vector of length T).

    ``undirected`` / ``directed``: sequences of (i, j, open) with arrays of
    shape (T, E) (site indices within a trial, and an open mask); a directed
    edge runs i → j. One breadth-first search over the block-diagonal graph of
    all trials, from a super-source joined to every left-edge site.
    """
    sites = trials * n * n
    off = _offsets(trials, n)
    rows, cols = [], []
    for i, j, is_open in undirected:
        i, j = (np.asarray(i) + off)[is_open], (np.asarray(j) + off)[is_open]
        rows += [i, j]
        cols += [j, i]
    for i, j, is_open in directed:
        rows.append((np.asarray(i) + off)[is_open])
        cols.append((np.asarray(j) + off)[is_open])
    left = (left_sites(n)[None, :] + off).ravel()
    rows.append(np.full(left.size, sites))
    cols.append(left)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = sparse.csr_matrix((np.ones(rows.size, np.int8), (rows, cols)),
                              shape=(sites + 1, sites + 1))
    reached = np.zeros(sites + 1, bool)
    reached[csgraph.breadth_first_order(graph, sites, directed=True,
                                        return_predecessors=False)] = True
    right = right_sites(n)[None, :] + off
    return reached[right].any(axis=1)


def edges(disorder: Disorder, arm: str, gates: str = "both", always_open: bool = False):
    """The arm's edges as ``(undirected, directed)`` lists of (i, j, u), each (T, ·).

    ``arm``: "lattice", "shortcuts" (undirected) or "gated" (a gate serves j
    from i; "both" directions or "one", src → dst). An edge is open at p iff
    u < p; ``always_open`` shortcuts carry u = 0.
    """
    t = disorder.trials
    bi, bj = lattice_bonds(disorder.n)
    lattice = (np.broadcast_to(bi, (t, bi.size)), np.broadcast_to(bj, (t, bj.size)),
               disorder.bond_u)
    su = np.zeros_like(disorder.short_u) if always_open else disorder.short_u
    src, dst = disorder.short_src, disorder.short_dst
    if arm == "lattice":
        return [lattice], []
    if arm == "shortcuts":
        return [lattice, (src, dst, su)], []
    if arm == "gated":
        return [lattice], [(src, dst, su)] + ([(dst, src, su)] if gates == "both" else [])
    raise ValueError(f"unknown arm {arm!r}")


def spans_at(n, trials, undirected, directed, p):
    """:func:`spanning` with every edge (i, j, u) open iff u < p (p: a scalar or (T, 1))."""
    return spanning(n, trials, [(i, j, u < p) for i, j, u in undirected],
                    [(i, j, u < p) for i, j, u in directed])


def thresholds(n, trials, undirected, directed):
    """Each trial's exact spanning threshold p_t: it spans at p iff p > p_t.

    A bisection over the trial's sorted edge uniforms (spanning is monotone
    in p under the coupling), every trial at once; the fully open grid spans,
    so p_t is one of the trial's uniforms.
    """
    u = np.sort(np.concatenate([e[2] for e in (*undirected, *directed)], axis=1), axis=1)
    rows = np.arange(trials)
    lo, hi = np.full(trials, -1), np.full(trials, u.shape[1] - 1)
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        # open iff u <= u[mid]: the next float above u[mid] as p
        spans = spans_at(n, trials, undirected, directed,
                         np.nextafter(u[rows, mid], np.inf)[:, None])
        active = hi - lo > 1  # a finished trial's mid would index u[-1]
        hi, lo = np.where(active & spans, mid, hi), np.where(active & ~spans, mid, lo)
    return u[rows, hi]


@dataclasses.dataclass(frozen=True)
class Energy:
    """The coefficients of 𝓕 (see the module docstring)."""

    bond: float = 1.0       # w
    pin: float = 1.0        # α, the left edge's pull toward 1
    leak: float = 1e-6      # a
    quartic: float = 1e-9   # b (> 0: the engine's Landau needs it; harmless this small)
    gate_weight: float = 1.0
    gate_k: float = 50.0
    gate_cost: float = 0.5


def coordinator(n, trials, bond_w, shortcuts, gates, energy: Energy):
    """The block-diagonal coordinator of T trials (weights 0 close a term, shapes stay fixed).

    ``bond_w`` (T, E) per lattice bond; ``shortcuts`` = (i, j, w), Quadratic
    shortcuts, and ``gates`` = (src, dst, w), gates serving dst from src, each
    array (T, ·) with site indices within a trial.
    """
    off = _offsets(trials, n)
    bi, bj = lattice_bonds(n)
    si, sj, short_w = shortcuts
    gate_src, gate_dst, gate_w = gates
    sites = np.arange(trials * n * n)
    left = (left_sites(n)[None, :] + off).ravel()
    terms = [
        OneSided(left, energy.pin, weight=1.0),
        Landau(sites, energy.leak, energy.quartic),
        Quadratic((bi[None, :] + off).ravel(), (bj[None, :] + off).ravel(),
                  jnp.asarray(bond_w).ravel()),
        Quadratic((jnp.asarray(si) + off).ravel(), (jnp.asarray(sj) + off).ravel(),
                  jnp.asarray(short_w).ravel()),
        GateBenefit((jnp.asarray(gate_dst) + off).ravel(), (jnp.asarray(gate_src) + off).ravel(),
                    slope=1.0, cost=energy.gate_cost, k=energy.gate_k,
                    weight=jnp.asarray(gate_w).ravel()),
    ]
    return Coordinator(trials * n * n, terms)


def crossing(p, y, level=0.5):
    """The first p where the curve y(p) rises through ``level``, linearly interpolated.

    −inf if y ≥ level already at p[0], +inf if y < level on the whole grid
    (the grid does not bracket the threshold: say so, never extrapolate).
    """
    p, y = np.asarray(p, float), np.asarray(y, float)
    above = y >= level
    if above[0]:
        return -np.inf
    if not above.any():
        return np.inf
    k = int(np.argmax(above))  # y[k-1] < level <= y[k]
    return float(p[k - 1] + (level - y[k - 1]) * (p[k] - p[k - 1]) / (y[k] - y[k - 1]))


def bootstrap_indices(rng, trials, resamples):
    """(B, T) trial indices drawn with replacement; the same draw pairs every curve of a size."""
    return rng.integers(0, trials, size=(resamples, trials))


def crossings(p, per_trial, index, level=0.5):
    """The crossing of the trial-mean curve for each bootstrap resample ``index`` (B, T).

    ``per_trial``: (T, P) values per trial and p.
    """
    means = np.asarray(per_trial, float)[index].mean(axis=1)  # (B, P)
    return np.array([crossing(p, row, level) for row in means])


def percentile_ci(samples, level=0.95):
    """The percentile interval of bootstrap samples (±inf kept: an unbracketed crossing)."""
    tail = 100 * (1 - level) / 2
    samples = np.asarray(samples, float)
    samples = samples[~np.isnan(samples)]  # inf − inf in a difference: undefined, dropped
    if samples.size == 0:
        return float("nan"), float("nan")
    # sample values, not interpolations: an interpolation between inf and a number is nan
    return (float(np.percentile(samples, tail, method="lower")),
            float(np.percentile(samples, 100 - tail, method="higher")))


def inverse_nu_fit(sizes, p_t, rng, resamples):
    """−slope of log std(p_t) vs log n, with a percentile bootstrap (trials resampled per size).

    A resample whose spread is 0 at some size (every draw the same trial) has no log: dropped.
    """
    nan = float("nan")
    spread0 = np.array([np.std(p_t[n], ddof=1) for n in sizes])
    if len(sizes) < 2 or not np.all(spread0 > 0):
        return nan, nan, nan
    logn = np.log(sizes)
    spread = np.stack([np.std(p_t[n][rng.integers(0, p_t[n].size, (resamples, p_t[n].size))],
                              axis=1, ddof=1) for n in sizes])            # (sizes, B)
    spread = spread[:, np.all(spread > 0, axis=0)]
    slopes = -np.polyfit(logn, np.log(spread), 1)[0] if spread.shape[1] else np.array([nan])
    return (float(-np.polyfit(logn, np.log(spread0), 1)[0]), *percentile_ci(slopes))
