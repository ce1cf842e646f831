r"""gle-mnist1d: a GLE network on MNIST-1D streamed as a time series, GLE against BPTT.

**Data.** The ``mnist1d`` package generates the standard data set locally
(``make_dataset(get_dataset_args())``, seed ``data_seed`` = 42: 4000 training
and 1000 test sequences of 40 samples, 10 classes). Sample k of a sequence is
the input at time k · ``sample_interval`` (one sample per time unit by
default), linearly interpolated in between (a ``Stream``); the span is
[0, T] with T = 39 · ``sample_interval``, integrated by explicit Euler with
``dt`` = 0.2 (5 steps per sample), the published step.

**Network (this study's design, not the published one, whose exact
configuration we do not reproduce).** Input 1 → hidden layers of widths
``network.widths`` (default 3 × 128, tanh) → 10 logits (identity), γ = 0,
initial weights N(0, 1/fan_in), zero biases, float32. In every hidden
layer a fraction ``slow_fraction`` of the neurons is *slow* (τ_r =
``tau_r_slow`` = dt, τ_m spread geometrically over [``tau_slow_min``,
``tau_slow_max``]): such a neuron low-passes its input and its lookahead
undoes only part of it, so it lags it by about τ_m − τ_r; the rest are
*fast* (τ_m = τ_r = ``tau``, instantaneous). A stack of such layers is a
bank of delay-like filters, a time-delay network in continuous time whose
receptive field grows with depth. The output layer is instantaneous (τ_m =
τ_r = ``tau``). The published setup's numbers (dt = 0.2, τ = 1.2, γ = 0,
slow units with τ_r = dt) are the defaults; the published network has 6
hidden layers of 53 units (17 fast, 36 slow) and streams 72 time units per
sequence (``sample_interval`` 1.8): ``--set network.widths=[53,53,53,53,53,53]
--set network.slow_fraction=0.68 --set network.tau_slow_max=1.2
--set sample_interval=1.8`` is that size (slow τ_m spread over [0.6, 1.2]
instead of the two values τ/2 and τ).

**Loss and readout.** The target (the one-hot label) is presented over the
whole stream and the loss is the time-mean cross-entropy of the logits,
(1/T) ∫₀ᵀ ℓ dt, as in the published setup. The prediction is the argmax of
the logits averaged over the Euler grid times in [``readout_start``, T]
(``readout_start`` 0: the whole stream, the published readout's sum over
time); ``test_acc_end`` is the argmax at t = T alone. (A loss counted on part
of the stream only would scale the targets by a weight w(t): the engine's
cross-entropy error is β(y* − (Σ y*) softmax), so a target of mass w(t)
weights ℓ and GLE's output error alike; this study keeps the published
whole-stream loss.)

**Learning.** Both rules start from the same initialisation, see the same
batches (``train.batch`` sequences drawn with replacement, the same indices
for both) and take one optax Adam step per batch:

* GLE: one solve of the network (``flowsim.gle.simulate``), the accumulated
  ∫₀ᵀ ĕ rᵀ dt turned into the gradient estimate of the time-mean loss by
  ``gle_gradient`` (÷ T);
* BPTT: the exact gradient of the same discretised time-mean loss through the
  same Euler ODE (``flowsim.trajectory.trajectory_gradient``, checkpointed
  reverse mode, ÷ T).

Every ``train.eval_every`` steps each run records the test CE and accuracy,
the CE on a fixed training subset, and the cosine between the GLE estimate
and the BPTT gradient at its current parameters on a fixed batch
(``cos_gle_bptt``, whole parameter vector, and per layer).
``cos_gle_bptt_median`` is the median of that cosine along the GLE run
(``cos_gle_bptt_median_along_bptt`` the same along the BPTT run).
``train_seconds_*`` is the time of the training steps alone (compilation
included, evaluations not).

**Published figures** (Ellenberger, Haider, Jordan et al., "Backpropagation
through space, time and the brain", 2024, MNIST-1D): GLE 91.7 ± 0.8 % test
accuracy (10 seeds); baselines GRU 90.3 %, MLP 65.0 %, CNN 93.7 %.
"""

import copy
import time
from typing import Annotated, Literal

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from pydantic import Field, model_validator

