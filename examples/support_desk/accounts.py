"""The desk's shared customer records: one per customer, updated by every ticket.

Tickets of the same customer run concurrently, and each one opens the customer's record
when it starts and closes it when it ends: open tickets, tickets handled, refunds credited.
The record lives in Convoy's versioned shared state (namespace ``customer:<pseudonym>``,
key ``account``), and every change is an ``update``: a compare-and-set write that, when
another ticket of the same customer got there first, reads the record again and re-applies
the change. No ticket's change is lost, whatever the interleaving, and a resumed session
never applies its change twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydantic import BaseModel

import convoy
from examples.support_desk.agents import TicketOutcome

KEY = "account"
"""The key of the record in its customer's namespace."""
ATTEMPTS = 50
"""Writes an update may try: more than the tickets of one customer that can race it."""


class CustomerAccount(BaseModel):
    """What the desk knows about a customer across tickets."""

    open_tickets: int = 0
    tickets: int = 0
    resolved: int = 0
    escalated: int = 0
    credit: float = 0.0
    """Refunds credited to the customer by the desk, in USD."""
    last_ticket: str | None = None


def namespace(email: str) -> str:
    """The customer's namespace: named by a pseudonym of the address (the first 16 hex
    digits of its SHA-256), never the address itself. A namespace is not personal data to
    Convoy: the audit log's entries name it (a state write's target), as metric labels and
    spans do, and no erasure reaches them. Whoever has an address can compute its pseudonym:
    a real desk names customers by its CRM's id, or a keyed hash."""
    return "customer:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]


def record(ctx: convoy.Context, email: str) -> convoy.State[CustomerAccount]:
    """The customer's record, as the workflow shares it."""
    return ctx.state(namespace(email), type=CustomerAccount)


def opened(ticket_id: str) -> Callable[[CustomerAccount], CustomerAccount]:
    def apply(a: CustomerAccount) -> CustomerAccount:
        return a.model_copy(update={"open_tickets": a.open_tickets + 1,
                                    "tickets": a.tickets + 1, "last_ticket": ticket_id})

    return apply


def closed(resolution: TicketOutcome, refunded: float) -> Callable[[CustomerAccount],
                                                                 CustomerAccount]:
    def apply(a: CustomerAccount) -> CustomerAccount:
        return a.model_copy(update={
            "open_tickets": a.open_tickets - 1, "resolved": a.resolved + resolution.resolved,
            "escalated": a.escalated + resolution.escalated,
            "credit": round(a.credit + refunded, 2)})

    return apply


@dataclass(slots=True)
class Totals:
    """The records of a run, summed."""

    customers: int = 0
    tickets: int = 0
    open_tickets: int = 0
    credit: float = 0.0
    conflicts: int = 0


async def totals(engine: convoy.Engine, emails: Iterable[str],
                 tenant: str = "default") -> Totals:
    """Sum the records of these customers (read outside any session)."""
    t = Totals(conflicts=engine.state_stats.conflicts)
    for email in sorted(set(emails)):
        acct = await engine.state(namespace(email), tenant=tenant,
                                  type=CustomerAccount).get(KEY)
        if acct.value is None:
            continue
        t.customers += 1
        t.tickets += acct.value.tickets
        t.open_tickets += acct.value.open_tickets
        t.credit += acct.value.credit
    return t
