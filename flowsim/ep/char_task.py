r"""The character task: the equilibrium character model on a text, for the training loop.

The problem is the model of :mod:`flowsim.ep.char_model` (field core(z, θ, u)
with the input's encoding u(θ, x) split off, cross-entropy readout,
z_0 = 0), batched: each sample's equilibrium is solved on its own, and the
batch objective is the mean over samples. A training batch is ``batch``
random windows of ``context`` characters of the training ids and the
character after each.

A row describes θ on fixed evaluation batches (train, validation), with z_T
the deployed relaxation (T1 Euler steps of ε from z_0):

* ``train_ce``, ``val_ce``: L(z_T), the deployed loss the run is judged on;
* ``val_ce_star``: L(z*) at the equilibrium F(z*) = 0, solved per sample
  with the task's equilibrium solver (NaN when any sample's solve fails:
  the count is in ``val_failed``): the objective that equilibrium rules
  (EP, RBP, Implicit) descend;
* ``residual_max``, ``residual_median``, ``residual_argmax``: the per-sample
  ‖F(z_T)_i‖₂ over the whole validation batch (the sample with the largest);
* ``rho_max``, ``rho_median``, ``rho_argmax``: ρ(I + ε F_z(z_T)_i) over the
  whole validation batch (:func:`flowsim.spectral_radius`, Arnoldi with
  ``krylov_dim`` steps per sample), and ``rho_bound``, the Ritz residual
  bound of the largest.

The known failure of the EP wall is a single slow sample: these columns see it.
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..data import shakespeare
from ..diagnostics import spectral_radius as flowsim_spectral_radius
from ..problem import ParametrisedLoss, Problem
from ..solvers import EquilibriumSolver, Relaxation, solve, summarise
from ..train import AbstractTask
from . import char_model as cm


def char_problem() -> Problem:
    """The character model as a batched :class:`flowsim.Problem` (the encoding split off)."""
    return Problem(cm.core_field, ParametrisedLoss(cm.cross_entropy),
                   initial_state=cm.initial_state, encode=cm.encode, batched=True)


class CharTask(AbstractTask):
    """Windows of a text, the character model, the deployed relaxation (see module docstring)."""

    problem: Problem
    train_ids: jax.Array
    eval_batches: tuple
    deployed: Relaxation
    equilibrium: EquilibriumSolver
    batch: int = eqx.field(static=True)
    context: int = eqx.field(static=True)
    krylov_dim: int = eqx.field(static=True, default=20)

    def sample(self, key):
        return shakespeare.sample_batch(self.train_ids, key, self.batch, self.context)

    def evaluate(self, params) -> dict:
        (xt, yt), (xv, yv) = self.eval_batches
        train_ce, _, _ = deployed_state(self, params, xt, yt)
        val_ce, residuals, z_t = deployed_state(self, params, xv, yv)
        ce_star, failed = equilibrium_loss(self, params, xv, yv)
        rho, bound = per_sample_spectral_radius(self, params, z_t, xv)
        return {"train_ce": float(train_ce), "val_ce": float(val_ce),
                "val_ce_star": float(ce_star) if int(failed) == 0 else float("nan"),
                "val_failed": int(failed), **spread("residual", residuals),
                **spread("rho", rho), "rho_bound": float(bound[jnp.argmax(rho)])}


def spread(name, values) -> dict:
    """``name_max``, ``name_median`` and ``name_argmax`` of per-sample values (NaN-aware max)."""
    values = np.asarray(values)
    bad = ~np.isfinite(values)
    worst = int(np.argmax(np.where(bad, np.inf, values)))
    return {f"{name}_max": float(values[worst]) if not bad.any() else float("nan"),
            f"{name}_median": float(np.median(values)), f"{name}_argmax": worst}


def make_task(splits, *, batch, context, t1, dt, eval_batch, seed, equilibrium,
              krylov_dim=20) -> CharTask:
    """A :class:`CharTask` on ``splits``; the evaluation batches are drawn from ``seed``."""
    train_ids = jnp.asarray(splits.train)
    eval_key = jax.random.fold_in(jax.random.PRNGKey(seed), 7919)
    k_tr, k_va = jax.random.split(eval_key)
    eval_batches = (shakespeare.sample_batch(train_ids, k_tr, eval_batch, context),
                    shakespeare.sample_batch(splits.val, k_va, eval_batch, context))
    return CharTask(char_problem(), train_ids, eval_batches, Relaxation(t1, dt), equilibrium,
                    batch, context, krylov_dim)


@eqx.filter_jit
def deployed_state(task, params, x, y):
    """(L(z_T), the per-sample ‖F(z_T)_i‖, z_T) of the deployed relaxation."""
    problem = task.problem
    u = problem.inputs(params, x)
    z_t = task.deployed.final_state(problem.batch_field, task.initial_state(params, x), params, u)
    return problem.objective(z_t, params, y), problem.residuals(z_t, params, u), z_t


@eqx.filter_jit
def equilibrium_loss(task, params, x, y):
    """(L(z*), number of samples whose equilibrium solve failed), solved per sample."""
    u = task.problem.inputs(params, x)
    plain = dataclasses.replace(task.problem, encode=None)
    z_star, info = solve(task.equilibrium, plain, task.initial_state(params, x), params, u)
    return task.problem.objective(z_star, params, y), summarise(info, True)["failed_samples"]


@eqx.filter_jit
def per_sample_spectral_radius(task, params, z, x):
    """(ρ(I + ε F_z(z_i)), its Ritz residual bound) for every sample."""
    u = task.problem.inputs(params, x)

    def one(z_i, u_i):
        return flowsim_spectral_radius(task.problem.field, z_i, params, u_i, task.deployed.dt,
                                       dense_max=0, krylov_dim=task.krylov_dim, with_bound=True)

    return jax.vmap(one)(z, u)


__all__ = ["CharTask", "char_problem", "make_task", "deployed_state", "equilibrium_loss",
           "per_sample_spectral_radius", "spread"]
