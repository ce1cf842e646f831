"""The one training loop at tiny sizes: determinism, resume, divergence, skipped steps, cosines."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flowsim.studies import char_training as ct
from flowsim.studies.common import config_hash, read_rows

import flowsim
from flowsim import train
from flowsim.data.shakespeare import Splits
from flowsim.ep import char_model as cm
from flowsim.run.store import RunContext

TINY = {
    "seed": 0, "estimator": "bptt", "dtype": "float64",
    "model": {"context": 4, "embed": 3, "state": 8, "hidden": 8, "tied": True,
              "init_gain": 0.5, "attention": 0, "t1": 10, "dt": 0.2},
    "train": {"steps": 6, "batch": 8, "eval_every": 2, "checkpoint_every": 2,
              "eval_batch": 16, "rho_krylov": 8, "diverge_factor": 2.0, "rho_max": 1.0},
    "optim": {"lr": 0.05, "clip": 1.0},
    "ep": {"beta": 0.05, "steps": 20, "symmetric": True},
    "hep": {"radius": 0.5, "points": 4, "steps": 20}, "rbp": {"steps": 20},
    "forward": {"directions": 0},
    "penalty": {"weight": 0.0, "directions": 1, "through_states": False, "carried": True},
    "solver": {"retries": 3, "retry_relax_steps": 500},
}


def tiny(**changes):
    data = {**TINY, **changes}
    return ct.CharConfig.model_validate(data)


def _splits():
    # a learnable text: a period-7 pattern with 10% random characters
    rng = np.random.default_rng(0)
    ids = np.arange(400) % 7
    noise = rng.random(400) < 0.1
    ids = np.where(noise, rng.integers(0, 12, 400), ids).astype(np.int32)
    return Splits(train=ids[:360], val=ids[360:], vocab="abcdefghijkl")


@pytest.fixture(scope="module")
def setup():
    return ct.CharSetup(tiny(), splits=_splits())


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
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in read_rows(path)]


def _strip(rows):
    # NaN (no oracle) compares unequal to itself: compare its text
    return [{k: str(v) for k, v in r.items() if k != "wall_s"} for r in rows]


@pytest.mark.slow
def test_same_seed_same_numbers(setup, bptt, tmp_path):
    a, _ = _fit(setup, bptt, tmp_path / "a")
    b, _ = _fit(setup, setup.trainer("bptt"), tmp_path / "b")  # a new trainer, same seed
    assert a.status == b.status == "ok"
    assert [r["step"] for r in a.rows] == [0, 2, 4, 6]
    assert _strip(a.rows) == _strip(b.rows)
    assert a.rows[-1]["val_ce"] < a.rows[0]["val_ce"]  # it learns something
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(x, y)


def test_same_data_and_init_whatever_the_rule(setup, bptt):
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
    assert [r["step"] for r in _csv(part / "metrics.csv")] == [0, 2, 4]
    resumed, _ = _fit(setup, bptt, part)  # a new RunContext, as `flowsim resume` makes
    assert resumed.status == "ok"
    assert _strip(_csv(part / "metrics.csv")) == _strip(_csv(tmp_path / "full" / "metrics.csv"))
    for x, y in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(x, y)  # bitwise on CPU


def test_checkpoint_from_another_config_is_refused(setup, bptt, tmp_path):
    _fit(setup, bptt, tmp_path, steps=2)
    other = tiny(optim={"lr": 0.02, "clip": 1.0})
    with pytest.raises(train.CheckpointError, match="another config"):
        train.fit(bptt, setup.init_params(), steps=2, eval_every=2, record=lambda r: None,
                  checkpoint_dir=tmp_path / "checkpoints", config_hash=config_hash(other))
    assert config_hash(tiny()) == config_hash(tiny())
    assert config_hash(tiny()) != config_hash(other)


def test_divergence_is_detected_and_reported(setup, tmp_path):
    # the task and rule of the shared setup (compiled once), a far too large step
    trainer = train.Trainer(setup.task, ct.rule("bptt", tiny()), optax.adam(50.0), seed=0)
    tmp_path.mkdir(exist_ok=True)
    outcome = train.fit(trainer, setup.init_params(), steps=40, eval_every=1,
                        record=lambda r: None, checkpoint_dir=tmp_path / "checkpoints",
                        checkpoint_every=1, divergence=ct.divergence(tiny()))
    assert outcome.status == "diverged"
    assert outcome.reason and f"at step {outcome.step}" in outcome.reason
    # the last good checkpoint is the step before, and it is on disk
    assert outcome.step >= 1 and outcome.last_checkpoint == outcome.step - 1
    assert train.checkpoint.latest(tmp_path / "checkpoints") == outcome.step - 1
    summary = ct.summary_of(outcome)
    assert summary["status"] == "diverged" and summary["diverged_step"] == outcome.step


def test_failed_estimates_are_skipped_then_stop_the_run(setup):
    """A step whose estimate failed leaves θ unchanged; past ``max_skipped_steps`` the run stops."""

    class Failing(flowsim.AbstractRule):
        def estimate(self, problem, z0, params, x, y, key):
            grads, info = flowsim.BPTT(10, 0.2).estimate(problem, z0, params, x, y, key)
            nan = jax.tree.map(lambda g: jnp.full_like(g, jnp.nan), grads)
            failed = flowsim.RESULTS.equilibrium_failed
            return nan, {**info, "result": failed, "sample_results": failed,
                         "failed_samples": jnp.asarray(1, jnp.int32)}

    trainer = train.Trainer(setup.task, Failing(), ct.optimizer(tiny()), seed=0)
    params = setup.init_params()
    stop_now = train.fit(trainer, params, steps=3, eval_every=1, record=lambda r: None)
    assert stop_now.status == "diverged" and stop_now.step == 0
    assert stop_now.reason == ("unusable gradient at step 0 (rule result equilibrium_failed, "
                               "1 of 1 samples failed)")
    tolerant = train.fit(trainer, params, steps=3, eval_every=1, record=lambda r: None,
                         divergence=train.Divergence(max_skipped_steps=10))
    assert tolerant.status == "ok" and tolerant.skipped == 3  # the last step is never applied
    for a, b in zip(jax.tree.leaves(tolerant.params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)  # no step was applied
    assert len({r["val_ce"] for r in tolerant.rows}) == 1


def test_divergence_rules():
    rule = train.Divergence(factor=2.0, limits=(("rho", 1.0),))
    ok = {"train_ce": 3.0, "val_ce": 3.0, "residual": 0.1, "rho": 0.99}
    assert rule.check(ok, reference=2.0) is None
    assert "above 2 x best" in rule.check({**ok, "val_ce": 4.01}, reference=2.0)
    assert "rho" in rule.check({**ok, "rho": 1.0}, reference=2.0)
    assert rule.check({**ok, "val_ce": math.nan}, reference=2.0) == "non-finite val_ce (nan)"
    # a NaN mean over solves that all failed says so
    failed = {**ok, "val_ce": math.nan, "val_failed": 256, "pred_failed": 0}
    assert rule.check(failed, reference=2.0) == "non-finite val_ce (nan); failed solves: val_failed 256"
    first = train.Divergence(monitor="F", factor=10.0, against="first", finite=("F",))
    assert first.check({"F": 9.0}, reference=1.0) is None
    assert "above 10 x first" in first.check({"F": 11.0}, reference=1.0)
    with pytest.raises(ValueError, match="against"):
        train.Divergence(against="last")


@pytest.mark.slow
def test_cosines_are_against_an_independent_oracle(setup):
    """The loop's cosines equal the ones computed here from flowsim.gradient directly."""
    config = tiny()
    ep = setup.trainer("ep")
    params = setup.init_params()
    grads, _ = ep.gradient(params, 3)
    oracle, bptt = ct.oracle(config), flowsim.BPTT(10, 0.2)
    cos = train.cosines(ep, params, grads, 3, oracle, {"bptt": bptt})
    x, y = ep.batch(3)
    z0 = cm.initial_state(params, x)
    problem = setup.task.problem

    @jax.jit
    def direct(params):  # the three estimates in one compiled program
        return [flowsim.gradient(rule, problem, z0, params, x, y)
                for rule in (oracle, bptt, ct.rule("ep", config))]

    (g_star, info), (g_bptt, _), (g_ep, _) = direct(params)
    assert flowsim.result_name(info["result"]) == "successful"
    assert cos["cos_oracle"] == pytest.approx(float(flowsim.cosine(g_ep, g_star)), abs=1e-12)
    assert cos["cos_oracle_bptt"] == pytest.approx(float(flowsim.cosine(g_bptt, g_star)), abs=1e-12)
    # tied model, 20-step nudged phase: EP is close to the oracle; BPTT at T1 = 10 is not
    assert cos["cos_oracle"] > 0.99 and cos["cos_oracle_bptt"] < cos["cos_oracle"]


