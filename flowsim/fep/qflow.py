r"""Q-flow: beliefs descend F by the natural gradient (seed 001, "Fast (Q-flow)").

In the coordinates z = (mu, log sigma) of a diagonal Gaussian the Fisher
information is block diagonal, G = diag(1/sigma^2, 2) per coordinate, so the
natural-gradient flow dz/dt = -G^{-1} grad_z F reads

    d mu/dt        = -sigma^2   dF/dmu
    d log sigma/dt = -(1/2)     dF/dlog sigma .

Along it dF/dt = -sum sigma^2 (dF/dmu)^2 - 1/2 sum (dF/dlog sigma)^2 <= 0:
F is non-increasing. (Seed 001 Issue #7 worried that the sigma^2 factor makes
the step "unpredictable"; in continuous time it is the metric, and an adaptive
solver picks the step.)

:class:`QFlowField` is the flow as an engine field, ``field(z, priors, x)``
with x = (tokens, targets): the tokens are the inputs of F's [input] term and
the targets its clamped observations; with ``observed=False`` it is the flow of
inference, F without the [obs] term (the targets are not read). It is a Module
whose leaves are F's weights, so a sweep can vmap over them. The engine's
:class:`flowsim.SteadyState` integrates it.

Its convergence is measured in the metric of the flow (:func:`fisher_norm`),

    ‖dz/dt‖_G² = (dz/dt)ᵀ G (dz/dt) = Σ (dμ/dt)²/σ² + 2 Σ (d log σ/dt)²,

which equals ∇Fᵀ G⁻¹ ∇F, the rate at which F decreases: a belief with a
small σ is not declared converged while its mean still moves by many σ.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .free_energy import FreeEnergy


def natural_gradient(fe: FreeEnergy, z, priors, tokens, targets=None):
    """-G(z)^{-1} grad_z F: the Q-flow vector field at z (``targets=None``: at inference)."""
    g_mu, g_s = jax.grad(fe)(z, priors, tokens, targets)
    _, log_sigma = z
    return (-jnp.exp(2.0 * log_sigma) * g_mu, -0.5 * g_s)


def fisher_norm(z, f):
    """‖f‖_G for a tangent f = (f_mu, f_log_sigma) at beliefs z = (mu, log_sigma)."""
    _, log_sigma = z
    f_mu, f_log_sigma = f
    return jnp.sqrt(jnp.sum(jnp.exp(-2.0 * log_sigma) * f_mu**2) + 2.0 * jnp.sum(f_log_sigma**2))


def _targets(observed, x):
    return x[1] if observed else None


class QFlowField(eqx.Module):
    """The Q-flow as an engine field: ``field(z, priors, (tokens, targets))``."""

    fe: FreeEnergy
    observed: bool = eqx.field(static=True, default=True)

    def __call__(self, z, priors, x):
        return natural_gradient(self.fe, z, priors, x[0], _targets(self.observed, x))


class FreeEnergyOfInputs(eqx.Module):
    """F as the problem's energy: ``energy(z, priors, (tokens, targets))``."""

    fe: FreeEnergy
    observed: bool = eqx.field(static=True, default=True)

    def __call__(self, z, priors, x):
        return self.fe(z, priors, x[0], _targets(self.observed, x))


POSITIONS = ("all", "last")


class PredictionLoss(eqx.Module):
    """L(z, theta, y) = lambda_obs * CE(decode(q), y), reduced as in F.

    ``positions="all"`` scores every position (the seeds' CE at the clamped q*);
    ``"last"`` only the last position of each sequence, the one honest
    prediction of a joint inference: the alignment couples every belief to the
    ones after it, so at inference q_i has seen the inputs x_{i+1}, ... and,
    with them, its own target y_i = x_{i+1}; only q_{N-1} has not.
    """

    fe: FreeEnergy
    positions: str = eqx.field(static=True, default="all")

    def __check_init__(self):
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {self.positions!r}")

    def __call__(self, z, priors, y):
        fe = self.fe
        if self.positions == "last":
            z = jax.tree.map(lambda a: a[..., -1:, :], z)
            y = y[..., -1:]
        return fe.lambda_obs * fe.reduce_ce(fe.ce_per_position(z, priors, y))


__all__ = ["POSITIONS", "natural_gradient", "fisher_norm", "QFlowField", "FreeEnergyOfInputs", "PredictionLoss"]
