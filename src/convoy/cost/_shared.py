"""Budgets that several engines share: reserved in the store, one call at a time.

A tenant's (or an agent's) budget for a day is counted in the store (:meth:`Store.reserve`),
so engine processes on one database draw on one budget. Before a call, its worst-case cost
is held there under a reservation owned by the engine (it lapses with the engine's lease if
the engine dies); after it, the reservation settles on what the call cost. The engine's own
ledger mirrors what the store reports, so it can tell a spent-out budget without asking.

While the store refuses because calls in flight hold the budget (not because it is spent),
the call waits: one caller per budget asks the store again whenever one of this engine's
calls settles, or after a short back-off (other engines' calls settle unseen); the callers
refused after it wait their turn behind it, so a crowd of waiting calls costs one store
write per try.
"""

from __future__ import annotations

import asyncio
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


def holds(ledgers: Sequence[BudgetLedger], tokens: int, usd: float,
          factor: float = 1.0) -> list[Hold]:
    """What one call holds on each shared ledger (its limited units only), against
    ``factor`` times the limits."""
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


def spends(ledgers: Sequence[BudgetLedger], tokens: int, usd: float) -> list[Spend]:
    """What one call cost, on each shared ledger's limited units."""
    out = []
    for led in ledgers:
        assert led.scope is not None
        if led.budget.tokens is not None and tokens:
            out.append(Spend(scope=led.scope, unit="tokens", amount=tokens))
        if led.budget.usd is not None and usd:
            out.append(Spend(scope=led.scope, unit="usd", amount=usd))
    return out


class SharedBudgets:
    """Reservations of one engine against budgets kept in its store."""

    def __init__(self, store: Store, owner: str, lease_s: float) -> None:
        self.store = store
        self.owner = owner
        self.lease_s = lease_s
        self.reserves = 0  # store round trips, for reports

    async def reserve(self, ledgers: Sequence[BudgetLedger], tokens: int, usd: float, *,
                      factor: float = 1.0) -> tuple[str | None, list[BudgetLedger]]:
        """Hold one call's cost on every ledger. Returns the reservation id, or ``None``
        and the ledgers that refused for good: spent out, or, against ``factor`` times the
        limits (a downgraded call), full. Otherwise a budget held by calls in flight is
        waited for."""
        rid = uuid.uuid4().hex
        wanted = holds(ledgers, tokens, usd, factor)
        # A call arriving asks at once, even past callers queued for the budget: arriving
        # as another call settles, it takes the room that call left (a session already
        # under way goes on rather than one more starting).
        decided = await self._try(rid, wanted, ledgers, factor)
        if decided is not None:
            return decided
        async with ledgers[0].gate:  # one caller at a time asks again; the others queue
            delay = RETRY_FIRST
            while (decided := await self._try(rid, wanted, ledgers, factor)) is None:
                ledgers[0].waited += 1
                with suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await ledgers[0].settled()
                delay = min(delay * 2, RETRY_MAX)
            return decided

    async def _try(self, rid: str, wanted: list[Hold], ledgers: Sequence[BudgetLedger],
                   factor: float) -> tuple[str | None, list[BudgetLedger]] | None:
        """One reservation attempt: granted, refused for good, or ``None``: held by calls
        in flight, try again."""
        res = await self._ask(rid, wanted, ledgers)
        if res.granted:
            return rid, []
        out = _refusing(ledgers, res, factor, held_waits=factor == 1.0)
        return (None, out) if out else None

    async def _ask(self, rid: str, wanted: list[Hold],
                   ledgers: Sequence[BudgetLedger]) -> Reservation:
        self.reserves += 1
        res = await self.store.reserve(rid, self.owner, wanted, lease_s=self.lease_s)
        for lv in res.levels:  # mirror what every engine has spent so far
            for led in ledgers:
                if led.scope == lv.scope:
                    led.observe(lv.unit, lv.used)
        return res

    def settle(self, rid: str, ledgers: Sequence[BudgetLedger], tokens: int,
               usd: float) -> None:
        """Release the call's holds and count what it cost (committed with the next batch
        of the store's writes)."""
        self.store.settle(rid, spends(ledgers, tokens, usd)).add_done_callback(_report)


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
