"""Stability and bifurcation analysis of any flowsim system, matrix-free with exact derivatives.

* :mod:`.spectrum`: the k rightmost eigenvalues of F_z with residuals;
* :mod:`.continuation`: pseudo-arclength continuation in one parameter, with
  detection (:mod:`.detect`) and location (:mod:`.locate`) of folds, branch
  points and Hopf points, and the first Lyapunov coefficient (:mod:`.normal_form`);
* :mod:`.switching`: onto the other branch at a simple branch point;
* :mod:`.gradients`: dp_bifurcation/dθ by the implicit function theorem;
* :mod:`.lyapunov`: Lyapunov exponents of a trajectory.
"""

from .continuation import BifurcationPoint, Branch, ContinuationOptions, continuation
from .extended import Continuable, LinearSolve
from .parameter import AbstractParameter, Family, Key, Where, as_parameter
from .spectrum import Spectrum, SpectrumOptions, rightmost

__all__ = ["AbstractParameter", "BifurcationPoint", "Branch", "Continuable",
           "ContinuationOptions", "Family", "Key", "LinearSolve", "Spectrum", "SpectrumOptions",
           "Where", "as_parameter", "continuation", "rightmost"]
