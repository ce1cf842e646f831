"""fep-bigram's expectations against an independent computation: beliefs relaxed by plain
gradient descent on F (no Q-flow, no Newton), sums written out, the oracle by
differentiating through the unrolled descent."""

import jax
import jax.numpy as jnp
import numpy as np
from flowsim.studies import fep_bigram

import flowsim
from flowsim import fep

V, K = 4, 2


def _descend(F, z, steps=4000, lr=0.1):
    def body(z, _):
        return jax.tree.map(lambda a, g: a - lr * g, z, jax.grad(F)(z)), None
    return jax.lax.scan(body, z, None, length=steps)[0]


def test_expected_ce_p_flow_and_oracle_match_gradient_descent_references():
    key = jax.random.split(jax.random.PRNGKey(0), 3)
    fe = fep.FreeEnergy(lambda_beta=0.0, lambda_obs=1.0)
    priors = fep.init_priors(key[0], V, 1, K, fep.IdentityTransport(), token_scale=1.0,
                             learn_sigma=False)
    p_train = np.asarray(jax.random.dirichlet(key[1], jnp.ones(V * V))).reshape(V, V)
    p_val = np.asarray(jax.random.dirichlet(key[2], jnp.ones(V * V))).reshape(V, V)
    xs, ys = np.nonzero(p_train)
    study = fep_bigram.Expectation(fe, fep.qflow_solver(100.0, 1e-10, 1e-10, 8192),
                                   jnp.asarray(xs)[:, None], jnp.asarray(ys)[:, None],
                                   jnp.asarray(p_train[xs, ys]), jnp.asarray(p_train),
                                   jnp.asarray(p_val))
    window = lambda z: jax.tree.map(lambda a: a[None], z)

    def inference(p):  # q*(x) for every x, by gradient descent on F without the [obs] term
        tokens = jnp.arange(V)[:, None]
        return jax.vmap(lambda z, x: _descend(lambda q: fe(window(q), p, x[None]), z))(
            fep.init_beliefs(p, tokens), tokens)

    def expected_ce(p, table):
        logits = fe.logits(inference(p), p)[:, -1, :]
        return -jnp.sum(table * jax.nn.log_softmax(logits, -1))

    train_ce, val_ce, failed = fep_bigram._ce(study, priors)
    assert int(failed) == 0
    np.testing.assert_allclose(train_ce, expected_ce(priors, p_train), rtol=1e-9)
    np.testing.assert_allclose(val_ce, expected_ce(priors, p_val), rtol=1e-9)

    # the P-flow: the weighted sum of dF/dtheta at each pair's clamped q*(x, y)
    x, y = jnp.asarray(xs)[:, None], jnp.asarray(ys)[:, None]
    clamped = jax.vmap(lambda z, x, y: _descend(lambda q: fe(window(q), priors, x[None], y[None]),
                                                z))(fep.init_beliefs(priors, x), x, y)
    reference = jax.grad(lambda p: jnp.sum(jnp.asarray(p_train[xs, ys]) * jax.vmap(
        lambda z, x, y: fe(window(z), p, x[None], y[None]))(clamped, x, y)))(priors)
    got, failed = fep_bigram._pflow(study, priors)
    assert int(failed) == 0
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)

    # the oracle: implicit differentiation at q*(x) against the derivative of the unrolled
    # descent (which converges to it as the descent converges)
    oracle, result = fep_bigram._oracle(study, priors)
    assert flowsim.result_name(result) == "successful"
    unrolled = jax.grad(lambda p: expected_ce(p, jnp.asarray(p_train)))(priors)
    for a, b in zip(jax.tree.leaves(oracle), jax.tree.leaves(unrolled)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
    # and the two are different directions: the P-flow is not the oracle
    assert float(flowsim.cosine(got, oracle)) < 0.99
