r"""Pseudo-arclength continuation of the Bratu problem through its fold: flowsim against bice.

One process, the same discretisation for every row (``flowsim.systems.Bratu(n)``:
N interior points, h = 1/(N + 1), F_i = (u_{i−1} − 2u_i + u_{i+1})/h² + λ e^{u_i},
u_0 = u_{N+1} = 0), continued in λ from u = 0 at λ = 0 up the lower branch,
through the fold at λ_N ≈ 3.5138, and down the upper branch until λ falls below
``--lambda-end`` (default 1.0), or ``--max-points`` points, whichever comes first.
Both start with ds = ``--ds`` (0.05) and cap it at ``--ds-max`` (0.5).

* ``reference``: the fold of the same discretisation from the dense extended
  system F = 0, J v = 0, ℓ·v = 1 (numpy Newton, ``tests/bratu_reference.py``:
  ``bratu_fold``), cross-checked by maximising λ over the branch parameterised by
  a central node (``bratu_fold_by_max``);
* ``bice`` (``pip install -e '.[bench]'``): its ``PseudoArclengthContinuation``
  (secant predictor; Newton on the bordered system, the analytic sparse
  tridiagonal Jacobian given as ``Equation.jacobian``, ∂F/∂λ by central finite
  differences, each bordered system assembled in scipy.sparse and solved with
  ``spsolve``), at every point ARPACK's ``neigs`` (20) eigenvalues nearest 0 by
  shift-invert (real, so they are the rightmost: the Jacobian is symmetric), and,
  where the count of unstable eigenvalues changes, its bisection
  (``always_locate_bifurcations``) onto the eigenvalue's zero; the located point
  replaces the overshoot and is its fold (bice types a point by the change in
  its count of unstable eigenvalues, "+" here, and does not tell a fold from a
  branch point: every point it reports is listed as a fold). A second row without eigenvalues
  (``neigs = 0``: no stability, no detection) shows what the predictor-corrector
  alone costs. Times are the median of ``--repeats`` whole continuations,
  divided by their points (bice's branch holds the points after the start, the
  located fold included; its bisection steps are in its time, not in its count).
* ``flowsim``: ``flowsim.bifurcation.continuation`` on ``Bratu(n).field``
  with p_stop = ``--p-stop`` (4.0) and ``ContinuationOptions(ds, ds_max,
  max_points)``; its fold is the located ``branch.bifurcations`` point of kind
  ``"fold"``. flowsim stops at p_stop, on leaving [p_start, p_stop] or at
  max_points, not at a λ on the way back, so its first call runs to the point
  budget; the first point on the upper branch below ``--lambda-end`` is its K-th,
  and the timed calls ask for ``max_points = K`` so that both stop at the same
  criterion. The first call's time less a second call with the same arguments is
  its compile time; the timed calls follow a warm-up with their own arguments.
  flowsim computes the rightmost eigenvalues of J at every point (its default
  ``SpectrumOptions``) and locates what it detects. ``--flowsim-dense-max``
  passes ``LinearSolve(dense_max=…)``: its linear solves are dense LU up to that
  many unknowns and unpreconditioned GMRES (LSMR where it fails) above (the
  fold's extended system has 2N + 1).

The machine and its load average are printed with the table: timings on a
shared machine are high and noisy. OpenBLAS runs one thread unless
``OPENBLAS_NUM_THREADS`` is set: on two shared cores its spinning threads slowed
bice's ARPACK calls by up to an order of magnitude (README, Performance), and
jaxlib's CPU LAPACK kernels use the same library, so both packages run
single-threaded BLAS.

    python benchmarks/bench_continuation.py [--sizes 200 1000] [--repeats 3] [--quick]
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy, scipy and jax load OpenBLAS

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np
import scipy.sparse as sp

# The working tree's flowsim first (a strict editable install links only the files it was
# installed with), and tests/ for the independent reference.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from bratu_reference import bratu_fold, bratu_fold_by_max

# ---------------------------------------------------------------------------- bice


def bice_problem(n, ds, ds_max, neigs):
    """A bice Problem for the N-point Bratu discretisation (ImportError without bice)."""
    import bice

    class BratuEquation(bice.Equation):
        def __init__(self):
            super().__init__(shape=(n,))
            h = 1.0 / (n + 1)
            self.laplacian = sp.diags([1.0, -2.0, 1.0], [-1, 0, 1], shape=(n, n),
                                      format="csr") / h**2
            self.lmbda = 0.0

        def rhs(self, u):
            return self.laplacian @ u + self.lmbda * np.exp(u)

        def jacobian(self, u):
            return (self.laplacian + sp.diags(self.lmbda * np.exp(u))).tocsr()

    class BratuProblem(bice.Problem):
        def __init__(self):
            super().__init__()
            self.bratu = BratuEquation()
            self.add_equation(self.bratu)
            self.continuation_parameter = (self.bratu, "lmbda")

    problem = BratuProblem()
    problem.continuation_stepper.ds = ds
    problem.continuation_stepper.ds_max = ds_max
    problem.settings.neigs = neigs
    problem.settings.always_locate_bifurcations = neigs > 0
    return problem


def bice_run(n, args, neigs):
    """One continuation by bice: (seconds, λ along the branch, located fold λs, points)."""
    problem = bice_problem(n, args.ds, args.ds_max, neigs)
    start = time.perf_counter()
    previous, past_fold = 0.0, False
    for _ in range(args.max_points):
        problem.continuation_step()
        lam = problem.get_continuation_parameter()
        past_fold = past_fold or lam < previous
        previous = lam
        if (past_fold and lam < args.lambda_end) or lam > args.p_stop:
            break
    seconds = time.perf_counter() - start
    branch = problem.bifurcation_diagram.active_branch
    folds = [s.p for s in branch.bifurcations()]
    return seconds, branch.parameter_vals(), folds, len(branch.solutions)


def bice_rows(n, args):
    try:
        import bice  # noqa: F401
    except ImportError as error:
        print(f"bice: not run ({error}; pip install -e '.[bench]' to have it)")
        return []
    rows = []
    for neigs, label in ((args.neigs, "bice"), (0, "bice without eigenvalues")):
        runs = [bice_run(n, args, neigs) for _ in range(args.repeats)]
        seconds = statistics.median(r[0] for r in runs)
        _, lams, folds, points = runs[0]
        rows.append({"label": label, "points": points, "seconds": seconds, "folds": folds,
                         "last": lams[-1], "max_lambda": lams.max(), "compile": None})
    return rows


# ---------------------------------------------------------------------------- flowsim


def flowsim_rows(n, args):
    try:
        from flowsim.bifurcation import ContinuationOptions, continuation
        from flowsim.systems import Bratu
    except Exception as error:  # noqa: BLE001 — the API is being written; say why and go on
        print(f"flowsim: not run (import failed: {type(error).__name__}: {error})")
        return []
    extra = {}
    if args.flowsim_dense_max is not None:
        from flowsim.bifurcation import LinearSolve
        extra["linear"] = LinearSolve(dense_max=args.flowsim_dense_max)
    system = Bratu(n)
    params = {"lambda": 0.0}

    def run(max_points):
        start = time.perf_counter()
        branch = continuation(system.field, system.start(params), params, "lambda",
                              p_stop=args.p_stop,
                              options=ContinuationOptions(ds=args.ds, ds_max=args.ds_max,
                                                          max_points=max_points, **extra))
        lams = np.asarray(branch.p)
        return time.perf_counter() - start, lams, branch

    try:
        first, first_lams, first_branch = run(args.max_points)
        steady, _, _ = run(args.max_points)
        turn = int(np.argmax(first_lams))
        below = np.nonzero(first_lams[turn:] < args.lambda_end)[0]
        points = turn + int(below[0]) + 1 if below.size else len(first_lams)
        if points < len(first_lams):
            run(points)  # warm-up with the timed arguments (max_points may be static)
        runs = [run(points) for _ in range(args.repeats)]
    except Exception as error:  # noqa: BLE001
        print(f"flowsim: failed ({type(error).__name__}: {error})")
        return []
    seconds = statistics.median(r[0] for r in runs)
    _, lams, branch = runs[0]
    folds = [float(b.p) for b in branch.bifurcations if b.kind == "fold"]
    found = [f"{b.kind} at {float(b.p):.12f} (converged {getattr(b, 'converged', '?')}, "
             f"residual {getattr(b, 'residual', float('nan')):.1e})" for b in branch.bifurcations]
    print(f"flowsim, N = {n}: first call ended {getattr(first_branch, 'end', '?')} at "
          f"{len(first_lams)} points, λ {first_lams[-1]:.4f}; timed calls {len(lams)} points; "
          f"{', '.join(found) or 'no bifurcation reported'}")
    return [{"label": "flowsim", "points": len(lams), "seconds": seconds, "folds": folds,
             "last": lams[-1], "max_lambda": lams.max(), "compile": first - steady}]


# ---------------------------------------------------------------------------- table


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--repeats", type=int, default=3, help="timed continuations per row")
    parser.add_argument("--ds", type=float, default=0.05)
    parser.add_argument("--ds-max", type=float, default=0.5)
    parser.add_argument("--max-points", type=int, default=300, help="point budget per branch")
    parser.add_argument("--p-stop", type=float, default=4.0)
    parser.add_argument("--lambda-end", type=float, default=1.0,
                        help="stop on the upper branch at the first point below this λ")
    parser.add_argument("--neigs", type=int, default=20, help="bice's eigenvalues per point")
    parser.add_argument("--flowsim-dense-max", type=int, default=None,
                        help="flowsim's LinearSolve(dense_max=…): dense LU up to this many "
                             "unknowns (default: flowsim's own)")
    parser.add_argument("--quick", action="store_true", help="N = 50, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeats = [50], 1
    try:
        from importlib.metadata import version

        import bice  # noqa: F401
        bice_version = f"bice {version('bice')}"
    except ImportError:
        bice_version = "bice not installed"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, "
          f"load average {load}; jax {jax.__version__} on {jax.devices()[0].platform}, "
          f"{bice_version}, numpy {np.__version__}, OpenBLAS threads "
          f"{os.environ['OPENBLAS_NUM_THREADS']}; float64; ds {args.ds}, ds_max {args.ds_max}, "
          f"stop below λ = {args.lambda_end} past the fold or at {args.max_points} points; "
          f"median of {args.repeats}")
    print("| N | continuation | points | fold λ | fold − reference | last λ | s per branch "
          "| ms/point | compile s | ms/point ÷ bice's |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        start = time.perf_counter()
        reference, _ = bratu_fold(n)
        dense_seconds = time.perf_counter() - start
        check, _ = bratu_fold_by_max(n)
        print(f"| {n:,} | reference (dense extended system, {dense_seconds:.2f} s; "
              f"max over u_m differs by {check - reference:.1e}) | | {reference:.12f} | | | | | | |",
              flush=True)
        rows = bice_rows(n, args) + flowsim_rows(n, args)
        bice_ms = next((1e3 * r["seconds"] / r["points"] for r in rows if r["label"] == "bice"),
                       None)
        for r in rows:
            ms = 1e3 * r["seconds"] / r["points"]
            fold = r["folds"][0] if r["folds"] else None
            fold_text = f"{fold:.12f}" if fold is not None else f"none (max λ {r['max_lambda']:.6f})"
            error = f"{fold - reference:.1e}" if fold is not None else ""
            if len(r["folds"]) > 1:
                fold_text += f" (+{len(r['folds']) - 1} more)"
            compile_text = f"{r['compile']:.2f}" if r["compile"] is not None else ""
            ratio = f"{ms / bice_ms:.2f}" if bice_ms else ""
            print(f"| {n:,} | {r['label']} | {r['points']} | {fold_text} | {error} | "
                  f"{r['last']:.4f} | {r['seconds']:.3f} | {ms:.3g} | {compile_text} | {ratio} |",
                  flush=True)
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
