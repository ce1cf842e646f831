"""Q-flow and P-flow (seeds 000/001): natural gradient, monotone F, envelope theorem, overfit."""

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowsim
from flowsim import fep, train

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
    grad = jax.flatten_util.ravel_pytree(jax.jit(jax.grad(fe))(z, priors, x, y))[0]
    expected = -jnp.linalg.solve(fisher, grad)
    nat = jax.jit(lambda z: fep.natural_gradient(fe, z, priors, x, y))(z)
    got = jax.flatten_util.ravel_pytree(nat)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def trajectory(problem):
    """One compiled Q-flow solve (diffrax Tsit5, tight tolerances) shared by the tests below."""
    fe, priors, x, y = problem
    ts = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-2, 200.0, 60)])
    flow = flowsim.SteadyState(rtol=1e-11, atol=1e-11, max_steps=8192)
    field = fep.QFlowField(fe)
    solve = jax.jit(lambda p, z0: flow.trajectory(field, z0, p, (x, y), ts))
    return solve, solve(priors, fep.init_beliefs(priors, x))


def test_free_energy_non_increasing_along_qflow(problem, trajectory):
    fe, priors, x, y = problem
    _, traj = trajectory
    F = jax.jit(jax.vmap(lambda m, s: fe((m, s), priors, x, y)))(*traj)
    assert F[-1] < 0.95 * F[0]  # it does descend (F* = 0.88 F(0) here)
    assert jnp.all(jnp.diff(F) <= 1e-10 * jnp.abs(F[:-1])), jnp.max(jnp.diff(F))


def _direction(priors, seed):
    return jax.tree_util.tree_map(lambda a: jax.random.normal(jax.random.PRNGKey(seed), a.shape),
                                  priors)


def test_envelope_theorem(problem, trajectory):
    """The P-flow rule's ∂F/∂θ at q* equals dF(q*(θ), θ)/dθ by central differences of the
    relaxed free energy (q* re-solved at θ ± h·d)."""
    fe, priors, x, y = problem
    solve, traj = trajectory
    z_star = jax.tree_util.tree_map(lambda a: a[-1], traj)  # q(t = 200)
    problem_ = fep.fep_problem(fe)
    assert eqx.filter_jit(flowsim.residual)(problem_.field, z_star, priors, (x, y)) < 1e-8
    at_q = flowsim.EnergyGradient(flowsim.Relaxation(1, 1e-12))  # q* given: a null step
    signal, info = flowsim.gradient(at_q, problem_, z_star, priors, (x, y), y)
    assert flowsim.result_name(info["result"]) == "successful"
    direction = _direction(priors, 7)
    h = 1e-4
    # compiled, as the solve is (op by op, F and the steps compiled some two hundred programs)
    step = jax.jit(lambda sign: jax.tree_util.tree_map(lambda a, d: a + sign * h * d, priors,
                                                       direction))
    F_last = jax.jit(lambda traj, p: fe(jax.tree_util.tree_map(lambda a: a[-1], traj), p, x, y))

    def F_star(sign):
        p = step(sign)
        return F_last(solve(p, z_star), p)

    fd = (F_star(1.0) - F_star(-1.0)) / (2 * h)  # truncation O(h^2) ~ 1e-8, solve error ~1e-11/h
    np.testing.assert_allclose(_dot(signal, direction), fd, rtol=1e-5)
    # pure: every parameter, both banks included, gets its -dF/dtheta (nothing detached)
    for name, leaf in zip(("pos_mu", "pos_log_sigma", "tok_mu", "tok_log_sigma", "in_mu",
                           "in_log_sigma"), jax.tree_util.tree_leaves(signal)):
        assert float(jnp.max(jnp.abs(leaf))) > 1e-3, name


