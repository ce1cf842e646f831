"""Q-flow and P-flow (seeds 000/001): natural gradient, monotone F, envelope theorem, overfit."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowsim
from flowsim import fep

V, N, K, B = 6, 4, 3, 2


@pytest.fixture(scope="module")
def problem():
    priors = fep.init_priors(jax.random.PRNGKey(0), V, N, K, fep.IdentityTransport(), token_scale=0.5)
    seq = jax.random.randint(jax.random.PRNGKey(1), (B, N + 1), 0, V)
    fe = fep.FreeEnergy(alpha=1.0, lambda_beta=0.7, lambda_obs=1.5, tau=0.9, kappa=0.8)
    return fe, priors, seq[:, :-1], seq[:, 1:]


def _flat(tree):
    return jnp.concatenate([jnp.ravel(a) for a in jax.tree_util.tree_leaves(tree)])


def _dot(a, b):
    return sum(jnp.vdot(u, v) for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_natural_gradient_is_inverse_fisher_times_gradient(problem):
    """Fisher = Hessian of z' -> KL(q_z || q_z') at z' = z (independent of the closed form in qflow.py)."""
    fe, priors, x, y = problem
    z = fep.init_beliefs(priors, x)
    z = (z[0] + 0.3, z[1] - 0.2)
    flat0, unravel = jax.flatten_util.ravel_pytree(z)

    def kl_to(flat_prime):
        (m, s), (m2, s2) = unravel(flat0), unravel(flat_prime)
        return jnp.sum(fep.kl_log_sigma(m, s, m2, s2))

    fisher = jax.jit(jax.hessian(kl_to))(flat0)
    grad = jax.flatten_util.ravel_pytree(jax.jit(jax.grad(fe))(z, priors, y))[0]
    expected = -jnp.linalg.solve(fisher, grad)
    nat = jax.jit(lambda z: fep.natural_gradient(fe, z, priors, y))(z)
    got = jax.flatten_util.ravel_pytree(nat)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def trajectory(problem):
    """One compiled Q-flow solve (diffrax Tsit5, tight tolerances) shared by the tests below."""
    fe, priors, x, y = problem
    ts = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-2, 200.0, 60)])
    flow = fep.QFlow(rtol=1e-11, atol=1e-11, max_steps=8192)
    solve = jax.jit(lambda p, z0: flow.trajectory(fe, z0, p, y, ts))
    return solve, solve(priors, fep.init_beliefs(priors, x))


def test_free_energy_non_increasing_along_qflow(problem, trajectory):
    fe, priors, x, y = problem
    _, traj = trajectory
    F = jax.jit(jax.vmap(lambda m, s: fe((m, s), priors, y)))(*traj)
    assert F[-1] < 0.8 * F[0]  # it does descend (F* ~ 0.66 F(0) here)
    assert jnp.all(jnp.diff(F) <= 1e-10 * jnp.abs(F[:-1])), jnp.max(jnp.diff(F))


def test_envelope_theorem(problem, trajectory):
    """dF/dtheta at q* == dF(q*(theta), theta)/dtheta by the engine's oracle == central differences."""
    fe, priors, x, y = problem
    solve, traj = trajectory
    z_star = jax.tree_util.tree_map(lambda a: a[-1], traj)  # q(t = 200)
    assert flowsim.residual(fep.qflow_field(fe), z_star, priors, y) < 1e-8
    signal = fep.pflow_signal(fe, z_star, priors, y)
    est = flowsim.Implicit(equilibrium=flowsim.EquilibriumSolver(relax_steps=0))
    oracle, info = flowsim.gradient(est, fep.qflow_field(fe), flowsim.ParametrisedLoss(fe),
                                    priors, z_star, y, y)
    assert info["result"] == flowsim.RESULTS.successful
    np.testing.assert_allclose(_flat(oracle), _flat(signal), rtol=1e-7, atol=1e-9)
    direction = jax.tree_util.tree_map(lambda a: jax.random.normal(jax.random.PRNGKey(7), a.shape), priors)
    h = 1e-4

    def F_star(sign):
        p = jax.tree_util.tree_map(lambda a, d: a + sign * h * d, priors, direction)
        z = jax.tree_util.tree_map(lambda a: a[-1], solve(p, z_star))
        return fe(z, p, y)

    fd = (F_star(1.0) - F_star(-1.0)) / (2 * h)  # truncation O(h^2) ~ 1e-8, solve error ~1e-11/h
    np.testing.assert_allclose(_dot(signal, direction), fd, rtol=1e-5)


