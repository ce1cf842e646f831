"""Estimators on nonlinear systems: against the library, finite differences and orders."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
import pytest

import flowsim
from flowsim.systems import AsymmetricTanh, Hopfield

N, M = 6, 3


def loss(z, y):
    return 0.5 * jnp.sum((z - y) ** 2)


@pytest.fixture(scope="module")
def hopfield():
    system = Hopfield(N, M)
    params = system.init_params(jax.random.PRNGKey(0), gain=0.8)
    x = jnp.linspace(-1.0, 1.0, M)
    y = jnp.linspace(0.8, -0.8, N)
    return flowsim.Problem(system.field, loss), params, jnp.zeros(N), x, y


@pytest.fixture(scope="module")
def asymmetric():
    system = AsymmetricTanh(N, M)
    params = system.init_params(jax.random.PRNGKey(2), gain=0.9)
    x = jnp.stack([jnp.linspace(-1.0, 1.0, M), jnp.linspace(1.0, 0.0, M)])  # batch of 2
    y = jnp.stack([jnp.linspace(0.5, -0.5, N), jnp.linspace(-0.3, 0.3, N)])
    return flowsim.Problem(system.field, loss), params, jnp.zeros((2, N)), x, y


def oracle(problem, params, z0, x, y):
    grads, info = flowsim.gradient(flowsim.Implicit(), problem, z0, params, x, y)
    assert flowsim.result_name(info["result"]) == "successful"
    return grads


@pytest.mark.parametrize("name", ["hopfield", "asymmetric"])
def test_implicit_matches_optimistix_implicit_adjoint(name, request):
    # An independent route: differentiate through optimistix's root find with its
    # own ImplicitAdjoint (it solves the adjoint by a different code path).
    problem, params, z0, x, y = request.getfixturevalue(name)
    z_start = flowsim.relax(problem.field, z0, params, x, steps=200, dt=0.1)

    def equilibrium_loss(p):
        solver = optx.Newton(rtol=1e-12, atol=1e-12)
        z_star = optx.root_find(lambda z, a: problem.field(z, p, x), solver, z_start).value
        return loss(z_star, y)

    expected = jax.grad(equilibrium_loss)(params)
    grads = oracle(problem, params, z0, x, y)
    assert float(flowsim.relative_error(grads, expected)) < 1e-9


def test_implicit_matches_finite_differences(hopfield):
    problem, params, z0, x, y = hopfield
    grads = oracle(problem, params, z0, x, y)
    solver = flowsim.EquilibriumSolver()

    @jax.jit
    def equilibrium_loss(b):
        z_star, _ = flowsim.equilibrium(problem.field, z0, {**params, "b": b}, x, solver)
        return loss(z_star, y)

    h = 1e-6
    for i in range(N):
        e = np.zeros(N)
        e[i] = h
        fd = float(equilibrium_loss(params["b"] + e) - equilibrium_loss(params["b"] - e)) / (2 * h)
        assert abs(fd - float(grads["b"][i])) < 1e-7


def test_ep_error_orders_in_beta(hopfield):
    # Symmetric coupling: EP is exact as β → 0, with error O(β) one-sided and
    # O(β²) symmetric. The nudged phase is long enough to be converged.
    problem, params, z0, x, y = hopfield
    reference = oracle(problem, params, z0, x, y)
    betas = np.array([0.04, 0.02, 0.01])
    slopes = {}
    for symmetric in (False, True):
        errors = []
        for beta in betas:
            grads, _ = flowsim.gradient(flowsim.EP(beta, 1500, 0.1, symmetric), problem, z0,
                                        params, x, y)
            errors.append(float(flowsim.relative_error(grads, reference)))
        slopes[symmetric] = np.polyfit(np.log(betas), np.log(errors), 1)[0]
    assert abs(slopes[False] - 1.0) < 0.1
    assert abs(slopes[True] - 2.0) < 0.1


def test_holomorphic_ep_is_accurate_at_finite_radius(hopfield):
    problem, params, z0, x, y = hopfield
    reference = oracle(problem, params, z0, x, y)
    grads, _ = flowsim.gradient(flowsim.HolomorphicEP(0.2, 8, 1500, 0.1), problem, z0,
                                params, x, y)
    # A real symmetric nudge of the same size is far less accurate.
    real, _ = flowsim.gradient(flowsim.EP(0.2, 1500, 0.1, True), problem, z0, params, x, y)
    holomorphic_error = float(flowsim.relative_error(grads, reference))
    assert holomorphic_error < 1e-4
    assert holomorphic_error < 0.01 * float(flowsim.relative_error(real, reference))


def test_rbp_converges_to_implicit_on_asymmetric_net(asymmetric):
    problem, params, z0, x, y = asymmetric
    reference = oracle(problem, params, z0, x, y)
    errors = [float(flowsim.relative_error(
        flowsim.gradient(flowsim.RBP(steps, 0.1, max_steps=600), problem, z0, params, x, y)[0],
        reference)) for steps in (20, 80, 600)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-8


def test_forward_equals_bptt_on_asymmetric_net(asymmetric):
    problem, params, z0, x, y = asymmetric
    reverse, _ = flowsim.gradient(flowsim.BPTT(50, 0.1), problem, z0, params, x, y)
    forward, _ = flowsim.gradient(flowsim.Forward(50, 0.1), problem, z0, params, x, y)
    assert float(flowsim.relative_error(forward, reverse)) < 1e-12


def test_bptt_approaches_oracle_as_horizon_grows(asymmetric):
    problem, params, z0, x, y = asymmetric
    reference = oracle(problem, params, z0, x, y)
    errors = []
    for steps in (20, 80, 400):
        grads, info = flowsim.gradient(flowsim.BPTT(steps, 0.1, max_steps=400), problem, z0,
                                       params, x, y)
        errors.append(float(flowsim.relative_error(grads, reference)))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-6


def test_gradient_field_is_holomorphic_for_complex_states():
    energy = lambda z, p, x: jnp.sum(p * z**3) / 3.0  # noqa: E731
    z = jnp.array([0.3 + 0.4j, -1.0 + 0.2j])
    field = flowsim.gradient_field(energy)
    np.testing.assert_allclose(np.asarray(field(z, 2.0, None)), -2.0 * np.asarray(z) ** 2,
                               rtol=1e-14)


def test_failed_adjoint_solve_is_reported_and_gives_nan(asymmetric):
    problem, params, z0, x, y = asymmetric
    rule = flowsim.Implicit(rtol=1e-14, linear_solver=lx.BiCGStab(0.0, 0.0, max_steps=2),
                            fallback=lx.GMRES(0.0, 0.0, restart=1, max_steps=2))
    grads, info = flowsim.gradient(rule, problem, z0, params, x, y)
    assert flowsim.result_name(info["result"]) == "linear_solve_failed"
    assert all(bool(jnp.all(jnp.isnan(g))) for g in jax.tree.leaves(grads))


def test_missing_equilibrium_is_reported():
    def field(z, params, x):  # no root: dz/dt = z² + c with c > 0
        return z**2 + params

    problem = flowsim.Problem(field, lambda z, y: jnp.sum(z))
    grads, info = flowsim.gradient(flowsim.Implicit(), problem, jnp.zeros(1), jnp.asarray(1.0),
                                   None, None)
    assert flowsim.result_name(info["result"]) in ("equilibrium_failed", "nonfinite")
    assert bool(jnp.isnan(grads))


def test_ep_sweep_over_beta_compiles_once(hopfield):
    problem, params, z0, x, y = hopfield

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def estimate(rule):
        return rule.estimate(problem, z0, params, x, y, None)

    for beta in (0.1, 0.05, 0.01):
        estimate(flowsim.EP(beta, 20, 0.1, True))


def test_gradient_field_is_stable_and_compiles_once(hopfield):
    """Two gradient fields of one energy are equal objects: gradient() compiles once."""
    _, params, z0, x, y = hopfield
    system = Hopfield(N, M)
    first, second = flowsim.gradient_field(system.energy), flowsim.gradient_field(system.energy)
    assert first == second and hash(first) == hash(second)
    rule = flowsim.BPTT(20, 0.1)

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def estimate(field):
        return rule.estimate(flowsim.Problem(field, loss), z0, params, x, y, None)

    a, _ = estimate(first)
    b, _ = estimate(second)  # would raise on a second trace
    np.testing.assert_array_equal(np.asarray(a["W"]), np.asarray(b["W"]))
    # the field is the energy's negative gradient, against central differences
    z = jnp.linspace(-0.5, 0.5, N)
    e = lambda u: system.energy(u, params, x)
    h = 1e-6
    fd = np.array([(e(z.at[i].add(h)) - e(z.at[i].add(-h))) / (2 * h) for i in range(N)])
    np.testing.assert_allclose(np.asarray(first(z, params, x)), -fd, rtol=1e-7, atol=1e-9)


def test_solver_options_pass_through_jax_jit(hopfield):
    problem, params, z0, x, y = hopfield
    solver = flowsim.EquilibriumSolver(relax_steps=50, dt=0.1, retries=1)

    @jax.jit
    def solve(solver, params):
        return flowsim.equilibrium(problem.field, z0, params, x, solver)

    z_jit, info = solve(solver, params)
    z_eager, _ = flowsim.equilibrium(problem.field, z0, params, x, solver)
    assert flowsim.result_name(info["result"]) == "successful"
    np.testing.assert_allclose(np.asarray(z_jit), np.asarray(z_eager), rtol=0, atol=1e-13)
    assert float(flowsim.residual(problem.field, z_jit, params, x)) < 1e-11


@pytest.mark.slow
def test_every_rule_reports_the_same_info_keys(hopfield):
    problem, params, z0, x, y = hopfield
    rules = [flowsim.Implicit(), flowsim.BPTT(20, 0.1), flowsim.Forward(20, 0.1),
             flowsim.Forward(20, 0.1, directions=3), flowsim.RBP(20, 0.1),
             flowsim.EP(0.1, 20, 0.1), flowsim.HolomorphicEP(0.1, 4, 20, 0.1),
             flowsim.Penalized(flowsim.EP(0.1, 20, 0.1),
                               flowsim.ContractionPenalty(0.01, 10, 0.1))]
    keys = {"loss", "residual", "matvecs", "result", "failed_samples", "sample_results"}
    energy_problem = flowsim.Problem(problem.field, loss, energy=Hopfield(N, M).energy)
    rules.append(flowsim.EnergyGradient(flowsim.EquilibriumSolver()))

    @eqx.filter_jit
    def infos(params):
        """Every rule's info, and BPTT's without a key, from one compiled program (the
        rules one by one compile nine, at over two seconds each)."""
        out = []
        for rule in rules:
            target = energy_problem if isinstance(rule, flowsim.EnergyGradient) else problem
            out.append(flowsim.gradient(rule, target, z0, params, x, y,
                                        key=jax.random.PRNGKey(0))[1])
        return out, flowsim.gradient(flowsim.BPTT(20, 0.1), problem, z0, params, x, y)[1]

    every, bptt = infos(params)
    for rule, info in zip(rules, every):
        assert set(info) == keys, type(rule).__name__
        assert flowsim.result_name(info["result"]) == "successful"
        assert int(info["matvecs"]) > 0 and int(info["failed_samples"]) == 0
    # BPTT counts its products: T evaluations forward, T VJPs back
    assert int(bptt["matvecs"]) == 40


def test_per_sample_equilibria_equal_the_joint_solve(asymmetric):
    """A batch solved per sample (batched problem) gives the joint system's gradient."""
    problem, params, z0, x, y = asymmetric
    per_sample = flowsim.Problem(problem.field, loss, batched=True, reduction="sum")
    joint = oracle(problem, params, z0, x, y)
    grads, info = flowsim.gradient(flowsim.Implicit(), per_sample, z0, params, x, y)
    assert flowsim.result_name(info["result"]) == "successful"
    assert info["sample_results"]._value.shape == (2,)
    assert float(flowsim.relative_error(grads, joint)) < 1e-10