@pytest.fixture(scope="module")
def prediction_oracle(problem):
    """The oracle dL(q*(θ))/dθ of the prediction (inference equilibrium, last position),
    from the Q-flow solver the loop below uses: one compiled solve, shared by the two
    tests that hold it against finite differences and against the loop's cosine."""
    fe, priors, x, y = problem
    fast = fep.qflow_solver(200.0, 1e-9, 1e-8, 8192)
    oracle = flowsim.Implicit(equilibrium=fast)
    grads, info = flowsim.gradient(oracle, fep.prediction_problem(fe), fep.init_beliefs(priors, x),
                                   priors, (x, y), y)
    assert flowsim.result_name(info["result"]) == "successful"
    return fast, oracle, grads


@pytest.mark.slow
def test_oracle_of_the_prediction_against_finite_differences(problem, trajectory,
                                                             prediction_oracle):
    """The oracle dL(q*(θ))/dθ of the prediction (inference equilibrium, last position):
    the adjoint solve does real work (L is not F), checked against central differences of
    L at q* re-solved (the Q-flow, finished by Newton) at θ ± h·d; and it is not the
    P-flow's signal."""
    fe, priors, x, y = problem
    _, traj = trajectory
    fast, _, grads = prediction_oracle
    predict = fep.prediction_problem(fe)
    z_clamped = jax.tree_util.tree_map(lambda a: a[-1], traj)
    signal, _ = flowsim.gradient(flowsim.EnergyGradient(flowsim.Relaxation(1, 1e-12)),
                                 fep.fep_problem(fe), z_clamped, priors, (x, y), y)
    assert float(flowsim.cosine(grads, signal)) < 0.99  # different objectives, different gradients
    loss = fep.PredictionLoss(fe, positions="last")

    @jax.jit
    def loss_and_result(p):  # L is first order in z - z*: Newton finishes every solve
        z, info = flowsim.solve(fast, predict, fep.init_beliefs(p, x), p, (x, y))
        return loss(z, p, y), info["result"]

    for seed in (11, 12):
        direction = _direction(priors, seed)

        def loss_star(t):
            p = jax.tree_util.tree_map(lambda a, d: a + t * d, priors, direction)
            value, result = loss_and_result(p)
            assert flowsim.result_name(result) == "successful"
            return value

        central = lambda h: (loss_star(h) - loss_star(-h)) / (2 * h)
        fd = (4 * central(1e-4) - central(2e-4)) / 3  # Richardson: error O(h^4)
        np.testing.assert_allclose(_dot(grads, direction), fd, rtol=1e-6)


def test_inference_equilibrium_keeps_the_inputs():
    """At inference (no targets) the seeds' F (lambda_in = 0; without alignment, which is
    not convex) forgets its input: its minimum is q_i = p_i for any tokens (F = 0 there),
    the closed form; with the [input] term (and the alignment) two inputs give two
    equilibria, and each position's token can be read back from its belief."""
    V_, N_, K_ = 6, 4, 3
    priors = fep.init_priors(jax.random.PRNGKey(2), V_, N_, K_, fep.IdentityTransport(),
                             token_scale=2.0)
    first = jnp.array([[0, 1, 2, 3]])
    second = jnp.array([[4, 5, 0, 1]])
    solver = fep.qflow_solver(100.0, 1e-10, 1e-10, 8192)

    # One compiled solve for all six: the free energy's weights are traced arguments (not
    # baked-in constants), so the three free energies and two inputs share one program;
    # called eagerly, each solve compiled some ninety programs of its own.
    @jax.jit
    def solve(fe, tokens):
        return flowsim.solve(solver, fep.prediction_problem(fe), fep.init_beliefs(priors, tokens),
                             priors, (tokens, tokens))

    def infer(fe, tokens):
        z, info = solve(fe, tokens)
        assert flowsim.result_name(info["result"]) == "successful"
        return z

    seeds = fep.FreeEnergy(lambda_in=0.0, lambda_beta=0.0)
    for tokens in (first, second):
        mu, log_sigma = infer(seeds, tokens)
        np.testing.assert_allclose(mu[0], priors.pos_mu, atol=1e-8)
        np.testing.assert_allclose(log_sigma[0], priors.pos_log_sigma, atol=1e-8)
    fe = fep.FreeEnergy(lambda_in=1.0)
    a, b = infer(fe, first), infer(fe, second)
    assert float(jnp.min(jnp.linalg.norm(a[0] - b[0], axis=-1))) > 0.1
    alone = fep.FreeEnergy(lambda_in=1.0, lambda_beta=0.0)  # the input term against the prior
    for tokens in (first, second):
        recovered = fep.input_recovery(alone, infer(alone, tokens), priors, tokens)
        assert float(recovered["train_input_acc"]) == 1.0


