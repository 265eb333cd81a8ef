"""Budgets that several engines share: reserved in the store.

A tenant's (or an agent's) budget for a day is counted in the store (:meth:`Store.reserve`),
so engine processes on one database draw on one budget. What a call may cost (its input
estimate plus output ceiling) is held there before it starts, under a reservation owned by
the engine (it lapses with the engine's lease if the engine dies); what it cost is counted
when the reservation settles. The engine's own ledger mirrors what the store reports, so
it can tell a spent-out budget without asking.

*Slabs.* One reservation may hold room for several calls of this engine: a *slab*. Calls
take their share of it without a store round trip, and a call that ended gives its share
back to the slab, keeping only what it cost. Far from the limit a slab holds up to
:data:`SLAB_CALLS` calls' worth, never more than :data:`SLAB_SHARE` of the room the store
reported left; near the limit, one call's worth: every call asks the store. A slab is used
(and held) only up to the room that was left when it was granted, so the engines together
exceed a limit by at most one call's reservation, as with a reservation per call. A slab
takes calls until it is full or :data:`SLAB_SECONDS` old; then what its calls spent is
counted in the store (with its next commit) and the rest released: until then the slab's
hold covers that spend (other engines see the budget held, not spent, and wait).

While the store refuses because reservations hold the budget (not because it is spent),
the call waits: one caller per budget asks the store again whenever one of this engine's
calls settles, or after a short back-off (other engines' calls settle unseen); the callers
refused after it wait their turn behind it, so a crowd of waiting calls costs one store
write per try.
"""

from __future__ import annotations

import asyncio
import math
import uuid
import warnings
from collections.abc import Sequence
from contextlib import suppress
from typing import TYPE_CHECKING

from convoy.stores._protocol import Hold, Reservation, Spend, Store

if TYPE_CHECKING:
    from convoy.cost._budget import BudgetLedger

#: Back-off between tries while other engines' calls hold a budget (seconds): doubling
#: from the first to the last.
RETRY_FIRST, RETRY_MAX = 0.002, 0.1
#: A slab holds at most this many calls' reservations ...
SLAB_CALLS = 16
#: ... and at most this share of the room the store reported left (1/8).
SLAB_SHARE = 8
#: A slab takes no call after this many seconds (what it holds unused is released).
SLAB_SECONDS = 1.0

Key = tuple[tuple[str | None, ...], float]


class Slab:
    """One reservation in the store that this engine's calls against one set of budgets
    take their shares of: what it may hold in all (``cap_*``; infinite for a unit no budget
    limits), what its calls in flight reserved, and what its ended calls spent (not yet
    counted in the store)."""

    __slots__ = ("cap_tokens", "cap_usd", "closed", "id", "in_flight", "key", "ledgers",
                 "reserved_tokens", "reserved_usd", "spent_tokens", "spent_usd", "timer")

    def __init__(self, rid: str, key: Key, ledgers: Sequence[BudgetLedger], cap_tokens: float,
                 cap_usd: float) -> None:
        self.id, self.key, self.ledgers = rid, key, tuple(ledgers)
        self.cap_tokens, self.cap_usd = cap_tokens, cap_usd
        self.reserved_tokens, self.reserved_usd = 0, 0.0
        self.spent_tokens, self.spent_usd = 0, 0.0
        self.in_flight = 0
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None

    def fits(self, tokens: int, usd: float) -> bool:
        """Room for one more call: what was spent, what is reserved and this call's
        reservation are within what the slab holds."""
        return not self.closed and (
            self.spent_tokens + self.reserved_tokens + tokens <= self.cap_tokens
            and self.spent_usd + self.reserved_usd + usd <= self.cap_usd)

    def take(self, tokens: int, usd: float) -> Ticket:
        self.reserved_tokens += tokens
        self.reserved_usd += usd
        self.in_flight += 1
        return Ticket(self, tokens, usd)


class Ticket:
    """One call's share of a slab."""

    __slots__ = ("slab", "tokens", "usd")

    def __init__(self, slab: Slab, tokens: int, usd: float) -> None:
        self.slab, self.tokens, self.usd = slab, tokens, usd


def holds(ledgers: Sequence[BudgetLedger], tokens: float, usd: float,
          factor: float = 1.0) -> list[Hold]:
    """What to hold on each shared ledger (its limited units only), against ``factor``
    times the limits."""
    out = []
    for led in ledgers:
        b = led.budget
        assert led.scope is not None
        if b.tokens is not None:
            out.append(Hold(scope=led.scope, unit="tokens", amount=tokens,
                            limit=b.tokens * factor, start=led.start_tokens))
        if b.usd is not None:
            out.append(Hold(scope=led.scope, unit="usd", amount=usd, limit=b.usd * factor,
                            start=led.start_usd))
    return out


