"""Pure free-energy principle (FEP) learning as continuous-time dynamics (seeds 000, 001).

kl.py           KL between diagonal Gaussians; kl_logits against a prior bank
transport.py    Omega_ij: identity, or exp(phi_i) exp(-phi_j) with phi in so(K)
free_energy.py  F and its terms (FreeEnergy), the parameters theta (Priors)
qflow.py        beliefs: natural-gradient flow of F, solved by diffrax
pflow.py        learning: pure (-dF/dtheta), hybrid (seed heuristics), oracle
diagnostics.py  per-term gradient norms, CE/accuracy
train.py        one alternation step; predictions without targets
"""

from .diagnostics import free_energy_metrics, prediction_metrics, term_gradient_norms
from .free_energy import CE_REDUCTIONS, FreeEnergy, Priors, init_beliefs, init_priors
from .kl import kl, kl_log_sigma, kl_logits
from .pflow import (
    AbstractLearner, HybridLearner, OracleLearner, PureLearner, oracle_gradient,
    pflow_signal, prediction_loss,
)
from .qflow import QFlow, natural_gradient, qflow_field
from .train import clamped, learning_step, predict
from .transport import AbstractTransport, GaugeTransport, IdentityTransport