def test_a_hard_sample_is_left_out_and_counted():
    """dz/dt = x − θ z² per sample: z* = √(x/θ) for x > 0, no equilibrium for x < 0 (the
    relaxation runs off to −∞). With one such sample in a batch of four, the estimate is
    the gradient of the mean loss over the three others, in closed form,
    dℓ/dθ = (z* − y)·(−z*/(2θ)); the failure is counted, not spread."""
    field = lambda z, theta, x: x - theta * z**2
    problem = flowsim.Problem(field, lambda z, y: 0.5 * (z - y) ** 2, batched=True)
    theta = jnp.asarray(0.8)
    x = jnp.array([0.5, 1.0, -3.0, 2.0])
    y = jnp.array([0.1, 0.2, 0.3, 0.4])
    z0 = jnp.ones(4)
    good = np.array([True, True, False, True])
    z_star = np.sqrt(np.asarray(x)[good] / 0.8)
    expected = np.mean((z_star - np.asarray(y)[good]) * (-z_star / (2 * 0.8)))
    rules = {"implicit": flowsim.Implicit(),
             "rbp": flowsim.RBP(2000, 0.1),
             "ep": flowsim.EP(1e-4, 2000, 0.1, True)}

    @eqx.filter_jit
    def estimates(x):  # the three rules in one compiled program
        return {name: flowsim.gradient(rule, problem, z0, theta, x, y)
                for name, rule in rules.items()}

    for name, (grads, info) in estimates(x).items():
        assert flowsim.result_name(info["result"]) == "samples_failed", name
        assert int(info["failed_samples"]) == 1
        codes = [flowsim.result_name(jax.tree.map(lambda v: v[i], info["sample_results"]))
                 for i in range(4)]
        assert codes[2] != "successful" and codes[:2] + codes[3:] == ["successful"] * 3
        assert np.isfinite(float(grads)), name
        tol = 1e-10 if name == "implicit" else 1e-6
        assert float(grads) == pytest.approx(expected, rel=tol), name
    # every sample failed: nothing to estimate, NaN and the failure's code
    grads, info = estimates(-x ** 2 - 1)["implicit"]
    assert np.isnan(float(grads)) and int(info["failed_samples"]) == 4
    assert flowsim.result_name(info["result"]) != "successful"
