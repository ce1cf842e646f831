r"""Pure FEP as a task of the one training loop.

Two problems of the same free energy (unbatched: a batch of B sequences is one
system, as in the seeds), x = (tokens, targets), y = targets:

    fep_problem          training: the Q-flow of the clamped F (targets in F),
                         energy F (the P-flow rule, flowsim.EnergyGradient,
                         follows −∂F/∂θ at its q*), loss λ_obs · CE at every
                         position (the seeds' "train CE at q*")
    prediction_problem   inference: the Q-flow of F without the [obs] term,
                         loss λ_obs · CE of the last position's next token,
                         the honest prediction (see PredictionLoss), or of
                         every position's when none sees its target

Both start at the input tokens' priors, q(0) = ρ_x. With ``per_window=True``
each window is its own system (a batched problem: the engine vmaps the
solve, each window has its own tolerance and result code, and a window whose
q* did not converge drops out of the estimate, counted, instead of failing
the whole batch); F, summed over windows, is the same function. The task's
``oracle_problem`` is the one whose exact gradient (flowsim.Implicit) the
loop's cosines hold a rule against; ``problem`` is the one the rule learns on.

A row evaluates θ on a fixed batch ("train"): the free energy and its terms
at the clamped q* (``train_ce``, the CE at every position), the per-term
gradient norms at z0 (seed 001's "Test 3"), the solve's products, residual
(Fisher metric) and ``qflow_converged``; at the inference equilibrium the
prediction ``pred_ce``/``pred_acc`` (last position), ``pred_converged`` and
how much of the inputs survives there (``pred_input_acc``/``_ce``: each
position's own token read back through the input bank). With a validation
batch ("val") the same at inference (``val_ce``, ``val_acc``,
``val_converged``, ``val_input_acc``, ``val_input_ce``) and ``val_clamped_ce``
at the clamped q*. Every number at a q* that did not converge is NaN, with
its flag beside it.
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
from .diagnostics import (
    free_energy_metrics,
    input_recovery,
    prediction_metrics,
    term_gradient_norms,
)
from .free_energy import FreeEnergy, init_beliefs
from .qflow import FreeEnergyOfInputs, PredictionLoss, QFlowField, fisher_norm


def initial_beliefs(priors, x):
    """q(0) at the input tokens' priors, for x = (tokens, targets)."""
    return init_beliefs(priors, x[0])


class OneWindow(eqx.Module):
    """``fn`` (written for a batch of windows) called on ONE window: a leading axis of one is
    added to the state and the data, and taken off the result."""

    fn: eqx.Module

    def __call__(self, z, params, data):
        add = lambda a: a[None]
        out = self.fn(jax.tree.map(add, z), params, jax.tree.map(add, data))
        return jax.tree.map(lambda a: a[0], out) if isinstance(out, tuple) else out


def _problem(field, loss, energy, per_window):
    wrap = OneWindow if per_window else (lambda fn: fn)
    return Problem(wrap(field), ParametrisedLoss(wrap(loss)), energy=wrap(energy),
                   initial_state=initial_beliefs, norm=fisher_norm, batched=per_window,
                   reduction="sum")


def fep_problem(fe: FreeEnergy, per_window: bool = False) -> Problem:
    """Training: the clamped F (see the module docstring)."""
    return _problem(QFlowField(fe), PredictionLoss(fe), FreeEnergyOfInputs(fe), per_window)


def prediction_problem(fe: FreeEnergy, per_window: bool = False,
                       positions: str = "last") -> Problem:
    """Inference: F without the [obs] term, scored on the last position's next token, or
    (``positions="all"``) on every position's: an honest prediction only when no belief
    sees its target at inference (no alignment: ``fe.lambda_beta == 0``)."""
    return _problem(QFlowField(fe, observed=False), PredictionLoss(fe, positions=positions),
                    FreeEnergyOfInputs(fe, observed=False), per_window)


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
    """Pure FEP with its data and evaluation batches (see the module docstring).

    ``problem`` is what the rule learns on (:func:`fep_problem` for the P-flow,
    :func:`prediction_problem` to train on the oracle of the prediction);
    ``objective`` is the oracle's problem (default: ``problem``).
    """

    problem: Problem
    data: eqx.Module
    train_batch: tuple
    val_batch: tuple | None
    fast: AbstractFastSolver
    objective: Problem | None = None

    @property
    def oracle_problem(self):
        return self.problem if self.objective is None else self.objective

    @property
    def free_energy(self) -> FreeEnergy:
        field = self.problem.field
        return field.fn.fe if isinstance(field, OneWindow) else field.fe

    @property
    def per_window(self) -> bool:
        return self.problem.batched

    def sample(self, key):
        return self.data.sample(key)

    def evaluate(self, params) -> dict:
        return {k: v.item() for k, v in _metrics(self, params).items()}


