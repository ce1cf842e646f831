"""Rightmost eigenvalues (dense, Arnoldi, shift-invert) against closed forms, and a
20,000-dimensional continuation, matrix-free, located against its closed form in < 2 GB."""

import json
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowsim.bifurcation import SpectrumOptions, rightmost
from flowsim.systems import Bratu, TanhRing


def laplacian_eigenvalues(n, k):
    h = 1.0 / (n + 1)
    return -(4 / h**2) * np.sin(np.arange(1, k + 1) * np.pi * h / 2) ** 2


def bratu_jvp(n):
    system = Bratu(n)
    z = jnp.zeros(n)
    return jax.linearize(lambda u: system.field(u, {"lambda": 0.0}), z)[1], z


@pytest.mark.parametrize("options", [
    SpectrumOptions(k=4),
    SpectrumOptions(k=4, dense_max=10, krylov_dim=20),
    SpectrumOptions(k=4, dense_max=10, factor_max=10, shift=0.0, krylov_dim=20)],
    ids=["dense", "shift-invert-lu", "shift-invert-gmres"])
def test_bratu_laplacian_rightmost_eigenvalues_and_honest_residuals(options):
    # at u = 0, λ = 0 the Jacobian is the discrete Laplacian: −(4/h²) sin²(kπh/2)
    jvp, z = bratu_jvp(100)
    spectrum = jax.jit(lambda z: rightmost(jvp, z, options))(z)
    exact = laplacian_eigenvalues(100, 4)
    error = np.abs(np.asarray(spectrum.values) - exact)
    assert np.all(np.abs(np.imag(spectrum.values)) < 1e-8)
    assert np.max(error / np.abs(exact)) < 1e-8
    # symmetric F_z: an eigenvalue lies within the residual of each returned value
    assert np.all(error <= np.asarray(spectrum.residuals) + 1e-9 * np.abs(exact))


def test_isolated_mode_of_a_large_ring_by_plain_arnoldi_vmapped_over_the_gain():
    # at z = 0 the uniform mode's eigenvalue is −1 + c + κ; all others lie in [−1 − κ, −1 + κ]
    ring, n, kappa = TanhRing(5000), 5000, 0.2
    z = jnp.zeros(n)
    options = SpectrumOptions(k=2, krylov_dim=30)

    def top(c):
        params = {"c": c, "kappa": kappa, "b": 0.0}
        jvp = jax.linearize(lambda u: ring.field(u, params), z)[1]
        spectrum = rightmost(jvp, z, options)
        return spectrum.values[0], spectrum.residuals[0]

    gains = jnp.array([0.3, 0.9, 1.4])
    values, residuals = jax.jit(jax.vmap(top))(gains)
    np.testing.assert_allclose(np.real(values), -1 + np.asarray(gains) + kappa, atol=1e-10)
    assert np.all(np.asarray(residuals) < 1e-8)


RING_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    from flowsim.bifurcation import ContinuationOptions, continuation
    from flowsim.systems import TanhRing
    ring = TanhRing(20_000)
    params = {"c": 1.8, "kappa": 0.2, "b": 0.0}
    branch = continuation(ring.field, ring.start(params), params, "b", 0.6,
                          options=ContinuationOptions(ds=0.1, ds_max=0.3, max_points=40))
    folds = [point.p for point in branch.bifurcations if point.kind == "fold" and point.converged]
    json.dump({"folds": folds, "end": branch.end, "points": len(branch.p),
               "dense": int(branch.z.shape[1]),
               "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, sys.stdout)
""")


@pytest.mark.slow
def test_twenty_thousand_dimensional_continuation_locates_its_fold_in_under_2_gb():
    # uniform states η − g tanh η = b, g = c + κ = 2. From the origin at b = 0 (the
    # unstable middle branch, η ≈ −b) b rises until the fold where g sech²η = 1:
    # η_f = −arccosh √g, b_f = η_f − g tanh η_f = 0.5328…; then the stable lower branch
    # turns back and leaves [0, 0.6].
    out = subprocess.run([sys.executable, "-c", RING_SCRIPT], capture_output=True, text=True,
                         check=True)
    found = json.loads(out.stdout)
    g = 2.0
    eta = -np.arccosh(np.sqrt(g))
    b_fold = eta - g * np.tanh(eta)
    assert found["dense"] == 20_000
    assert len(found["folds"]) >= 1
    assert abs(found["folds"][0] - b_fold) < 1e-8
    assert found["peak_mb"] < 2048


def test_matrix_free_branch_point_of_a_ring_where_restarted_gmres_stagnates():
    # b = 0: the origin loses stability through the uniform mode at c + κ = 1. Moore's
    # system here (1,002 unknowns, above dense_max) stagnates in GMRES; LSMR takes over.
    from flowsim.bifurcation import ContinuationOptions, LinearSolve, continuation

    ring = TanhRing(500)
    params = {"c": 0.0, "kappa": 0.2, "b": 0.0}
    branch = continuation(ring.field, ring.start(params), params, "c", 2.0,
                          options=ContinuationOptions(ds=0.1, ds_max=0.5,
                                                      linear=LinearSolve(dense_max=400)))
    [point] = branch.bifurcations
    assert point.kind == "branch_point" and point.converged
    assert abs(point.p - 0.8) < 1e-8
