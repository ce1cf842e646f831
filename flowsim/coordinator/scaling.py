r"""Coordinators at scale: random sparse systems, a raw-JAX floor, the timing of a relaxation.

Shared by ``benchmarks/bench_coordinator.py`` and the scenario
``coordinator-scale`` (which may not import each other), and by the tests.

:func:`random_system` draws, from a numpy seed, n Landau modules

    a_i η_i² + η_i⁴ − h_i η_i,     a_i ~ U(−½, ½), h_i ~ U(0, 0.1),

and m = ``edges_per_module``·n random edges i → j (j ≠ i, uniform over the
other modules), weights w ~ U(0, 1), dealt in turn to the three coupling
families so that every family is exercised:

    Quadratic       w (η_i − η_j)²
    DirectedHinge   w max(0, η_j − η_i)²
    GateBenefit     −w σ(k (s η_j − cost)) η_i,   s ~ U(0, 2), k = 4, cost = ½.

The edges are sorted by their first module before they are dealt (the order
of the terms changes nothing in 𝓕; sorted, the gathers of η_i and the
scatter-adds of their forces walk memory forwards).

:func:`raw_energy` writes the same 𝓕 directly with jnp gathers from the
coordinator's arrays (Landau on every module without a gather); its
``value_and_grad`` in a fixed-step projected loop (:func:`floor_program`) is
the least a relaxation step can cost. :func:`with_parameters` replaces the
Landau shift and the gate cost, traced or not, for the vmapped sweeps.

Timings (:func:`measure_size`, :func:`sweep`) are of programs compiled ahead
(``jit(...).lower(...).compile()``, so compilation is never timed), each call
ended by ``block_until_ready``, the median of ``repeats`` calls. Per step is
the relaxation's time over its accepted steps; per evaluation over its
energy-and-gradient evaluations (a step takes one or more: the Armijo line
search). The benchmark (``benchmarks/bench_coordinator.py``) and the study
``coordinator-scale`` both measure through these functions.
"""

import statistics
import time
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._results import result_name
from .relax import ProjectedGradient, _relax, default_tolerance
from .system import Coordinator, check_state
from .terms import (
    DirectedHinge,
    GateBenefit,
    Landau,
    Quadratic,
    weighted_squared_positive_part,
)

A_RANGE, H_MAX, SLOPE_MAX, GATE_K, GATE_COST = (-0.5, 0.5), 0.1, 2.0, 4.0, 0.5
FAMILIES = 3  # Quadratic, DirectedHinge, GateBenefit


def random_edges(n: int, m: int, rng):
    """m edges (i, j), i uniform on [0, n), j uniform on the other n − 1 modules; sorted by i."""
    if n < 2:
        raise ValueError(f"a random graph needs n >= 2 modules, got {n}")
    i = rng.integers(0, n, m)
    j = (i + rng.integers(1, n, m)) % n  # an offset in 1..n-1: never a self-loop
    order = np.argsort(i, kind="stable")
    return i[order], j[order]


def random_system(n: int, edges_per_module: int = 2, seed: int = 0, dtype=np.float64):
    """The seeded coordinator of the module docstring (n modules, edges_per_module·n edges)."""
    rng = np.random.default_rng(seed)
    m = edges_per_module * n
    a = rng.uniform(*A_RANGE, n).astype(dtype)
    h = rng.uniform(0.0, H_MAX, n).astype(dtype)
    i, j = random_edges(n, m, rng)
    w = rng.uniform(0.0, 1.0, m).astype(dtype)
    slope = rng.uniform(0.0, SLOPE_MAX, m).astype(dtype)
    q, d, g = (slice(f, None, FAMILIES) for f in range(FAMILIES))  # dealt in turn
    one = np.ones((), dtype)
    terms = (Landau(np.arange(n), a, one, h),
             Quadratic(i[q], j[q], w[q]),
             DirectedHinge(i[d], j[d], w[d]),
             GateBenefit(i[g], j[g], slope=slope[g], cost=GATE_COST * one, k=GATE_K * one,
                         weight=w[g]))
    return Coordinator(n, terms)


