"""One fake clock for a test: the store (leases, journal record times), the budgets' UTC
day, breakers, caches, rate limits and retries all read it, so they agree on what time it
is, and no assertion depends on how fast the machine is."""

from __future__ import annotations

import asyncio


class FakeClock:
    """A clock that moves only when told to: ``clock()`` is the time (seconds; a wall
    clock since the epoch or a monotonic one, as the consumer needs), ``advance`` moves it
    and ``sleep`` is an ``asyncio.sleep`` replacement that advances it instead of waiting.
    """

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = float(t)
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock does not go back ({seconds})")
        self.t += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)  # still a suspension point, like the real one
