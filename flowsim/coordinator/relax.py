r"""Relaxation on [0, 1]ⁿ that never lies about energy: projected gradient with Armijo.

One step from η with gradient g = ∇𝓕(η) tries the projected point

    η⁺(s) = clip(η − s g, 0, 1),

and accepts the first s of s₀, s₀/2, s₀/4, … (at most ``max_backtracks``
halvings) for which

    𝓕(η⁺) ≤ 𝓕(η) + c gᵀ(η⁺ − η)      (Armijo along the projection arc)
    and 𝓕(η⁺) < 𝓕(η)                 (never a rise, whatever roundoff does),

or, at the roundoff floor where 𝓕(η⁺) = 𝓕(η) to the last bit, for which
η⁺ is closer to stationary (the measure below) than η.

If every halving fails the state is not moved and the solve stops with
``line_search_failed``: it never takes a step that raises the energy, so the
state it returns is always the best it found. The first trial step s₀
(``trial_step``) comes from the last accepted move Δη, Δg by Barzilai–Borwein:

    "long"         ΔηᵀΔη / ΔηᵀΔg   (BB1: the monotone spectral projected
                                    gradient of Birgin, Martínez & Raydan 2000)
    "short"        ΔηᵀΔg / ΔgᵀΔg   (BB2)
    "alternating"  BB1 on even steps, BB2 on odd ones (Dai & Fletcher 2005)
    "fixed"        ``step`` always (the projected Euler step of the flow,
                   when accepted)

clipped to [``step_min``, ``step_max``], and ``step`` when the curvature
ΔηᵀΔg is not positive. The long step alone is often rejected by the
monotone test (a second evaluation); alternating keeps its speed with fewer
rejections (random graph of 10⁵ modules, tol 1e-5: 136 steps and 172
evaluations against BB1's 220 and 421; see README, Performance).
The whole solve is one ``lax.while_loop`` under jit, vmappable over
coordinators and starts.

It stops when the projected-gradient step is small,

    ‖η − clip(η − ∇𝓕(η), 0, 1)‖_∞ ≤ tol,

(zero exactly at the KKT points of 𝓕 on the box; the reported
``stationarity`` is the same vector's 2-norm). The default ``tol`` is √ε
of the state's dtype: near a minimum a step's decrease is about
s‖g‖², and the energy's roundoff ε|𝓕| hides it below about that, so
a tighter ``tol`` can end in ``line_search_failed`` (the best state,
with its stationarity reported) rather than convergence.

Balancing schemes may take steps on a re-weighted energy (``step_energy``);
the energy reported, its trace and ΔF90 are always the user's own 𝓕, which
the acceptance test also keeps from rising. ΔF90 (:func:`delta_f90`) is the
number of steps to 90 % of the drop 𝓕(η₀) − 𝓕_final, counted from 𝓕(η₀).
"""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._results import RESULTS
from .system import check_state

TRIAL_STEPS = ("alternating", "long", "short", "fixed")


class ProjectedGradient(eqx.Module):
    """Options of :func:`relax` (see the module docstring)."""

    max_steps: int = eqx.field(static=True, default=10_000)
    tol: float | None = None
    step: float = 1.0
    trial_step: str = eqx.field(static=True, default="alternating")
    step_min: float = 1e-10
    step_max: float = 1e10
    armijo: float = 1e-4
    max_backtracks: int = eqx.field(static=True, default=50)

    def __check_init__(self):
        if self.trial_step not in TRIAL_STEPS:
            raise ValueError(f"trial_step must be one of {TRIAL_STEPS}, got {self.trial_step!r}")
        if self.max_steps < 1 or self.max_backtracks < 0:
            raise ValueError("max_steps must be >= 1 and max_backtracks >= 0")


class Relaxed(eqx.Module):
    """What :func:`relax` returns.

    Attributes:
        eta: the best state found (the last accepted one).
        energy: the user's 𝓕 at ``eta``; ``energy0`` at η₀.
        stationarity: ‖η − clip(η − ∇𝓕(η), 0, 1)‖₂ of the user's 𝓕.
        steps: accepted steps; ``evaluations``: energy-and-gradient evaluations.
        energies: 𝓕 after each step (index 0: η₀), NaN past ``steps``.
        result: a :class:`flowsim.RESULTS` code.
    """

    eta: jax.Array
    energy: jax.Array
    energy0: jax.Array
    stationarity: jax.Array
    steps: jax.Array
    evaluations: jax.Array
    energies: jax.Array
    result: RESULTS


def _projected_step(eta, grad):
    return jnp.clip(eta - grad, 0.0, 1.0) - eta


def _trial_step(solver, k, dx, dg):
    """The next first trial step from the last accepted move (see the module docstring)."""
    if solver.trial_step == "fixed":
        return jnp.asarray(solver.step)
    curvature = jnp.vdot(dx, dg)
    positive = curvature > 0
    safe = jnp.where(positive, curvature, 1)
    long = jnp.vdot(dx, dx) / safe
    short = safe / jnp.where(positive, jnp.vdot(dg, dg), 1)
    bb = {"long": long, "short": short,
          "alternating": jnp.where(k % 2 == 0, long, short)}[solver.trial_step]
    return jnp.where(positive, bb, solver.step)


def default_tolerance(dtype):
    """√ε of the state's dtype (float64: 1.5e-8, float32: 3.5e-4)."""
    return float(jnp.finfo(dtype).eps) ** 0.5


