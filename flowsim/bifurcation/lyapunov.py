r"""The k largest Lyapunov exponents of a trajectory, by the QR method.

For the flow ż = F(z, θ) the tangent vectors ride along with the state,

    ż = F(z),      Q̇ = F_z(z) Q,      Q(0) = Q₀ ∈ ℝ^{n×k},  Q₀ᵀQ₀ = I,

Q̇ column by column as a Jacobian-vector product (``jax.jvp``, vmapped over the
k columns, the primal F(z) once): F_z is never formed. One diffrax solve per
re-orthonormalisation interval Δ (Tsit5, PID step control on the whole (z, Q)),
then Q(Δ) = Q' R (``jnp.linalg.qr``, R upper triangular) and the next interval
starts from (z(Δ), Q'). After N intervals, T = NΔ (Benettin, Galgani, Giorgilli
& Strelcyn 1980; Shimada & Nagashima 1979),

    λ_i ≈ (1/T) Σ_{j=1}^{N} log |R^{(j)}_{ii}|,      i = 1, …, k,

because R^{(N)} ⋯ R^{(1)} is the R factor of Φ(T) Q₀ (Φ the fundamental matrix,
Φ̇ = F_z Φ, Φ(0) = I), and |R_11 ⋯ R_ii| is the growth of the i-volume spanned
by the first i columns: λ_1 + ⋯ + λ_i is its exponential rate. The QR changes
nothing in exact arithmetic; it keeps the columns from collapsing, in floating
point, onto the most expanding direction.

The sum of all n exponents is the mean divergence. By Liouville's formula
det Φ(T) = exp ∫₀ᵀ tr F_z(z(t)) dt, so with k = n, at every T,

    λ_1 + ⋯ + λ_n = (1/T) Σ_j log |det R^{(j)}| = (1/T) ∫₀ᵀ tr F_z(z(t)) dt,

exact up to integration and rounding error. For Lorenz tr F_z = −(σ + 1 + β)
is constant (−41/3 at σ = 10, β = 8/3), whatever the trajectory.

Errors.

* Finite time: log |R_11 ⋯ R_ii| over [0, T] is (λ_1 + ⋯ + λ_i) T + C_i + o(1),
  C_i set by how Q₀ sits against the Oseledets subspaces. For ż = Az (A
  diagonalisable, eigenvectors V by descending Re λ): C_i = log vol(V_{:,1..i}) +
  log |det (V⁻¹Q₀)_{1..i,1..i}|. So λ̂_i = λ_i + c_i/T, c_i = C_i − C_{i−1}: a 1/T
  bias (on a chaotic attractor, plus fluctuations of order T^{−1/2}). A
  ``transient`` that evolves the tangents too (the default) aligns Q₀ with those
  subspaces before accumulation begins, which removes c_i up to e^{−(λ_i −
  λ_{i+1}) transient}; it also puts the state on the attractor.
* The interval: the columns drift toward the leading direction within an
  interval, |R_kk|/|R_11| ≈ e^{−(λ_1 − λ_k)Δ}, and R_kk is what is left after
  subtracting columns of size |R_11|: it carries a relative error of order
  ε e^{(λ_1 − λ_k)Δ} (roundoff) and rtol e^{(λ_1 − λ_k)Δ} (the solve). Keep
  (λ_1 − λ_k)Δ a few units: for Lorenz (λ_1 − λ_3 ≈ 15.5) Δ = 0.5 in float64
  (the sum of the exponents to 3e-9 at rtol 1e-10; Δ = 2 gives 3e-2) and Δ = 0.1
  in float32 (Δ = 1 leaves no digit of λ_3). ``spread`` reports the largest
  log(|R_11|/|R_kk|) seen. The intervals are [0, Δ] each (the field is
  autonomous), so solver times never grow large in float32.
* Integration: ``rtol``, ``atol`` of the PID controller on (z, Q); in the exact
  sum above the error grows like T, so it does not average out.

Failures are reported, never hidden: a solve that does not reach the end of an
interval in ``max_steps`` steps gives ``RESULTS.max_steps_reached``; a state,
tangent or log that is not finite (or another diffrax failure) gives
``RESULTS.nonfinite``. Then ``exponents`` is NaN, ``running`` is NaN from the
failed interval on, and the intervals after it are skipped.
"""

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._results import RESULTS
from .._tolerance import eps


