"""Systems shipped with the engine: small dynamics with known structure.

Each is an equinox Module whose ``field(z, params, x)`` method is the dynamics and
whose ``init_params(key)`` draws parameters; the Module holds only sizes and
constants, the learnable parameters live in the ``params`` pytree.
"""

from .asymmetric import AsymmetricTanh
from .hopfield import Hopfield
from .linear import Linear
from .scalar import ScalarContraction

__all__ = ["ScalarContraction", "Linear", "Hopfield", "AsymmetricTanh"]
