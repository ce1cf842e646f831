r"""gle-checks: GLE's closed forms, and GLE against the trajectory oracle.

On small networks (flowsim.gle, explicit Euler at ``chain.dt``):

(a) τ_r = τ_m: the lookahead undoes the membrane's low-pass, ŭ_l = W_l r_{l−1} + b_l,
    so the output is the feedforward map of the input at the same instant:
    ``matched_output_max_err`` is max_t |r_L(t) − MLP(x(t))| along a broadband drive.
(b) Static input, γ = 0, at the steady state (found by ``flowsim.equilibrium``):
    ĕ_l r_{l−1}ᵀ = −∂(βℓ)/∂W_l of backpropagation, for τ_r = s τ_m with every s in
    ``static_tau_r_scales``: ``static_backprop_max_err`` (max abs difference).
(c) A linear chain driven by x(t) = sin ωt and a target at the same frequency:
    each layer's transfer from its input current W r + b to ŭ is
    H = (1 + iωτ_r)/(1 + iωτ_m) (``sine_gain_layer{l}``, ``sine_phase_layer{l}``
    against ``..._predicted_layer{l}``), and the time-integrated GLE update over
    the window is the trajectory oracle's −β ∂𝓛/∂W_l times
    Π_{k≥l} (1 + ω²τ_{m,k}²)/(1 + ω²τ_{r,k}²) (``sine_update_ratio_layer{l}``,
    the norm ratio; ``sine_cos_layer{l}`` its cosine, 1 for one frequency).
    The error neuron's filter (1 + iωτ_m)/(1 + iωτ_r) has the phase of the
    adjoint's conj((1 + iωτ_r)/(1 + iωτ_m)) and not its amplitude.
(d) Broadband drive (a sum of ``broadband_modes`` sinusoids), tanh network:
    cos(GLE update, oracle) over all weights, with the chain's τ
    (``cos_gle_oracle_broadband``, below 1; per layer the cosine and the norm
    ratio |GLE| / |oracle|) and with τ_r = τ_m (``cos_gle_oracle_matched``, 1
    to roundoff).

The oracle is ``flowsim.trajectory.trajectory_gradient`` with the window
[``chain.transient``, ``chain.T`` − ``chain.tail``]; its three adjoints are
compared on the sine chain: ``oracle_forward_rel_diff`` (forward sensitivities
vs checkpointed reverse mode, the same discrete gradient) and
``oracle_backsolve_rel_diff`` (the continuous adjoint solved backwards, on a
horizon of ``backsolve_T``: the backward solve of a dissipative state grows
like e^{T/τ}, so on the full horizon it fails, reported as
``oracle_backsolve_rel_diff_full``).
"""

import math

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field, model_validator

import flowsim
from flowsim.gle import (
    Constant,
    Function,
    GLENetwork,
    init_params,
    layer_agreement,
    simulate,
)
from flowsim.run import Section, StudyConfig
from flowsim.trajectory import TrajectoryOracle, trajectory_gradient

from .common import save_figure

PositiveList = list[float]


class ChainSection(Section):
    """The networks of the checks: widths, per-layer time constants, the drive, the solve."""

    widths: list[int] = Field([2, 3, 3, 2], min_length=2,
                              description="n_in, n_1, ..., n_L (one tau_m, tau_r per layer)")
    tau_m: PositiveList = Field([1.0, 0.5, 2.0], min_length=1, description="per layer")
    tau_r: PositiveList = Field([0.3, 1.5, 0.2], min_length=1, description="per layer")
    omega: float = Field(1.0, gt=0, description="angular frequency of the sine drive")
    dt: float = Field(0.01, gt=0, description="Euler step (<= the smallest time constant)")
    T: float = Field(60.0, gt=0, description="horizon of each solve")
    transient: float = Field(20.0, ge=0, description="the window starts here")
    tail: float = Field(15.0, ge=0, description="the window ends this long before T")
    beta: float = Field(1.0, gt=0, description="output error strength")

    @model_validator(mode="after")
    def _consistent(self):
        layers = len(self.widths) - 1
        if not len(self.tau_m) == len(self.tau_r) == layers:
            raise ValueError(f"tau_m and tau_r need one value per layer ({layers} for widths "
                             f"{self.widths}), got {len(self.tau_m)} and {len(self.tau_r)}")
        if min(self.widths) < 1:
            raise ValueError(f"widths must be >= 1, got {self.widths}")
        smallest = min(self.tau_m + self.tau_r)
        if smallest <= 0:
            raise ValueError(f"time constants must be > 0, got tau_m={self.tau_m} "
                             f"tau_r={self.tau_r}")
        if self.dt > smallest:
            raise ValueError(f"dt = {self.dt} exceeds the smallest time constant {smallest}")
        if not self.transient + 2 * math.pi / self.omega <= self.T - self.tail:
            raise ValueError(f"the window [transient, T - tail] = [{self.transient}, "
                             f"{self.T - self.tail}] must hold at least one period "
                             f"{2 * math.pi / self.omega:.3g}")
        return self


