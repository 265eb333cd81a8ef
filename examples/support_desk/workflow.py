"""The durable support workflow: triage, then a supervisor with three worker desks.

Run it from the CLI as ``examples.support_desk.workflow:handle_ticket`` with lines of
``tickets.jsonl`` as inputs, or from Python with ``Engine.run`` / ``Engine.run_many``.
"""

from __future__ import annotations

import asyncio

import convoy
from examples.support_desk import accounts, crm
from examples.support_desk.agents import (
    GAVE_UP_REPLY,
    WORKERS,
    CaseFile,
    Resolution,
    Ticket,
    supervisor,
    triage,
)


@convoy.workflow(version="2")
async def handle_ticket(ctx: convoy.Context, ticket: Ticket) -> Resolution:
    """Triage ``ticket``, let the supervisor resolve it with the worker desks; keep the
    customer's shared record (open tickets, refunds credited) up to date on the way."""
    record = accounts.record(ctx, ticket.customer_email)
    await record.update(accounts.KEY, accounts.opened(ticket.id),
                        default=accounts.CustomerAccount(), attempts=accounts.ATTEMPTS)
    tri = await ctx.run(triage, ticket)
    try:
        resolution = await convoy.supervisor(ctx, supervisor, WORKERS,
                                             CaseFile(ticket=ticket, triage=tri))
        # The ticket id is ours, not the model's to get wrong.
        resolution = resolution.model_copy(update={"ticket_id": ticket.id})
    except (convoy.OutputValidationError, convoy.HandoffError):
        # The desk gave up: invalid answers or tool calls past the agents' repair budgets
        # (a capable model rarely gets here, a 135M one often does). A human takes the
        # ticket; model and tool failures (timeouts, outages) still fail the session.
        resolution = Resolution(ticket_id=ticket.id, category=tri.category,
                                action="escalate", resolved=False, escalated=True,
                                reply=GAVE_UP_REPLY)
    refunded = 0.0
    if resolution.action == "refund":
        refunded = await ctx.step("crm.refunded", lambda: _refunded(ctx.session_id),
                                  idempotent=True)
    await record.update(accounts.KEY, accounts.closed(resolution, refunded),
                        default=accounts.CustomerAccount(), attempts=accounts.ATTEMPTS)
    return resolution


async def _refunded(session_id: str) -> float:
    """What this session's refunds came to, read from the CRM (on a thread: it is SQLite)."""
    return await asyncio.to_thread(crm.current_crm().refunded_by_session, session_id)
