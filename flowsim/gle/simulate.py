r"""One solve of a GLE network, with plasticity online or accumulated for optax.

:func:`simulate` integrates the network's ODE by diffrax (explicit Euler, the
step GLE is deployed with) from t₀ to t₁, together with

* the online plasticity Ẇ_l = η ĕ_l r_{l−1}ᵀ, ḃ_l = η ĕ_l (the weights are
  part of the slow state; η = 0 freezes them);
* the accumulated update A_l = ∫_{t_a}^{t_b} ĕ_l r_{l−1}ᵀ dt (and ∫ ĕ_l dt) over
  a window, to hand to an optimiser;
* the integrated loss ∫_{t₀}^{t₁} ℓ dt.

:func:`gle_gradient` turns the accumulated update into the gradient estimate
of the window's mean loss, −A/(β (t_b − t_a)), which is what optax takes and
what the trajectory oracle (``flowsim.trajectory``) computes exactly.
"""

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._results import RESULTS
from .._tolerance import tree_dtype
from .._trees import tree_all_finite
from ..trajectory import window_mask


class GLESolution(eqx.Module):
    """What :func:`simulate` returns.

    ``params``: the weights at t₁ (unchanged when η = 0); ``updates``: the
    accumulated ∫ ĕ rᵀ dt over the window, shaped like params; ``loss``: ∫ ℓ dt
    over the whole span; ``ts``, ``observed``: the observables at the saved
    times (``None`` when none were asked for); ``state``: the state at t₁;
    ``result``: a ``RESULTS`` code.
    """

    params: tuple
    updates: tuple
    loss: jnp.ndarray
    state: dict
    ts: jnp.ndarray | None
    observed: object
    result: RESULTS


def simulate(network, params, drive, t0, t1, dt, *, state0, eta=0.0, window=None,
             save_ts=None) -> GLESolution:
    """Integrate the GLE network (see the module docstring).

    ``state0`` comes from ``network.init_state``; ``window`` is ``(t_a, t_b)``,
    default the whole span; ``save_ts`` the times at which to record the
    observables. Raises ``ValueError`` for an Euler step larger than the
    smallest time constant.
    """
    network.check_step(dt)
    window = (t0, t1) if window is None else window
    dtype = tree_dtype(params)
    online = not (isinstance(eta, (int, float)) and eta == 0)
    zeros = jax.tree.map(jnp.zeros_like, params)

    def vector_field(t, carried, args):
        weights = carried["params"] if online else params
        observed = network.observe(t, carried["z"], weights, drive)
        density = network.update_density(observed)
        inside = window_mask(t, window, dt).astype(dtype)
        out = {"z": network.derivative(observed, carried["z"]),
               "updates": jax.tree.map(lambda d: inside * d, density),
               "loss": network.loss(observed).astype(dtype)}
        if online:
            out["params"] = jax.tree.map(lambda d: eta * d, density)
        return out

    carried0 = {"z": state0, "updates": zeros, "loss": jnp.zeros((), dtype)}
    if online:
        carried0["params"] = params
    final_only = diffrax.SubSaveAt(t1=True)
    if save_ts is None:
        saveat = diffrax.SaveAt(subs=[final_only])
    else:
        def record(t, carried, args):
            weights = carried["params"] if online else params
            return network.observe(t, carried["z"], weights, drive)
        saveat = diffrax.SaveAt(subs=[final_only, diffrax.SubSaveAt(
            ts=jnp.asarray(save_ts, dtype), fn=record)])
    steps = math.ceil((t1 - t0) / dt - 1e-9)
    # Times in the state's precision: float64 times would promote a float32 state.
    span = [jnp.asarray(v, dtype) for v in (t0, t1, dt)]
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field), diffrax.Euler(), *span, carried0,
        stepsize_controller=diffrax.ConstantStepSize(), saveat=saveat, max_steps=steps + 1,
        throw=False, adjoint=diffrax.RecursiveCheckpointAdjoint())
    final = jax.tree.map(lambda y: y[-1], solution.ys[0])
    result = RESULTS.where(solution.result == diffrax.RESULTS.successful, RESULTS.successful,
                           RESULTS.max_steps_reached)
    result = RESULTS.where(tree_all_finite(final["updates"]) & jnp.isfinite(final["loss"]),
                           result, RESULTS.nonfinite)
    return GLESolution(params=final.get("params", params), updates=final["updates"],
                       loss=final["loss"], state=final["z"],
                       ts=None if save_ts is None else solution.ts[1],
                       observed=None if save_ts is None else solution.ys[1], result=result)


def gle_gradient(network, updates, duration):
    """The gradient estimate of the window's mean loss: −A / (β · duration)."""
    return jax.tree.map(lambda a: -a / (network.beta * duration), updates)
