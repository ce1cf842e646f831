"""Every estimator against its closed form on linear dynamics F(z) = A z + W x.

With L = ½‖z − y‖², every quantity is a finite matrix expression evaluated here
in numpy (float64, from the same parameter values), independently of the
engine. The closed-form tests run in float64 and float32: RTOL is their
relative tolerance, 1e-9 in float64 and 3e-5 ≈ 250 ε in float32 (the longest
chain here is a 40-step Euler loop or a Newton solve to ε^{3/4}(1 + ‖z‖) with
a condition number below 5; measured errors in float32 are at most 1.5e-6).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsim
from flowsim.systems import Linear

N, M = 5, 3
DT = 0.1
RTOL = {"float64": 1e-9, "float32": 3e-5}


@pytest.fixture(params=["float64", "float32"])
def dtype(request):
    return request.param


def loss(z, y):
    return 0.5 * jnp.sum((z - y) ** 2)


def problem(symmetric, dtype="float64"):
    system = Linear(N, M)
    params = system.init_params(jax.random.PRNGKey(1), symmetric=symmetric)
    x = jnp.linspace(-1.0, 1.0, M)
    y = jnp.linspace(0.5, -0.5, N)
    z0 = 0.2 * jnp.ones(N)
    cast = lambda t: jax.tree.map(lambda u: u.astype(dtype), t)
    return flowsim.Problem(system.field, loss), cast(params), cast(x), cast(y), cast(z0)


def np_problem(params, x, y, z0):
    f64 = lambda u: np.asarray(u, np.float64)
    return f64(params["A"]), f64(params["W"]), f64(x), f64(y), f64(z0)


def oracle_closed_form(a, w, x, y):
    z_star = -np.linalg.solve(a, w @ x)
    lam = -np.linalg.solve(a.T, z_star - y)
    return {"A": np.outer(lam, z_star), "W": np.outer(lam, x)}, z_star


def assert_tree_close(tree, reference, rtol, dtype=None):
    for key in reference:
        if dtype is not None:
            assert tree[key].dtype == dtype, "the estimate must stay in the problem's dtype"
        np.testing.assert_allclose(np.asarray(tree[key], np.float64), reference[key], rtol=rtol,
                                   atol=rtol * np.abs(reference[key]).max())


@pytest.mark.parametrize("symmetric", [True, False])
def test_implicit_matches_closed_form(symmetric, dtype):
    system, params, x, y, z0 = problem(symmetric, dtype)
    a, w, xn, yn, _ = np_problem(params, x, y, z0)
    expected, z_star = oracle_closed_form(a, w, xn, yn)
    grads, info = flowsim.gradient(flowsim.Implicit(), system, z0, params, x, y)
    assert flowsim.result_name(info["result"]) == "successful"
    eps = float(jnp.finfo(dtype).eps)
    assert float(info["residual"]) < eps ** 0.75 * 10  # ‖F(z*)‖ at the equilibrium it differentiates
    assert_tree_close(grads, expected, RTOL[dtype], dtype)


def test_bptt_matches_closed_form(dtype):
    # z_T = Φ^T z0 + Σ_t Φ^t ε W x with Φ = I + εA, so
    # dL/dW = ε Σ_{t<T} (Φᵀ)^t r xᵀ with r = z_T − y.
    system, params, x, y, z0 = problem(False, dtype)
    a, w, xn, yn, z0n = np_problem(params, x, y, z0)
    steps = 40
    phi = np.eye(N) + DT * a
    z = z0n.copy()
    for _ in range(steps):
        z = phi @ z + DT * w @ xn
    r = z - yn
    sum_powers = sum(np.linalg.matrix_power(phi.T, t) for t in range(steps))
    expected_w = DT * np.outer(sum_powers @ r, xn)
    grads, _ = flowsim.gradient(flowsim.BPTT(steps, DT), system, z0, params, x, y)
    assert_tree_close({"W": grads["W"]}, {"W": expected_w}, RTOL[dtype], dtype)

    # dL/dA against an independent raw-JAX unrolled loop in the same dtype.
    def unrolled(p):
        zt = jax.lax.fori_loop(0, steps, lambda _, u: u + DT * (p["A"] @ u + p["W"] @ x), z0)
        return loss(zt, y)

    raw = jax.grad(unrolled)(params)
    np.testing.assert_allclose(np.asarray(grads["A"]), np.asarray(raw["A"]),
                               rtol=100 * float(jnp.finfo(dtype).eps))


def test_forward_equals_bptt(dtype):
    system, params, x, y, z0 = problem(False, dtype)
    reverse, _ = flowsim.gradient(flowsim.BPTT(30, DT), system, z0, params, x, y)
    forward, _ = flowsim.gradient(flowsim.Forward(30, DT), system, z0, params, x, y)
    assert forward["A"].dtype == dtype
    assert float(flowsim.relative_error(forward, reverse)) < 1000 * float(jnp.finfo(dtype).eps)


def test_random_tangents_are_unbiased_and_draw_from_the_key():
    """k random tangents: ĝ = (1/k) Σ (∇L·v) v with E[ĝ] = ∇L. The mean of R
    independent estimates lies within a few standard errors of BPTT's gradient,
    entry by entry; a single estimate (k = 4, dim θ = 40) is far from it."""
    system, params, x, y, z0 = problem(False)
    exact, _ = flowsim.gradient(flowsim.BPTT(30, DT), system, z0, params, x, y)
    rule = flowsim.Forward(30, DT, directions=4)
    draws = [flowsim.gradient(rule, system, z0, params, x, y, key=jax.random.PRNGKey(i))[0]
             for i in range(400)]
    flat = np.stack([np.concatenate([np.ravel(g[k]) for k in ("A", "W")]) for g in draws])
    truth = np.concatenate([np.ravel(exact[k]) for k in ("A", "W")])
    mean, sem = flat.mean(0), flat.std(0, ddof=1) / np.sqrt(len(draws))
    z_scores = (mean - truth) / sem
    assert np.max(np.abs(z_scores)) < 4.5  # 40 entries: |z| > 4.5 has probability ~3e-4
    assert np.linalg.norm(flat[0] - truth) > 0.5 * np.linalg.norm(truth)  # one draw is noisy
    # a different key draws different tangents; the same key the same ones
    assert not np.allclose(flat[0], flat[1])
    again, _ = flowsim.gradient(rule, system, z0, params, x, y, key=jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(again["A"]), np.asarray(draws[0]["A"]))
    with pytest.raises(ValueError, match="needs a PRNG key"):
        flowsim.gradient(rule, system, z0, params, x, y)


def test_rbp_matches_closed_form_and_converges_to_implicit(dtype):
    # Euler on dλ/dt = Aᵀλ + g from 0: λ_T = ε Σ_{t<T} (I + εAᵀ)^t g.
    system, params, x, y, z0 = problem(False, dtype)
    a, w, xn, yn, _ = np_problem(params, x, y, z0)
    oracle, z_star = oracle_closed_form(a, w, xn, yn)
    steps = 25
    g = z_star - yn
    lam = DT * sum(np.linalg.matrix_power(np.eye(N) + DT * a.T, t) for t in range(steps)) @ g
    grads, _ = flowsim.gradient(flowsim.RBP(steps, DT, max_steps=1000), system, z0, params, x, y)
    assert_tree_close(grads, {"A": np.outer(lam, z_star), "W": np.outer(lam, xn)}, RTOL[dtype],
                      dtype)
    if dtype == "float32":
        return
    errors = []
    for steps in (25, 100, 1000):
        grads, _ = flowsim.gradient(flowsim.RBP(steps, DT, max_steps=1000), system, z0, params, x, y)
        errors.append(float(flowsim.relative_error(grads, {k: jnp.asarray(v) for k, v in oracle.items()})))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-9


@pytest.mark.parametrize("symmetric_nudge", [True, False])
def test_ep_matches_closed_form(symmetric_nudge, dtype):
    # Nudged Euler from z*: z^β_T = z^β + (I + ε(A − βI))^T (z* − z^β),
    # z^β = (A − βI)^{-1} (−W x − β y).
    system, params, x, y, z0 = problem(False, dtype)
    a, w, xn, yn, _ = np_problem(params, x, y, z0)
    _, z_star = oracle_closed_form(a, w, xn, yn)
    beta, steps = 0.05, 60

    def nudged_state(b):
        fixed = np.linalg.solve(a - b * np.eye(N), -w @ xn - b * yn)
        decay = np.linalg.matrix_power(np.eye(N) + DT * (a - b * np.eye(N)), steps)
        return fixed + decay @ (z_star - fixed)

    if symmetric_nudge:
        response = (nudged_state(beta) - nudged_state(-beta)) / (2 * beta)
    else:
        response = (nudged_state(beta) - z_star) / beta
    expected = {"A": -np.outer(response, z_star), "W": -np.outer(response, xn)}
    grads, _ = flowsim.gradient(flowsim.EP(beta, steps, DT, symmetric_nudge), system, z0,
                                params, x, y)
    assert_tree_close(grads, expected, RTOL[dtype], dtype)


def test_vector_field_ep_is_biased_on_a_non_symmetric_jacobian():
    # Long phase, small β: EP → −F_θᵀ A^{-1} L_z, not the oracle's −F_θᵀ A^{-T} L_z.
    system, params, x, y, z0 = problem(False)
    a, w, xn, yn, _ = np_problem(params, x, y, z0)
    oracle, z_star = oracle_closed_form(a, w, xn, yn)
    response = np.linalg.solve(a, z_star - yn)
    limit = {"A": -np.outer(response, z_star), "W": -np.outer(response, xn)}
    grads, _ = flowsim.gradient(flowsim.EP(1e-4, 2000, DT, True), system, z0, params, x, y)
    assert_tree_close(grads, limit, 1e-7)
    bias = float(flowsim.relative_error(grads, {k: jnp.asarray(v) for k, v in oracle.items()}))
    assert bias > 0.05


@pytest.mark.slow
def test_holomorphic_ep_matches_its_fourier_closed_form(dtype):
    system, params, x, y, z0 = problem(True, dtype)
    a, w, xn, yn, _ = np_problem(params, x, y, z0)
    oracle, z_star = oracle_closed_form(a, w, xn, yn)
    radius, points, steps = 0.3, 6, 80

    def nudged_state(b):
        fixed = np.linalg.solve(a - b * np.eye(N), -w @ xn - b * yn)
        decay = np.linalg.matrix_power(np.eye(N) + DT * (a - b * np.eye(N)), steps)
        return fixed + decay @ (z_star - fixed)

    phases = np.exp(2j * np.pi * np.arange(points) / points)
    coefficient = sum(nudged_state(radius * p) * np.conj(p) for p in phases) / (points * radius)
    expected = {"A": -np.outer(coefficient.real, z_star), "W": -np.outer(coefficient.real, xn)}
    grads, _ = flowsim.gradient(flowsim.HolomorphicEP(radius, points, steps, DT), system, z0,
                                params, x, y)
    assert_tree_close(grads, expected, RTOL[dtype], dtype)
    if dtype == "float32":
        return
    # Converged phase, finite radius: the trapezoid rule's aliasing error falls as
    # (r/ρ)^N, ρ the distance from 0 to the nearest pole of β ↦ z^β, i.e. the
    # eigenvalue of A of smallest modulus. Check that geometric order.
    pole = np.min(np.abs(np.linalg.eigvals(a)))
    reference = {k: jnp.asarray(v) for k, v in oracle.items()}

    @jax.jit
    def estimates(params):  # the three point counts (static: three programs) compiled as one
        return [flowsim.gradient(flowsim.HolomorphicEP(radius, n, 1000, DT), system, z0, params,
                                 x, y)[0] for n in (4, 8, 12)]

    errors = [float(flowsim.relative_error(grads, reference)) for grads in estimates(params)]
    predicted = (radius / pole) ** 4
    for coarse, fine in zip(errors, errors[1:]):
        assert 0.5 * predicted < fine / coarse < 2.0 * predicted
    assert errors[-1] < 2e-3