from flowsim.diagnostics import cosine
from flowsim.gle import GLENetwork, Stream, gle_gradient, init_params, simulate
from flowsim.run import StudyConfig
from flowsim.run.config import Section
from flowsim.trajectory import TrajectoryOracle, trajectory_gradient

from .common import save_figure

PUBLISHED = {"published_gle_acc": 0.917, "published_gle_acc_std": 0.008,
             "published_gru_acc": 0.903, "published_mlp_acc": 0.650,
             "published_cnn_acc": 0.937}
CLASSES = 10
SEQUENCE = 40          # samples per sequence (mnist1d's final_seq_length)
RULES = ("gle", "bptt")


class Network(Section):
    widths: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        [128, 128, 128], min_length=1, max_length=16, description="hidden layer widths")
    tau: float = Field(1.2, gt=0, description="tau_m = tau_r of the fast units and the output")
    slow_fraction: float = Field(0.67, ge=0, le=1,
                                 description="share of slow (lagging) units per hidden layer")
    tau_slow_min: float = Field(0.6, gt=0, description="smallest tau_m of the slow units")
    tau_slow_max: float = Field(3.0, gt=0, description="largest tau_m of the slow units")
    tau_r_slow: float = Field(0.2, gt=0, description="tau_r of the slow units")
    gain: float = Field(1.0, gt=0, le=100, description="init weights N(0, gain^2 / fan_in)")

    @model_validator(mode="after")
    def _spread(self):
        if not self.tau_slow_min <= self.tau_slow_max:
            raise ValueError(f"tau_slow_min ({self.tau_slow_min}) must not exceed tau_slow_max "
                             f"({self.tau_slow_max})")
        return self


class Training(Section):
    steps: int = Field(1500, ge=1, le=10**7, description="Adam steps of each rule")
    batch: int = Field(100, ge=1, le=4000, description="sequences per step")
    lr: float = Field(0.01, gt=0, le=10)
    eval_every: int = Field(100, ge=1, description="steps between evaluations")
    eval_chunk: int = Field(500, ge=1, le=4000, description="test sequences per evaluation solve")
    train_eval: int = Field(1000, ge=1, le=4000, description="training sequences in the train CE")
    cos_batch: int = Field(100, ge=1, le=4000, description="sequences of the cosine's batch")


class Config(StudyConfig):
    dt: float = Field(0.2, gt=0, description="Euler step (the published 0.2)")
    sample_interval: float = Field(1.0, gt=0, le=1000,
                                   description="time units between consecutive samples")
    readout_start: float = Field(0.0, ge=0, description="logits averaged over [readout_start, T]")
    data_seed: int = Field(42, ge=0, lt=2**32, description="mnist1d seed (42: the standard set)")
    precision: Literal["float32", "float64"] = "float32"
    network: Network = Network()
    train: Training = Training()

    @model_validator(mode="after")
    def _steps_fit(self):
        net = self.network
        taus = {"network.tau": net.tau}
        if net.slow_fraction > 0:
            taus.update({"network.tau_slow_min": net.tau_slow_min,
                         "network.tau_r_slow": net.tau_r_slow})
        for name, tau in taus.items():
            if self.dt > tau:
                raise ValueError(f"dt = {self.dt} exceeds {name} = {tau}: explicit Euler would "
                                 f"overshoot; take dt <= {tau}")
        span = span_of(self)
        if not self.readout_start < span - self.dt:
            raise ValueError(f"readout_start ({self.readout_start}) must lie before the end of "
                             f"the stream minus one step ({span} - dt)")
        if span / self.dt > 10**6:
            raise ValueError(f"the stream ({span} time units) takes more than 10^6 Euler steps "
                             f"of dt = {self.dt}")
        return self


def span_of(config) -> float:
    """T: the time of the last sample (the first is at 0)."""
    return (SEQUENCE - 1) * config.sample_interval


def dtype_of(config):
    return jnp.float64 if config.precision == "float64" else jnp.float32


# --- data ---------------------------------------------------------------------------

