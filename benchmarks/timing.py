"""Timing shared by the benchmarks: the median of repeated calls after a warm-up call."""

import statistics
import time

import jax


def median_ms(compiled, args, repeats):
    """Median wall time in ms of ``compiled(*args)`` over ``repeats`` calls (after one warm-up)."""
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)