class LyapunovResult(eqx.Module):
    """The estimate (see the module docstring).

    Attributes:
        exponents: (k,) λ_1 ≥ … ≥ λ_k (up to finite-time error), NaN on failure.
        running: (N, k) the running estimates Σ_{j≤m} log|R^{(j)}_ii| / t_m after
            each interval m (the convergence curve); NaN from a failed interval on.
        times: (N,) t_m = mΔ, time since the accumulation began (after the transient).
        final_state: z at the end (at the start of the failed interval on failure).
        spread: max over the intervals of log(max_i |R_ii| / min_i |R_ii|) ≈ (λ_1 − λ_k)Δ:
            the smallest diagonal entry carries a relative error ~ ε e^{spread} from
            roundoff (and rtol e^{spread} from the solve); see "The interval" above.
        result: ``RESULTS.successful``, ``max_steps_reached`` (a solve did not reach
            the end of its interval) or ``nonfinite``.
    """

    exponents: jax.Array
    running: jax.Array
    times: jax.Array
    final_state: jax.Array
    spread: jax.Array
    result: RESULTS


def default_tolerance(dtype) -> float:
    """rtol = atol = ε^{2/3} (float64: 3.7e-11, float32: 2.4e-5)."""
    return eps(dtype) ** (2.0 / 3.0)


def intervals(span: float, interval: float) -> int:
    """How many intervals of length ≤ ``interval`` make up ``span``: ⌈span/interval⌉
    (up to a relative 1e-9, so 10/0.1 is 100, not 101)."""
    if span <= 0:
        return 0
    return max(1, math.ceil(span / interval * (1 - 1e-9)))


def lyapunov_exponents(field, z0, params, *, exponents: int | None = None, t_final: float,
                       interval: float, transient: float = 0.0, solver=None,
                       rtol: float | None = None, atol: float | None = None,
                       max_steps: int = 4096, transient_tangents: bool = True,
                       tangents=None, key=None) -> LyapunovResult:
    """The ``exponents`` largest Lyapunov exponents of ż = field(z, params) from ``z0``.

    Args:
        field: ``field(z, params) -> ż`` (a system's ``field`` method), z of shape (n,).
        z0: (n,) start; its floating dtype is the computation's (float32 works).
        params: pytree of parameters (floats become arrays of z0's dtype).
        exponents: k, 1 ≤ k ≤ n (default n: all of them).
        t_final: accumulation time T > 0 (after the transient).
        interval: re-orthonormalisation interval; the one used is
            Δ = T/N, N = ⌈T/interval⌉ (so Δ ≤ interval and NΔ = T).
        transient: time evolved first and discarded, in ⌈transient/interval⌉ pieces.
        solver: a diffrax solver (default ``Tsit5()``), with a ``PIDController``.
        rtol, atol: the controller's tolerances (default ε^{2/3} of the dtype).
        max_steps: solver steps allowed per interval.
        transient_tangents: evolve (and re-orthonormalise) the tangents during the
            transient too, aligning them before accumulation starts; False: the
            state alone.
        tangents: (n, k) initial tangent vectors Q₀ (orthonormalised here); default
            random, from ``key`` (default ``PRNGKey(0)``).
        key: PRNG key of the random Q₀.

    Returns a :class:`LyapunovResult`. One jitted program: ``jax.lax.scan`` over
    the intervals; k, N and ``max_steps`` are compiled in, the rest is traced.
    Raises ValueError (one line) for a bad size or time.
    """
    z0 = jnp.asarray(z0)
    if not jnp.issubdtype(z0.dtype, jnp.floating):
        z0 = z0.astype(float)
    if z0.ndim != 1:
        raise ValueError(f"z0 must be a 1-D state, got shape {z0.shape}")
    n = z0.shape[0]
    k = n if exponents is None else int(exponents)
    if not 1 <= k <= n:
        raise ValueError(f"exponents = {k}: must be between 1 and the state dimension {n}")
    for name, value in (("t_final", t_final), ("interval", interval)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} = {value}: must be finite and > 0")
    if not (math.isfinite(transient) and transient >= 0):
        raise ValueError(f"transient = {transient}: must be finite and >= 0")
    dtype = z0.dtype
    num = intervals(t_final, interval)
    num_transient = intervals(transient, interval)
    tol = default_tolerance(dtype)
    rtol = tol if rtol is None else rtol
    atol = tol if atol is None else atol
    key = jax.random.PRNGKey(0) if key is None else key

    def as_dtype(leaf):
        if isinstance(leaf, float) or (hasattr(leaf, "dtype")
                                       and jnp.issubdtype(leaf.dtype, jnp.floating)):
            return jnp.asarray(leaf, dtype)
        return leaf

    params = jax.tree.map(as_dtype, params)
    if tangents is None:
        tangents = jax.random.normal(key, (n, k), dtype)
    tangents = jnp.asarray(tangents, dtype)
    if tangents.shape != (n, k):
        raise ValueError(f"tangents must have shape {(n, k)} (n, exponents), got {tangents.shape}")
    q0, _ = jnp.linalg.qr(tangents)
    scalars = [jnp.asarray(v, dtype) for v in (t_final / num, transient / max(num_transient, 1),
                                               rtol, atol)]
    solver = diffrax.Tsit5() if solver is None else solver
    return _lyapunov(field, z0, q0, params, *scalars, solver, num, num_transient, max_steps,
                     transient_tangents)