def test_rows_against_the_engine_functions(setup):
    """Every row column from an independent computation: dense eigenvalues per sample,
    residuals per sample, the CE of z_T, and L(z*) from a long plain relaxation."""
    params = setup.init_params()
    x, y = setup.task.eval_batches[1]
    row = setup.task.evaluate(params)
    u = cm.encode(params, x)
    z_t = flowsim.relax(cm.core_field, cm.initial_state(params, x), params, u, steps=10, dt=0.2)
    rhos, res = [], []
    for i in range(x.shape[0]):
        jac = np.eye(8) + 0.2 * np.asarray(jax.jacfwd(lambda v: cm.field(v, params, x[i]))(z_t[i]))
        rhos.append(np.max(np.abs(np.linalg.eigvals(jac))))
        res.append(float(flowsim.residual(cm.field, z_t[i], params, x[i])))
    assert row["rho_max"] == pytest.approx(max(rhos), rel=1e-10)
    assert row["rho_median"] == pytest.approx(float(np.median(rhos)), rel=1e-10)
    assert row["rho_argmax"] == int(np.argmax(rhos)) and row["rho_bound"] < 1e-8
    assert row["residual_max"] == pytest.approx(max(res), rel=1e-10)
    assert row["residual_median"] == pytest.approx(float(np.median(res)), rel=1e-10)
    assert row["residual_argmax"] == int(np.argmax(res))
    assert row["val_ce"] == pytest.approx(float(cm.cross_entropy(z_t, params, y)), rel=1e-12)
    # L(z*) by per-sample Newton against a long plain relaxation (no Newton): same equilibrium
    z_long = flowsim.relax(cm.field, cm.initial_state(params, x), params, x, steps=4000, dt=0.2)
    assert float(flowsim.residual(cm.field, z_long, params, x)) < 1e-10
    assert row["val_failed"] == 0
    assert row["val_ce_star"] == pytest.approx(float(cm.cross_entropy(z_long, params, y)),
                                               rel=1e-10)
    assert abs(row["val_ce_star"] - row["val_ce"]) > 1e-4  # T1 = 10 is short of z*