class Config(StudyConfig):
    chain: ChainSection = ChainSection()
    static_tau_r_scales: list[float] = Field([0.25, 0.5, 2.0, 4.0], min_length=1,
                                             description="tau_r = s tau_m in check (b)")
    broadband_modes: int = Field(6, ge=1, le=1000)
    broadband_band: list[float] = Field([0.1, 5.0], min_length=2, max_length=2,
                                        description="range of the modes' frequencies / omega")
    backsolve_T: float = Field(1.0, gt=0, description="horizon of the backsolve comparison")

    @model_validator(mode="after")
    def _scales(self):
        if any(s <= 0 or s == 1 for s in self.static_tau_r_scales):
            raise ValueError(f"static_tau_r_scales must be > 0 and != 1, got "
                             f"{self.static_tau_r_scales}")
        if self.chain.dt > min(self.chain.tau_m) * min(self.static_tau_r_scales):
            raise ValueError(f"dt = {self.chain.dt} exceeds the smallest tau_r of check (b)")
        low, high = self.broadband_band
        if not 0 < low < high:
            raise ValueError(f"broadband_band must be 0 < low < high, got {self.broadband_band}")
        if self.backsolve_T < self.chain.dt:
            raise ValueError("backsolve_T must hold at least one step")
        return self


def _network(chain, tau_r=None, activation="identity"):
    return GLENetwork(tau_m=tuple(chain.tau_m), tau_r=tuple(chain.tau_r if tau_r is None else tau_r),
                      beta=chain.beta, activation=activation, output_activation=activation)


def static_check(config, params, key):
    """(b): the largest |ĕ rᵀ + β ∂ℓ/∂W| (and for b) over the τ_r scales."""
    chain = config.chain
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (chain.widths[0],))
    y = 0.5 * jax.random.normal(ky, (chain.widths[-1],))

    def backprop_loss(p):
        rate = x
        for weights in p:
            rate = jnp.tanh(weights["W"] @ rate + weights["b"])
        return 0.5 * jnp.sum((y - rate) ** 2)

    grads = jax.grad(backprop_loss)(params)
    drive = Constant(x, y)
    worst, results = 0.0, []
    for scale in config.static_tau_r_scales:
        network = _network(chain, [scale * t for t in chain.tau_m], activation="tanh")
        state0 = network.init_state(chain.widths[1:])
        state, info = flowsim.equilibrium(lambda z, p, _: network.field(0.0, z, p, drive),
                                          state0, params, None)
        results.append(flowsim.result_name(info["result"]))
        density = network.update_density(network.observe(0.0, state, params, drive))
        for got, want in zip(density, grads):
            for name in ("W", "b"):
                worst = max(worst, float(jnp.max(jnp.abs(got[name] + chain.beta * want[name]))))
    return worst, results


def _window(chain):
    return chain.transient, chain.T - chain.tail


def _whole_periods(chain):
    start, stop = _window(chain)
    period = 2 * math.pi / chain.omega
    count = math.floor((stop - start) / period + 1e-9)
    return start, start + count * period


def sine_drive(chain):
    n_in, n_out = chain.widths[0], chain.widths[-1]
    offsets = jnp.linspace(0.0, 1.0, n_in)
    amplitudes = jnp.linspace(1.0, 0.5, n_out)
    phases = jnp.linspace(0.3, -1.0, n_out)

    def fn(t):
        return (jnp.sin(chain.omega * t + offsets),
                amplitudes * jnp.sin(chain.omega * t + phases))
    return Function(fn)


def complex_amplitude(ts, series, omega):
    """c with series ≈ Re(c e^{iωt}) over whole periods (least squares, the DFT bin)."""
    phasor = np.exp(-1j * omega * np.asarray(ts))[:, None]
    return 2.0 * np.mean(np.asarray(series) * phasor, axis=0)