def _inference_equilibrium(fe, priors, tokens):
    """q* of F at inference (no targets), solved tightly; asserts it converged."""
    z, info = jax.jit(lambda: flowsim.solve(
        fep.qflow_solver(100.0, 1e-10, 1e-10, 8192), fep.prediction_problem(fe),
        fep.init_beliefs(priors, tokens), priors, (tokens, tokens)))()
    assert flowsim.result_name(info["result"]) == "successful"
    return z


def _assert_geometric_mixture(z, priors, a, prec_r, weighted):
    """z is p_i^a r^(1-a), r = N(weighted/prec_r, 1/prec_r): precision a/s_p^2 + (1-a) prec_r,
    mean the precision-weighted mean."""
    prec_p = np.exp(-2 * np.asarray(priors.pos_log_sigma))[None]  # (1, N, K)
    precision = a * prec_p + (1 - a) * prec_r
    mean = (a * prec_p * np.asarray(priors.pos_mu)[None] + (1 - a) * weighted) / precision
    np.testing.assert_allclose(z[0], mean, atol=1e-8)
    np.testing.assert_allclose(z[1], -0.5 * np.log(precision), atol=1e-8)


def test_inference_with_the_input_token_prior_is_the_geometric_mixture():
    """input_term="prior", no alignment: at inference F_i = alpha KL(q||p_i) + lambda_in
    KL(q||rho_x) = (alpha + lambda_in) KL(q || r) + const, r the normalised geometric
    mixture p_i^a rho_x^(1-a), a = alpha/(alpha + lambda_in): the Q-flow's equilibrium is r,
    precision (a/s_p^2 + (1-a)/s_rho^2), mean the precision-weighted mean."""
    V_, N_, K_ = 5, 3, 2
    priors = fep.init_priors(jax.random.PRNGKey(4), V_, N_, K_, fep.IdentityTransport(),
                             token_scale=1.5)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(5), 3)
    priors = eqx.tree_at(lambda p: (p.pos_mu, p.pos_log_sigma, p.in_log_sigma), priors,
                         (jax.random.normal(k1, (N_, K_)), 0.3 * jax.random.normal(k2, (N_, K_)),
                          0.3 * jax.random.normal(k3, (V_, K_))))
    alpha, lam = 0.7, 1.3
    fe = fep.FreeEnergy(alpha=alpha, lambda_in=lam, lambda_beta=0.0, input_term="prior")
    tokens = jnp.array([[0, 3, 3], [4, 1, 2]])
    z = _inference_equilibrium(fe, priors, tokens)
    prec_r = np.exp(-2 * np.asarray(priors.in_log_sigma))[np.asarray(tokens)]  # (B, N, K)
    _assert_geometric_mixture(z, priors, alpha / (alpha + lam), prec_r,
                              prec_r * np.asarray(priors.in_mu)[np.asarray(tokens)])


