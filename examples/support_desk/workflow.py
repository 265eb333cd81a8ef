"""The durable support workflow: triage, then a supervisor with three worker desks.

Run it from the CLI as ``examples.support_desk.workflow:handle_ticket`` with lines of
``tickets.jsonl`` as inputs, or from Python with ``Engine.run`` / ``Engine.run_many``.

When the agents give up on a ticket, a person takes it over: the ticket goes to the CRM's
human queue with the reason and, when a worker ran out of turns, its transcript, and the
session completes with ``action="escalate"`` and a :class:`~.agents.Handover`. Giving up
is an agent's answer still invalid after its repairs (``OutputValidationError``), invalid
tool calls past its budget (``HandoffError``) or its ``max_turns`` spent
(``AgentTurnsExhausted``): what a small model does. Model and tool failures (timeouts,
outages) still fail the session, and the session's own limits still end it.
"""

from __future__ import annotations

import asyncio

import convoy
from examples.support_desk import accounts, crm
from examples.support_desk.agents import (
    HANDOVER_REPLY,
    WORKERS,
    CaseFile,
    Category,
    Handover,
    Ticket,
    TicketOutcome,
    supervisor,
    triage,
)

GAVE_UP = (convoy.AgentTurnsExhausted, convoy.OutputValidationError, convoy.HandoffError)
"""The agents' own failures, which a person can take over."""


@convoy.workflow(version="3")
async def handle_ticket(ctx: convoy.Context, ticket: Ticket) -> TicketOutcome:
    """Triage ``ticket``, let the supervisor resolve it with the worker desks, or hand it
    to a person when the agents give up; keep the customer's shared record (open tickets,
    refunds credited) up to date on the way."""
    record = accounts.record(ctx, ticket.customer_email)
    await record.update(accounts.KEY, accounts.opened(ticket.id),
                        default=accounts.CustomerAccount(), attempts=accounts.ATTEMPTS)
    outcome = await _resolve(ctx, ticket)
    refunded = 0.0
    if outcome.action == "refund":
        refunded = await ctx.step("crm.refunded", lambda: _refunded(ctx.session_id),
                                  idempotent=True)
    await record.update(accounts.KEY, accounts.closed(outcome, refunded),
                        default=accounts.CustomerAccount(), attempts=accounts.ATTEMPTS)
    return outcome


async def _resolve(ctx: convoy.Context, ticket: Ticket) -> TicketOutcome:
    category: Category | None = None
    try:
        tri = await ctx.run(triage, ticket)
        category = tri.category
        resolution = await convoy.supervisor(ctx, supervisor, WORKERS,
                                             CaseFile(ticket=ticket, triage=tri))
    except GAVE_UP as e:
        return await hand_to_human(ctx, ticket, category, e)
    # The ticket id is ours, not the model's to get wrong.
    return TicketOutcome.model_validate({**resolution.model_dump(), "ticket_id": ticket.id})


async def hand_to_human(ctx: convoy.Context, ticket: Ticket, category: Category | None,
                        error: convoy.StepError) -> TicketOutcome:
    """Queue ``ticket`` for a person with why the agents gave up (a journaled step, applied
    once: the CRM keys it by session), and escalate it."""
    agent = error.agent if isinstance(error, convoy.AgentTurnsExhausted) else None
    transcript = error.transcript if isinstance(error, convoy.AgentTurnsExhausted) else []
    reason = str(error)
    key = f"{ctx.session_id}:human_queue"

    async def enqueue() -> str:
        return await asyncio.to_thread(crm.current_crm().hand_to_human, ticket.id, category,
                                       reason, transcript, key=key)

    reference = await ctx.step("hand_to_human", enqueue, idempotent=True)
    return TicketOutcome(
        ticket_id=ticket.id, category=category, action="escalate", resolved=False,
        escalated=True, reply=HANDOVER_REPLY,
        handover=Handover(reason=reason, error=type(error).__name__, agent=agent,
                          reference=reference))


async def _refunded(session_id: str) -> float:
    """What this session's refunds came to, read from the CRM (on a thread: it is SQLite)."""
    return await asyncio.to_thread(crm.current_crm().refunded_by_session, session_id)
