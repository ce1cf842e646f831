r"""The P-flow: ∂E/∂θ at the fast state, a scheme's own local learning rule.

For a problem with an energy E(z, θ; x) whose fast dynamics descend it, the
slow parameters follow dθ/dt = −η ∂E/∂θ(z*, θ) at the fast state z* (seed
000's P-flow; one optax step per fast solve is an Euler step of it). At a
stationary point of E in z the envelope theorem makes this partial
derivative the total one,

    dE(z*(θ), θ)/dθ = ∂E/∂θ(z*, θ),

so the rule is the exact gradient of the *equilibrium energy*, not of the
readout loss L: held against L's oracle, its cosine measures how far the two
objectives point apart. The envelope theorem holds only at z*: an unconverged
fast solve is a failed estimate (its result code), never a step.

For a batched problem, E over the batch is Σ_i w_i E(z_i, θ; x_i) with the
problem's weights (``reduction``); failed samples have weight 0.
"""

import jax

from ..solvers import AbstractFastSolver
from ._base import AbstractRule, fast_phase, finish


class EnergyGradient(AbstractRule):
    """∂E/∂θ at the state ``solver`` reaches (see the module docstring)."""

    solver: AbstractFastSolver

    def estimate(self, problem, z0, params, x, y, key):
        del key
        if problem.energy is None:
            raise ValueError("EnergyGradient needs a problem with an energy "
                             "(flowsim.Problem(..., energy=E))")
        phase = fast_phase(self.solver, problem, z0, params, x)

        def energy(p):
            values = problem.per_sample(problem.energy)(phase.z, p, x)
            if not problem.batched:
                return values
            return jax.numpy.sum(phase.weights.astype(values.dtype) * values)

        grads = jax.grad(energy)(params)
        loss = problem.objective(phase.z, params, y, phase.weights)
        matvecs = phase.summary["matvecs"] + 1
        return finish(grads, phase, loss, phase.summary["residual"], matvecs)
