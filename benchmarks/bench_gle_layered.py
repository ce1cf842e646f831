"""GLE against BPTT through the same ODE, on a layered GLE network: speed and memory vs horizon.

One process, the same network, drive and parameters for every row (float32,
batch 32, widths 8-128-128-10, cross-entropy readout, dt = 0.2, τ_m = 1.2,
τ_r from 0.2 to 1.2 across the neurons), each program compiled once per horizon
and timed after compilation (median of repeats, block_until_ready):

* ``gle``: ``flowsim.gle.simulate`` accumulating ∫ĕ rᵀ dt online (forward only);
* ``gle raw-JAX floor``: the same Euler steps written as one ``lax.scan`` by
  hand (no diffrax, no interpolation object: the inputs indexed per step),
  the floor GLE is held against;
* ``bptt (every step kept)``: ``trajectory_gradient`` with
  ``TrajectoryOracle(checkpoints=steps)``: reverse mode storing every step;
* ``bptt (recursive checkpoints)``: diffrax's default, about √(2·steps)
  checkpoints and a recomputed forward solve.

Memory is each compiled program's temporary buffers from XLA's
``memory_analysis()``: GLE's is flat in the horizon, BPTT's grows linearly
with every step kept and as √steps with recursive checkpointing.

    python benchmarks/bench_gle_layered.py [--horizons 100 200 400 800 1600] [--repeats 5]
"""

import argparse
import platform

import jax
import jax.numpy as jnp
import numpy as np
from timing import median_ms

from flowsim.gle import GLENetwork, Stream, init_params, simulate
from flowsim.trajectory import TrajectoryOracle, trajectory_gradient

WIDTHS, BATCH, DT = (8, 128, 128, 10), 32, 0.2


def setup(steps):
    key = jax.random.PRNGKey(0)
    spread = jnp.linspace(0.2, 1.2, WIDTHS[1], dtype=jnp.float32)
    network = GLENetwork(tau_m=(1.2, 1.2, 1.2), tau_r=(spread, spread, 1.2), output="ce",
                         activation="tanh")
    params = init_params(key, WIDTHS, dtype=jnp.float32)
    ts = DT * np.arange(steps + 1)
    xs = jax.random.normal(jax.random.fold_in(key, 1), (steps + 1, BATCH, WIDTHS[0]),
                           jnp.float32)
    labels = jax.random.randint(jax.random.fold_in(key, 2), (BATCH,), 0, WIDTHS[-1])
    ys = jnp.broadcast_to(jax.nn.one_hot(labels, WIDTHS[-1], dtype=jnp.float32),
                          (steps + 1, BATCH, WIDTHS[-1]))
    state0 = network.init_state(WIDTHS[1:], (BATCH,), jnp.float32)
    return network, params, Stream(ts, xs, ys), state0


def programs(network, state0, steps):
    t1 = steps * DT

    def gle(params, drive):
        return simulate(network, params, drive, 0.0, t1, DT, state0=state0).updates

    def bptt(checkpoints):
        def run(params, drive):
            oracle = TrajectoryOracle(DT, checkpoints=checkpoints)
            return trajectory_gradient(oracle, network.field, network.loss_rate, state0, params,
                                       drive, 0.0, t1)[0]
        return run

    def floor(params, drive):
        return raw_gle(network, params, drive.inputs.ys, drive.targets.ys, state0, steps)

    return {"gle": gle, "gle raw-JAX floor": floor, "bptt (every step kept)": bptt(steps),
            "bptt (recursive checkpoints)": bptt(None)}


def raw_gle(network, params, xs, ys, state0, steps):
    """GLE's Euler steps by hand (γ = 0, instantaneous coupling, CE readout)."""
    tau_m, tau_r, layers = network.tau_m, network.tau_r, len(params)

    def step(carry, n):
        u, v, acc = carry
        rate, pre, breve, slopes = xs[n], [], [], []
        for l, p in enumerate(params):
            pre.append(rate)
            lookahead = u[l] + tau_r[l] * ((rate @ p["W"].T + p["b"] - u[l]) / tau_m[l])
            breve.append(lookahead)
            rate = jnp.tanh(lookahead) if l < layers - 1 else lookahead
            slopes.append(1 - rate**2 if l < layers - 1 else jnp.ones_like(rate))
        errors = [None] * layers
        new_u, new_v = list(u), list(v)
        for l in reversed(range(layers)):
            eps = (ys[n] - jax.nn.softmax(rate)) if l == layers - 1 else (
                slopes[l] * (errors[l + 1] @ params[l + 1]["W"]))
            errors[l] = v[l] + tau_m[l] * (eps - v[l]) / tau_r[l]
            new_v[l] = v[l] + DT * (eps - v[l]) / tau_r[l]
            current = pre[l] @ params[l]["W"].T + params[l]["b"]
            new_u[l] = u[l] + DT * (current - u[l]) / tau_m[l]
        acc = [{"W": a["W"] + DT * e.T @ r / BATCH, "b": a["b"] + DT * e.mean(0)}
               for a, e, r in zip(acc, errors, pre)]
        return (new_u, new_v, acc), None

    zeros = [jax.tree.map(jnp.zeros_like, p) for p in params]
    carry = (list(state0["u"]), list(state0["v"]), zeros)
    return jax.lax.scan(step, carry, jnp.arange(steps))[0][2]


def measure(fn, args, repeats):
    compiled = jax.jit(fn).lower(*args).compile()
    memory = compiled.memory_analysis()
    temp = getattr(memory, "temp_size_in_bytes", float("nan")) if memory else float("nan")
    return median_ms(compiled, args, repeats) / 1e3, temp


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizons", type=int, nargs="+", default=[100, 200, 400, 800, 1600])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, {platform.processor() or ''}, "
          f"batch {BATCH}, widths {WIDTHS}, float32")
    print("| Euler steps | program | ms per solve | micro-steps/s | temp memory (MB) |")
    print("|---|---|---|---|---|")
    for steps in args.horizons:
        network, params, drive, state0 = setup(steps)
        for name, fn in programs(network, state0, steps).items():
            seconds, temp = measure(fn, (params, drive), args.repeats)
            print(f"| {steps} | {name} | {1e3 * seconds:.1f} | {steps / seconds:,.0f} | "
                  f"{temp / 2**20:.2f} |", flush=True)


if __name__ == "__main__":
    main()
