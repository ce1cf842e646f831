"""landau-sweep's pieces against brute force and closed forms (η*, τ, the fold), and its CLI."""

import csv
import json

import jax.numpy as jnp
import numpy as np
import pytest
from flowsim.studies import landau_sweep as ls

import flowsim.coordinator as fc
from flowsim.cli import main

ETA = np.linspace(0.0, 1.0, 200_001)  # brute-force grid on the box


def _energy(a, b, h, eta=ETA):
    return a * eta**2 + b * eta**4 - h * eta


def test_closed_forms_against_brute_force():
    b = 0.7
    a = np.array([-3.0, -1.4, -1.0, -0.3, -0.01, 0.2, 1.5])  # −2b = −1.4: the bound is reached
    brute = np.array([ETA[np.argmin(_energy(ai, b, 0.0))] for ai in a])
    np.testing.assert_allclose(ls.eta_star_closed_form(a, b), brute, atol=1e-5)
    # τ = 1/F''(η*) by a central difference of F' at the brute-force minimiser
    d = 1e-5
    for ai, eta in zip(a, brute, strict=True):
        fpp = (_energy(ai, b, 0.0, eta + d) - 2 * _energy(ai, b, 0.0, eta) +
               _energy(ai, b, 0.0, eta - d)) / d**2
        expected = 1 / fpp if 0 < eta < 1 or ai > 0 else np.nan
        np.testing.assert_allclose(ls.relax_time_closed_form(ai, b), expected, rtol=1e-4)


@pytest.mark.parametrize("b, h", [(1.0, -0.05), (2.5, -0.2)])
def test_fold_and_maxwell_against_brute_force(b, h):
    # an interior minimum exists iff min over η of F'(η) + h = 2aη + 4bη³ reaches h; the ordered
    # minimum is global iff min F < F(0) = 0: bisect both in a with brute-force minima
    def exists(a):
        return np.min(2 * a * ETA + 4 * b * ETA**3) < h

    def wins(a):
        return np.min(_energy(a, b, h)) < 0

    for test, closed in ((exists, ls.fold_a(h, b)), (wins, ls.maxwell_a(h, b))):
        lo, hi = -3.0, 0.0
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if test(mid) else (lo, mid)
        assert abs(lo - closed) < 1e-6
    a = np.array([ls.fold_a(h, b) - 0.05, -1.0])  # metastable, and ordered and global

    def interior_local_minimum(ai):  # the grid point below both neighbours
        f = _energy(ai, b, h)
        (inside,) = np.nonzero((f[1:-1] < f[:-2]) & (f[1:-1] < f[2:]))
        return ETA[1 + inside[-1]]

    np.testing.assert_allclose(ls.ordered_branch(a, b, h), [interior_local_minimum(ai) for ai in a],
                               atol=1e-5)
    assert np.isnan(ls.ordered_branch(ls.fold_a(h, b) + 1e-3, b, h)[0])


def test_one_relax_call_finds_every_minimum_and_the_default_step_can_strand_one():
    b = 1.0
    a = np.repeat([-2.5, -0.5, -0.1, 0.1, 0.5], 3)
    eta0 = np.tile([0.02, 0.5, 1.0], 5)
    r = fc.relax(ls.landau(a, b), eta0, ls.safe_solver(a, b, 1e-8, 100_000))
    cf = ls.eta_star_closed_form(a, b)
    assert np.all(np.abs(np.asarray(r.eta) - cf) <= ls.eta_tolerance(a, b, 0.0, cf, 1e-8))
    assert abs(float(r.eta[5]) - np.sqrt(0.25)) < 1e-7  # a = −0.5 from η0 = 1: √(−a/2b)
    # the engine's default first step s = 1 from η = 1 at a = −0.5 goes to 1 − F'(1) = −2,
    # clipped to η = 0 (F drops 0.5 → 0, accepted), where F'(0) = 0 holds it
    stuck = fc.relax(ls.landau([-0.5], b), jnp.array([1.0]), fc.ProjectedGradient(tol=1e-8))
    assert float(stuck.eta[0]) == 0.0


