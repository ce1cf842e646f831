"""Systems shipped with the engine: small dynamics with known structure.

Each is an equinox Module whose ``field(z, params, x)`` method is the dynamics;
the Module holds only sizes and constants, the parameters live in the
``params`` pytree. The learning systems draw them with ``init_params(key)``;
the bifurcation test systems (normal forms, Bratu, Brusselator, Lorenz, the
tanh ring, the Landau flow, a network under a gain) give their constants with
``default_params()`` and a documented starting state with ``start(params)``.
"""

from .asymmetric import AsymmetricTanh
from .bratu import Bratu
from .brusselator import Brusselator
from .gain import Gain
from .hopfield import Hopfield
from .landau import LandauFlow
from .linear import Linear
from .lorenz import Lorenz
from .normal_forms import HopfNormalForm, Pitchfork, SaddleNode
from .scalar import ScalarContraction
from .tanh_ring import TanhRing

__all__ = ["ScalarContraction", "Linear", "Hopfield", "AsymmetricTanh", "Bratu", "Brusselator",
           "Gain", "HopfNormalForm", "LandauFlow", "Lorenz", "Pitchfork", "SaddleNode",
           "TanhRing"]
