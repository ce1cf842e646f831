"""Peak memory and time of flowsim.fep.kl_logits at V=50,257, K=64, 1,024 positions.

Two measurements:
  1. XLA's buffer assignment of the compiled function (arguments + outputs + temporaries);
  2. the process's peak resident set (ru_maxrss) growth across one evaluation,
     in a fresh process, after the inputs exist.
The naive (positions, V, K) tensor would be 1024 * 50257 * 64 * 4 B = 13.2 GB.

    /work/venv/bin/python benchmarks/bench_fep_kl_logits.py [float32|float64]
"""

import resource
import sys
import time

import jax
import jax.numpy as jnp

dtype = sys.argv[1] if len(sys.argv) > 1 else "float32"
if dtype == "float64":
    jax.config.update("jax_enable_x64", True)

from flowsim.fep import kl_logits  # noqa: E402

P, V, K = 1024, 50_257, 64
dt = jnp.dtype(dtype)
keys = jax.random.split(jax.random.PRNGKey(0), 4)
mu_q = jax.random.normal(keys[0], (P, K), dt)
sig_q = jnp.exp(0.1 * jax.random.normal(keys[1], (P, K), dt))
mu_pi = jax.random.normal(keys[2], (V, K), dt)
sig_pi = jnp.exp(0.1 * jax.random.normal(keys[3], (V, K), dt))
f = jax.jit(lambda a, b, c, d: kl_logits(a, b, c, d, 1.0))
compiled = f.lower(mu_q, sig_q, mu_pi, sig_pi).compile()
mem = compiled.memory_analysis()
xla = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
jax.block_until_ready((mu_q, sig_q, mu_pi, sig_pi))
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t = time.perf_counter()
out = jax.block_until_ready(compiled(mu_q, sig_q, mu_pi, sig_pi))
elapsed = time.perf_counter() - t
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(f"dtype={dtype} positions={P} V={V} K={K} device={jax.devices()[0].platform}")
print(f"output {out.shape} = {out.nbytes / 1e6:.0f} MB")
print(f"XLA buffers: arguments {mem.argument_size_in_bytes / 1e6:.0f} MB, outputs "
      f"{mem.output_size_in_bytes / 1e6:.0f} MB, temporaries {mem.temp_size_in_bytes / 1e6:.0f} MB, "
      f"total {xla / 1e6:.0f} MB")
print(f"peak RSS growth during the call: {(rss1 - rss0) / 1e6:.0f} MB (process peak {rss1 / 1e6:.0f} MB)")
print(f"time (compiled, one call): {elapsed * 1e3:.0f} ms")
print(f"naive (P, V, K) tensor would be {P * V * K * dt.itemsize / 1e9:.1f} GB")
