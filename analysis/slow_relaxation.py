"""Why did a training run's equilibrium solve fail at step S? Replay it and watch the relaxation.

    python -m flowsim.studies.slow_relaxation RUN_DIR SUBDIR CHECKPOINT STEP

replays the estimator ``SUBDIR`` of an ep-* run (``RUN_DIR/checkpoints/SUBDIR``)
from its checkpoint ``CHECKPOINT`` to training step ``STEP`` (every run is a
function of (seed, step), so this is the run's own trajectory), repeats that
step's equilibrium solve, and relaxes the step's batch for 150, 1,000, 5,000
and 20,000 Euler steps. For each horizon it prints the largest per-sample
residual ‖F(z_T)_i‖, the sample it belongs to, and the top eigenvalue of F_z
there with ρ(I + dt F_z): a residual that decays slowly beside an eigenvalue
near 0 is critical slowing down (the path passes a nearly marginal point),
as opposed to an unstable equilibrium (ρ ≥ 1 where the residual is ~0).
"""

import sys

import jax
import numpy as np

import flowsim
from flowsim import train
from flowsim.ep import char_model as cm
from flowsim.run.runs import read_config

from . import char_training as ct

HORIZONS = (150, 1_000, 5_000, 20_000)


def replay(run_dir, subdir, checkpoint, step):
    """(config, params at ``step``, the trainer) of the run's ``subdir`` estimator."""
    config = read_config(run_dir)
    setup = ct.CharSetup(config)
    trainer = setup.trainer(subdir)
    params = setup.init_params()
    (params, opt_state), _ = train.checkpoint.load(
        f"{run_dir}/{ct.CHECKPOINTS}/{subdir}", checkpoint, (params, trainer.init_opt_state(params)))
    for k in range(checkpoint, step):
        grads, info = trainer.gradient(params, k)
        if not bool(info["result"] == flowsim.RESULTS.successful):
            raise SystemExit(f"the replay failed earlier, at step {k}")
        params, opt_state = trainer.update(params, opt_state, grads)
    return config, params, trainer


def local_spectrum(params, z, x, dt):
    """(top real part of eig F_z, ρ(I + dt F_z)) for one sample."""
    jac = jax.jacfwd(lambda v: cm.field(v[None], params, x[None])[0])(z)
    eig = np.linalg.eigvals(np.asarray(jac))
    return float(np.max(eig.real)), float(np.max(np.abs(1 + dt * eig)))


def main(argv):
    if len(argv) != 4:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    run_dir, subdir = argv[0], argv[1]
    try:
        checkpoint, step = int(argv[2]), int(argv[3])
        if not 0 <= checkpoint <= step:
            raise ValueError
    except ValueError:
        print(f"CHECKPOINT and STEP must be ints with 0 <= CHECKPOINT <= STEP, got {argv[2:]}",
              file=sys.stderr)
        return 2
    jax.config.update("jax_enable_x64", True)
    try:
        config, params, trainer = replay(run_dir, subdir, checkpoint, step)
    except (OSError, KeyError, ValueError, train.CheckpointError) as error:
        print(f"cannot replay {run_dir}/{ct.CHECKPOINTS}/{subdir} from {checkpoint}: {error}",
              file=sys.stderr)
        return 2
    x, _ = trainer.batch(step)
    z0 = cm.initial_state(params, x)
    dt = config.model.dt
    _, info = flowsim.equilibrium(cm.field, z0, params, x, ct.equilibrium_solver(config))
    print(f"step {step}: equilibrium {flowsim.result_name(info['result'])}, residual "
          f"{float(info['residual']):.3g}, Newton iterations {int(info['newton_steps'])}, "
          f"retries {int(info['retries'])}")
    print("T  max_i ||F(z_T)_i||  sample  top_eig(F_z)  rho(I+dt F_z)")
    for horizon in HORIZONS:
        z = flowsim.relax(cm.field, z0, params, x, steps=horizon, dt=dt)
        per = np.linalg.norm(np.asarray(cm.field(z, params, x)), axis=1)
        i = int(per.argmax())
        top, rho = local_spectrum(params, z[i], x[i], dt)
        print(f"{horizon}  {per[i]:.3e}  {i}  {top:.4f}  {rho:.4f}")
    rhos = [local_spectrum(params, z[i], x[i], dt)[1] for i in range(x.shape[0])]
    print(f"rho at z_{HORIZONS[-1]} over the batch: max {max(rhos):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
