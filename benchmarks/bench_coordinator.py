"""The coordinator at n = 32 … 10⁶ modules: ms per relaxation step against the seed and a floor.

One process, one seeded random sparse system per n (n Landau modules and
2n random edges dealt to Quadratic, DirectedHinge and GateBenefit couplings:
``flowsim.coordinator.scaling.random_system``), relaxed from a seeded
η₀ by ``flowsim.coordinator``'s projected gradient until the projected step's
∞-norm is below ``--tol64`` (float64) or ``--tol32`` (float32). Each program is
compiled ahead and timed after compilation (block_until_ready, median of
``--repeats`` calls, fewer once a program's calls took ``--budget`` seconds):

* ``ms/step``: the whole solve over its accepted steps (``ms/eval``: over its
  energy-and-gradient evaluations; the Armijo search takes one or more a step);
* ``floor``: one ``value_and_grad`` of the same 𝓕 written directly in jnp plus
  a projection, per step of a fixed-step loop (the least a step can cost);
* ``vs seed``: the seed coordinator's ms per step, measured by the issue's
  author (1.7 ms at n = 32, 54 ms at 1,024, 234 ms at 4,096; not run here),
  over ours; the target is 1,000× at n = 1,024;
* the sweep: 64 configurations (Landau shift × gate cost × initial state) at
  n = 1,024 as one vmapped program against the same 64 solved one by one.

The machine's load average is printed with the table: timings on a shared
machine are high and noisy.

    python benchmarks/bench_coordinator.py [--sizes 32 1024 100000 1000000] [--dtype float64]
"""

import argparse
import os
import platform

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from flowsim.coordinator import ProjectedGradient  # noqa: E402
from flowsim.coordinator.scaling import measure_size, sweep  # noqa: E402

SEED_MS_PER_STEP = {32: 1.7, 1024: 54.0, 4096: 234.0}
DTYPES = {"float64": np.float64, "float32": np.float32}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 1024, 4096, 100_000,
                                                                 1_000_000])
    parser.add_argument("--dtype", nargs="+", choices=list(DTYPES), default=["float64"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=20.0,
                        help="seconds of calls after which a program is not called again")
    parser.add_argument("--tol64", type=float, default=1e-5)
    parser.add_argument("--tol32", type=float, default=1e-2)
    parser.add_argument("--sweep-n", type=int, default=1024)
    parser.add_argument("--sweep-points", type=int, default=4, help="points³ configurations")
    args = parser.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, {platform.processor() or ''}, "
          f"{os.cpu_count()} cores, load average {load}; edges = 2n; tol float64 {args.tol64:g}, "
          f"float32 {args.tol32:g} (inf-norm of the projected step)")
    print("| n | dtype | ms/step | ms/eval | floor ms/step | ms/step ÷ floor | s to stationarity "
          "| steps | evals | stationarity | result | vs seed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        for dtype in args.dtype:
            tol = args.tol64 if dtype == "float64" else args.tol32
            r = measure_size(n, 2, 0, DTYPES[dtype], args.repeats, ProjectedGradient(tol=tol),
                             args.budget)
            seed = SEED_MS_PER_STEP.get(n)
            versus = f"{seed / r['ms_per_step']:,.0f}×" if seed else ""
            print(f"| {n:,} | {dtype} | {r['ms_per_step']:.4g} | {r['ms_per_evaluation']:.4g} | "
                  f"{r['floor_ms']:.4g} | {r['ratio']:.2f} | {r['seconds_to_stationarity']:.3g} | "
                  f"{r['steps']} | {r['evaluations']} | {r['stationarity']:.1e} | {r['result']} | "
                  f"{versus} |", flush=True)
    if args.sweep_points:
        found, _ = sweep(args.sweep_n, args.sweep_points, 2, 0, np.float64, args.repeats,
                         ProjectedGradient(tol=args.tol64), args.budget)
        print(f"\nsweep: {found['sweep_configurations']} configurations at n = {args.sweep_n:,}, "
              f"float64: one vmapped program {found['sweep_seconds']:.3g} s, one by one "
              f"{found['separate_seconds']:.3g} s (ratio {found['sweep_ratio']:.2f}); "
              f"largest |Δη| {found['sweep_max_abs_diff']:.1e}, equal step counts "
              f"{found['sweep_same_steps']:.0%}, {found['sweep_successful']} successful, "
              f"vmapped loop {found['sweep_max_steps']} steps")
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
