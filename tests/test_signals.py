"""SIGTERM and SIGINT end a run within seconds, even inside a compiled loop, and the
run directory says so ("failed", the signal named), with the shell's exit code."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

# One compiled loop of 10⁶ Euler steps per horizon, and a sweep of 10⁴ of them: minutes
# of XLA without returning to Python.
LONG = ["horizon-counterexample", "--set", "steps=1000000", "--set", "sweep_points=10000",
        "--set", "sweep_horizons=[1000000]"]


def _start(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "flowsim", "run", *LONG, "--out", str(out)],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the study is inside its loops
        log = out / "log.txt"
        if log.is_file() and "started" in log.read_text():
            break
        time.sleep(0.2)
    time.sleep(4.0)
    return process, out


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_ends_a_compiled_loop_within_seconds(tmp_path, signum, code):
    process, out = _start(tmp_path)
    assert process.poll() is None, process.communicate()
    sent = time.monotonic()
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - sent < 10, "did not end within seconds"
    assert process.returncode == code, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed", summary
    assert signal.Signals(signum).name in summary["reason"]
    assert summary["wall_s"] > 0 and summary["scenario"] == "horizon-counterexample"
    assert signal.Signals(signum).name in (out / "log.txt").read_text()


STUCK = """
import sys, time
import numpy as np
from flowsim.run.interrupts import interruptible

def on_stuck(error):
    open(sys.argv[1], "w").write(str(error))

a = np.random.default_rng(0).random((4000, 4000))
with interruptible(on_stuck, grace=1.0):
    print("in", flush=True)  # microseconds of Python from here into the first SVD
    for _ in range(100):  # C code that never looks at signals: minutes
        a = np.linalg.svd(a)[0]
"""


def test_the_watcher_ends_a_main_thread_that_never_returns_to_python(tmp_path):
    """The main thread is inside C code that checks no signals: after the grace period
    the watcher thread calls on_stuck and ends the process with the signal's code."""
    note = tmp_path / "note"
    process = subprocess.Popen([sys.executable, "-c", STUCK, str(note)], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "in"
    # the child is inside the SVD well before this (one takes tens of seconds): a signal
    # that came while it still ran Python would raise there instead (exit 1), which is what
    # a loaded machine once did when the matrix was still being drawn after "in"
    time.sleep(3.0)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    assert time.monotonic() - sent < 5
    assert process.returncode == 143
    assert note.read_text() == "interrupted by SIGTERM"
