"""Lyapunov exponents by the QR method (flowsim.bifurcation.lyapunov) against exact values.

* ż = Az: the finite-time estimate is λ_i + c_i/T with c_i from A's eigenvectors
  and Q₀ (module docstring), exactly; with a transient that aligns the tangents,
  the eigenvalues themselves.
* Lorenz: the sum of the three exponents is tr F_z = −(σ + 1 + β) at every T
  (Liouville), in float64 and float32; λ_1, λ_2 against the literature.
* Failures: out of steps, or a finite-time blow-up (ż = z², z(0) = 1, whose running
  estimate before the blow-up is exact), give a failure code and NaN, not numbers.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowsim import RESULTS, result_name
from flowsim.bifurcation.lyapunov import lyapunov_exponents
from flowsim.systems import Lorenz

# Upper triangular: eigenvalues 0.5, -0.2, -1.3 (the diagonal), non-orthogonal eigenvectors.
A = np.array([[0.5, 1.0, 0.3], [0.0, -0.2, 0.7], [0.0, 0.0, -1.3]])
EIGENVALUES = np.array([0.5, -0.2, -1.3])
TIGHT = {"rtol": 1e-10, "atol": 1e-10}
LORENZ_TRACE = -(10.0 + 1.0 + 8.0 / 3.0)  # −(σ + 1 + β) = −41/3


def linear(z, params):
    return params["A"] @ z


def finite_time_offsets(a, q0):
    """c_i with λ̂_i(T) = λ_i + c_i/T + O(e^{−gap T}/T) for ż = az from tangents q0 (orthonormal):
    C_i = log vol(V_{:,1..i}) + log|det (V⁻¹q0)_{1..i,1..i}|, c_i = C_i − C_{i−1}."""
    values, V = np.linalg.eig(a)
    V = np.real(V[:, np.argsort(-values.real)])
    W = np.linalg.solve(V, q0)
    C = [0.0] + [0.5 * np.log(np.linalg.det(V[:, :i].T @ V[:, :i]))
                 + np.log(abs(np.linalg.det(W[:i, :i]))) for i in range(1, len(a) + 1)]
    return np.diff(C)


@jax.jit
def _linear_T200(a, q0):
    return lyapunov_exponents(linear, jnp.ones(3), {"A": a}, t_final=200.0, interval=1.0,
                              tangents=q0, **TIGHT)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_finite_time_estimate_is_eigenvalue_plus_offset_over_T(seed):
    """λ̂_i = λ_i + c_i/T exactly (to the integration error, ~1e-10 at rtol 1e-10): the
    1/T bias of the method, with c_i computed from numpy's eigenvectors, not by the method.
    Through jax.jit with A traced (one compiled program for all seeds)."""
    q0, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    out = _linear_T200(jnp.asarray(A), jnp.asarray(q0))
    assert result_name(out.result) == "successful"
    expected = EIGENVALUES + finite_time_offsets(A, q0) / 200.0
    np.testing.assert_allclose(out.exponents, expected, rtol=0, atol=1e-8)
    # the bias itself is well resolved: max|c_i| is 0.27 to 1.1 for these Q₀ (1e-3 to 6e-3)
    assert np.max(np.abs(out.exponents - EIGENVALUES)) > 1e-3


def test_linear_exponents_are_the_eigenvalues():
    """Default random Q₀ (key 0; its |c_i| ≤ 0.3): |λ̂ − λ| = |c_i|/T ≤ 1e-2 at T = 200
    (keys 1, 2 have max|c_i| = 1.9, 4.5: 1e-2 is not a bound for every Q₀, only a 1/T one).
    With a transient of 30 that evolves the tangents, they align with the eigenvector flag
    and c_i is gone up to e^{−0.7·30} ≈ 1e-9: the eigenvalues to 1e-8."""
    T = 200.0
    plain = lyapunov_exponents(linear, jnp.ones(3), {"A": jnp.asarray(A)}, t_final=T,
                               interval=1.0, **TIGHT)
    aligned = lyapunov_exponents(linear, jnp.ones(3), {"A": jnp.asarray(A)}, t_final=T,
                                 interval=1.0, transient=30.0, **TIGHT)
    assert result_name(plain.result) == result_name(aligned.result) == "successful"
    np.testing.assert_allclose(plain.exponents, EIGENVALUES, rtol=0, atol=1e-2)
    np.testing.assert_allclose(aligned.exponents, EIGENVALUES, rtol=0, atol=1e-8)
    # k < n: the two largest only, the same numbers
    two = lyapunov_exponents(linear, jnp.ones(3), {"A": jnp.asarray(A)}, exponents=2,
                             t_final=T, interval=1.0, transient=30.0, **TIGHT)
    np.testing.assert_allclose(two.exponents, EIGENVALUES[:2], rtol=0, atol=1e-8)


def test_lorenz_sum_is_the_divergence_and_the_spectrum_matches_the_literature():
    """Sum = −41/3 to 1e-6 (measured 3.4e-9 at rtol 1e-10, Δ = 0.5); λ_1 = 0.9056,
    λ_2 = 0, λ_3 = −14.5723 (Sprott, *Chaos and Time-Series Analysis*, 2003) within 0.05: the
    finite-time estimate at T = 500 scatters by 0.007 (std over 8 starts, measured)."""
    system = Lorenz()
    params = system.default_params()
    out = lyapunov_exponents(system.field, jnp.array([1.0, 1.0, 1.0]), params, t_final=500.0,
                             interval=0.5, transient=20.0, **TIGHT)
    assert result_name(out.result) == "successful"
    lam = np.asarray(out.exponents)
    assert abs(lam.sum() - LORENZ_TRACE) <= 1e-6
    np.testing.assert_allclose(lam, [0.9056, 0.0, -14.5723], rtol=0, atol=0.05)
    # running estimates: t_m = mΔ, the last one is the answer, and the sum holds at every t_m
    np.testing.assert_allclose(out.times, 0.5 * np.arange(1, 1001), rtol=1e-14)
    np.testing.assert_array_equal(out.running[-1], out.exponents)
    np.testing.assert_allclose(np.sum(out.running, axis=1), LORENZ_TRACE, rtol=0, atol=1e-6)


def test_lorenz_sum_in_float32():
    """float32 throughout (state, tangents, output). Tolerance 100 ε |tr| = 1.6e-4: rtol =
    atol = 10ε puts the integration error of the log-volume at a few ε|tr| per unit time
    (measured 1.4e-5 over 6 starts, 9 ε|tr|); Δ = 0.1 keeps e^{(λ_1 − λ_3)Δ} ≈ 5, far from
    1/ε (Δ = 1 misses by 0.15)."""
    eps = float(jnp.finfo(jnp.float32).eps)
    system = Lorenz()
    out = lyapunov_exponents(system.field, jnp.array([1.0, 1.0, 1.0], jnp.float32),
                             system.default_params(), t_final=200.0, interval=0.1,
                             transient=20.0, rtol=10 * eps, atol=10 * eps)
    assert result_name(out.result) == "successful"
    assert out.exponents.dtype == out.running.dtype == out.final_state.dtype == jnp.float32
    total = float(jnp.sum(out.exponents.astype(jnp.float64)))
    assert abs(total - LORENZ_TRACE) <= 100 * eps * abs(LORENZ_TRACE)


def test_out_of_steps_is_a_failure_not_numbers():
    system = Lorenz()
    out = lyapunov_exponents(system.field, jnp.array([1.0, 1.0, 1.0]), system.default_params(),
                             t_final=10.0, interval=0.5, max_steps=5, **TIGHT)
    assert out.result == RESULTS.max_steps_reached
    assert np.all(np.isnan(out.exponents)) and np.all(np.isnan(out.running))


def test_blow_up_keeps_the_exact_running_estimate_before_it_and_fails_after():
    """ż = z², z(0) = 1: z = 1/(1 − t), tangent rate F_z = 2z, so the running estimate is
    (1/t)∫₀ᵗ 2/(1 − s) ds = −2 log(1 − t)/t until the blow-up at t = 1."""
    out = lyapunov_exponents(lambda z, p: z**2, jnp.array([1.0]), {}, t_final=2.0,
                             interval=0.25, **TIGHT)
    assert out.result != RESULTS.successful
    t = np.array([0.25, 0.5, 0.75])
    np.testing.assert_allclose(out.running[:3, 0], -2 * np.log(1 - t) / t, rtol=1e-8)
    assert np.all(np.isnan(out.running[3:])) and np.isnan(out.exponents[0])
    np.testing.assert_allclose(out.final_state, [4.0], rtol=1e-8)  # z(0.75), the last good state


def test_bad_sizes_are_one_line_errors():
    with pytest.raises(ValueError, match="exponents = 4: must be between 1 and the state"):
        lyapunov_exponents(linear, jnp.ones(3), {"A": jnp.asarray(A)}, exponents=4,
                           t_final=1.0, interval=0.5)
    with pytest.raises(ValueError, match="interval = 0"):
        lyapunov_exponents(linear, jnp.ones(3), {"A": jnp.asarray(A)}, t_final=1.0, interval=0)