def load_data(data_seed: int) -> dict:
    """MNIST-1D generated locally by the ``mnist1d`` package (no download)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = copy.copy(get_dataset_args())
    args.seed = data_seed
    data = make_dataset(args)
    if data["x"].shape[1] != SEQUENCE:
        raise RuntimeError(f"mnist1d returned sequences of {data['x'].shape[1]} samples, "
                           f"expected {SEQUENCE}")
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


def make_stream(x, y, config, dtype) -> Stream:
    """Sequences x (batch, 40) as inputs (time, batch, 1) at k · sample_interval, the
    one-hot labels y (batch,) as the target over the whole stream."""
    ts = jnp.arange(SEQUENCE, dtype=dtype) * config.sample_interval
    xs = jnp.swapaxes(jnp.asarray(x, dtype), 0, 1)[..., None]
    ys = jnp.broadcast_to(jax.nn.one_hot(jnp.asarray(y), CLASSES, dtype=dtype),
                          (SEQUENCE, *np.shape(y), CLASSES))
    return Stream(ts, xs, ys)


# --- the network and the two gradients ----------------------------------------------

def layer_taus(width, net: Network, dtype):
    """Per-neuron (tau_m, tau_r) of a hidden layer: slow units first, then fast ones."""
    slow = round(net.slow_fraction * width)
    tau_m, tau_r = np.full(width, net.tau), np.full(width, net.tau)
    tau_m[:slow] = np.geomspace(net.tau_slow_min, net.tau_slow_max, slow) if slow else []
    tau_r[:slow] = net.tau_r_slow
    return jnp.asarray(tau_m, dtype), jnp.asarray(tau_r, dtype)


def build(config):
    """(network, sizes, initial params) of the study."""
    dtype = dtype_of(config)
    net = config.network
    taus = [layer_taus(w, net, dtype) for w in net.widths]
    network = GLENetwork(tau_m=(*(t[0] for t in taus), net.tau),
                         tau_r=(*(t[1] for t in taus), net.tau), gamma=0.0, beta=1.0,
                         activation="tanh", output_activation="identity", output="ce")
    network.check_step(config.dt)
    sizes = (1, *net.widths, CLASSES)
    params = init_params(jax.random.PRNGKey(config.seed), sizes, dtype=dtype, gain=net.gain)
    return network, sizes, params


def gle_estimate(network, sizes, params, stream, config, batch):
    """GLE's estimate of the gradient of the time-mean loss, and that loss."""
    span = span_of(config)
    state0 = network.init_state(sizes[1:], (batch,), dtype=dtype_of(config))
    solution = simulate(network, params, stream, 0.0, span, config.dt, state0=state0)
    return gle_gradient(network, solution.updates, span), solution.loss / span


def bptt_gradient(network, sizes, params, stream, config, batch):
    """The exact gradient of the same discretised time-mean loss (BPTT through the ODE)."""
    span = span_of(config)
    state0 = network.init_state(sizes[1:], (batch,), dtype=dtype_of(config))
    grads, info = trajectory_gradient(TrajectoryOracle(config.dt), network.field,
                                      network.loss_rate, state0, params, stream, 0.0, span)
    return jax.tree.map(lambda g: g / span, grads), info["loss"] / span


def readout_times(config):
    span = span_of(config)
    steps = int(np.ceil(span / config.dt - 1e-9))
    grid = np.arange(steps) * config.dt   # the times the Euler solver evaluates the output
    return grid[grid >= config.readout_start - 0.5 * config.dt]


def make_functions(config, network, sizes):
    """Jitted (step per rule, evaluation, cosine) closures of the study."""
    dtype = dtype_of(config)
    optimizer = optax.adam(config.train.lr)
    rules = {"gle": gle_estimate, "bptt": bptt_gradient}
    span = span_of(config)
    times = jnp.asarray(np.append(readout_times(config), span), dtype)

    def make_step(rule):
        @jax.jit
        def step(params, opt_state, x, y):
            grads, loss = rules[rule](network, sizes, params, make_stream(x, y, config, dtype),
                                      config, x.shape[0])
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss
        return step

    @jax.jit
    def evaluate(params, x, y):
        """(time-mean CE, correct with the averaged readout, correct at t = T), summed."""
        state0 = network.init_state(sizes[1:], (x.shape[0],), dtype=dtype)
        solution = simulate(network, params, make_stream(x, y, config, dtype), 0.0, span,
                            config.dt, state0=state0, save_ts=times)
        logits = solution.observed.r[-1]              # (readout times and T, batch, classes)
        mean_hit = jnp.argmax(jnp.mean(logits[:-1], axis=0), -1) == y
        end_hit = jnp.argmax(logits[-1], -1) == y
        return solution.loss / span * x.shape[0], jnp.sum(mean_hit), jnp.sum(end_hit)

    @jax.jit
    def cosines(params, x, y):
        stream = make_stream(x, y, config, dtype)
        gle, _ = gle_estimate(network, sizes, params, stream, config, x.shape[0])
        bptt, _ = bptt_gradient(network, sizes, params, stream, config, x.shape[0])
        return cosine(gle, bptt), jnp.stack([cosine(g, b) for g, b in zip(gle, bptt)])

    return {rule: make_step(rule) for rule in RULES}, optimizer, evaluate, cosines


