r"""The sequence-redemption task: planted early mistakes that later, reliable evidence can redeem.

A sequence has L positions, one coordinator module each; η_t ∈ [0, 1] is the
belief that position t is consistent (truth τ_t = 1). Every position holds
local evidence e_t ∈ {0, 1} with a strength s_t > 0, turned into

    local_t(η) = α_t (1 − η)² + a_t η² + b η⁴,     α_t = e_t s_t,  a_t = prior + (1 − e_t) s_t,

a pull toward 1 of strength α_t (``OneSided``) against a pull toward 0 of
strength a_t (``Landau``, h = 0). Alone (b → 0) a module settles at
η = α_t / (α_t + a_t): weak evidence for 1 gives a middling η, evidence for 0
gives η = 0, so η carries the evidence's confidence.

**Layout** (:func:`make_sequences`). The first half of the sequence holds the
*sources*, the second half their *references*: each trial draws
``n_planted + n_controls`` distinct early positions and as many distinct late
positions, paired at random (so every reference is later than its source).
A reference r of source p is a later position that builds on p: if r is
consistent, p was.

* planted link: τ_p = 1 but e_p = 0 (a mistake: the local evidence is wrong,
  drawn from the same strength range as a genuine 0, so nothing local tells
  it apart); its reference has τ_r = 1, e_r = 1 with a strong, reliable
  strength.
* control link: τ_q = 0 and e_q = 0 (rightly low); its reference builds on a
  wrong step, so τ_r = 0; with probability ``weak_fraction`` its evidence is a
  weak, wrong 1 (strength from the ``weak`` range: noise a method that flips
  everything up falls for), otherwise it agrees (e_r = 0).
* every other position is ordinary: τ ~ Bernoulli(``p_one``), e = τ.

**Couplings** (:func:`build_sequence_coordinator`), one per link (p ← r):
``Quadratic(p, r)`` with weight w_q (ungated: p and r agree) and
``GateBenefit(p, r, slope=1, cost=c, k=k)`` with weight w_g, whose energy
−w_g σ(k(η_r − c)) η_p rewards p for rising only when the later belief η_r
exceeds c, and the same gate on the reference's *evidence* (weight w_e): a
constant input α_r/(α_r + a_r), measured outside the relaxation, which the
relaxation cannot raise. Families, in order: OneSided, Landau, Quadratic,
GateBenefit (η_r), GateBenefit (evidence). All weights are explicit float
arguments (differentiable, traced or not); an arm
is a choice of them, and ``prefix=t`` keeps only the terms whose modules are
all ≤ t (the coordinator as it stands when position t is decided).
"""

import inspect
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from flowsim import RESULTS
from flowsim.coordinator import Coordinator, GateBenefit, Landau, OneSided, Quadratic
from flowsim.coordinator.relax import delta_f90, relax

ORDINARY, PLANTED, CONTROL, PLANTED_REF, AGREE_REF, WEAK_REF = range(6)
KINDS = ("ordinary", "planted", "control", "planted_ref", "agree_ref", "weak_ref")


class Sequences(NamedTuple):
    """A batch of sequences; arrays have the trial on axis 0 (a pytree: vmap takes it)."""

    truth: np.ndarray      # (T, L) 0/1: position t is consistent
    evidence: np.ndarray   # (T, L) 0/1: what the local evidence says
    strength: np.ndarray   # (T, L) > 0: how strongly it says it
    kind: np.ndarray       # (T, L) one of ORDINARY ... WEAK_REF
    source: np.ndarray     # (T, P) earlier position of each link
    reference: np.ndarray  # (T, P) later position that references it
    planted: np.ndarray    # (T, P) True: the link redeems a planted mistake; False: a control


