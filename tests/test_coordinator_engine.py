"""The engine's equilibrium, oracle and EP applied unchanged to a coordinator.

The coordinator reaches the engine as F(η) = clip(η − ∇𝓕) − η. Expected
values are independent computations: the monotone solver's minimum, the
dense Hessian of 𝓕, and central finite differences of L(η*(θ ± h)) (no
adjoint involved).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flowsim.studies.coordinator_oracle import build, random_system

import flowsim
from flowsim.coordinator import (
    MonotoneRelaxation,
    ProjectedGradient,
    ProjectedResidualField,
    relax,
)

N = 8
SOLVER = flowsim.EquilibriumSolver(relax_steps=200, dt=0.2, retries=0)  # one Newton to compile


def _setup():
    arrays = random_system(N, 2.0, seed=4)
    field = ProjectedResidualField(lambda z, p, x: build(arrays, p)(z))
    problem = flowsim.Problem(field, lambda z, y: 0.5 * jnp.sum((z - y) ** 2))
    y = jnp.linspace(0.2, 0.8, N)
    return arrays, field, problem, y, jnp.zeros(4), jnp.full(N, 0.5)


def test_equilibrium_is_the_relaxed_minimum_and_stable():
    arrays, field, _, _, theta, eta0 = _setup()
    z_star, info = flowsim.equilibrium(field, eta0, theta, None, SOLVER)
    assert flowsim.result_name(info["result"]) == "successful"
    relaxed = relax(build(arrays, theta), eta0, ProjectedGradient(tol=1e-12))
    np.testing.assert_allclose(np.asarray(z_star), np.asarray(relaxed.eta), atol=1e-7)
    jacobian = jax.jacfwd(lambda z: field(z, theta, None))(z_star)
    hessian = jax.hessian(build(arrays, theta))(z_star)
    np.testing.assert_allclose(np.sort(np.linalg.eigvals(np.asarray(jacobian)).real),
                               np.sort(-np.linalg.eigvalsh(np.asarray(hessian))), atol=1e-10)


def test_implicit_oracle_matches_finite_differences_and_ep_converges_to_it():
    arrays, field, problem, y, theta, eta0 = _setup()
    oracle, info = flowsim.gradient(flowsim.Implicit(equilibrium=SOLVER), problem, eta0, theta,
                                    None, y)
    assert flowsim.result_name(info["result"]) == "successful"

    @jax.jit
    def loss(t):  # η*(θ ± h) by Newton (the monotone solver stops at its √ε floor)
        eta, _ = flowsim.equilibrium(field, eta0, t, None, SOLVER)
        return 0.5 * jnp.sum((eta - y) ** 2)

    h = 1e-4
    fd = np.array([float(loss(theta.at[f].add(h)) - loss(theta.at[f].add(-h))) / (2 * h)
                   for f in range(4)])
    np.testing.assert_allclose(np.asarray(oracle), fd, rtol=1e-5, atol=1e-8)
    ep_gradient = jax.jit(lambda beta: flowsim.gradient(
        flowsim.EP(beta, 800, 0.1, equilibrium=SOLVER), problem, eta0, theta, None, y)[0])
    errors = []
    for beta in (1e-2, 1e-3):
        ep = ep_gradient(jnp.asarray(beta))
        errors.append(float(jnp.linalg.norm(ep - oracle) / jnp.linalg.norm(oracle)))
    # symmetric EP: the error falls as β², a factor 100 per decade
    assert errors[1] < 1e-5 and 50 < errors[0] / errors[1] < 200


def test_monotone_warm_start_finds_the_minimum_where_newton_finds_the_maximum():
    # E = a(η − ½)² + (η − ½)⁴, a < 0: a maximum at ½, minima at ½ ± √(−a/2). Newton from
    # near ½ converges to the maximum (the engine reports it unstable); the monotone
    # relaxation cannot climb to it, and Newton then polishes the minimum.
    field = ProjectedResidualField(lambda z, a, x: jnp.sum(a * (z - 0.5) ** 2 + (z - 0.5) ** 4))
    a, z0 = jnp.asarray(-0.18), jnp.array([0.5 + 1e-3])
    newton = flowsim.EquilibriumSolver(relax_steps=0, retries=0)
    z, info = flowsim.equilibrium(field, z0, a, None, newton)
    assert flowsim.result_name(info["result"]) == "unstable_equilibrium"
    np.testing.assert_allclose(float(z[0]), 0.5, atol=1e-10)
    polished = flowsim.EquilibriumSolver(warm_start=MonotoneRelaxation())
    z, info = flowsim.equilibrium(field, z0, a, None, polished)
    assert flowsim.result_name(info["result"]) == "successful"
    np.testing.assert_allclose(float(z[0]), 0.5 + np.sqrt(0.09), atol=1e-12)
    # and the oracle through it: L = η*, dη*/da = −¼ (−a/2)^(−½) = −0.8333…
    problem = flowsim.Problem(field, lambda z, y: jnp.sum(z))
    grad, info = flowsim.gradient(flowsim.Implicit(equilibrium=polished), problem, z0, a, None,
                                  None)
    assert flowsim.result_name(info["result"]) == "successful"
    np.testing.assert_allclose(float(grad), -0.25 / 0.3, rtol=1e-9)
