"""The oracle (Implicit) against BPTT on F = −z + tanh(zW + xU + b), state 64×128, in one process.

Rows, all timed after compilation (median of repeats, block_until_ready), with
each compiled program's peak temporary memory from XLA's memory_analysis():

* ``bptt``: flowsim.BPTT(T) (diffrax, every step's state kept);
* ``raw``: an independent raw-JAX ``lax.fori_loop`` of the same Euler map,
  differentiated by ``jax.grad`` (the floor BPTT is held against);
* ``implicit joint``: flowsim.Implicit on the batch as one system;
* ``implicit per-sample``: flowsim.Implicit on the batched problem: each
  sample's equilibrium and adjoint solved on its own (vmap); both with the
  stability test of z*, whose cost is measured against ``stability="ignore"``;
* ``pre-refactor``: the oracle as it was before (optimistix.Newton with an
  inner GMRES(20), rtol 1e-3, after T relaxation steps, then a GMRES(20)
  adjoint to 1e-10), reassembled from optimistix and lineax for comparison;
* with ``torchdeq`` installed (``pip install -e '.[bench]'``): the DEQ peer,
  its implicit-differentiation backward (ift=True, Anderson forward and
  backward solvers) on the same fixed point z = tanh(zW + xU + b), in float64:
  its time and the cosine of its gradient with flowsim's oracle.

The oracle's warm start is ``--relax`` Euler steps (its cost does not depend on
T); a breakdown splits its time into the warm start, the Newton solve and the
adjoint solve.

    python benchmarks/bench_implicit_vs_bptt.py [--horizons 50 150 600] [--relax 20] [--repeats 7]
"""

import argparse
import platform
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import optimistix as optx  # noqa: E402
from timing import median_ms  # noqa: E402

import flowsim  # noqa: E402
from flowsim.rules._base import _gradient  # noqa: E402
from flowsim.systems import AsymmetricTanh  # noqa: E402

BATCH, STATE, INPUTS, DT = 64, 128, 32, 0.1


def loss(z, y):
    """The batch mean of ½‖z_i − y_i‖² (the joint problem's loss)."""
    return 0.5 * jnp.mean(jnp.sum((z - y) ** 2, axis=-1))


def sample_loss(z, y):
    """½‖z_i − y_i‖² of one sample (the batched problem averages it)."""
    return 0.5 * jnp.sum((z - y) ** 2)


def setup(dtype="float64"):
    system = AsymmetricTanh(STATE, INPUTS)
    params = system.init_params(jax.random.PRNGKey(0), gain=0.8)
    x = jax.random.normal(jax.random.PRNGKey(1), (BATCH, INPUTS))
    y = 0.5 * jax.random.normal(jax.random.PRNGKey(2), (BATCH, STATE))
    cast = lambda tree: jax.tree.map(lambda u: u.astype(dtype), tree)
    return system, cast(params), cast(jnp.zeros((BATCH, STATE))), cast(x), cast(y)


def measure(fn, args, repeats):
    """(ms, MB of XLA temporaries, output) of a jitted function."""
    compiled = jax.jit(fn).lower(*args).compile()
    memory = compiled.memory_analysis()
    peak = getattr(memory, "temp_size_in_bytes", float("nan")) if memory else float("nan")
    return median_ms(compiled, args, repeats), peak / 2**20, compiled(*args)


def rule_fn(rule, problem):
    return lambda params, z0, x, y: _gradient(rule, problem, z0, params, x, y, None)[0]


def raw_bptt(steps, z0, x, y):
    def objective(p):
        def step(_, z):
            return z + DT * (-z + jnp.tanh(z @ p["W"] + x @ p["U"] + p["b"]))
        return loss(jax.lax.fori_loop(0, steps, step, z0), y)
    return jax.grad(objective)


def pre_refactor(system, steps):
    """The oracle of flowsim before the rewrite: Newton + GMRES(20), a GMRES(20) adjoint."""
    newton = optx.Newton(rtol=1e-10, atol=1e-10,
                         linear_solver=lx.GMRES(rtol=1e-3, atol=1e-3, restart=20, max_steps=2000))

    def grads(params, z0, x, y):
        z = flowsim.relax(system.field, z0, params, x, steps=steps, dt=DT)
        z = optx.root_find(lambda u, a: system.field(u, params, x), newton, z, max_steps=50,
                           throw=False).value
        dldz = jax.grad(loss)(z, y)
        op = lx.JacobianLinearOperator(lambda u, a: system.field(u, params, x), z).T
        lam = lx.linear_solve(op, -dldz, lx.GMRES(rtol=1e-10, atol=1e-12, restart=20,
                                                   max_steps=2000), throw=False).value
        _, vjp = jax.vjp(lambda p: system.field(z, p, x), params)
        return vjp(lam)[0]

    return grads


