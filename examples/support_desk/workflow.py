"""The durable support workflow: triage, then a supervisor with three worker desks.

Run it from the CLI as ``examples.support_desk.workflow:handle_ticket`` with lines of
``tickets.jsonl`` as inputs, or from Python with ``Engine.run`` / ``Engine.run_many``.
"""

from __future__ import annotations

import convoy
from examples.support_desk.agents import (
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
    resolution = await convoy.supervisor(ctx, supervisor, WORKERS,
                                         CaseFile(ticket=ticket, triage=tri))
    # The ticket id is ours, not the model's to get wrong.
    return resolution.model_copy(update={"ticket_id": ticket.id})
