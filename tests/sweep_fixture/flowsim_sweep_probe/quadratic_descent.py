r"""Gradient descent on a quadratic: the sweep machinery's closed form.

:math:`f(x) = \tfrac{a}{2}\|x\|^2` from :math:`x_0 = (1 + \mathrm{seed})\,(1, 2, \dots, d)`
with step ``lr``: :math:`x_k = (1 - \mathrm{lr}\,a)^k x_0`, so
:math:`f(x_k) = \tfrac{a}{2}(1 - \mathrm{lr}\,a)^{2k}\|x_0\|^2`.

``run`` iterates in numpy (a single run); ``SWEEP`` is the same iteration as a
stateful core (``init``/``advance``/``summary``), so a sweep exercises the
vectorised path, its chunks and its orbax checkpoints. ``dim`` changes shapes
(separate programs).
"""

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from flowsim.run import StudyConfig
from flowsim.run.sweep_core import SweepCore


class Config(StudyConfig):
    lr: float = Field(0.1, gt=0)
    a: float = Field(2.0, gt=0, description="curvature")
    dim: int = Field(3, ge=1, le=100)
    steps: int = Field(6, ge=1, le=1000)
    chunk: int = Field(2, ge=0, le=1000, description="steps between checkpoints")


def _x0(seed, dim, xp):
    return (1 + seed) * xp.arange(1, dim + 1, dtype=xp.float64)


def run(config, ctx):
    x = _x0(config.seed, config.dim, np)
    for step in range(1, config.steps + 1):
        x = x - config.lr * config.a * x
        ctx.append_metrics({"step": step, "loss": 0.5 * config.a * float(x @ x)})
    return {"loss": 0.5 * config.a * float(x @ x), "x_sum": float(x.sum())}


def _init(config, values):
    return {"x": _x0(values["seed"], config.dim, jnp)}


def _advance(config, values, state, start, count):
    lr, a = values["lr"], values["a"]

    def step(x, _):
        x = x - lr * a * x
        return x, 0.5 * a * x @ x

    x, losses = jax.lax.scan(step, state["x"], None, length=count)
    return {"x": x}, {"loss": losses}


def _summary(config, values, state):
    x = state["x"]
    return {"loss": 0.5 * values["a"] * x @ x, "x_sum": jnp.sum(x)}


SWEEP = SweepCore(traced=("seed", "lr", "a"), init=_init, advance=_advance, summary=_summary,
                  steps=lambda config: config.steps, chunk=lambda config: config.chunk,
                  headline=("loss",))