def spends(ledgers: Sequence[BudgetLedger], tokens: float, usd: float) -> list[Spend]:
    """What was spent, on each shared ledger's limited units."""
    out = []
    for led in ledgers:
        assert led.scope is not None
        if led.budget.tokens is not None and tokens:
            out.append(Spend(scope=led.scope, unit="tokens", amount=tokens))
        if led.budget.usd is not None and usd:
            out.append(Spend(scope=led.scope, unit="usd", amount=usd))
    return out


class SharedBudgets:
    """One engine's reservations against budgets kept in its store."""

    def __init__(self, store: Store, owner: str, lease_s: float) -> None:
        self.store = store
        self.owner = owner
        self.lease_s = lease_s
        self._slabs: dict[Key, Slab] = {}  # the slab calls take from, per set of budgets
        self._opening: set[Key] = set()  # budgets a slab is on its way for
        self._ahead: dict[Key, int] = {}  # calls' worth the next slab may hold
        self.reserves = 0  # store round trips, for reports

    async def reserve(self, ledgers: Sequence[BudgetLedger], tokens: int, usd: float, *,
                      factor: float = 1.0, wait_held: bool = True
                      ) -> tuple[Ticket | None, list[BudgetLedger]]:
        """Hold one call's cost on every ledger, against ``factor`` times their limits (a
        downgraded call's hard limits, or the extra budgets an approved escalation
        granted). Returns the call's ticket, or ``None`` and the ledgers that refused for
        good: spent out, or full if ``wait_held`` is false (a downgraded call). Otherwise a
        budget held by calls in flight is waited for."""
        key: Key = (tuple(led.scope for led in ledgers), factor)
        slab = self._slabs.get(key)
        if slab is not None:
            if slab.fits(tokens, usd):
                return slab.take(tokens, usd), []
            self._close(slab)
        # A call arriving asks at once, even past callers queued for the budget: arriving
        # as another call settles, it takes the room that call left (a session already
        # under way goes on rather than one more starting).
        decided = await self._try(key, ledgers, tokens, usd, wait_held)
        if decided is not None:
            return decided
        async with ledgers[0].gate:  # one caller at a time asks again; the others queue
            delay = RETRY_FIRST
            while (decided := self._spent_out(ledgers, factor)
                   or await self._try(key, ledgers, tokens, usd, wait_held)) is None:
                ledgers[0].waited += 1
                with suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await ledgers[0].settled()
                delay = min(delay * 2, RETRY_MAX)
            return decided

    @staticmethod
    def _spent_out(ledgers: Sequence[BudgetLedger],
                   factor: float) -> tuple[None, list[BudgetLedger]] | None:
        """Refused without asking: the mirror says a budget is spent (a caller that
        queued while it ran out learns it from this engine's settled calls)."""
        out = [led for led in ledgers if factor == 1.0 and led.spent_out()]
        return (None, out) if out else None

    async def _try(self, key: Key, ledgers: Sequence[BudgetLedger], tokens: int,
                   usd: float, wait_held: bool
                   ) -> tuple[Ticket | None, list[BudgetLedger]] | None:
        """One reservation attempt: granted (a new slab, and the call's ticket), refused
        for good, or ``None``: held by reservations, try again."""
        factor = key[1]
        # One slab on its way at a time: calls arriving meanwhile reserve for themselves
        # (side by side, in one commit), so no two slabs hold room that one would do.
        calls = 1 if key in self._opening else self._ahead.get(key, 1)
        rid = uuid.uuid4().hex
        self.reserves += 1
        wanted = holds(ledgers, calls * tokens, calls * usd, factor)
        if calls == 1:
            res = await self.store.reserve(rid, self.owner, wanted, lease_s=self.lease_s)
        else:
            self._opening.add(key)
            try:
                res = await self.store.reserve(rid, self.owner, wanted, lease_s=self.lease_s)
            finally:
                self._opening.discard(key)
        for lv in res.levels:  # mirror what every engine has spent so far
            for led in ledgers:
                if led.scope == lv.scope:
                    led.observe(lv.unit, lv.used)
        # The room left, in calls like this one: the next slab holds a share of it.
        room = _room(ledgers, res, factor)
        share = max(_fraction(tokens, room[0]), _fraction(usd, room[1]))
        self._ahead[key] = SLAB_CALLS if share == 0 else \
            max(1, min(SLAB_CALLS, int(1 / (share * SLAB_SHARE))))
        if not res.granted:
            out = _refusing(ledgers, res, factor, held_waits=wait_held)
            return (None, out) if out else None
        # Used only up to the room that was left (at least one call): a slab held while
        # the limit was near never takes the engines past it by more than one call. The
        # rest is released at once.
        slab = Slab(rid, key, ledgers, _cap(tokens, calls, room[0]), _cap(usd, calls, room[1]))
        excess = (_excess(calls * tokens, slab.cap_tokens), _excess(calls * usd, slab.cap_usd))
        if excess != (0.0, 0.0):
            self._release(slab, *excess)
        slab.timer = asyncio.get_running_loop().call_later(SLAB_SECONDS, self._close, slab)
        old = self._slabs.get(key)
        if old is None or calls > 1:  # a slab for one call never displaces a larger one
            if old is not None:
                self._close(old)
            self._slabs[key] = slab
        return slab.take(tokens, usd), []

    def settle(self, ticket: Ticket, tokens: int, usd: float) -> None:
        """A call ended, having cost ``tokens`` and ``usd``. While its slab takes calls,
        that is only noted (the slab's hold covers it); the slab reports it when it
        closes. A call of a closed slab reports itself, and releases its share."""
        slab = ticket.slab
        slab.in_flight -= 1
        slab.reserved_tokens -= ticket.tokens
        slab.reserved_usd -= ticket.usd
        if slab.closed:
            spent = spends(slab.ledgers, tokens, usd)
            if not slab.in_flight:  # its last call: nothing stays held
                self.store.settle(slab.id, spent).add_done_callback(_report)
            else:
                self.store.settle(slab.id, spent, release=spends(
                    slab.ledgers, ticket.tokens, ticket.usd)).add_done_callback(_report)
            return
        slab.spent_tokens += tokens
        slab.spent_usd += usd
        if not slab.fits(ticket.tokens, ticket.usd):
            self._close(slab)  # no room for another call like this one

    def _retire(self, slab: Slab) -> bool:
        """No more calls take from ``slab`` (``False`` if none did already)."""
        if slab.closed:
            return False
        slab.closed = True
        if slab.timer is not None:
            slab.timer.cancel()
        if self._slabs.get(slab.key) is slab:
            del self._slabs[slab.key]
        return True

    def _close(self, slab: Slab) -> None:
        """No more calls take from ``slab``: what its ended calls spent is counted, and
        what it holds is released but for its calls in flight (all once they ended)."""
        if not self._retire(slab):
            return
        spent = spends(slab.ledgers, slab.spent_tokens, slab.spent_usd)
        slab.spent_tokens, slab.spent_usd = 0, 0.0
        if not slab.in_flight:
            self.store.settle(slab.id, spent).add_done_callback(_report)
            return
        rest = spends(slab.ledgers, _excess(slab.cap_tokens, slab.reserved_tokens),
                      _excess(slab.cap_usd, slab.reserved_usd))
        self.store.settle(slab.id, spent, release=rest).add_done_callback(_report)
        slab.cap_tokens, slab.cap_usd = slab.reserved_tokens, slab.reserved_usd

    def _release(self, slab: Slab, tokens: float, usd: float) -> None:
        """Release part of what a slab holds."""
        part = spends(slab.ledgers, tokens, usd)
        if part:
            self.store.settle(slab.id, [], release=part).add_done_callback(_report)

    def close(self) -> None:
        """Release what this engine's slabs hold unused (the engine is closing)."""
        for slab in list(self._slabs.values()):
            self._close(slab)


