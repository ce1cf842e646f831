"""Learning rules: the oracle, the estimator zoo and the schemes' own local rules.

implicit.py         Implicit: the exact equilibrium gradient (the oracle)
bptt.py, forward.py BPTT, Forward (RTRL): the gradient of the deployed L(z_T)
rbp.py              RBP: the adjoint ODE for a finite time
ep.py               EP: one-sided or symmetric equilibrium propagation
holomorphic_ep.py   HolomorphicEP: complex nudges
energy_gradient.py  EnergyGradient: ∂E/∂θ at the fast state (the P-flow)
penalized.py        Penalized: a rule plus the contraction penalty's gradient
contraction.py      ContractionPenalty
_base.py            AbstractRule, gradient, and the contract of info
"""

from ._base import AbstractRule, gradient
from .bptt import BPTT
from .contraction import ContractionPenalty
from .energy_gradient import EnergyGradient
from .ep import EP
from .forward import Forward
from .holomorphic_ep import HolomorphicEP
from .implicit import Implicit
from .penalized import Penalized
from .rbp import RBP

__all__ = ["AbstractRule", "gradient", "Implicit", "BPTT", "Forward", "RBP", "EP",
           "HolomorphicEP", "EnergyGradient", "Penalized", "ContractionPenalty"]
