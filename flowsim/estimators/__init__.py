"""The gradient-estimator zoo: the oracle and its approximations."""

from ._base import AbstractEstimator, gradient
from .bptt import BPTT
from .ep import EP
from .forward import Forward
from .holomorphic_ep import HolomorphicEP
from .implicit import Implicit
from .rbp import RBP

__all__ = ["AbstractEstimator", "gradient", "Implicit", "BPTT", "Forward", "RBP", "EP",
           "HolomorphicEP"]
