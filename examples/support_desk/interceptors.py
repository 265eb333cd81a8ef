"""Interceptors for the support desk's workflow on the command line:
``--interceptors examples.support_desk.interceptors:interceptors`` (``convoy run``,
``worker``, ``resume``, ``chaos``). A function, so each command (each chaos phase) gets
interceptors of its own: breakers that start closed. (``demo.py`` builds its own engine,
with Convoy's default retry policy.)"""

from __future__ import annotations

from convoy import Interceptor
from convoy.resilience import RetryPolicy, protections


def interceptors() -> list[Interceptor]:
    """Retries with short delays (the simulator answers at once), breakers, and a call
    timeout."""
    return protections(retry=RetryPolicy(max_attempts=5, initial_delay=0.05, max_delay=1.0),
                       call_timeout=5.0)
