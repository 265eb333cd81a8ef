"""Answers to escalated sessions: a person decides what happens to the step that escalated."""

from __future__ import annotations

import time
from typing import Any

from pydantic_core import to_json

from convoy._errors import UserError
from convoy.durability._executor import stamp_after
from convoy.stores._protocol import SessionOutcome, SessionRow, StepRecord, Store

#: The signal that answers an escalated session: ``{"action": "retry" | "complete" |
#: "fail", "result": ..., "reason": "..."}``.
ESCALATION = "convoy.escalation"


async def answer_escalation(store: Store, row: SessionRow, decision: Any) -> None:
    """Apply a person's answer to an escalated session (see :data:`ESCALATION`)."""
    if row.status != "escalated":
        raise UserError(f"session {row.id!r} is {row.status}, not escalated")
    action = decision.get("action") if isinstance(decision, dict) else None
    if action not in ("retry", "complete", "fail"):
        raise UserError(f"an answer to an escalation is {{'action': 'retry' | 'complete' "
                        f"| 'fail', ...}}, got {decision!r}")
    key = (row.error_record or {}).get("key")
    if action == "fail":
        reason = decision.get("reason") or "a person ended the escalated session"
        await store.finish(row.id, None, SessionOutcome(
            status="failed", error={"type": "Escalated", "message": str(reason),
                                    "escalation": row.error_record},
            steps=row.steps, input_tokens=row.input_tokens,
            output_tokens=row.output_tokens, cost=row.cost), tenant=row.tenant)
    elif action == "retry":
        await store.reopen(row.id, drop_step=key, tenant=row.tenant)
    else:
        journal = await store.load_journal(row.id, tenant=row.tenant)
        rec = journal.get(key or "")
        if rec is None:
            raise UserError(f"session {row.id!r} escalated outside a step; answer it "
                            "with 'retry' or 'fail'")
        # Stamped after the session's records, like every record (whatever this clock).
        at = stamp_after(max(r.at for r in journal.values()),
                         getattr(store, "clock", time.time)())
        await store.reopen(row.id, tenant=row.tenant, journal=StepRecord(
            key=rec.key, kind=rec.kind, target=rec.target, status="completed",
            result=to_json(decision.get("result")).decode(), input_hash=rec.input_hash,
            agent=rec.agent, at=at))