def _converged(info):
    return info["result"] == RESULTS.successful


def _where(ok, metrics):
    return {k: jnp.where(ok, v, jnp.nan) for k, v in metrics.items()}


def _over_converged(metrics_of, ok, z, *data):
    """Window-wise metrics averaged over the windows whose solve converged (NaN if none)."""
    per = jax.vmap(lambda z, *d: metrics_of(jax.tree.map(lambda a: a[None], z),
                                            *(a[None] for a in d)))(z, *data)
    w = ok.astype(jnp.result_type(float))
    return {k: jnp.where(jnp.any(ok), jnp.sum(w * v) / jnp.maximum(jnp.sum(w), 1.0), jnp.nan)
            for k, v in per.items()}


def prediction(task: FEPTask, params, tokens, targets, prefix):
    """At the inference equilibrium (targets unseen): the last position's next-token CE and
    accuracy and the inputs' recovery, over the windows whose solve converged
    (``{prefix}_failed`` counts the others; one system: NaN unless it converged)."""
    fe = task.free_energy
    x = (tokens, targets)
    problem = prediction_problem(fe, task.per_window)
    z, info = solve(task.fast, problem, init_beliefs(params, tokens), params, x)
    ok = _converged(info)

    def metrics_of(z, tokens, targets):
        last = jax.tree.map(lambda a: a[..., -1:, :], z)
        return {**prediction_metrics(fe, last, params, targets[..., -1:], prefix),
                **input_recovery(fe, z, params, tokens, prefix)}

    if task.per_window:
        metrics = _over_converged(metrics_of, ok, z, tokens, targets)
    else:
        metrics = _where(ok, metrics_of(z, tokens, targets))
    return {**metrics, f"{prefix}_converged": jnp.all(ok),
            f"{prefix}_failed": jnp.sum(~ok).astype(jnp.int32)}


def clamped(task: FEPTask, params, tokens, targets, prefix):
    """(CE/accuracy at the clamped q*, q*, the fast solve's info with one ``result``)."""
    fe = task.free_energy
    x = (tokens, targets)
    z, info = solve(task.fast, fep_problem(fe, task.per_window), init_beliefs(params, tokens),
                    params, x)
    ok = _converged(info)
    if task.per_window:
        metrics = _over_converged(lambda z, t: prediction_metrics(fe, z, params, t, prefix),
                                  ok, z, targets)
        info = {"result": RESULTS.where(jnp.all(ok), RESULTS.successful,
                                        RESULTS.equilibrium_failed),
                "matvecs": jnp.sum(info["matvecs"]), "residual": jnp.max(info["residual"])}
    else:
        metrics = prediction_metrics(fe, z, params, targets, prefix)
    return metrics, z, info


@eqx.filter_jit
def _metrics(task: FEPTask, params):
    fe = task.free_energy
    (tokens, targets), _ = task.train_batch
    metrics, z_star, info = clamped(task, params, tokens, targets, "train")
    out = {**free_energy_metrics(fe, z_star, params, tokens, targets), **metrics,
           **term_gradient_norms(fe, init_beliefs(params, tokens), params, tokens, targets),
           "qflow_matvecs": info["matvecs"], "qflow_residual": info["residual"],
           "qflow_converged": _converged(info),
           **prediction(task, params, tokens, targets, "pred")}
    if task.val_batch is not None:
        (tokens, targets), _ = task.val_batch
        out.update(prediction(task, params, tokens, targets, "val"))
        metrics, _, info = clamped(task, params, tokens, targets, "c")
        converged = _converged(info)
        # a CE at a q* that did not converge is no CE at q*: NaN, with the flag beside it
        # (per window: over the windows that converged)
        out["val_clamped_ce"] = jnp.where(converged | task.per_window, metrics["c_ce"], jnp.nan)
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


__all__ = ["fep_problem", "prediction_problem", "FixedBatch", "TextWindows", "FEPTask",
           "prediction", "clamped", "qflow_solver"]
