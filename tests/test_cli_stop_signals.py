""":func:`convoy.cli._stop.stop_signals`: a stop signal stops a command whichever of its
threads the kernel hands the signal to.

A process-directed signal goes to any thread that does not block it, not only the main
thread. Python runs its handler in the main thread, at the next bytecode there; a main
thread asleep in its event loop's ``epoll_wait`` with nothing scheduled (``convoy metrics
serve`` once it serves: its HTTP server is another thread) would never get there, and the
command would ignore the signal until another came.

The moment is observable state, not a clock: the signal is sent to the other thread once
the main thread sleeps in ``epoll_wait`` (its ``/proc`` wait channel)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .clikit import LIMIT, subprocess_env

#: Waits in ``stop.wait()`` (as ``convoy metrics serve`` does), while a thread of its own
#: sends itself SIGNAL once the main thread sleeps in its event loop; prints the exit code
#: the command would have.
_CHILD = """
import os, signal, sys, threading
from convoy.cli._stop import Stopped, stop_signals

sig = signal.Signals[sys.argv[1]]
wchan = f"/proc/self/task/{threading.main_thread().native_id}/wchan"

def send_when_asleep():
    for _ in range(10**6):
        if "epoll" in open(wchan).read():
            break
        os.sched_yield()
    else:  # this kernel does not name it
        print("unobservable", flush=True)
        os._exit(0)
    signal.pthread_kill(threading.get_ident(), sig)  # to this thread, not the main one

with stop_signals() as stop:
    threading.Thread(target=send_when_asleep, daemon=True).start()
    try:
        stop.wait()
    except Stopped as e:
        print(e.exit_code)
"""


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
@pytest.mark.parametrize(("sig", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_stop_signal_another_thread_receives_stops_the_command(sig: str, code: int
                                                                  ) -> None:
    try:
        res = subprocess.run([sys.executable, "-c", _CHILD, sig], check=False,
                             capture_output=True, text=True, timeout=LIMIT,
                             env=subprocess_env())
    except subprocess.TimeoutExpired:
        pytest.fail(f"{sig} received by another thread did not stop the command in "
                    f"{LIMIT:.0f} s")
    assert res.returncode == 0, res.stderr
    if res.stdout.strip() == "unobservable":
        pytest.skip("this kernel does not name epoll_wait in /proc/PID/task/TID/wchan")
    assert res.stdout.strip() == str(code), (res.stdout, res.stderr)
