r"""GLE's accumulated update held against the trajectory oracle, layer by layer.

GLE's ∫_{t_a}^{t_b} ĕ_l r_{l−1}ᵀ dt estimates −β ∂𝓛/∂W_l restricted to the window
(``flowsim.trajectory.trajectory_gradient`` with the same window). Per layer
(W and b together) the cosine says whether the direction is right and the norm
ratio |GLE| / |−β ∂𝓛/∂θ| how far the amplitude is off (for one frequency it is
Π_{k≥l} (1 + ω²τ_{m,k}²)/(1 + ω²τ_{r,k}²), see ``gle-checks``).
"""

import jax

from .._trees import tree_norm
from ..diagnostics import cosine


def layer_agreement(updates, oracle_grads, beta):
    """``[(cos_l, ratio_l) for each layer]`` and the cosine over every parameter.

    ``updates``: GLE's accumulated ∫ĕ rᵀ dt (``GLESolution.updates``);
    ``oracle_grads``: ∂𝓛/∂θ from the trajectory oracle on the same window.
    """
    target = jax.tree.map(lambda g: -beta * g, oracle_grads)
    per_layer = [(float(cosine(u, o)), float(tree_norm(u) / tree_norm(o)))
                 for u, o in zip(updates, target)]
    return per_layer, float(cosine(updates, target))
