"""sequence-redemption and gated-expansion: the task, the relaxed states against scipy, the gates.

The relaxed η of a gated pair and of a gated candidate are checked against an
independent solution of the stationarity condition (nested scipy brentq on the
closed-form derivatives), the prefix baseline against its shortcut (a source
decided before its reference exists holds its local value, a reference sees
its source), and the separated gate's false-open rate on pure noise against α.
"""

import json

import numpy as np
import pytest
from flowsim.studies import coordinator_tasks as tasks
from flowsim.studies import gated_expansion as ge
from scipy import optimize, special

from flowsim.cli import main
from flowsim.coordinator import ProjectedGradient

SOLVER = ProjectedGradient(max_steps=2000, tol=1e-10)  # max_steps as in the study: one program


def test_make_sequences_plants_wrong_evidence_and_later_reliable_references():
    s = tasks.make_sequences(3, 200, 20, n_planted=3, n_controls=4, weak_fraction=0.5,
                             strong=(2.0, 6.0), against=(1.0, 3.0), weak=(0.25, 1.5))
    rows = np.arange(200)[:, None]
    assert np.all(s.reference > s.source) and np.all(s.source < 10) and np.all(s.reference >= 10)
    for positions in (s.source, s.reference):  # distinct within a trial
        assert all(len(set(p)) == len(p) for p in positions)
    src_kind, ref_kind = s.kind[rows, s.source], s.kind[rows, s.reference]
    planted = s.planted
    assert planted.sum(axis=1).tolist() == [3] * 200
    # planted mistakes: truth 1, local evidence 0; their references: truth 1, evidence 1, strong
    assert np.all(src_kind[planted] == tasks.PLANTED)
    assert np.all(s.truth[rows, s.source][planted] == 1)
    assert np.all(s.evidence[rows, s.source][planted] == 0)
    assert np.all(s.evidence[rows, s.reference][planted] == 1)
    strong = s.strength[rows, s.reference][planted]
    assert strong.min() >= 2.0 and strong.max() <= 6.0
    # controls: truth 0, evidence 0; references truth 0, weak ones wrongly say 1, weakly
    assert np.all(s.truth[rows, s.source][~planted] == 0)
    assert np.all(s.evidence[rows, s.source][~planted] == 0)
    assert np.all(s.truth[rows, s.reference][~planted] == 0)
    weak = ref_kind == tasks.WEAK_REF
    assert np.all(s.evidence[rows, s.reference][weak] == 1)
    w = s.strength[rows, s.reference][weak]
    assert w.min() >= 0.25 and w.max() <= 1.5
    assert np.all(s.evidence[rows, s.reference][ref_kind == tasks.AGREE_REF] == 0)
    # 800 controls, each weak with probability 1/2: within 4 binomial sd
    assert abs(weak.sum() / 800 - 0.5) < 4 * np.sqrt(0.25 / 800)
    ordinary = s.kind == tasks.ORDINARY
    assert np.all(s.evidence[ordinary] == s.truth[ordinary]) and ordinary.sum() == 200 * 6
    again = tasks.make_sequences(3, 200, 20, n_planted=3, n_controls=4)
    assert np.array_equal(again.strength, s.strength) and np.array_equal(again.kind, s.kind)
    with pytest.raises(ValueError, match="links need"):
        tasks.make_sequences(0, 2, 8, n_planted=3, n_controls=2)


def _pairs():
    """Twelve independent source ← reference pairs: trial i's planted sources (modules 0..3,
    evidence 0 of strength 1, 2, 3) each referenced by a later module (4..7) whose evidence
    for 1 ranges from weak (0.5) to strong (5)."""
    trials, rows = 3, np.ones((3, 1))
    strength = np.hstack([np.array([[1.0], [2.0], [3.0]]) * np.ones(4),
                          rows * [0.5, 1.0, 3.0, 5.0]])
    return tasks.Sequences(
        truth=np.ones((trials, 8), int), evidence=np.hstack([np.zeros((3, 4), int),
                                                             np.ones((3, 4), int)]),
        strength=strength, kind=np.hstack([np.full((3, 4), tasks.PLANTED),
                                           np.full((3, 4), tasks.PLANTED_REF)]),
        source=(rows * np.arange(4)).astype(int), reference=(rows * np.arange(4, 8)).astype(int),
        planted=np.ones((3, 4), bool))


def _pair_solution(a_p, alpha_r, *, weight, k, c, prior, b, feedback):
    """(p*, r*) of F = a_p p² + b p⁴ + α_r (1 − r)² + prior r² + b r⁴ − w σ(k(x − c)) p,
    x = r (feedback: the gate reads the relaxed reference) or α_r/(α_r + prior) (its evidence),
    by nested brentq; asserts that the minimiser on [0, 1]² is unique."""
    sigma = special.expit

    def source_given(gate):  # argmin_p a_p p² + b p⁴ − w·gate·p on [0, 1]
        f = lambda p: 2 * a_p * p + 4 * b * p**3 - weight * gate  # noqa: E731
        return 1.0 if f(1.0) < 0 else optimize.brentq(f, 0.0, 1.0, xtol=1e-14)

    def gate(r):
        return sigma(k * ((r if feedback else alpha_r / (alpha_r + prior)) - c))

    def force(r):  # dF/dr along p*(r) (envelope), with the gate's pull on its own input
        s = gate(r)
        pull = weight * k * s * (1 - s) * source_given(s) if feedback else 0.0
        return -2 * alpha_r * (1 - r) + 2 * prior * r + 4 * b * r**3 - pull

    grid = np.linspace(0, 1, 2001)
    values = np.array([force(r) for r in grid])
    ups = np.nonzero((values[:-1] < 0) & (values[1:] > 0))[0]
    minima = [optimize.brentq(force, grid[i], grid[i + 1], xtol=1e-14) for i in ups]
    minima += [0.0] * int(values[0] > 0) + [1.0] * int(values[-1] < 0)
    assert len(minima) == 1, minima
    return source_given(gate(minima[0])), minima[0]


