r"""Pure FEP as a task of the one training loop.

The problem (unbatched: a batch of B sequences is one system, as in the seeds):

    field    the Q-flow, natural gradient of F with the targets clamped
    energy   F(z, θ; targets)  (the P-flow rule, flowsim.EnergyGradient, follows −∂F/∂θ)
    loss     λ_obs · CE(decode(q), y), the prediction loss the oracle differentiates
    z0       the input tokens' priors, q(0) = π_{x}
    x        (tokens, targets);  y = targets

A row evaluates θ on a fixed batch ("train"): the free energy and its terms
at q* (targets clamped, the seeds' "train CE at q*"; q* by the Q-flow
finished by Newton, :func:`qflow_solver`), the per-term gradient norms at z0
(seed 001's "Test 3"), the solve's products, residual (Fisher metric) and
``qflow_converged``, and the honest prediction ``pred_ce``: the Q-flow of F without the
observation term for ``predict_time`` from z0, decoded. With a validation
batch ("val"), ``val_ce``/``val_acc`` are that prediction there and
``val_clamped_ce`` the CE at the clamped q*.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._results import RESULTS
from ..data import shakespeare
from ..problem import ParametrisedLoss, Problem
from ..solvers import AbstractFastSolver, EquilibriumSolver, SteadyState, solve
from ..solvers.krylov import bicgstab
from ..train import AbstractTask
from .diagnostics import free_energy_metrics, prediction_metrics, term_gradient_norms
from .free_energy import FreeEnergy, init_beliefs
from .qflow import FreeEnergyOfInputs, PredictionLoss, QFlowField, fisher_norm


def initial_beliefs(priors, x):
    """q(0) at the input tokens' priors, for x = (tokens, targets)."""
    return init_beliefs(priors, x[0])


def fep_problem(fe: FreeEnergy) -> Problem:
    """Pure FEP as a :class:`flowsim.Problem` (see the module docstring)."""
    return Problem(QFlowField(fe), ParametrisedLoss(PredictionLoss(fe)),
                   energy=FreeEnergyOfInputs(fe), initial_state=initial_beliefs,
                   norm=fisher_norm)


class FixedBatch(eqx.Module):
    """The same batch at every step (seed 001's minimal test)."""

    x: tuple
    y: jax.Array

    def sample(self, key):
        del key
        return self.x, self.y


class TextWindows(eqx.Module):
    """``batch`` random windows of ``length`` ids of a text; targets the next ids."""

    ids: jax.Array
    batch: int = eqx.field(static=True)
    length: int = eqx.field(static=True)

    def sample(self, key):
        tokens, targets = shakespeare.sample_batch(self.ids, key, self.batch, self.length,
                                                   sequence=True)
        return (tokens, targets), targets


class FEPTask(AbstractTask):
    """Pure FEP with its data and evaluation batches (see the module docstring)."""

    problem: Problem
    data: eqx.Module
    train_batch: tuple
    val_batch: tuple | None
    fast: AbstractFastSolver
    predict_flow: SteadyState

    def sample(self, key):
        return self.data.sample(key)

    def evaluate(self, params) -> dict:
        return {k: v.item() for k, v in _metrics(self, params).items()}


def prediction(task: FEPTask, params, tokens, targets, prefix):
    """CE/accuracy of beliefs relaxed by F without its observation term (targets unseen)."""
    fe = task.problem.field.fe
    blind = fep_problem(fe.without_observations())
    z, _ = solve(task.predict_flow, blind, init_beliefs(params, tokens), params, (tokens, targets))
    return prediction_metrics(fe, z, params, targets, prefix)


def clamped(task: FEPTask, params, tokens, targets, prefix):
    """(CE/accuracy at the clamped q*, q*, the fast solve's info)."""
    fe = task.problem.field.fe
    x = (tokens, targets)
    z, info = solve(task.fast, task.problem, init_beliefs(params, tokens), params, x)
    return prediction_metrics(fe, z, params, targets, prefix), z, info


@eqx.filter_jit
def _metrics(task: FEPTask, params):
    fe = task.problem.field.fe
    (tokens, targets), _ = task.train_batch
    metrics, z_star, info = clamped(task, params, tokens, targets, "train")
    out = {**free_energy_metrics(fe, z_star, params, targets), **metrics,
           **term_gradient_norms(fe, init_beliefs(params, tokens), params, targets),
           "qflow_matvecs": info["matvecs"], "qflow_residual": info["residual"],
           "qflow_converged": info["result"] == RESULTS.successful,
           **prediction(task, params, tokens, targets, "pred")}
    if task.val_batch is not None:
        (tokens, targets), _ = task.val_batch
        out.update(prediction(task, params, tokens, targets, "val"))
        metrics, _, info = clamped(task, params, tokens, targets, "c")
        converged = info["result"] == RESULTS.successful
        # a CE at a q* that did not converge is no CE at q*: NaN, with the flag beside it
        out["val_clamped_ce"] = jnp.where(converged, metrics["c_ce"], jnp.nan)
        out["val_clamped_converged"] = converged
    return out


def qflow_solver(t1, tol, steady_tol, max_steps, *, newton_max_steps=20,
                 krylov_max_steps=100) -> EquilibriumSolver:
    """q*: the Q-flow to ‖dz/dt‖_G < steady_tol or to t1, then Newton to the equilibrium.

    The flow alone slows down near q* (its slow modes), and a P-step at an
    unconverged q(t1) is not the envelope theorem's ∂F/∂θ: Newton–Krylov
    finishes the solve (to ε^{3/4} in the Fisher metric), started from where the
    flow stopped, and a failure is the solve's result code (the loop then skips
    the P-step). No retries: a further Euler relaxation of the stiff Q-flow
    would not help. From a steady Q-flow Newton needs a few iterations and short
    Krylov solves; the budgets (``newton_max_steps`` iterations of at most
    ``krylov_max_steps`` BiCGStab steps) bound
    what a q* that does not converge costs, which matters under ``vmap`` (a
    sweep), where every lane waits for the slowest.
    """
    flow = SteadyState(t_final=t1, rtol=tol, atol=tol, steady_tol=steady_tol, dt0=0.01,
                       max_steps=max_steps, require_steady=False)
    return EquilibriumSolver(relax_steps=0, retries=0, warm_start=flow, stability="flow",
                             newton_max_steps=newton_max_steps,
                             linear_solver=bicgstab(max_steps=krylov_max_steps))


def predict_solver(time, tol, max_steps) -> SteadyState:
    """The prediction's flow: F without observations, integrated for ``time``."""
    return SteadyState(t_final=max(time, 1e-9), rtol=tol, atol=tol, dt0=0.01,
                       max_steps=max_steps, stop_at_steady=False, require_steady=False)


__all__ = ["fep_problem", "FixedBatch", "TextWindows", "FEPTask", "prediction", "clamped",
           "qflow_solver", "predict_solver"]
