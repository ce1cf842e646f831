"""SIGINT and SIGTERM end a run as "failed" with a reason, within seconds, always.

Python runs signal handlers in the main thread between bytecodes, so a signal
that arrives while a compiled JAX loop runs waits until the loop returns
(minutes, or never). Here the C-level handler also writes the signal number to
a wakeup pipe (``signal.set_wakeup_fd``), and a watcher thread that blocks on
that pipe sees it at once:

* the main thread gets :class:`Interrupted` as soon as it runs Python again,
  and the runner records the run as failed the ordinary way;
* if it has not finished within ``grace`` seconds (it is inside a compiled
  loop), the watcher writes the summary itself (status "failed", the reason
  naming the signal), appends the log line and ends the process with the
  shell's code for the signal (130 for SIGINT, 143 for SIGTERM).

Checkpoints and metrics rows are written atomically or appended line by line
elsewhere, so ending the process between them leaves no half-written file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(BaseException):
    """The run was asked to stop by ``signum`` (a BaseException: studies do not catch it)."""

    def __init__(self, signum: int):
        self.signum = signum
        self.exit_code = EXIT_CODES.get(signum, 130)
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def _raise(signum, frame):
    raise Interrupted(signum)


@contextlib.contextmanager
def interruptible(on_stuck: Callable[[Interrupted], None], grace: float = 3.0) -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM raise :class:`Interrupted` in the main thread; if
    the main thread does not get there within ``grace`` seconds, ``on_stuck(error)`` is
    called from the watcher thread and the process exits with ``error.exit_code``.

    Outside the main thread (where signals cannot be handled) the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    finished = threading.Event()
    previous = {signum: signal.signal(signum, _raise) for signum in SIGNALS}
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def watch():
        while True:
            try:
                data = os.read(read_fd, 1)
            except OSError:
                return
            if not data or finished.is_set():
                return
            if data[0] not in EXIT_CODES:
                continue
            if finished.wait(grace):
                return
            error = Interrupted(data[0])
            try:
                on_stuck(error)
            finally:
                os._exit(error.exit_code)

    watcher = threading.Thread(target=watch, name="flowsim-interrupts", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()
        signal.set_wakeup_fd(previous_fd)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(write_fd)  # the watcher's read returns b"": it ends
        watcher.join(timeout=1.0)
        os.close(read_fd)


__all__ = ["Interrupted", "interruptible", "EXIT_CODES"]
