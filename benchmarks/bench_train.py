"""Training steps per second per estimator at the ep-train default size.

    FLOWSIM_DATA=../shared/data python benchmarks/bench_train.py [--steps 5] [--set key=value ...]

One step = the estimator's gradient on a batch + the optax update (what
flowsim.train.fit does between evaluations). Timed after compilation with
block_until_ready; the first call's time (compile + run) is reported apart.
Exact forward mode at the default size would carry dim θ ≈ 92k tangents,
so ``forward`` is timed with ``forward.directions`` random tangents (16 by
default here; set it with --set forward.directions=K).
"""

import argparse
import copy
import json
import platform
import time
import tomllib
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

from analysis import char_training as ct  # noqa: E402
from flowsim.run.config import apply_overrides, parse_overrides  # noqa: E402


def bench(setup, name, steps):
    trainer = setup.trainer(name)
    params = setup.init_params()
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
    return {"estimator": name, "first_call_s": round(first, 2), "s_per_step": round(per_step, 4),
            "steps_per_s": round(1 / per_step, 3), "finite": bool(info["finite"])}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--set", dest="assignments", action="append", default=[])
    parser.add_argument("--estimators", nargs="*", default=list(ct.ESTIMATORS))
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    with (root / "scenarios" / "ep-train.toml").open("rb") as f:
        config = tomllib.load(f)["config"]
    config = copy.deepcopy(config)
    config["forward"]["directions"] = 16
    config = apply_overrides(config, parse_overrides(args.assignments, config), source="--set")
    setup = ct.CharSetup(config)
    m, t = config["model"], config["train"]
    print(f"# device {jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}), "
          f"dtype {config['dtype']}, batch {t['batch']}, context {m['context']}, state {m['state']}, "
          f"hidden {m['hidden']}, T1 {m['t1']}, dt {m['dt']}")
    for name in args.estimators:
        print(json.dumps(bench(setup, name, args.steps)), flush=True)


if __name__ == "__main__":
    main()
