r"""The numbers a training run records: deployed CE, residual, ρ and gradient cosines.

On a fixed evaluation batch (x, y), with z_T the deployed relaxation (T1
Euler steps of ε from z_0):

* ``ce``: L(z_T) (the deployed loss, not the equilibrium loss);
* ``residual``: the batch mean of the per-sample ‖F(z_T)_i‖₂;
* ``rho``: max over the first k samples of ρ(I + ε F_z(z_T)_i), from the dense
  per-sample Jacobian (``jacfwd``) and its eigenvalues;
* ``ce_star``: L(z*) at the equilibrium F(z*) = 0 found by the oracle's
  equilibrium solver from z_0, per sample (NaN when any sample's solve
  fails; the count of failures is logged): the objective that equilibrium
  estimators (EP, RBP, Implicit) descend, beside the deployed L(z_T) that
  the run is judged on.

On the batch of the current step, at the current parameters:

* ``cos_oracle`` = cos(ĝ, g*): the step's gradient against the oracle (``Implicit``);
* ``cos_oracle_bptt`` = cos(g_BPTT, g*): how far the deployed objective
  L(z_T) and the equilibrium objective L(z*) point apart.

The oracle and the BPTT reference run in float64 when x64 is enabled.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import estimators as est
from .._diagnostics import cosine
from .._equilibrium import equilibrium
from .._results import RESULTS
from .._relax import relax
from .task import Trainer, batch, cast


def _sample(tree, i):
    return jax.tree.map(lambda u: u[i : i + 1], tree)


@eqx.filter_jit
def deployed_state(task, params, x, y):
    """(L(z_T), mean_i ‖F(z_T)_i‖, z_T) of the deployed relaxation."""
    z_t = relax(task.field, task.initial_state(params, x), params, x, steps=task.steps, dt=task.dt)
    f = task.field(z_t, params, x)
    sq = sum(jnp.sum(jnp.abs(u.reshape(u.shape[0], -1)) ** 2, axis=1) for u in jax.tree.leaves(f))
    return task.loss(z_t, params, y), jnp.mean(jnp.sqrt(sq)), z_t


@eqx.filter_jit
def equilibrium_loss(task, solver, params, x, y):
    """(L(z*), number of samples whose equilibrium solve failed).

    Each sample's equilibrium is solved on its own (``vmap``), so the
    tolerances are per sample and one slow sample does not fail the batch.
    """
    z0 = task.initial_state(params, x)

    def one(z0_i, x_i):
        z, info = equilibrium(task.field, _expand(z0_i), params, _expand(x_i), solver)
        return jax.tree.map(lambda u: u[0], z), info["result"] != RESULTS.successful

    z_star, failed = jax.vmap(one)(z0, x)
    return task.loss(z_star, params, y), jnp.sum(failed)


def _expand(tree):
    return jax.tree.map(lambda u: u[None], tree)


@eqx.filter_jit
def map_jacobians(task, k: int, params, z, x):
    """I + ε F_z(z)_i for the first k samples: shape (k, m, m)."""
    _, unravel = ravel_pytree(_sample(z, 0))

    def one(i):
        xi = _sample(x, i)
        flat = ravel_pytree(_sample(z, i))[0]
        f = lambda u: ravel_pytree(task.field(unravel(u), params, xi))[0]
        return jnp.eye(flat.size, dtype=flat.dtype) + task.dt * jax.jacfwd(f)(flat)

    return jnp.stack([one(i) for i in range(k)])


def spectral_radius(task, params, z, x, k: int) -> float:
    """max over the first k samples of ρ(I + ε F_z(z)_i); NaN if the Jacobian is not finite."""
    k = min(k, jax.tree.leaves(z)[0].shape[0])
    jac = np.asarray(map_jacobians(task, k, params, z, x))
    if not np.all(np.isfinite(jac)):
        return float("nan")
    return float(np.max(np.abs(np.linalg.eigvals(jac))))


@eqx.filter_jit
def reference_gradients(task, oracle, reference, data_key, params, step):
    """(oracle gradient, BPTT gradient, oracle result) on the batch of ``step``."""
    x, y = batch(task, data_key, step)
    if jax.config.jax_enable_x64:
        params = cast(params, jnp.float64)
    z0 = task.initial_state(params, x)
    g_star, info = oracle.estimate(task.field, task.loss, params, z0, x, y)
    g_bptt, _ = reference.estimate(task.field, task.loss, params, z0, x, y)
    return g_star, g_bptt, info["result"]


class Diagnostics:
    """Evaluation of a :class:`Trainer`'s task at given parameters."""

    def __init__(self, trainer: Trainer, oracle: est.AbstractEstimator | None,
                 rho_samples: int = 8):
        self.trainer, self.task = trainer, trainer.task
        self.oracle = oracle
        self.reference = est.BPTT(self.task.steps, self.task.dt)
        self.rho_samples = rho_samples

    def deployed(self, params, x, y) -> dict:
        """``ce``, ``residual`` and ``rho`` of the deployed relaxation on (x, y)."""
        ce, res, z_t = deployed_state(self.task, params, x, y)
        rho = spectral_radius(self.task, params, z_t, x, self.rho_samples)
        return {"ce": float(ce), "residual": float(res), "rho": rho}

    def equilibrium_ce(self, params, x, y) -> tuple[float, int]:
        """(L(z*) on (x, y), failed samples) with the oracle's equilibrium solver.

        L(z*) is NaN without an oracle or when any sample's solve failed.
        """
        solver = getattr(self.oracle, "equilibrium", None)
        if solver is None:
            return float("nan"), 0
        ce, failed = equilibrium_loss(self.task, solver, params, x, y)
        return (float(ce) if int(failed) == 0 else float("nan")), int(failed)

    def cosines(self, params, grads, step) -> dict:
        """cos(ĝ, oracle) and cos(BPTT, oracle) on the batch of ``step``."""
        if self.oracle is None:
            return {"cos_oracle": float("nan"), "cos_oracle_bptt": float("nan")}
        g_star, g_bptt, _ = reference_gradients(self.task, self.oracle, self.reference,
                                                self.trainer.data_key, params,
                                                jnp.asarray(step, jnp.int32))
        grads = cast(grads, jax.tree.leaves(g_star)[0].dtype)
        return {"cos_oracle": float(cosine(grads, g_star)),
                "cos_oracle_bptt": float(cosine(g_bptt, g_star))}


__all__ = ["Diagnostics", "deployed_state", "map_jacobians", "spectral_radius",
           "reference_gradients", "equilibrium_loss"]