def torchdeq_peer(params, x, y, repeats, tol):
    """(ms, gradient as numpy dict) of torchdeq's IFT backward, or None without torchdeq."""
    try:
        import numpy as np
        import torch
        from torchdeq import get_deq
    except ImportError:
        return None
    torch.set_default_dtype(torch.float64)
    w, u, b = (torch.tensor(np.asarray(params[k]), requires_grad=True) for k in "WUb")
    xt, yt = torch.tensor(np.asarray(x)), torch.tensor(np.asarray(y))
    deq = get_deq(f_solver="anderson", b_solver="anderson", f_max_iter=400, b_max_iter=400,
                  f_tol=tol, b_tol=tol, f_stop_mode="abs", b_stop_mode="abs", ift=True)

    def step():
        drive = xt @ u + b
        z_out, _ = deq(lambda z: torch.tanh(z @ w + drive), torch.zeros(BATCH, STATE))
        value = 0.5 * ((z_out[-1] - yt) ** 2).sum(-1).mean()
        return torch.autograd.grad(value, (w, u, b))

    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        grads = step()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times), {k: g.detach().numpy() for k, g in zip("WUb", grads)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--horizons", type=int, nargs="+", default=[50, 150, 600])
    parser.add_argument("--relax", type=int, default=20, help="the oracle's warm start")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    options = parser.parse_args()
    system, params, z0, x, y = setup(options.dtype)
    joint = flowsim.Problem(system.field, loss)
    per_sample = flowsim.Problem(system.field, sample_loss, batched=True)
    solver = flowsim.EquilibriumSolver(relax_steps=options.relax, dt=DT)
    oracle = flowsim.Implicit(equilibrium=solver)
    args = (params, z0, x, y)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, "
          f"jax {jax.__version__} on {jax.devices()[0].platform}, {options.dtype}, "
          f"oracle warm start {options.relax} Euler steps")
    t_joint, m_joint, g_joint = measure(rule_fn(oracle, joint), args, options.repeats)
    t_per, m_per, g_per = measure(rule_fn(oracle, per_sample), args, options.repeats)
    print(f"implicit joint {t_joint:.1f} ms ({m_joint:.2f} MB), per-sample {t_per:.1f} ms "
          f"({m_per:.2f} MB); relative difference {float(flowsim.relative_error(g_per, g_joint)):.1e}")
    unchecked = flowsim.Implicit(equilibrium=flowsim.EquilibriumSolver(
        relax_steps=options.relax, dt=DT, stability="ignore"))
    for name, problem, checked in (("joint", joint, t_joint), ("per-sample", per_sample, t_per)):
        t_off, _, _ = measure(rule_fn(unchecked, problem), args, options.repeats)
        print(f"  {name}: the stability test of z* (8 Arnoldi steps) costs "
              f"{checked - t_off:.2f} ms of {checked:.1f} ({100 * (checked - t_off) / checked:.0f}%)")
    for name, problem in (("joint", joint), ("per-sample", per_sample)):
        _, info = _gradient(oracle, problem, z0, params, x, y, None)
        print(f"  {name}: {flowsim.result_name(info['result'])}, residual "
              f"{float(info['residual']):.1e}, {int(info['matvecs'])} products")
    if options.dtype == "float32":
        reference = rule_fn(oracle, joint)(*(jax.tree.map(lambda u: u.astype("float64"), a)
                                             for a in args))
        print(f"  float32 oracle against the float64 one: relative difference "
              f"{float(flowsim.relative_error(g_joint, reference)):.1e}")
    print(f"{'T':>5} {'bptt ms':>8} {'raw ms':>7} {'bptt/raw':>8} {'joint/bptt':>10} "
          f"{'per/bptt':>8} {'pre-refactor ms':>15} {'bptt MB':>8} {'cos(oracle,bptt)':>16}")
    for steps in options.horizons:
        t_bptt, m_bptt, g_bptt = measure(rule_fn(flowsim.BPTT(steps, DT), joint), args,
                                         options.repeats)
        t_raw, _, g_raw = measure(lambda p, z, u, v: raw_bptt(steps, z, u, v)(p), args,
                                  options.repeats)
        assert float(flowsim.relative_error(g_bptt, g_raw)) < 1e3 * jnp.finfo(z0.dtype).eps
        t_old, _, g_old = measure(pre_refactor(system, steps), args, options.repeats)
        assert float(flowsim.relative_error(g_old, g_joint)) < 1e-6 or options.dtype == "float32"
        print(f"{steps:>5} {t_bptt:8.1f} {t_raw:7.1f} {t_bptt / t_raw:8.2f} "
              f"{t_joint / t_bptt:10.3f} {t_per / t_bptt:8.3f} {t_old:15.1f} {m_bptt:8.2f} "
              f"{float(flowsim.cosine(g_joint, g_bptt)):16.6f}")
    breakdown(system, params, z0, x, y, solver, joint, per_sample, options.repeats)
    peer = torchdeq_peer(params, x, y, options.repeats, tol=1e-10) if options.dtype == "float64" \
        else None
    if peer is None:
        print("torchdeq: not run (float64 only here; pip install -e '.[bench]' to have it)")
    else:
        ms, grads = peer
        cos = float(flowsim.cosine({k: jnp.asarray(v) for k, v in grads.items()}, g_joint))
        rel = float(flowsim.relative_error({k: jnp.asarray(v) for k, v in grads.items()}, g_joint))
        print(f"torchdeq (Anderson forward and IFT backward, tol 1e-10): {ms:.1f} ms, "
              f"cos with flowsim's oracle {cos:.10f}, relative difference {rel:.1e}")


def breakdown(system, params, z0, x, y, solver, joint, per_sample, repeats):
    """Where the oracle's time goes: warm start, Newton, adjoint (joint and per sample)."""
    warm = solver.warm_start
    t_warm, _, _ = measure(lambda p, z, u: warm.final_state(system.field, z, p, u),
                           (params, z0, x), repeats)
    for name, problem in (("joint", joint), ("per-sample", per_sample)):
        t_eq, _, (_, info) = measure(
            lambda p, z, u: flowsim.solve(solver, problem, z, p, u), (params, z0, x), repeats)
        t_all, _, _ = measure(rule_fn(flowsim.Implicit(equilibrium=solver), problem),
                              (params, z0, x, y), repeats)
        newton = jnp.max(info["newton_steps"])
        print(f"  {name}: warm start {t_warm:.1f} ms, Newton {t_eq - t_warm:.1f} ms "
              f"({int(newton)} steps at most), adjoint and gradient {t_all - t_eq:.1f} ms")


if __name__ == "__main__":
    main()
