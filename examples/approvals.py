"""Durable human approval: an agent reads an expense claim, a person approves it (a signal),
then a write tool pays it. The session waits parked (no memory, no slot) and survives
restarts; try it from the command line:

    convoy run examples.approvals:expense --input claims.jsonl --db approvals.db
    convoy sessions list --db approvals.db            # status: waiting
    convoy signal SESSION_ID approval --payload '{"approved": true, "by": "ann"}' --db approvals.db
    convoy worker examples.approvals --until-idle --db approvals.db

or run this file: it does the same in one process (`python -m examples.approvals`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel

import convoy


class Claim(BaseModel):
    employee: str
    text: str


class Expense(BaseModel):
    amount_eur: float
    category: str


class Approval(BaseModel):
    approved: bool
    by: str


class Ledger:
    """Where payments go (a real app passes its payment client as the engine's deps)."""

    def __init__(self) -> None:
        self.paid: dict[str, float] = {}


#: Used when the engine was given no deps (``convoy run``/``convoy worker`` give none).
DEFAULT_LEDGER = Ledger()


@convoy.tool(writes=True)
def pay(ctx: convoy.ToolContext[Ledger], employee: str, amount_eur: float) -> str:
    """Pay an approved expense (at most once per idempotency key)."""
    ledger = ctx.deps if ctx.deps is not None else DEFAULT_LEDGER
    ledger.paid.setdefault(ctx.idempotency_key, amount_eur)
    return f"paid {amount_eur:.2f} EUR to {employee}"


# The simulator scripts both agents (swap in "openai:gpt-4o-mini" for a real model).
SIM = convoy.SimModel({
    "reader": {"output": {"amount_eur": 42.5, "category": "travel"}},
    "payer": [{"tool_calls": [{"name": "pay", "arguments": {"employee": "ann",
                                                              "amount_eur": 42.5}}]},
              {"text": "paid"}],
})


reader = convoy.Agent(name="reader", instructions="Extract the amount and category.",
                      input_type=Claim, output_type=Expense, model=SIM)
payer = convoy.Agent(name="payer", instructions="Pay the approved expense with the tool.",
                     output_type=str, tools=[pay], model=SIM)


@convoy.workflow(name="examples.expense")
async def expense(ctx: convoy.Context, claim: Claim) -> str:
    found = await ctx.run(reader, claim)
    decision = await ctx.wait_for("approval", Approval, timeout=7 * 86400)
    if not decision.approved:
        return f"rejected by {decision.by}"
    return await ctx.run(payer, {"employee": claim.employee, "amount_eur": found.amount_eur,
                                 "approved_by": decision.by})




async def main(db: Path = Path("approvals.db")) -> str:
    ledger = Ledger()
    claim = Claim(employee="ann", text="Taxi to the client, 42.50 EUR")
    async with convoy.Engine(db, deps=ledger) as engine:
        started = await engine.run(expense, claim)
        print(started.status)  # waiting: parked until someone answers
    # ... hours later, in another process: the approval arrives.
    async with convoy.Engine(db, deps=ledger, workflows=[expense]) as engine:
        await engine.signal(started.id, "approval", {"approved": True, "by": "bob"})
        [done] = await engine.resume()
        print(done.status, done.output, ledger.paid)
        return done.raise_for_status().output or ""


if __name__ == "__main__":
    asyncio.run(main())