def initial_state(n: int, seed: int = 0, dtype=np.float64):
    """η₀ ~ U(0, 1)ⁿ from its own stream of ``seed`` (independent of the graph's)."""
    return jnp.asarray(np.random.default_rng([seed, 1]).uniform(0.0, 1.0, n).astype(dtype))


def with_parameters(coordinator, a_shift, cost):
    """The coordinator with every Landau a_i shifted by ``a_shift`` and every gate cost ``cost``.

    Works on traced scalars, so ``jax.vmap`` over (a_shift, cost) sweeps one program.
    """
    landau, *_, gates = coordinator.terms
    landau = eqx.tree_at(lambda t: t.a, landau, landau.a + a_shift)
    gates = eqx.tree_at(lambda t: t.cost, gates, jnp.broadcast_to(cost, gates.cost.shape)
                        .astype(gates.cost.dtype))
    return Coordinator(coordinator.n, (landau, *coordinator.terms[1:-1], gates))


def raw_energy(coordinator):
    """𝓕 of a :func:`random_system` written by hand with jnp (the floor's energy)."""
    landau, quad, hinge, gates = coordinator.terms
    a, b, h = landau.a, landau.b, landau.h

    def energy(eta):
        e2 = eta * eta
        local = jnp.sum(a * e2 + b * e2 * e2 - h * eta)  # every module: no gather
        agree = jnp.sum(quad.weight * (eta[quad.i] - eta[quad.j]) ** 2)
        below = weighted_squared_positive_part(hinge.weight, eta[hinge.j] - eta[hinge.i])
        net = gates.gain + gates.slope * eta[gates.j] - gates.cost
        served = jnp.sum(gates.weight * eta[gates.i] * jax.nn.sigmoid(gates.k * net))
        return local + agree + below - served

    return energy


def floor_program(coordinator, steps: int, step: float = 0.05):
    """``steps`` projected steps clip(η − s∇𝓕) of :func:`raw_energy`, one value_and_grad each.

    Returns ``run(eta0) -> (eta, energy)`` (jit it); its time over ``steps`` is
    the floor of one relaxation step.
    """
    value_and_grad = jax.value_and_grad(raw_energy(coordinator))

    def run(eta0):
        def body(_, carry):
            eta, _ = carry
            f, g = value_and_grad(eta)
            return jnp.clip(eta - step * g, 0.0, 1.0), f

        return jax.lax.fori_loop(0, steps, body, (eta0, jnp.zeros((), eta0.dtype)))

    return run


def median_seconds(compiled, args, repeats: int, budget_s: float = float("inf")):
    """(median wall seconds of ``compiled(*args)``, the first call's output).

    Up to ``repeats`` calls, but no more once they took ``budget_s`` in all
    (at least one). No separate warm-up call: ``compiled`` is compiled
    already, and at n = 10⁶ one more relaxation costs seconds.
    """
    times, first = [], None
    while len(times) < repeats and (not times or sum(times) < budget_s):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
        first = out if first is None else first
    return statistics.median(times), first


def _solve(coordinator, eta0, solver):
    # the jitted inner solver, as flowsim.coordinator.relax calls it: validation is done once,
    # outside the timed program
    return _relax(coordinator, None, eta0, solver)


