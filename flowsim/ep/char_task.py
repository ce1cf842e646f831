r"""The character task: the equilibrium character model on a text, for the training loop.

The problem is the model of :mod:`flowsim.ep.char_model` (field core(z, θ, u)
with the input's encoding u(θ, x) split off, cross-entropy readout,
z_0 = 0); a training batch is ``batch`` random windows of ``context``
characters of the training ids and the character after each.

A row describes θ on fixed evaluation batches (train, validation), with z_T
the deployed relaxation (T1 Euler steps of ε from z_0):

* ``train_ce``, ``val_ce``: L(z_T), the deployed loss the run is judged on;
* ``val_ce_star``: L(z*) at the equilibrium F(z*) = 0, solved per sample
  with the task's equilibrium solver (NaN when any sample's solve fails:
  the count is in ``val_failed``): the objective that equilibrium rules
  (EP, RBP, Implicit) descend;
* ``residual``: the validation batch's mean per-sample ‖F(z_T)_i‖₂;
* ``rho``: the largest ρ(I + ε F_z(z_T)_i) over the first ``rho_samples``
  validation samples, from the dense per-sample Jacobian.
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..data import shakespeare
from ..problem import ParametrisedLoss, Problem
from ..solvers import EquilibriumSolver, Relaxation, solve, summarise
from ..train import AbstractTask
from . import char_model as cm


def char_problem(batched: bool = False) -> Problem:
    """The character model as a :class:`flowsim.Problem` (the encoding split off)."""
    return Problem(cm.core_field, ParametrisedLoss(cm.cross_entropy),
                   initial_state=cm.initial_state, encode=cm.encode, batched=batched)


class CharTask(AbstractTask):
    """Windows of a text, the character model, the deployed relaxation (see module docstring)."""

    problem: Problem
    train_ids: jax.Array
    eval_batches: tuple
    deployed: Relaxation
    equilibrium: EquilibriumSolver
    batch: int = eqx.field(static=True)
    context: int = eqx.field(static=True)
    rho_samples: int = eqx.field(static=True)

    def sample(self, key):
        return shakespeare.sample_batch(self.train_ids, key, self.batch, self.context)

    def evaluate(self, params) -> dict:
        (xt, yt), (xv, yv) = self.eval_batches
        train_ce, _, _ = deployed_state(self, params, xt, yt)
        val_ce, residual, z_t = deployed_state(self, params, xv, yv)
        ce_star, failed = equilibrium_loss(self, params, xv, yv)
        return {"train_ce": float(train_ce), "val_ce": float(val_ce),
                "val_ce_star": float(ce_star) if int(failed) == 0 else float("nan"),
                "val_failed": int(failed), "residual": float(residual),
                "rho": spectral_radius(self, params, z_t, xv, self.rho_samples)}


def make_task(splits, *, batch, context, t1, dt, eval_batch, seed, equilibrium,
              rho_samples=8) -> CharTask:
    """A :class:`CharTask` on ``splits``; the evaluation batches are drawn from ``seed``."""
    train_ids = jnp.asarray(splits.train)
    eval_key = jax.random.fold_in(jax.random.PRNGKey(seed), 7919)
    k_tr, k_va = jax.random.split(eval_key)
    eval_batches = (shakespeare.sample_batch(train_ids, k_tr, eval_batch, context),
                    shakespeare.sample_batch(splits.val, k_va, eval_batch, context))
    return CharTask(char_problem(), train_ids, eval_batches, Relaxation(t1, dt), equilibrium,
                    batch, context, rho_samples)


@eqx.filter_jit
def deployed_state(task, params, x, y):
    """(L(z_T), mean_i ‖F(z_T)_i‖, z_T) of the deployed relaxation."""
    problem = task.problem
    u = problem.inputs(params, x)
    z_t = task.deployed.final_state(problem.batch_field, task.initial_state(params, x), params, u)
    f = problem.batch_field(z_t, params, u)
    norms = jnp.sqrt(sum(jnp.sum(jnp.abs(v.reshape(v.shape[0], -1)) ** 2, axis=1)
                         for v in jax.tree.leaves(f)))
    return problem.objective(z_t, params, y), jnp.mean(norms), z_t


@eqx.filter_jit
def equilibrium_loss(task, params, x, y):
    """(L(z*), number of samples whose equilibrium solve failed), solved per sample."""
    per_sample = dataclasses.replace(task.problem, batched=True, encode=None)
    u = task.problem.inputs(params, x)
    z_star, info = solve(task.equilibrium, per_sample, task.initial_state(params, x), params, u)
    return task.problem.objective(z_star, params, y), summarise(info, True)["failed_samples"]


@eqx.filter_jit
def map_jacobians(task, k: int, params, z, x):
    """I + ε F_z(z)_i for the first k samples: shape (k, n, n)."""
    u = task.problem.inputs(params, x)
    dt = task.deployed.dt

    def one(z_i, u_i):
        flat, unravel = ravel_pytree(z_i)
        f = lambda v: ravel_pytree(task.problem.field(unravel(v), params, u_i))[0]
        return jnp.eye(flat.size, dtype=flat.dtype) + dt * jax.jacfwd(f)(flat)

    first = lambda tree: jax.tree.map(lambda v: v[:k], tree)
    return jax.vmap(one)(first(z), first(u))


def spectral_radius(task, params, z, x, k: int) -> float:
    """max over the first k samples of ρ(I + ε F_z(z)_i); NaN if a Jacobian is not finite."""
    k = min(k, jax.tree.leaves(z)[0].shape[0])
    jac = np.asarray(map_jacobians(task, k, params, z, x))
    if not np.all(np.isfinite(jac)):
        return float("nan")
    return float(np.max(np.abs(np.linalg.eigvals(jac))))


__all__ = ["CharTask", "char_problem", "make_task", "deployed_state", "equilibrium_loss",
           "map_jacobians", "spectral_radius"]
