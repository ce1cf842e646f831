r"""Newton's method (``optimistix.Newton``) that stops on the size of its step.

optimistix's Newton stops either when ‖F‖ is below an absolute ``atol`` (its
Cauchy test: the scale of F is the system's, 1/h² in a discretised PDE, so a
fixed atol is unreachable at one N and loose at another) or on a contraction
rate estimated from two steps (which reads a step already at round-off as
divergence when the predictor was exact). Continuation wants the classical
test on the unknowns: stop after the first step with

    ‖Δu / (atol + rtol |u|)‖∞ ≤ 1,

and fail when the step is non-finite or the budget is spent. Everything else
(the linear solve, ``root_find``, the implicit-function adjoint that
differentiates a located bifurcation) is optimistix's.
"""

import jax.numpy as jnp
import optimistix as optx


class StepNewton(optx.Newton):
    """:class:`optimistix.Newton` terminating on the scaled step (module docstring)."""

    def terminate(self, fn, y, args, options, state, tags):
        del fn, args, options, tags
        stepped = state.step >= 1  # before the first step diffsize holds no step
        finite = ~stepped | jnp.isfinite(state.diffsize)
        converged = stepped & (state.diffsize <= 1.0)
        linear_failed = state.result != optx.RESULTS.successful
        result = optx.RESULTS.where(linear_failed, state.result,
                                    optx.RESULTS.where(finite, optx.RESULTS.successful,
                                                       optx.RESULTS.nonlinear_divergence))
        return converged | ~finite | linear_failed, result
