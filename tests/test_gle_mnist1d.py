"""gle-mnist1d: the stream, GLE's estimate against BPTT, and a few steps of each rule."""

import jax
import numpy as np
import pytest
from pydantic import ValidationError

pytest.importorskip("mnist1d")

from flowsim.studies import gle_mnist1d as gm


@pytest.fixture(scope="module")
def data():
    return gm.load_data(42)


def _config(**network):
    return gm.Config(precision="float64",
                     network=gm.Network(**{"widths": [8, 8], **network}))


def _both(config, x, y):
    network, sizes, params = gm.build(config)

    @jax.jit
    def both(params, x, y):
        stream = gm.make_stream(x, y, config, np.float64)
        gle, gle_loss = gm.gle_estimate(network, sizes, params, stream, config, len(y))
        bptt, bptt_loss = gm.bptt_gradient(network, sizes, params, stream, config, len(y))
        return gle, bptt, gle_loss, bptt_loss

    gle, bptt, gle_loss, bptt_loss = both(params, x, y)
    return gle, bptt, float(gle_loss), float(bptt_loss)


def test_the_data_is_mnist1d_standard_set(data):
    # 4000/1000 split, 10 balanced-ish classes, standardised as mnist1d does
    assert data["x"].shape == (4000, 40) and data["x_test"].shape == (1000, 40)
    assert sorted(np.unique(data["y"])) == list(range(10))
    both = np.concatenate([data["x"], data["x_test"]])
    assert abs(both.mean()) < 1e-9 and abs(both.std() - 1) < 1e-9


def test_the_stream_reproduces_the_samples_at_the_sample_times(data):
    config = gm.Config(sample_interval=1.8, precision="float64")
    x, y = data["x"][:5], data["y"][:5]
    stream = gm.make_stream(x, y, config, np.float64)
    for k in (0, 1, 17, 38, 39):
        inputs, targets = stream.evaluate(k * 1.8)
        np.testing.assert_allclose(np.asarray(inputs)[:, 0], x[:, k], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(np.argmax(np.asarray(targets), -1), y)
        np.testing.assert_allclose(np.asarray(targets).sum(-1), 1.0)
    inputs, _ = stream.evaluate(10.5 * 1.8)  # linear in between
    np.testing.assert_allclose(np.asarray(inputs)[:, 0], 0.5 * (x[:, 10] + x[:, 11]), atol=1e-12)
    assert gm.span_of(config) == pytest.approx(39 * 1.8)


def test_slow_units_lag_and_fast_units_do_not():
    taus_m, taus_r = gm.layer_taus(9, gm.Network(slow_fraction=2 / 3), np.float64)
    taus_m, taus_r = np.asarray(taus_m), np.asarray(taus_r)
    np.testing.assert_allclose(taus_m[:6], np.geomspace(0.6, 3.0, 6))
    np.testing.assert_allclose(taus_r[:6], 0.2)
    np.testing.assert_allclose(taus_m[6:], 1.2)
    np.testing.assert_allclose(taus_r[6:], 1.2)


def test_gle_equals_bptt_when_every_unit_is_instantaneous(data):
    """tau_m = tau_r everywhere: the network is memoryless, e = backprop's error at each t,
    and GLE's integrated update is BPTT's gradient of the Euler-discretised loss."""
    config = _config(slow_fraction=0.0)
    gle, bptt, gle_loss, bptt_loss = _both(config, data["x"][:4], data["y"][:4])
    assert gle_loss == pytest.approx(bptt_loss, rel=1e-12)
    for g, b in zip(jax.tree.leaves(gle), jax.tree.leaves(bptt)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(b), rtol=1e-8, atol=1e-12)


def test_gle_estimate_points_along_bptt_with_lagging_units(data):
    config = _config()
    gle, bptt, _, _ = _both(config, data["x"][:8], data["y"][:8])
    # the instantaneous output layer is exact; the lagging hidden layers are approximate
    for g, b in zip(jax.tree.leaves(gle[-1]), jax.tree.leaves(bptt[-1])):
        np.testing.assert_allclose(np.asarray(g), np.asarray(b), rtol=1e-8, atol=1e-12)
    cos = float(gm.cosine(gle, bptt))
    first = float(gm.cosine(gle[0], bptt[0]))
    assert 0.9 < cos < 1 - 1e-6, cos
    assert first < 1 - 1e-4, first  # not trivially equal: the lags make GLE an estimate


def test_a_few_steps_of_each_rule_reduce_the_training_loss(data):
    config = gm.Config(precision="float64", network=gm.Network(widths=[8]),
                       train=gm.Training(lr=0.02))
    network, sizes, params0 = gm.build(config)
    steps, optimizer, _, _ = gm.make_functions(config, network, sizes)
    x, y = data["x"][:16], data["y"][:16]
    for rule in gm.RULES:
        params, state = params0, optimizer.init(params0)
        losses = []
        for _ in range(7):  # each step returns the loss before its update
            params, state, loss = steps[rule](params, state, x, y)
            losses.append(float(loss))
        assert losses[-1] < losses[0] - 0.05, (rule, losses)


@pytest.mark.parametrize("change, message", [
    ({"dt": 0.7}, "exceeds network.tau_slow_min"),
    ({"network": {"tau_r_slow": 0.1}}, "exceeds network.tau_r_slow"),
    ({"network": {"tau": 0.0}}, "greater than 0"),
    ({"network": {"tau_slow_min": 4.0}}, "must not exceed tau_slow_max"),
    ({"readout_start": 50.0}, "before the end of the stream"),
])
def test_configs_the_engine_would_reject_are_rejected_up_front(change, message):
    with pytest.raises(ValidationError, match=message):
        gm.Config(**change)