@pytest.mark.parametrize("feedback", [True, False])
def test_gated_pairs_relax_to_the_brentq_solution(feedback):
    w = dict(quadratic_weight=0.0, gate_weight=4.0 if feedback else 0.0,
             evidence_gate_weight=0.0 if feedback else 4.0, gate_cost=0.6, gate_k=5.0,
             prior=1.0, b=0.05)
    seqs = _pairs()
    eta = np.asarray(tasks.relax_sequences(seqs, SOLVER, 0.5, **w).eta)
    for i in range(3):
        for j in range(4):
            p, r = _pair_solution(1.0 + seqs.strength[i, j], seqs.strength[i, 4 + j], weight=4.0,
                                  k=5.0, c=0.6, prior=1.0, b=0.05, feedback=feedback)
            np.testing.assert_allclose([eta[i, j], eta[i, 4 + j]], [p, r], atol=1e-7)
    if feedback:  # the gate's reward lifts even the weakest reference (local belief 1/3) past c
        assert eta[0, 4] > 0.9 and eta[0, 0] > 0.5
    else:  # on the evidence the gate stays (mostly) shut for it and opens for the strong ones
        assert eta[0, 4] < 0.4 and eta[0, 0] < 0.5 and eta[0, 3] > 0.5


def test_prefix_baseline_is_local_at_sources_and_the_pair_at_references():
    s = tasks.make_sequences(5, 3, 8, n_planted=2, n_controls=2)
    w = dict(quadratic_weight=0.0, gate_weight=0.0, evidence_gate_weight=8.0)
    prefix = tasks.prefix_decisions(s, SOLVER, 0.5, **w)["eta"]
    full = np.asarray(tasks.relax_sequences(s, SOLVER, 0.5, **w).eta)
    local = np.asarray(tasks.relax_sequences(s, SOLVER, 0.5, quadratic_weight=0.0,
                                             gate_weight=0.0).eta)
    rows = np.arange(3)[:, None]
    np.testing.assert_allclose(prefix[rows, s.source], local[rows, s.source], atol=1e-7)
    np.testing.assert_allclose(prefix[rows, s.reference], full[rows, s.reference], atol=1e-7)
    # the planted source is wrong under the prefix baseline and redeemed by the full system
    planted = rows, s.source[:, :2]
    assert np.all(prefix[planted] < 0.5) and np.all(full[planted] > 0.5)


def test_separated_gate_opens_on_pure_noise_at_rate_alpha():
    # (a + b/2 + c)/w = 1/2 puts the open threshold at net = 0 exactly (θ_c = 0)
    config = ge.Config(a=0.5, b=0.1, gate_weight=1.1, gate_k=50.0, tol=1e-10)
    assert ge.open_threshold(0.5, 0.1, 0.0, 1.1, 50.0) == 0.0
    n, m, alpha = 6000, 5, 0.05
    samples = np.random.default_rng(11).standard_normal((n, m))
    rates = {}
    for rule in ("naive", "separated"):
        gain = ge.gate_input(rule, samples, alpha)
        eta, _ = ge.relax_expansions(gain, 0.0, config)
        rates[rule] = np.mean(eta > 0.5)
        # each η against brentq on F'(η) = 2aη + 4bη³ + c − w σ(k·net) (a few candidates)
        for i in range(3):
            force = lambda x, g=gain[i]: 1.0 * x + 0.4 * x**3 - 1.1 * special.expit(50 * g)  # noqa: E731
            expect = 1.0 if force(1.0) < 0 else optimize.brentq(force, 0, 1, xtol=1e-14)
            assert abs(eta[i] - expect) < 1e-7
    tolerance = 4 * np.sqrt(alpha * (1 - alpha) / n)
    assert abs(rates["separated"] - alpha) < tolerance
    assert abs(rates["naive"] - 0.5) < 4 * np.sqrt(0.25 / n)
    assert ge.predicted_open_rate("separated", 0.0, 1.0, m, 0.0, 0.0, alpha) == pytest.approx(alpha)
    # a cost above w − a − b/2: no gate opens, whatever the measured benefit
    eta, _ = ge.relax_expansions(np.full(n, 50.0), 0.6, config)  # n: the same program
    assert np.all(eta < 0.5) and ge.open_threshold(0.5, 0.1, 0.6, 1.1, 50.0) == np.inf


SEQ_SMALL = ["trials=3", "task.length=8", "task.n_planted=2", "task.n_controls=2"]


def test_sequence_redemption_is_deterministic_for_a_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summaries = []
    for name in ("a", "b"):
        sets = [x for s in SEQ_SMALL for x in ("--set", s)]
        assert main(["run", "sequence-redemption", "--out", str(tmp_path / name), *sets]) == 0
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        summary.pop("wall_s")
        summaries.append(summary)
    assert summaries[0] == summaries[1] and summaries[0]["verdict"] in (
        "supported", "not supported", "inconclusive")


@pytest.mark.parametrize(("scenario", "assignment", "key"), [
    ("gated-expansion", "gate_weight=-1.0", "gate_weight"),
    ("gated-expansion", "costs=[0.5, 2.0]", "costs"),
    ("sequence-redemption", "energy.gate_cost=-0.5", "gate_cost"),
    ("sequence-redemption", "task.n_planted=20", "n_planted"),
])
def test_bad_values_are_one_line_exit_2(tmp_path, capsys, scenario, assignment, key):
    out = tmp_path / "out"
    assert main(["run", scenario, "--set", assignment, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0] and not out.exists()
