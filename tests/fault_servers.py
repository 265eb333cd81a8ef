"""The fault server of ``bench/faults.py`` (``bench/_faultserver.py``) for tests: real
OpenAI-compatible chat-completions servers on loopback, scripted per request. Two
instances on two ports are two deployments of one model."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))

from _faultserver import BADJSON, HANG, OK, Action, FaultServer, error, held

__all__ = ["BADJSON", "HANG", "OK", "Action", "FaultServer", "Servers", "error", "held",
           "servers"]

Servers = Callable[[Callable[[float], Action]], FaultServer]


@pytest.fixture
def servers() -> Iterator[Servers]:
    """``servers(script)`` starts a fault server answering as ``script(now)`` says; every
    server started is stopped after the test."""
    started: list[FaultServer] = []

    def start(script: Callable[[float], Action]) -> FaultServer:
        s = FaultServer(script).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