def evaluate_set(evaluate, params, x, y, chunk):
    """(mean CE, accuracy averaged readout, accuracy at T) over a set, in chunks."""
    ce = mean_hits = end_hits = 0.0
    for start in range(0, len(y), chunk):
        c, m, e = evaluate(params, x[start:start + chunk], y[start:start + chunk])
        ce, mean_hits, end_hits = ce + float(c), mean_hits + float(m), end_hits + float(e)
    return ce / len(y), mean_hits / len(y), end_hits / len(y)


# --- the study ----------------------------------------------------------------------

def run(config, ctx):
    data = load_data(config.data_seed)
    network, sizes, params0 = build(config)
    steps_fns, optimizer, evaluate, cosines = make_functions(config, network, sizes)
    tc = config.train
    rng = np.random.default_rng(config.seed)
    batches = rng.integers(0, len(data["y"]), size=(tc.steps, tc.batch))  # shared by both rules
    fixed = rng.choice(len(data["y"]), size=max(tc.train_eval, tc.cos_batch), replace=False)
    x_train, y_train = data["x"][fixed[:tc.train_eval]], data["y"][fixed[:tc.train_eval]]
    x_cos, y_cos = data["x"][fixed[:tc.cos_batch]], data["y"][fixed[:tc.cos_batch]]
    x_test, y_test = data["x_test"], data["y_test"]
    chunk = tc.eval_chunk
    ctx.log(f"gle-mnist1d: widths={list(config.network.widths)} T={span_of(config)} "
            f"dt={config.dt} steps={tc.steps} batch={tc.batch} lr={tc.lr} {config.precision}")

    def record(rule, step, params, train_loss, seconds):
        test_ce, test_acc, test_acc_end = evaluate_set(evaluate, params, x_test, y_test, chunk)
        train_ce, train_acc, _ = evaluate_set(evaluate, params, x_train, y_train, chunk)
        cos, per_layer = cosines(params, x_cos, y_cos)
        row = {"rule": rule, "step": step, "batch_ce": train_loss, "train_ce": train_ce,
               "train_acc": train_acc, "test_ce": test_ce, "test_acc": test_acc,
               "test_acc_end": test_acc_end, "cos_gle_bptt": float(cos),
               **{f"cos_layer_{i}": float(c) for i, c in enumerate(np.asarray(per_layer), 1)},
               "train_seconds": seconds}
        ctx.append_metrics(row)
        return row

    rows, finals = [], {}
    for rule in RULES:
        step_fn, params, opt_state = steps_fns[rule], params0, optimizer.init(params0)
        rows.append(record(rule, 0, params, float("nan"), 0.0))
        seconds, losses = 0.0, []
        for k in ctx.progress(range(1, tc.steps + 1), desc=rule):
            start = time.perf_counter()
            idx = batches[k - 1]
            params, opt_state, loss = step_fn(params, opt_state, data["x"][idx], data["y"][idx])
            loss = float(loss)
            seconds += time.perf_counter() - start
            losses.append(loss)
            if not np.isfinite(loss):
                ctx.log(f"{rule}: non-finite training loss at step {k}; stopped")
                break
            if k % tc.eval_every == 0 or k == tc.steps:
                rows.append(record(rule, k, params, float(np.mean(losses)), seconds))
                losses = []
                last = rows[-1]
                ctx.log(f"{rule} step {k}: test acc {last['test_acc']:.3f} test CE "
                        f"{last['test_ce']:.3f} train CE {last['train_ce']:.3f} "
                        f"cos {last['cos_gle_bptt']:.3f}", echo=False)
        finals[rule] = {"row": rows[-1], "seconds": seconds, "steps": k,
                        "finite": bool(np.isfinite(loss))}
    ctx.write_metrics(rows)
    plot(rows, ctx.plot_path("accuracy"))

    gle_rows = [r for r in rows if r["rule"] == "gle"]
    bptt_rows = [r for r in rows if r["rule"] == "bptt"]
    summary = {}
    for rule in RULES:
        last = finals[rule]["row"]
        summary.update({
            f"test_acc_{rule}": last["test_acc"], f"test_acc_end_{rule}": last["test_acc_end"],
            f"test_ce_{rule}": last["test_ce"], f"train_ce_{rule}": last["train_ce"],
            f"train_acc_{rule}": last["train_acc"],
            f"best_test_acc_{rule}": max(r["test_acc"] for r in rows if r["rule"] == rule),
            f"steps_{rule}": finals[rule]["steps"],
            f"train_seconds_{rule}": finals[rule]["seconds"]})
    along_gle = [r["cos_gle_bptt"] for r in gle_rows]
    summary.update({
        "initial_test_acc": gle_rows[0]["test_acc"], "initial_test_ce": gle_rows[0]["test_ce"],
        "cos_gle_bptt_init": along_gle[0],
        "cos_gle_bptt_median": float(np.median(along_gle)),
        "cos_gle_bptt_min": float(np.min(along_gle)),
        "cos_gle_bptt_final": along_gle[-1],
        "cos_gle_bptt_median_along_bptt": float(np.median([r["cos_gle_bptt"]
                                                           for r in bptt_rows])),
        "parameters": int(sum(p.size for p in jax.tree.leaves(params0))),
        "span": span_of(config), "euler_steps_per_sequence": len(readout_times(config)),
        **PUBLISHED,
    })
    if not all(f["finite"] for f in finals.values()):
        summary.update(status="diverged", reason="non-finite training loss: " + ", ".join(
            rule for rule in RULES if not finals[rule]["finite"]))
    return summary


