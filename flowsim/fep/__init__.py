"""Pure free-energy principle (FEP) learning as continuous-time dynamics (seeds 000, 001).

kl.py           KL between diagonal Gaussians; kl_logits against a prior bank
transport.py    Omega_ij: identity, or exp(phi_i) exp(-phi_j) with phi in so(K)
free_energy.py  F and its terms (FreeEnergy, inputs in an [input] term), theta (Priors)
qflow.py        the Q-flow (natural gradient of F) as an engine field
hybrid.py       seed 001's hand-made rules as an engine learning rule
task.py         FEPTask: training and prediction problems, data, evaluation for the loop
diagnostics.py  per-term gradient norms, CE/accuracy, recovery of the inputs

The P-flow is the engine's flowsim.EnergyGradient (-dF/dtheta at the clamped
q*); the oracle is flowsim.Implicit on the prediction problem (inference
equilibrium, last position's next token).
"""

from .diagnostics import (
                          free_energy_metrics,
                          input_recovery,
                          prediction_metrics,
                          term_gradient_norms,
)
from .free_energy import (
                          CE_REDUCTIONS,
                          INPUT_BANKS,
                          INPUT_TERMS,
                          LIKELIHOODS,
                          FreeEnergy,
                          Priors,
                          init_beliefs,
                          init_priors,
                          input_bank,
                          output_bank,
                          position_prior,
)
from .hybrid import HybridRule, hybrid_update
from .kl import (
                          expected_cross_entropy,
                          expected_likelihood_logits,
                          kl,
                          kl_log_sigma,
                          kl_logits,
)
from .qflow import (
                          POSITIONS,
                          FreeEnergyOfInputs,
                          PredictionLoss,
                          QFlowField,
                          natural_gradient,
)
from .task import (
                          FEPTask,
                          FixedBatch,
                          TextWindows,
                          clamped,
                          fep_problem,
                          initial_beliefs,
                          prediction,
                          prediction_problem,
                          qflow_solver,
)
from .transport import AbstractTransport, GaugeTransport, IdentityTransport

__all__ = ["free_energy_metrics", "input_recovery", "prediction_metrics", "term_gradient_norms",
           "CE_REDUCTIONS", "INPUT_BANKS", "INPUT_TERMS", "LIKELIHOODS", "FreeEnergy", "Priors", "init_beliefs", "init_priors",
           "input_bank", "output_bank", "position_prior", "POSITIONS", "HybridRule", "hybrid_update",
           "kl", "kl_log_sigma", "kl_logits", "expected_cross_entropy",
           "expected_likelihood_logits", "FreeEnergyOfInputs", "PredictionLoss",
           "QFlowField", "natural_gradient", "FEPTask", "FixedBatch", "TextWindows", "clamped",
           "fep_problem", "initial_beliefs", "prediction", "prediction_problem", "qflow_solver",
           "AbstractTransport", "GaugeTransport", "IdentityTransport"]