def test_inference_with_the_product_prior_of_two_inputs_is_its_geometric_mixture():
    """input_term="product", L = 2, no alignment: each belief has one prior r_i, the
    normalised product of rho_{x_i} and lag_{x_{i-1}} (rho alone at i = 0), and the
    inference equilibrium is the geometric mixture p_i^a r_i^(1-a), computed here in numpy."""
    V_, N_, K_ = 5, 3, 2
    priors = fep.init_priors(jax.random.PRNGKey(6), V_, N_, K_, fep.IdentityTransport(),
                             token_scale=1.5, input_lags=2)
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    priors = eqx.tree_at(lambda p: (p.pos_log_sigma, p.in_log_sigma, p.lag_log_sigma), priors,
                         (0.3 * jax.random.normal(keys[0], (N_, K_)),
                          0.3 * jax.random.normal(keys[1], (V_, K_)),
                          0.3 * jax.random.normal(keys[2], (1, V_, K_))))
    alpha, lam = 0.2, 1.0
    fe = fep.FreeEnergy(alpha=alpha, lambda_in=lam, lambda_beta=0.0, input_term="product")
    tokens = jnp.array([[0, 3, 3], [4, 1, 2]])
    z = _inference_equilibrium(fe, priors, tokens)
    x = np.asarray(tokens)
    prec_in = np.exp(-2 * np.asarray(priors.in_log_sigma))[x]
    prec_lag = np.exp(-2 * np.asarray(priors.lag_log_sigma[0]))[x[:, :-1]]
    prec_r, weighted = prec_in.copy(), prec_in * np.asarray(priors.in_mu)[x]
    prec_r[:, 1:] += prec_lag
    weighted[:, 1:] += prec_lag * np.asarray(priors.lag_mu[0])[x[:, :-1]]
    _assert_geometric_mixture(z, priors, alpha / (alpha + lam), prec_r, weighted)


def test_prediction_loss_scores_the_last_position(problem):
    """PredictionLoss(positions="last") = lambda_obs * sum_b CE at position N-1, recomputed."""
    fe, priors, x, y = problem
    z = fep.init_beliefs(priors, x)
    z = (z[0] + 0.1, z[1] - 0.05)
    logits = np.asarray(fe.logits(z, priors))[:, -1]
    target = np.asarray(y)[:, -1]
    ce = np.log(np.exp(logits).sum(-1)) - logits[np.arange(B), target]
    got = fep.PredictionLoss(fe, positions="last")(z, priors, y)
    np.testing.assert_allclose(got, fe.lambda_obs * ce.sum(), rtol=1e-12)


def test_the_loop_holds_the_p_flow_against_the_prediction_oracle(problem, prediction_oracle):
    """cos_oracle of an FEP task is taken against the oracle of its objective (the
    prediction), not of the clamped problem the P-flow learns on."""
    fe, priors, x, y = problem
    fast, oracle, on_objective = prediction_oracle  # flowsim.gradient on the prediction
    task = fep.FEPTask(fep.fep_problem(fe), fep.FixedBatch((x, y), y), ((x, y), y), None, fast,
                       fep.prediction_problem(fe))
    trainer = train.Trainer(task, flowsim.EnergyGradient(fast), optax.sgd(0.1), seed=0)
    grads, _ = trainer.gradient(priors, 0)
    got = train.cosines(trainer, priors, grads, 0, oracle, {})["cos_oracle"]
    z0 = fep.init_beliefs(priors, x)
    on_clamped, _ = flowsim.gradient(oracle, fep.fep_problem(fe), z0, priors, (x, y), y)
    np.testing.assert_allclose(got, flowsim.cosine(grads, on_objective), rtol=1e-9)
    assert abs(got - float(flowsim.cosine(grads, on_clamped))) > 1e-3


def _tiny_task(seed=4, V=5, N=3, K=3, B=2):
    priors = fep.init_priors(jax.random.PRNGKey(3), V, N, K, fep.IdentityTransport(),
                             token_scale=0.1)
    seq = jax.random.randint(jax.random.PRNGKey(seed), (B, N + 1), 0, V)
    x, y = (seq[:, :-1], seq[:, 1:]), seq[:, 1:]
    fe = fep.FreeEnergy()
    task = fep.FEPTask(fep.fep_problem(fe), fep.FixedBatch(x, y), (x, y), None,
                       fep.qflow_solver(50.0, 1e-5, 1e-6, 4096))
    return task, priors


