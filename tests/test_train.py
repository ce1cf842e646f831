"""Training loop at tiny sizes: determinism, resume, divergence, bad checkpoints."""

import copy
import csv
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowsim
from analysis import char_training as ct
from flowsim import train
from flowsim.data.shakespeare import Splits
from flowsim.run.store import RunContext

TINY = {
    "seed": 0, "estimator": "bptt", "dtype": "float64",
    "model": {"context": 4, "embed": 3, "state": 8, "hidden": 8, "tied": True,
              "init_gain": 0.5, "attention": 0, "t1": 10, "dt": 0.2},
    "train": {"steps": 6, "batch": 8, "eval_every": 2, "checkpoint_every": 2,
              "eval_batch": 16, "rho_samples": 2, "diverge_factor": 2.0, "rho_max": 1.0},
    "optim": {"lr": 0.05, "clip": 1.0},
    "ep": {"beta": 0.05, "steps": 20}, "hep": {"radius": 0.5, "points": 4, "steps": 20},
    "rbp": {"steps": 20}, "forward": {"directions": 0},
    "penalty": {"weight": 0.0, "directions": 1, "through_states": False},
    "solver": {"retries": 3, "retry_relax_steps": 500},
}


def _splits():
    # a learnable text: a period-7 pattern with 10% random characters
    rng = np.random.default_rng(0)
    ids = np.arange(400) % 7
    noise = rng.random(400) < 0.1
    ids = np.where(noise, rng.integers(0, 12, 400), ids).astype(np.int32)
    return Splits(train=ids[:360], val=ids[360:], vocab="abcdefghijkl")


@pytest.fixture(scope="module")
def setup():
    return ct.CharSetup(copy.deepcopy(TINY), splits=_splits())


@pytest.fixture(scope="module")
def bptt(setup):
    return setup.trainer("bptt")


def _fit(setup, trainer, tmp_path, record=None, steps=None, oracle=False):
    tmp_path.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(tmp_path, 0)
    outcome = ct.fit(setup, trainer, setup.init_params(), ctx, tmp_path / "checkpoints",
                     steps=steps, oracle_on=oracle, record=record)
    return outcome, ctx


def _csv(path):
    with open(path) as f:
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(f)]


def _strip(rows):
    # NaN (no oracle) compares unequal to itself: compare its text
    return [{k: str(v) for k, v in r.items() if k != "wall_s"} for r in rows]


def test_same_seed_same_numbers(setup, bptt, tmp_path):
    a, _ = _fit(setup, bptt, tmp_path / "a")
    b, _ = _fit(setup, setup.trainer("bptt"), tmp_path / "b")  # a new trainer, same seed
    assert a.status == b.status == "ok"
    assert [r["step"] for r in a.rows] == [0, 2, 4, 6]
    assert _strip(a.rows) == _strip(b.rows)
    assert a.rows[-1]["val_ce"] < a.rows[0]["val_ce"]  # it learns something
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(x, y)


def test_same_data_and_init_whatever_the_estimator(setup, bptt):
    ep = setup.trainer("ep")
    for k in (0, 5):
        for u, v in zip(bptt.batch(k), ep.batch(k)):
            np.testing.assert_array_equal(u, v)
    assert not np.array_equal(bptt.batch(0)[0], bptt.batch(1)[0])
    p, q = setup.init_params(), setup.init_params()
    for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(q)):
        np.testing.assert_array_equal(x, y)


class Interrupt(Exception):
    pass


def test_resume_equals_uninterrupted(setup, bptt, tmp_path):
    full, _ = _fit(setup, bptt, tmp_path / "full")
    # Interrupted after row 4 is on record but before checkpoint 4 is written.
    part = tmp_path / "part"
    part.mkdir()
    ctx = RunContext(part, 0)

    def record(row):
        ctx.append_metrics(row)
        if row["step"] == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        ct.fit(setup, bptt, setup.init_params(), ctx, part / "checkpoints", oracle_on=False,
               record=record)
    assert train.checkpoint.latest(part / "checkpoints") == 2
    assert [r["step"] for r in _csv(part / "metrics.csv")] == ["0", "2", "4"]
    resumed, _ = _fit(setup, bptt, part)  # a new RunContext, as `flowsim resume` makes
    assert resumed.status == "ok"
    assert _csv(part / "metrics.csv") == _csv(tmp_path / "full" / "metrics.csv")
    for x, y in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(x, y)  # bitwise on CPU


def test_checkpoint_from_another_config_is_refused(setup, bptt, tmp_path):
    _fit(setup, bptt, tmp_path, steps=2)
    other = copy.deepcopy(TINY)
    other["optim"]["lr"] = 0.02
    with pytest.raises(train.CheckpointError, match="another config"):
        train.fit(bptt, setup.init_params(), steps=2, eval_every=2,
                  eval_batches=setup.eval_batches, record=lambda r: None,
                  checkpoint_dir=tmp_path / "checkpoints", config_hash=train.config_hash(other))
    assert train.config_hash(TINY) == train.config_hash(copy.deepcopy(TINY))
    assert train.config_hash(TINY) != train.config_hash(other)