def make_sequences(seed, trials, length, *, n_planted=3, n_controls=3, weak_fraction=0.5,
                   p_one=0.7, strong=(2.0, 6.0), against=(1.0, 3.0), weak=(0.25, 1.5)):
    """Seeded batch of ``trials`` sequences of ``length`` positions (see the module docstring).

    ``strong``: strength range of evidence for 1 at ordinary positions and at
    planted references; ``against``: of evidence for 0 (genuine or planted);
    ``weak``: of the wrong evidence for 1 at weak control references.
    ``seed``: an int or a ``np.random.Generator``.
    """
    links = n_planted + n_controls
    half = length // 2
    if links > half or links > length - half:
        raise ValueError(f"{links} links need {links} early and late positions; "
                         f"a sequence of {length} has {half} early, {length - half} late")
    rng = np.random.default_rng(seed)
    rows = np.arange(trials)[:, None]
    # distinct early sources and distinct late references, paired at random
    source = np.argsort(rng.random((trials, half)), axis=1)[:, :links]
    reference = half + np.argsort(rng.random((trials, length - half)), axis=1)[:, :links]
    planted = np.broadcast_to(np.arange(links) < n_planted, (trials, links)).copy()

    truth = (rng.random((trials, length)) < p_one).astype(np.int32)
    kind = np.full((trials, length), ORDINARY, np.int32)
    weak_ref = (rng.random((trials, links)) < weak_fraction) & ~planted
    kind[rows, source] = np.where(planted, PLANTED, CONTROL)
    kind[rows, reference] = np.where(planted, PLANTED_REF, np.where(weak_ref, WEAK_REF, AGREE_REF))
    truth[rows, source] = planted
    truth[rows, reference] = planted
    evidence = truth.copy()
    evidence[rows, source] = 0                       # a planted mistake says 0 while truth is 1
    evidence[rows, reference] = planted | weak_ref   # weak control references wrongly say 1

    def uniform(bounds):
        return rng.uniform(bounds[0], bounds[1], (trials, length))

    strength = np.where(evidence == 1, uniform(strong), uniform(against))
    strength = np.where(kind == WEAK_REF, uniform(weak), strength)
    return Sequences(truth, evidence, strength, kind, source, reference, planted)


def local_coefficients(evidence, strength, prior):
    """(α, a): the pull toward 1 and toward 0 of each position's local term."""
    evidence = jnp.asarray(evidence)
    return evidence * strength, prior + (1 - evidence) * strength


def build_sequence_coordinator(trial, *, quadratic_weight, gate_weight, evidence_gate_weight=0.0,
                               gate_cost=0.6,
                               gate_k=10.0, local_weight=1.0, prior=1.0, b=0.05, prefix=None):
    r"""The coordinator of one sequence (``trial``: a :class:`Sequences` without the trial axis).

    Families: OneSided (α_t), Landau (a_t, b), Quadratic (w_q per link),
    GateBenefit (w_g per link, gate input η_reference, cost c, sharpness k).
    Every weight may be a traced scalar. ``prefix=t`` (an int or a traced
    scalar): terms reading a module later than t get weight 0, so those
    modules feel no force and position t sees only positions ≤ t.
    """
    length = trial.truth.shape[-1]
    positions = jnp.arange(length)
    alpha, a = local_coefficients(trial.evidence, trial.strength, prior)
    belief = alpha / (alpha + a)  # the reference's evidence alone, measured outside the relaxation
    local_mask = 1.0 if prefix is None else (positions <= prefix)
    link_mask = 1.0 if prefix is None else (jnp.maximum(trial.source, trial.reference) <= prefix)
    terms = [
        OneSided(positions, alpha, weight=local_weight * local_mask * jnp.ones(length)),
        Landau(positions, a, b, weight=local_weight * local_mask * jnp.ones(length)),
        Quadratic(trial.source, trial.reference,
                  weight=quadratic_weight * link_mask * jnp.ones(trial.source.shape)),
        GateBenefit(trial.source, trial.reference, slope=1.0, cost=gate_cost, k=gate_k,
                    weight=gate_weight * link_mask * jnp.ones(trial.source.shape)),
        GateBenefit(trial.source, gain=belief[trial.reference], cost=gate_cost, k=gate_k,
                    weight=evidence_gate_weight * link_mask * jnp.ones(trial.source.shape)),
    ]
    return Coordinator(length, terms)


