"""Generalized latent equilibrium (GLE; Ellenberger, Haider et al. 2024) as diffrax ODEs (seed 004).

network.py   layered GLE network: membranes u, error neurons v, prospective ŭ and ĕ
stream.py    the time-varying drive: inputs and targets as diffrax interpolations
simulate.py  one solve of the network, with plasticity online or accumulated
compare.py   GLE's update against the trajectory oracle, per layer (cosine, norm ratio)
ct_mhsa.py   seed 004's cortico-thalamic multi-head self-attention (8 regions), BPTT
ct_mhsa_gle.py  GLE's errors and updates for it, in the same ODE

The oracle a GLE update is held against is the engine's trajectory adjoint,
:mod:`flowsim.trajectory`.
"""

from .compare import layer_agreement
from .network import (
    ACTIVATIONS,
    COUPLINGS,
    OUTPUTS,
    GLENetwork,
    Observables,
    init_params,
)
from .simulate import GLESolution, gle_gradient, simulate
from .stream import Constant, Function, Stream

__all__ = ["ACTIVATIONS", "COUPLINGS", "OUTPUTS", "GLENetwork", "Observables", "init_params",
           "GLESolution", "gle_gradient", "simulate", "Constant", "Function", "Stream",
           "layer_agreement"]
