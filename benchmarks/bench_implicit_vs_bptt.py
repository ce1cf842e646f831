"""Implicit (oracle) vs BPTT on F = −z + tanh(zW + xU + b), state 64×128, float64.

Times both after compilation in one process (median of repeats, block_until_ready),
and reads each compiled program's peak temporary memory from XLA's
memory_analysis() as the horizon T grows. Implicit's T is its warm-start
relaxation (not differentiated through); BPTT differentiates all T steps.
Optionally times the same BPTT as a PyTorch eager loop (pip install torch).

    python benchmarks/bench_implicit_vs_bptt.py [--horizons 50 150 600] [--repeats 5]
"""

import argparse
import platform
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import flowsim  # noqa: E402
from flowsim.rules._base import _gradient  # noqa: E402
from flowsim.systems import AsymmetricTanh  # noqa: E402

BATCH, STATE, INPUTS, DT = 64, 128, 32, 0.1


def loss(z, y):
    return 0.5 * jnp.mean(jnp.sum((z - y) ** 2, axis=-1))


def problem():
    system = AsymmetricTanh(STATE, INPUTS)
    params = system.init_params(jax.random.PRNGKey(0), gain=0.8)
    x = jax.random.normal(jax.random.PRNGKey(1), (BATCH, INPUTS))
    y = 0.5 * jax.random.normal(jax.random.PRNGKey(2), (BATCH, STATE))
    return system, params, jnp.zeros((BATCH, STATE)), x, y


def measure(rule, system, params, z0, x, y, repeats):
    args = (rule, flowsim.Problem(system.field, loss), z0, params, x, y, None)
    compiled = _gradient.lower(*args).compile()
    memory = compiled.compiled.memory_analysis()
    peak = getattr(memory, "temp_size_in_bytes", float("nan")) if memory else float("nan")
    grads, info = compiled(*args)
    jax.block_until_ready(grads)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times), peak, grads, info


def torch_bptt(params, x, y, steps, repeats):
    import numpy as np
    import torch

    torch.set_default_dtype(torch.float64)
    w, u, b = (torch.tensor(np.asarray(params[k]), requires_grad=True) for k in "WUb")
    xt, yt = torch.tensor(np.asarray(x)), torch.tensor(np.asarray(y))

    def step():
        z = torch.zeros(BATCH, STATE)
        for _ in range(steps):
            z = z + DT * (-z + torch.tanh(z @ w + xt @ u + b))
        value = 0.5 * ((z - yt) ** 2).sum(-1).mean()
        return torch.autograd.grad(value, (w, u, b))

    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), torch.__version__


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--horizons", type=int, nargs="+", default=[50, 150, 600])
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    system, params, z0, x, y = problem()
    print(f"machine: {platform.machine()} {platform.processor() or ''}, "
          f"jax {jax.__version__} on {jax.devices()[0].platform}, float64")
    print(f"{'T':>5} {'implicit ms':>12} {'bptt ms':>9} {'ratio':>6} "
          f"{'implicit MB':>12} {'bptt MB':>8} {'cos':>10} {'torch bptt ms':>14}")
    for steps in options.horizons:
        implicit = flowsim.Implicit(equilibrium=flowsim.EquilibriumSolver(relax_steps=steps))
        t_imp, m_imp, g_imp, info = measure(implicit, system, params, z0, x, y, options.repeats)
        t_bptt, m_bptt, g_bptt, _ = measure(flowsim.BPTT(steps, DT), system, params, z0, x, y,
                                            options.repeats)
        try:
            t_torch, _ = torch_bptt(params, x, y, steps, options.repeats)
            torch_ms = f"{1e3 * t_torch:14.1f}"
        except ImportError:
            torch_ms = f"{'(no torch)':>14}"
        assert flowsim.result_name(info["result"]) == "successful"
        print(f"{steps:>5} {1e3 * t_imp:12.1f} {1e3 * t_bptt:9.1f} {t_imp / t_bptt:6.2f} "
              f"{m_imp / 2**20:12.2f} {m_bptt / 2**20:8.2f} "
              f"{float(flowsim.cosine(g_imp, g_bptt)):10.6f} {torch_ms}")


if __name__ == "__main__":
    main()