def relax_sequences(sequences, solver, eta0=0.5, *, prefix=None, **weights):
    """Relax every trial's coordinator (vmapped, one compiled solve) from ``eta0``.

    ``eta0``: a scalar or a (T, L) array of starts. ``prefix``: None (the whole
    sequence) or a position t (every trial's prefix coordinator 0..t).
    ``weights``: the keyword arguments of :func:`build_sequence_coordinator`.
    The first trial's coordinator is checked once (a bad index or coefficient
    raises ValueError here, not inside the traced solve). Returns the batched
    ``Relaxed`` (fields with the trial on axis 0).
    """
    # canonical dtypes (int32 positions and labels): one compiled program whatever made them
    arrays = Sequences(*(jnp.asarray(x, dtype) for x, dtype in zip(
        sequences, (jnp.int32, jnp.int32, None, jnp.int32, jnp.int32, jnp.int32, bool),
        strict=True)))
    length = arrays.truth.shape[-1]
    build_sequence_coordinator(jax.tree.map(lambda x: x[0], arrays), **weights).check()
    dtype = arrays.strength.dtype
    start = jnp.broadcast_to(jnp.asarray(eta0, dtype), arrays.strength.shape)
    # every weight, as an array (filter_jit would make a Python float static and recompile
    # per value, and a different set of keys per arm)
    weights = {k: jnp.asarray(weights[k] if k in weights else p.default, dtype)
               for k, p in _WEIGHT_PARAMETERS.items()}
    # the whole sequence is the prefix 0..L−1: one compiled program for every arm and prefix
    t = jnp.asarray(length - 1 if prefix is None else prefix)
    # the solver's float options as arrays too (tol, step, ...): traced, not compiled in
    solver = jax.tree.map(lambda x: jnp.asarray(x, dtype) if isinstance(x, float) else x, solver)
    return _solve_batch(arrays, start, solver, t, weights)


# the keyword arguments of build_sequence_coordinator that relax_sequences passes as arrays
# (the call that checks the first trial's coordinator has already refused a missing one)
_WEIGHT_PARAMETERS = {
    k: p for k, p in inspect.signature(build_sequence_coordinator).parameters.items()
    if p.kind is p.KEYWORD_ONLY and k != "prefix"}


@eqx.filter_jit
def _solve_batch(arrays, start, solver, t, weights):
    def solve(trial, eta0):
        energy = build_sequence_coordinator(trial, prefix=t, **weights)
        return relax(energy, eta0, solver)

    return jax.vmap(solve)(arrays, start)


def prefix_decisions(sequences, solver, eta0=0.5, **weights):
    """The prefix-only baseline: η_t read from the relaxed prefix coordinator 0..t, every t.

    One vmapped solve per position (L solves, each over all trials). Returns
    a dict of (T, L) arrays: ``eta`` (η_t of prefix t), and of the t-th solve
    ``energy0``, ``energy``, ``df90``, ``steps``, ``successful``.
    """
    length = np.shape(sequences.truth)[-1]
    out = {k: [] for k in ("eta", "energy0", "energy", "df90", "steps", "successful")}
    for t in range(length):  # a loop over positions; trials are vmapped inside
        r = relax_sequences(sequences, solver, eta0, prefix=t, **weights)
        for key, value in (("eta", r.eta[:, t]), ("energy0", r.energy0), ("energy", r.energy),
                           ("df90", delta_f90(r)), ("steps", r.steps),
                           ("successful", r.result == RESULTS.successful)):
            out[key].append(np.asarray(value))
    return {k: np.stack(v, axis=1) for k, v in out.items()}


__all__ = ["Sequences", "make_sequences", "local_coefficients", "build_sequence_coordinator",
           "relax_sequences", "prefix_decisions", "KINDS", "ORDINARY",
           "PLANTED", "CONTROL", "PLANTED_REF", "AGREE_REF", "WEAK_REF"]