def _compile(fn, *args):
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def floor_steps(n: int) -> int:
    """Steps of a floor call: about 2²⁴/n (16 to 4,096), so that dispatch is noise at small n."""
    return int(np.clip(2**24 // n, 16, 4096))


def measure_size(n: int, edges_per_module: int = 2, seed: int = 0, dtype=np.float64,
                 repeats: int = 3, solver: ProjectedGradient = ProjectedGradient(),
                 budget_s: float = float("inf")):
    """Time one relaxation of :func:`random_system` to stationarity, and the floor; one row."""
    coordinator = random_system(n, edges_per_module, seed, dtype)
    eta0 = initial_state(n, seed, dtype)
    start = time.perf_counter()
    coordinator.check()  # what flowsim.coordinator.relax does on the host before each solve
    check_state(eta0, n)
    check_s = time.perf_counter() - start
    relax, compile_s = _compile(partial(_solve, solver=solver), coordinator, eta0)
    seconds, relaxed = median_seconds(relax, (coordinator, eta0), repeats, budget_s)
    steps_floor = floor_steps(n)
    floor, _ = _compile(floor_program(coordinator, steps_floor), eta0)
    floor_seconds, _ = median_seconds(floor, (eta0,), repeats, budget_s)
    steps, evaluations = int(relaxed.steps), int(relaxed.evaluations)
    tol = default_tolerance(eta0.dtype) if solver.tol is None else float(solver.tol)
    floor_ms = 1e3 * floor_seconds / steps_floor
    ms_per_step = 1e3 * seconds / max(steps, 1)
    return {
        "n": n, "dtype": np.dtype(dtype).name, "edges": edges_per_module * n,
        "ms_per_step": ms_per_step, "ms_per_evaluation": 1e3 * seconds / evaluations,
        "floor_ms": floor_ms, "ratio": ms_per_step / floor_ms,
        "seconds_to_stationarity": seconds, "steps": steps, "evaluations": evaluations,
        "stationarity": float(relaxed.stationarity), "tol": tol,
        "result": result_name(relaxed.result), "energy": float(relaxed.energy),
        "compile_s": compile_s, "check_s": check_s,
    }


def _sweep_solve(base, a_shift, cost, eta0, solver):
    return _solve(with_parameters(base, a_shift, cost), eta0, solver)


def sweep_grid(n: int, points: int, seed: int = 0, dtype=np.float64):
    """points³ configurations: a shift in [−¼, ¼] × gate cost in [0, 1] × initial-state seed."""
    shift, cost, start = np.meshgrid(np.linspace(-0.25, 0.25, points), np.linspace(0.0, 1.0, points),
                                     np.arange(points), indexing="ij")
    eta0 = jnp.stack([initial_state(n, seed + 1 + int(s), dtype) for s in start.ravel()])
    return jnp.asarray(shift.ravel(), dtype), jnp.asarray(cost.ravel(), dtype), eta0


def sweep(n: int, points: int, edges_per_module: int = 2, seed: int = 0, dtype=np.float64,
          repeats: int = 3, solver: ProjectedGradient = ProjectedGradient(),
          budget_s: float = float("inf")):
    """The points³ configurations of :func:`sweep_grid` relaxed by one vmapped program, and one
    by one by the unbatched program; (timings and agreement, the batched :class:`Relaxed`)."""
    base = random_system(n, edges_per_module, seed, dtype)
    base.check()
    shifts, costs, eta0s = sweep_grid(n, points, seed, dtype)
    solve = partial(_sweep_solve, solver=solver)
    batched, _ = _compile(jax.vmap(solve, in_axes=(None, 0, 0, 0)), base, shifts, costs, eta0s)
    single, _ = _compile(solve, base, shifts[0], costs[0], eta0s[0])
    batched_s, together = median_seconds(batched, (base, shifts, costs, eta0s), repeats,
                                          budget_s)

    def one_by_one():
        return [jax.block_until_ready(single(base, s, c, e))
                for s, c, e in zip(shifts, costs, eta0s, strict=True)]

    separate_s, apart = median_seconds(one_by_one, (), repeats, budget_s)
    pairs = [(jax.tree.map(lambda x, k=k: x[k], together), alone) for k, alone in enumerate(apart)]
    return {
        "sweep_n": n, "sweep_configurations": len(shifts), "sweep_seconds": batched_s,
        "separate_seconds": separate_s, "sweep_ratio": batched_s / separate_s,
        "sweep_max_abs_diff": max(float(jnp.max(jnp.abs(v.eta - a.eta))) for v, a in pairs),
        "sweep_same_steps": float(np.mean([int(v.steps) == int(a.steps) for v, a in pairs])),
        "sweep_same_results": all(result_name(v.result) == result_name(a.result)
                                  for v, a in pairs),
        "sweep_successful": sum(result_name(a.result) == "successful" for a in apart),
        "sweep_max_steps": int(jnp.max(together.steps)),
    }, together


__all__ = ["random_edges", "random_system", "initial_state", "with_parameters", "raw_energy",
           "floor_program", "median_seconds", "floor_steps", "measure_size", "sweep_grid", "sweep"]