@pytest.mark.slow
def test_pure_fep_overfits_tiny_batch():
    """Seed 001's test at a tiny size, in the one training loop: train CE at q* < 0.05
    and accuracy 1 by -dF/dtheta alone."""
    task, priors = _tiny_task()
    rule = flowsim.EnergyGradient(task.fast)
    trainer = train.Trainer(task, rule, optax.sgd(0.1), seed=0)
    outcome = train.fit(trainer, priors, steps=60, eval_every=1, record=lambda r: None,
                        divergence=train.Divergence(monitor="F", factor=100, against="first",
                                                    finite=("F",)))
    ce = [r["train_ce"] for r in outcome.rows]
    assert outcome.status == "ok" and ce[0] > 1.0  # not solved before learning
    assert ce[-1] < 0.05 and outcome.rows[-1]["train_acc"] == 1.0, ce[-1]
    assert outcome.rows[-1]["F"] < outcome.rows[0]["F"]


@pytest.mark.slow
def test_fep_resumes_to_the_same_numbers_and_reports_divergence(tmp_path):
    """FEP on the one loop gains checkpoints, resume (bitwise) and divergence."""
    task, priors = _tiny_task()
    trainer = train.Trainer(task, flowsim.EnergyGradient(task.fast), optax.sgd(0.1), seed=0)
    rule = train.Divergence(monitor="F", factor=100, against="first", finite=("F",))
    full = train.fit(trainer, priors, steps=8, eval_every=2, record=lambda r: None,
                     checkpoint_dir=tmp_path / "full", checkpoint_every=2, divergence=rule)
    part = train.fit(trainer, priors, steps=4, eval_every=2, record=lambda r: None,
                     checkpoint_dir=tmp_path / "part", checkpoint_every=2, divergence=rule)
    assert part.last_checkpoint == 4
    resumed = train.fit(trainer, priors, steps=8, eval_every=2, record=lambda r: None,
                        checkpoint_dir=tmp_path / "part", checkpoint_every=2, divergence=rule)
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)
    blowup = train.Trainer(task, flowsim.EnergyGradient(task.fast), optax.sgd(1e3), seed=0)
    out = train.fit(blowup, priors, steps=20, eval_every=1, record=lambda r: None,
                    divergence=rule)
    assert out.status == "diverged" and ("F" in out.reason or "unusable" in out.reason)


@pytest.mark.slow
def test_no_p_step_at_an_unconverged_q_star():
    """The envelope theorem holds at q* only: a fast solve that does not converge (here
    one Newton step after a flow of t = 0.01) is a failed estimate; the loop keeps θ,
    counts the step, and stops past ``max_skipped_steps``."""
    task, priors = _tiny_task()
    short = flowsim.EquilibriumSolver(relax_steps=0, retries=0, newton_max_steps=1,
                                      warm_start=fep.qflow_solver(0.01, 1e-5, 1e-6, 100).warm_start)
    rule = flowsim.EnergyGradient(short)
    trainer = train.Trainer(task, rule, optax.sgd(0.1), seed=0)
    # the rule's estimate on the (fixed) batch, from the program the loop's steps run
    _, info = trainer.gradient(priors, 0)
    assert flowsim.result_name(info["result"]) == "equilibrium_failed"
    out = train.fit(trainer, priors, steps=10, eval_every=1, record=lambda r: None,
                    divergence=train.Divergence(monitor="F", factor=100, against="first",
                                                max_skipped_steps=2))
    assert out.status == "diverged" and out.skipped == 3 and out.step == 2
    assert "equilibrium_failed" in out.reason
    for a, b in zip(jax.tree.leaves(out.params), jax.tree.leaves(priors)):
        np.testing.assert_array_equal(a, b)  # no P-step was taken


