r"""Two-player 2×2 games and their two-population replicator dynamics.

**Indexing contract.** Both payoff matrices are indexed by the *row* player's
action first: ``row[a, b]`` and ``col[a, b]`` are the row and the column
player's payoffs when row plays ``a`` and column plays ``b``; action 0 is
cooperate (C), 1 is defect (D). A symmetric game therefore has ``col = row.T``
(the Prisoner's Dilemma: row = [[3, 0], [5, 1]], col = [[3, 5], [0, 1]]).
Seed 003 gave the column player ``row`` itself — for the PD that makes D
strictly *dominated* for the column player, so its "emergent Nash" converged
to (D, C), where the true column player's regret is 1.

**Mixed profiles.** p = P(row plays D), q = P(column plays D). The expected
payoffs of the pure actions against the other player's mix are

    u_row(a) = (1 − q) row[a, 0] + q row[a, 1],
    u_col(b) = (1 − p) col[0, b] + p col[1, b],

and each player's advantage of defecting is affine in the other's mix:

    Δ_row(q) = u_row(D) − u_row(C) = (1 − q) Δ_row(0) + q Δ_row(1),
    Δ_col(p) = u_col(D) − u_col(C) = (1 − p) Δ_col(0) + p Δ_col(1).

**Regret** (external, of the mixed strategy against the best pure reply):
max_a u(a) − u(mix) = (1 − p) max(Δ, 0) + p max(−Δ, 0) ≥ 0 for the row player
(q, Δ_col for the column player). (p, q) is a Nash equilibrium exactly when
both regrets are 0: each player puts weight only on best replies.

**Replicator dynamics** (two populations):

    ṗ = p (1 − p) Δ_row(q),      q̇ = q (1 − q) Δ_col(p).

They are integrated in log-odds x = log(p/(1 − p)), y = log(q/(1 − q)), where
they are exactly

    ẋ = Δ_row(σ(y)),             ẏ = Δ_col(σ(x)),

a field bounded by the largest |Δ|: x and y stay finite at every finite time,
so an interior start never reaches a pure corner in finite time and a regret
is never exactly 0. Log-odds keep the approach to a corner representable:
with p itself, p(1 − p) and the regret (1 − p)Δ are differences that round to
0 (1 − p below 1e-16) long before they are small on the scale that matters,
while σ(−x) carries e^{−40} ≈ 4e-18 to full relative precision. The regret is
evaluated from x with 1 − p = σ(−x), never as 1 − p.

**Rate.** If D is strictly dominant for the row player, g = min(Δ_row(0),
Δ_row(1)) > 0, then ẋ ≥ g, x(t) ≥ x₀ + g t and

    regret_row(t) = σ(−x(t)) Δ_row(q(t)) ≤ max Δ_row · e^{−x₀ − g t};

asymptotically −d/dt log regret_row → Δ_row(q*), the gap at the limit (the
same holds at any strict pure equilibrium). For the PD, Δ_row(q) = 2 − q, so
regret ≤ 2 e^{−x₀ − t} with rate → Δ_row(1) = 1; likewise for the column player.

**First integral.** For every 2×2 game

    H = Δ_col(0) log p − Δ_col(1) log(1 − p) − Δ_row(0) log q + Δ_row(1) log(1 − q)

is constant along the flow: dH/dt = ẋ [(1 − p) Δ_col(0) + p Δ_col(1)] −
ẏ [(1 − q) Δ_row(0) + q Δ_row(1)] = ẋ ẏ − ẏ ẋ = 0. In matching pennies its
level sets are closed curves around the mixed equilibrium (the flow cycles,
the regrets do not vanish); it is the solver's accuracy check everywhere.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logit

from .._results import RESULTS

COOPERATE, DEFECT = 0, 1
ACTIONS = "CD"


def check_payoff(matrix, name: str) -> None:
    """Raise ValueError (one line) unless ``matrix`` is a finite 2×2 array of numbers."""
    try:
        values = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} payoffs must be a 2x2 matrix of numbers [[CC, CD], [DC, DD]], "
                         f"got {matrix!r}") from None
    if values.shape != (2, 2):
        raise ValueError(f"{name} payoffs must be a 2x2 matrix [[CC, CD], [DC, DD]], "
                         f"got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} payoffs must be finite, got {values.tolist()}")


def check_game(row, col) -> None:
    """Both payoff matrices finite and 2×2 (ValueError naming the first problem)."""
    check_payoff(row, "row")
    check_payoff(col, "col")


class Game2x2(eqx.Module):
    """A bimatrix game; ``row[a, b]``, ``col[a, b]``: payoffs when row plays a, column b."""

    row: jax.Array
    col: jax.Array

    def __init__(self, row, col):
        # Checked when the values are known; a game built inside a trace is taken as is.
        if not any(isinstance(m, jax.core.Tracer) for m in (row, col)):
            check_game(row, col)
        dtype = jnp.result_type(float)
        self.row = jnp.asarray(row, dtype=dtype)
        self.col = jnp.asarray(col, dtype=dtype)

    def payoffs_row(self, q):
        """(u_row(C), u_row(D)) against the column mix (1 − q, q)."""
        return (1 - q) * self.row[:, COOPERATE] + q * self.row[:, DEFECT]

    def payoffs_col(self, p):
        """(u_col(C), u_col(D)) against the row mix (1 − p, p)."""
        return (1 - p) * self.col[COOPERATE, :] + p * self.col[DEFECT, :]

    def advantage_row(self, q):
        """Δ_row(q) = u_row(D) − u_row(C)."""
        u = self.payoffs_row(q)
        return u[DEFECT] - u[COOPERATE]

    def advantage_col(self, p):
        """Δ_col(p) = u_col(D) − u_col(C)."""
        u = self.payoffs_col(p)
        return u[DEFECT] - u[COOPERATE]


def regrets(game: Game2x2, p, q):
    """(regret_row, regret_col) at (p, q) by the definition max_a u(a) − u(mix)."""
    u_row, u_col = game.payoffs_row(q), game.payoffs_col(p)
    mix_row = (1 - p) * u_row[COOPERATE] + p * u_row[DEFECT]
    mix_col = (1 - q) * u_col[COOPERATE] + q * u_col[DEFECT]
    return jnp.max(u_row) - mix_row, jnp.max(u_col) - mix_col


def _regret_from_logodds(advantage, z):
    # (1 − p) max(Δ, 0) + p max(−Δ, 0) with 1 − p = σ(−z): no cancellation near a corner.
    return (jax.nn.sigmoid(-z) * jnp.maximum(advantage, 0)
            + jax.nn.sigmoid(z) * jnp.maximum(-advantage, 0))


def regrets_logodds(game: Game2x2, x, y):
    """(regret_row, regret_col) at log-odds (x, y) of defecting; equals :func:`regrets`."""
    p, q = jax.nn.sigmoid(x), jax.nn.sigmoid(y)
    return (_regret_from_logodds(game.advantage_row(q), x),
            _regret_from_logodds(game.advantage_col(p), y))


def first_integral(game: Game2x2, x, y):
    """H (module docstring) at log-odds (x, y); log p = −softplus(−x), log(1 − p) = −softplus(x)."""
    sp = jax.nn.softplus
    return (-game.advantage_col(0.0) * sp(-x) + game.advantage_col(1.0) * sp(x)
            + game.advantage_row(0.0) * sp(-y) - game.advantage_row(1.0) * sp(y))


def field(t, state, game):
    """The replicator field in log-odds: (ẋ, ẏ) = (Δ_row(σ(y)), Δ_col(σ(x)))."""
    x, y = state
    return jnp.stack([game.advantage_row(jax.nn.sigmoid(y)),
                      game.advantage_col(jax.nn.sigmoid(x))])


class Trajectory(eqx.Module):
    """A replicator solution saved at ``ts``: log-odds, probabilities and regrets.

    ``result`` is :class:`flowsim._results.RESULTS`: ``successful``,
    ``max_steps_reached`` or ``nonfinite``; only the first makes the path trustworthy.
    """

    ts: jax.Array
    x: jax.Array            # log-odds of the row player defecting
    y: jax.Array            # log-odds of the column player defecting
    p: jax.Array            # P(row defects) = σ(x)
    q: jax.Array            # P(column defects) = σ(y)
    regret_row: jax.Array
    regret_col: jax.Array
    result: RESULTS


def replicator_logodds(game: Game2x2, x0, y0, t1, *, ts=None, rtol: float = 1e-10,
                       atol: float = 1e-10, max_steps: int = 16384) -> Trajectory:
    """Solve ẋ = Δ_row(σ(y)), ẏ = Δ_col(σ(x)) on [0, t1] from log-odds (x0, y0).

    Tsit5 with a PID step-size controller; the state is saved at ``ts``
    (default: 0 and t1). A failed solve is reported in ``result``, not raised.
    Starts, horizon and saved times are traced values (a new t1 compiles
    nothing new); the tolerances and ``max_steps`` are compiled in.
    """
    dtype = game.row.dtype
    t1 = jnp.asarray(t1, dtype)
    ts = jnp.stack([jnp.zeros_like(t1), t1]) if ts is None else jnp.asarray(ts, dtype)
    return _solve(game, jnp.asarray(x0, dtype), jnp.asarray(y0, dtype), t1, ts, rtol, atol,
                  max_steps)


@eqx.filter_jit
def _solve(game, x0, y0, t1, ts, rtol, atol, max_steps):
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), diffrax.Tsit5(), t0=jnp.zeros_like(t1), t1=t1, dt0=None,
        y0=jnp.stack([x0, y0]), args=game, saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps, throw=False)
    x, y = sol.ys[:, 0], sol.ys[:, 1]
    regret_row, regret_col = jax.vmap(regrets_logodds, in_axes=(None, 0, 0))(game, x, y)
    result = RESULTS.where(sol.result == diffrax.RESULTS.successful, RESULTS.successful,
                           RESULTS.max_steps_reached)
    result = RESULTS.where(jnp.all(jnp.isfinite(sol.ys)), result, RESULTS.nonfinite)
    return Trajectory(ts=sol.ts, x=x, y=y, p=jax.nn.sigmoid(x), q=jax.nn.sigmoid(y),
                      regret_row=regret_row, regret_col=regret_col, result=result)


def replicator(game: Game2x2, p0, q0, t1, *, ts=None, rtol: float = 1e-10, atol: float = 1e-10,
               max_steps: int = 16384) -> Trajectory:
    """The replicator path from P(defect) = (p0, q0), both in the open interval (0, 1).

    A pure start is a rest point that the log-odds cannot represent; it is
    refused (ValueError) when p0, q0 are concrete, and gives a non-finite path otherwise.
    """
    for name, value in (("p0", p0), ("q0", q0)):
        if not isinstance(value, jax.core.Tracer) and not np.all((np.asarray(value) > 0)
                                                                 & (np.asarray(value) < 1)):
            raise ValueError(f"{name} must be in the open interval (0, 1), got {value!r}")
    dtype = game.row.dtype
    return replicator_logodds(game, logit(jnp.asarray(p0, dtype)), logit(jnp.asarray(q0, dtype)),
                              t1, ts=ts, rtol=rtol, atol=atol, max_steps=max_steps)


def nash_equilibria(game: Game2x2) -> list[tuple[float, float]]:
    """The Nash equilibria (p, q) of a generic game (no payoff ties): pure ones, then the mixed one.

    A pure profile is an equilibrium when neither player gains by switching; an
    interior one solves Δ_col(p*) = 0, Δ_row(q*) = 0 with both in (0, 1). With
    ties (Δ = 0 at a corner) there are continua, which are not listed.
    """
    row, col = np.asarray(game.row), np.asarray(game.col)
    found = [(float(a), float(b)) for a in (0, 1) for b in (0, 1)
             if row[a, b] >= row[1 - a, b] and col[a, b] >= col[a, 1 - b]]
    dr = [float(game.advantage_row(q)) for q in (0.0, 1.0)]
    dc = [float(game.advantage_col(p)) for p in (0.0, 1.0)]
    if dr[0] != dr[1] and dc[0] != dc[1]:
        p_star, q_star = dc[0] / (dc[0] - dc[1]), dr[0] / (dr[0] - dr[1])
        if 0 < p_star < 1 and 0 < q_star < 1:
            found.append((p_star, q_star))
    return found


def profile_name(p: float, q: float) -> str:
    """'DC' for a pure profile (row's action first), else 'p=0.5,q=0.5'."""
    if p in (0.0, 1.0) and q in (0.0, 1.0):
        return ACTIONS[int(p)] + ACTIONS[int(q)]
    return f"p={p:.6g},q={q:.6g}"
