"""Pure free-energy principle (FEP) learning as continuous-time dynamics (seeds 000, 001).

kl.py           KL between diagonal Gaussians; kl_logits against a prior bank
transport.py    Omega_ij: identity, or exp(phi_i) exp(-phi_j) with phi in so(K)
free_energy.py  F and its terms (FreeEnergy), the parameters theta (Priors)
qflow.py        the Q-flow (natural gradient of F) as an engine field
hybrid.py       seed 001's hand-made rules as an engine learning rule
task.py         FEPTask: the problem, its data and its evaluation for the training loop
diagnostics.py  per-term gradient norms, CE/accuracy

The P-flow is the engine's flowsim.EnergyGradient (-dF/dtheta at q*); the
oracle is flowsim.Implicit on the prediction loss.
"""

from .diagnostics import free_energy_metrics, prediction_metrics, term_gradient_norms
from .free_energy import CE_REDUCTIONS, FreeEnergy, Priors, init_beliefs, init_priors
from .hybrid import HybridRule, hybrid_update
from .kl import kl, kl_log_sigma, kl_logits
from .qflow import FreeEnergyOfInputs, PredictionLoss, QFlowField, natural_gradient
from .task import (
    FEPTask,
    FixedBatch,
    TextWindows,
    clamped,
    fep_problem,
    initial_beliefs,
    predict_solver,
    prediction,
    qflow_solver,
)
from .transport import AbstractTransport, GaugeTransport, IdentityTransport

__all__ = ["free_energy_metrics", "prediction_metrics", "term_gradient_norms", "CE_REDUCTIONS",
           "FreeEnergy", "Priors", "init_beliefs", "init_priors", "HybridRule", "hybrid_update",
           "kl", "kl_log_sigma", "kl_logits", "FreeEnergyOfInputs", "PredictionLoss",
           "QFlowField", "natural_gradient", "FEPTask", "FixedBatch", "TextWindows", "clamped",
           "fep_problem", "initial_beliefs", "predict_solver", "prediction", "qflow_solver",
           "AbstractTransport", "GaugeTransport", "IdentityTransport"]