def test_hybrid_update_follows_seed_rules(problem):
    """The hand-made rules of seed 001 Fix 3, recomputed in numpy."""
    fe, priors, x, y = problem
    k1, k2 = jax.random.split(jax.random.PRNGKey(9))
    z = (jax.random.normal(k1, (B, N, K)), 0.1 * jax.random.normal(k2, (B, N, K)))
    r, dm = 0.2, 0.5
    new = jax.jit(lambda p, z: fep.hybrid_update(fe, p, z, y, r, dm))(priors, z)
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
    # as a rule: with sgd(lr), θ - lr·g is the seed's update
    rule = fep.HybridRule(flowsim.Relaxation(1, 1e-12), rate=r, disc_mult=dm, lr=0.3)
    problem_ = fep.fep_problem(fe)
    g, info = flowsim.gradient(rule, problem_, z, priors, (x, y), y)
    stepped = jax.tree.map(lambda p, d: p - 0.3 * d, priors, g)
    np.testing.assert_allclose(stepped.tok_mu, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("setting", ["V=1", "K=0", "tau=0.0", "tau=-1.0", "variant=bogus"])
def test_bad_input_exits_2(setting, tmp_path, capsys):
    from flowsim.cli import main

    out = tmp_path / "run"
    assert main(["run", "fep-overfit", "--set", setting, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists()


def test_the_expected_likelihood_bounds_the_prediction_loss_and_the_plug_in_does_not():
    """One position, one input whose prior is N(0, 1) (position prior and rho_x both; alpha =
    lambda_in = 1, lambda_obs = 2, so F/2 = KL(q || N(0, 1)) + CE), two next tokens, equally
    likely, in banks at -+c. With the expected likelihood F/2 at the clamped q* is the
    variational bound on -log p(y | x) (ELBO), so its average over y is >= H(y | x) = log 2
    for every c. The plug-in CE has no such floor: its clamped F/2 falls below log 2 and
    toward 0 as the decoder's scale c grows (a belief shifted by O(log c / c) decodes y at
    KL cost O(log^2 c / c^2)): the P-flow on it sharpens the decoder without bound."""
    import scipy.optimize

    def clamped_min(likelihood, c, y):
        priors = fep.Priors(pos_mu=jnp.zeros((1, 1)), pos_log_sigma=jnp.zeros((1, 1)),
                            tok_mu=jnp.array([[-c], [c]]), tok_log_sigma=jnp.zeros((2, 1)),
                            in_mu=jnp.zeros((1, 1)), in_log_sigma=jnp.zeros((1, 1)))
        fe = fep.FreeEnergy(lambda_beta=0.0, lambda_obs=2.0, input_term="prior",
                            likelihood=likelihood)
        half_f = jax.jit(jax.value_and_grad(lambda q: 0.5 * fe(
            (q[:1].reshape(1, 1, 1), q[1:].reshape(1, 1, 1)), priors,
            jnp.zeros((1, 1), int), jnp.full((1, 1), y))))
        res = scipy.optimize.minimize(lambda q: tuple(map(np.asarray, half_f(jnp.asarray(q)))),
                                      np.zeros(2), jac=True, method="BFGS", tol=1e-11)
        assert np.linalg.norm(res.jac) < 1e-7, res  # a stationary point (F is smooth)
        return res.fun

    log2 = np.log(2.0)
    expected = [np.mean([clamped_min("expected", c, y) for y in (0, 1)]) for c in (0.5, 2.0, 8.0, 32.0)]
    plug_in = [np.mean([clamped_min("plugin", c, y) for y in (0, 1)]) for c in (0.5, 2.0, 8.0, 32.0)]
    assert min(expected) >= log2 - 1e-9, expected
    assert plug_in[2] < 0.5 * log2 and plug_in[3] < plug_in[2] < plug_in[1], plug_in
