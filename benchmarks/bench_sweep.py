"""A sweep of ep-estimators' core at its default size: n configurations against one.

The core (``analysis.ep_estimators.SWEEP``: every estimator's cosine with the
oracle on both systems, from the seed and the gains) runs as ``flowsim run
ep-estimators --sweep`` runs it: ``jit(vmap(core))`` with the configuration
axis split over every device (``flowsim.parallel``). Rows, timed after
compilation (median of repeats):

* ``n`` configurations (seeds 0..n−1, the other keys at their defaults) as one
  program, its time, and its ratio to one configuration's time (the target
  of the sweeps issue: ≤ 4× for n = 64);
* ``n × one``: the same n as n calls of the one-configuration program
  (what a study's Python loop costs), and the speed-up of the sweep over it.

The sweep's row of seed 0 is checked against the one-configuration run (the
largest difference over the summary keys, relative to max(|value|, 1e-12):
the minimal residuals are at rounding, ~1e-15, where two programs differ by
tens of percent of nothing). Several CPU devices are XLA's emulated ones:

    python benchmarks/bench_sweep.py [--sizes 1 8 64] [--devices 4] [--repeats 3]
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path


def parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--devices", type=int, default=1, help="emulated CPU devices")
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


def main():
    args = parse()
    # before JAX starts: the emulated device count
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={args.devices}")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from timing import median_ms

    from analysis import ep_estimators
    from flowsim import parallel

    config = ep_estimators.Config()
    core = ep_estimators.SWEEP
    defaults = {key: getattr(config, key) if "." not in key else
                getattr(getattr(config, key.split(".")[0]), key.split(".")[1])
                for key in core.traced}
    mesh = parallel.config_mesh()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jax {jax.__version__}, {mesh.size} device(s); ep-estimators defaults "
          f"(state {config.hopfield.state}, batch {config.hopfield.batch}, "
          f"phase_steps up to {max(config.phase_steps)}, horizons up to {max(config.horizons)})")

    def values(n):
        out = {key: np.full(n, value) for key, value in defaults.items()}
        out["seed"] = np.arange(n)
        return out

    program = parallel.sharded_vmap(lambda v: core.summary(config, v, None), mesh)
    rows, first = {}, None
    for n in args.sizes:
        placed = parallel.place(parallel.pad(values(n), parallel.padded_size(n, mesh)), mesh)
        start = time.perf_counter()
        compiled = program.lower(placed).compile()
        compile_s = time.perf_counter() - start
        ms = median_ms(compiled, (placed,), args.repeats)
        out = parallel.gather(compiled(placed), n)
        if first is None:
            first = out
        # relative to max(|value|, 1e-12): the minimal residuals sit at rounding (~1e-15)
        differences = {k: abs(float(out[k][0]) - float(first[k][0]))
                       / max(abs(float(first[k][0])), 1e-12) for k in out}
        worst = max(differences, key=differences.get)
        rows[n] = ms
        print(f"n = {n:4d}: {ms:9.1f} ms ({compile_s:5.1f} s to compile); "
              f"row 0 against n = {args.sizes[0]}: max rel. diff {differences[worst]:.1e} ({worst}: "
              f"{float(out[worst][0]):.3e} against {float(first[worst][0]):.3e})")
    one = rows[min(rows)]
    print("\n| configurations | sweep ms | sweep / one | n × one ms | speed-up over n × one |")
    print("|---|---|---|---|---|")
    for n, ms in rows.items():
        print(f"| {n} | {ms:.1f} | {ms / one:.2f} | {n * one:.1f} | {n * one / ms:.1f} |")


if __name__ == "__main__":
    main()
