r"""The trajectory oracle: the exact gradient of a time-integrated loss through an ODE.

A fast state driven by a time series (the ``drive``),

    ż = f(t, z, θ, drive),   z(t₀) = z₀,      𝓛(θ) = ∫_{t₀}^{t₁} ℓ(t, z(t), θ, drive) dt,

has the gradient (the adjoint method)

    d𝓛/dθ = ∫_{t₀}^{t₁} [ λ(t)ᵀ ∂f/∂θ + ∂ℓ/∂θ ] dt,    −λ̇ = (∂f/∂z)ᵀ λ + (∂ℓ/∂z)ᵀ,  λ(t₁) = 0.

A rule that learns online (GLE's ĕ rᵀ) estimates the integrand at each t, so
it is compared with the oracle over a *window* [t_a, t_b) that leaves out the
initial transient and the end, where the adjoint's future is cut off. The
window's gradient is the derivative with respect to a perturbation δ that the
field sees only inside the window,

    θ(t) = θ + 𝟙[t_a ≤ t < t_b] δ,     ∂𝓛/∂δ |_{δ=0} = ∫_{t_a}^{t_b} [ λᵀ ∂f/∂θ + ∂ℓ/∂θ ] dt,

while the loss is still integrated over the whole span (λ(t) sees every loss
after t). With the window equal to the span this is the ordinary gradient of
𝓛: backpropagation through time of the same ODE.

The loss is integrated as one more state component (q̇ = ℓ), so the solver
that solves the state also does the quadrature. Three ways to differentiate
the solve, by diffrax's adjoints:

* ``"checkpoint"``: ``RecursiveCheckpointAdjoint``, reverse mode through the
  solver's steps with recursive checkpointing: the exact gradient of the
  discretised 𝓛 (discretise-then-optimise);
* ``"backsolve"``: ``BacksolveAdjoint``, the continuous adjoint above solved
  backwards in time (optimise-then-discretise): agrees with ``"checkpoint"``
  to the discretisation error, O(dt) for Euler;
* ``"forward"``: ``ForwardMode`` with ``jax.jacfwd``: forward sensitivities,
  one per parameter, exact like ``"checkpoint"`` by an independent route (for
  few parameters).
"""

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._results import RESULTS
from .._tolerance import tree_dtype
from .._trees import tree_all_finite

ADJOINTS = ("checkpoint", "backsolve", "forward")


def window_mask(t, window, dt):
    """1 inside [t_a, t_b), else 0, with the ends taken half a step early.

    Solver times are sums of steps, so a grid time meant to equal t_a can sit
    one rounding below it; half a step of slack puts every grid time on the
    side it was meant to be.
    """
    start, stop = window
    return ((t >= start - 0.5 * dt) & (t < stop - 0.5 * dt)).astype(jnp.result_type(t))


class TrajectoryOracle(eqx.Module):
    """Options of the trajectory oracle: the solver, its step and the adjoint.

    **Fields:**

    - ``dt``: the (fixed) step; the solver should be the one the scheme is
      deployed with, so that the oracle differentiates the same discretisation.
    - ``solver``: a diffrax solver (default explicit Euler).
    - ``adjoint``: one of ``ADJOINTS`` (see the module docstring).
    - ``checkpoints``: for ``"checkpoint"``, how many steps reverse mode keeps:
      ``None`` is diffrax's default, about √(2·steps), memory ∝ √steps at the
      price of recomputing the forward solve between checkpoints; the number
      of steps keeps every step (plain BPTT: memory linear in the horizon, no
      recomputation).
    """

    dt: float
    solver: diffrax.AbstractSolver = diffrax.Euler()
    adjoint: str = eqx.field(default="checkpoint", static=True)
    checkpoints: int | None = eqx.field(default=None, static=True)

    def __check_init__(self):
        if self.adjoint not in ADJOINTS:
            raise ValueError(f"unknown adjoint {self.adjoint!r}; choose one of {ADJOINTS}")
        if not self.dt > 0:
            raise ValueError(f"dt must be positive, got {self.dt}")


def _diffrax_adjoint(oracle):
    if oracle.adjoint == "checkpoint":
        return diffrax.RecursiveCheckpointAdjoint(checkpoints=oracle.checkpoints)
    if oracle.adjoint == "backsolve":
        return diffrax.BacksolveAdjoint(solver=oracle.solver)
    return diffrax.ForwardMode()


def trajectory_gradient(oracle, field, loss_rate, z0, params, drive, t0, t1, window=None):
    r"""∂/∂δ of ∫_{t₀}^{t₁} ℓ dt, δ seen by the field on ``window`` only (see the module).

    **Arguments:**

    - ``oracle``: a :class:`TrajectoryOracle`.
    - ``field``: ``field(t, z, params, drive) -> ż`` (a pytree like ``z``).
    - ``loss_rate``: ``loss_rate(t, z, params, drive) -> ℓ`` (a scalar).
    - ``z0``, ``params``, ``drive``: the initial state, the parameters (a
      pytree of floating arrays) and the time series (any pytree; not
      differentiated).
    - ``t0``, ``t1``: the span; ``window``: ``(t_a, t_b)``, default the span.

    **Returns** ``(grads, info)``: ``grads`` shaped like ``params``; ``info``
    with ``loss`` (𝓛 over the whole span) and ``result`` (a ``RESULTS`` code:
    ``max_steps_reached`` if the solve stopped early, ``nonfinite`` if the loss
    or the gradient is not finite).
    """
    window = (t0, t1) if window is None else window
    dtype = tree_dtype(params)
    steps = math.ceil((t1 - t0) / oracle.dt - 1e-9)

    def vector_field(t, state, args):
        z, _ = state
        theta, delta, series = args
        inside = window_mask(t, window, oracle.dt).astype(dtype)
        seen = jax.tree.map(lambda p, d: p + inside * d, theta, delta)
        return field(t, z, seen, series), jnp.asarray(loss_rate(t, z, seen, series), dtype)

    # Times in the parameters' precision: float64 times would promote float32 states.
    span = [jnp.asarray(v, dtype) for v in (t0, t1, oracle.dt)]

    def integrated_loss(delta):
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(vector_field), oracle.solver, *span,
            (z0, jnp.zeros((), dtype)), args=(params, delta, drive),
            stepsize_controller=diffrax.ConstantStepSize(),
            adjoint=_diffrax_adjoint(oracle), saveat=diffrax.SaveAt(t1=True),
            max_steps=steps + 1, throw=False)
        return solution.ys[1][-1], solution.result

    delta = jax.tree.map(jnp.zeros_like, params)
    if oracle.adjoint == "forward":
        def with_value(d):  # the value rides along as aux: one solve, not two
            value, solved = integrated_loss(d)
            return value, (value, solved)
        grads, (loss, solved) = jax.jacfwd(with_value, has_aux=True)(delta)
    else:
        (loss, solved), grads = jax.value_and_grad(integrated_loss, has_aux=True)(delta)
    result = RESULTS.where(solved == diffrax.RESULTS.successful, RESULTS.successful,
                           RESULTS.max_steps_reached)
    finite = tree_all_finite(grads) & jnp.isfinite(loss)
    result = RESULTS.where(finite, result, RESULTS.nonfinite)
    return grads, {"loss": loss, "result": result}
