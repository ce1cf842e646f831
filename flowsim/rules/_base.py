r"""Learning rules: one base class, one contract, one functional entry point.

A rule estimates dL/dθ, shaped like ``params``, with the oracle's sign and
scale:

    rule.estimate(problem, z0, params, x, y, key) -> (grads, info)

Every rule's ``info`` has the same keys:

    loss            the batch objective at the state the rule reads (z_T or z*)
    residual        the largest per-sample ‖F(z_i)‖ there, in the problem's norm
    matvecs         evaluations of F and products with F_z, F_zᵀ or F_θᵀ (all samples)
    result          a flowsim.RESULTS code for the batch
    failed_samples  how many samples' fast solves failed
    sample_results  each sample's code (the batch's leading axis; a scalar unbatched)

Failed samples (a batched problem whose solve failed on some samples): the
estimate is the gradient of the objective over the converged samples (their
weights renormalised), ``result`` is ``samples_failed`` and
``failed_samples`` counts the others. When every sample failed, or the
problem is unbatched and its solve failed, the gradients are NaN and
``result`` says why: a failed estimate is never a plausible number.

Rules that draw random numbers take ``key``; the others ignore it.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp

from .._results import RESULTS
from .._trees import tree_add, tree_all_finite, tree_nan_like, tree_where
from ..problem import Problem
from ..solvers import Relaxation, solve, summarise


class AbstractRule(eqx.Module):
    """A learning rule (see the module docstring)."""

    @abc.abstractmethod
    def estimate(self, problem: Problem, z0, params, x, y, key):
        """``(grads, info)`` for ``problem`` at ``params`` on the batch (x, y)."""
        raise NotImplementedError


class AbstractHorizonRule(AbstractRule):
    """A rule that relaxes for a number of Euler steps: its horizon, or its phase's length."""

    relaxation: eqx.AbstractVar[Relaxation]

    @property
    def steps(self):
        """The number of Euler steps (an array: sweeping it does not recompile)."""
        return self.relaxation.steps


@eqx.filter_jit
def _gradient(rule, problem, z0, params, x, y, key):
    if problem.encode is None:
        return rule.estimate(problem, z0, params, x, y, key)
    u, encode_vjp = jax.vjp(lambda p: problem.inputs(p, x), params)
    (g_params, g_u), info = rule.estimate(problem.augmented(), z0, (params, u), None, y, key)
    return tree_add(g_params, encode_vjp(g_u)[0]), info


def gradient(rule: AbstractRule, problem: Problem, z0, params, x, y, *, key=None):
    """Estimate dL/dθ of ``problem``'s loss with ``rule``: ``(grads, info)``.

    Args:
        rule: e.g. ``flowsim.Implicit()`` (the oracle), ``flowsim.BPTT(steps, dt)``.
        problem: a :class:`flowsim.Problem` (field, loss, batching).
        z0, params, x, y: pytrees (``x`` and ``y`` may be None).
        key: a PRNG key, required by rules that draw random numbers.

    Returns:
        ``grads`` shaped like ``params`` and ``info`` (see the module docstring).
    """
    if not isinstance(rule, AbstractRule):
        raise TypeError(f"rule must be a flowsim learning rule, got {type(rule).__name__}")
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a flowsim.Problem, got {type(problem).__name__}")
    return _gradient(rule, problem, z0, params, x, y, key)


# --- pieces the rules share ---------------------------------------------------------

def vjp_params(problem, z, params, x, cotangent):
    """F_θᵀ c over the batch at the states ``z``."""
    _, vjp = jax.vjp(lambda p: problem.batch_field(z, p, x), params)
    return vjp(cotangent)[0]


def vjp_state(problem, z, params, x):
    """The function c ↦ F_zᵀ c over the batch at ``z`` (one linearisation, reused)."""
    _, vjp = jax.vjp(lambda u: problem.batch_field(u, params, x), z)
    return lambda c: vjp(c)[0]


def loss_gradients(problem, z, params, y, weights=None):
    """(L, ∂L/∂z, ∂L/∂θ) of the (weighted) batch objective, one VJP.

    For complex z the z-derivative is the holomorphic one (unit cotangent).
    """
    value, vjp = jax.vjp(lambda u, p: problem.objective(u, p, y, weights), z, params)
    dz, dparams = vjp(jnp.ones_like(value))
    return value, dz, dparams


class Phase(eqx.Module):
    """The outcome of a rule's fast solve: states, per-sample weights and the summary."""

    z: object
    weights: jax.Array
    summary: dict


def fast_phase(solver, problem, z0, params, x) -> Phase:
    """Solve the fast state per sample; failed samples fall back to z0 with weight 0.

    The fallback keeps later products finite (a failed sample's state may be
    NaN); its zero weight removes it from every estimate.
    """
    z, info = solve(solver, problem, z0, params, x)
    summary = summarise(info, problem.batched)
    z = tree_where(summary["ok"], z, z0)
    return Phase(z=z, weights=problem.weights(summary["ok"]), summary=summary)


def all_samples(problem, z0):
    """A :class:`Phase` where every sample counts (rules without a fast solve of their own)."""
    n = problem.batch_size(z0)
    ok = jnp.ones((n,), bool) if problem.batched else jnp.asarray(True)
    summary = {"result": RESULTS.successful, "failed_samples": jnp.asarray(0, jnp.int32),
               "sample_results": _codes(ok),
               "ok": ok}
    return Phase(z=z0, weights=problem.weights(ok), summary=summary)


def _codes(ok):
    """``successful`` per sample (an Enumeration's ``where`` takes a scalar predicate)."""
    one = lambda o: RESULTS.where(o, RESULTS.successful, RESULTS.nonfinite)
    return jax.vmap(one)(ok) if ok.ndim else one(ok)


def finish(grads, phase: Phase, loss, residual, matvecs, result=None):
    """The rule's ``(grads, info)``: NaN gradients unless the estimate can be used.

    ``result`` (default: the phase's) may carry a later failure (the adjoint
    solve). Gradients that are not finite make the result ``nonfinite``.
    """
    summary = phase.summary
    result = summary["result"] if result is None else result
    result = RESULTS.where(tree_all_finite(grads), result, RESULTS.nonfinite)
    usable = (result == RESULTS.successful) | (result == RESULTS.samples_failed)
    grads = tree_where(usable, grads, tree_nan_like(grads))
    info = {"loss": loss, "residual": residual, "matvecs": jnp.asarray(matvecs),
            "result": result, "failed_samples": summary["failed_samples"],
            "sample_results": summary["sample_results"]}
    return grads, info


__all__ = ["AbstractRule", "AbstractHorizonRule", "gradient", "vjp_params", "vjp_state",
           "loss_gradients", "Phase", "fast_phase", "all_samples", "finish"]
