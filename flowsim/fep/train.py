"""One learning step of the two-timescale system, and a predictive evaluation.

step: z0 = pi[x] -> Q-flow to q* (clamped targets) -> learner update of theta.
Metrics are taken at q* (F, its terms, train CE/accuracy) and at z0 (per-term
gradient norms, diagnostics.py). A prediction cannot see its targets: `predict`
runs the Q-flow of F with lambda_obs = 0 for a finite time from z0 and decodes.
"""

from __future__ import annotations


from .diagnostics import free_energy_metrics, prediction_metrics, term_gradient_norms
from .free_energy import FreeEnergy, init_beliefs
from .qflow import QFlow


def learning_step(learner, fe: FreeEnergy, qflow: QFlow, priors, opt_state, tokens, targets):
    """(priors, opt_state, metrics) after one alternation Q-flow -> P-step."""
    z0 = init_beliefs(priors, tokens)
    z_star, info = qflow.solve(fe, z0, priors, targets)
    metrics = {**free_energy_metrics(fe, z_star, priors, targets),
               **prediction_metrics(fe, z_star, priors, targets),
               **term_gradient_norms(fe, z0, priors, targets),
               "qflow_steps": info["num_steps"], "qflow_residual": info["residual"],
               "qflow_ok": info["successful"]}
    priors, opt_state, info = learner.update(fe, priors, opt_state, z0, z_star, targets)
    return priors, opt_state, {**metrics, **info}


def predict(fe: FreeEnergy, qflow: QFlow, priors, tokens, targets, prefix="pred"):
    """CE/accuracy of beliefs relaxed without the observation term (targets unseen)."""
    fe0 = fe.without_observations()
    z0 = init_beliefs(priors, tokens)
    z, _ = qflow.solve(fe0, z0, priors, targets)
    return prediction_metrics(fe, z, priors, targets, prefix)


def clamped(fe: FreeEnergy, qflow: QFlow, priors, tokens, targets, prefix="clamped"):
    """CE/accuracy at q* of the full F (the targets are part of the Q-flow)."""
    z, _ = qflow.solve(fe, init_beliefs(priors, tokens), priors, targets)
    return prediction_metrics(fe, z, priors, targets, prefix)
