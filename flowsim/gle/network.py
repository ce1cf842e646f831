r"""A layered GLE network as an ODE: membranes, error neurons, prospective potentials.

For layers l = 1…L with time constants τ_m,l, τ_r,l (per layer, or per neuron),
input r₀ = x(t) and target y*(t) (Ellenberger, Haider et al. 2024, eqs. for
"generalized latent equilibrium"):

    τ_m u̇_l = −u_l + W_l r_{l−1} + b_l + γ ĕ_l,      ŭ_l = u_l + τ_r u̇_l,      r_l = φ(ŭ_l),
    ε_l = φ'(ŭ_l) ⊙ W_{l+1}ᵀ ĕ_{l+1}    (l < L),
    ε_L = β φ'(ŭ_L) ⊙ (y* − r_L)                      (squared error, ``output="mse"``),
    ε_L = β φ'(ŭ_L) ⊙ (y* − (Σ_k y*_k) softmax(r_L))  (cross-entropy, ``output="ce"``),
    τ_r v̇_l = −v_l + ε_l,      ĕ_l = v_l + τ_m v̇_l.

The membrane low-passes its input with τ_m and the lookahead ŭ undoes a
low-pass of τ_r; the error neuron does the converse, so the pair propagates
errors backwards in time as well as in space. The instantaneous loss is
ℓ = ½‖y* − r_L‖² or −y*·log softmax(r_L), averaged over the batch (a target
of total mass w other than 1 weights its instant by w, so a time-varying
mass selects when the loss counts, for ℓ and GLE's error alike); at a steady
state with γ = 0, ĕ_l is backpropagation's −∂(βℓ)/∂(W_l r_{l−1}).

**The algebraic loop.** ŭ_l needs u̇_l, which needs ĕ_l when γ ≠ 0; ĕ_l needs
ε_l, which needs φ'(ŭ_l) and ĕ_{l+1}. ``coupling`` says how it is closed:

* ``"instantaneous"``: every quantity at time t from the state at time t. With
  γ = 0 one forward sweep (ŭ, r from layer 1 up) and one backward sweep (ε, ĕ
  from layer L down) solve it exactly. With γ ≠ 0 the sweeps are a map
  S: ĕ ↦ ĕ, and ĕ solves S(ĕ) = ĕ by optimistix's Newton (a dense Jacobian of
  the errors: fine at the sizes γ ≠ 0 is used at). Newton, not fixed-point
  iteration: the loop's gain is γ β times the weights' gain squared through
  every layer, and above 1 the iteration cycles (measured: a period-2 cycle at
  γ = 0.3 for three layers of gain 1.5) while the instantaneous system is
  still well posed. The oracle differentiates through the solve by the
  implicit function theorem.
* ``"delayed"``: as published implementations do, each layer sees its
  neighbours' rates and errors one step late. The delay is part of the ODE:
  buffers R_l and E_l relax to r_l and ĕ_l with time constant ``delay``,
  ``delay · Ṙ_l = r_l − R_l``, and layer l reads R_{l−1}, E_{l+1} and (for
  γ) E_l. One explicit Euler step of size dt = ``delay`` sets R_l = r_l
  exactly, i.e. a delay of one step per layer; as ``delay`` → 0 the system
  tends to the instantaneous one (a test checks both limits).

Plasticity (``flowsim.gle.simulate``) is Ẇ_l = η ĕ_l r_{l−1}ᵀ, ḃ_l = η ĕ_l with
r_{l−1} the rate layer l's synapses see (:meth:`GLENetwork.update_density`).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from .._tolerance import tree_dtype

ACTIVATIONS = {"identity": lambda a: a, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid,
               "softplus": jax.nn.softplus}
OUTPUTS = ("mse", "ce")
COUPLINGS = ("instantaneous", "delayed")


class Observables(eqx.Module):
    """Everything a GLE network computes from its state at one time (tuples over layers)."""

    pre: tuple      # the rate layer l's synapses see: x for l = 1, r_{l−1} (or its buffer)
    u_dot: tuple
    u_breve: tuple
    r: tuple
    eps: tuple
    v_dot: tuple
    e_breve: tuple
    target: jnp.ndarray


def _minimum(tau) -> float:
    try:
        return float(np.min(np.asarray(tau)))
    except (TypeError, jax.errors.JAXTypeError):  # traced: checked where it was built
        return float("inf")


class GLENetwork(eqx.Module):
    """The dynamics of a layered GLE network (see the module docstring).

    **Fields:** ``tau_m``, ``tau_r`` (one entry per layer: a float, or an array
    with one value per neuron), ``gamma``, ``beta``, ``activation`` (hidden φ),
    ``output_activation``, ``output`` (``"mse"`` or ``"ce"``), ``coupling``
    (``"instantaneous"`` or ``"delayed"``), ``delay`` (the buffers' time
    constant when delayed), and the tolerance (default 100 ε of the state's
    dtype) and Newton-step budget of the loop's solve for γ ≠ 0. The state is ``{"u": (u_1, …), "v": (v_1, …)}``, plus the buffers
    ``"r"`` and ``"e"`` when delayed; params are ``({"W": W_1, "b": b_1}, …)``.
    """

    tau_m: tuple
    tau_r: tuple
    gamma: float = 0.0
    beta: float = 1.0
    activation: str = eqx.field(default="tanh", static=True)
    output_activation: str = eqx.field(default="identity", static=True)
    output: str = eqx.field(default="mse", static=True)
    coupling: str = eqx.field(default="instantaneous", static=True)
    delay: float = 0.0
    loop_tol: float | None = None
    loop_max_steps: int = eqx.field(default=50, static=True)

    def __check_init__(self):
        if len(self.tau_m) != len(self.tau_r) or not self.tau_m:
            raise ValueError(f"tau_m and tau_r need one entry per layer, got {len(self.tau_m)} "
                             f"and {len(self.tau_r)}")
        for name, taus in (("tau_m", self.tau_m), ("tau_r", self.tau_r)):
            for layer, tau in enumerate(taus, start=1):
                if not _minimum(tau) > 0:
                    raise ValueError(f"{name} of layer {layer} must be > 0, got {tau}")
        for name, value, choices in (("activation", self.activation, tuple(ACTIVATIONS)),
                                     ("output_activation", self.output_activation,
                                      tuple(ACTIVATIONS)),
                                     ("output", self.output, OUTPUTS),
                                     ("coupling", self.coupling, COUPLINGS)):
            if value not in choices:
                raise ValueError(f"unknown {name} {value!r}; choose one of {choices}")
        if self.coupling == "delayed" and not _minimum(self.delay) > 0:
            raise ValueError(f"a delayed network needs delay > 0 (the Euler step), got "
                             f"{self.delay}")

    @property
    def layers(self) -> int:
        return len(self.tau_m)

    def smallest_time_constant(self) -> float:
        taus = [_minimum(tau) for tau in (*self.tau_m, *self.tau_r)]
        if self.coupling == "delayed":
            taus.append(_minimum(self.delay))
        return min(taus)

    def check_step(self, dt) -> None:
        """Reject an Euler step that is not positive or exceeds the smallest time constant."""
        if not dt > 0:
            raise ValueError(f"the Euler step dt must be > 0, got {dt}")
        smallest = self.smallest_time_constant()
        if dt > smallest * (1 + 1e-12):
            raise ValueError(f"the Euler step dt = {dt} exceeds the smallest time constant "
                             f"{smallest}: explicit Euler would overshoot; take dt <= {smallest}")

    # -- state and parameters ---------------------------------------------------------------

    def init_state(self, sizes, batch_shape=(), dtype=None):
        """Zero state for layer widths ``sizes = (n_1, …, n_L)``."""
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        zeros = tuple(jnp.zeros((*batch_shape, n), dtype) for n in sizes)
        state = {"u": zeros, "v": zeros}
        if self.coupling == "delayed":
            state = {**state, "r": zeros, "e": zeros}
        return state

    # -- the instantaneous computation ------------------------------------------------------

    def _phi(self, layer, a):
        name = self.output_activation if layer == self.layers - 1 else self.activation
        return jax.jvp(ACTIVATIONS[name], (a,), (jnp.ones_like(a),))  # (φ(a), φ'(a))

    def _sweep(self, state, params, x, target, feedback):
        delayed = self.coupling == "delayed"
        u, v = state["u"], state["v"]
        pre, u_dot, u_breve, rates, slopes = [], [], [], [], []
        rate = x
        for layer, weights in enumerate(params):
            seen = x if layer == 0 else (state["r"][layer - 1] if delayed else rate)
            current = seen @ weights["W"].T + weights["b"]
            if feedback is not None:
                current = current + self.gamma * feedback[layer]
            derivative = (current - u[layer]) / self.tau_m[layer]
            lookahead = u[layer] + self.tau_r[layer] * derivative
            rate, slope = self._phi(layer, lookahead)
            pre.append(seen)
            u_dot.append(derivative)
            u_breve.append(lookahead)
            rates.append(rate)
            slopes.append(slope)
        eps, v_dot, e_breve = [None] * self.layers, [None] * self.layers, [None] * self.layers
        for layer in reversed(range(self.layers)):
            if layer == self.layers - 1:
                # ∂ℓ/∂r_L of ℓ = −y*·log softmax(r_L) is (Σ_k y*_k) softmax − y*: a target
                # of total mass w weights its instant by w (w = 0: no target, no error).
                out = rate if self.output == "mse" else (
                    jnp.sum(target, axis=-1, keepdims=True) * jax.nn.softmax(rate, axis=-1))
                error = self.beta * slopes[layer] * (target - out)
            else:
                above = state["e"][layer + 1] if delayed else e_breve[layer + 1]
                error = slopes[layer] * (above @ params[layer + 1]["W"])
            derivative = (error - v[layer]) / self.tau_r[layer]
            eps[layer] = error
            v_dot[layer] = derivative
            e_breve[layer] = v[layer] + self.tau_m[layer] * derivative
        return Observables(tuple(pre), tuple(u_dot), tuple(u_breve), tuple(rates), tuple(eps),
                           tuple(v_dot), tuple(e_breve), target)

    def observe(self, t, state, params, drive) -> Observables:
        """The network's instantaneous quantities at time t (the loop closed per ``coupling``)."""
        x, target = drive.evaluate(t)
        dtype = tree_dtype(state)  # the network computes in its state's precision
        x, target = jnp.asarray(x, dtype), jnp.asarray(target, dtype)
        if self.coupling == "delayed":
            return self._sweep(state, params, x, target, state["e"])
        if self.gamma == 0:
            return self._sweep(state, params, x, target, None)

        def mismatch(errors, _):
            swept = self._sweep(state, params, x, target, errors).e_breve
            return jax.tree.map(jnp.subtract, swept, errors)

        tol = self.loop_tol
        if tol is None:
            tol = 100 * float(jnp.finfo(tree_dtype(state)).eps)
        solution = optx.root_find(mismatch, optx.Newton(rtol=tol, atol=tol), state["v"],
                                  max_steps=self.loop_max_steps)
        return self._sweep(state, params, x, target, solution.value)

    def derivative(self, observed: Observables, state):
        """ż of the state from the observables at the same time."""
        out = {"u": observed.u_dot, "v": observed.v_dot}
        if self.coupling == "delayed":
            out["r"] = tuple((r - b) / self.delay for r, b in zip(observed.r, state["r"]))
            out["e"] = tuple((e - b) / self.delay for e, b in zip(observed.e_breve, state["e"]))
        return out

    def field(self, t, state, params, drive):
        """The GLE vector field, ``field(t, z, params, drive)`` for diffrax and the oracle."""
        return self.derivative(self.observe(t, state, params, drive), state)

    def loss(self, observed: Observables):
        """The instantaneous loss ℓ (batch mean) of the output against the target."""
        output = observed.r[-1]
        if self.output == "mse":
            per_sample = 0.5 * jnp.sum((observed.target - output) ** 2, axis=-1)
        else:
            per_sample = -jnp.sum(observed.target * jax.nn.log_softmax(output, axis=-1), axis=-1)
        return jnp.mean(per_sample)

    def loss_rate(self, t, state, params, drive):
        """ℓ(t) from the state, ``loss_rate(t, z, params, drive)`` for the oracle."""
        return self.loss(self.observe(t, state, params, drive))

    def update_density(self, observed: Observables):
        """GLE's plasticity before η: (ĕ_l r_{l−1}ᵀ, ĕ_l) per layer, averaged over the batch."""
        out = []
        for error, rate in zip(observed.e_breve, observed.pre):
            count = max(1, int(np.prod(error.shape[:-1])))
            out.append({"W": jnp.einsum("...i,...j->ij", error, rate) / count,
                        "b": jnp.sum(error.reshape(-1, error.shape[-1]), axis=0) / count})
        return tuple(out)


def init_params(key, sizes, dtype=None, gain=1.0):
    """Weights N(0, gain²/fan_in) and zero biases for widths ``sizes = (n_in, n_1, …, n_L)``."""
    dtype = jnp.zeros(()).dtype if dtype is None else dtype
    keys = jax.random.split(key, len(sizes) - 1)
    return tuple({"W": jax.random.normal(k, (n_out, n_in), dtype) * (gain / math.sqrt(n_in)),
                  "b": jnp.zeros((n_out,), dtype)}
                 for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:]))