def sine_check(config, params):
    """(c): per-layer transfer (gain, phase) and update ratio, simulated and predicted."""
    chain = config.chain
    network = _network(chain)
    drive = sine_drive(chain)
    state0 = network.init_state(chain.widths[1:])
    start, stop = _whole_periods(chain)
    steps = round((stop - start) / chain.dt)
    save_ts = start + chain.dt * np.arange(steps)
    solved = simulate(network, params, drive, 0.0, chain.T, chain.dt, state0=state0,
                      window=(start, stop), save_ts=save_ts)
    grads, info = trajectory_gradient(TrajectoryOracle(chain.dt), network.field,
                                      network.loss_rate, state0, params, drive, 0.0, chain.T,
                                      window=(start, stop))
    observed, out, layers = solved.observed, {}, len(params)
    rows = []
    for layer in range(layers):
        current = observed.pre[layer] @ params[layer]["W"].T + params[layer]["b"]
        transfer = (complex_amplitude(solved.ts, observed.u_breve[layer], chain.omega)
                    / complex_amplitude(solved.ts, current, chain.omega))
        tau_m, tau_r = chain.tau_m[layer], chain.tau_r[layer]
        predicted = (1 + 1j * chain.omega * tau_r) / (1 + 1j * chain.omega * tau_m)
        gle = np.asarray(solved.updates[layer]["W"]).ravel()
        oracle = -chain.beta * np.asarray(grads[layer]["W"]).ravel()
        ratio = float(np.linalg.norm(gle) / np.linalg.norm(oracle))
        ratio_predicted = float(np.prod([
            (1 + (chain.omega * chain.tau_m[k]) ** 2) / (1 + (chain.omega * chain.tau_r[k]) ** 2)
            for k in range(layer, layers)]))
        l = layer + 1
        out |= {f"sine_gain_layer{l}": float(np.mean(np.abs(transfer))),
                f"sine_gain_predicted_layer{l}": float(abs(predicted)),
                f"sine_phase_layer{l}": float(np.mean(np.angle(transfer))),
                f"sine_phase_predicted_layer{l}": float(np.angle(predicted)),
                f"sine_update_ratio_layer{l}": ratio,
                f"sine_update_ratio_predicted_layer{l}": ratio_predicted,
                f"sine_cos_layer{l}": float(flowsim.cosine(gle, oracle))}
        rows.append({"check": "sine", "layer": l, "tau_m": tau_m, "tau_r": tau_r,
                     **{k.replace(f"_layer{l}", ""): v for k, v in out.items()
                        if k.endswith(f"_layer{l}")}})
    return out, rows, solved, grads, info


def broadband_drive(chain, modes, band, key):
    kf, kp, ka = jax.random.split(key, 3)
    n_in, n_out = chain.widths[0], chain.widths[-1]
    freqs = chain.omega * jax.random.uniform(kf, (modes,), minval=band[0], maxval=band[1])
    phase_in = jax.random.uniform(kp, (modes, n_in), maxval=2 * jnp.pi)
    phase_out = jax.random.uniform(ka, (modes, n_out), maxval=2 * jnp.pi)
    scale = 1.0 / math.sqrt(modes)

    def fn(t):
        wave_in = jnp.sin(freqs[:, None] * t + phase_in)
        wave_out = jnp.sin(freqs[:, None] * t + phase_out)
        return scale * wave_in.sum(0), 0.5 * scale * wave_out.sum(0)
    return Function(fn)


def broadband_cosine(chain, params, drive, tau_r, window):
    network = _network(chain, tau_r, activation="tanh")
    state0 = network.init_state(chain.widths[1:])
    solved = simulate(network, params, drive, 0.0, chain.T, chain.dt, state0=state0,
                      window=window)
    grads, _ = trajectory_gradient(TrajectoryOracle(chain.dt), network.field,
                                   network.loss_rate, state0, params, drive, 0.0, chain.T,
                                   window=window)
    per_layer, overall = layer_agreement(solved.updates, grads, chain.beta)
    return overall, per_layer, solved, network


def matched_output_error(chain, params, drive, window):
    """(a): max_t |r_L(t) − MLP(x(t))| with τ_r = τ_m (instantaneous coupling)."""
    network = _network(chain, chain.tau_m, activation="tanh")
    start, stop = window
    save_ts = start + chain.dt * np.arange(round((stop - start) / chain.dt))
    solved = simulate(network, params, drive, 0.0, chain.T, chain.dt,
                      state0=network.init_state(chain.widths[1:]), save_ts=save_ts)
    inputs = jax.vmap(lambda t: drive.evaluate(t)[0])(solved.ts)
    rate = inputs
    for weights in params:
        rate = jnp.tanh(rate @ weights["W"].T + weights["b"])
    return float(jnp.max(jnp.abs(solved.observed.r[-1] - rate)))