def _code(sol_result):
    """diffrax's result as flowsim's: out of steps, or (anything else) non-finite."""
    return RESULTS.where(sol_result == diffrax.RESULTS.successful, RESULTS.successful,
                         RESULTS.where(sol_result == diffrax.RESULTS.max_steps_reached,
                                       RESULTS.max_steps_reached, RESULTS.nonfinite))


@eqx.filter_jit
def _lyapunov(field, z0, q0, params, dt, dt_transient, rtol, atol, solver, num, num_transient,
              max_steps, transient_tangents):
    controller = diffrax.PIDController(rtol=rtol, atol=atol)
    zero = jnp.zeros((), z0.dtype)

    def with_tangents(t, y, args):
        z, q = y
        f = lambda v: field(v, args)  # noqa: E731
        # primal unbatched (evaluated once), one JVP per column
        dz, dq = jax.vmap(lambda c: jax.jvp(f, (z,), (c,)), in_axes=1, out_axes=(None, 1))(q)
        return dz, dq

    def state_only(t, z, args):
        return field(z, args)

    def solve(vf, y0, span):
        # autonomous: every interval is [0, span], so float32 times stay small
        sol = diffrax.diffeqsolve(diffrax.ODETerm(vf), solver, zero, span, None, y0, args=params,
                                  stepsize_controller=controller, max_steps=max_steps,
                                  saveat=diffrax.SaveAt(t1=True), throw=False)
        return jax.tree.map(lambda a: a[-1], sol.ys), _code(sol.result)

    def step(span, tangents):
        """One interval from (z, Q, result): the new carry and log|diag R| (zeros when
        the tangents are not evolved); skipped once a result is a failure."""

        def advance(carry):
            z, q, _ = carry
            if tangents:
                (z1, q1), result = solve(with_tangents, (z, q), span)
                q1, r = jnp.linalg.qr(q1)
                logs = jnp.log(jnp.abs(jnp.diagonal(r)))
            else:
                z1, result = solve(state_only, z, span)
                q1, logs = q, jnp.zeros(q.shape[1], q.dtype)
            finite = jnp.all(jnp.isfinite(z1)) & jnp.all(jnp.isfinite(q1)) & jnp.all(
                jnp.isfinite(logs))
            result = RESULTS.where((result == RESULTS.successful) & ~finite, RESULTS.nonfinite,
                                   result)
            ok = result == RESULTS.successful
            # keep the last good state on failure (the next intervals are skipped)
            z1, q1 = jnp.where(ok, z1, z), jnp.where(ok, q1, q)
            return (z1, q1, result), logs

        def skip(carry):
            return carry, jnp.zeros(carry[1].shape[1], carry[1].dtype)

        def body(carry, _):
            carry, logs = jax.lax.cond(carry[2] == RESULTS.successful, advance, skip, carry)
            return carry, (logs, carry[2] == RESULTS.successful)

        return body

    carry = (z0, q0, RESULTS.successful)
    if num_transient:
        carry, _ = jax.lax.scan(step(dt_transient, transient_tangents), carry, None,
                                length=num_transient)
    (z, _, result), (logs, ok) = jax.lax.scan(step(dt, True), carry, None, length=num)
    times = dt * jnp.arange(1, num + 1, dtype=z0.dtype)
    running = jnp.where(ok[:, None], jnp.cumsum(logs, axis=0) / times[:, None], jnp.nan)
    good = result == RESULTS.successful
    spread = jnp.where(good, jnp.max(jnp.max(logs, axis=1) - jnp.min(logs, axis=1)), jnp.nan)
    return LyapunovResult(exponents=jnp.where(good, running[-1], jnp.nan), running=running,
                          times=times, final_state=z, spread=spread, result=result)
