r"""nash: does the replicator flow of a 2×2 game end at a Nash equilibrium of *that* game?

Seed 003's "emergent Nash" gave the column player the row player's payoff
matrix as it stands (``col = row``, indexed [row action, column action]); the
column player's true payoffs are ``col[a, b]`` with the same indexing, which is
``row.T`` for a symmetric game. The study integrates the two-population
replicator dynamics (``flowsim.coordinator.games``; log-odds coordinates, Tsit5)
from a main start (p0, q0) = P(defect) of (row, column), from ``trials`` random
starts drawn uniformly in (0, 1)² from the seed, and, as the *seed-bug arm*,
the same flow with ``col = row``, whose end state is then scored under the true
game. A profile is at a Nash equilibrium when both regrets (max_a u(a) −
u(mix)) are at most ``tol``.

Decision rule, fixed before the run:

    verdict = "nash"                  both regrets ≤ tol at t1 from (p0, q0), and at least
                                      min_fraction of the random starts (point estimate)
                                      end with both regrets ≤ tol;
              "nash_main_start_only"  the main start ends at an equilibrium, fewer random
                                      starts do;
              "not_nash"              the main start does not, or its solve failed (e.g.
                                      matching pennies: the flow cycles around the mixed
                                      equilibrium and the regrets do not vanish).

A random start whose solve fails counts as not reaching an equilibrium
(``failed_paths`` counts them). For the default Prisoner's Dilemma the seed's
``col = row`` makes D strictly dominated for the column player, so the bug arm
ends at (D, C), where the true column player's regret is col[1,1] − col[1,0] = 1.

The fraction comes with its 95 % Wilson interval. The solver is checked by the
first integral H of the 2×2 replicator flow (its drift along the main and the
seed-bug paths) and, at a strict pure limit, the measured decay rate of each
regret (slope of log regret over the second half of [0, t1]) against the
predicted one, |Δ(limit)|: the payoff gap of the player's best reply there.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from pydantic import Field, field_validator

from flowsim.coordinator import games
from flowsim.run import Section, StudyConfig

from .common import save_figure
from .stats import wilson_interval


class Payoff(Section):
    row: list[list[float]] = Field(
        [[3.0, 0.0], [5.0, 1.0]],
        description="row player's payoffs [[CC, CD], [DC, DD]], indexed [row action, col action]")
    col: list[list[float]] = Field(
        [[3.0, 5.0], [0.0, 1.0]],
        description="column player's payoffs, ALSO indexed [row action, col action] "
                    "(row.T for a symmetric game)")

    @field_validator("row", "col")
    @classmethod
    def _two_by_two(cls, value, info):
        games.check_payoff(value, info.field_name)
        return value


class Config(StudyConfig):
    payoff: Payoff = Payoff()
    p0: float = Field(0.1, gt=0, lt=1, description="initial P(row player defects)")
    q0: float = Field(0.2, gt=0, lt=1, description="initial P(column player defects)")
    t1: float = Field(40.0, gt=0, le=1e4, description="integration horizon")
    points: int = Field(401, ge=2, le=10**5, description="saved times in [0, t1]")
    trials: int = Field(32, ge=1, le=10**5, description="random starts in (0,1)^2 from the seed")
    tol: float = Field(1e-6, gt=0, description="a profile is Nash when both regrets are <= tol")
    min_fraction: float = Field(0.95, gt=0, le=1,
                                description="fraction of random starts that must reach a Nash "
                                            "equilibrium for verdict 'nash'")
    rtol: float = Field(1e-10, gt=0, lt=1, description="solver relative tolerance")
    atol: float = Field(1e-10, gt=0, description="solver absolute tolerance (log-odds)")
    max_steps: int = Field(16384, ge=16, le=10**7, description="solver steps per path")


def decay_rate(ts, regret):
    """−slope of log regret over the second half of the path (NaN if a regret is 0 there)."""
    ts, regret = np.asarray(ts), np.asarray(regret)
    late = ts >= ts[-1] / 2
    if np.sum(late) < 2 or not np.all(regret[late] > 0):
        return float("nan")
    return float(-np.polyfit(ts[late], np.log(regret[late]), 1)[0])


@eqx.filter_jit
def _solve(true_game, bug_game, p0, q0, t1, ts, rtol, atol, max_steps):
    """Every path of both arms, with the bug's paths scored under the TRUE game.

    The two games are stacked and vmapped, so the program holds one ODE solve (it
    compiles once, in about half the time of two).
    """
    def arm(game):
        def solve(a, b):
            return games.replicator(game, a, b, t1, ts=ts, rtol=rtol, atol=atol,
                                    max_steps=max_steps)

        paths = jax.vmap(solve)(p0, q0)
        H = jax.vmap(jax.vmap(games.first_integral, in_axes=(None, 0, 0)),
                     in_axes=(None, 0, 0))(game, paths.x, paths.y)
        drift = jnp.max(jnp.abs(H - H[:, :1]), axis=1) / (1 + jnp.max(jnp.abs(H), axis=1))
        return paths, drift, paths.result == games.RESULTS.successful

    stacked = jax.tree.map(lambda *m: jnp.stack(m), true_game, bug_game)
    both, drift, ok = jax.vmap(arm)(stacked)
    score = jax.vmap(jax.vmap(games.regrets_logodds, in_axes=(None, 0, 0)), in_axes=(None, 0, 0))
    bug_row, bug_col = score(true_game, both.x[1], both.y[1])
    return {"p": both.p[0], "q": both.q[0], "regret_row": both.regret_row[0],
            "regret_col": both.regret_col[0], "drift": drift[0], "ok": ok[0],
            "bug_p": both.p[1], "bug_q": both.q[1], "bug_regret_row": bug_row,
            "bug_regret_col": bug_col, "bug_drift": drift[1], "bug_ok": ok[1]}


def _is_nash(regret_row, regret_col, tol):
    return (np.asarray(regret_row) <= tol) & (np.asarray(regret_col) <= tol)


def run(config, ctx):
    true_game = games.Game2x2(config.payoff.row, config.payoff.col)
    bug_game = games.Game2x2(config.payoff.row, config.payoff.row)  # what seed 003 did
    ts = np.linspace(0.0, config.t1, config.points)
    starts = np.random.default_rng(ctx.seed).uniform(size=(config.trials, 2))
    starts = np.clip(starts, 1e-12, 1 - 1e-12)  # the open square: a draw of exactly 0 is a rest point
    # path 0 is the main start, paths 1.. the random ones
    p0 = jnp.asarray(np.concatenate([[config.p0], starts[:, 0]]))
    q0 = jnp.asarray(np.concatenate([[config.q0], starts[:, 1]]))
    out = jax.tree.map(np.asarray, _solve(true_game, bug_game, p0, q0, config.t1, jnp.asarray(ts),
                                          config.rtol, config.atol, config.max_steps))
    main = {k: v[0] for k, v in out.items()}
    cloud = {k: v[1:] for k, v in out.items()}

    regret_row, regret_col = float(main["regret_row"][-1]), float(main["regret_col"][-1])
    is_nash = bool(_is_nash(regret_row, regret_col, config.tol))
    reached = _is_nash(cloud["regret_row"][:, -1], cloud["regret_col"][:, -1], config.tol)
    reached &= cloud["ok"]
    bug_reached = _is_nash(cloud["bug_regret_row"][:, -1], cloud["bug_regret_col"][:, -1],
                           config.tol) & cloud["bug_ok"]
    n_nash = int(np.sum(reached))
    fraction = n_nash / config.trials
    low, high = wilson_interval(n_nash, config.trials)
    if is_nash and main["ok"]:
        verdict = "nash" if fraction >= config.min_fraction else "nash_main_start_only"
    else:
        verdict = "not_nash"

    p1, q1 = float(main["p"][-1]), float(main["q"][-1])
    rates = {"decay_rate_row": float("nan"), "decay_rate_col": float("nan"),
             "decay_rate_row_predicted": float("nan"), "decay_rate_col_predicted": float("nan")}
    if is_nash:  # at a strict pure limit the regrets fall like e^{-|gap| t}
        rates = {"decay_rate_row": decay_rate(ts, main["regret_row"]),
                 "decay_rate_col": decay_rate(ts, main["regret_col"]),
                 "decay_rate_row_predicted": abs(float(true_game.advantage_row(round(q1)))),
                 "decay_rate_col_predicted": abs(float(true_game.advantage_col(round(p1))))}
    equilibria = games.nash_equilibria(true_game)
    pure = [games.profile_name(p, q) for p, q in equilibria if p in (0, 1) and q in (0, 1)]
    mixed = [games.profile_name(p, q) for p, q in equilibria if not (p in (0, 1) and q in (0, 1))]

    columns = {"p_row_defect": "p", "p_col_defect": "q", "regret_row": "regret_row",
               "regret_col": "regret_col", "p_row_defect_seed_bug": "bug_p",
               "p_col_defect_seed_bug": "bug_q", "regret_row_seed_bug": "bug_regret_row",
               "regret_col_seed_bug": "bug_regret_col"}
    ctx.write_metrics([{"t": float(t), **{name: float(main[key][i]) for name, key in columns.items()}}
                       for i, t in enumerate(ts)])
    _plot(true_game, config, ts, out, equilibria, rates["decay_rate_row_predicted"],
          ctx.plot_path("nash"))

    regret_row_bug, regret_col_bug = float(main["bug_regret_row"][-1]), float(main["bug_regret_col"][-1])
    return {
        "verdict": verdict,
        "p_row_defect": p1, "p_col_defect": q1,
        "regret_row": regret_row, "regret_col": regret_col,
        "is_nash": is_nash, "tol": config.tol,
        "nash_fraction": fraction, "nash_fraction_low": low, "nash_fraction_high": high,
        "nash_starts": n_nash, "trials": config.trials,
        "pure_nash": ",".join(pure) or "none", "mixed_nash": ",".join(mixed) or "none",
        **rates,
        "p_row_defect_seed_bug": float(main["bug_p"][-1]),
        "p_col_defect_seed_bug": float(main["bug_q"][-1]),
        "regret_row_seed_bug": regret_row_bug, "regret_col_seed_bug": regret_col_bug,
        "is_nash_seed_bug": bool(_is_nash(regret_row_bug, regret_col_bug, config.tol)),
        "nash_fraction_seed_bug": float(np.mean(bug_reached)),
        "first_integral_drift": float(max(main["drift"], main["bug_drift"])),
        "main_solves_ok": bool(main["ok"] and main["bug_ok"]),
        "failed_paths": int(np.sum(~out["ok"]) + np.sum(~out["bug_ok"])),
    }


def _plot(game, config, ts, out, equilibria, rate, path):
    fig, (phase, decay) = plt.subplots(1, 2, figsize=(11.5, 4.8))
    # the true game's replicator field in (p, q), underneath the paths
    grid = np.linspace(0.01, 0.99, 25)
    P, Q = np.meshgrid(grid, grid)
    row_gap = [float(game.advantage_row(q)) for q in (0.0, 1.0)]  # Δ is affine in the mix
    col_gap = [float(game.advantage_col(p)) for p in (0.0, 1.0)]
    dr = (1 - Q) * row_gap[0] + Q * row_gap[1]
    dc = (1 - P) * col_gap[0] + P * col_gap[1]
    phase.streamplot(P, Q, P * (1 - P) * dr, Q * (1 - Q) * dc, color="0.85", density=0.9,
                     linewidth=0.6)
    for i in range(1, out["p"].shape[0]):
        phase.plot(out["p"][i], out["q"][i], color="tab:blue", lw=0.5, alpha=0.35,
                   label="random starts" if i == 1 else None)
        phase.plot(out["bug_p"][i], out["bug_q"][i], color="tab:red", lw=0.6, alpha=0.35,
                   ls=":", label="random starts, seed bug (col = row)" if i == 1 else None)
    phase.plot(out["p"][0], out["q"][0], color="tab:blue", lw=2.2, label="main start")
    phase.plot(out["bug_p"][0], out["bug_q"][0], color="tab:red", lw=2.0, ls="--",
               label="main start, seed bug")
    phase.plot([out["p"][0, 0]], [out["q"][0, 0]], "ko", ms=5)
    phase.plot([out["bug_p"][0, -1]], [out["bug_q"][0, -1]], "rx", ms=10, mew=2,
               label="seed bug's end")
    for k, (p, q) in enumerate(equilibria):
        phase.plot([p], [q], "*", color="gold", mec="k", ms=15, zorder=5,
                   label="Nash equilibria (true game)" if k == 0 else None)
    phase.set_xlim(-0.02, 1.02)
    phase.set_ylim(-0.02, 1.02)
    phase.set_xlabel("p = P(row defects)")
    phase.set_ylabel("q = P(column defects)")
    phase.set_title("replicator paths (field: true game)", fontsize=10)
    phase.legend(fontsize=7, loc="center left")

    t = ts
    decay.semilogy(t, out["regret_row"][0], color="tab:blue", label="row, true game")
    decay.semilogy(t, out["regret_col"][0], color="tab:cyan", ls="--", label="column, true game")
    decay.semilogy(t, out["bug_regret_row"][0], color="tab:red", label="row, seed bug (scored: true game)")
    decay.semilogy(t, out["bug_regret_col"][0], color="tab:orange", ls="--",
                   label="column, seed bug (scored: true game)")
    if np.isfinite(rate):  # the predicted slope, through the row regret's end point
        late = t >= t[-1] / 2
        decay.semilogy(t[late], float(out["regret_row"][0, -1]) * np.exp(rate * (t[-1] - t[late])),
                       color="k", lw=0.9, ls=":", label=f"predicted slope e^(-{rate:g} t)")
    decay.axhline(config.tol, color="gray", lw=0.8, ls=":", label=f"tol = {config.tol:g}")
    decay.set_xlabel("t")
    decay.set_ylabel("regret  max_a u(a) - u(mix)")
    decay.set_title("regret along the main start's path", fontsize=10)
    decay.grid(alpha=0.3, which="both")
    decay.legend(fontsize=7)
    save_figure(fig, path, title=f"row = {config.payoff.row}, col = {config.payoff.col}")