def test_flow_tail_gives_the_time_constant_and_a_zero_decays_algebraically():
    b, a = 1.3, np.array([-0.3, -0.3, 0.2, 1.0, 0.0])
    eta0 = np.array([0.05, 0.9, 0.7, 0.4, 0.6])
    ts = np.concatenate([[0.0], np.geomspace(1e-3, 100.0, 600)])
    sol = fc.flow(ls.landau(a, b), eta0, ts, fc.ProjectedGradientFlow(rtol=1e-10, atol=1e-12))
    path = np.asarray(sol.eta)
    tau, used = ls.tail_relax_time(ts, path[:, :4], path[-1, :4], np.sqrt(np.abs(a[:4]) / (2 * b)),
                                   1e-6, 1e-3, 8)
    assert np.all(used >= 8)
    np.testing.assert_allclose(tau, [1 / 1.2, 1 / 1.2, 1 / 0.4, 1 / 2.0], rtol=1e-3)
    exact = (eta0[4] ** -2 + 8 * b * ts) ** -0.5
    np.testing.assert_allclose(path[:, 4], exact, rtol=1e-7)


def test_continuation_jumps_within_one_step_above_the_fold():
    b, h, trials = 1.0, -0.05, 3
    grid = np.linspace(-0.5, 0.1, 61)
    a_f = -(3 * 0.05 * np.sqrt(6.0) / 4) ** (2 / 3)  # −0.2036, checked by brute force above
    etas, success, _ = ls.continuation(jnp.asarray(grid), b, h, jnp.array([0.4, 0.7, 1.0]),
                                       jnp.array([0.1, 0.5, 0.9]), ls.safe_solver(grid, b, 1e-8,
                                                                                  100_000))
    up, down = np.asarray(etas)[:, :trials], np.asarray(etas)[::-1, trials:]
    assert np.all(np.asarray(success))
    first = np.argmax(grid > a_f)  # the first grid point above the fold
    assert np.all(up[first - 1] > 0.15) and np.all(up[first:] == 0.0)
    np.testing.assert_allclose(up[:first], np.repeat(ls.ordered_branch(grid[:first], b, h)[:, None],
                                                     trials, 1), atol=1e-6)
    assert np.all(down == 0.0)  # η = 0 is a box minimum for every a when h < 0


def test_confidence_intervals_against_scipy():
    from scipy import stats

    rng = np.random.default_rng(0)
    x = np.linspace(0.0, 3.0, 12)
    y = -1.0 * x + 0.3 + 0.05 * rng.standard_normal(12)  # r well below 1: linregress is exact
    fit = stats.linregress(x, y)
    slope, lo, hi, _ = ls.slope_ci(x, y)
    half = stats.t.ppf(0.975, 10) * fit.stderr
    np.testing.assert_allclose([slope, lo, hi], [fit.slope, fit.slope - half, fit.slope + half])
    sample = rng.standard_normal((3, 5))
    mean, half = ls.mean_ci(sample, axis=1)
    low, high = stats.t.interval(0.95, 4, loc=sample.mean(1), scale=stats.sem(sample, axis=1))
    np.testing.assert_allclose([mean - half, mean + half], [low, high])


SMALL = ["sweep.points=4", "sweep.abs_a_min=0.1", "trials=2", "flow.save_points=300",
         "imperfect.points=21"]


@pytest.mark.slow
def test_small_run_through_the_cli(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "landau-sweep", "--out", str(out), *sum((["--set", s] for s in SMALL), [])]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["verdict"] == "confirmed"
    assert abs(summary["a_fold_closed_form"] + 0.2035813) < 1e-6
    assert -0.2036 <= summary["a_fold_measured_min"] <= summary["a_fold_measured_max"] <= -0.1635
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {"a", "b", "h", "eta_star", "relax_time"} <= set(rows[0])
    assert len(rows) == 8 * 2 + 21 * 2 * 2
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "eta_star.png", "imperfect_bifurcation.png", "relax_time.png"]


@pytest.mark.parametrize("setting, message", [
    ("b=0", "b"), ("imperfect.h=0.1", "imperfect.h"), ("imperfect.a_min=-0.1", "a_f"),
    ("flow.window_lo=0.1", "window_lo"), ("trials=1", "trials")])
def test_bad_settings_are_one_line_exit_2(tmp_path, capsys, setting, message):
    out = tmp_path / "run"
    assert main(["run", "landau-sweep", "--out", str(out), "--set", setting]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not out.exists()