def _excess(amount: float, cap: float) -> float:
    """What of ``amount`` is beyond ``cap`` (none for a unit no budget limits)."""
    return 0.0 if math.isinf(amount) or math.isinf(cap) else max(0.0, amount - cap)


def _cap(amount: float, calls: int, room: float) -> float:
    """What a slab of ``calls`` calls of ``amount`` may use: no more than the room left,
    no less than one call (a unit no budget limits: no bound)."""
    if room == math.inf:
        return math.inf
    return max(amount, min(calls * amount, room))


def _fraction(amount: float, room: float) -> float:
    """How much of ``room`` one call's ``amount`` takes (infinite: none is left)."""
    if room <= 0:
        return math.inf
    return amount / room


def _room(ledgers: Sequence[BudgetLedger], res: Reservation,
          factor: float) -> tuple[float, float]:
    """The room the store reported left before this reservation: (tokens, usd), the least
    over the ledgers (infinite for a unit no ledger limits: a slab never counts it)."""
    room = [math.inf, math.inf]
    for lv in res.levels:
        for led in ledgers:
            if led.scope == lv.scope:
                i = 0 if lv.unit == "tokens" else 1
                room[i] = min(room[i], led.limit_of(lv.unit) * factor - lv.used - lv.held)
    return room[0], room[1]


def _refusing(ledgers: Sequence[BudgetLedger], res: Reservation, factor: float,
              held_waits: bool) -> list[BudgetLedger]:
    """The ledgers that refuse for good: spent out, or full if a budget held by calls in
    flight is not waited for (``held_waits=False``)."""
    out = []
    for led in ledgers:
        for lv in res.levels:
            if lv.scope != led.scope:
                continue
            limit = led.limit_of(lv.unit) * factor
            if lv.used >= limit or (not held_waits and lv.used + lv.held >= limit):
                out.append(led)
                break
    return out


def _report(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        warnings.warn(f"convoy: could not settle a budget reservation (it lapses with the "
                      f"engine's lease): {fut.exception()}", RuntimeWarning, stacklevel=1)
