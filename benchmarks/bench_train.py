"""Training steps per second per learning rule at the ep-train default size.

    FLOWSIM_DATA=../shared/data python benchmarks/bench_train.py [--steps 5] [--state 128] ...

One step = the rule's gradient on a batch + the optax update (what
flowsim.train.fit does between evaluations), built from the engine alone
(flowsim.ep's character task, the rules, optax). Timed after compilation with
block_until_ready; the first call's time (compile + run) is reported apart.
Exact forward mode at the default size would carry dim θ ≈ 92k tangents, so
``forward`` is timed with ``--directions`` random tangents (16 by default).
"""

import argparse
import json
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import flowsim  # noqa: E402
from flowsim import train  # noqa: E402
from flowsim.data import shakespeare  # noqa: E402
from flowsim.ep import char_model as cm  # noqa: E402
from flowsim.ep import make_task  # noqa: E402


def rules(args):
    solver = flowsim.EquilibriumSolver(relax_steps=max(args.t1, 150), dt=args.dt)
    t1, dt = args.t1, args.dt
    return {
        "bptt": flowsim.BPTT(t1, dt),
        "forward": flowsim.Forward(t1, dt, args.directions),
        "implicit": flowsim.Implicit(equilibrium=solver),
        "rbp": flowsim.RBP(150, dt, equilibrium=solver),
        "ep": flowsim.EP(0.1, 150, dt, True, equilibrium=solver),
        "hep": flowsim.HolomorphicEP(0.5, 4, 150, dt, equilibrium=solver),
    }


def bench(task, params, rule, optimizer, steps):
    trainer = train.Trainer(task, rule, optimizer, seed=0)
    opt_state = trainer.init_opt_state(params)
    t0 = time.perf_counter()
    grads, info = trainer.gradient(params, 0)
    params, opt_state = trainer.update(params, opt_state, grads)
    jax.block_until_ready(params)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in range(1, steps + 1):
        grads, info = trainer.gradient(params, k)
        params, opt_state = trainer.update(params, opt_state, grads)
    jax.block_until_ready(params)
    per_step = (time.perf_counter() - t0) / steps
    return {"first_call_s": round(first, 2), "s_per_step": round(per_step, 4),
            "steps_per_s": round(1 / per_step, 3),
            "result": flowsim.result_name(info["result"])}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--state", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--context", type=int, default=32)
    parser.add_argument("--t1", type=int, default=150)
    parser.add_argument("--dt", type=float, default=0.1)
    parser.add_argument("--directions", type=int, default=16)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--rules", nargs="*", default=None)
    args = parser.parse_args()
    splits = shakespeare.load_splits()
    dtype = jnp.float64 if args.dtype == "float64" else jnp.float32
    model = cm.ModelConfig(vocab=len(splits.vocab), context=args.context, state=args.state,
                           hidden=args.hidden)
    params = cm.init(model, train.init_key(0), dtype)
    solver = flowsim.EquilibriumSolver(relax_steps=max(args.t1, 150), dt=args.dt)
    task = make_task(splits, batch=args.batch, context=args.context, t1=args.t1, dt=args.dt,
                     eval_batch=8, seed=0, equilibrium=solver)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-3))
    print(f"# device {jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}), "
          f"dtype {args.dtype}, batch {args.batch}, context {args.context}, state {args.state}, "
          f"hidden {args.hidden}, T1 {args.t1}, dt {args.dt}")
    chosen = rules(args)
    for name in args.rules or list(chosen):
        print(json.dumps({"rule": name, **bench(task, params, chosen[name], optimizer,
                                                args.steps)}), flush=True)


if __name__ == "__main__":
    main()
