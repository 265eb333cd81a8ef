"""Circuit-breaker state that every engine on a store shares, through the store's
interceptor state (no new tables).

* Namespace ``breakers``: each breaker's last transition (state, until when it stays open,
  and when it happened, wall clock). A restarted engine keeps rejecting calls to a
  downstream that was failing, and a running engine adopts a transition another engine
  made after its own latest one.
* Namespace ``breaker_calls``: each engine's current window of outcomes per breaker
  (calls, failures, slow calls), so failures that engines see apart open their breakers
  together.

Engines exchange both at most once per ``interval`` seconds of the breakers' clock (one
read of each namespace, and a write only of what changed): an open circuit reaches the
other engines within about that, and no call pays a store round trip in between.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from convoy.resilience._breaker import CircuitBreaker
    from convoy.stores._protocol import Store

Counts = tuple[int, int, int]  # calls, failures, slow calls
#: Another engine's window counts older than this many seconds (or older than the
#: breaker's own last transition) are ignored; ten times older ones are deleted.
STALE_AFTER = 60.0


class BreakerSync:
    """This engine's side of the shared breaker state."""

    STATES = "breakers"
    CALLS = "breaker_calls"

    def __init__(self, store: Store, wall: Callable[[], float], owner: str) -> None:
        self.store = store
        self.wall = wall
        self.owner = owner
        self.saved: dict[str, tuple[str, float, float]] = {}  # key -> state, until, at
        self.changed: dict[str, float] = {}  # key -> wall time of its latest transition here
        self._published: dict[str, Counts] = {}

    async def load(self) -> None:
        self.saved = _states(await self.store.kv_all(self.STATES))
        self.changed = {key: at for key, (_, _, at) in self.saved.items()}

    def save(self, b: CircuitBreaker) -> None:
        now = self.wall()
        until = now + b.open_remaining
        self.saved[b.name] = (b.state, until, now)
        self.changed[b.name] = now
        fut = self.store.kv_put(self.STATES, b.name,
                                json.dumps({"state": b.state, "until": until, "at": now}))
        fut.add_done_callback(_report_failure)

    def open_remaining(self, key: str) -> float | None:
        found = self.saved.get(key)
        if found is None or found[0] != "open":
            return None
        return max(0.0, found[1] - self.wall())

    async def sync(self, breakers: Mapping[str, CircuitBreaker]) -> None:
        """Adopt the transitions other engines made since ours, publish this engine's
        window counts that changed, and add up the other engines' counts."""
        now = self.wall()
        self.saved = _states(await self.store.kv_all(self.STATES))
        for key, (state, until, at) in self.saved.items():
            b = breakers.get(key)
            if b is None or at <= self.changed.get(key, float("-inf")):
                continue  # its own transition, or older than it
            self.changed[key] = at
            if state == "open" and until > now and b.state != "open":
                b.restore_open(until - now)
            elif state == "closed" and b.state != "closed":
                b.reset()
        for key, b in breakers.items():
            counts = b.counts()
            if counts != self._published.get(key, (0, 0, 0)):
                self._published[key] = counts
                self.store.kv_put(self.CALLS, f"{key}|{self.owner}", json.dumps(
                    {"calls": counts[0], "failures": counts[1], "slow": counts[2],
                     "at": now})).add_done_callback(_report_failure)
        others: dict[str, list[int]] = {}
        for name, raw in (await self.store.kv_all(self.CALLS)).items():
            key, _, owner = name.rpartition("|")
            with suppress(ValueError, KeyError, TypeError):
                d = json.loads(raw)
                at = float(d["at"])
                if at < now - 10 * STALE_AFTER:  # an engine long gone
                    self.store.kv_put(self.CALLS, name, None).add_done_callback(
                        _report_failure)
                if owner == self.owner or key not in breakers or at < now - STALE_AFTER \
                        or at < self.changed.get(key, float("-inf")):
                    continue
                total = others.setdefault(key, [0, 0, 0])
                for i, field in enumerate(("calls", "failures", "slow")):
                    total[i] += int(d[field])
        for key, b in breakers.items():
            c = others.get(key)
            b.set_remote((c[0], c[1], c[2]) if c else (0, 0, 0))


def _states(raw: Mapping[str, str]) -> dict[str, tuple[str, float, float]]:
    out = {}
    for key, value in raw.items():
        with suppress(ValueError, KeyError, TypeError):
            d = json.loads(value)
            out[key] = (str(d["state"]), float(d["until"]), float(d.get("at", 0.0)))
    return out


def _report_failure(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        warnings.warn(f"convoy: could not save breaker state: {fut.exception()}",
                      RuntimeWarning, stacklevel=1)