def oracle_agreement(config, params, grads_checkpoint):
    """Forward sensitivities vs checkpointed reverse mode (full T); backsolve on short and full."""
    chain = config.chain
    network = _network(chain)
    drive = sine_drive(chain)
    state0 = network.init_state(chain.widths[1:])
    window = _whole_periods(chain)

    def oracle(adjoint, T, span):
        return trajectory_gradient(TrajectoryOracle(chain.dt, adjoint=adjoint), network.field,
                                   network.loss_rate, state0, params, drive, 0.0, T,
                                   window=span)[0]

    forward = oracle("forward", chain.T, window)
    short = (0.0, config.backsolve_T)
    reference_short = oracle("checkpoint", config.backsolve_T, short)
    backsolve_short = oracle("backsolve", config.backsolve_T, short)
    backsolve_full = oracle("backsolve", chain.T, window)
    return {"oracle_forward_rel_diff": float(flowsim.relative_error(forward, grads_checkpoint)),
            "oracle_backsolve_rel_diff": float(flowsim.relative_error(backsolve_short,
                                                                      reference_short)),
            "oracle_backsolve_rel_diff_full": float(flowsim.relative_error(backsolve_full,
                                                                           grads_checkpoint))}


def run(config, ctx):
    chain = config.chain
    key_params, key_static, key_drive = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    params = init_params(key_params, tuple(chain.widths))
    static_err, static_results = static_check(config, params, key_static)
    ctx.log(f"(b) static: max |e r^T + beta dL/dW| = {static_err:.3g} ({static_results})")
    sine, rows, solved, grads, info = sine_check(config, params)
    ctx.log(f"(c) sine: oracle {flowsim.result_name(info['result'])}")
    agreement = oracle_agreement(config, params, grads)
    drive = broadband_drive(chain, config.broadband_modes, config.broadband_band, key_drive)
    window = _window(chain)
    cos_broadband, per_layer, *_ = broadband_cosine(chain, params, drive, chain.tau_r, window)
    cos_matched, per_layer_matched, *_ = broadband_cosine(chain, params, drive, chain.tau_m,
                                                          window)
    matched_err = matched_output_error(chain, params, drive, window)
    for layer, ((c, r), (cm, rm)) in enumerate(zip(per_layer, per_layer_matched), start=1):
        rows.append({"check": "broadband", "layer": layer, "cos": c, "norm_ratio": r,
                     "cos_matched": cm, "norm_ratio_matched": rm})
    ctx.write_metrics(rows)
    _plot(config, solved, sine, ctx.plot_path("sine"))
    summary = {"static_backprop_max_err": static_err,
               "static_equilibrium_results": ",".join(sorted(set(static_results))),
               **sine,
               "cos_gle_oracle_broadband": cos_broadband,
               **{f"cos_gle_oracle_broadband_layer{l}": c for l, (c, _) in enumerate(per_layer, 1)},
               **{f"norm_ratio_gle_oracle_broadband_layer{l}": r
                  for l, (_, r) in enumerate(per_layer, 1)},
               "cos_gle_oracle_matched": cos_matched,
               "matched_output_max_err": matched_err,
               **agreement,
               "oracle_result": flowsim.result_name(info["result"])}
    return summary


def _plot(config, solved, sine, path):
    chain = config.chain
    layers = len(chain.tau_m)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.0, 6.4))
    ts = np.asarray(solved.ts)
    shown = ts < ts[0] + 2 * 2 * math.pi / chain.omega
    for layer in range(layers):
        top.plot(ts[shown], np.asarray(solved.observed.u_breve[layer])[shown, 0],
                 label=f"layer {layer + 1}: ŭ (neuron 1)")
    top.plot(ts[shown], np.asarray(solved.observed.pre[0])[shown, 0], "k--", lw=0.8,
             label="input x_1")
    top.set_xlabel("t")
    top.legend(fontsize=7)
    top.set_title(f"linear chain, x = sin({chain.omega:g} t): lookahead potentials", fontsize=9)
    index = np.arange(1, layers + 1)
    measured = [sine[f"sine_update_ratio_layer{l}"] for l in index]
    predicted = [sine[f"sine_update_ratio_predicted_layer{l}"] for l in index]
    bottom.bar(index - 0.18, measured, 0.36, label="GLE / oracle (simulated)")
    bottom.bar(index + 0.18, predicted, 0.36, label="Π (1+ω²τ_m²)/(1+ω²τ_r²)")
    bottom.set_xticks(index)
    bottom.set_xlabel("layer")
    bottom.set_ylabel("|GLE update| / |oracle|")
    bottom.legend(fontsize=7)
    save_figure(fig, path, "GLE on a sine: exact phase, amplitude off by a closed form")