def plot(rows, path):
    """Test accuracy, test CE and cos(GLE, BPTT) against step, GLE and BPTT side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    colors = {"gle": "C0", "bptt": "C1"}
    for rule in RULES:
        sel = [r for r in rows if r["rule"] == rule]
        steps = [r["step"] for r in sel]
        axes[0].plot(steps, [r["test_acc"] for r in sel], "o-", ms=3, color=colors[rule],
                     label=f"{rule.upper()} (logits averaged)")
        axes[0].plot(steps, [r["test_acc_end"] for r in sel], ":", color=colors[rule],
                     label=f"{rule.upper()} (at T)")
        axes[1].plot(steps, [r["test_ce"] for r in sel], "o-", ms=3, color=colors[rule],
                     label=f"{rule.upper()} test")
        axes[1].plot(steps, [r["train_ce"] for r in sel], "--", color=colors[rule],
                     label=f"{rule.upper()} train")
        axes[2].plot(steps, [r["cos_gle_bptt"] for r in sel], "o-", ms=3, color=colors[rule],
                     label=f"along the {rule.upper()} run")
    for key, style in (("published_gle_acc", "-"), ("published_gru_acc", "--"),
                       ("published_mlp_acc", ":"), ("published_cnn_acc", "-.")):
        name = key.split("_")[1].upper()
        axes[0].axhline(PUBLISHED[key], color="gray", ls=style, lw=0.8,
                        label=f"published {name} {PUBLISHED[key]:.1%}")
    axes[0].set_ylabel("test accuracy")
    axes[0].set_ylim(0, 1.4)  # the legend above the published lines
    axes[0].set_yticks(np.linspace(0, 1, 6))
    axes[1].set_ylabel("time-mean CE (nats)")
    axes[2].set_ylabel("cos(GLE estimate, BPTT gradient)")
    axes[2].set_ylim(-1.05, 1.05)
    axes[2].axhline(0, color="gray", lw=0.6)
    for ax in axes:
        ax.set_xlabel("Adam step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2, loc="upper center")
    axes[1].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    save_figure(fig, path,
                "GLE vs BPTT through the same ODE on MNIST-1D (same init, batches, Adam)")