def test_encoded_input_gives_the_same_gradient(setup, bptt):
    """Differentiating w.r.t. (θ, u) and chaining through u(θ, x) is exact."""
    plain_problem = flowsim.Problem(cm.field, flowsim.ParametrisedLoss(cm.cross_entropy),
                                    initial_state=cm.initial_state)
    plain = train.Trainer(dataclasses.replace(setup.task, problem=plain_problem),
                          ct.rule("bptt", tiny()), ct.optimizer(tiny()), seed=0)
    params = setup.init_params()
    g_split, _ = bptt.gradient(params, 3)
    g_plain, _ = plain.gradient(params, 3)
    for a, b in zip(jax.tree.leaves(g_split), jax.tree.leaves(g_plain)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-13)
    assert float(jnp.abs(g_split.U).max()) > 1e-4  # the encoder's part is there


@pytest.mark.slow
def test_float32_training_stays_float32_and_records_the_equilibrium_loss(tmp_path):
    """dtype=float32: parameters, states and updates stay float32; the per-sample
    equilibria reach their float32 tolerance (ε^{3/4}), so val_ce_star is a number;
    the oracle's cosine is taken in float64."""
    config = tiny(dtype="float32", estimator="ep")
    setup32 = ct.CharSetup(config, splits=_splits())
    trainer = setup32.trainer()
    ctx = RunContext(tmp_path, 0)
    outcome = ct.fit(setup32, trainer, setup32.init_params(), ctx, tmp_path / "checkpoints")
    assert outcome.status == "ok"
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(outcome.params))
    for row in outcome.rows:
        assert row["val_failed"] == 0 and np.isfinite(row["val_ce_star"])
        assert row["cos_oracle"] > 0.99  # EP on the tied model, against the float64 oracle
    grads, info = trainer.gradient(outcome.params, 7)
    assert jax.tree.leaves(grads)[0].dtype == jnp.float32
    assert flowsim.result_name(info["result"]) == "successful"
    assert float(info["residual"]) < 1e-4  # float32: ε^{3/4}(1 + ‖z‖) ≈ 6e-6 (1 + ‖z‖)