@eqx.filter_jit
def _relax(energy, step_energy, eta0, solver):
    dtype = eta0.dtype
    # None: step on the user's 𝓕. Decided by the caller, because `step_energy is energy`
    # is always False here: filter_jit rebuilds each pytree argument (a Coordinator)
    # separately, and 𝓕 was then evaluated twice per trial step.
    same = step_energy is None
    step_energy = energy if same else step_energy
    user_value_and_grad = jax.value_and_grad(energy)
    step_value_and_grad = jax.value_and_grad(step_energy)
    f0, g0 = step_value_and_grad(eta0)
    u0 = energy(eta0)
    tol = default_tolerance(dtype) if solver.tol is None else jnp.asarray(solver.tol, dtype)
    trace = jnp.full(solver.max_steps + 1, jnp.nan, dtype).at[0].set(u0)

    def measure(eta, grad):
        return jnp.max(jnp.abs(_projected_step(eta, grad)))

    def line_search(eta, f, u, g, s0, worst, active):
        def try_step(s):
            cand = jnp.clip(eta - s * g, 0.0, 1.0)
            fc, gc = step_value_and_grad(cand)
            uc = fc if same else energy(cand)
            armijo = (fc <= f + solver.armijo * jnp.vdot(g, cand - eta)) & (fc < f)
            # At the roundoff floor 𝓕 cannot tell a better state from a worse one; a
            # step that leaves 𝓕 unchanged is taken only if it is closer to stationary
            # (so the loop cannot cycle on a flat energy), never one that raises it.
            floor = (fc == f) & (measure(cand, gc) < worst)
            ok = (armijo | floor) & (uc <= u) & jnp.isfinite(fc) & jnp.isfinite(uc)
            return cand, fc, uc, gc, ok

        def cond(c):
            # under vmap a solve that has stopped still runs this loop with the others:
            # one trial, not max_backtracks halvings (its result is discarded anyway)
            return active & ~c[5] & (c[6] <= solver.max_backtracks)

        def body(c):
            s = c[0] * 0.5
            return (s, *try_step(s), c[6] + 1)

        first = (s0, *try_step(s0), jnp.asarray(1))
        return jax.lax.while_loop(cond, body, first)

    def cond(c):
        return (c[-1] == RESULTS.successful) & (c[0] < solver.max_steps) & (c[6] > tol)

    def body(c):
        k, eta, f, u, g, s, worst, evals, trace, running = c
        s_used, cand, fc, uc, gc, ok, tries = line_search(eta, f, u, g, s, worst, cond(c))
        dx, dg = cand - eta, gc - g
        s_next = jnp.clip(_trial_step(solver, k, dx, dg), solver.step_min,
                          solver.step_max).astype(dtype)
        eta, f, u, g = (jnp.where(ok, new, old) for new, old in
                        ((cand, eta), (fc, f), (uc, u), (gc, g)))
        k = k + ok.astype(k.dtype)
        trace = jnp.where(ok, trace.at[k].set(u), trace)
        running = RESULTS.where(ok, running, RESULTS.line_search_failed)
        return k, eta, f, u, g, jnp.where(ok, s_next, s), measure(eta, g), evals + tries, trace, \
            running

    start = (jnp.asarray(0), eta0, f0, u0, g0, jnp.asarray(solver.step, dtype), measure(eta0, g0),
             jnp.asarray(1), trace, RESULTS.successful)
    finite = jnp.isfinite(f0) & jnp.isfinite(u0) & jnp.all(jnp.isfinite(g0))
    start = start[:-1] + (RESULTS.where(finite, RESULTS.successful, RESULTS.nonfinite),)
    k, eta, f, u, g, _, worst, evals, trace, result = jax.lax.while_loop(cond, body, start)
    unfinished = (result == RESULTS.successful) & (worst > tol)
    result = RESULTS.where(unfinished, RESULTS.max_steps_reached, result)
    user_grad = g if same else user_value_and_grad(eta)[1]
    return Relaxed(eta=eta, energy=u, energy0=u0,
                   stationarity=jnp.linalg.norm(_projected_step(eta, user_grad)),
                   steps=k, evaluations=evals, energies=trace, result=result)


def relax(energy, eta0, solver: ProjectedGradient = ProjectedGradient(), *, step_energy=None):
    """Relax ``energy`` (a callable 𝓕(η), e.g. a :class:`Coordinator`) from ``eta0`` on [0, 1]ⁿ.

    ``step_energy``: take the steps on this energy instead (a balancing
    scheme's re-weighted 𝓕); everything reported is still ``energy``'s.
    Returns a :class:`Relaxed`. Raises ValueError (one line) for η₀ outside
    [0, 1] or a coordinator with a bad index or coefficient.
    """
    eta0 = jnp.asarray(eta0)
    if not jnp.issubdtype(eta0.dtype, jnp.floating):
        eta0 = eta0.astype(float)
    check_state(eta0, getattr(energy, "n", None))
    for candidate in (energy, step_energy):
        if hasattr(candidate, "check"):
            candidate.check()
    # Python floats would be static under filter_jit: a new tolerance would recompile.
    solver = jax.tree.map(lambda v: jnp.asarray(v, eta0.dtype) if isinstance(v, float) else v,
                          solver)
    return _relax(energy, step_energy, eta0, solver)


def delta_f90(relaxed: Relaxed):
    """Steps until 𝓕 first falls to 𝓕(η₀) − 0.9 (𝓕(η₀) − 𝓕_final) (0 when nothing dropped).

    A batched ``Relaxed`` (from ``jax.vmap``) gives one count per solve.
    """
    drop = relaxed.energy0 - relaxed.energy
    target = relaxed.energy0 - 0.9 * drop
    # past the last step the trace is NaN, and NaN <= target is False
    reached = relaxed.energies <= target[..., None]
    return jnp.where(drop > 0, jnp.argmax(reached, axis=-1), 0)


__all__ = ["TRIAL_STEPS", "ProjectedGradient", "Relaxed", "relax", "delta_f90", "default_tolerance"]