def test_pure_fep_overfits_tiny_batch():
    """Seed 001's test at a tiny size: train CE at q* < 0.05 and accuracy 1 by -dF/dtheta alone."""
    Vt, Nt, Kt, Bt = 5, 3, 3, 2
    priors = fep.init_priors(jax.random.PRNGKey(3), Vt, Nt, Kt, fep.IdentityTransport(), token_scale=0.1)
    seq = jax.random.randint(jax.random.PRNGKey(4), (Bt, Nt + 1), 0, Vt)
    x, y = seq[:, :-1], seq[:, 1:]
    fe, flow = fep.FreeEnergy(), fep.QFlow(t1=50.0, rtol=1e-5, atol=1e-5)
    learner = fep.PureLearner(optax.sgd(0.1))

    @jax.jit
    def train(priors):
        def body(carry, _):
            p, s = carry
            p, s, m = fep.learning_step(learner, fe, flow, p, s, x, y)
            return (p, s), m
        return jax.lax.scan(body, (priors, learner.init(priors)), None, length=60)

    _, m = train(priors)
    ce, acc, F = m["train_ce"], m["train_acc"], m["F"]
    assert ce[0] > 1.0  # not solved before learning
    assert ce[-1] < 0.05 and acc[-1] == 1.0, (ce[-1], acc[-1])
    assert F[-1] < F[0]


def test_hybrid_update_follows_seed_rules(problem):
    """The hand-made rules of seed 001 Fix 3, recomputed in numpy."""
    fe, priors, x, y = problem
    k1, k2 = jax.random.split(jax.random.PRNGKey(9))
    z = (jax.random.normal(k1, (B, N, K)), 0.1 * jax.random.normal(k2, (B, N, K)))
    r, dm = 0.2, 0.5
    learner = fep.HybridLearner(optax.sgd(1.0), rate=r, disc_mult=dm)
    new, _, _ = jax.jit(lambda p, z: learner.update(fe, p, learner.init(p), None, z, y))(priors, z)
    mu, ls = map(np.asarray, z)
    np.testing.assert_allclose(new.pos_mu, (1 - r) * np.asarray(priors.pos_mu) + r * mu.mean(0), rtol=1e-12)
    np.testing.assert_allclose(new.pos_log_sigma,
                               (1 - r) * np.asarray(priors.pos_log_sigma) + r * ls.mean(0), rtol=1e-12)
    pred = np.asarray(jnp.argmax(fe.logits(z, priors), -1)).ravel()
    yy, old = np.asarray(y).ravel(), np.asarray(priors.tok_mu)
    a, expected = dm * r, old.copy()
    flat_mu = mu.reshape(-1, K)
    for v in range(V):
        good = (yy == v) & (pred == v)
        bad = (yy == v) & (pred != v)
        if good.any():
            expected[v] = (1 - a) * old[v] + a * flat_mu[good].mean(0)
        if bad.any():
            expected[v] = expected[v] + a * (old[v] - old[pred[bad]]).mean(0)
    np.testing.assert_allclose(new.tok_mu, expected, rtol=1e-12)
    np.testing.assert_array_equal(new.tok_log_sigma, priors.tok_log_sigma)


@pytest.mark.parametrize("setting", ["V=1", "K=0", "tau=0.0", "tau=-1.0", "variant=bogus"])
def test_bad_input_exits_2(setting, tmp_path, capsys):
    from flowsim.cli import main

    out = tmp_path / "run"
    assert main(["run", "fep-overfit", "--set", setting, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists()