def test_divergence_is_detected_and_reported(setup, tmp_path):
    # the task and estimator of the shared setup (compiled once), a far too large step
    trainer = train.Trainer(setup.task, ct.estimator("bptt", TINY), optax.adam(50.0), seed=0)
    tmp_path.mkdir(exist_ok=True)
    outcome = train.fit(trainer, setup.init_params(), steps=40, eval_every=1,
                        eval_batches=setup.eval_batches, record=lambda r: None,
                        checkpoint_dir=tmp_path / "checkpoints", checkpoint_every=1)
    assert outcome.status == "diverged"
    assert outcome.reason and f"at step {outcome.step}" in outcome.reason
    # the last good checkpoint is the step before, and it is on disk
    assert outcome.step >= 1 and outcome.last_checkpoint == outcome.step - 1
    assert train.checkpoint.latest(tmp_path / "checkpoints") == outcome.step - 1
    summary = ct.summary_of(outcome)
    assert summary["status"] == "diverged" and summary["diverged_step"] == outcome.step


class FailingSolve(flowsim.AbstractEstimator):
    """An estimator whose solve fails: ``finish`` NaNs the gradient and keeps the code."""

    def estimate(self, field, loss, params, z0, x, y):
        from flowsim.estimators._base import finish

        zeros = jax.tree.map(jnp.zeros_like, params)
        return finish(zeros, flowsim.RESULTS.equilibrium_failed, {})


def test_failed_solve_is_divergence_with_its_result(setup):
    trainer = train.Trainer(setup.task, FailingSolve(), ct.optimizer(TINY), seed=0)
    outcome = train.fit(trainer, setup.init_params(), steps=3, eval_every=1,
                        eval_batches=setup.eval_batches, record=lambda r: None)
    assert outcome.status == "diverged" and outcome.step == 0
    assert outcome.reason == "non-finite gradient at step 0 (estimator result: equilibrium_failed)"


def test_divergence_rules():
    rule = train.Divergence(factor=2.0, rho_max=1.0)
    ok = {"train_ce": 3.0, "val_ce": 3.0, "residual": 0.1, "rho": 0.99}
    assert rule.check(ok, best_val=2.0) is None
    assert "above 2 x best" in rule.check({**ok, "val_ce": 4.01}, best_val=2.0)
    assert "rho" in rule.check({**ok, "rho": 1.0}, best_val=2.0)
    assert "non-finite val_ce" in rule.check({**ok, "val_ce": math.nan}, best_val=2.0)


def test_cosines_and_rho_diagnostics(setup, bptt):
    params = setup.init_params()
    oracle = ct.oracle(TINY)
    diag = bptt.diagnostics(oracle, rho_samples=2)
    grads, info = bptt.gradient(params, jnp.asarray(0, jnp.int32))
    cos = diag.cosines(params, grads, 0)
    # the step's gradient *is* BPTT's: both cosines are the same number, below 1 at T1 = 10
    assert cos["cos_oracle"] == pytest.approx(cos["cos_oracle_bptt"], abs=1e-12)
    assert 0.5 < cos["cos_oracle"] < 1.0 - 1e-6
    # rho and residual against the engine's per-sample functions
    x, y = setup.eval_batches[1]
    row = diag.deployed(params, x, y)
    z_t = flowsim.relax(setup.task.field, setup.task.initial_state(params, x), params, x,
                        steps=10, dt=0.2)
    one = lambda i: (z_t[i : i + 1], x[i : i + 1])
    rhos = [flowsim.spectral_radius(setup.task.field, *one(i)[:1], params, one(i)[1], 0.2)
            for i in range(2)]
    assert row["rho"] == pytest.approx(max(float(r) for r in rhos), rel=1e-10)
    res = [float(flowsim.residual(setup.task.field, *one(i)[:1], params, one(i)[1]))
           for i in range(x.shape[0])]
    assert row["residual"] == pytest.approx(np.mean(res), rel=1e-10)
    # L(z*) by per-sample Newton against a long plain relaxation (no Newton): same equilibrium
    ce_star, failed = diag.equilibrium_ce(params, x, y)
    z_long = flowsim.relax(setup.task.field, setup.task.initial_state(params, x), params, x,
                           steps=4000, dt=0.2)
    assert float(flowsim.residual(setup.task.field, z_long, params, x)) < 1e-10
    assert failed == 0
    assert ce_star == pytest.approx(float(setup.task.loss(z_long, params, y)), rel=1e-10)
    assert abs(ce_star - row["ce"]) > 1e-4  # T1 = 10 is not at equilibrium: a different number


def test_encoded_input_gives_the_same_gradient(setup, bptt):
    """Differentiating w.r.t. (θ, u) and chaining through u(θ, x) is exact."""
    import dataclasses

    plain = train.Trainer(dataclasses.replace(setup.task, encode=None, core_field=None),
                          ct.estimator("bptt", TINY), ct.optimizer(TINY), seed=0)
    params = setup.init_params()
    g_split, _ = bptt.gradient(params, 3)
    g_plain, _ = plain.gradient(params, 3)
    for a, b in zip(jax.tree.leaves(g_split), jax.tree.leaves(g_plain)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-13)
    assert float(jnp.abs(g_split.U).max()) > 1e-4  # the encoder's part is there
