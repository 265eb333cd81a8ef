"""The durable support workflow: triage, then a supervisor with three worker desks.

Run it from the CLI as ``examples.support_desk.workflow:handle_ticket`` with lines of
``tickets.jsonl`` as inputs, or from Python with ``Engine.run`` / ``Engine.run_many``.
"""

from __future__ import annotations

import convoy
from examples.support_desk.agents import (
    GAVE_UP_REPLY,
    WORKERS,
    CaseFile,
    Resolution,
    Ticket,
    supervisor,
    triage,
)


@convoy.workflow(version="1")
async def handle_ticket(ctx: convoy.Context, ticket: Ticket) -> Resolution:
    """Triage ``ticket``, let the supervisor resolve it with the worker desks."""
    tri = await ctx.run(triage, ticket)
    try:
        resolution = await convoy.supervisor(ctx, supervisor, WORKERS,
                                             CaseFile(ticket=ticket, triage=tri))
    except (convoy.OutputValidationError, convoy.HandoffError):
        # The desk gave up: invalid answers or tool calls past the agents' repair budgets
        # (a capable model rarely gets here, a 135M one often does). A human takes the
        # ticket; model and tool failures (timeouts, outages) still fail the session.
        return Resolution(ticket_id=ticket.id, category=tri.category, action="escalate",
                          resolved=False, escalated=True, reply=GAVE_UP_REPLY)
    # The ticket id is ours, not the model's to get wrong.
    return resolution.model_copy(update={"ticket_id": ticket.id})
